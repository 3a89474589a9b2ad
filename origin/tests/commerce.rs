//! Commerce in Postgres (migrations/0006_commerce.sql, migrations/functions/40_commerce.sql):
//! visits, checkout, order transitions, the outbox and the reports, against a real server.
//!
//! Every call runs the way the edge's batches do: as `edgefront_app`, in one READ COMMITTED
//! transaction whose first statement is `SELECT set_config('app.current_tenant', $1, true)`,
//! with text parameters of unspecified type. Concurrent cases give each task its own session
//! and start them together. Tenants, items and visits are seeded, and the results checked, as
//! the migrating superuser (which bypasses row-level security).
//!
//! Run only when EDGEFRONT_TEST_DATABASE_URL names a superuser URL of a scratch database; each
//! test migrates a database of its own on that cluster and drops it at the end.

// Test helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edgefront_origin::pg::{Budget, PgConnection, PgError};
use edgefront_origin::{migrate, parse_connection_string};
use serde_json::{json, Value};
use tokio::sync::{Barrier, Mutex};

fn database_url() -> String {
    std::env::var("EDGEFRONT_TEST_DATABASE_URL").expect(
        "EDGEFRONT_TEST_DATABASE_URL must name a superuser database (cargo xtask test sets it)",
    )
}

/// A fresh id (unique within the test process).
fn uuid() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn connect(url: &str) -> PgConnection {
    let info = parse_connection_string(url).unwrap();
    PgConnection::connect(&info.connect_params(Vec::new(), Duration::from_secs(10)))
        .await
        .unwrap()
}

/// Runs `sql` (simple protocol) as the superuser; the last statement's rows.
async fn admin(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut conn = connect(url).await;
    let out = conn.simple_query(sql).await;
    conn.close().await;
    out.map_err(|e| format!("{sql}: {e}"))
        .unwrap()
        .pop()
        .map(|o| o.rows)
        .unwrap_or_default()
}

/// The first column of the first row, as the superuser (NULL as "").
async fn scalar(url: &str, sql: &str) -> String {
    admin(url, sql).await[0][0].clone().unwrap_or_default()
}

/// A migrated database of its own for one test.
struct TestDb {
    url: String,
}

impl TestDb {
    async fn new(tag: &str) -> TestDb {
        let cluster = database_url();
        let name = format!("edgefront_commerce_{tag}_{}", std::process::id());
        admin(
            &cluster,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await;
        admin(&cluster, &format!("CREATE DATABASE {name}")).await;
        let mut url = url::Url::parse(&cluster).unwrap();
        url.set_path(&format!("/{name}"));
        let url = url.to_string();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        // One at a time: 0001 alters the cluster-wide role, and two databases migrating at
        // once fail with "tuple concurrently updated".
        static MIGRATING: Mutex<()> = Mutex::const_new(());
        let _one = MIGRATING.lock().await;
        migrate::apply(&url, &dir).await.unwrap();
        TestDb { url }
    }

    async fn drop(self) {
        let name = parse_connection_string(&self.url).unwrap().database;
        admin(
            &database_url(),
            &format!("DROP DATABASE {name} WITH (FORCE)"),
        )
        .await;
    }

    /// A tenant of `tier` with `settings`; its id.
    async fn tenant(&self, tier: &str, settings: Value) -> String {
        let id = uuid();
        let slug = format!("t-{}", &id[24..]);
        admin(
            &self.url,
            &format!(
                "INSERT INTO tenants (id, slug, name, tier, settings)
                 VALUES ('{id}', '{slug}', 'Shop {slug}', '{tier}', '{}')",
                settings.to_string().replace('\'', "''")
            ),
        )
        .await;
        id
    }

    /// A catalog item; `inventory` None is NULL (untracked, unlimited). Its id.
    async fn item(
        &self,
        tenant: &str,
        price: &str,
        currency: &str,
        inventory: Option<i32>,
        status: &str,
    ) -> String {
        let id = uuid();
        let inventory = inventory.map_or("NULL".to_owned(), |n| n.to_string());
        admin(
            &self.url,
            &format!(
                "INSERT INTO catalog_items (tenant_id, id, sku, name, price, currency, inventory, status)
                 VALUES ('{tenant}', '{id}', 'SKU-{}', 'Item {}', {price}, '{currency}', {inventory}, '{status}')",
                &id[24..],
                &id[24..]
            ),
        )
        .await;
        id
    }

    /// The item's inventory ("" when NULL).
    async fn inventory(&self, item: &str) -> String {
        scalar(
            &self.url,
            &format!("SELECT inventory FROM catalog_items WHERE id = '{item}'"),
        )
        .await
    }

    async fn count(&self, table: &str, tenant: &str) -> i64 {
        scalar(
            &self.url,
            &format!("SELECT count(*) FROM {table} WHERE tenant_id = '{tenant}'"),
        )
        .await
        .parse()
        .unwrap()
    }

    /// Everything a checkout may write for `tenant`, to show that a refusal wrote nothing.
    async fn state(&self, tenant: &str) -> Vec<Vec<Option<String>>> {
        admin(
            &self.url,
            &format!(
                "SELECT 'orders', count(*)::text FROM orders WHERE tenant_id = '{tenant}'
                 UNION ALL SELECT 'lines', count(*)::text FROM order_items WHERE tenant_id = '{tenant}'
                 UNION ALL SELECT 'outbox', count(*)::text FROM outbox WHERE tenant_id = '{tenant}'
                 UNION ALL SELECT 'counter', coalesce(max(last_number), 0)::text FROM order_counters
                           WHERE tenant_id = '{tenant}'
                 UNION ALL SELECT 'items', coalesce(string_agg(concat_ws('/', id, inventory, version, updated_at),
                                                               ' ' ORDER BY id), '')
                           FROM catalog_items WHERE tenant_id = '{tenant}'"
            ),
        )
        .await
    }
}

/// One session of the application role.
struct App {
    conn: PgConnection,
}

impl App {
    async fn connect(url: &str) -> App {
        let mut conn = connect(url).await;
        conn.simple_query("SET ROLE edgefront_app").await.unwrap();
        App { conn }
    }

