//! `cargo xtask test`: everything CI runs, in the order that fails fastest. Static checks, unit
//! tests (host and wasm32-wasip2 under wasmtime), the artifacts, then a fresh stack and the
//! black-box suite against each runtime (Spin under `spin up` when `spin` is on PATH, else
//! `wasmtime serve`). Prints a per-suite summary; non-zero on any failure.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::artifacts::SpinBuild;
use crate::spin::SpinHost;
use crate::stack::{Options, Runtime, Stack};
use crate::tools::{self, Needs};
use crate::{artifacts, build_origin, logscan, repo_root, run, shutdown_signal};

/// What `cargo xtask test` runs: everything by default.
#[derive(Debug, Default, clap::Args)]
pub struct Filter {
    /// Only the artifacts and the black-box edge suite: no static checks, unit tests or origin
    /// suite.
    #[arg(long)]
    quick: bool,
    /// Only this runtime (the stack starts only it).
    #[arg(long, value_enum)]
    runtime: Option<Runtime>,
    /// Only tests whose name matches this regular expression (node's --test-name-pattern);
    /// the others are skipped, which then does not count as a failure.
    #[arg(long)]
    name: Option<String>,
    /// Only these black-box files: `identity` for wasm-tests/edge/identity.test.mjs, or paths.
    files: Vec<String>,
}

impl Filter {
    fn runtimes(&self) -> Vec<Runtime> {
        match self.runtime {
            Some(rt) => vec![rt],
            None => vec![Runtime::Workers, Runtime::Spin],
        }
    }

    /// node --test arguments naming the edge suite's files (the whole directory by default).
    fn edge_files(&self) -> Result<Vec<String>> {
        if self.files.is_empty() {
            return Ok(vec!["wasm-tests/edge/".into()]);
        }
        self.files
            .iter()
            .map(|f| {
                let short = format!("wasm-tests/edge/{f}.test.mjs");
                let path = if repo_root().join(f).is_file() {
                    f.clone()
                } else {
                    short
                };
                if !repo_root().join(&path).is_file() {
                    anyhow::bail!("no black-box test file {path}");
                }
                Ok(path)
            })
            .collect()
    }

    fn narrowed(&self) -> bool {
        self.quick || self.runtime.is_some() || self.name.is_some() || !self.files.is_empty()
    }
}

#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    skipped: u64,
}

struct Report {
    rows: Vec<(String, Tally, f64)>,
    /// Tests filtered out by name are skipped on purpose.
    skips_fail: bool,
}

impl Report {
    fn failed(&self) -> bool {
        self.rows
            .iter()
            .any(|(_, t, _)| t.failed > 0 || (self.skips_fail && t.skipped > 0))
    }

    fn print(&self, total_secs: f64) {
        println!("\n== edgefront test summary ==");
        let (mut p, mut f, mut s) = (0, 0, 0);
        for (name, t, secs) in &self.rows {
            println!(
                "  {name:<42} {:>4} passed {:>3} failed {:>3} skipped  {secs:>6.1}s",
                t.passed, t.failed, t.skipped
            );
            p += t.passed;
            f += t.failed;
            s += t.skipped;
        }
        println!("  (black-box suites must not skip: a skip counts as a failure there)");
        println!("  total time {total_secs:.0}s");
        println!("total: {p} passed, {f} failed, {s} skipped");
    }
}

/// Runs `cmd`, echoing its output, and counts results from cargo's and node's summary lines.
fn counted(name: &str, cmd: &mut Command, report: &mut Report) -> Result<()> {
    eprintln!("\n== {name} ==");
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let mut tally = Tally::default();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            parse_summary(&line, &mut tally);
        }
    }
    let status = child.wait()?;
    if !status.success() && tally.failed == 0 {
        // A crash or compile error is a failure even if no test line said so.
        tally.failed += 1;
    }
    report
        .rows
        .push((name.to_owned(), tally, start.elapsed().as_secs_f64()));
    Ok(())
}

