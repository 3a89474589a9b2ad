//! The local stack: a throwaway Postgres with migrations, demo tenants and their users, the SQL
//! proxy, a SigV4-verifying S3, the dev identity provider's JWKS, a fake DNS-over-HTTPS
//! resolver, and one or both edge runtimes — all on loopback, all stopped on drop. It runs
//! membership mode: roles come from `tenant_members`, `admin.localhost` is the platform host.
//! `describe()` is what `.edgefront/dev.json` holds and what the black-box suite reads.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::doh::DohServer;
use crate::jwks::JwksServer;
use crate::llm::MockProvider;
use crate::otlp::OtlpReceiver;
use crate::pg::PgCluster;
use crate::proc::{free_port, wait_http, Proc};
use crate::s3::LocalS3;
use crate::spin::{self, SpinHost};
use crate::tools::Tools;
use crate::{repo_root, run, target_dir};

pub const DATABASE: &str = "edgefront";
pub const APP_ROLE: &str = "edgefront_app";
pub const BUCKET: &str = "edgefront-dev";
pub const REGION: &str = "us-east-1";
pub const BASE_DOMAIN: &str = "localhost";
/// The only host serving `/v1/platform/*` and `/v1/signup` (core's default, `admin.{BASE_DOMAIN}`).
pub const PLATFORM_HOST: &str = "admin.localhost";

/// Demo tenants: (slug, id, name, tier, status). Fixed ids so docs and curl lines stay valid.
pub const TENANTS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "demo",
        "00000000-0000-4000-8000-00000000d301",
        "Demo Outfitters",
        "premium",
        "active",
    ),
    (
        "acme",
        "00000000-0000-4000-8000-00000000ac3e",
        "Acme Hardware",
        "basic",
        "active",
    ),
    // Tenants in the other states, so every status has a URL to try.
    (
        "frozen",
        "00000000-0000-4000-8000-0000000f0e2e",
        "Frozen Goods (suspended)",
        "basic",
        "suspended",
    ),
    (
        "gone",
        "00000000-0000-4000-8000-00000000903e",
        "Gone Retail (deleted)",
        "basic",
        "deleted",
    ),
];

/// Demo catalog: (tenant, sku, name, price, category, inventory, status).
pub const DEMO_ITEMS: &[(&str, &str, &str, &str, &str, i32, &str)] = &[
    (
        "demo",
        "TRAIL-1",
        "Trail running shoes",
        "119.90",
        "shoes",
        12,
        "active",
    ),
    (
        "demo",
        "ROAD-2",
        "Road running shoes",
        "99.50",
        "shoes",
        0,
        "active",
    ),
    (
        "demo",
        "SOCK-3",
        "Merino running socks",
        "14.000",
        "accessories",
        40,
        "active",
    ),
    (
        "demo",
        "CAP-4",
        "Lightweight running cap",
        "22.50",
        "accessories",
        8,
        "active",
    ),
    (
        "demo",
        "JKT-5",
        "Waterproof shell jacket",
        "189.00",
        "apparel",
        3,
        "active",
    ),
    (
        "demo",
        "PROTO-6",
        "Prototype racing flats",
        "249.00",
        "shoes",
        0,
        "draft",
    ),
    (
        "acme",
        "HAM-16",
        "Claw hammer 16 oz",
        "24.990",
        "tools",
        30,
        "active",
    ),
    (
        "acme",
        "DRL-18V",
        "Cordless drill 18V",
        "129.000",
        "tools",
        5,
        "active",
    ),
    (
        "acme",
        "SCR-100",
        "Wood screws, 100 pack",
        "6.500",
        "fasteners",
        200,
        "active",
    ),
];

/// Seeded users of the `tenants` pool and their memberships: (tenant, role, subject, email,
/// name). Fixed subjects, verified emails; `cargo xtask token --tenant demo --role admin` mints
/// for the matching one.
pub const USERS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "demo",
        "owner",
        "00000000-0000-4000-8000-0000000000a1",
        "owner@demo.test",
        "Demo Owner",
    ),
    (
        "demo",
        "admin",
        "00000000-0000-4000-8000-0000000000a2",
        "admin@demo.test",
        "Demo Admin",
    ),
    (
        "demo",
        "member",
        "00000000-0000-4000-8000-0000000000a3",
        "member@demo.test",
        "Demo Member",
    ),
    (
        "acme",
        "owner",
        "00000000-0000-4000-8000-0000000000b1",
        "owner@acme.test",
        "Acme Owner",
    ),
];