    /// One edge batch: BEGIN; set_config(tenant); `sql`; COMMIT (ROLLBACK on error). The rows
    /// of `sql`; a `None` parameter is NULL.
    async fn batch(
        &mut self,
        tenant: &str,
        sql: &str,
        params: &[Option<String>],
    ) -> Result<Vec<Vec<Option<String>>>, PgError> {
        self.conn.simple_query("BEGIN").await?;
        let out = async {
            self.conn
                .query(
                    "SELECT set_config('app.current_tenant', $1, true)",
                    &[Some(tenant.to_owned())],
                    &mut Budget::unlimited(),
                )
                .await?;
            self.conn.query(sql, params, &mut Budget::unlimited()).await
        }
        .await;
        match out {
            Ok(out) => {
                self.conn.simple_query("COMMIT").await?;
                Ok(out.rows)
            }
            Err(e) => {
                self.conn.simple_query("ROLLBACK").await?;
                Err(e)
            }
        }
    }

    /// [`App::batch`] with non-NULL parameters.
    async fn rows(
        &mut self,
        tenant: &str,
        sql: &str,
        params: &[&str],
    ) -> Result<Vec<Vec<Option<String>>>, PgError> {
        let params: Vec<Option<String>> = params.iter().map(|p| Some((*p).to_owned())).collect();
        self.batch(tenant, sql, &params).await
    }

    /// [`App::rows`] for a statement returning one jsonb value.
    async fn json(&mut self, tenant: &str, sql: &str, params: &[&str]) -> Result<Value, PgError> {
        let rows = self.rows(tenant, sql, params).await?;
        Ok(serde_json::from_str(rows[0][0].as_deref().unwrap()).unwrap())
    }

    async fn checkout(&mut self, tenant: &str, key: &str, hash: &str, request: &Value) -> Value {
        self.json(
            tenant,
            CHECKOUT,
            &[&uuid(), key, hash, "visitor-1", &request.to_string()],
        )
        .await
        .unwrap()
    }