fn parse_summary(line: &str, t: &mut Tally) {
    let num = |s: &str| s.trim().parse::<u64>().unwrap_or(0);
    // cargo: "test result: ok. 19 passed; 0 failed; 2 ignored; ..."
    if let Some(rest) = line.trim().strip_prefix("test result: ") {
        for part in rest.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let (n, what) = match words.as_slice() {
                [_, n, what, ..] if part.contains('.') => (num(n), *what),
                [n, what, ..] => (num(n), *what),
                _ => continue,
            };
            match what {
                "passed" => t.passed += n,
                "failed" => t.failed += n,
                _ => {}
            }
        }
    }
    // node --test (spec reporter): "ℹ pass 17", "ℹ fail 0", "ℹ skipped 0"
    if let Some(rest) = line.trim().strip_prefix("ℹ ") {
        let mut w = rest.split_whitespace();
        match (w.next(), w.next()) {
            (Some("pass"), Some(n)) => t.passed += num(n),
            (Some("fail"), Some(n)) => t.failed += num(n),
            (Some("skipped"), Some(n)) => t.skipped += num(n),
            _ => {}
        }
    }
}

fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new("cargo");
    c.args(args).current_dir(repo_root());
    c
}

pub async fn run_all(filter: Filter) -> Result<i32> {
    tokio::select! {
        r = run_suites(&filter) => r,
        _ = shutdown_signal() => { eprintln!("xtask: interrupted; stopping services"); Ok(130) }
    }
}

async fn run_suites(filter: &Filter) -> Result<i32> {
    let started = Instant::now();
    let runtimes = filter.runtimes();
    let edge_files = filter.edge_files()?;
    let tools = tools::ensure(Needs {
        worker: runtimes.contains(&Runtime::Workers),
        node: true,
    })?;
    let mut report = Report {
        rows: Vec::new(),
        skips_fail: filter.name.is_none(),
    };
    if filter.quick {
        eprintln!("\n== build artifacts ==");
        build_origin()?;
        for rt in &runtimes {
            match rt {
                Runtime::Workers => artifacts::build_worker(&tools)?,
                Runtime::Spin => {
                    artifacts::build_spin(SpinHost::detect().build())?;
                }
            }
        }
        let (dir, stack, stack_json) =
            start_stack(&tools, "edgefront-test-", 2_000, &runtimes, true).await?;
        run_edge_suites(filter, &edge_files, &stack, &stack_json, &mut report)?;
        let secrets = stack.secrets().to_vec();
        drop(stack);
        scan_logs(dir.path(), &secrets, &mut report);
        keep_logs_on_failure(&report, dir.path());
        report.print(started.elapsed().as_secs_f64());
        return Ok(if report.failed() { 1 } else { 0 });
    }
    let botocore = tools::ensure_botocore()?;

    eprintln!("\n== static checks ==");
    run(&mut cargo(&["fmt", "--all", "--", "--check"]))
        .context("cargo fmt --check: run `cargo fmt --all`")?;
    run(&mut cargo(&[
        "clippy",
        "--quiet",
        "--workspace",
        "--all-targets",
        "--exclude",
        "edgefront-worker",
        "--exclude",
        "edgefront-spin",
        "--exclude",
        artifacts::FLOOR.0,
        "--",
        "-D",
        "warnings",
    ]))?;
    // The adapters (and the benchmark's Rust floor) only build for their wasm targets.
    for (package, target) in [artifacts::WORKER, artifacts::SPIN, artifacts::FLOOR] {
        run(&mut cargo(&[
            "clippy", "--quiet", "-p", package, "--target", target, "--", "-D", "warnings",
        ]))?;
    }
    // The `spin up` build (spin.toml) links Spin's key-value store.
    run(&mut cargo(&[
        "clippy",
        "--quiet",
        "-p",
        artifacts::SPIN.0,
        "--target",
        artifacts::SPIN.1,
        "--features",
        "spin-kv",
        "--",
        "-D",
        "warnings",
    ]))?;

    let mut wasm_core = cargo(&["test", "-p", "edgefront-core", "--target", "wasm32-wasip2"]);
    wasm_core.env(
        "CARGO_TARGET_WASM32_WASIP2_RUNNER",
        format!("{} run -S cli=y", tools.wasmtime.display()),
    );
    counted(
        "core unit tests (wasm32-wasip2, wasmtime)",
        &mut wasm_core,
        &mut report,
    )?;

    eprintln!("\n== build artifacts ==");
    build_artifacts(&tools)?;
    for (name, path) in [
        ("worker", artifacts::worker_wasm()),
        ("spin", SpinBuild::Portable.artifact()),
        ("spin-kv", SpinBuild::SpinKv.artifact()),
    ] {
        let (raw, gz) = artifacts::sizes(&path)?;
        eprintln!(
            "  {name:<8} {:>7.1} KiB raw  {:>6.1} KiB gzip  {}",
            raw as f64 / 1024.0,
            gz as f64 / 1024.0,
            path.display()
        );
    }

    let (dir, stack, stack_json) =
        start_stack(&tools, "edgefront-test-", 2_000, &runtimes, true).await?;

    let scratch = stack.scratch_database().await?;
    let mut host = cargo(&[
        "test",
        "--workspace",
        "--exclude",
        "edgefront-worker",
        "--exclude",
        "edgefront-spin",
        "--exclude",
        artifacts::FLOOR.0,
        "--",
        "--include-ignored",
    ]);
    host.env("EDGEFRONT_TEST_DATABASE_URL", scratch)
        // core/tests/botocore.rs: presigned requests byte-identical to the pinned botocore's.
        .env("EDGEFRONT_BOTOCORE_PATH", &botocore)
        .env("EDGEFRONT_BOTOCORE_VERSION", tools::BOTOCORE_VERSION);
    counted("unit + integration tests (host)", &mut host, &mut report)?;

    if !filter.narrowed() {
        counted(
            "origin proxy + Neon driver",
            &mut node(None, &["wasm-tests/origin/".into()], &stack_json),
            &mut report,
        )?;
        // The Worker entry's recovery after a panic, on bench/floor (same entry, a `/panic`).
        artifacts::build_floor(&tools)?;
        let floor = dir.path().join("floor-bundle");
        let logs = dir.path().join("wrangler-floor-logs");
        artifacts::deploy_bundle(&tools, "bench/floor/wrangler.toml", &floor, &logs)?;
        let mut entry = node(None, &["wasm-tests/entry/".into()], &stack_json);
        entry
            .env("EDGEFRONT_FLOOR_BUNDLE", &floor)
            .env("EDGEFRONT_WORKERD", tools.node_bin.join("workerd"));
        counted("Worker entry (panic recovery)", &mut entry, &mut report)?;
    }
    run_edge_suites(filter, &edge_files, &stack, &stack_json, &mut report)?;
    let secrets = stack.secrets().to_vec();
    drop(stack);
    scan_logs(dir.path(), &secrets, &mut report);
    keep_logs_on_failure(&report, dir.path());

    report.print(started.elapsed().as_secs_f64());
    Ok(if report.failed() { 1 } else { 0 })
}

