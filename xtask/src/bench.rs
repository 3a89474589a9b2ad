//! `cargo xtask bench --peer`: edgefront against the TypeScript worker a team would write
//! instead (`bench/peer/`: Hono, jose, aws4fetch) and a hello-world worker (`bench/hello/`), in
//! one run and under one load tool (wrk), all on workerd's own ports, plus edgefront on Spin.
//! Reports throughput, latency and each route's marginal cost over hello-world, cold starts,
//! bundle sizes and SQL batches per route, to stdout and `target/bench/peer.{md,json}`.
//!
//! The machine is shared and small: only ratios inside one run mean anything, so every target
//! is measured back to back, route by route, in alternating order.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::artifacts::{self, SpinBuild};
use crate::proc::{free_port, wait_http, write_private, Proc};
use crate::spin::SpinHost;
use crate::stack::{self, Options, Runtime, Stack};
use crate::tools::{self, Needs, Tools};
use crate::{build_origin_release, repo_root, shutdown_signal, target_dir};

/// wrk's load: one thread, two connections (the machine has two cores).
const THREADS: u32 = 1;
const CONNECTIONS: u32 = 2;
/// Sequential requests per route when counting SQL batches.
const SQL_SAMPLES: u64 = 20;
/// Sequential requests per route and target for the CPU a request costs without load: with
/// `/proc`'s 10 ms clock ticks, 400 of them resolve 25 µs a request.
const IDLE_SAMPLES: u64 = 400;
/// Sequential requests a fresh isolate serves per route in the fresh-isolate phase.
const FRESH_REQUESTS: u64 = 1_000;
/// The tenant and seeded member every request is for (membership mode: a member in the
/// database, so edgefront's `/v1/me` and uploads pass).
const TENANT: &str = "demo";
const ROLE: &str = "admin";
const UPLOAD_BODY: &str = r#"{"filename":"photo.png","content_type":"image/png","size":1024}"#;

/// One measured route. Every target gets the same request (method, headers, body); the
/// hello-world worker answers it at `/` with "ok", so the floor includes reading the same bytes.
struct Route {
    key: &'static str,
    label: &'static str,
    method: &'static str,
    path: &'static str,
    auth: bool,
    body: Option<&'static str>,
    /// The status every answer must have.
    status: u16,
    /// The peer serves it (the storefront list is edgefront's SQL vs the peer's own query).
    note: &'static str,
}

const ROUTES: &[Route] = &[
    Route {
        key: "healthz",
        label: "GET /healthz",
        method: "GET",
        path: "/healthz",
        auth: false,
        body: None,
        status: 200,
        note: "no I/O on any target",
    },
    Route {
        key: "me",
        label: "GET /v1/me (RS256 ID token, cached tenant)",
        method: "GET",
        path: "/v1/me",
        auth: true,
        body: None,
        status: 200,
        note: "peer: jose `jwtVerify` with a module-level `createRemoteJWKSet`, tenant cached at \
               module level, identity from the claims; edgefront: its verifier, tenant and \
               membership caches (membership mode: the user's role comes from the database)",
    },
    Route {
        key: "uploads",
        label: "POST /v1/uploads",
        method: "POST",
        path: "/v1/uploads",
        auth: true,
        body: Some(UPLOAD_BODY),
        status: 201,
        note: "peer: validate + aws4fetch presigned PUT, no SQL; edgefront: the same plus a \
               presigned POST form and its one SQL batch (quota, pending file row)",
    },
    Route {
        key: "catalog",
        label: "GET /v1/storefront/catalog?limit=20",
        method: "GET",
        path: "/v1/storefront/catalog?limit=20",
        auth: false,
        body: None,
        status: 200,
        note: "one SQL batch through the same proxy on every target (peer: @neondatabase/serverless \
               `transaction([set_config, select])`, its own simpler query; edgefront: its keyset pager)",
    },
];

/// A server under load: what wrk and the request helpers talk to.
#[derive(Clone)]
struct Target {
    key: &'static str,
    label: String,
    /// `127.0.0.1:port` of the runtime's own listener.
    addr: String,
    /// Whether requests go to the route's path (false: `/`, the hello-world worker).
    routed: bool,
    /// The process group of the runtime serving it, when the benchmark started it alone
    /// (each plain workerd): its CPU time is measured per request ([`group_cpu_seconds`]).
    pgid: Option<u32>,
}

impl Target {
    fn port(&self) -> &str {
        self.addr.rsplit(':').next().unwrap_or_default()
    }
    fn host(&self) -> String {
        format!("{TENANT}.{}:{}", stack::BASE_DOMAIN, self.port())
    }
    fn path<'a>(&self, route: &'a Route) -> &'a str {
        if self.routed {
            route.path
        } else {
            "/"
        }
    }
    /// The status `route` answers on this target (a target without routes answers 200).
    fn status(&self, route: &Route) -> u16 {
        if self.routed {
            route.status
        } else {
            200
        }
    }
    fn headers(&self, route: &Route, token: &str) -> Vec<(String, String)> {
        let mut h = vec![("Host".to_owned(), self.host())];
        if route.auth {
            h.push(("Authorization".into(), format!("Bearer {token}")));
        }
        if route.body.is_some() {
            h.push(("Content-Type".into(), "application/json".into()));
        }
        h
    }
}

struct Settings {
    seconds: u64,
    warmup: u64,
    rounds: u32,
    cold_starts: u32,
    rate_limits: String,
    /// `LOG_LEVEL` for edgefront (None: its default, info).
    log_level: Option<String>,
    /// `BENCH_BASELINE`: an earlier edgefront's deploy bundle (a copy of what a run keeps in
    /// `target/bench/bundle-edge_workers`), served beside this one with `LOG_LEVEL` off: an A/B
    /// of two builds in one run, under the same load and in alternating order.
    baseline: Option<PathBuf>,
}

fn env_u64(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name}={v} is not a whole number")),
        Err(_) => Ok(default),
    }
}

impl Settings {
    fn from_env() -> Result<Self> {
        let seconds = env_u64("BENCH_SECONDS", 6)?.max(1);
        Ok(Self {
            seconds,
            warmup: env_u64("BENCH_WARMUP", 2)?,
            rounds: u32::try_from(env_u64("BENCH_ROUNDS", 3)?.max(1))?,
            cold_starts: u32::try_from(env_u64("BENCH_COLD_STARTS", 5)?.max(1))?,
            rate_limits: std::env::var("BENCH_RATE_LIMITS").unwrap_or_else(|_| "raised".into()),
            log_level: std::env::var("BENCH_LOG_LEVEL").ok(),
            baseline: std::env::var_os("BENCH_BASELINE").map(PathBuf::from),
        })
    }
}

pub async fn run_peer() -> Result<i32> {
    tokio::select! {
        r = peer() => r,
        _ = shutdown_signal() => { eprintln!("xtask: interrupted; stopping services"); Ok(130) }
    }
}