/// The issuer whose users are members of tenants (the first of `ISSUERS`).
pub const TENANTS_ISSUER: &str = "tenants";

/// How an issuer's users get their roles (`JWT_ISSUERS[i].membership`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Core's default, left implicit: from our database (`tenant_members`).
    Default,
    /// Spelled out: from our database.
    Database,
    /// From the token's tenant and role claims (Cognito groups).
    Claims,
}

/// A custom domain for acme: `curl -H 'Host: shop.acme.test' ...`.
pub const CUSTOM_DOMAIN: (&str, &str) = ("shop.acme.test", "acme");

/// Dev issuers: (name, key algorithms, client id, platform-admin issuer, membership). The
/// rotation issuers start without keys; the black-box suite rotates them, one per runtime so
/// counts don't mix. The stalled issuers, also one per runtime and without keys, are the ones
/// whose key set the suite makes hang (a silent peer: the outbound deadline must end the call). `claims` is a pool whose tokens carry the tenant and role themselves (the
/// pre-membership model), so that mode stays tested end to end.
pub const ISSUERS: &[(&str, &str, &str, bool, Membership)] = &[
    (
        TENANTS_ISSUER,
        "RS256,ES256,EdDSA",
        "edgefront-dev",
        false,
        Membership::Database,
    ),
    (
        "platform",
        "RS256",
        "edgefront-platform",
        true,
        Membership::Default,
    ),
    (
        "rotation-workers",
        "",
        "edgefront-rotation",
        false,
        Membership::Default,
    ),
    (
        "rotation-spin",
        "",
        "edgefront-rotation",
        false,
        Membership::Default,
    ),
    (
        "stalled-workers",
        "",
        "edgefront-stalled",
        false,
        Membership::Default,
    ),
    (
        "stalled-spin",
        "",
        "edgefront-stalled",
        false,
        Membership::Default,
    ),
    (
        "claims",
        "RS256",
        "edgefront-claims",
        false,
        Membership::Claims,
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    #[value(alias = "worker")]
    Workers,
    Spin,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Self::Workers => "workers",
            Self::Spin => "spin",
        }
    }
}

