//! `cargo xtask bench --instructions`: how many instructions core's work on a request takes as
//! the Worker compiles it, counted, not timed.
//!
//! Core's request benchmark (`core/benches/request.rs`: whole requests through `Edge::handle`,
//! the request built as the Workers adapter builds it, the answer's headers as the record it
//! hands to JS) is built for `wasm32-wasip2` with the Worker's code generation (`opt-level = z`,
//! `simd128`) and run by wasmtime inside valgrind's callgrind, once with 1 request per route and
//! once with 1,001. The difference over 1,000 is what one more request costs: the machine code
//! Cranelift made of core's wasm, and the host calls that wasm makes (wasmtime's `memory.copy`).
//! V8's TurboFan makes other machine code of the same wasm, so the figures rank changes; they
//! are not workerd's. Counts do not move with the machine's load, unlike the timings of
//! `bench --peer`: a change's effect shows in one run.
//!
//! With each count, the functions that take most of it, by name: wasmtime's perf map
//! (`--profile=perfmap`) says which wasm function each address of compiled code belongs to.
//!
//! And how much compiled code runs on every request (64-byte cache lines, from a third run):
//! what a request fetches into the instruction cache again whenever the runtime's own work
//! between two requests has evicted it: on workerd, possibly more of what a request's wasm
//! costs than the count (not shown yet; BENCHMARKS.md, "Code run per request").

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::tools::{self, Needs};
use crate::{repo_root, run, target_dir};

/// What core's request benchmark serves in its profile mode (`EDGEFRONT_PROFILE`), with the
/// report's name for it: requests as wrk sends them through a dev stack (the log line written,
/// a client address), `/v1/me` as the Workers benchmark's quiet rows send it (`quiet:`:
/// `LOG_LEVEL` off, no client address), and the floor under that (`required:`): `/v1/me`'s
/// own work through core's caches and limiter, without the request path. `kept:` is the
/// catalog page served from the answer the instance kept (`core::answers`).
const ROUTES: &[(&str, &str)] = &[
    ("GET /healthz", "/healthz"),
    ("GET /v1/storefront", "/v1/storefront"),
    (
        "GET /v1/storefront/catalog?limit=20",
        "/v1/storefront/catalog?limit=20",
    ),
    (
        "GET /v1/storefront/catalog?limit=20, answer kept",
        "kept:/v1/storefront/catalog?limit=20",
    ),
    ("GET /v1/me", "/v1/me"),
    ("GET /v1/me, quiet", "quiet:/v1/me"),
    ("/v1/me's required work", "required:/v1/me"),
];
/// Requests in the longer of the two runs counted; the shorter serves one. The code run on
/// every request is found with a third run of `2 × REQUESTS − 1`.
const REQUESTS: u32 = 1_001;
/// Functions listed per route.
const TOP: usize = 15;

