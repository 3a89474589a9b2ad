//! The `serve` command refuses configurations that would make the proxy an open Postgres login
//! gateway: listening beyond loopback without a bearer token, or without an allow-list. Runs the
//! real binary; nothing here needs Postgres (a refused start never connects, and an accepted one
//! is stopped once it prints its `listening` line).

// Test helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn serve(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgefront-origin"));
    c.arg("serve")
        .args(["--pg-port", "1"])
        .args(args)
        // Only what the test passes: no inherited settings.
        .env_remove("EDGEFRONT_ORIGIN_BEARER_TOKEN")
        .env_remove("EDGEFRONT_ORIGIN_ALLOW_ROLES")
        .env_remove("EDGEFRONT_ORIGIN_ALLOW_DATABASES")
        .env_remove("EDGEFRONT_ORIGIN_LISTEN")
        .env("RUST_LOG", "info");
    c
}

/// Runs a start that must fail; returns its stderr.
fn refused(args: &[&str]) -> String {
    let mut child = serve(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?}: the proxy started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{args:?} exited successfully");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("listening"), "{args:?} listened: {stdout}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a start that must succeed: waits for the `listening` line, then stops it.
fn starts(args: &[&str]) -> String {
    let mut child = serve(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    read.unwrap();
    assert!(line.starts_with("listening http://"), "{args:?}: {line:?}");
    line
}

const ALLOW: [&str; 4] = ["--allow-role", "app", "--allow-database", "db"];

#[test]
fn all_interfaces_without_a_token_is_refused() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let err = refused(&[&["--listen", listen][..], &ALLOW].concat());
        assert!(
            err.contains("without a bearer token") && err.contains("--bearer-token"),
            "{listen}: {err}"
        );
    }
}

#[test]
fn all_interfaces_with_a_token_starts() {
    starts(
        &[
            &["--listen", "0.0.0.0:0", "--bearer-token", "t0ken"][..],
            &ALLOW,
        ]
        .concat(),
    );
}

#[test]
fn loopback_without_a_token_starts() {
    starts(&[&["--listen", "127.0.0.1:0"][..], &ALLOW].concat());
}

#[test]
fn no_allow_list_is_refused() {
    let err = refused(&["--listen", "127.0.0.1:0", "--allow-database", "db"]);
    assert!(err.contains("--allow-role"), "{err}");
    let err = refused(&["--listen", "127.0.0.1:0", "--allow-role", "app"]);
    assert!(err.contains("--allow-database"), "{err}");
}
