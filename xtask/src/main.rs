//! `cargo xtask`: the project's only entry points.
//!
//! - `dev [--runtime workers|spin] [--json]`: install what is missing, start the local stack with
//!   demo tenants, serve the edge on 127.0.0.1:8787, print a line per request, and stop
//!   everything on Ctrl-C / SIGTERM.
//! - `test`: fmt, clippy, unit tests (host and wasm32), both artifacts, then one black-box suite
//!   against both runtimes on a fresh stack (`test --quick --runtime spin identity` runs only
//!   `wasm-tests/edge/identity.test.mjs` on Spin, skipping the checks and unit tests).
//! - `build workers|spin|spin-portable`: build a deployable artifact (wrangler.toml's and
//!   spin.toml's build commands are `cargo xtask build worker` and `cargo xtask build spin`).

mod artifacts;
mod bench;
mod devlog;
mod doh;
mod instructions;
mod jwks;
mod llm;
mod logscan;
mod otlp;
mod pg;
mod proc;
mod s3;
mod spin;
mod stack;
mod test;
mod tools;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use spin::SpinHost;
use stack::{Options, Runtime, Stack};
use tools::Needs;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "edgefront's developer entry points")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run edgefront locally with demo tenants (Ctrl-C stops everything).
    Dev {
        #[arg(long, value_enum, default_value = "workers")]
        runtime: Runtime,
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// Print the edge's JSON log lines as they are instead of one readable line per request.
        #[arg(long)]
        json: bool,
    },
    /// Lint, unit-test, build both runtimes and run the black-box suite against each.
    /// `--quick`, `--runtime`, `--name` and FILES narrow it down while iterating.
    Test(test::Filter),
    /// Criterion benchmarks of core (natively and on wasm32-wasip2 under wasmtime), then
    /// end-to-end request latency on both runtimes against a 10 000-item tenant.
    Bench {
        /// Only Criterion benchmarks whose name contains this.
        filter: Option<String>,
        /// Only the end-to-end edge benchmark.
        #[arg(long)]
        edge: bool,
        /// Only the Criterion benchmarks.
        #[arg(long, conflicts_with = "edge")]
        core: bool,
        /// Instead: edgefront against a hello-world worker and a TypeScript peer
        /// (bench/hello, bench/peer) under wrk on workerd's own ports, plus edgefront on Spin;
        /// cold starts, bundle sizes, SQL batches. Report in target/bench/peer.md and .json.
        /// BENCH_SECONDS (6), BENCH_WARMUP (2), BENCH_ROUNDS (3), BENCH_COLD_STARTS (5),
        /// BENCH_RATE_LIMITS (raised | off), BENCH_LOG_LEVEL (edgefront's LOG_LEVEL; default info),
        /// BENCH_BASELINE (an earlier run's target/bench/bundle-edge_workers, copied: served
        /// beside this build as one more row, an A/B in one run).
        #[arg(long, conflicts_with_all = ["edge", "core", "filter"])]
        peer: bool,
        /// Instead: core's instructions per request as the Worker compiles it (its request
        /// benchmark for wasm32-wasip2 at opt-level z with simd128, under wasmtime inside
        /// callgrind; installs valgrind), with the functions that take most of them. Counted,
        /// so one run shows a change. Report in target/bench/instructions.md.
        #[arg(long, conflicts_with_all = ["edge", "core", "filter", "peer"])]
        instructions: bool,
    },
    /// Print a dev token for the running `cargo xtask dev` stack (signed with `jose`): an ID
    /// token of the seeded user with that role in that tenant (the stack runs membership mode:
    /// roles come from the database), or of an ad-hoc user with `--email`/`--sub`.
    Token {
        #[arg(long, default_value = "demo")]
        tenant: String,
        /// owner, admin or member
        #[arg(long, default_value = "member")]
        role: String,
        /// An ad-hoc user's email (verified) instead of a seeded user's.
        #[arg(long)]
        email: Option<String>,
        /// An ad-hoc user's subject (`sub`) instead of a seeded user's.
        #[arg(long)]
        sub: Option<String>,
        /// Lifetime: 900, 15m, 1h, 1d
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// RS256, ES256 or EdDSA
        #[arg(long, default_value = "RS256")]
        alg: String,
        /// A platform-admin token (any tenant) from the platform issuer.
        #[arg(long)]
        platform_admin: bool,
        /// id or access
        #[arg(long, default_value = "id")]
        token_use: String,
    },
    /// Build a deployable artifact.
    Build {
        #[arg(value_enum)]
        target: BuildTarget,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BuildTarget {
    /// The Workers bundle in edge/worker/build (wrangler.toml's build command).
    #[value(alias = "worker")]
    Workers,
    /// The Spin component spin.toml deploys (feature `spin-kv`; spin.toml's build command):
    /// edge/spin/build/edgefront-spin-kv.wasm.
    #[value(alias = "spin-kv")]
    Spin,
    /// The portable Spin component (imports only `wasi:*`) that `wasmtime serve` runs:
    /// edge/spin/build/edgefront-spin-portable.wasm.
    SpinPortable,
}

impl BuildTarget {
    fn spin_build(self) -> Option<artifacts::SpinBuild> {
        match self {
            Self::Workers => None,
            Self::Spin => Some(artifacts::SpinBuild::SpinKv),
            Self::SpinPortable => Some(artifacts::SpinBuild::Portable),
        }
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target directory for this workspace as `cargo metadata` resolves it
/// (`CARGO_TARGET_DIR`, `build.target-dir`, or `target/`).
pub fn target_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        Command::new("cargo")
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .current_dir(repo_root())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
            .and_then(|meta| meta["target_directory"].as_str().map(PathBuf::from))
            .unwrap_or_else(|| match std::env::var_os("CARGO_TARGET_DIR") {
                Some(dir) => repo_root().join(dir),
                None => repo_root().join("target"),
            })
    })
    .clone()
}