/// "Never tokens, cookies, secrets, presigned URLs' signatures or message bodies": every log
/// line of the run (the stack stopped, so its logs are complete) is searched for the stack's
/// secrets and for credential shapes; any hit fails the run. Nothing logs headers, so the dev
/// tokens the suites mint never show up unless something starts to.
fn scan_logs(stack_dir: &std::path::Path, secrets: &[(&str, String)], report: &mut Report) {
    eprintln!("\n== log secret scan ==");
    let start = Instant::now();
    let scan = logscan::scan_files(&logscan::log_files(stack_dir), secrets);
    let name = scan.print_hits();
    eprintln!("xtask: {name}: {} hits", scan.hits.len());
    let clean = scan.hits.is_empty();
    let tally = Tally {
        passed: u64::from(clean),
        failed: u64::from(!clean),
        skipped: 0,
    };
    report
        .rows
        .push((name, tally, start.elapsed().as_secs_f64()));
}

/// After a failed run, the stopped stack's service logs (wrangler, workerd, wasmtime, the SQL
/// proxy, Postgres) are copied to `target/edgefront-test-logs/` before its directory goes.
fn keep_logs_on_failure(report: &Report, stack_dir: &std::path::Path) {
    if !report.failed() {
        return;
    }
    let to = crate::target_dir().join("edgefront-test-logs");
    let _ = std::fs::remove_dir_all(&to);
    let copied = std::fs::create_dir_all(&to).and_then(|()| {
        for entry in std::fs::read_dir(stack_dir.join("logs"))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name()))?;
            }
        }
        Ok(())
    });
    match copied {
        Ok(()) => eprintln!("xtask: the stack's logs are in {}", to.display()),
        Err(e) => eprintln!("xtask: could not keep the stack's logs: {e}"),
    }
}

fn node(name: Option<&str>, files: &[String], stack_json: &std::path::Path) -> Command {
    let mut c = Command::new("node");
    c.current_dir(repo_root())
        .args(["--test", "--test-reporter=spec", "--test-concurrency=1"]);
    if let Some(pattern) = name {
        c.arg(format!("--test-name-pattern={pattern}"));
    }
    c.args(files).env("EDGEFRONT_STACK", stack_json);
    c
}