async fn peer() -> Result<i32> {
    let cfg = Settings::from_env()?;
    let tools = tools::ensure(Needs {
        worker: true,
        node: true,
    })?;
    let wrk = tools::ensure_apt("wrk", "wrk")?;
    let spin_host = SpinHost::detect();

    eprintln!("\n== bench --peer: build ==");
    build_origin_release()?;
    artifacts::build_worker(&tools)?;
    artifacts::build_floor(&tools)?;
    artifacts::build_spin(spin_host.build())?;

    let dir = tempfile::Builder::new()
        .prefix("edgefront-bench-peer-")
        .tempdir()?;
    let rate_limits = match cfg.rate_limits.as_str() {
        "raised" => crate::test::TEST_RATE_LIMITS.to_owned(),
        "off" => "off".to_owned(),
        other => bail!("BENCH_RATE_LIMITS={other}: `raised` (default) or `off`"),
    };
    // Bundles first (offline `wrangler deploy --dry-run`): sizes, and what fresh workerds run.
    eprintln!("\n== bench --peer: bundles ==");
    let bundles = Bundles::build(&tools, dir.path())?;
    if let Some(b) = &cfg.baseline {
        let has_wasm = std::fs::read_dir(b).ok().is_some_and(|mut d| {
            d.any(|e| {
                e.is_ok_and(|e| e.path().extension().and_then(|x| x.to_str()) == Some("wasm"))
            })
        });
        if !has_wasm {
            bail!(
                "BENCH_BASELINE={}: not a deploy bundle of edgefront (no wasm module in it)",
                b.display()
            );
        }
    }

    let opts = Options {
        runtimes: vec![Runtime::Workers, Runtime::Spin],
        port: None,
        dir: dir.path().join("stack"),
        spin_host: spin_host.clone(),
        origin_statement_timeout_ms: 5_000,
        mock_ai: false,
        rate_limits: Some(rate_limits),
        tracing: false,
        origin_release: true,
        // Every edgefront computes each storefront answer (its SQL batch included), as before
        // the edge cache: the storefront row measures the batch path against the bare batch.
        // The one target that keeps answers ("edge_kept", below) says what a kept one costs.
        extra_settings: cfg
            .log_level
            .iter()
            .map(|l| ("LOG_LEVEL", l.clone()))
            .chain([(EDGE_CACHE_SETTING, "0".to_owned())])
            .collect(),
    };
    let stack = Stack::start(&opts, &tools).await?;
    let d = stack.describe().clone();
    let stack_json = dir.path().join("stack.json");
    std::fs::write(&stack_json, serde_json::to_string_pretty(&d)?)?;

    // Every worker on a plain `workerd serve` of its deploy bundle: the runtime alone, as
    // Cloudflare runs it. `wrangler dev` adds its own costs on top (every console.log is also a
    // DevTools event for its inspector): the stack's edgefront under it is one more row.
    let bundle_dir = |key: &str| -> Result<PathBuf> {
        bundles
            .get(key)
            .and_then(|b| b.outdir.clone())
            .with_context(|| format!("no bundle for {key}"))
    };
    // This run's edgefront bundle, kept for a later run's `BENCH_BASELINE`.
    let kept = target_dir().join("bench").join("bundle-edge_workers");
    copy_bundle(&bundle_dir("edge_workers")?, &kept)?;
    let hello = Workerd::start(
        &tools,
        dir.path(),
        "hello",
        &bundle_dir("hello")?,
        &[],
        None,
    )
    .await?;
    let floor = Workerd::start(
        &tools,
        dir.path(),
        "floor",
        &bundle_dir("floor")?,
        &[],
        None,
    )
    .await?;
    let peer_env = peer_settings(&d)?;
    let peer = Workerd::start(
        &tools,
        dir.path(),
        "peer",
        &bundle_dir("peer")?,
        &peer_env,
        None,
    )
    .await?;
    let edge_env: Vec<(String, String)> = stack
        .edge_settings(Runtime::Workers)
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let edge = Workerd::start(
        &tools,
        dir.path(),
        "edgefront",
        &bundle_dir("edge_workers")?,
        &edge_env,
        Some(RATE_LIMITER_DO),
    )
    .await?;
    // The same edgefront without its request log line: the peer writes none.
    let quiet_env: Vec<(String, String)> = edge_env
        .iter()
        .filter(|(k, _)| k != "LOG_LEVEL")
        .cloned()
        .chain([("LOG_LEVEL".to_owned(), "off".to_owned())])
        .collect();
    let quiet = Workerd::start(
        &tools,
        dir.path(),
        "edgefront-quiet",
        &bundle_dir("edge_workers")?,
        &quiet_env,
        Some(RATE_LIMITER_DO),
    )
    .await?;

    // The quiet edgefront with its storefront answers kept (the default TTL): the storefront
    // row's answer from the instance's memory.
    let kept_env: Vec<(String, String)> = quiet_env
        .iter()
        .filter(|(k, _)| k != EDGE_CACHE_SETTING)
        .cloned()
        .collect();
    let kept_answers = Workerd::start(
        &tools,
        dir.path(),
        "edgefront-kept",
        &bundle_dir("edge_workers")?,
        &kept_env,
        Some(RATE_LIMITER_DO),
    )
    .await?;

    // The baseline build, on the quiet edgefront's terms.
    let baseline = match &cfg.baseline {
        Some(b) => {
            let served = dir.path().join("bundle-baseline");
            copy_bundle(b, &served)?;
            Some(
                Workerd::start(
                    &tools,
                    dir.path(),
                    "edgefront-baseline",
                    &served,
                    &quiet_env,
                    Some(RATE_LIMITER_DO),
                )
                .await?,
            )
        }
        None => None,
    };

    // The Rust floor again, answering each route with what the quiet edgefront answered it.
    let quiet_target = Target {
        key: "edge_quiet",
        label: QUIET_LABEL.into(),
        addr: quiet.addr.clone(),
        routed: true,
        pgid: quiet.pgid(),
    };
    let token = mint(&stack_json)?;
    // Recorded once, for both floors that replay them.
    let answers = recorded_answers(&quiet_target, &token).await?;
    let replay = Workerd::start(
        &tools,
        dir.path(),
        "floor-replay",
        &bundle_dir("floor")?,
        &[("FLOOR_ANSWERS".to_owned(), answers.clone())],
        None,
    )
    .await?;
    // And once more, doing `/v1/me`'s own work the leanest way (bench/floor's lean mode).
    let lean = Workerd::start(
        &tools,
        dir.path(),
        "floor-lean",
        &bundle_dir("floor")?,
        &[
            ("FLOOR_ANSWERS".to_owned(), answers),
            (
                "FLOOR_LEAN".to_owned(),
                json!({
                    "host": format!("{TENANT}.{}", stack::BASE_DOMAIN),
                    "token": token,
                })
                .to_string(),
            ),
        ],
        None,
    )
    .await?;

    let direct = |rt: Runtime| -> Result<String> {
        let url = stack
            .runtime_url(rt)
            .with_context(|| format!("the stack has no {} runtime", rt.name()))?;
        Ok(url.trim_start_matches("http://").to_owned())
    };
    let spin_served_by = d["runtimes"]["spin"]["served_by"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let mut targets = vec![
        Target {
            key: "hello",
            label: "hello-world (workerd)".into(),
            addr: hello.addr.clone(),
            routed: false,
            pgid: hello.pgid(),
        },
        Target {
            key: "floor",
            label: FLOOR_LABEL.into(),
            addr: floor.addr.clone(),
            routed: false,
            pgid: floor.pgid(),
        },
        Target {
            key: "peer",
            label: "TypeScript peer (workerd)".into(),
            addr: peer.addr.clone(),
            routed: true,
            pgid: peer.pgid(),
        },
        Target {
            key: "edge_workers",
            label: "edgefront (workerd)".into(),
            addr: edge.addr.clone(),
            routed: true,
            pgid: edge.pgid(),
        },
        quiet_target,
        Target {
            key: "edge_kept",
            label: KEPT_LABEL.into(),
            addr: kept_answers.addr.clone(),
            routed: true,
            pgid: kept_answers.pgid(),
        },
        Target {
            key: "floor_replay",
            label: REPLAY_LABEL.into(),
            addr: replay.addr.clone(),
            routed: true,
            pgid: replay.pgid(),
        },
        Target {
            key: "floor_lean",
            label: LEAN_LABEL.into(),
            addr: lean.addr.clone(),
            routed: true,
            pgid: lean.pgid(),
        },
        Target {
            key: "edge_wrangler_dev",
            label: "edgefront (wrangler dev's workerd)".into(),
            addr: direct(Runtime::Workers)?,
            routed: true,
            pgid: None,
        },
        Target {
            key: "edge_spin",
            label: format!("edgefront (Spin, {spin_served_by})"),
            addr: direct(Runtime::Spin)?,
            routed: true,
            pgid: None,
        },
    ];
    if let Some(b) = &baseline {
        // Beside the quiet edgefront, so the two alternate with nothing between them.
        let at = targets
            .iter()
            .position(|t| t.key == "edge_quiet")
            .map_or(targets.len(), |i| i + 1);
        targets.insert(
            at,
            Target {
                key: "edge_baseline",
                label: BASELINE_LABEL.into(),
                addr: b.addr.clone(),
                routed: true,
                pgid: b.pgid(),
            },
        );
    }

    eprintln!("\n== bench --peer: checking every route on every target ==");
    for route in ROUTES {
        for t in &targets {
            let want = t.status(route);
            let r = request(t, route, &token, Duration::from_secs(30)).await?;
            if r.status != want {
                bail!(
                    "{} {} on {}: HTTP {} (expected {want}): {}",
                    route.method,
                    route.path,
                    t.label,
                    r.status,
                    String::from_utf8_lossy(&r.body)
                        .chars()
                        .take(300)
                        .collect::<String>()
                );
            }
        }
    }

    same_work(&targets, &token).await?;

    eprintln!("\n== bench --peer: SQL batches per route ==");
    let stats_url = d["origin"]["stats_url"]
        .as_str()
        .context("no origin.stats_url")?
        .to_owned();
    let mut sql = serde_json::Map::new();
    let mut bare_body = None;
    for route in ROUTES {
        let mut per = serde_json::Map::new();
        for t in targets.iter().filter(|t| t.routed) {
            let before = origin_stats(&stats_url).await?;
            let mut elapsed = Duration::ZERO;
            for _ in 0..SQL_SAMPLES {
                elapsed += request(t, route, &token, Duration::from_secs(30))
                    .await?
                    .elapsed;
            }
            // Work an answer leaves behind (Workers' waitUntil) lands in the count too.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let after = origin_stats(&stats_url).await?;
            if route.key == BARE_ROUTE && t.key == "edge_workers" {
                bare_body = after.last_sql.clone();
            }
            let n = SQL_SAMPLES as f64;
            per.insert(
                t.key.into(),
                json!({
                    "batches_per_request": (after.batches - before.batches) as f64 / n,
                    "http_requests_per_request": (after.requests - before.requests) as f64 / n,
                    // The proxy's own time for the request's SQL, and the whole request's, both
                    // sequential (no load): what the SQL costs where it runs, and what the
                    // request costs around it.
                    "proxy_us_per_request": (after.micros - before.micros) as f64 / n,
                    "request_us": elapsed.as_secs_f64() * 1e6 / n,
                }),
            );
        }
        sql.insert(route.key.into(), Value::Object(per));
    }
    // The storefront's batch alone: what edgefront (workerd) sent, straight to the proxy.
    let bare = BareBatch::new(&edge_env, bare_body)?;
    let before = origin_stats(&stats_url).await?;
    let mut elapsed = Duration::ZERO;
    for _ in 0..SQL_SAMPLES {
        let a = bare.request().await?;
        if a.status != 200 {
            bail!(
                "the bare batch: HTTP {}: {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            );
        }
        elapsed += a.elapsed;
    }
    let after = origin_stats(&stats_url).await?;
    let n = SQL_SAMPLES as f64;
    let bare_sql = json!({
        "proxy_us_per_request": (after.micros - before.micros) as f64 / n,
        "request_us": elapsed.as_secs_f64() * 1e6 / n,
    });
    // The same batch through a Worker that does nothing else (bench/forward).
    let forward = Workerd::start(
        &tools,
        dir.path(),
        "forward",
        &bundle_dir("forward")?,
        &bare.forwarder_settings()?,
        None,
    )
    .await?;
    let forward_script = scripts_dir(dir.path())?.join("forward.lua");
    write_private(&forward_script, "wrk.method = \"GET\"\n")?;
    let forward_url = format!("http://{}/", forward.addr);

    eprintln!(
        "\n== bench --peer: load ({} round(s) of {} s warm-up + {} s measured per route and target) ==",
        cfg.rounds, cfg.warmup, cfg.seconds
    );
    let scripts = scripts_dir(dir.path())?;
    let mut results: Vec<RouteResult> = Vec::new();
    let bare_script = scripts.join("bare-batch.lua");
    write_private(&bare_script, &bare.lua_script())?;
    let mut bare_runs = Vec::new();
    let mut forward_runs = Vec::new();
    for (ri, route) in ROUTES.iter().enumerate() {
        let mut runs: Vec<Vec<WrkRun>> = vec![Vec::new(); targets.len()];
        for round in 0..cfg.rounds {
            // Alternate the order from one round (and route) to the next, so no target always
            // runs first or last.
            let mut order: Vec<usize> = (0..targets.len()).collect();
            if (round as usize + ri) % 2 == 1 {
                order.reverse();
            }
            // The bare batch runs with the storefront's round, first or last in turn.
            let bare_first = round % 2 == 0;
            if route.key == BARE_ROUTE && bare_first {
                bare_runs.push(bare.load(&wrk, &bare_script, &cfg).await?);
                forward_runs.push(
                    load_one(&wrk, &forward_url, &forward_script, &cfg, FORWARD_LABEL).await?,
                );
            }
            for i in order {
                let t = &targets[i];
                let script = scripts.join(format!("{}-{}.lua", route.key, t.key));
                write_private(&script, &lua_script(t, route, &token))?;
                let url = format!("http://{}{}", t.addr, t.path(route));
                if cfg.warmup > 0 {
                    wrk_run(&wrk, &url, &script, cfg.warmup).await?;
                }
                let cpu_before = t.pgid.and_then(group_cpu_seconds);
                let mut r = wrk_run(&wrk, &url, &script, cfg.seconds).await?;
                let cpu_after = t.pgid.and_then(group_cpu_seconds);
                if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
                    r.cpu_us = Some((b - a) * 1e6 / r.requests.max(1) as f64);
                }
                eprintln!(
                    "  {:<10} {:<28} round {}: {:>8.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs{}{}",
                    route.key,
                    t.label,
                    round + 1,
                    r.rps,
                    r.p50_us,
                    r.p99_us,
                    r.cpu_us
                        .map(|c| format!("  cpu {c:>6.1} µs/req"))
                        .unwrap_or_default(),
                    if r.bad > 0 {
                        format!(
                            "  ({} non-2xx, {} socket errors)",
                            r.non_2xx, r.socket_errors
                        )
                    } else {
                        String::new()
                    }
                );
                runs[i].push(r);
            }
            if route.key == BARE_ROUTE && !bare_first {
                forward_runs.push(
                    load_one(&wrk, &forward_url, &forward_script, &cfg, FORWARD_LABEL).await?,
                );
                bare_runs.push(bare.load(&wrk, &bare_script, &cfg).await?);
            }
        }
        results.push(RouteResult {
            route_key: route.key,
            runs,
        });
    }

    // After the load, so V8 has compiled what each target runs (its background compiles count
    // as the process's CPU) and only the requests' own work is measured.
    eprintln!("\n== bench --peer: CPU per request without load ==");
    let idle_cpu = idle_cpu(&targets, &token).await?;

    eprintln!(
        "\n== bench --peer: fresh isolates ({FRESH_REQUESTS} sequential requests per route, each on a new workerd) =="
    );
    let no_bindings: Vec<(String, String)> = Vec::new();
    let fresh = fresh_isolates(
        &tools,
        dir.path(),
        &[
            FreshSpec {
                key: "hello",
                label: "hello-world (workerd)",
                outdir: bundle_dir("hello")?,
                bindings: &no_bindings,
                durable: None,
                routed: false,
            },
            FreshSpec {
                key: "peer",
                label: "TypeScript peer (workerd)",
                outdir: bundle_dir("peer")?,
                bindings: &peer_env,
                durable: None,
                routed: true,
            },
            FreshSpec {
                key: "edge_workers",
                label: "edgefront (workerd)",
                outdir: bundle_dir("edge_workers")?,
                bindings: &edge_env,
                durable: Some(RATE_LIMITER_DO),
                routed: true,
            },
        ],
        &token,
    )
    .await?;

    eprintln!("\n== bench --peer: cold starts ==");
    let cold = cold_starts(&cfg, &tools, &spin_host, &stack, &bundles, dir.path()).await?;

    let versions = versions(&tools, &wrk);
    let machine = machine();
    drop(forward);
    drop(replay);
    drop(lean);
    drop(baseline);
    drop(quiet);
    drop(edge);
    drop(floor);
    drop(peer);
    drop(hello);
    drop(stack);

    let report = Report {
        cfg: &cfg,
        targets: &targets,
        results: &results,
        sql: &sql,
        idle_cpu: &idle_cpu,
        fresh: &fresh,
        bare: BareResult {
            sql: &bare_sql,
            runs: &bare_runs,
            forward: &forward_runs,
        },
        cold: &cold,
        bundles: &bundles,
        versions: &versions,
        machine: &machine,
        spin_served_by: &spin_served_by,
    };
    let md = report.markdown();
    println!("\n{md}");
    let out = target_dir().join("bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("peer.md"), &md)?;
    std::fs::write(
        out.join("peer.json"),
        serde_json::to_string_pretty(&report.json())?,
    )?;
    eprintln!(
        "xtask: report written to {} and peer.json",
        out.join("peer.md").display()
    );
    Ok(0)
}

// ---------------------------------------------------------------------------------------------
// The workers under load: a plain `workerd serve` each

/// The Rust floor's row: the cheapest wasm Worker edgefront's toolchain builds.
const FLOOR_LABEL: &str =
    "Rust floor (workerd): bench/floor, built like edgefront, answers at once";
/// The setting that keeps storefront answers in an instance's memory (`core::answers`).
const EDGE_CACHE_SETTING: &str = "STOREFRONT_EDGE_CACHE_SECONDS";
/// The quiet edgefront with storefront answers kept (every other edgefront target computes
/// each one).
const KEPT_LABEL: &str =
    "edgefront (workerd), `LOG_LEVEL` off, storefront answers kept (`STOREFRONT_EDGE_CACHE_SECONDS` 10)";

/// edgefront with `LOG_LEVEL=off`: what the request log line costs, and the peer's terms.
const QUIET_LABEL: &str = "edgefront (workerd), `LOG_LEVEL` off";
/// `BENCH_BASELINE`'s build, served like the quiet edgefront.
const BASELINE_LABEL: &str = "edgefront baseline (`BENCH_BASELINE`, workerd), `LOG_LEVEL` off";
/// The Rust floor replaying the quiet edgefront's answers: what they cost to receive and send.
const REPLAY_LABEL: &str =
    "Rust floor replaying edgefront's answers (workerd): bench/floor, request read, answer recorded";

/// The Rust floor doing `/v1/me`'s own work and nothing else (other routes replayed).
const LEAN_LABEL: &str =
    "Rust floor doing /v1/me's work leanly (workerd): bench/floor, other routes replayed";

/// Checks that the lean floor answers `/v1/me` as the quiet edgefront does: the same document
/// and the same headers, values included but for the two it writes per request (the request id
/// and the `RateLimit` state). Otherwise it would not be a floor of edgefront's work.
async fn same_work(targets: &[Target], token: &str) -> Result<()> {
    let (Some(lean), Some(edge)) = (
        targets.iter().find(|t| t.key == "floor_lean"),
        targets.iter().find(|t| t.key == "edge_quiet"),
    ) else {
        return Ok(());
    };
    let route = ROUTES
        .iter()
        .find(|r| r.key == "me")
        .context("no /v1/me route")?;
    let (a, b) = (
        request(lean, route, token, Duration::from_secs(30)).await?,
        request(edge, route, token, Duration::from_secs(30)).await?,
    );
    if a.body != b.body {
        bail!(
            "the lean floor's /v1/me document differs from edgefront's:\n{}\n{}",
            String::from_utf8_lossy(&a.body),
            String::from_utf8_lossy(&b.body)
        );
    }
    let fixed = |h: &[(String, String)]| -> BTreeMap<String, String> {
        h.iter()
            .map(|(k, v)| {
                let k = k.to_ascii_lowercase();
                let v = match k.as_str() {
                    "x-request-id" => format!("{} hex digits", v.len()),
                    // Which policy is tightest depends on what each has counted.
                    "ratelimit" => String::new(),
                    // The clock's, on each.
                    "date" => String::new(),
                    _ => v.clone(),
                };
                (k, v)
            })
            .collect()
    };
    let (ha, hb) = (fixed(&a.headers), fixed(&b.headers));
    if ha != hb {
        bail!("the lean floor's /v1/me headers differ from edgefront's:\n{ha:?}\n{hb:?}");
    }
    Ok(())
}

/// Each route's answer from `t` (status, headers, body), as bench/floor's `FLOOR_ANSWERS`.
async fn recorded_answers(t: &Target, token: &str) -> Result<String> {
    let mut answers = serde_json::Map::new();
    for route in ROUTES {
        let a = request(t, route, token, Duration::from_secs(30)).await?;
        if a.status != route.status {
            bail!(
                "{} {} on {}: HTTP {}",
                route.method,
                route.path,
                t.label,
                a.status
            );
        }
        answers.insert(
            route.path.to_owned(),
            json!({
                "status": a.status,
                "headers": a.headers,
                "body": String::from_utf8(a.body).context("a non-UTF-8 answer")?,
            }),
        );
    }
    Ok(Value::Object(answers).to_string())
}

/// edgefront's rate-limit Durable Object: binding and class (wrangler.toml's), kept in memory.
const RATE_LIMITER_DO: (&str, &str) = ("RATE_LIMITER", "RateLimiterObject");

/// A worker served by a fresh `workerd serve` of its `wrangler deploy --dry-run` bundle.
struct Workerd {
    proc: Proc,
    addr: String,
    /// What it wrote (stdout and stderr).
    log: PathBuf,
}

impl Workerd {
    /// Serves the bundle in `outdir` with `bindings` as text bindings, outbound fetches to any
    /// address (the stack is on loopback) and, with `durable`, a Durable Object namespace
    /// `(binding, class)` in memory. No KV binding (edgefront treats it as optional: its
    /// caches stay in the isolate's memory).
    async fn start(
        tools: &Tools,
        dir: &Path,
        name: &str,
        outdir: &Path,
        bindings: &[(String, String)],
        durable: Option<(&str, &str)>,
    ) -> Result<Self> {
        let served = Serve {
            network: true,
            durable,
            v8_flags: &[],
        };
        Self::serve(tools, dir, name, outdir, bindings, &served).await
    }

    /// [`Workerd::start`] with any [`Serve`].
    async fn serve(
        tools: &Tools,
        dir: &Path,
        name: &str,
        outdir: &Path,
        bindings: &[(String, String)],
        served: &Serve<'_>,
    ) -> Result<Self> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let config = outdir.join(format!("serve-{name}.capnp"));
        write_private(&config, &workerd_config(outdir, &addr, bindings, served)?)?;
        let log = dir.join(format!("workerd-{name}.log"));
        let mut cmd = Command::new(tools.node_bin.join("workerd"));
        cmd.arg("serve").arg(&config).current_dir(outdir);
        let mut proc = Proc::spawn(&format!("workerd ({name})"), &mut cmd, &log, None)?;
        wait_http(
            &mut proc,
            &format!("http://{addr}/healthz"),
            Duration::from_secs(60),
            Some(&log),
        )
        .await?;
        eprintln!("xtask: {name} on workerd {addr}");
        Ok(Self { proc, addr, log })
    }

    /// Its process group (workerd alone).
    fn pgid(&self) -> Option<u32> {
        Some(self.proc.pid())
    }
}

/// User and system CPU time, in seconds, of every process in process group `pgid` (every
/// thread of each), from `/proc`. `None` where `/proc` cannot tell.
fn group_cpu_seconds(pgid: u32) -> Option<f64> {
    // SAFETY: sysconf only reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    let mut total = 0u64;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((group, cpu)) = stat_group_cpu(&stat) {
            if group == pgid {
                total += cpu;
                found = true;
            }
        }
    }
    found.then(|| total as f64 / ticks as f64)
}