/// Runs a command to completion, inheriting output; fails on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!(
            "{:?} {:?} failed ({status})",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>()
        );
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() {
    // If cargo (our parent) is killed, get SIGTERM and run the normal shutdown, which stops
    // every service; otherwise an orphaned xtask would keep them running.
    // SAFETY: prctl with these arguments has no memory effects.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    raise_open_file_limit();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xtask: cannot start tokio: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async {
        let result = match cli.cmd {
            Cmd::Dev {
                runtime,
                port,
                json,
            } => dev(runtime, port, json).await,
            Cmd::Test(filter) => test::run_all(filter).await,
            Cmd::Build { target } => build(target),
            Cmd::Bench { peer: true, .. } => bench::run_peer().await,
            Cmd::Bench {
                instructions: true, ..
            } => instructions::run_instructions(),
            Cmd::Bench {
                filter, edge, core, ..
            } => {
                let criterion = if edge {
                    Ok(0)
                } else {
                    bench(filter.as_deref())
                };
                match criterion {
                    Ok(0) if !core => test::bench_edge().await,
                    other => other,
                }
            }
            Cmd::Token {
                tenant,
                role,
                email,
                sub,
                ttl,
                alg,
                platform_admin,
                token_use,
            } => token(&TokenArgs {
                tenant: &tenant,
                role: &role,
                email: email.as_deref(),
                sub: sub.as_deref(),
                ttl: &ttl,
                alg: &alg,
                platform_admin,
                token_use: &token_use,
            }),
        };
        match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("xtask: error: {e:#}");
                1
            }
        }
    });
    // Drop the runtime (and with it every service task) before exiting.
    drop(rt);
    std::process::exit(code);
}