pub struct Options {
    pub runtimes: Vec<Runtime>,
    /// Port for the (first) runtime; None picks a free one.
    pub port: Option<u16>,
    /// Where run state lives (logs, Postgres data, S3 files).
    pub dir: PathBuf,
    /// What serves Spin; its build must have been built (`artifacts::build_spin`).
    pub spin_host: SpinHost,
    pub origin_statement_timeout_ms: u64,
    /// Answer chat with the local mock OpenAI-compatible provider (tests); otherwise the edge's
    /// built-in local responder answers (dev, out of the box).
    pub mock_ai: bool,
    /// `RATE_LIMITS` for the edge (None: the product's defaults). The test stack raises them
    /// so that parallel suites sharing the demo tenants never trip them; rate-limit tests give
    /// their own tenants small limits (`settings.limits.rate`).
    pub rate_limits: Option<String>,
    /// Run an OTLP receiver and send the edge's traces to it (`OTEL_EXPORTER_OTLP_ENDPOINT`);
    /// request ids from `X-Request-Id` (`REQUEST_ID_HEADER`), as behind a trusted proxy.
    pub tracing: bool,
    /// Further edge settings for both runtimes (`cargo xtask bench --peer`: `LOG_LEVEL`).
    pub extra_settings: Vec<(&'static str, String)>,
    /// Run the release build of the SQL proxy (benchmarks: [`crate::build_origin_release`]);
    /// otherwise the debug build that `cargo xtask dev`/`test` compile faster.
    pub origin_release: bool,
}

pub struct Stack {
    // Dropped first to last: runtimes and the proxy stop before the stores they use.
    procs: Vec<Proc>,
    _s3: LocalS3,
    _jwks: JwksServer,
    _doh: DohServer,
    _otlp: Option<OtlpReceiver>,
    _llm: Option<MockProvider>,
    pg: PgCluster,
    description: Value,
    secrets: Vec<(&'static str, String)>,
    /// The edge's settings on Workers and on Spin (Spin adds `RATE_LIMIT_URL`), and the
    /// services the Spin dev manifest lets it reach: `cargo xtask bench --peer` starts fresh
    /// runtimes with them to time cold starts.
    edge_settings: [Vec<(&'static str, String)>; 2],
    outbound: Vec<String>,
}

/// Settings whose values are secrets: no log line may hold them.
const SECRET_SETTINGS: &[&str] = &[
    "S3_SECRET_ACCESS_KEY",
    "VISITOR_COOKIE_SECRET",
    "OPERATOR_TOKEN",
    "ORIGIN_SQL_TOKEN",
];

fn random_secret(rand: &mut impl FnMut() -> u64) -> String {
    format!("{:016x}{:016x}", rand(), rand())
}

fn rng() -> impl FnMut() -> u64 {
    // Good enough for throwaway local passwords; no cryptographic use.
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ (u64::from(std::process::id()) << 32);
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

impl Stack {
    pub fn describe(&self) -> &Value {
        &self.description
    }

    /// Every secret this stack generated or configured, named: the Postgres passwords, the
    /// SQL proxy's admin token and the edge's secret settings. The log scan of `cargo xtask
    /// test` fails on any of them in a log.
    pub fn secrets(&self) -> &[(&'static str, String)] {
        &self.secrets
    }

    /// The settings the runtime `rt` was started with (secrets included).
    pub fn edge_settings(&self, rt: Runtime) -> &[(&'static str, String)] {
        match rt {
            Runtime::Workers => &self.edge_settings[0],
            Runtime::Spin => &self.edge_settings[1],
        }
    }

    /// The stack's services, as origins the Spin dev manifest allows outbound HTTP to.
    pub fn outbound(&self) -> &[String] {
        &self.outbound
    }

    /// The runtime's own listener, which the black-box suite talks to: workerd's port on
    /// Workers (see [`workerd_port`]: `wrangler dev`'s proxy in front of it turns failed
    /// upstream fetches into its own 503s), wasmtime's on Spin. `url` in the description is the
    /// port developers use (`wrangler dev`'s); a health test checks it serves the same edge.
    pub fn runtime_url(&self, rt: Runtime) -> Option<String> {
        self.description["runtimes"][rt.name()]["direct_url"]
            .as_str()
            .map(str::to_owned)
    }

    pub async fn start(opts: &Options, tools: &Tools) -> Result<Self> {
        let t0 = Instant::now();
        let mut rand = rng();
        let superuser_pw = random_secret(&mut rand);
        let app_pw = random_secret(&mut rand);
        std::fs::create_dir_all(&opts.dir)?;
        let logs = opts.dir.join("logs");
        std::fs::create_dir_all(&logs)?;

        let pg = PgCluster::start(&opts.dir.join("pg"), &superuser_pw).await?;
        {
            let c = pg.connect("postgres").await?;
            c.batch_execute(&format!("CREATE DATABASE {DATABASE}"))
                .await?;
        }
        let origin_bin = target_dir().join(if opts.origin_release {
            "release/edgefront-origin"
        } else {
            "debug/edgefront-origin"
        });
        run(Command::new(&origin_bin)
            .args([
                "migrate",
                "--database-url",
                &pg.superuser_url(DATABASE),
                "--dir",
            ])
            .arg(repo_root().join("migrations")))?;
        seed(&pg, &app_pw).await?;
        eprintln!(
            "xtask: postgres on 127.0.0.1:{} migrated and seeded ({:.1?})",
            pg.port,
            t0.elapsed()
        );

        let mut procs = Vec::new();
        // Two listeners of the SQL proxy. The edge's allows only the app role on the app
        // database (no token: it listens on loopback, as the proxy allows); the admin one, for
        // test fixtures and tools that need the superuser, has its own token and allow-list.
        let (origin, origin_url) = start_origin(
            &origin_bin,
            &logs.join("origin.log"),
            &pg,
            opts,
            &[
                "--allow-role",
                APP_ROLE,
                "--allow-database",
                DATABASE,
                "--expose-stats",
            ],
            None,
        )
        .await?;
        procs.push(origin);
        let admin_token = random_secret(&mut rand);
        let (origin_admin, admin_url) = start_origin(
            &origin_bin,
            &logs.join("origin-admin.log"),
            &pg,
            opts,
            &["--allow-role", "postgres", "--allow-database", DATABASE],
            Some(&admin_token),
        )
        .await?;
        procs.push(origin_admin);
        let origin_sql = format!("{}/sql", origin_url.trim_end_matches('/'));
        let admin_sql = format!("{}/sql", admin_url.trim_end_matches('/'));
        let admin_addr = admin_url
            .trim_start_matches("http://")
            .trim_end_matches('/');

        let s3 = LocalS3::start(
            &opts.dir.join("s3"),
            BUCKET,
            &format!("EFDEV{}", &random_secret(&mut rand)[..15].to_uppercase()),
            &random_secret(&mut rand),
        )
        .await?;

        let jwks_dir = opts.dir.join("jwks");
        let mut devkeys = Command::new("node");
        devkeys
            .current_dir(repo_root())
            .arg("wasm-tests/tools/devkeys.mjs")
            .arg(&jwks_dir)
            .args(
                ISSUERS
                    .iter()
                    .map(|(name, algs, ..)| format!("{name}:{algs}")),
            );
        run(&mut devkeys).context("generating dev signing keys")?;
        let jwks = JwksServer::start(jwks_dir.clone()).await?;
        let mut issuers_cfg = Vec::new();
        let mut issuers_desc = serde_json::Map::new();
        for (name, _, client_id, platform_admin, membership) in ISSUERS {
            let issuer = format!("{}/{name}", jwks.base_url);
            let mut cfg = json!({
                "issuer": issuer, "client_ids": [client_id], "token_use": ["id", "access"],
                "leeway_seconds": 60, "platform_admin": platform_admin,
            });
            let mode = match membership {
                Membership::Default => None,
                // Roles come from our database (tenant_members), not from the token: the
                // default, spelled out for the pool whose users are seeded below.
                Membership::Database => Some("membership"),
                Membership::Claims => Some("claims"),
            };
            if let Some(mode) = mode {
                cfg["membership"] = mode.into();
            }
            issuers_cfg.push(cfg);
            issuers_desc.insert(
                (*name).into(),
                json!({
                    "issuer": issuer,
                    "jwks_url": format!("{issuer}/.well-known/jwks.json"),
                    "client_id": client_id,
                    "platform_admin": platform_admin,
                    "membership": mode.unwrap_or("membership"),
                    "private_jwks": jwks_dir.join(format!("{name}.private.json")),
                    "public_jwks_file": jwks_dir.join(format!("{name}.json")),
                }),
            );
        }
        let tenants_issuer = format!("{}/{TENANTS_ISSUER}", jwks.base_url);
        seed_users(&pg, &tenants_issuer).await?;
        let doh = DohServer::start().await?;

        let app_conn = format!("postgresql://{APP_ROLE}:{app_pw}@localhost:5432/{DATABASE}");
        let operator_token = random_secret(&mut rand);
        let mut settings: Vec<(&str, String)> = vec![
            ("BASE_DOMAIN", BASE_DOMAIN.into()),
            ("ORIGIN_SQL_URL", origin_sql.clone()),
            ("DATABASE_URL", app_conn.clone()),
            ("S3_ENDPOINT", s3.endpoint.clone()),
            ("S3_REGION", REGION.into()),
            ("S3_BUCKET", BUCKET.into()),
            ("S3_FORCE_PATH_STYLE", "true".into()),
            ("S3_ACCESS_KEY_ID", s3.access_key_id.clone()),
            ("S3_SECRET_ACCESS_KEY", s3.secret_access_key.clone()),
            ("JWT_ISSUERS", serde_json::to_string(&issuers_cfg)?),
            (
                "VISITOR_COOKIE_SECRET",
                format!("{}{}", random_secret(&mut rand), random_secret(&mut rand)),
            ),
            ("SIGNUP_ENABLED", "true".into()),
            ("DOH_RESOLVER_URL", doh.url.clone()),
            ("DOH_TIMEOUT_MS", "2000".into()),
            // `/healthz?deep=1` needs it (as `Authorization: Bearer …`); described below.
            ("OPERATOR_TOKEN", operator_token.clone()),
        ];
        settings.extend(opts.extra_settings.iter().cloned());
        if let Some(limits) = &opts.rate_limits {
            settings.push(("RATE_LIMITS", limits.clone()));
            // A limiter slower than its timeout lets requests through; on a loaded test machine
            // a Durable Object's first call (a new SQLite file under wrangler) can take longer
            // than production's 250 ms, and exact-count tests would then see extra passes.
            settings.push(("RATE_LIMIT_TIMEOUT_MS", "5000".into()));
        }
        let otlp = if opts.tracing {
            let r = OtlpReceiver::start().await?;
            settings.push(("OTEL_EXPORTER_OTLP_ENDPOINT", r.endpoint.clone()));
            settings.push(("REQUEST_ID_HEADER", "x-request-id".into()));
            Some(r)
        } else {
            None
        };
        let llm = if opts.mock_ai {
            let m = MockProvider::start().await?;
            settings.push(("AI_BASE_URL", m.base_url.clone()));
            settings.push(("AI_API_KEY", "mock-key".into()));
            settings.push(("AI_MODEL", "mock-model".into()));
            // Short, so the failure-mode tests do not wait long.
            settings.push(("AI_TIMEOUT_MS", "3000".into()));
            settings.push(("AI_IDLE_TIMEOUT_MS", "1500".into()));
            Some(m)
        } else {
            None
        };

        let mut secrets = vec![
            ("postgres superuser password", superuser_pw.clone()),
            ("DATABASE_URL password", app_pw.clone()),
            ("SQL proxy admin token", admin_token.clone()),
        ];
        secrets.extend(settings.iter().filter_map(|(k, v)| {
            SECRET_SETTINGS
                .iter()
                .find(|s| *s == k)
                .map(|s| (*s, v.clone()))
        }));

        // The services the edge calls: all that the Spin dev manifest lets it reach.
        let mut outbound = vec![
            spin::origin(&origin_sql)?,
            spin::origin(&s3.endpoint)?,
            spin::origin(&jwks.base_url)?,
            spin::origin(&doh.url)?,
        ];
        if let Some(m) = &llm {
            outbound.push(spin::origin(&m.base_url)?);
        }
        if let Some(r) = &otlp {
            outbound.push(spin::origin(&r.endpoint)?);
        }

        let origin_ratelimit = origin_sql
            .strip_suffix("/sql")
            .map(|base| format!("{base}/ratelimit"))
            .ok_or_else(|| anyhow::anyhow!("the origin URL {origin_sql} does not end in /sql"))?;
        let mut runtimes = serde_json::Map::new();
        // On Workers one isolate serves every request: spans are gathered for half a second and
        // exported together (under `wrangler dev` each subrequest also costs DevTools events
        // that its inspector proxy turns into connections it never closes).
        let mut workers_settings = settings.clone();
        if opts.tracing {
            workers_settings.push(("OTEL_BSP_SCHEDULE_DELAY", "500".into()));
        }
        // Spin's instances share no store under `wasmtime serve` (and the portable build
        // imports no Spin key-value): the origin counts for them.
        let mut spin_settings = settings.clone();
        spin_settings.push(("RATE_LIMIT_URL", origin_ratelimit.clone()));
        for (i, rt) in opts.runtimes.iter().enumerate() {
            let port = match (i, opts.port) {
                (0, Some(p)) => p,
                _ => free_port()?,
            };
            let (proc, how) = match rt {
                Runtime::Workers => start_workers(opts, tools, port, &workers_settings).await?,
                Runtime::Spin => start_spin(opts, tools, port, &spin_settings, &outbound).await?,
            };
            // The process group of the runtime (workerd, wasmtime), for memory measurements.
            let pgid = proc.pid();
            procs.push(proc);
            // The runtime's own port: workerd's behind wrangler's dev proxy; wasmtime's is `port`.
            let own_port = match rt {
                Runtime::Workers => workerd_port(pgid as i32, port).await?,
                Runtime::Spin => port,
            };
            runtimes.insert(
                rt.name().into(),
                json!({ "url": format!("http://127.0.0.1:{port}"), "port": port, "served_by": how,
                        "pgid": pgid, "direct_url": format!("http://127.0.0.1:{own_port}") }),
            );
        }

        let description = json!({
            "base_domain": BASE_DOMAIN,
            "platform_host": PLATFORM_HOST,
            "runtimes": runtimes,
            "origin": {
                "stats_url": format!("{}/_stats", origin_url.trim_end_matches('/')),
                "url": origin_sql,
                "app_connection_string": app_conn,
                // The admin listener (superuser only, bearer token): fixtures go through it.
                // The proxy ignores a connection string's host; this one names the admin
                // listener so clients can route by it.
                "admin_url": admin_sql,
                "admin_token": admin_token,
                "superuser_connection_string":
                    format!("postgresql://postgres:{superuser_pw}@{admin_addr}/{DATABASE}"),
            },
            "postgres": { "port": pg.port, "superuser_url": pg.superuser_url(DATABASE) },
            "s3": {
                "endpoint": s3.endpoint, "region": REGION, "bucket": BUCKET,
                "access_key_id": s3.access_key_id, "secret_access_key": s3.secret_access_key,
            },
            "auth": {
                "jwks_server": jwks.base_url,
                "stats_url": format!("{}/_stats", jwks.base_url),
                "jwks_dir": jwks_dir,
                "issuers": issuers_desc,
            },
            "ai": llm.as_ref().map(|m| json!({
                "base_url": m.base_url,
                "requests_url": format!("{}/_requests", m.base_url.trim_end_matches("/v1")),
                "request_ids_url": format!("{}/_request_ids", m.base_url.trim_end_matches("/v1")),
            })),
            "doh": { "url": doh.url, "records_url": doh.records_url, "stats_url": doh.stats_url },
            // The trace receiver, when tracing is on: every span the edge exported.
            "otlp": otlp.as_ref().map(|r| json!({ "endpoint": r.endpoint, "spans_url": r.spans_url })),
            "custom_domains": { CUSTOM_DOMAIN.0: CUSTOM_DOMAIN.1 },
            // `Authorization: Bearer <operator_token>` opens `/healthz?deep=1`.
            "operator_token": operator_token,
            "tenants": TENANTS.iter().map(|(slug, id, name, tier, status)|
                json!({"slug": slug, "id": id, "name": name, "tier": tier, "status": status})
            ).collect::<Vec<_>>(),
            "users": USERS.iter().map(|(tenant, role, subject, email, name)| json!({
                "tenant": tenant, "role": role, "subject": subject, "email": email,
                "name": name, "issuer": TENANTS_ISSUER,
            })).collect::<Vec<_>>(),
            "logs": logs,
        });
        eprintln!("xtask: stack up in {:.1?}", t0.elapsed());
        Ok(Self {
            procs,
            _s3: s3,
            _jwks: jwks,
            _doh: doh,
            _otlp: otlp,
            _llm: llm,
            pg,
            description,
            secrets,
            edge_settings: [workers_settings, spin_settings],
            outbound,
        })
    }

    /// A fresh database in the stack's cluster for tests that need a superuser playground.
    pub async fn scratch_database(&self) -> Result<String> {
        let c = self.pg.connect("postgres").await?;
        c.batch_execute("CREATE DATABASE scratch").await?;
        Ok(self.pg.superuser_url("scratch"))
    }

    pub fn check_alive(&mut self) -> Result<()> {
        for p in &mut self.procs {
            p.check_alive()?;
        }
        Ok(())
    }
}

async fn seed(pg: &PgCluster, app_pw: &str) -> Result<()> {
    let c = pg.connect(DATABASE).await?;
    // Role passwords are per cluster and never live in migrations.
    c.batch_execute(&format!("ALTER ROLE {APP_ROLE} LOGIN PASSWORD '{app_pw}'"))
        .await?;
    for (slug, id, name, tier, status) in TENANTS {
        c.execute(
            "INSERT INTO tenants (id, slug, name, tier, status, settings)
             VALUES ($1::text::uuid, $2, $3, $4, $5, $6::text::jsonb)
             ON CONFLICT (id) DO NOTHING",
            &[
                id,
                slug,
                name,
                tier,
                status,
                &json!({
                    "currency": "USD",
                    "branding": {"primary_color": "#0a7cff"},
                    "donations": {"enabled": *slug == "demo", "minimum": "1", "campaigns": ["trail-cleanup"]},
                })
                .to_string(),
            ],
        )
        .await
        .with_context(|| format!("seeding tenant {slug}"))?;
    }
    for (slug, sku, name, price, category, inventory, status) in DEMO_ITEMS {
        c.execute(
            "INSERT INTO catalog_items (tenant_id, sku, name, description, price, currency, category, inventory, status)
             SELECT id, $2, $3, $3 || ' from ' || name, $4::text::numeric, 'USD', $5, $6, $7
             FROM tenants WHERE slug = $1
             ON CONFLICT ON CONSTRAINT catalog_items_sku_unique DO NOTHING",
            &[slug, sku, name, price, category, inventory, status],
        )
        .await
        .with_context(|| format!("seeding catalog item {sku}"))?;
    }
    let (domain, slug) = CUSTOM_DOMAIN;
    c.execute(
        // Verified, as if its TXT proof had been checked: only verified domains route.
        "INSERT INTO tenant_domains (hostname, tenant_id, verified_at)
         SELECT $1, id, now() FROM tenants WHERE slug = $2 ON CONFLICT DO NOTHING",
        &[&domain, &slug],
    )
    .await
    .context("seeding the custom domain")?;
    seed_orders(&c).await
}

/// The seeded users (keyed by the `tenants` pool's issuer URL, known once its JWKS server
/// listens) and their memberships.
async fn seed_users(pg: &PgCluster, issuer: &str) -> Result<()> {
    let c = pg.connect(DATABASE).await?;
    for (tenant, role, subject, email, name) in USERS {
        c.execute(
            "WITH u AS (
                 INSERT INTO users (issuer, subject, email, email_verified, name)
                 VALUES ($1, $2, $3, true, $4)
                 ON CONFLICT (issuer, subject) DO UPDATE
                     SET email = EXCLUDED.email, email_verified = true, name = EXCLUDED.name
                 RETURNING id)
             INSERT INTO tenant_members (tenant_id, user_id, role)
             SELECT t.id, u.id, $6 FROM u, tenants t WHERE t.slug = $5
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = EXCLUDED.role",
            &[&issuer, subject, email, name, tenant, role],
        )
        .await
        .with_context(|| format!("seeding user {email} ({role} of {tenant})"))?;
    }
    Ok(())
}

/// Demo orders on `demo`, placed through the same SQL functions the edge calls (so stock,
/// numbers and the outbox are real): a visit from a newsletter campaign that turned into an
/// order, a confirmed order, and a donation. Idempotency keys make a re-seed a no-op.
async fn seed_orders(c: &tokio_postgres::Client) -> Result<()> {
    let tenant = TENANTS
        .iter()
        .find(|t| t.0 == "demo")
        .map(|t| t.1)
        .context("the demo tenant")?;
    let visitor = "00000000-0000-4000-8000-0000000000d1";
    let visit = "00000000-0000-4000-8000-0000000000f1";
    let customer = json!({"email": "ada@example.com", "name": "Ada Lovelace"});
    let address = json!({"line1": "12 Analytical Row", "city": "London",
                         "postal_code": "N1 9GU", "country": "GB"});
    let item = |sku: &str| {
        format!("(SELECT id FROM catalog_items WHERE sku = '{sku}' AND tenant_id = '{tenant}')")
    };
    let orders = [
        ("seed-order-1", format!(
            "jsonb_build_object('items', jsonb_build_array(jsonb_build_object('item_id', {}, 'quantity', 1),              jsonb_build_object('item_id', {}, 'quantity', 2)), 'customer', '{customer}'::jsonb,              'shipping_address', '{address}'::jsonb, 'visit_id', '{visit}')",
            item("TRAIL-1"), item("SOCK-3"))),
        ("seed-order-2", format!(
            "jsonb_build_object('items', jsonb_build_array(jsonb_build_object('item_id', {}, 'quantity', 1)),              'customer', '{customer}'::jsonb, 'shipping_address', '{address}'::jsonb)",
            item("CAP-4"))),
        ("seed-donation-1", format!(
            "jsonb_build_object('donation', jsonb_build_object('amount', '25', 'campaign', 'trail-cleanup'),              'customer', '{customer}'::jsonb)")),
    ];
    let mut sql = format!(
        "BEGIN;
         SELECT set_config('app.current_tenant', '{tenant}', true);
         SELECT public.visit_record('{visit}', '{visitor}',
             '{{\"path\": \"/\", \"utm_source\": \"newsletter\", \"utm_campaign\": \"spring-sale\"}}'::jsonb, 1000)
         WHERE NOT EXISTS (SELECT 1 FROM visits WHERE id = '{visit}');"
    );
    for (key, request) in &orders {
        sql.push_str(&format!(
            "SELECT public.checkout(gen_random_uuid(), '{key}', '{key}', '{visitor}', {request});"
        ));
    }
    sql.push_str(
        "SELECT public.order_transition(o.id, NULL, 'confirmed') FROM orders o
         WHERE o.idempotency_key = 'seed-order-2' AND o.status = 'pending';
         COMMIT;",
    );
    c.batch_execute(&sql).await.context("seeding demo orders")
}

/// Starts one listener of the SQL proxy on a free loopback port; returns it and its base URL.
async fn start_origin(
    bin: &Path,
    log: &Path,
    pg: &PgCluster,
    opts: &Options,
    args: &[&str],
    bearer_token: Option<&str>,
) -> Result<(Proc, String)> {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--pg-host", "127.0.0.1"])
        .args(["--pg-port", &pg.port.to_string()])
        .args([
            "--statement-timeout-ms",
            &opts.origin_statement_timeout_ms.to_string(),
        ])
        .args(args);
    if let Some(token) = bearer_token {
        // In the environment, not argv: `ps` shows arguments to everyone.
        cmd.env("EDGEFRONT_ORIGIN_BEARER_TOKEN", token);
    }
    let mut proc = Proc::spawn("edgefront-origin", &mut cmd, log, None)?;
    let url = wait_for_line(&mut proc, log, "listening ", Duration::from_secs(30)).await?;
    Ok((proc, url))
}

async fn wait_for_line(
    proc: &mut Proc,
    log: &Path,
    prefix: &str,
    timeout: Duration,
) -> Result<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find_map(|l| l.strip_prefix(prefix)) {
            return Ok(line.trim().to_owned());
        }
        if let Err(e) = proc.check_alive() {
            return Err(e.context(crate::proc::log_tail(Some(log))));
        }
        if start.elapsed() > timeout {
            bail!(
                "{} printed no '{prefix}' line\n{}",
                proc.name(),
                crate::proc::log_tail(Some(log))
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_workers(
    opts: &Options,
    tools: &Tools,
    port: u16,
    settings: &[(&str, String)],
) -> Result<(Proc, &'static str)> {
    let env_file = opts.dir.join("workers.env");
    let body: String = settings.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    crate::proc::write_private(&env_file, &body)?;
    let log = opts.dir.join("logs/wrangler.log");
    let mut cmd = Command::new(tools.node_bin.join("wrangler"));
    cmd.current_dir(repo_root())
        .args([
            "dev",
            "--local",
            "--ip",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["--inspector-port", &free_port()?.to_string()])
        .arg("--env-file")
        .arg(&env_file)
        .arg("--persist-to")
        .arg(opts.dir.join("wrangler-state"))
        .args([
            "--show-interactive-dev-session=false",
            "--log-level",
            "info",
        ])
        .env("WRANGLER_LOG_PATH", opts.dir.join("logs"));
    for (k, v) in tools.worker_env() {
        cmd.env(k, v);
    }
    let mut proc = Proc::spawn("wrangler dev", &mut cmd, &log, None)?;
    wait_http(
        &mut proc,
        &format!("http://127.0.0.1:{port}/healthz"),
        Duration::from_secs(120),
        Some(&log),
    )
    .await?;
    Ok((proc, "wrangler dev (workerd)"))
}

/// The port of the workerd that runs the worker itself, behind `wrangler dev`'s proxy (a second
/// workerd running wrangler's ProxyWorker on `proxy_port`). Benchmarks and the body-flood tests
/// talk to it directly: the dev proxy adds about 1 ms a request, and it turns any failed
/// upstream fetch on a path other than `/` into "Your worker restarted mid-request" (a 503)
/// — for a refused 300 MB upload, and for requests in flight beside it. The port changes when
/// wrangler reloads the worker; the stack never edits sources while it runs.
pub async fn workerd_port(pgid: i32, proxy_port: u16) -> Result<u16> {
    let ports = crate::proc::listening_ports(pgid)?;
    let proxy_pids: Vec<i32> = ports
        .iter()
        .filter(|(_, p)| *p == proxy_port)
        .map(|(pid, _)| *pid)
        .collect();
    let mut answering = Vec::new();
    for (pid, port) in &ports {
        if proxy_pids.contains(pid) {
            continue;
        }
        let url = format!("http://127.0.0.1:{port}/healthz");
        if crate::proc::http_status(&url, Duration::from_secs(5))
            .await
            .ok()
            == Some(200)
        {
            answering.push(*port);
        }
    }
    match answering.as_slice() {
        [port] => Ok(*port),
        other => bail!(
            "expected one workerd port besides wrangler's proxy on {proxy_port} answering /healthz, \
             found {other:?} (listeners of process group {pgid}: {ports:?})"
        ),
    }
}

async fn start_spin(
    opts: &Options,
    tools: &Tools,
    port: u16,
    settings: &[(&str, String)],
    outbound: &[String],
) -> Result<(Proc, &'static str)> {
    let log = opts.dir.join("logs/spin.log");
    let host = &opts.spin_host;
    let mut cmd = host.command(
        tools,
        &opts.dir.join("spin"),
        &format!("127.0.0.1:{port}"),
        settings,
        outbound,
    )?;
    eprintln!(
        "xtask: serving the {} Spin build under {}",
        host.build().name(),
        host.name()
    );
    let mut proc = Proc::spawn(host.name(), &mut cmd, &log, None)?;
    wait_http(
        &mut proc,
        &format!("http://127.0.0.1:{port}/healthz"),
        Duration::from_secs(60),
        Some(&log),
    )
    .await?;
    Ok((proc, host.name()))
}