/// CPU µs per request without load, by route key, then target key.
type IdleCpu = BTreeMap<&'static str, BTreeMap<&'static str, f64>>;

/// Each plain workerd's CPU per request when requests come one at a time (each on a new
/// connection, the next sent when the last is answered), per route and target key. An isolate
/// that serves a request now and then starts each one with the CPU's caches holding other
/// work; under load (the wrk rounds) its code and data stay warm. A deployment with little
/// traffic per isolate pays the first figure.
async fn idle_cpu(targets: &[Target], token: &str) -> Result<IdleCpu> {
    let mut out = BTreeMap::new();
    for route in ROUTES {
        let mut per = BTreeMap::new();
        for t in targets {
            let Some(pgid) = t.pgid else { continue };
            let Some(before) = group_cpu_seconds(pgid) else {
                continue;
            };
            // An answer other than the route's (a refusal, an error) costs something else: the
            // figure is left out rather than reported for the wrong work.
            let want = t.status(route);
            let unexpected = sequential(t, route, token, IDLE_SAMPLES).await?;
            match group_cpu_seconds(pgid) {
                Some(after) if unexpected == 0 => {
                    per.insert(t.key, (after - before) * 1e6 / IDLE_SAMPLES as f64);
                }
                _ => eprintln!(
                    "  {} {}: {unexpected} of {IDLE_SAMPLES} answers were not HTTP {want}; no figure",
                    route.key, t.label
                ),
            }
        }
        out.insert(route.key, per);
    }
    Ok(out)
}

/// `n` requests of `route` to `t`, one after another, each on a new connection: how many
/// answers were not the route's status ([`Target::status`]).
async fn sequential(t: &Target, route: &Route, token: &str, n: u64) -> Result<u64> {
    let want = t.status(route);
    let mut unexpected = 0;
    for _ in 0..n {
        if request(t, route, token, Duration::from_secs(30))
            .await?
            .status
            != want
        {
            unexpected += 1;
        }
    }
    Ok(unexpected)
}

/// What a fresh isolate spent on one route: its start and first [`FRESH_REQUESTS`] requests.
struct Fresh {
    /// CPU of workerd's main thread, where the isolate runs requests, per request (µs).
    main_us: f64,
    /// CPU of workerd's other threads over those requests (ms): V8's background compiles
    /// (wasm recompiled with TurboFan once hot; JS optimised) and GC helpers.
    background_ms: f64,
    /// Wasm V8 recompiled with TurboFan from the start to the last of those requests: KiB of
    /// function bodies, and how many functions (`None` for a Worker without wasm).
    turbofan: Option<(f64, usize)>,
}

/// [`Fresh`] by route key, then target key.
type FreshIsolates = BTreeMap<&'static str, BTreeMap<&'static str, Fresh>>;

/// A Worker the fresh-isolate phase starts anew for each route.
struct FreshSpec<'a> {
    key: &'static str,
    label: &'static str,
    outdir: PathBuf,
    bindings: &'a [(String, String)],
    durable: Option<(&'a str, &'a str)>,
    /// As [`Target::routed`].
    routed: bool,
}