/// The black-box edge suite against each runtime of the filter.
fn run_edge_suites(
    filter: &Filter,
    files: &[String],
    stack: &Stack,
    stack_json: &std::path::Path,
    report: &mut Report,
) -> Result<()> {
    for rt in filter.runtimes() {
        let mut c = node(filter.name.as_deref(), files, stack_json);
        c.env("EDGEFRONT_RUNTIME", rt.name()).env(
            "EDGEFRONT_BASE_URL",
            stack.runtime_url(rt).unwrap_or_default(),
        );
        // Spin has two hosts: the row says which one ran.
        let name = match rt {
            Runtime::Workers => format!("black-box suite on {}", rt.name()),
            Runtime::Spin => format!(
                "black-box suite on {} ({})",
                rt.name(),
                stack.describe()["runtimes"][rt.name()]["served_by"]
                    .as_str()
                    .unwrap_or("?")
            ),
        };
        counted(&name, &mut c, report)?;
    }
    Ok(())
}

/// The origin proxy, the worker and both Spin builds (whichever host serves Spin, the other
/// build is a deployable artifact too, and the import test checks both).
fn build_artifacts(tools: &tools::Tools) -> Result<()> {
    build_origin()?;
    artifacts::build_worker(tools)?;
    artifacts::build_spin(SpinBuild::Portable)?;
    artifacts::build_spin(SpinBuild::SpinKv)?;
    Ok(())
}

/// Limits far above what the suites send, so only tests that set their tenant's own
/// (`settings.limits.rate`) see 429s.
pub const TEST_RATE_LIMITS: &str = r#"{"ip": {"public_read": 1000000, "visitor_write": 1000000, "auth_read": 1000000, "auth_write": 1000000}, "tiers": {"basic": {"public_read": 1000000, "visitor_write": 1000000, "auth_read": 1000000, "auth_write": 1000000}, "premium": {"public_read": 1000000, "visitor_write": 1000000, "auth_read": 1000000, "auth_write": 1000000}, "enterprise": {"public_read": 1000000, "visitor_write": 1000000, "auth_read": 1000000, "auth_write": 1000000}}}"#;

/// Both runtimes on a fresh stack with the mock AI provider, described in `stack.json` for
/// the node suites. The temporary directory holds the stack's state: keep it alive.
async fn start_stack(
    tools: &tools::Tools,
    prefix: &str,
    statement_timeout_ms: u64,
    runtimes: &[Runtime],
    tracing: bool,
) -> Result<(tempfile::TempDir, Stack, std::path::PathBuf)> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    let opts = Options {
        runtimes: runtimes.to_vec(),
        port: None,
        dir: dir.path().to_path_buf(),
        spin_host: SpinHost::detect(),
        origin_statement_timeout_ms: statement_timeout_ms,
        mock_ai: true,
        rate_limits: Some(TEST_RATE_LIMITS.into()),
        tracing,
        extra_settings: Vec::new(),
        origin_release: false,
    };
    let stack = Stack::start(&opts, tools).await?;
    let stack_json = dir.path().join("stack.json");
    std::fs::write(&stack_json, serde_json::to_string_pretty(stack.describe())?)?;
    Ok((dir, stack, stack_json))
}

/// `cargo xtask bench` (end-to-end part): both runtimes on a fresh stack, measured by
/// `wasm-tests/bench/edge.mjs` with real HTTP.
pub async fn bench_edge() -> Result<i32> {
    let tools = tools::ensure(Needs {
        worker: true,
        node: true,
    })?;
    eprintln!("\n== edge benchmarks: build ==");
    build_artifacts(&tools)?;
    let (_dir, stack, stack_json) = start_stack(
        &tools,
        "edgefront-bench-",
        5_000,
        &[Runtime::Workers, Runtime::Spin],
        false,
    )
    .await?;
    println!("\n== edge benchmarks: end to end ==");
    let status = Command::new("node")
        .current_dir(repo_root())
        .arg("wasm-tests/bench/edge.mjs")
        .env("EDGEFRONT_STACK", &stack_json)
        .status()
        .context("running node")?;
    drop(stack);
    Ok(if status.success() { 0 } else { 1 })
}
