//! Builds the two deployable artifacts: the Workers bundle (worker-build: wasm-bindgen,
//! wasm-opt, JS shim) and the Spin component (a wasm32-wasip2 `wasi:http` component).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::tools::Tools;
use crate::{repo_root, run, target_dir};

pub fn worker_wasm() -> PathBuf {
    repo_root().join("edge/worker/build/index_bg.wasm")
}

pub fn spin_wasm() -> PathBuf {
    target_dir().join("wasm32-wasip2/release/edgefront_spin.wasm")
}

/// Builds the worker. Skips worker-build's post-processing when cargo's output is unchanged,
/// which keeps `wrangler dev` (which runs this as its build command) quick to start.
pub fn build_worker(tools: &Tools) -> Result<()> {
    let root = repo_root();
    build_release(WORKER)?;
    let raw = target_dir().join("wasm32-unknown-unknown/release/edgefront_worker.wasm");
    let digest = hex(&Sha256::digest(
        std::fs::read(&raw).context("reading worker wasm")?,
    ));
    let stamp = root.join("edge/worker/build/.edgefront-stamp");
    let shim = root.join("edge/worker/build/worker/shim.mjs");
    if shim.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(digest.as_str()) {
        return Ok(());
    }
    let mut cmd = Command::new(&tools.worker_build);
    cmd.arg("--release").current_dir(root.join("edge/worker"));
    for (k, v) in tools.worker_env() {
        cmd.env(k, v);
    }
    run(&mut cmd)?;
    std::fs::write(&stamp, digest)?;
    Ok(())
}

pub fn build_spin() -> Result<()> {
    build_release(SPIN)
}

/// The adapter crates and the wasm target each is built for.
pub const WORKER: (&str, &str) = ("edgefront-worker", "wasm32-unknown-unknown");
pub const SPIN: (&str, &str) = ("edgefront-spin", "wasm32-wasip2");

fn build_release((package, target): (&str, &str)) -> Result<()> {
    run(Command::new("cargo")
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            target,
            "-p",
            package,
        ])
        .current_dir(repo_root()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// (raw bytes, gzip -9 bytes) of a file.
pub fn sizes(path: &PathBuf) -> Result<(u64, u64)> {
    let raw = std::fs::metadata(path)?.len();
    let out = Command::new("gzip").args(["-9", "-c"]).arg(path).output()?;
    Ok((raw, out.stdout.len() as u64))
}