/// Each of `specs` on a fresh `workerd` per route, serving [`FRESH_REQUESTS`] sequential
/// requests. A deployment whose isolates each see few requests pays this, not the warm
/// figures: V8 first runs wasm with its baseline compiler (Liftoff) and recompiles a function
/// with TurboFan in the background once it is hot, whole. workerd runs with V8's
/// `--trace-wasm-compilation-times`, whose lines give what was recompiled.
async fn fresh_isolates(
    tools: &Tools,
    dir: &Path,
    specs: &[FreshSpec<'_>],
    token: &str,
) -> Result<FreshIsolates> {
    let mut out = BTreeMap::new();
    for route in ROUTES {
        let mut per = BTreeMap::new();
        for spec in specs {
            let served = Serve {
                network: true,
                durable: spec.durable,
                v8_flags: &["--trace-wasm-compilation-times"],
            };
            let name = format!("fresh-{}-{}", spec.key, route.key);
            let w = Workerd::serve(tools, dir, &name, &spec.outdir, spec.bindings, &served).await?;
            let t = Target {
                key: spec.key,
                label: spec.label.into(),
                addr: w.addr.clone(),
                routed: spec.routed,
                pgid: w.pgid(),
            };
            let pid = w.proc.pid();
            let before = thread_cpu_seconds(pid);
            let want = t.status(route);
            let unexpected = sequential(&t, route, token, FRESH_REQUESTS).await?;
            let after = thread_cpu_seconds(pid);
            let log = w.log.clone();
            drop(w);
            let turbofan = std::fs::read_to_string(&log)
                .ok()
                .and_then(|text| turbofan_bodies(&text));
            match (before, after) {
                (Some((m0, o0)), Some((m1, o1))) if unexpected == 0 => {
                    per.insert(
                        spec.key,
                        Fresh {
                            main_us: (m1 - m0) * 1e6 / FRESH_REQUESTS as f64,
                            background_ms: (o1 - o0) * 1e3,
                            turbofan,
                        },
                    );
                }
                _ => eprintln!(
                    "  {} {}: {unexpected} of {FRESH_REQUESTS} answers were not HTTP {want}, or \
                     /proc did not tell; no figure",
                    route.key, spec.label
                ),
            }
        }
        out.insert(route.key, per);
    }
    Ok(out)
}

/// CPU seconds of process `pid`'s main thread and of all its other threads, from
/// `/proc/<pid>/task`.
fn thread_cpu_seconds(pid: u32) -> Option<(f64, f64)> {
    // SAFETY: sysconf only reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    let (mut main, mut others) = (None, 0u64);
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, cpu)) = stat_group_cpu(&stat) else {
            continue;
        };
        if entry.file_name().to_str() == Some(pid.to_string().as_str()) {
            main = Some(cpu);
        } else {
            others += cpu;
        }
    }
    main.map(|m| (m as f64 / ticks as f64, others as f64 / ticks as f64))
}

/// From V8's `--trace-wasm-compilation-times` lines (`Compiled function …#12 using TurboFan,
/// took … bodysize 3456 codesize …`): KiB of wasm bodies compiled with TurboFan, and how many
/// compilations. `None` when no wasm was compiled at all (a JS Worker).
fn turbofan_bodies(log: &str) -> Option<(f64, usize)> {
    let mut any = false;
    let (mut bytes, mut n) = (0u64, 0usize);
    for line in log.lines().filter(|l| l.starts_with("Compiled function ")) {
        any = true;
        if !line.contains(" using TurboFan,") {
            continue;
        }
        let size = line
            .split_once("bodysize ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(size) = size {
            bytes += size;
            n += 1;
        }
    }
    any.then(|| (bytes as f64 / 1024.0, n))
}

/// A `/proc/<pid>/stat` line's process group and its user + system time in clock ticks. The
/// command name in parentheses may hold spaces and parentheses: fields count from the last `)`.
fn stat_group_cpu(stat: &str) -> Option<(u32, u64)> {
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state, ppid, pgrp (…), utime and stime are the 12th and 13th.
    let group = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((group, utime + stime))
}

/// The peer's settings, from the stack description: the `tenants` pool, the app role's SQL
/// proxy listener and the local S3.
fn peer_settings(d: &Value) -> Result<Vec<(String, String)>> {
    let s = |v: &Value| -> Result<String> {
        v.as_str()
            .map(str::to_owned)
            .with_context(|| format!("stack description lacks {v}"))
    };
    let issuer = &d["auth"]["issuers"][stack::TENANTS_ISSUER];
    Ok(vec![
        ("JWKS_URL".into(), s(&issuer["jwks_url"])?),
        ("ISSUER".into(), s(&issuer["issuer"])?),
        ("CLIENT_ID".into(), s(&issuer["client_id"])?),
        ("BASE_DOMAIN".into(), s(&d["base_domain"])?),
        ("ORIGIN_SQL_URL".into(), s(&d["origin"]["url"])?),
        (
            "DATABASE_URL".into(),
            s(&d["origin"]["app_connection_string"])?,
        ),
        ("S3_ENDPOINT".into(), s(&d["s3"]["endpoint"])?),
        ("S3_REGION".into(), s(&d["s3"]["region"])?),
        ("S3_BUCKET".into(), s(&d["s3"]["bucket"])?),
        ("S3_ACCESS_KEY_ID".into(), s(&d["s3"]["access_key_id"])?),
        (
            "S3_SECRET_ACCESS_KEY".into(),
            s(&d["s3"]["secret_access_key"])?,
        ),
    ])
}

/// An ID token of the seeded admin of the demo tenant (RS256, 2 hours), as `cargo xtask token`
/// mints it.
fn mint(stack_json: &Path) -> Result<String> {
    let out = Command::new("node")
        .current_dir(repo_root())
        .arg("wasm-tests/tools/mint.mjs")
        .arg("--stack")
        .arg(stack_json)
        .args([
            "--tenant", TENANT, "--role", ROLE, "--ttl", "2h", "--alg", "RS256",
        ])
        .output()
        .context("running node wasm-tests/tools/mint.mjs")?;
    if !out.status.success() {
        bail!(
            "minting a token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP/1.1 requests (checks, SQL counts, cold starts)

struct Answer {
    status: u16,
    /// The answer's headers, but those of its framing (`Content-Length`, `Transfer-Encoding`,
    /// `Connection`), which the runtime writes itself.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    elapsed: Duration,
}

async fn request(t: &Target, route: &Route, token: &str, timeout: Duration) -> Result<Answer> {
    let headers = t.headers(route, token);
    raw_request(
        &t.addr,
        route.method,
        t.path(route),
        &headers,
        route.body,
        timeout,
    )
    .await
    .with_context(|| format!("{} {} on {}", route.method, route.path, t.label))
}

/// One request on a new connection (`Connection: close`), timed from connecting to the end of
/// the answer.
async fn raw_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&str>,
    timeout: Duration,
) -> Result<Answer> {
    let fut = async {
        let started = Instant::now();
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let mut req = format!("{method} {path} HTTP/1.1\r\n");
        for (k, v) in headers {
            let _ = write!(req, "{k}: {v}\r\n");
        }
        if let Some(b) = body {
            let _ = write!(req, "Content-Length: {}\r\n", b.len());
        }
        req.push_str("Connection: close\r\n\r\n");
        if let Some(b) = body {
            req.push_str(b);
        }
        s.write_all(req.as_bytes()).await?;
        // Read up to the end of the answer (servers need not close at once, even when asked).
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        while !answer_complete(&buf) {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let elapsed = started.elapsed();
        let head_end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("no HTTP header end")?;
        let head = String::from_utf8_lossy(&buf[..head_end]);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no HTTP status")?;
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "content-length" | "transfer-encoding" | "connection"
                )
            })
            .collect();
        anyhow::Ok(Answer {
            status,
            headers,
            body: buf[head_end + 4..].to_vec(),
            elapsed,
        })
    };
    tokio::time::timeout(timeout, fut)
        .await
        .context("timed out")?
}

/// Whether `buf` holds a whole HTTP/1.1 answer: its headers and a body of `Content-Length`
/// bytes, or a chunked body up to its last chunk.
fn answer_complete(buf: &[u8]) -> bool {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let body = &buf[head_end + 4..];
    for line in head.lines() {
        if let Some(v) = line.strip_prefix("content-length:") {
            return v.trim().parse::<usize>().is_ok_and(|n| body.len() >= n);
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return body.ends_with(b"0\r\n\r\n");
        }
    }
    // Neither: the body ends when the server closes.
    false
}

/// (sql_requests, sql_batches) the SQL proxy has served.
/// The SQL proxy's counters (`GET /_stats`).
struct OriginStats {
    requests: u64,
    batches: u64,
    /// Time spent answering `/sql`, µs.
    micros: u64,
    /// The body of the latest `/sql` request.
    last_sql: Option<String>,
}

async fn origin_stats(url: &str) -> Result<OriginStats> {
    let rest = url.trim_start_matches("http://");
    let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let headers = [("Host".to_owned(), addr.to_owned())];
    let a = raw_request(addr, "GET", path, &headers, None, Duration::from_secs(10)).await?;
    // Chunked or not, the JSON object is the body's only `{…}`.
    let text = String::from_utf8_lossy(&a.body);
    let json = &text[text.find('{').unwrap_or(0)..=text.rfind('}').unwrap_or(0)];
    let v: Value = serde_json::from_str(json).context("the SQL proxy's stats")?;
    Ok(OriginStats {
        requests: v["sql_requests"].as_u64().unwrap_or(0),
        batches: v["sql_batches"].as_u64().unwrap_or(0),
        micros: v["sql_micros"].as_u64().unwrap_or(0),
        last_sql: v["last_sql"].as_str().map(str::to_owned),
    })
}

// ---------------------------------------------------------------------------------------------
// The bare batch: a route's SQL straight to the proxy

/// The route whose batch is also measured alone.
const BARE_ROUTE: &str = "catalog";