pub fn run_instructions() -> Result<i32> {
    let tools = tools::ensure(Needs {
        worker: false,
        node: false,
    })?;
    let valgrind = tools::ensure_apt("valgrind", "valgrind")?;
    let out = target_dir().join("bench").join("instructions");
    std::fs::create_dir_all(&out)?;
    eprintln!("== bench --instructions: core's request benchmark, built as the Worker is ==");
    let wasm = build_bench()?;
    let cwasm = out.join("request.cwasm");
    // Ahead of time and for the baseline x86-64 (valgrind runs no AVX-512): the compile is
    // then in neither run's count.
    run(Command::new(&tools.wasmtime)
        .args(["compile", "--target", "x86_64-unknown-linux-gnu", "-o"])
        .arg(&cwasm)
        .arg(&wasm))?;
    let mut md = String::from(
        "# Core's instructions per request, as the Worker compiles it\n\n\
         `cargo xtask bench --instructions`: core's request benchmark for wasm32-wasip2 at \
         `opt-level = z` with `simd128`, compiled by wasmtime's Cranelift and counted by \
         callgrind: (1,001 requests − 1) / 1,000. `wasm`: the compiled module's functions and \
         wasmtime's builtins they call (`memory.copy`); `host`: the rest (wasmtime's runtime, \
         libc).\n\n\
         `code run`: the compiled code that runs on every request, in 64-byte cache lines \
         (KiB), and the functions it belongs to: what a request brings back into the CPU's \
         instruction cache each time the runtime's own work has evicted it.\n\n\
         Requests are made as wrk sends them through a dev stack (the log line written, a \
         client address), except `GET /v1/me, quiet`: as the Workers benchmark's `LOG_LEVEL` \
         off rows send it (no log line, no client address). `/v1/me's required work` is that \
         route's own work through core's caches and limiter (tenant, limits, token, role, \
         request id, the document and the headers' JSON record) with no request path: no \
         `http` request or response, route table or trace. What `GET /v1/me, quiet` runs over \
         it is the request path's.\n\n\
         | route | instructions / request | wasm | host | code run (KiB) | its functions |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    let mut tops = String::new();
    for &(name, route) in ROUTES {
        let one = count(&valgrind, &tools.wasmtime, &cwasm, &out, route, 1)?;
        let many = count(&valgrind, &tools.wasmtime, &cwasm, &out, route, REQUESTS)?;
        let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / f64::from(REQUESTS - 1);
        let (mut wasm_ir, mut host_ir) = (0.0, 0.0);
        let mut by_fn: Vec<(String, f64)> = Vec::new();
        for (name, &n) in &many.by_function {
            let d = per(one.by_function.get(name).copied().unwrap_or(0), n);
            if name == HOST {
                host_ir += d;
            } else {
                wasm_ir += d;
                by_fn.push((name.clone(), d));
            }
        }
        let total = per(one.total, many.total);
        let more = count(
            &valgrind,
            &tools.wasmtime,
            &cwasm,
            &out,
            route,
            2 * REQUESTS - 1,
        )?;
        let lines = lines_every_request([&one.code, &many.code, &more.code], REQUESTS - 1, |a| {
            more.map.function_at(a + more.base)
        });
        let mut lines_by_fn: HashMap<&str, usize> = HashMap::new();
        for name in lines.values().flatten() {
            *lines_by_fn.entry(name).or_default() += 1;
        }
        let code_kib = kib(lines.len());
        let _ = writeln!(
            md,
            "| {name} | {total:.0} | {wasm_ir:.0} | {host_ir:.0} | {code_kib:.1} | {} |",
            lines_by_fn.len()
        );
        eprintln!(
            "  {name:<36} {total:>9.0} instructions / request, {code_kib:.1} KiB of code run"
        );
        by_fn.sort_by(|a, b| b.1.total_cmp(&a.1));
        write_listing(
            &out.join(format!("instructions-{}.tsv", file_stem(route))),
            by_fn
                .iter()
                .map(|(name, n)| (format!("{n:.0}"), name.as_str())),
        )?;
        let _ = writeln!(
            tops,
            "\n## {name}: the functions with most of it\n\n| instructions / request | share of wasm | function |\n|---:|---:|---|"
        );
        for (name, n) in by_fn.iter().take(TOP) {
            let _ = writeln!(
                tops,
                "| {n:.0} | {:.1}% | `{}` |",
                100.0 * n / wasm_ir.max(1.0),
                demangle(name)
            );
        }
        let mut by_lines: Vec<(&str, usize)> = lines_by_fn.into_iter().collect();
        by_lines.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let _ = writeln!(
            tops,
            "\n{name}: the functions with most of the code run on every request\n\n| cache lines | KiB | function |\n|---:|---:|---|"
        );
        for (name, n) in by_lines.iter().take(TOP) {
            let _ = writeln!(tops, "| {n} | {:.1} | `{}` |", kib(*n), demangle(name));
        }
        write_listing(
            &out.join(format!("code-run-{}.tsv", file_stem(route))),
            by_lines.iter().map(|(name, n)| (n.to_string(), *name)),
        )?;
    }
    md.push_str(&tops);
    let report = target_dir().join("bench").join("instructions.md");
    std::fs::write(&report, &md)?;
    println!("\n{md}");
    eprintln!("xtask: report written to {}", report.display());
    Ok(0)
}

/// Builds core's request benchmark as the Worker is built (in a target directory of its own,
/// so its flags never invalidate the Spin build's), and returns the module's path.
fn build_bench() -> Result<PathBuf> {
    let output = Command::new("cargo")
        .current_dir(repo_root())
        .args([
            "bench",
            "-p",
            "edgefront-core",
            "--bench",
            "request",
            "--target",
            "wasm32-wasip2",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .env("CARGO_TARGET_DIR", target_dir().join("instructions"))
        .env("CARGO_PROFILE_BENCH_OPT_LEVEL", "z")
        .env(
            "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
            "-C target-feature=+simd128",
        )
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo bench --no-run")?;
    if !output.status.success() {
        bail!("building core's request benchmark for wasm32-wasip2 failed");
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
        .find(|p| p.extension().is_some_and(|e| e == "wasm"))
        .context("cargo named no wasm executable for the request benchmark")
}

/// Every function of a route with its figure, one `figure<TAB>name` line each, beside the
/// report (which lists only the top): for a change that moves less than the top of the list.
fn write_listing<'a>(path: &Path, rows: impl Iterator<Item = (String, &'a str)>) -> Result<()> {
    let text: String = rows
        .map(|(figure, name)| format!("{figure}\t{}\n", demangle(name)))
        .collect();
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `route` in a file name: `/v1/me` → `v1_me`.
fn file_stem(route: &str) -> String {
    route
        .trim_start_matches('/')
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
}

/// What callgrind counted in one run: in all, by function of the compiled module, and by
/// address of its code, with the perf map that names those addresses.
struct Counted {
    total: u64,
    by_function: HashMap<String, u64>,
    /// By offset from `base`: the same in every run, wherever the module's code was mapped.
    code: HashMap<u64, u64>,
    /// The start of the page the module's code begins in, in this run.
    base: u64,
    map: PerfMap,
}

/// Instructions outside the compiled module (wasmtime, libc, the kernel's vDSO).
const HOST: &str = "(host)";

fn count(
    valgrind: &Path,
    wasmtime: &Path,
    cwasm: &Path,
    out: &Path,
    route: &str,
    requests: u32,
) -> Result<Counted> {
    let cg = out.join(format!("callgrind-{}-{requests}.out", file_stem(route)));
    let status = Command::new(valgrind)
        .args(["--tool=callgrind", "--dump-instr=yes", "--quiet"])
        .arg(format!("--callgrind-out-file={}", cg.display()))
        .arg(wasmtime)
        .args([
            "run",
            "--profile=perfmap",
            "--allow-precompiled",
            "-S",
            "cli=y",
            "--env",
        ])
        .arg(format!("EDGEFRONT_PROFILE={route}:{requests}"))
        .arg(cwasm)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("running valgrind")?;
    if !status.success() {
        bail!("{route} under callgrind failed ({status})");
    }
    let text = std::fs::read_to_string(&cg)?;
    let pid = text
        .lines()
        .find_map(|l| l.strip_prefix("pid: "))
        .and_then(|p| p.trim().parse::<u32>().ok())
        .context("callgrind's output names no pid")?;
    let map_path = PathBuf::from(format!("/tmp/perf-{pid}.map"));
    let map = PerfMap::read(&map_path);
    let _ = std::fs::remove_file(&map_path);
    let map = map?;
    let (total, by_address) = costs(&text)?;
    // Runs map the code at addresses a few pages apart; offsets from its first page keep
    // both the instructions and the cache lines (page-aligned) the same from run to run.
    let base = map.base & !(PAGE - 1);
    let mut by_function: HashMap<String, u64> = HashMap::new();
    let mut code = HashMap::new();
    for (addr, n) in by_address {
        let name = map.function_at(addr);
        *by_function
            .entry(name.unwrap_or(HOST).to_owned())
            .or_default() += n;
        if name.is_some() {
            code.insert(addr - base, n);
        }
    }
    Ok(Counted {
        total,
        by_function,
        code,
        base,
        map,
    })
}

/// Callgrind's total, and its self cost per instruction address (`--dump-instr=yes`
/// positions: absolute `0x…`, or relative `+n`/`-n`/`*` to the line before; the line after a
/// `calls=` line is the call's inclusive cost, counted at its callee).
fn costs(text: &str) -> Result<(u64, HashMap<u64, u64>)> {
    let mut by_address: HashMap<u64, u64> = HashMap::new();
    let mut total = None;
    let mut last: u64 = 0;
    let mut after_call = false;
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("summary: ") {
            total = t.trim().parse().ok();
            continue;
        }
        if line.starts_with("calls=") {
            after_call = true;
            continue;
        }
        let mut parts = line.split_whitespace();
        let Some(pos) = parts.next() else { continue };
        let addr = if let Some(hex) = pos.strip_prefix("0x") {
            u64::from_str_radix(hex, 16).ok()
        } else if let Some(n) = pos.strip_prefix('+') {
            n.parse::<u64>().ok().map(|n| last.wrapping_add(n))
        } else if let Some(n) = pos.strip_prefix('-') {
            n.parse::<u64>().ok().map(|n| last.wrapping_sub(n))
        } else if pos == "*" {
            Some(last)
        } else {
            None
        };
        let Some(addr) = addr else { continue };
        last = addr;
        if std::mem::take(&mut after_call) {
            continue;
        }
        // Position, line, then the events (Ir only).
        if let Some(n) = parts.nth(1).and_then(|n| n.parse::<u64>().ok()) {
            *by_address.entry(addr).or_default() += n;
        }
    }
    Ok((
        total.context("callgrind's output has no summary")?,
        by_address,
    ))
}

/// A line of the CPU's instruction cache.
const LINE: u64 = 64;
/// A page of memory, the unit code is mapped in.
const PAGE: u64 = 4096;

/// `lines` cache lines, in KiB.
fn kib(lines: usize) -> f64 {
    (lines as u64 * LINE) as f64 / 1024.0
}

/// The compiled module's code that runs on every request: the cache lines holding an
/// instruction whose count grew by at least nine in ten of the `extra` requests from the first
/// run to the second, and again, by about as much (within a tenth), from the second to the
/// third (which served `extra` more again). Work done once per run whose count varies between
/// runs (a signature's random blinding) grows by different amounts and is left out. Each line
/// comes with the functions that own those instructions (`owner`: the function an address
/// belongs to). An L1 instruction cache holds
/// 32–64 KiB; what a request runs beyond that, or what the runtime's own work evicted since the
/// last request, comes from the slower caches again on every request.
fn lines_every_request<'m>(
    runs: [&HashMap<u64, u64>; 3],
    extra: u32,
    owner: impl Fn(u64) -> Option<&'m str>,
) -> BTreeMap<u64, Vec<&'m str>> {
    let [one, many, more] = runs;
    let at_least = (u64::from(extra) * 9 / 10).max(1);
    let count = |run: &HashMap<u64, u64>, addr: &u64| run.get(addr).copied().unwrap_or(0);
    let mut lines: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for (addr, n) in more {
        let first = count(many, addr).saturating_sub(count(one, addr));
        let second = n.saturating_sub(count(many, addr));
        let steady = first.abs_diff(second) <= first.max(second) / 10;
        if first >= at_least && second >= at_least && steady {
            let owners = lines.entry(addr / LINE).or_default();
            if let Some(name) = owner(*addr).filter(|n| !owners.contains(n)) {
                owners.push(name);
            }
        }
    }
    lines
}