    /// `version` None: no If-Match (NULL).
    async fn transition(
        &mut self,
        tenant: &str,
        order: &str,
        version: Option<i64>,
        status: &str,
    ) -> Value {
        let params = [
            Some(order.to_owned()),
            version.map(|v| v.to_string()),
            Some(status.to_owned()),
        ];
        let rows = self.batch(tenant, TRANSITION, &params).await.unwrap();
        serde_json::from_str(rows[0][0].as_deref().unwrap()).unwrap()
    }
}

const CHECKOUT: &str = "SELECT public.checkout($1, $2, $3, $4, $5)";
const TRANSITION: &str = "SELECT public.order_transition($1, $2, $3)";
const VISIT: &str = "SELECT public.visit_record($1, $2, $3, $4)";

fn order_request(lines: &[(&str, u32)]) -> Value {
    json!({
        "items": lines.iter().map(|(id, q)| json!({"item_id": id, "quantity": q})).collect::<Vec<_>>(),
        "customer": {"email": "ann@example.com", "name": "Ann"},
        "shipping_address": {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"},
    })
}

fn donation_request(amount: &str, campaign: Option<&str>) -> Value {
    let mut donation = json!({"amount": amount});
    if let Some(c) = campaign {
        donation["campaign"] = json!(c);
    }
    json!({"donation": donation, "customer": {"email": "don@example.com", "name": "Don"}})
}

/// Runs one statement per entry of `calls` (params, each returning one jsonb), each on its own
/// session in its own transaction, all started together. The results in `calls` order.
///
/// `hold`: rows the superuser locks (`FOR UPDATE`) before the calls start and releases only once
/// every call is waiting for a lock, so they all meet at their most contended point instead of
/// finishing one by one as they happen to arrive.
async fn concurrently(
    url: &str,
    tenant: &str,
    sql: &'static str,
    calls: Vec<Vec<String>>,
    hold: Option<String>,
) -> Vec<Result<Value, String>> {
    let n = calls.len();
    let mut holder = None;
    if let Some(rows) = hold {
        let mut conn = connect(url).await;
        conn.simple_query(&format!("BEGIN; {rows} FOR UPDATE"))
            .await
            .unwrap();
        holder = Some(conn);
    }
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = Vec::new();
    for params in calls {
        let (url, tenant, barrier) = (url.to_owned(), tenant.to_owned(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut app = App::connect(&url).await;
            barrier.wait().await;
            let params: Vec<&str> = params.iter().map(String::as_str).collect();
            let out = app.json(&tenant, sql, &params).await;
            app.conn.close().await;
            out.map_err(|e| e.to_string())
        }));
    }
    if let Some(mut conn) = holder {
        let waiting = "SELECT count(*) FROM pg_stat_activity
                       WHERE datname = current_database() AND wait_event_type = 'Lock'";
        let mut seen = 0;
        for _ in 0..400 {
            seen = scalar(url, waiting).await.parse::<usize>().unwrap();
            if seen >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(seen, n, "every call waits behind the held rows");
        conn.simple_query("COMMIT").await.unwrap();
        conn.close().await;
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// How many results had each outcome (errors as "error: …").
fn outcomes(results: &[Result<Value, String>]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in results {
        let key = match r {
            Ok(v) => v["outcome"].as_str().unwrap().to_owned(),
            Err(e) => format!("error: {e}"),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

fn checkout_calls(n: usize, request: &Value) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| {
            vec![
                uuid(),
                format!("key-{i}-{}", uuid()),
                format!("hash-{i}"),
                format!("visitor-{i}"),
                request.to_string(),
            ]
        })
        .collect()
}

fn db_code(e: &PgError) -> &str {
    match e {
        PgError::Db(db) => &db.code,
        other => panic!("not a database error: {other}"),
    }
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn thirty_concurrent_checkouts_of_five_in_stock_create_five_orders() {
    let db = TestDb::new("oversell").await;
    let tenant = db.tenant("premium", json!({})).await;
    let item = db.item(&tenant, "12.5", "EUR", Some(5), "active").await;

    let results = concurrently(
        &db.url,
        &tenant,
        CHECKOUT,
        checkout_calls(30, &order_request(&[(&item, 1)])),
        Some(format!("SELECT 1 FROM catalog_items WHERE id = '{item}'")),
    )
    .await;
    assert_eq!(
        outcomes(&results),
        counts(&[("created", 5), ("out_of_stock", 25)])
    );
    let mut created = BTreeSet::new();
    let mut numbers = Vec::new();
    for r in results.iter().map(|r| r.as_ref().unwrap()) {
        if r["outcome"] == "created" {
            let o = &r["order"];
            assert_eq!(o["status"], "pending");
            assert_eq!(o["currency"], "EUR");
            assert_eq!(o["total"], "12.500");
            assert_eq!(o["lines"][0]["unit_price"], "12.500");
            created.insert(o["id"].as_str().unwrap().to_owned());
            numbers.push(o["number"].as_i64().unwrap());
        } else {
            assert_eq!(
                r["items"],
                json!([{"item_id": item, "requested": 1, "available": 0}])
            );
        }
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1001..=1005).collect::<Vec<_>>());

    assert_eq!(db.inventory(&item).await, "0");
    assert_eq!(db.count("orders", &tenant).await, 5);
    assert_eq!(db.count("order_items", &tenant).await, 5);
    // Exactly one 'order.created' per order, and nothing else.
    let outbox = admin(
        &db.url,
        &format!("SELECT order_id::text, event FROM outbox WHERE tenant_id = '{tenant}'"),
    )
    .await;
    assert_eq!(outbox.len(), 5);
    assert!(outbox
        .iter()
        .all(|r| r[1].as_deref() == Some("order.created")));
    let in_outbox: BTreeSet<String> = outbox.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(in_outbox, created);
    assert_eq!(
        scalar(
            &db.url,
            &format!("SELECT last_number FROM order_counters WHERE tenant_id = '{tenant}'")
        )
        .await,
        "1005"
    );
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn concurrent_checkouts_get_unique_numbers_per_tenant_and_unlimited_stock_is_untouched() {
    let db = TestDb::new("numbers").await;
    let tenant = db.tenant("enterprise", json!({})).await;
    let unlimited = db.item(&tenant, "3", "USD", None, "active").await;
    let results = concurrently(
        &db.url,
        &tenant,
        CHECKOUT,
        checkout_calls(25, &order_request(&[(&unlimited, 3)])),
        Some(format!(
            "SELECT 1 FROM catalog_items WHERE id = '{unlimited}'"
        )),
    )
    .await;
    assert_eq!(outcomes(&results), counts(&[("created", 25)]));
    let numbers: BTreeSet<i64> = results
        .iter()
        .map(|r| r.as_ref().unwrap()["order"]["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, (1001..=1025).collect());
    assert_eq!(db.inventory(&unlimited).await, "", "still NULL");
    assert_eq!(
        scalar(
            &db.url,
            &format!("SELECT version FROM catalog_items WHERE id = '{unlimited}'")
        )
        .await,
        "1",
        "an untracked item is not written"
    );
    assert_eq!(
        results[0].as_ref().unwrap()["order"]["total"],
        "9.000",
        "3 × 3.000"
    );

    // Numbers are per tenant.
    let other = db.tenant("basic", json!({})).await;
    let item = db.item(&other, "1", "USD", None, "active").await;
    let mut app = App::connect(&db.url).await;
    let r = app
        .checkout(&other, "k", "h", &order_request(&[(&item, 1)]))
        .await;
    assert_eq!(r["order"]["number"], 1001);
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn concurrent_retries_of_one_key_make_one_order() {
    let db = TestDb::new("idem").await;
    let tenant = db.tenant("basic", json!({})).await;
    let item = db.item(&tenant, "10", "EUR", Some(5), "active").await;
    let request = order_request(&[(&item, 2)]);
    // Each retry comes with a new order id, as the edge makes one per request.
    let calls: Vec<Vec<String>> = (0..5)
        .map(|_| {
            vec![
                uuid(),
                "retry-key".to_owned(),
                "same-hash".to_owned(),
                "visitor-1".to_owned(),
                request.to_string(),
            ]
        })
        .collect();
    let hold = format!("SELECT 1 FROM catalog_items WHERE id = '{item}'");
    let results = concurrently(&db.url, &tenant, CHECKOUT, calls, Some(hold)).await;
    assert_eq!(
        outcomes(&results),
        counts(&[("created", 1), ("replayed", 4)])
    );
    let docs: Vec<&Value> = results
        .iter()
        .map(|r| &r.as_ref().unwrap()["order"])
        .collect();
    assert!(docs.iter().all(|d| *d == docs[0]), "{docs:?}");
    assert_eq!(db.count("orders", &tenant).await, 1);
    assert_eq!(db.count("outbox", &tenant).await, 1);
    assert_eq!(db.inventory(&item).await, "3", "taken once");

    // The same key with another body: refused, nothing written.
    let before = db.state(&tenant).await;
    let mut app = App::connect(&db.url).await;
    let r = app
        .checkout(
            &tenant,
            "retry-key",
            "other-hash",
            &order_request(&[(&item, 1)]),
        )
        .await;
    assert_eq!(r, json!({"outcome": "key_reused"}));
    assert_eq!(db.state(&tenant).await, before);

    // A replay after the order moved on still answers with the order as it was created.
    let id = docs[0]["id"].as_str().unwrap();
    let moved = app.transition(&tenant, id, None, "confirmed").await;
    assert_eq!(moved["order"]["status"], "confirmed");
    let r = app
        .checkout(&tenant, "retry-key", "same-hash", &request)
        .await;
    assert_eq!(r["outcome"], "replayed");
    assert_eq!(&r["order"], docs[0]);
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn refused_checkouts_write_nothing() {
    let db = TestDb::new("refused").await;
    let settings = json!({"currency": "EUR", "donations": {
        "enabled": true, "minimum": "5", "maximum": 100, "campaigns": ["spring"]}});
    let tenant = db.tenant("basic", settings).await;
    let a = db.item(&tenant, "4", "EUR", Some(2), "active").await;
    let b = db.item(&tenant, "6", "EUR", Some(10), "active").await;
    let draft = db.item(&tenant, "1", "EUR", Some(10), "draft").await;
    let archived = db.item(&tenant, "1", "EUR", Some(10), "archived").await;
    let usd = db.item(&tenant, "1", "USD", Some(10), "active").await;
    let unknown = uuid();
    let mut app = App::connect(&db.url).await;
    let before = db.state(&tenant).await;

    let refusals = [
        (
            order_request(&[(&unknown, 1), (&a, 1)]),
            json!({"outcome": "unavailable", "items": [unknown]}),
        ),
        (
            order_request(&[(&a, 1), (&draft, 1), (&archived, 1)]),
            json!({"outcome": "unavailable", "items": [draft, archived]}),
        ),
        (
            order_request(&[(&a, 1), (&usd, 1)]),
            json!({"outcome": "unavailable", "items": [usd]}),
        ),
        (
            order_request(&[(&b, 3), (&a, 3)]),
            json!({"outcome": "out_of_stock",
                   "items": [{"item_id": a, "requested": 3, "available": 2}]}),
        ),
        (
            donation_request("4.999", None),
            json!({"outcome": "donation_out_of_range", "minimum": "5.000", "maximum": "100.000"}),
        ),
        (
            donation_request("100.001", Some("spring")),
            json!({"outcome": "donation_out_of_range", "minimum": "5.000", "maximum": "100.000"}),
        ),
        (
            donation_request("10", Some("fall")),
            json!({"outcome": "unknown_campaign", "campaigns": ["spring"]}),
        ),
    ];
    for (i, (request, expected)) in refusals.iter().enumerate() {
        let r = app
            .checkout(&tenant, &format!("refused-{i}"), "h", request)
            .await;
        assert_eq!(&r, expected, "{request}");
    }
    assert_eq!(db.state(&tenant).await, before);

    // Nothing was recorded under a refused key either: it can carry another body now.
    let r = app
        .checkout(&tenant, "refused-3", "h2", &order_request(&[(&b, 3)]))
        .await;
    assert_eq!(r["outcome"], "created");
    assert_eq!(db.inventory(&b).await, "7");
    assert_eq!(db.inventory(&a).await, "2");
    let r = app
        .checkout(
            &tenant,
            "refused-6",
            "h2",
            &donation_request("10", Some("spring")),
        )
        .await;
    assert_eq!(r["outcome"], "created");
    assert_eq!(r["order"]["kind"], "donation");
    assert_eq!(r["order"]["currency"], "EUR", "the tenant's currency");
    assert_eq!(
        r["order"]["lines"],
        json!([{"line": 1, "kind": "donation", "item_id": null, "sku": null,
                "name": "Donation: spring", "unit_price": "10.000", "quantity": 1,
                "line_total": "10.000", "campaign": "spring"}])
    );

    // Donations not enabled.
    let plain = db.tenant("basic", json!({})).await;
    let before = db.state(&plain).await;
    let r = app
        .checkout(&plain, "d", "h", &donation_request("10", None))
        .await;
    assert_eq!(r, json!({"outcome": "donations_disabled"}));
    assert_eq!(db.state(&plain).await, before);

    // The monthly order limit (the tenant's override of its tier's).
    let limited = db
        .tenant("basic", json!({"limits": {"max_orders_per_month": 1}}))
        .await;
    let item = db.item(&limited, "1", "EUR", Some(10), "active").await;
    let first = order_request(&[(&item, 1)]);
    assert_eq!(
        app.checkout(&limited, "first", "h", &first).await["outcome"],
        "created"
    );
    let before = db.state(&limited).await;
    let r = app
        .checkout(&limited, "second", "h", &order_request(&[(&item, 2)]))
        .await;
    assert_eq!(r, json!({"outcome": "tier_limit", "limit": 1, "count": 1}));
    // A retry of the first is still answered.
    assert_eq!(
        app.checkout(&limited, "first", "h", &first).await["outcome"],
        "replayed"
    );
    assert_eq!(db.state(&limited).await, before);
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn the_monthly_order_limit_holds_under_concurrency() {
    let db = TestDb::new("limit").await;
    let tenant = db
        .tenant("enterprise", json!({"limits": {"max_orders_per_month": 3}}))
        .await;
    let item = db.item(&tenant, "1", "EUR", None, "active").await;
    let results = concurrently(
        &db.url,
        &tenant,
        CHECKOUT,
        checkout_calls(12, &order_request(&[(&item, 1)])),
        Some(format!("SELECT 1 FROM catalog_items WHERE id = '{item}'")),
    )
    .await;
    assert_eq!(
        outcomes(&results),
        counts(&[("created", 3), ("tier_limit", 9)])
    );
    for r in results.iter().map(|r| r.as_ref().unwrap()) {
        if r["outcome"] == "tier_limit" {
            assert_eq!(r, &json!({"outcome": "tier_limit", "limit": 3, "count": 3}));
        }
    }
    assert_eq!(db.count("orders", &tenant).await, 3);
    assert_eq!(db.count("outbox", &tenant).await, 3);
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn transitions_follow_the_lifecycle_and_write_one_event_each() {
    let db = TestDb::new("transitions").await;
    let tenant = db.tenant("basic", json!({})).await;
    let item = db.item(&tenant, "2.5", "EUR", Some(10), "active").await;
    let mut app = App::connect(&db.url).await;
    let created = app
        .checkout(&tenant, "k", "h", &order_request(&[(&item, 2)]))
        .await;
    let id = created["order"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["order"]["version"], 1);

    let invalid = |from: &str, allowed: Value| json!({"outcome": "invalid_transition", "from": from, "allowed": allowed});
    assert_eq!(
        app.transition(&tenant, &id, None, "shipped").await,
        invalid("pending", json!(["confirmed", "cancelled"]))
    );
    assert_eq!(
        app.transition(&tenant, &id, None, "pending").await,
        invalid("pending", json!(["confirmed", "cancelled"])),
        "the same status is not a transition"
    );
    assert_eq!(
        app.transition(&tenant, &id, Some(2), "confirmed").await,
        json!({"outcome": "precondition_failed", "version": 1})
    );
    assert_eq!(
        app.transition(&tenant, &uuid(), None, "confirmed").await,
        json!({"outcome": "not_found"})
    );

    let r = app.transition(&tenant, &id, Some(1), "confirmed").await;
    assert_eq!(r["outcome"], "updated");
    assert_eq!(r["order"]["status"], "confirmed");
    assert_eq!(r["order"]["version"], 2);
    assert!(r["order"]["updated_at"].as_str() > created["order"]["updated_at"].as_str());
    assert_eq!(
        app.transition(&tenant, &id, None, "delivered").await,
        invalid("confirmed", json!(["shipped", "cancelled"]))
    );
    let r = app.transition(&tenant, &id, None, "shipped").await;
    assert_eq!(r["order"]["version"], 3);
    assert_eq!(
        app.transition(&tenant, &id, None, "cancelled").await,
        invalid("shipped", json!(["delivered"]))
    );
    let r = app.transition(&tenant, &id, Some(3), "delivered").await;
    assert_eq!(r["order"]["status"], "delivered");
    assert_eq!(r["order"]["version"], 4);
    assert_eq!(
        app.transition(&tenant, &id, None, "cancelled").await,
        invalid("delivered", json!([]))
    );
    assert_eq!(
        app.transition(&tenant, &id, None, "refunded").await,
        invalid("delivered", json!([]))
    );
    assert_eq!(
        db.inventory(&item).await,
        "8",
        "only a cancel gives stock back"
    );

    let events = admin(
        &db.url,
        &format!(
            // 'order.created' carries the document itself, a change {{order, from, to}}.
            "SELECT event, payload->>'from', payload->>'to',
                    coalesce(payload #>> '{{order,status}}', payload->>'status'),
                    coalesce(payload #>> '{{order,version}}', payload->>'version')
             FROM outbox WHERE tenant_id = '{tenant}' ORDER BY id"
        ),
    )
    .await;
    let events: Vec<Vec<String>> = events
        .into_iter()
        .map(|r| r.into_iter().map(Option::unwrap_or_default).collect())
        .collect();
    assert_eq!(
        events,
        [
            ["order.created", "", "", "pending", "1"],
            [
                "order.status_changed",
                "pending",
                "confirmed",
                "confirmed",
                "2"
            ],
            [
                "order.status_changed",
                "confirmed",
                "shipped",
                "shipped",
                "3"
            ],
            [
                "order.status_changed",
                "shipped",
                "delivered",
                "delivered",
                "4"
            ],
        ]
        .map(|r| r.map(str::to_owned).to_vec())
    );
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn concurrent_cancels_give_stock_back_once() {
    let db = TestDb::new("cancel").await;
    let tenant = db.tenant("basic", json!({})).await;
    let tracked = db.item(&tenant, "5", "EUR", Some(5), "active").await;
    let unlimited = db.item(&tenant, "1", "EUR", None, "active").await;
    let mut app = App::connect(&db.url).await;
    let created = app
        .checkout(
            &tenant,
            "k",
            "h",
            &order_request(&[(&tracked, 3), (&unlimited, 2)]),
        )
        .await;
    let id = created["order"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["order"]["total"], "17.000");
    assert_eq!(db.inventory(&tracked).await, "2");
    app.transition(&tenant, &id, None, "confirmed").await;

    let calls = (0..6)
        .map(|_| vec![id.clone(), String::new(), "cancelled".to_owned()])
        .collect();
    // An empty string is not a version: pass NULL through a query of its own.
    let results = concurrently(
        &db.url,
        &tenant,
        "SELECT public.order_transition($1, NULLIF($2, '')::integer, $3)",
        calls,
        Some(format!("SELECT 1 FROM orders WHERE id = '{id}'")),
    )
    .await;
    assert_eq!(
        outcomes(&results),
        counts(&[("updated", 1), ("invalid_transition", 5)])
    );
    for r in results.iter().map(|r| r.as_ref().unwrap()) {
        if r["outcome"] == "invalid_transition" {
            assert_eq!(r["from"], "cancelled");
            assert_eq!(r["allowed"], json!([]));
        }
    }
    assert_eq!(db.inventory(&tracked).await, "5");
    assert_eq!(db.inventory(&unlimited).await, "");
    assert_eq!(
        admin(
            &db.url,
            &format!(
                "SELECT event, payload->>'from', payload->>'to', payload #>> '{{order,status}}'
                 FROM outbox WHERE order_id = '{id}' AND event <> 'order.created' ORDER BY id"
            )
        )
        .await,
        [
            ["order.status_changed", "pending", "confirmed", "confirmed"],
            ["order.cancelled", "confirmed", "cancelled", "cancelled"],
        ]
        .map(|r| r.map(|s| Some(s.to_owned())).to_vec())
    );
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn checkouts_and_cancels_of_shared_items_in_any_order_keep_inventory_exact() {
    let db = TestDb::new("mixed").await;
    let tenant = db.tenant("premium", json!({})).await;
    let x = db.item(&tenant, "1", "EUR", Some(100), "active").await;
    let y = db.item(&tenant, "2", "EUR", Some(100), "active").await;
    let mut app = App::connect(&db.url).await;
    let mut to_cancel = Vec::new();
    for i in 0..8 {
        let r = app
            .checkout(
                &tenant,
                &format!("seed-{i}"),
                "h",
                &order_request(&[(&x, 2), (&y, 3)]),
            )
            .await;
        to_cancel.push(r["order"]["id"].as_str().unwrap().to_owned());
    }
    // Cancels lock y and x in id order, new checkouts name them in both orders.
    let barrier = Arc::new(Barrier::new(8 + 16));
    let mut tasks = Vec::new();
    for id in to_cancel {
        let (url, tenant, barrier) = (db.url.clone(), tenant.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut app = App::connect(&url).await;
            barrier.wait().await;
            app.transition(&tenant, &id, None, "cancelled").await
        }));
    }
    for i in 0..16 {
        let request = if i % 2 == 0 {
            order_request(&[(&x, 1), (&y, 4)])
        } else {
            order_request(&[(&y, 4), (&x, 1)])
        };
        let (url, tenant, barrier) = (db.url.clone(), tenant.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut app = App::connect(&url).await;
            barrier.wait().await;
            app.checkout(&tenant, &format!("new-{i}"), "h", &request)
                .await
        }));
    }
    let mut results: Vec<Result<Value, String>> = Vec::new();
    for t in tasks {
        results.push(Ok(t.await.unwrap()));
    }
    let by_outcome = outcomes(&results);
    assert_eq!(by_outcome["updated"], 8, "{by_outcome:?}");
    assert_eq!(
        by_outcome.get("created").copied().unwrap_or(0)
            + by_outcome.get("out_of_stock").copied().unwrap_or(0),
        16,
        "{by_outcome:?}"
    );
    // Stock + what live orders hold = what there was.
    let held = |item: &str| {
        format!(
            "SELECT i.inventory + coalesce((SELECT sum(l.quantity) FROM order_items l
                 JOIN orders o ON o.tenant_id = l.tenant_id AND o.id = l.order_id
                 WHERE l.item_id = i.id AND o.status <> 'cancelled'), 0)
             FROM catalog_items i WHERE i.id = '{item}'"
        )
    };
    assert_eq!(scalar(&db.url, &held(&x)).await, "100");
    assert_eq!(scalar(&db.url, &held(&y)).await, "100");
    let live = by_outcome.get("created").copied().unwrap_or(0) as i64;
    assert_eq!(
        db.inventory(&y).await.parse::<i64>().unwrap(),
        100 - 4 * live
    );
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn another_tenant_cannot_see_or_move_an_order() {
    let db = TestDb::new("rls").await;
    let a = db.tenant("basic", json!({})).await;
    let b = db.tenant("basic", json!({})).await;
    let a_item = db.item(&a, "1", "EUR", Some(5), "active").await;
    let b_item = db.item(&b, "1", "EUR", Some(5), "active").await;
    let mut app = App::connect(&db.url).await;
    assert_eq!(
        app.rows(
            &a,
            "SELECT current_user, (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)",
            &[]
        )
        .await
        .unwrap(),
        [[Some("edgefront_app".to_owned()), Some("f".to_owned())]]
    );

    let visit = uuid();
    let r = app
        .json(&a, VISIT, &[&visit, "visitor-a", r#"{"path": "/"}"#, "60"])
        .await
        .unwrap();
    assert_eq!(r["outcome"], "recorded");
    let mut request = order_request(&[(&a_item, 1)]);
    request["visit_id"] = json!(visit);
    let order = app.checkout(&a, "k", "h", &request).await;
    assert_eq!(order["order"]["visit_id"], json!(visit));
    let id = order["order"]["id"].as_str().unwrap().to_owned();

    // B sees none of A's rows.
    for table in [
        "orders",
        "order_items",
        "outbox",
        "visits",
        "order_counters",
    ] {
        assert_eq!(
            app.rows(&b, &format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap(),
            [[Some("0".to_owned())]],
            "{table}"
        );
    }
    assert_eq!(
        app.transition(&b, &id, None, "cancelled").await,
        json!({"outcome": "not_found"})
    );
    let summary = app
        .json(
            &b,
            "SELECT public.orders_summary(now() - interval '1 day', now() + interval '1 day')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(summary["orders"]["by_status"]["pending"]["count"], 0);
    // A's item is not B's to sell; A's visit is not B's to claim (dropped, not an error).
    let r = app
        .checkout(&b, "k", "h", &order_request(&[(&a_item, 1)]))
        .await;
    assert_eq!(r, json!({"outcome": "unavailable", "items": [a_item]}));
    let mut request = order_request(&[(&b_item, 1)]);
    request["visit_id"] = json!(visit);
    let r = app.checkout(&b, "k", "h", &request).await;
    assert_eq!(r["outcome"], "created", "B's own key space");
    assert_eq!(r["order"]["visit_id"], Value::Null);
    assert_eq!(r["order"]["number"], 1001);

    // A's order is untouched and still A's.
    assert_eq!(db.inventory(&a_item).await, "4");
    let mine = app
        .json(
            &a,
            "SELECT public.order_json(o) FROM public.orders o WHERE o.id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(mine, order["order"]);

    // Writes around the functions are refused: into another tenant (the policy's WITH CHECK),
    // deleting, or changing anything but an order's status.
    let insert = format!(
        "INSERT INTO orders (tenant_id, id, number, kind, customer_email, customer_name, currency,
             subtotal, total, idempotency_key, request_hash)
         VALUES ('{a}', '{}', 1, 'order', 'x@y.z', 'X', 'EUR', 0, 0, 'k2', 'h')",
        uuid()
    );
    for (sql, tenant) in [
        (insert.as_str(), &b),
        ("DELETE FROM orders", &a),
        ("UPDATE orders SET total = 0", &a),
        ("UPDATE order_items SET quantity = 1", &a),
        ("UPDATE outbox SET payload = '{}'", &a),
        ("DELETE FROM outbox", &a),
    ] {
        let err = app.rows(tenant, sql, &[]).await.unwrap_err();
        assert_eq!(db_code(&err), "42501", "{sql}: {err}");
    }
    // Without a tenant the writers refuse to run.
    let err = app
        .json(
            "",
            CHECKOUT,
            &[
                &uuid(),
                "k",
                "h",
                "v",
                &order_request(&[(&a_item, 1)]).to_string(),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(db_code(&err), "42501");
    assert_eq!(db.count("orders", &a).await, 1);
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn visits_are_rate_limited_per_visitor_under_concurrency() {
    let db = TestDb::new("visits").await;
    let tenant = db.tenant("basic", json!({})).await;
    let visit = json!({"path": "/shoes", "referrer": "https://example.com/",
                       "utm_source": "news", "utm_campaign": "spring"})
    .to_string();
    let calls = (0..12)
        .map(|_| {
            vec![
                uuid(),
                "visitor-v".to_owned(),
                visit.clone(),
                "5".to_owned(),
            ]
        })
        .collect();
    let results = concurrently(&db.url, &tenant, VISIT, calls, None).await;
    assert_eq!(
        outcomes(&results),
        counts(&[("recorded", 5), ("rate_limited", 7)])
    );
    for r in results.iter().map(|r| r.as_ref().unwrap()) {
        if r["outcome"] == "rate_limited" {
            let s = r["retry_after"].as_i64().unwrap();
            assert!((3590..=3600).contains(&s), "{r}");
        } else {
            assert!(r["visit"]["created_at"].as_str().unwrap().ends_with('Z'));
        }
    }
    assert_eq!(
        scalar(
            &db.url,
            &format!(
                "SELECT count(*) FROM visits WHERE tenant_id = '{tenant}' AND visitor_id = 'visitor-v'
                   AND utm_campaign = 'spring' AND referrer = 'https://example.com/'"
            )
        )
        .await,
        "5"
    );
    let mut app = App::connect(&db.url).await;
    let r = app
        .json(&tenant, VISIT, &[&uuid(), "visitor-w", &visit, "5"])
        .await
        .unwrap();
    assert_eq!(
        r["outcome"], "recorded",
        "another visitor has its own budget"
    );

    // Retry-After: until the oldest visit of the hour is an hour old.
    admin(
        &db.url,
        &format!(
            "INSERT INTO visits (tenant_id, id, visitor_id, path, created_at)
             SELECT '{tenant}', gen_random_uuid(), 'visitor-z', '/', now() - interval '50 minutes' + g * interval '1 minute'
             FROM generate_series(0, 2) g"
        ),
    )
    .await;
    let r = app
        .json(&tenant, VISIT, &[&uuid(), "visitor-z", &visit, "3"])
        .await
        .unwrap();
    assert_eq!(r["outcome"], "rate_limited");
    let s = r["retry_after"].as_i64().unwrap();
    assert!((590..=600).contains(&s), "{r}");
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn reports_count_orders_revenue_donations_and_attribution() {
    let db = TestDb::new("reports").await;
    let tenant = db
        .tenant(
            "basic",
            json!({"currency": "EUR", "donations": {"enabled": true, "currency": "GBP"}}),
        )
        .await;
    let item = db.item(&tenant, "10", "EUR", None, "active").await;
    let cheap = db.item(&tenant, "2.5", "EUR", None, "active").await;
    let mut app = App::connect(&db.url).await;
    let visit = |utm: Value| {
        let id = uuid();
        let mut v = json!({"path": "/"});
        v.as_object_mut()
            .unwrap()
            .extend(utm.as_object().unwrap().clone());
        (id, v.to_string())
    };
    let (v1, v1_doc) = visit(json!({"utm_source": "google", "utm_campaign": "spring"}));
    let (v2, v2_doc) = visit(json!({"utm_source": "google", "utm_campaign": "spring"}));
    let (v3, v3_doc) = visit(json!({}));
    for (id, doc) in [(&v1, &v1_doc), (&v2, &v2_doc), (&v3, &v3_doc)] {
        let r = app
            .json(&tenant, VISIT, &[id, "visitor", doc, "60"])
            .await
            .unwrap();
        assert_eq!(r["outcome"], "recorded");
    }
    let with_visit = |lines: &[(&str, u32)], visit: &str| {
        let mut r = order_request(lines);
        r["visit_id"] = json!(visit);
        r
    };
    let o1 = app
        .checkout(&tenant, "o1", "h", &with_visit(&[(&item, 2)], &v1))
        .await;
    assert_eq!(o1["order"]["total"], "20.000");
    let o2 = app
        .checkout(&tenant, "o2", "h", &with_visit(&[(&cheap, 2)], &v2))
        .await;
    app.transition(
        &tenant,
        o2["order"]["id"].as_str().unwrap(),
        None,
        "cancelled",
    )
    .await;
    let o3 = app
        .checkout(&tenant, "o3", "h", &order_request(&[(&cheap, 3)]))
        .await;
    assert_eq!(o3["order"]["total"], "7.500");
    app.transition(
        &tenant,
        o3["order"]["id"].as_str().unwrap(),
        None,
        "confirmed",
    )
    .await;
    let d1 = app
        .checkout(&tenant, "d1", "h", &donation_request("25.5", None))
        .await;
    assert_eq!(d1["order"]["currency"], "GBP", "donations.currency first");
    assert_eq!(d1["order"]["lines"][0]["name"], "Donation");
    let d2 = app
        .checkout(&tenant, "d2", "h", &donation_request("3", None))
        .await;
    app.transition(
        &tenant,
        d2["order"]["id"].as_str().unwrap(),
        None,
        "cancelled",
    )
    .await;

    let day = scalar(
        &db.url,
        "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    )
    .await;
    let range = "now() - interval '1 hour', now() + interval '1 hour'";
    let summary = app
        .json(
            &tenant,
            &format!("SELECT public.orders_summary({range})"),
            &[],
        )
        .await
        .unwrap();
    let status = |n: u32, revenue: &str| json!({"count": n, "revenue": revenue});
    assert_eq!(
        summary["orders"],
        json!({
            "by_status": {
                "pending": status(1, "20.000"), "confirmed": status(1, "7.500"),
                "shipped": status(0, "0.000"), "delivered": status(0, "0.000"),
                "cancelled": status(1, "0.000"),
            },
            "by_day": [{"day": day, "count": 3, "revenue": "27.500"}],
        })
    );
    assert_eq!(
        summary["donations"],
        json!({"count": 1, "amount": "25.500"})
    );
    assert!(summary["from"].as_str().unwrap().ends_with('Z'));

    let attribution = app
        .json(
            &tenant,
            &format!("SELECT public.visits_attribution({range})"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        attribution["rows"],
        json!([
            {"utm_source": "google", "utm_campaign": "spring", "visits": 2, "orders": 1, "revenue": "20.000"},
            {"utm_source": null, "utm_campaign": null, "visits": 1, "orders": 0, "revenue": "0.000"},
        ])
    );

    // An empty range.
    let empty = app
        .json(
            &tenant,
            "SELECT public.orders_summary(now() - interval '2 days', now() - interval '1 day')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(empty["orders"]["by_day"], json!([]));
    assert_eq!(empty["donations"], json!({"count": 0, "amount": "0.000"}));
    let empty = app
        .json(
            &tenant,
            "SELECT public.visits_attribution(now() - interval '2 days', now() - interval '1 day')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(empty["rows"], json!([]));
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn catalog_inventory_null_is_unlimited() {
    let db = TestDb::new("inventory").await;
    let tenant = db.tenant("basic", json!({})).await;
    let mut app = App::connect(&db.url).await;
    let create = |sku: &str, inventory: Option<Value>| {
        let mut item = json!({"sku": sku, "name": sku, "price": "1.5", "currency": "EUR"});
        if let Some(i) = inventory {
            item["inventory"] = i;
        }
        item.to_string()
    };
    let sql = "SELECT public.catalog_create(NULL, NULL, $1)";
    let r = app
        .json(&tenant, sql, &[&create("untracked", Some(Value::Null))])
        .await
        .unwrap();
    assert_eq!(r["outcome"], "created");
    assert_eq!(r["item"]["inventory"], Value::Null);
    let id = r["item"]["id"].as_str().unwrap().to_owned();
    assert_eq!(db.inventory(&id).await, "");
    let r = app
        .json(&tenant, sql, &[&create("absent", None)])
        .await
        .unwrap();
    assert_eq!(r["item"]["inventory"], 0);
    let r = app
        .json(&tenant, sql, &[&create("counted", Some(json!(7)))])
        .await
        .unwrap();
    assert_eq!(r["item"]["inventory"], 7);
    let counted = r["item"]["id"].as_str().unwrap().to_owned();

    let update = "SELECT public.catalog_update($1, NULL, $2)";
    let r = app
        .json(&tenant, update, &[&counted, r#"{"inventory": null}"#])
        .await
        .unwrap();
    assert_eq!(r["item"]["inventory"], Value::Null);
    let r = app
        .json(&tenant, update, &[&counted, r#"{"name": "renamed"}"#])
        .await
        .unwrap();
    assert_eq!(r["item"]["inventory"], Value::Null, "absent: unchanged");
    let r = app
        .json(&tenant, update, &[&counted, r#"{"inventory": 4}"#])
        .await
        .unwrap();
    assert_eq!(r["item"]["inventory"], 4);
    db.drop().await;
}