/// The batch edgefront (workerd) made for [`BARE_ROUTE`] (the proxy's `last_sql`), sent to the
/// proxy as edgefront sends it (its URL, `Neon-*` headers, connection string and token), without
/// edgefront: the issue's "bare proxy batch" the route is compared with.
struct BareBatch {
    addr: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl BareBatch {
    fn new(edge_env: &[(String, String)], body: Option<String>) -> Result<Self> {
        let setting = |k: &str| {
            edge_env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        let url = setting("ORIGIN_SQL_URL").context("no ORIGIN_SQL_URL")?;
        let rest = url
            .strip_prefix("http://")
            .context("ORIGIN_SQL_URL is not http://")?;
        let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut headers = vec![
            ("Host".to_owned(), addr.to_owned()),
            ("Content-Type".into(), "application/json".into()),
            ("Neon-Array-Mode".into(), "true".into()),
            (
                "Neon-Connection-String".into(),
                setting("DATABASE_URL").context("no DATABASE_URL")?,
            ),
        ];
        if let Some(token) = setting("ORIGIN_SQL_TOKEN") {
            headers.push(("Authorization".into(), format!("Bearer {token}")));
        }
        let body = body.context("the SQL proxy kept no batch of the storefront route")?;
        if !body.starts_with("{\"queries\"") {
            bail!("the storefront route's SQL was not one batch: {body}");
        }
        Ok(BareBatch {
            addr: addr.to_owned(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_owned()
            },
            headers,
            body,
        })
    }

    async fn request(&self) -> Result<Answer> {
        raw_request(
            &self.addr,
            "POST",
            &self.path,
            &self.headers,
            Some(&self.body),
            Duration::from_secs(30),
        )
        .await
        .context("the bare batch")
    }

    fn lua_script(&self) -> String {
        let mut s = "wrk.method = \"POST\"\n".to_owned();
        for (k, v) in &self.headers {
            let _ = writeln!(s, "wrk.headers[\"{k}\"] = \"{v}\"");
        }
        // A long-bracket string whose level the batch's text does not contain.
        let mut eq = String::new();
        while self.body.contains(&format!("]{eq}]")) {
            eq.push('=');
        }
        let _ = writeln!(s, "wrk.body = [{eq}[{}]{eq}]", self.body);
        s
    }

    async fn load(&self, wrk: &Path, script: &Path, cfg: &Settings) -> Result<WrkRun> {
        let url = format!("http://{}{}", self.addr, self.path);
        load_one(wrk, &url, script, cfg, "bare batch (wrk → SQL proxy)").await
    }

    /// bench/forward's bindings: where to send the batch, with which headers (JSON), and it.
    fn forwarder_settings(&self) -> Result<Vec<(String, String)>> {
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .filter(|(k, _)| k != "Host")
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        Ok(vec![
            (
                "SQL_URL".into(),
                format!("http://{}{}", self.addr, self.path),
            ),
            ("SQL_HEADERS".into(), serde_json::to_string(&headers)?),
            ("SQL_BODY".into(), self.body.clone()),
        ])
    }
}

/// The bare batch's numbers: sequential (`sql`: `request_us`, `proxy_us_per_request`) and
/// under load (one wrk run per round).
struct BareResult<'a> {
    sql: &'a Value,
    runs: &'a [WrkRun],
    /// The same batch through bench/forward, under the same load.
    forward: &'a [WrkRun],
}

const FORWARD_LABEL: &str = "batch forwarder (workerd)";

fn scripts_dir(dir: &Path) -> Result<PathBuf> {
    let scripts = dir.join("wrk");
    std::fs::create_dir_all(&scripts)?;
    Ok(scripts)
}

/// One load run (warm-up, then measured) of a URL outside the targets.
async fn load_one(
    wrk: &Path,
    url: &str,
    script: &Path,
    cfg: &Settings,
    label: &str,
) -> Result<WrkRun> {
    if cfg.warmup > 0 {
        wrk_run(wrk, url, script, cfg.warmup).await?;
    }
    let r = wrk_run(wrk, url, script, cfg.seconds).await?;
    eprintln!(
        "  {BARE_ROUTE:<10} {label:<28} {:>8.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs",
        r.rps, r.p50_us, r.p99_us
    );
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// wrk

#[derive(Clone, Default)]
struct WrkRun {
    rps: f64,
    requests: u64,
    /// CPU time of the target's runtime (its process group) per request, µs, during the run.
    cpu_us: Option<f64>,
    p50_us: f64,
    p99_us: f64,
    non_2xx: u64,
    socket_errors: u64,
    bad: u64,
}

/// The request wrk repeats: method, headers and body set once (no per-request Lua).
fn lua_script(t: &Target, route: &Route, token: &str) -> String {
    let mut s = format!("wrk.method = \"{}\"\n", route.method);
    for (k, v) in t.headers(route, token) {
        let _ = writeln!(s, "wrk.headers[\"{k}\"] = \"{v}\"");
    }
    if let Some(b) = route.body {
        let _ = writeln!(s, "wrk.body = [[{b}]]");
    }
    s
}

async fn wrk_run(wrk: &Path, url: &str, script: &Path, seconds: u64) -> Result<WrkRun> {
    let out = tokio::process::Command::new(wrk)
        .args([
            "-t",
            &THREADS.to_string(),
            "-c",
            &CONNECTIONS.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--timeout",
            "10s",
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk {url} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("reading wrk's output for {url}:\n{text}"))
}

fn parse_wrk(text: &str) -> Result<WrkRun> {
    let mut r = WrkRun::default();
    let mut have = (false, false, false);
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v, ..] => {
                r.rps = v.parse()?;
                have.0 = true;
            }
            ["50%", v, ..] => {
                r.p50_us = duration_us(v)?;
                have.1 = true;
            }
            ["99%", v, ..] => {
                r.p99_us = duration_us(v)?;
                have.2 = true;
            }
            [n, "requests", "in", ..] => r.requests = n.parse()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = n.parse()?,
            ["Socket", "errors:", rest @ ..] => {
                r.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    if have != (true, true, true) {
        bail!("no Requests/sec, 50% or 99% line");
    }
    r.bad = r.non_2xx + r.socket_errors;
    Ok(r)
}

/// wrk's durations: `812.00us`, `1.20ms`, `2.00s`.
fn duration_us(v: &str) -> Result<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else {
        bail!("unknown duration {v}")
    };
    Ok(num.parse::<f64>()? * scale)
}

struct RouteResult {
    route_key: &'static str,
    /// Per target (same order as the targets), one run per round.
    runs: Vec<Vec<WrkRun>>,
}

/// Over a target's rounds: the median round's req/s, p50, p99 and CPU per request (a round in
/// which the shared machine stalled moves a mean, not a median of three or more), and the range
/// of the rounds' req/s.
struct Summary {
    rps: f64,
    rps_min: f64,
    rps_max: f64,
    p50_us: f64,
    p99_us: f64,
    bad: u64,
    /// CPU µs per request of the target's runtime, the median round's (none where the
    /// benchmark does not run the runtime alone).
    cpu_us: Option<f64>,
}

impl Summary {
    /// A table's req/s cell: the median round's, and the rounds' range when there were several.
    fn rps_cell(&self, rounds: u32) -> String {
        if rounds > 1 {
            format!(
                "{} ({}–{})",
                thousands(self.rps),
                thousands(self.rps_min),
                thousands(self.rps_max)
            )
        } else {
            thousands(self.rps)
        }
    }

    fn json(&self) -> Value {
        json!({
            "rps": self.rps, "rps_min": self.rps_min, "rps_max": self.rps_max,
            "p50_us": self.p50_us, "p99_us": self.p99_us, "errors": self.bad,
            "per_request_us_c": per_request_us(self.rps), "cpu_us_per_request": self.cpu_us,
        })
    }
}

fn summarize(runs: &[WrkRun]) -> Summary {
    let middle = |of: fn(&WrkRun) -> f64| median(&mut runs.iter().map(of).collect::<Vec<_>>());
    Summary {
        rps: middle(|r| r.rps),
        rps_min: runs.iter().map(|r| r.rps).fold(f64::INFINITY, f64::min),
        rps_max: runs.iter().map(|r| r.rps).fold(0.0, f64::max),
        p50_us: middle(|r| r.p50_us),
        p99_us: middle(|r| r.p99_us),
        bad: runs.iter().map(|r| r.bad).sum(),
        cpu_us: cpu_per_request(runs),
    }
}

/// The median round's CPU µs per request; `None` unless every round was measured.
fn cpu_per_request(runs: &[WrkRun]) -> Option<f64> {
    let mut each = runs
        .iter()
        .map(|r| r.cpu_us)
        .collect::<Option<Vec<f64>>>()?;
    (!each.is_empty()).then(|| median(&mut each))
}

/// Time one request occupies a connection, in µs: with `c` connections kept busy, Little's
/// law gives c·1e6/rps.
fn per_request_us(rps: f64) -> f64 {
    f64::from(CONNECTIONS) * 1e6 / rps
}

// ---------------------------------------------------------------------------------------------
// Bundles: what `wrangler deploy` would upload (built offline with --dry-run)

struct Bundle {
    key: &'static str,
    label: String,
    files: Vec<(PathBuf, u64, u64)>,
    /// The `wrangler deploy --dry-run --outdir` directory: modules for a fresh workerd.
    outdir: Option<PathBuf>,
}

impl Bundle {
    fn totals(&self) -> (u64, u64) {
        self.files
            .iter()
            .fold((0, 0), |(r, g), (_, fr, fg)| (r + fr, g + fg))
    }
}

struct Bundles(Vec<Bundle>);

impl Bundles {
    fn build(tools: &Tools, dir: &Path) -> Result<Self> {
        let mut out = Vec::new();
        for (key, label, config) in [
            ("hello", "hello-world worker (bench/hello)", "bench/hello/wrangler.toml"),
            (
                "forward",
                "batch forwarder (bench/forward)",
                "bench/forward/wrangler.toml",
            ),
            (
                "floor",
                "Rust floor (bench/floor: worker-build's glue + wasm behind edgefront's entry, no work)",
                "bench/floor/wrangler.toml",
            ),
            (
                "peer",
                "TypeScript peer (bench/peer, wrangler's esbuild bundle, unminified as wrangler deploys it by default)",
                "bench/peer/wrangler.toml",
            ),
            (
                "edge_workers",
                "edgefront worker (wrangler deploy bundle: entry + glue JS + index_bg.wasm)",
                "wrangler.toml",
            ),
        ] {
            let outdir = dir.join(format!("bundle-{key}"));
            artifacts::deploy_bundle(tools, config, &outdir, &dir.join("wrangler-deploy-logs"))?;
            let mut files = Vec::new();
            for entry in std::fs::read_dir(&outdir)? {
                let p = entry?.path();
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
                if matches!(ext, "js" | "mjs" | "wasm") {
                    let (raw, gz) = artifacts::sizes(&p)?;
                    files.push((p, raw, gz));
                }
            }
            files.sort();
            out.push(Bundle {
                key,
                label: label.into(),
                files,
                outdir: Some(outdir),
            });
        }
        // The worker's own artifacts as worker-build leaves them.
        let build = repo_root().join("edge/worker/build");
        let mut files = Vec::new();
        for p in [
            artifacts::worker_wasm(),
            build.join("index.js"),
            repo_root().join("edge/worker/entry.mjs"),
            repo_root().join("edge/worker/src/entry.js"),
        ] {
            if p.exists() {
                let (raw, gz) = artifacts::sizes(&p)?;
                files.push((p, raw, gz));
            }
        }
        out.push(Bundle {
            key: "edge_worker_build",
            label:
                "edgefront worker as built (edge/worker/build: index_bg.wasm + JS glue; its entry)"
                    .into(),
            files,
            outdir: None,
        });
        for build in [SpinBuild::Portable, SpinBuild::SpinKv] {
            let p = build.artifact();
            if p.exists() {
                let (raw, gz) = artifacts::sizes(&p)?;
                out.push(Bundle {
                    key: if build == SpinBuild::Portable {
                        "edge_spin_portable"
                    } else {
                        "edge_spin_kv"
                    },
                    label: format!("edgefront Spin component ({} build)", build.name()),
                    files: vec![(p, raw, gz)],
                    outdir: None,
                });
            }
        }
        Ok(Self(out))
    }

    fn get(&self, key: &str) -> Option<&Bundle> {
        self.0.iter().find(|b| b.key == key)
    }
}

// ---------------------------------------------------------------------------------------------
// Cold starts

#[derive(Default)]
struct ColdStart {
    key: &'static str,
    label: String,
    how: String,
    /// Per fresh start: spawn → port accepting (ms), first request (ms), median warm request (ms).
    starts: Vec<(f64, f64, f64)>,
}

async fn wait_listening(addr: &str, proc: &mut Proc, log: &Path, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Err(e) = proc.check_alive() {
            return Err(e.context(crate::proc::log_tail(Some(log))));
        }
        if started.elapsed() > timeout {
            bail!(
                "{} did not listen on {addr}\n{}",
                proc.name(),
                crate::proc::log_tail(Some(log))
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One fresh start: spawn, wait for the port (a TCP connect, no HTTP), time the first
/// `GET /healthz`, then the median of 20 more.
async fn one_cold_start(
    name: &str,
    mut cmd: Command,
    addr: &str,
    log: &Path,
) -> Result<(f64, f64, f64)> {
    let spawned = Instant::now();
    let mut proc = Proc::spawn(name, &mut cmd, log, None)?;
    wait_listening(addr, &mut proc, log, Duration::from_secs(60)).await?;
    let listening = spawned.elapsed();
    let host = format!(
        "{TENANT}.{}:{}",
        stack::BASE_DOMAIN,
        addr.rsplit(':').next().unwrap_or("")
    );
    let headers = [("Host".to_owned(), host)];
    let first = raw_request(
        addr,
        "GET",
        "/healthz",
        &headers,
        None,
        Duration::from_secs(30),
    )
    .await?;
    if first.status != 200 {
        bail!(
            "{name}: first /healthz answered {}: {}\n{}",
            first.status,
            String::from_utf8_lossy(&first.body),
            crate::proc::log_tail(Some(log))
        );
    }
    let mut warm = Vec::new();
    for _ in 0..20 {
        let a = raw_request(
            addr,
            "GET",
            "/healthz",
            &headers,
            None,
            Duration::from_secs(30),
        )
        .await?;
        warm.push(a.elapsed.as_secs_f64() * 1e3);
    }
    warm.sort_by(f64::total_cmp);
    drop(proc);
    Ok((
        listening.as_secs_f64() * 1e3,
        first.elapsed.as_secs_f64() * 1e3,
        warm[warm.len() / 2],
    ))
}

async fn cold_starts(
    cfg: &Settings,
    tools: &Tools,
    spin_host: &SpinHost,
    stack: &Stack,
    bundles: &Bundles,
    dir: &Path,
) -> Result<Vec<ColdStart>> {
    let workerd = tools.node_bin.join("workerd");
    let cold_dir = dir.join("cold");
    std::fs::create_dir_all(&cold_dir)?;
    let edge_settings: Vec<(String, String)> = stack
        .edge_settings(Runtime::Workers)
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let mut out = Vec::new();
    for (key, label, bindings) in [
        ("hello", "hello-world (workerd)", Vec::new()),
        (
            "peer",
            "TypeScript peer (workerd)",
            peer_settings(stack.describe())?,
        ),
        ("edge_workers", "edgefront (workerd)", edge_settings),
    ] {
        let bundle = bundles.get(key).context("bundle")?;
        let outdir = bundle.outdir.as_ref().context("bundle outdir")?;
        let mut cs = ColdStart {
            key,
            label: label.into(),
            how: "a fresh `workerd serve` process (the pinned wrangler's workerd) of the bundle \
                  `wrangler deploy --dry-run` produced, vars as text bindings, no KV or Durable \
                  Object bindings (the edge treats them as optional; /healthz uses none)"
                .into(),
            starts: Vec::new(),
        };
        for i in 0..cfg.cold_starts {
            let port = free_port()?;
            let addr = format!("127.0.0.1:{port}");
            // Beside the modules: workerd resolves `embed` paths relative to the config file.
            let config = outdir.join(format!("cold-{i}.capnp"));
            write_private(
                &config,
                &workerd_config(outdir, &addr, &bindings, &Serve::default())?,
            )?;
            let mut cmd = Command::new(&workerd);
            cmd.arg("serve").arg(&config).current_dir(outdir);
            let log = cold_dir.join(format!("{key}-{i}.log"));
            cs.starts
                .push(one_cold_start(&format!("workerd ({key})"), cmd, &addr, &log).await?);
        }
        out.push(cs);
    }
    // Spin: a fresh `wasmtime serve` (or `spin up`) exactly as the stack starts it.
    let mut cs = ColdStart {
        key: "edge_spin",
        label: format!("edgefront (Spin, {})", spin_host.name()),
        how: format!(
            "a fresh `{}` process as the stack starts it (same flags and settings)",
            spin_host.name()
        ),
        starts: Vec::new(),
    };
    for i in 0..cfg.cold_starts {
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let cmd = spin_host.command(
            tools,
            &cold_dir.join(format!("spin-{i}")),
            &addr,
            stack.edge_settings(Runtime::Spin),
            stack.outbound(),
        )?;
        let log = cold_dir.join(format!("spin-{i}.log"));
        cs.starts
            .push(one_cold_start(spin_host.name(), cmd, &addr, &log).await?);
    }
    out.push(cs);
    Ok(out)
}

/// What a workerd configuration adds to a worker's modules and text bindings.
#[derive(Default)]
struct Serve<'a> {
    /// Outbound fetches may reach private and loopback addresses (workerd's default network
    /// allows public ones only).
    network: bool,
    /// A Durable Object namespace `(binding, class)`, stored in memory.
    durable: Option<(&'a str, &'a str)>,
    /// V8 flags (workerd's `v8Flags`), for measurement only.
    v8_flags: &'a [&'a str],
}

/// The JS and wasm modules of deploy bundle `from`, copied into `to` (emptied first). workerd
/// configurations are written beside the modules they embed, so a bundle served again gets a
/// directory of its own.
fn copy_bundle(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to).with_context(|| format!("emptying {}", to.display()))?;
    }
    std::fs::create_dir_all(to)?;
    let mut copied = 0;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let p = entry?.path();
        if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("js" | "mjs" | "wasm")
        ) {
            if let Some(name) = p.file_name() {
                std::fs::copy(&p, to.join(name))?;
                copied += 1;
            }
        }
    }
    if copied == 0 {
        bail!("{}: no JS or wasm module to copy", from.display());
    }
    Ok(())
}