/// Raises this process's open-file limit (the services it starts inherit it): to 2^20 where
/// allowed (with CAP_SYS_RESOURCE), else to the hard limit. `wrangler dev`'s inspector proxy
/// posts DevTools events to wrangler over new connections, and its workerd keeps each one open
/// (CLOSE-WAIT) after wrangler's side closes it. Per-request trace exports once left ~20,000 of
/// them after a full black-box run and workerd failed every request with "Too many open files";
/// with spans batched (`OTEL_BSP_SCHEDULE_DELAY`) a run leaves about a dozen, and this is the
/// margin. A local-development artefact; deployed Workers have no inspector.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write or read only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        let want: libc::rlim_t = 1 << 20;
        let raised = libc::rlimit {
            rlim_cur: want.max(lim.rlim_cur),
            rlim_max: want.max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            let soft = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
        }
    }
}

struct TokenArgs<'a> {
    tenant: &'a str,
    role: &'a str,
    email: Option<&'a str>,
    sub: Option<&'a str>,
    ttl: &'a str,
    alg: &'a str,
    platform_admin: bool,
    token_use: &'a str,
}

fn token(a: &TokenArgs) -> Result<i32> {
    let dev_json = repo_root().join(".edgefront/dev.json");
    if !dev_json.exists() {
        bail!(
            "no running stack: start `cargo xtask dev` first (it writes {})",
            dev_json.display()
        );
    }
    let mut cmd = Command::new("node");
    cmd.current_dir(repo_root())
        .arg("wasm-tests/tools/mint.mjs")
        .arg("--stack")
        .arg(&dev_json)
        .args([
            "--tenant",
            a.tenant,
            "--role",
            a.role,
            "--ttl",
            a.ttl,
            "--alg",
            a.alg,
            "--token-use",
            a.token_use,
        ]);
    if let Some(email) = a.email {
        cmd.args(["--email", email]);
    }
    if let Some(sub) = a.sub {
        cmd.args(["--sub", sub]);
    }
    if a.platform_admin {
        cmd.arg("--platform-admin");
    }
    run(&mut cmd)?;
    Ok(0)
}

fn bench(filter: Option<&str>) -> Result<i32> {
    let tools = tools::ensure(Needs {
        worker: false,
        node: false,
    })?;
    let criterion_args = ["--warm-up-time", "1", "--measurement-time", "3"];
    for (label, target) in [
        ("native", None),
        ("wasm32-wasip2 (wasmtime)", Some("wasm32-wasip2")),
    ] {
        println!("\n== core benchmarks: {label} ==");
        let mut cmd = Command::new("cargo");
        cmd.current_dir(repo_root())
            .args(["bench", "-p", "edgefront-core", "--benches"]);
        if let Some(t) = target {
            cmd.args(["--target", t]).env(
                "CARGO_TARGET_WASM32_WASIP2_RUNNER",
                // Criterion writes its reports under target/.
                format!(
                    "{} run -S cli=y --dir {}::target",
                    tools.wasmtime.display(),
                    target_dir().display()
                ),
            );
        }
        cmd.arg("--").args(criterion_args);
        if let Some(f) = filter {
            cmd.arg(f);
        }
        run(&mut cmd)?;
    }
    Ok(0)
}

fn build(target: BuildTarget) -> Result<i32> {
    match target.spin_build() {
        None => {
            let tools = tools::ensure(Needs {
                worker: true,
                node: true,
            })?;
            artifacts::build_worker(&tools)?;
        }
        Some(build) => {
            tools::ensure_targets()?;
            let artifact = artifacts::build_spin(build)?;
            eprintln!(
                "xtask: {} build of edgefront-spin: {}",
                build.name(),
                artifact.display()
            );
        }
    }
    Ok(0)
}

/// Builds the origin proxy with the release profile (benchmarks measure what production runs).
pub fn build_origin_release() -> Result<()> {
    run(Command::new("cargo")
        .args(["build", "--quiet", "--release", "-p", "edgefront-origin"])
        .current_dir(repo_root()))
}