/// wasmtime's perf map: the address range of each compiled wasm function.
struct PerfMap {
    functions: BTreeMap<u64, (u64, String)>,
    /// Where the compiled module's first function starts (0 with none): the lowest start of
    /// a `wasm[…]` line, whatever name a later line at the same address gives it.
    base: u64,
}

impl PerfMap {
    fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading wasmtime's perf map {}", path.display()))?;
        let mut functions = BTreeMap::new();
        let mut base: Option<u64> = None;
        for line in text.lines() {
            let mut parts = line.splitn(3, ' ');
            let (Some(start), Some(size), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let parse = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
            if let (Some(start), Some(size)) = (parse(start), parse(size)) {
                if name.starts_with("wasm[") {
                    base = Some(base.map_or(start, |b| b.min(start)));
                }
                functions.insert(start, (size, name.to_owned()));
            }
        }
        Ok(Self {
            functions,
            base: base.unwrap_or(0),
        })
    }

    fn function_at(&self, addr: u64) -> Option<&str> {
        let (start, (size, name)) = self.functions.range(..=addr).next_back()?;
        (addr < start + size).then_some(name.as_str())
    }
}

/// A perf map's name, readable: `wasm[0]::function[N]::` dropped and a Rust symbol (legacy
/// or v0) demangled without its hash. Other names (libc's, wasmtime's builtins) as they are.
fn demangle(name: &str) -> String {
    let symbol = name.rsplit("]::").next().unwrap_or(name);
    format!("{:#}", rustc_demangle::demangle(symbol))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_symbols_are_read_without_their_hash() {
        assert_eq!(
            demangle("wasm[0]::function[1922]::_ZN14edgefront_core11json_writer11push_string17h158ef4e1bdef7d1eE"),
            "edgefront_core::json_writer::push_string"
        );
        assert_eq!(
            demangle(
                "wasm[0]::function[604]::_ZN5alloc3vec16Vec$LT$T$C$A$GT$4push17h1935dc25e7c6093bE"
            ),
            "alloc::vec::Vec<T,A>::push"
        );
        assert_eq!(demangle("wasm[0]::function[5894]::dlmalloc"), "dlmalloc");
        assert_eq!(
            demangle("wasm[0]::function[110]::_RNvNtNtCs9pv848UzQwQ_4core3str8converts9from_utf8"),
            "core::str::converts::from_utf8"
        );
    }

    #[test]
    fn the_module_is_placed_by_its_first_function_whatever_precedes_it() {
        let path = std::env::temp_dir().join(format!("xtask-perfmap-{}.map", std::process::id()));
        std::fs::write(
            &path,
            "0x7000 10 wasm[0]::function[2]::b\n0x2000 8 host_trampoline\n\
             0x5040 20 wasm[0]::function[1]::a\n0x5040 20 a\n",
        )
        .unwrap();
        let map = PerfMap::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(map.base, 0x5040);
        assert_eq!(map.base & !(PAGE - 1), 0x5000);
        assert_eq!(map.function_at(0x5050), Some("a"));
        assert_eq!(map.function_at(0x7004), Some("wasm[0]::function[2]::b"));
        assert_eq!(map.function_at(0x7010), None);
        // The same code a page higher in another run: the same offsets from its page.
        assert_eq!(0x7004 - 0x5000, 0x8004 - 0x6000);
    }

    #[test]
    fn callgrind_positions_are_absolute_or_relative_and_calls_are_not_self_cost() {
        let text = "events: Ir\nfn=(1) 0x10\n0x100 1 5\n+4 * 3\ncalls=2 0x200\n* * 99\n-4 * 1\nsummary: 108\n";
        let (total, by) = costs(text).unwrap();
        assert_eq!(total, 108);
        assert_eq!(by[&0x100], 6);
        assert_eq!(by[&0x104], 3);
        assert_eq!(by.len(), 2);
    }

    #[test]
    fn code_run_on_every_request_is_the_lines_that_grew_steadily_with_the_requests() {
        let owner = |a: u64| -> Option<&str> {
            [
                (0x1000, "a"),
                (0x1004, "a"),
                (0x2000, "b"),
                (0x2010, "c"),
                (0x3000, "d"),
            ]
            .into_iter()
            .chain([(0x4000, "e"), (0x5000, "f")])
            .find(|(at, _)| *at == a)
            .map(|(_, f)| f)
        };
        let code = |rows: &[(u64, u64, &str)]| -> HashMap<u64, u64> {
            rows.iter()
                .inspect(|(a, _, f)| assert_eq!(owner(*a), Some(*f)))
                .map(|(a, n, _)| (*a, *n))
                .collect()
        };
        // Runs of 1, 11 and 21 requests: 10 more each time.
        let one = code(&[
            (0x1000, 5, "a"),
            (0x1004, 5, "a"),
            (0x2000, 1, "b"),
            (0x5000, 500, "f"),
        ]);
        let many = code(&[
            (0x1000, 25, "a"),
            (0x1004, 15, "a"),
            (0x2000, 10, "b"),
            (0x2010, 9, "c"),
            (0x3000, 3, "d"),
            (0x4000, 8, "e"),
            (0x5000, 530, "f"),
        ]);
        let more = code(&[
            // Twice a request: its line counts.
            (0x1000, 45, "a"),
            // The same line, another instruction: still one line.
            (0x1004, 25, "a"),
            // Nine in ten of the requests: counts; a second function in that line is named too.
            (0x2000, 19, "b"),
            (0x2010, 18, "c"),
            // Only at start, or on a few of the requests: not every request's.
            (0x3000, 3, "d"),
            (0x4000, 16, "e"),
            // Work done once whose count differs between runs (+30, then +12): left out.
            (0x5000, 542, "f"),
        ]);
        let lines = lines_every_request([&one, &many, &more], 10, owner);
        assert_eq!(lines.keys().copied().collect::<Vec<_>>(), [0x40, 0x80]);
        assert_eq!(lines[&0x40], ["a"]);
        let mut second = lines[&0x80].clone();
        second.sort();
        assert_eq!(second, ["b", "c"]);
    }

    #[test]
    fn an_address_belongs_to_the_function_whose_range_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("perf.map");
        std::fs::write(&p, "0x1000 10 a\n0x1010 8 b\n").unwrap();
        let m = PerfMap::read(&p).unwrap();
        assert_eq!(m.function_at(0x1000), Some("a"));
        assert_eq!(m.function_at(0x100f), Some("a"));
        assert_eq!(m.function_at(0x1017), Some("b"));
        assert_eq!(m.function_at(0x1018), None);
        assert_eq!(m.function_at(0xfff), None);
    }
}