/// A workerd configuration serving the modules of a `wrangler deploy --dry-run` directory
/// (the main module first) on `addr`, with `bindings` as text bindings. It must be written into
/// that directory (`embed` paths are relative to the configuration).
fn workerd_config(
    outdir: &Path,
    addr: &str,
    bindings: &[(String, String)],
    serve: &Serve<'_>,
) -> Result<String> {
    let mut modules = Vec::new();
    for entry in std::fs::read_dir(outdir)? {
        let p = entry?.path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        match p.extension().and_then(|e| e.to_str()) {
            Some("js" | "mjs") => modules.push((name, "esModule")),
            Some("wasm") => modules.push((name, "wasm")),
            _ => {}
        }
    }
    // The entry point: wrangler writes one JS module (index.js, or entry.js for a Worker whose
    // `main` is entry.mjs) beside any wasm modules it imports.
    modules.sort_by_key(|(n, kind)| (*kind != "esModule", n.clone()));
    let js = modules.iter().filter(|(_, k)| *k == "esModule").count();
    if js != 1 {
        bail!(
            "{}: expected one JS module, found {modules:?}",
            outdir.display()
        );
    }
    let capnp = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut c = String::from("using Workerd = import \"/workerd/workerd.capnp\";\n\n");
    c.push_str(
        "const config :Workerd.Config = (\n  services = [ (name = \"main\", worker = .worker)",
    );
    if serve.network {
        c.push_str(
            ",\n    (name = \"internet\", network = (allow = [\"public\", \"private\", \"local\"]))",
        );
    }
    c.push_str(" ],\n");
    let _ = writeln!(
        c,
        "  sockets = [ (name = \"http\", address = {}, http = (), service = \"main\") ],",
        capnp(addr)
    );
    if !serve.v8_flags.is_empty() {
        let flags: Vec<String> = serve.v8_flags.iter().map(|f| capnp(f)).collect();
        let _ = writeln!(c, "  v8Flags = [ {} ],", flags.join(", "));
    }
    c.push_str(");\n\n");
    c.push_str("const worker :Workerd.Worker = (\n  modules = [\n");
    for (name, kind) in &modules {
        let _ = writeln!(
            c,
            "    (name = {}, {kind} = embed {}),",
            capnp(name),
            capnp(name)
        );
    }
    c.push_str("  ],\n  bindings = [\n");
    for (k, v) in bindings {
        let _ = writeln!(c, "    (name = {}, text = {}),", capnp(k), capnp(v));
    }
    if let Some((binding, class)) = serve.durable {
        let _ = writeln!(
            c,
            "    (name = {}, durableObjectNamespace = {}),",
            capnp(binding),
            capnp(class)
        );
    }
    c.push_str("  ],\n");
    if let Some((_, class)) = serve.durable {
        let _ = writeln!(
            c,
            "  durableObjectNamespaces = [ (className = {}, uniqueKey = {}) ],\n  \
             durableObjectStorage = (inMemory = void),",
            capnp(class),
            capnp(&format!("edgefront-bench-{class}"))
        );
    }
    c.push_str("  compatibilityDate = \"2026-04-20\",\n);\n");
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// Machine and versions

fn first_line(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|| "?".into())
}

fn versions(tools: &Tools, wrk: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("rustc", first_line(Command::new("rustc").arg("-V"))),
        ("node", first_line(Command::new("node").arg("--version"))),
        (
            "wrangler",
            first_line(
                Command::new(tools.node_bin.join("wrangler"))
                    .arg("--version")
                    .env("WRANGLER_SEND_METRICS", "false"),
            ),
        ),
        (
            "workerd",
            first_line(Command::new(tools.node_bin.join("workerd")).arg("--version")),
        ),
        (
            "wasmtime",
            first_line(Command::new(&tools.wasmtime).arg("--version")),
        ),
        ("wrk", first_line(Command::new(wrk).arg("-v"))),
    ]
}

fn machine() -> Vec<(&'static str, String)> {
    let lscpu = Command::new("lscpu")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let field = |name: &str| {
        lscpu
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| "?".into())
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    vec![
        ("cpu", field("Model name:")),
        ("cores (available to this process)", cores),
        (
            "load average at the end",
            first_line(Command::new("cat").arg("/proc/loadavg")),
        ),
        (
            "date",
            first_line(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Report

struct Report<'a> {
    cfg: &'a Settings,
    targets: &'a [Target],
    results: &'a [RouteResult],
    sql: &'a serde_json::Map<String, Value>,
    idle_cpu: &'a IdleCpu,
    fresh: &'a FreshIsolates,
    bare: BareResult<'a>,
    cold: &'a [ColdStart],
    bundles: &'a Bundles,
    versions: &'a [(&'static str, String)],
    machine: &'a [(&'static str, String)],
    spin_served_by: &'a str,
}

fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

/// The middle value, or the mean of the two middle ones; NaN for none.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match (v.get(n / 2), n % 2) {
        (Some(&upper), 0) => (v.get(n / 2 - 1).copied().unwrap_or(upper) + upper) / 2.0,
        (Some(&mid), _) => mid,
        (None, _) => f64::NAN,
    }
}