/// Builds the origin proxy binary the stack runs.
pub fn build_origin() -> Result<()> {
    run(Command::new("cargo")
        .args(["build", "--quiet", "-p", "edgefront-origin"])
        .current_dir(repo_root()))
}

async fn dev(runtime: Runtime, port: u16, json: bool) -> Result<i32> {
    let tools = tools::ensure(Needs {
        worker: runtime == Runtime::Workers,
        node: true,
    })?;
    build_origin()?;
    // Decided once: the host that will serve Spin decides which build is made and served.
    let spin_host = SpinHost::detect();
    match runtime {
        Runtime::Workers => artifacts::build_worker(&tools)?,
        Runtime::Spin => {
            artifacts::build_spin(spin_host.build())?;
        }
    }
    let state = repo_root().join(".edgefront");
    let run_dir = state.join("run");
    // A previous dev session's throwaway data is not reused.
    let _ = std::fs::remove_dir_all(&run_dir);
    let opts = Options {
        runtimes: vec![runtime],
        port: Some(port),
        dir: run_dir,
        spin_host,
        origin_statement_timeout_ms: 5_000,
        mock_ai: false,
        rate_limits: None,
        tracing: false,
        extra_settings: Vec::new(),
        origin_release: false,
    };
    let mut stack = tokio::select! {
        s = Stack::start(&opts, &tools) => s?,
        _ = shutdown_signal() => { eprintln!("xtask: interrupted"); return Ok(130) }
    };
    let dev_json = state.join("dev.json");
    std::fs::write(&dev_json, serde_json::to_string_pretty(stack.describe())?)?;
    let d = stack.describe();
    println!(
        "\nedgefront is running ({} via {}):",
        runtime.name(),
        d["runtimes"][runtime.name()]["served_by"]
            .as_str()
            .unwrap_or("")
    );
    for t in d["tenants"].as_array().into_iter().flatten() {
        let slug = t["slug"].as_str().unwrap_or_default();
        println!("  http://{slug}.localhost:{port}/healthz");
    }
    println!(
        "  deep health curl -H 'Authorization: Bearer {}' http://demo.localhost:{port}/healthz?deep=1",
        d["operator_token"].as_str().unwrap_or_default()
    );
    println!(
        "  SQL proxy   {} (app role only; admin listener {})",
        d["origin"]["url"].as_str().unwrap_or_default(),
        d["origin"]["admin_url"].as_str().unwrap_or_default()
    );
    println!(
        "  S3          {} (bucket {})",
        d["s3"]["endpoint"].as_str().unwrap_or_default(),
        stack::BUCKET
    );
    println!("  stack       {}", dev_json.display());
    println!("  logs        {}", d["logs"].as_str().unwrap_or_default());
    println!("Ctrl-C stops everything.");
    // One line per request from the runtime's log output (`--json`: its JSON lines).
    let mode = if json {
        devlog::Mode::Json
    } else {
        devlog::Mode::Pretty {
            color: std::io::stdout().is_terminal(),
        }
    };
    let logs = PathBuf::from(d["logs"].as_str().unwrap_or_default());
    let mut follower = devlog::Follower::new(&logs, &d["tenants"], mode);
    let mut follow = tokio::time::interval(std::time::Duration::from_millis(200));
    let mut alive = tokio::time::interval(std::time::Duration::from_secs(2));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let code = loop {
        tokio::select! {
            _ = &mut shutdown => break 0,
            _ = follow.tick() => {
                let mut out = std::io::stdout().lock();
                for line in follower.poll() {
                    // A closed stdout must not stop the stack.
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
            }
            _ = alive.tick() => {
                if let Err(e) = stack.check_alive() {
                    eprintln!("xtask: {e:#}; stopping");
                    break 1;
                }
            }
        }
    };
    eprintln!("xtask: stopping…");
    drop(stack);
    let _ = std::fs::remove_file(&dev_json);
    Ok(code)
}