impl Report<'_> {
    fn summaries(&self, r: &RouteResult) -> Vec<Summary> {
        r.runs.iter().map(|runs| summarize(runs)).collect()
    }

    /// [`BARE_ROUTE`]'s batch alone under the same load, and each target's time per request
    /// against it (the issue's "≤ 1.5× the bare proxy batch it makes").
    fn bare_rows(&self, m: &mut String, sums: &[Summary]) {
        let b = summarize(self.bare.runs);
        let f = summarize(self.bare.forward);
        for (label, s) in [
            (
                "bare batch: edgefront's batch straight to the SQL proxy (wrk → proxy, no worker)",
                &b,
            ),
            (
                "batch forwarder (workerd): a Worker that only sends the same batch and returns the answer (bench/forward)",
                &f,
            ),
        ] {
            let _ = writeln!(
                m,
                "| {label} | {} | {:.0} | {:.0} | — | — | — | — | — | 1.00 | {} |",
                s.rps_cell(self.cfg.rounds),
                s.p50_us,
                s.p99_us,
                s.bad
            );
        }
        let _ = writeln!(
            m,
            "\n**Against the bare batch** (same load): the batch edgefront (workerd) sent for this \
             route (the proxy's copy of its last `/sql` body), POSTed by wrk straight to the proxy \
             with edgefront's headers, holds a connection {:.0} µs per request \
             ({CONNECTIONS}·1e6/rps). Each target's time per request against it:\n",
            per_request_us(b.rps)
        );
        let _ = writeln!(
            m,
            "- {FORWARD_LABEL} (one fetch, nothing else): {:.0} µs, {:.2}× the bare batch",
            per_request_us(f.rps),
            per_request_us(f.rps) / per_request_us(b.rps)
        );
        for (t, s) in self
            .targets
            .iter()
            .zip(sums)
            .filter(|(t, _)| t.routed && !t.key.starts_with("floor_"))
        {
            let _ = writeln!(
                m,
                "- {}: {:.0} µs, {:.2}× the bare batch",
                t.label,
                per_request_us(s.rps),
                per_request_us(s.rps) / per_request_us(b.rps)
            );
        }
    }

    /// CPU per request one request at a time, against the same under load.
    fn idle_cpu_table(&self, m: &mut String) {
        let _ = writeln!(
            m,
            "\n## CPU per request without load\n\n\
             Each plain workerd's CPU time (user + system, from `/proc`) over {IDLE_SAMPLES} \
             sequential requests per route and target, each on a new connection, the next sent \
             when the last is answered; beside it the median load round's. An isolate that \
             serves a request now and then starts each one with the CPU's caches holding other \
             work: a deployment with little traffic per isolate pays the first column. Marginal: \
             over hello-world's, the same way.\n\n\
             | route | target | CPU µs/req without load | marginal | under load | marginal | without ÷ under |\n\
             |---|---|---:|---:|---:|---:|---:|"
        );
        for (route, r) in ROUTES.iter().zip(self.results) {
            let Some(idle) = self.idle_cpu.get(route.key) else {
                continue;
            };
            let sums = self.summaries(r);
            let loaded = |key: &str| {
                self.targets
                    .iter()
                    .zip(&sums)
                    .find(|(t, _)| t.key == key)
                    .and_then(|(_, s)| s.cpu_us)
            };
            let (idle_hello, loaded_hello) = (idle.get("hello").copied(), loaded("hello"));
            for t in self.targets {
                let Some(&cpu) = idle.get(t.key) else {
                    continue;
                };
                let under = loaded(t.key);
                let fmt = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.0}"));
                let (idle_marginal, loaded_marginal) = if t.key == "hello" {
                    (None, None)
                } else {
                    (
                        idle_hello.map(|h| cpu - h),
                        under.zip(loaded_hello).map(|(u, h)| u - h),
                    )
                };
                let _ = writeln!(
                    m,
                    "| `{} {}` | {} | {cpu:.0} | {} | {} | {} | {} |",
                    route.method,
                    route.path,
                    t.label,
                    fmt(idle_marginal),
                    fmt(under),
                    fmt(loaded_marginal),
                    under.map_or_else(|| "—".to_owned(), |u| format!("{:.2}", cpu / u)),
                );
            }
        }
    }

    fn fresh_table(&self, m: &mut String) {
        let _ = writeln!(
            m,
            "\n## A fresh isolate's first {} requests\n\n\
             Per route and target, a new `workerd` serves them sequentially \
             (each on a new connection). Main thread: the CPU where the isolate runs requests, \
             per request, against the warm figures above; V8 runs new wasm with its baseline \
             compiler until it recompiles the hot functions. Background: the other threads' CPU \
             over the requests (V8's optimising compiles, GC helpers). TurboFan: the wasm V8 \
             recompiled from the start to the last request (its \
             `--trace-wasm-compilation-times`), KiB of function bodies and how many.\n\n\
             | route | target | main thread µs/req | marginal | background ms | TurboFan |\n\
             |---|---|---:|---:|---:|---:|",
            thousands(FRESH_REQUESTS as f64)
        );
        for route in ROUTES {
            let Some(per) = self.fresh.get(route.key) else {
                continue;
            };
            let hello = per.get("hello").map(|f| f.main_us);
            // In the targets' order: hello-world, the peer, edgefront.
            for t in self.targets {
                let Some(f) = per.get(t.key) else {
                    continue;
                };
                let label = &t.label;
                let marginal = match hello {
                    Some(h) if t.key != "hello" => format!("{:.0}", f.main_us - h),
                    _ => "—".to_owned(),
                };
                let _ = writeln!(
                    m,
                    "| `{} {}` | {label} | {:.0} | {marginal} | {:.0} | {} |",
                    route.method,
                    route.path,
                    f.main_us,
                    f.background_ms,
                    f.turbofan
                        .map_or_else(|| "—".to_owned(), |(kib, n)| format!("{kib:.1} KiB ({n})")),
                );
            }
        }
    }

    /// Sequential requests of the routes that make SQL: the whole request against the proxy's
    /// own time for its SQL.
    fn sql_table(&self, m: &mut String) {
        let _ = writeln!(
            m,
            "\n## Requests against the SQL they make (sequential, no load)\n\n\
             The same {SQL_SAMPLES} sequential requests per route and target: the mean request time \
             as the client sees it, the SQL proxy's own time for the request's SQL (`/_stats` \
             `sql_micros`: from a `/sql` request's arrival to its answer, so the bare batch \
             without the caller's HTTP), and their ratio.\n\n\
             | route | target | request µs | proxy µs | × proxy |\n|---|---|---:|---:|---:|"
        );
        for route in ROUTES {
            for t in self.targets.iter().filter(|t| t.routed) {
                let Some(v) = self.sql[route.key].get(t.key) else {
                    continue;
                };
                let (Some(req), Some(proxy)) =
                    (v["request_us"].as_f64(), v["proxy_us_per_request"].as_f64())
                else {
                    continue;
                };
                if proxy <= 0.0 {
                    continue;
                }
                let _ = writeln!(
                    m,
                    "| `{} {}` | {} | {req:.0} | {proxy:.0} | {:.2} |",
                    route.method,
                    route.path,
                    t.label,
                    req / proxy
                );
            }
            if route.key == BARE_ROUTE {
                let v = self.bare.sql;
                if let (Some(req), Some(proxy)) =
                    (v["request_us"].as_f64(), v["proxy_us_per_request"].as_f64())
                {
                    let _ = writeln!(
                        m,
                        "| `{} {}` | bare batch: its SQL straight to the proxy (no worker) | {req:.0} | {proxy:.0} | {:.2} |",
                        route.method,
                        route.path,
                        req / proxy.max(1.0)
                    );
                }
            }
        }
    }

    fn markdown(&self) -> String {
        let mut m = String::new();
        let c = self.cfg;
        let _ = writeln!(
            m,
            "# edgefront vs a TypeScript peer: `cargo xtask bench --peer`\n"
        );
        for (k, v) in self.machine.iter().chain(self.versions.iter()) {
            let _ = writeln!(m, "- {k}: {v}");
        }
        let _ = writeln!(
            m,
            "\nLoad: wrk, {THREADS} thread, {CONNECTIONS} connections, keep-alive, on loopback to each runtime's \
             own port (workerd's, never wrangler dev's proxy; wasmtime's). Per route and target: \
             {} s warm-up, then {} s measured; {} round(s), the order of targets alternating \
             between rounds and routes. req/s, p50/p99 (wrk `--latency` percentiles) and CPU are the \
             median round's (the mean of the two middle rounds for an even count); req/s gives \
             the rounds' range in brackets. Every target gets the same \
             request (method, Host `{TENANT}.localhost`, headers, body); the hello-world worker \
             answers it at `/` with `ok`, the Rust floor at `/` with `{{\"status\":\"ok\"}}`.\n\n\
             **The Rust floor** (`bench/floor`) is a wasm Worker built exactly like edgefront's \
             (the same `worker` crate, worker-build with its glue and profile, edgefront's entry, a `fetch` \
             export that returns the `Response` itself) that does nothing: every request gets \
             edgefront's `/healthz` answer at once. Its marginal cost is what any Rust Worker \
             built this way pays per request before doing any work; on `/healthz` it bounds what \
             edgefront can reach. **`LOG_LEVEL` off** is the same edgefront bundle on its own \
             workerd without the request's JSON log line (the peer writes none). **The Rust \
             floor replaying edgefront's answers** is `bench/floor` again, given what that quiet \
             edgefront answered each route before the load (status, headers, body): it reads the \
             request's URL and headers into wasm as edgefront's adapter does and sends the \
             recorded answer as edgefront's adapter does. Against the quiet edgefront, the \
             difference is edgefront's own work (routing, sign-in, tenant, rate limit, SQL, \
             building the answer); what the replay costs is the price of receiving this request \
             and sending this answer from wasm. **The Rust floor doing `/v1/me`'s work leanly** \
             is `bench/floor` a third time: it replays every route but `/v1/me`, which it \
             answers by doing that route's work from in-memory tables filled from edgefront's \
             recorded answer (the head scanned for `Host` and `Authorization`, the tenant found \
             by host, the token among verified tokens and its expiry checked, the caller's role \
             found, the request counted against the recorded limits in fixed windows in the \
             isolate's memory and its `RateLimit` header written, a request id drawn, the \
             document written by core's JSON writer), with no log line: what any Rust Worker \
             built this way pays for that route's work, done with the fewest structures.",
            c.warmup, c.seconds, c.rounds
        );
        let _ = writeln!(
            m,
            "\n**Marginal cost** over hello-world, µs per request = {CONNECTIONS}·1e6/rps(target) − \
             {CONNECTIONS}·1e6/rps(hello): with {CONNECTIONS} connections kept busy, {CONNECTIONS}·1e6/rps is the \
             time one request holds a connection (Little's law). 1e6/rps (per-request time if \
             the server were strictly serial) is half of it; the ratio to the peer's is the \
             same either way. **× peer** = edgefront's marginal cost / the peer's.\n\n\
             **CPU µs/req** is the CPU time (user + system, every thread) of the target's own \
             `workerd` process during a measured round, over the requests it served (the median \
             round's); **CPU \
             marginal** subtracts hello-world's, and **× peer (CPU)** divides by the peer's. It \
             counts the runtime's work per request and nothing else: not wrk's, not the SQL \
             proxy's or Postgres', not the time a request waits for a core. On a shared 2-core \
             machine it moves far less from run to run than req/s. It is measured for the \
             runtimes this benchmark starts alone (every plain `workerd`), not for wrangler dev's \
             or Spin's."
        );
        let _ = writeln!(
            m,
            "\nedgefront runs as the test stack configures it: rate limits checked on every \
             limited route (`RATE_LIMITS` {}; on Workers the Durable Object leases an isolate \
             hits in advance, so most requests do not call it; on Spin the origin's \
             `/ratelimit` on every request), `LOG_LEVEL` {} (at info, one JSON \
             `console.log` line per request), no tracing. The hello-world worker, the peer and \
             `edgefront (workerd)` each run on a fresh `workerd serve` (the pinned wrangler's \
             workerd) of the bundle `wrangler deploy --dry-run` produced: settings as text \
             bindings, outbound fetches allowed to loopback, edgefront's rate-limit Durable \
             Object in memory, no KV (edgefront's caches stay in the isolate). \
             `edgefront (wrangler dev's workerd)` is the stack's own edgefront, what `cargo xtask \
             dev` serves, on workerd's port behind wrangler dev: under wrangler dev every \
             console.log is also a DevTools event for its inspector, which is most of the \
             difference. \
             Spin: {} with `--max-instance-reuse-count 1 --max-concurrent-requests 1` \
             (a fresh instance per request, one request at a time, as the stack starts it: no \
             cache survives a request, so every authenticated request fetches the JWKS and looks \
             up tenant and membership).",
            if c.rate_limits == "off" {
                "off"
            } else {
                "raised to 1,000,000 per minute, so never hit"
            },
            c.log_level.as_deref().unwrap_or("info, its default"),
            self.spin_served_by
        );
        for (route, r) in ROUTES.iter().zip(self.results) {
            let sums = self.summaries(r);
            let hello = &sums[0];
            let peer_idx = self.targets.iter().position(|t| t.key == "peer");
            let marginal = |s: &Summary| per_request_us(s.rps) - per_request_us(hello.rps);
            let peer_marginal = peer_idx.map(|i| marginal(&sums[i]));
            let cpu_marginal = |s: &Summary| Some(s.cpu_us? - hello.cpu_us?);
            let peer_cpu = peer_idx.and_then(|i| cpu_marginal(&sums[i]));
            let _ = writeln!(m, "\n## {}\n\n{}\n", route.label, route.note);
            let _ = writeln!(
                m,
                "| target | req/s | p50 µs | p99 µs | marginal µs/req | × peer | CPU µs/req | CPU marginal µs/req | × peer (CPU) | SQL batches/req | errors |"
            );
            let _ = writeln!(m, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            for (t, s) in self.targets.iter().zip(&sums) {
                let (marg, ratio) = if t.key == "hello" {
                    ("—".to_owned(), "—".to_owned())
                } else {
                    let mg = marginal(s);
                    let ratio = match (t.key, peer_marginal) {
                        ("peer", _) => "1".to_owned(),
                        (_, Some(p)) if p > 0.0 => format!("{:.2}", mg / p),
                        _ => "n/a".to_owned(),
                    };
                    (format!("{mg:.0}"), ratio)
                };
                let sql = self.sql[route.key]
                    .get(t.key)
                    .and_then(|v| v["batches_per_request"].as_f64())
                    .map_or("—".to_owned(), |b| format!("{b:.2}"));
                let dash = || "—".to_owned();
                let cpu = s.cpu_us.map_or_else(dash, |c| format!("{c:.1}"));
                let (cpu_marg, cpu_ratio) = match (t.key, cpu_marginal(s)) {
                    ("hello", _) | (_, None) => (dash(), dash()),
                    ("peer", Some(c)) => (format!("{c:.1}"), "1".to_owned()),
                    (_, Some(c)) => (
                        format!("{c:.1}"),
                        peer_cpu
                            .filter(|p| *p > 0.0)
                            .map_or_else(|| "n/a".to_owned(), |p| format!("{:.2}", c / p)),
                    ),
                };
                let _ = writeln!(
                    m,
                    "| {} | {} | {:.0} | {:.0} | {marg} | {ratio} | {cpu} | {cpu_marg} | {cpu_ratio} | {sql} | {} |",
                    t.label,
                    s.rps_cell(self.cfg.rounds),
                    s.p50_us,
                    s.p99_us,
                    s.bad
                );
            }
            if route.key == BARE_ROUTE {
                self.bare_rows(&mut m, &sums);
            }
        }
        let _ = writeln!(
            m,
            "\nSQL batches/req: the SQL proxy's own count (`/_stats`), over {SQL_SAMPLES} sequential \
             requests per route and target before the load (caches warm: every route was asked \
             once), including any batch sent after the answer; `errors`: wrk's non-2xx answers \
             plus socket errors (should be 0)."
        );
        self.sql_table(&mut m);
        self.idle_cpu_table(&mut m);
        self.fresh_table(&mut m);

        let _ = writeln!(
            m,
            "\n## Cold start: `GET /healthz` on a freshly started runtime\n"
        );
        let _ = writeln!(
            m,
            "Per fresh start: spawn → port accepting connections (TCP connect polled every ms, no \
             HTTP), then the first request (connect → whole answer), then the median of 20 warm \
             requests (each on a new connection). Medians over {} fresh starts (min–max in brackets).\n",
            self.cfg.cold_starts
        );
        let _ = writeln!(
            m,
            "| target | spawn → listening ms | first request ms | warm request ms | how |"
        );
        let _ = writeln!(m, "|---|---:|---:|---:|---|");
        for cs in self.cold {
            let col = |f: fn(&(f64, f64, f64)) -> f64| {
                let mut v: Vec<f64> = cs.starts.iter().map(f).collect();
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(0.0, f64::max);
                format!("{:.1} ({lo:.1}–{hi:.1})", median(&mut v))
            };
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} |",
                cs.label,
                col(|s| s.0),
                col(|s| s.1),
                col(|s| s.2),
                cs.how
            );
        }

        let _ = writeln!(m, "\n## Bundle sizes (gzip -9)\n");
        let _ = writeln!(m, "| artifact | raw | gzip | files |");
        let _ = writeln!(m, "|---|---:|---:|---|");
        for b in &self.bundles.0 {
            let (raw, gz) = b.totals();
            let files: Vec<String> = b
                .files
                .iter()
                .map(|(p, r, g)| {
                    format!(
                        "`{}` {} / {}",
                        p.file_name().and_then(|n| n.to_str()).unwrap_or_default(),
                        kib(*r),
                        kib(*g)
                    )
                })
                .collect();
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} |",
                b.label,
                kib(raw),
                kib(gz),
                files.join(", ")
            );
        }
        m
    }

    fn json(&self) -> Value {
        let routes: Vec<Value> = ROUTES
            .iter()
            .zip(self.results)
            .map(|(route, r)| {
                let sums = self.summaries(r);
                let hello_rps = sums[0].rps;
                let targets: serde_json::Map<String, Value> = self
                    .targets
                    .iter()
                    .zip(sums.iter().zip(&r.runs))
                    .map(|(t, (s, runs))| {
                        (
                            t.key.to_owned(),
                            json!({
                                "label": t.label,
                                "rps": s.rps, "rps_min": s.rps_min, "rps_max": s.rps_max,
                                "p50_us": s.p50_us, "p99_us": s.p99_us, "errors": s.bad,
                                "marginal_us_c": per_request_us(s.rps) - per_request_us(hello_rps),
                                "marginal_us_serial": 1e6 / s.rps - 1e6 / hello_rps,
                                "rounds": runs.iter().map(|w| json!({
                                    "rps": w.rps, "requests": w.requests, "p50_us": w.p50_us,
                                    "p99_us": w.p99_us, "non_2xx": w.non_2xx,
                                    "socket_errors": w.socket_errors,
                                })).collect::<Vec<_>>(),
                            }),
                        )
                    })
                    .collect();
                let bare = (route.key == BARE_ROUTE).then(|| {
                    let mut b = summarize(self.bare.runs).json();
                    b["sequential"] = self.bare.sql.clone();
                    b["forwarder"] = summarize(self.bare.forward).json();
                    b
                });
                json!({
                    "route": r.route_key, "label": route.label, "method": route.method,
                    "path": route.path, "note": route.note, "targets": targets,
                    "sql": self.sql.get(route.key), "bare_batch": bare,
                    "cpu_us_per_request_without_load": self.idle_cpu.get(route.key),
                    "fresh_isolate": self.fresh.get(route.key).map(|per| per.iter().map(|(k, f)| {
                        ((*k).to_owned(), json!({
                            "requests": FRESH_REQUESTS,
                            "main_thread_cpu_us_per_request": f.main_us,
                            "background_cpu_ms": f.background_ms,
                            "turbofan_body_kib": f.turbofan.map(|t| t.0),
                            "turbofan_compilations": f.turbofan.map(|t| t.1),
                        }))
                    }).collect::<serde_json::Map<_, _>>()),
                })
            })
            .collect();
        json!({
            "settings": {
                "threads": THREADS, "connections": CONNECTIONS, "seconds": self.cfg.seconds,
                "warmup_seconds": self.cfg.warmup, "rounds": self.cfg.rounds,
                "cold_starts": self.cfg.cold_starts, "rate_limits": self.cfg.rate_limits,
                "log_level": self.cfg.log_level,
                "spin_served_by": self.spin_served_by,
                "spin_flags": "--max-instance-reuse-count 1 --max-concurrent-requests 1",
            },
            "machine": self.machine.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "versions": self.versions.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "routes": routes,
            "cold_start": self.cold.iter().map(|cs| json!({
                "target": cs.key, "label": cs.label, "how": cs.how,
                "starts_ms": cs.starts.iter().map(|(l, f, w)| json!({
                    "spawn_to_listening": l, "first_request": f, "warm_request_median": w,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "bundles": self.bundles.0.iter().map(|b| {
                let (raw, gz) = b.totals();
                json!({
                    "key": b.key, "label": b.label, "raw": raw, "gzip": gz,
                    "files": b.files.iter().map(|(p, r, g)| json!({
                        "path": p.display().to_string(), "raw": r, "gzip": g,
                    })).collect::<Vec<_>>(),
                })
            }).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turbofan_lines_give_the_bodies_recompiled() {
        // As V8 13 writes them (workerd 2026-04-26), with a line of another kind between.
        let log = "workerd/server/server.c++:4460: info: Inspector is listening\n\
            Compiled function 0x508bbfc2f198#3078 using Liftoff, took 42 μs and 16520 bytes; bodysize 77 codesize 552\n\
            Compiled function 0x508bbfc2f198#150 using TurboFan, took 32740 μs and 9506960 / 25285296 max/total bytes; bodysize 37697 codesize 135172 name wasm-function#150\n\
            Compiled function 0x508bbfc2f198#183 using TurboFan, took 4006 μs and 1047872 / 2795432 max/total bytes; bodysize 4607 codesize 10648 name wasm-function#183\n";
        let (kib, n) = turbofan_bodies(log).unwrap();
        assert_eq!(n, 2);
        assert!((kib - (37_697.0 + 4_607.0) / 1024.0).abs() < 1e-9);
        // Wasm compiled, none of it recompiled: zero, not unknown.
        assert_eq!(turbofan_bodies(log.lines().nth(1).unwrap()), Some((0.0, 0)));
        // No wasm at all (a JS Worker): unknown.
        assert_eq!(turbofan_bodies("workerd: listening\n"), None);
    }

    #[test]
    fn proc_stat_lines_give_the_group_and_its_cpu_ticks() {
        // A command name with spaces and a parenthesis; pgrp 4321, utime 150, stime 25.
        let line = "4321 (work erd) x) S 1 4321 4321 0 -1 4194560 9 0 0 0 150 25 0 0 20 0 8 0 \
                    100 1000 10 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0";
        assert_eq!(stat_group_cpu(line), Some((4321, 175)));
        assert_eq!(stat_group_cpu("12 (sh) S 1"), None);
        // This process's own group is found and has spent some CPU by now.
        let me = std::fs::read_to_string("/proc/self/stat").unwrap();
        let (group, _) = stat_group_cpu(&me).unwrap();
        assert!(group_cpu_seconds(group).is_some());
    }

    #[test]
    fn a_summary_is_the_median_round_so_one_stalled_round_does_not_move_it() {
        let run = |rps, p99_us, cpu_us| WrkRun {
            rps,
            p99_us,
            cpu_us,
            requests: 1000,
            ..WrkRun::default()
        };
        // The second round stalled: a tenth of the req/s, a p99 of 200 ms, its CPU doubled.
        let rounds = [
            run(5000.0, 900.0, Some(100.0)),
            run(500.0, 200_000.0, Some(200.0)),
            run(5200.0, 1000.0, Some(104.0)),
        ];
        let s = summarize(&rounds);
        assert_eq!((s.rps, s.p99_us, s.cpu_us), (5000.0, 1000.0, Some(104.0)));
        assert_eq!((s.rps_min, s.rps_max), (500.0, 5200.0));
        // Two rounds: their mean.
        assert_eq!(summarize(&rounds[..2]).cpu_us, Some(150.0));
        // CPU needs every round measured.
        assert_eq!(
            cpu_per_request(&[run(1.0, 1.0, Some(10.0)), run(1.0, 1.0, None)]),
            None
        );
        assert_eq!(cpu_per_request(&[]), None);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn wrk_output_is_read_in_microseconds() {
        let out = "Running 3s test @ http://127.0.0.1:1/\n  1 threads and 2 connections\n\
            \x20 Latency Distribution\n     50%  412.00us\n     75%  600.00us\n     99%    1.20ms\n\
            \x20 9000 requests in 3.00s, 1.2MB read\n  Non-2xx or 3xx responses: 3\n\
            \x20 Socket errors: connect 0, read 1, write 0, timeout 0\nRequests/sec:   2999.50\n";
        let r = parse_wrk(out).unwrap();
        assert_eq!(r.requests, 9000);
        assert!((r.rps - 2999.5).abs() < 1e-9);
        assert!((r.p50_us - 412.0).abs() < 1e-9);
        assert!((r.p99_us - 1200.0).abs() < 1e-9);
        assert_eq!((r.non_2xx, r.socket_errors, r.bad), (3, 1, 4));
        assert!(parse_wrk("nothing").is_err());
    }

    #[test]
    fn answers_end_with_their_declared_body() {
        assert!(!answer_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no"
        ));
        assert!(answer_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        ));
        assert!(!answer_complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n"
        ));
        assert!(answer_complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        ));
        assert!(!answer_complete(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok"
        ));
    }

    #[test]
    fn marginal_cost_counts_both_connections() {
        // 4,000 req/s on 2 connections: each request holds one for 500 µs.
        assert!((per_request_us(4000.0) - 500.0).abs() < 1e-9);
    }

    #[test]
    fn big_numbers_get_separators() {
        assert_eq!(thousands(3030.4), "3,030");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }
}
