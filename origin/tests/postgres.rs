//! Tests against a real Postgres, run only when EDGEFRONT_TEST_DATABASE_URL names a superuser
//! URL of a scratch database (e.g. postgres://postgres:pw@127.0.0.1:55432/edgefront).

// Test helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::http::Request;
use edgefront_origin::pg::{PgConnection, PREPARED_CAPACITY};
use edgefront_origin::{migrate, parse_connection_string, router, Config};
use serde_json::{json, Value};
use tower::ServiceExt;

fn database_url() -> String {
    std::env::var("EDGEFRONT_TEST_DATABASE_URL").expect(
        "EDGEFRONT_TEST_DATABASE_URL must name a superuser database (cargo xtask test sets it)",
    )
}

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgefront-origin-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn sql(config: &Config, url: &str, body: Value) -> (u16, Value) {
    sql_on(&router(config.clone()), url, body).await
}

/// One `/sql` request to `app` (its pool outlives the request), with the npm driver's
/// headers: rows as arrays of raw text.
async fn sql_on(app: &axum::Router, url: &str, body: Value) -> (u16, Value) {
    sql_with(
        app,
        url,
        &[
            ("Neon-Raw-Text-Output", "true"),
            ("Neon-Array-Mode", "true"),
        ],
        body,
    )
    .await
}

/// One `/sql` request to `app` with these headers besides the connection string.
async fn sql_with(
    app: &axum::Router,
    url: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, Value) {
    let mut req = Request::post("/sql").header("Neon-Connection-String", url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Body::from(body.to_string())).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn config_for(url: &str) -> Config {
    let info = parse_connection_string(url).unwrap();
    Config {
        pg_host: info.host,
        pg_port: info.port.unwrap_or(5432),
        allowed_roles: vec![info.user],
        allowed_databases: vec![info.database],
        ..Config::default()
    }
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn migrations_apply_once_and_refuse_edits() {
    let url = database_url();
    // Versions far beyond real migrations so this never collides with them.
    let table = format!("mig_test_{}", std::process::id());
    let dir = scratch_dir("migrate");
    std::fs::write(
        dir.join("9001_first.sql"),
        format!("CREATE TABLE {table} (x int);"),
    )
    .unwrap();
    std::fs::write(
        dir.join("9002_second.sql"),
        format!("INSERT INTO {table} VALUES (1); INSERT INTO {table} VALUES (2);"),
    )
    .unwrap();
    std::fs::write(
        dir.join("9003_broken.sql"),
        format!("INSERT INTO {table} VALUES (3); SELEC;"),
    )
    .unwrap();

    let err = migrate::apply(&url, &dir).await.unwrap_err();
    assert!(
        matches!(err, migrate::Error::Migration { ref file, .. } if file == "9003_broken"),
        "{err}"
    );
    std::fs::remove_file(dir.join("9003_broken.sql")).unwrap();
    // 9001 and 9002 were applied before the failure; running again applies nothing.
    assert!(migrate::apply(&url, &dir).await.unwrap().is_empty());

    let config = config_for(&url);
    let (status, body) = sql(
        &config,
        &url,
        json!({"query": format!("SELECT count(*) FROM {table}")}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["rows"],
        json!([["2"]]),
        "the broken file's insert was rolled back"
    );

    std::fs::write(dir.join("9001_first.sql"), "-- edited\n").unwrap();
    let err = migrate::apply(&url, &dir).await.unwrap_err();
    assert!(
        matches!(err, migrate::Error::ChecksumMismatch { .. }),
        "{err}"
    );

    let cleanup = json!({"queries": [
        {"query": format!("DROP TABLE {table}")},
        {"query": "DELETE FROM schema_migrations WHERE version IN ('9001', '9002', '9003')"},
    ]});
    assert_eq!(sql(&config, &url, cleanup).await.0, 200);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs `sql` (simple protocol) on `url`'s database and returns every row.
async fn rows(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let info = parse_connection_string(url).unwrap();
    let mut conn = PgConnection::connect(&info.connect_params(Vec::new(), Duration::from_secs(10)))
        .await
        .unwrap();
    let out = conn.simple_query(sql).await;
    conn.close().await;
    out.map_err(|e| format!("{sql}: {e}"))
        .unwrap()
        .into_iter()
        .flat_map(|o| o.rows)
        .collect()
}

/// The first column of every row.
async fn column(url: &str, sql: &str) -> Vec<String> {
    rows(url, sql)
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

/// Tests that run the real migrations take turns: 0001 alters the cluster-wide app role, and
/// two databases of one cluster altering it at once fail with "tuple concurrently updated".
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A new, empty database on the test cluster; returns its superuser URL.
async fn empty_database(tag: &str) -> String {
    let admin = database_url();
    let name = format!("edgefront_{tag}_{}", std::process::id());
    rows(
        &admin,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await;
    rows(&admin, &format!("CREATE DATABASE {name}")).await;
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

async fn drop_database(url: &str) {
    let name = parse_connection_string(url).unwrap().database;
    rows(
        &database_url(),
        &format!("DROP DATABASE {name} WITH (FORCE)"),
    )
    .await;
}

fn real_migrations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations")
}

/// A scratch copy of the real migrations directory (numbered files and functions/).
fn copy_of_real_migrations(tag: &str) -> PathBuf {
    let dir = scratch_dir(tag);
    let functions = dir.join(migrate::FUNCTIONS_DIR);
    std::fs::create_dir_all(&functions).unwrap();
    for file in migrate::discover(&real_migrations()).unwrap() {
        std::fs::copy(&file.path, dir.join(file.path.file_name().unwrap())).unwrap();
    }
    for file in migrate::discover_repeatable(&real_migrations()).unwrap() {
        std::fs::copy(&file.path, functions.join(&file.name)).unwrap();
    }
    dir
}

fn append(path: &Path, text: &str) {
    let mut contents = std::fs::read_to_string(path).unwrap();
    contents.push_str(text);
    std::fs::write(path, contents).unwrap();
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn real_migrations_on_an_empty_database() {
    let _one = ONE_AT_A_TIME.lock().await;
    let url = empty_database("migrate_real").await;
    let dir = real_migrations();
    let numbered = migrate::discover(&dir).unwrap();
    let repeatables = migrate::discover_repeatable(&dir).unwrap();
    let expected: Vec<String> = numbered
        .iter()
        .map(|f| format!("{}_{}", f.version, f.name))
        .chain(repeatables.iter().map(|f| f.label()))
        .collect();
    assert_eq!(migrate::apply(&url, &dir).await.unwrap(), expected);
    assert_eq!(
        migrate::apply(&url, &dir).await.unwrap(),
        Vec::<String>::new(),
        "nothing changed, nothing re-applied"
    );
    assert_eq!(
        column(&url, "SELECT name FROM schema_repeatables ORDER BY name").await,
        repeatables
            .iter()
            .map(|f| f.name.clone())
            .collect::<Vec<_>>()
    );

    // Every function of the schema (extensions' aside) is defined in functions/.
    let mut in_files: Vec<String> = Vec::new();
    for file in &repeatables {
        let text = std::fs::read_to_string(&file.path).unwrap();
        for (i, _) in text.match_indices("CREATE OR REPLACE FUNCTION public.") {
            let rest = &text[i + "CREATE OR REPLACE FUNCTION public.".len()..];
            in_files.push(rest[..rest.find('(').unwrap()].to_owned());
        }
    }
    in_files.sort();
    let in_database = column(
        &url,
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'public'
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                           WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                             AND d.deptype = 'e')
         ORDER BY p.proname COLLATE \"C\"",
    )
    .await;
    assert_eq!(in_database, in_files);

    // The triggers that moved with their functions, and what the functions were declared with.
    assert_eq!(
        rows(
            &url,
            "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal
             ORDER BY tgname"
        )
        .await,
        [
            ["audit_log", "audit_log_append_only"],
            ["audit_log", "audit_log_no_truncate"],
            ["catalog_items", "catalog_items_check_images"],
            ["files", "files_count_storage"],
            ["files", "files_set_updated_at"],
            ["tenants", "tenants_set_updated_at"],
        ]
        .map(|r| r.map(|s| Some(s.to_owned())).to_vec())
    );
    assert_eq!(
        column(
            &url,
            "SELECT concat_ws(' ', proname, prosecdef, proconfig::text,
                    has_function_privilege('edgefront_app', p.oid, 'EXECUTE'),
                    has_function_privilege('public', p.oid, 'EXECUTE'))
             FROM pg_proc p
             WHERE proname IN ('resolve_tenant_by_slug', 'catalog_search_ids', 'iso_utc')
             ORDER BY proname"
        )
        .await,
        [
            "catalog_search_ids t {\"search_path=public, pg_temp\"} t f",
            "iso_utc f t t",
            "resolve_tenant_by_slug t {\"search_path=public, pg_temp\"} t f",
        ]
    );
    assert_eq!(
        column(
            &url,
            "SELECT public.iso_utc('2024-01-02 03:04:05.123456+00')"
        )
        .await,
        ["2024-01-02T03:04:05.123456Z"]
    );
    drop_database(&url).await;
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn changed_functions_file_is_reapplied_alone() {
    let _one = ONE_AT_A_TIME.lock().await;
    let url = empty_database("migrate_repeatable").await;
    let dir = copy_of_real_migrations("migrate-repeatable");
    let functions = dir.join(migrate::FUNCTIONS_DIR);
    migrate::apply(&url, &dir).await.unwrap();

    let probe = |n: u32| {
        format!("\nCREATE OR REPLACE FUNCTION public.migrate_probe() RETURNS integer\nLANGUAGE sql AS $$ SELECT {n} $$;\n")
    };
    append(&functions.join("20_files.sql"), &probe(1));
    assert_eq!(
        migrate::apply(&url, &dir).await.unwrap(),
        ["functions/20_files.sql"]
    );
    assert_eq!(column(&url, "SELECT public.migrate_probe()").await, ["1"]);
    append(&functions.join("20_files.sql"), &probe(2));
    assert_eq!(
        migrate::apply(&url, &dir).await.unwrap(),
        ["functions/20_files.sql"]
    );
    assert_eq!(column(&url, "SELECT public.migrate_probe()").await, ["2"]);
    // Re-applying dropped and re-created the file's triggers.
    assert_eq!(
        column(
            &url,
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.files'::regclass
             AND NOT tgisinternal ORDER BY tgname"
        )
        .await,
        ["files_count_storage", "files_set_updated_at"]
    );

    // A failing file rolls back and is named; it is retried on the next run.
    std::fs::write(
        functions.join("25_broken.sql"),
        "CREATE OR REPLACE FUNCTION public.migrate_broken() RETURNS integer
         LANGUAGE sql AS $$ SELECT 1 $$;
         SELEC;",
    )
    .unwrap();
    let err = migrate::apply(&url, &dir).await.unwrap_err();
    assert!(
        matches!(err, migrate::Error::Migration { ref file, .. } if file == "functions/25_broken.sql"),
        "{err}"
    );
    assert_eq!(
        column(
            &url,
            "SELECT to_regproc('public.migrate_broken') IS NULL
                    AND NOT EXISTS (SELECT 1 FROM schema_repeatables WHERE name = '25_broken.sql')"
        )
        .await,
        ["t"]
    );
    std::fs::remove_file(functions.join("25_broken.sql")).unwrap();
    assert_eq!(
        migrate::apply(&url, &dir).await.unwrap(),
        Vec::<String>::new()
    );

    // Numbered migrations are still history.
    append(&dir.join("0002_catalog.sql"), "-- edited\n");
    let err = migrate::apply(&url, &dir).await.unwrap_err();
    assert!(
        matches!(err, migrate::Error::ChecksumMismatch { ref version, .. } if version == "0002"),
        "{err}"
    );

    drop_database(&url).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn text_results_and_errors_in_process() {
    let url = database_url();
    let config = config_for(&url);
    let (status, body) = sql(
        &config,
        &url,
        json!({"query": "SELECT $1::int + 1 AS n, $2::int[] AS a, $3::jsonb AS j, 0.1::float4 AS f",
               "params": ["41", [1, null], {"k": true}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["rows"],
        json!([["42", "{1,NULL}", "{\"k\": true}", "0.1"]])
    );
    assert_eq!(body["fields"][1]["dataTypeID"], 1007);

    let (status, body) = sql(&config, &url, json!({"query": "SELECT 1/0"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "22012");
    assert_eq!(body["severity"], "ERROR");
    assert!(body["detail"].is_null());
}

/// Without `Neon-Raw-Text-Output: true` values are typed by their columns as Neon's proxy
/// types them, arrays of any type included (a user's enum array is looked up in the
/// catalog); without `Neon-Array-Mode: true` rows are objects, unless a query's `arrayMode`
/// says otherwise.
#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn typed_values_and_object_rows_as_neon_writes_them() {
    let url = database_url();
    let app = router(config_for(&url));
    let mood = format!("mood_{}", std::process::id());
    let (status, body) = sql_on(
        &app,
        &url,
        json!({"query": format!("CREATE TYPE {mood} AS ENUM ('ok', 'meh')")}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let query = format!(
        "SELECT true AS b, 7::int2 AS s, $1::int AS i, 9007199254740993::int8 AS l, \
         1.25::numeric AS n, 0.5::float4 AS f, 'NaN'::float8 AS nan, \
         '{{\"k\": [1, null]}}'::jsonb AS j, ' [1] '::json AS js, 'x\"y'::text AS t, \
         ARRAY[1, NULL]::int[] AS ia, '{{{{t,f}},{{NULL,t}}}}'::bool[] AS ba, \
         ARRAY['a b', NULL, 'NULL', '']::text[] AS ta, '{{}}'::int[] AS ea, \
         ARRAY['{{\"a\": 1}}'::jsonb] AS ja, '[0:1]={{1.5,2}}'::float8[] AS fa, \
         ARRAY['ok', 'meh']::{mood}[] AS ma, 'ok'::{mood} AS m, NULL::int AS z, 2 AS i"
    );
    let typed_row = json!([true, 7, 41, "9007199254740993", "1.25", 0.5, "NaN",
        {"k": [1, null]}, [1], "x\"y", [1, null], [[true, false], [null, true]],
        ["a b", null, "NULL", ""], [], [{"a": 1}], [1.5, 2.0], ["ok", "meh"], "ok", null, 2]);
    let (status, body) = sql_with(
        &app,
        &url,
        &[("Neon-Array-Mode", "true")],
        json!({"query": query, "params": ["41"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([typed_row]));
    assert_eq!(body["rowAsArray"], true);

    // Objects by column name (the last of a repeated name is what a JSON reader keeps), in a
    // batch whose second query asks for arrays itself.
    let (status, body) = sql_with(
        &app,
        &url,
        &[],
        json!({"queries": [
            {"query": "SELECT 1 AS a, 'x' AS b, 2 AS a"},
            {"query": "SELECT 1 AS a, 'x' AS b", "arrayMode": true}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["rows"], json!([{"a": 2, "b": "x"}]));
    assert_eq!(body["results"][0]["rowAsArray"], false);
    assert_eq!(body["results"][1]["rows"], json!([[1, "x"]]));
    assert_eq!(body["results"][1]["rowAsArray"], true);

    // Raw text in object rows.
    let (status, body) = sql_with(
        &app,
        &url,
        &[("Neon-Raw-Text-Output", "true")],
        json!({"query": "SELECT 1 AS a, ARRAY[true] AS b"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([{"a": "1", "b": "{t}"}]));

    let (status, _) = sql_on(&app, &url, json!({"query": format!("DROP TYPE {mood}")})).await;
    assert_eq!(status, 200);
}

/// The array types whose OIDs Postgres fixes, as the proxy knows them, are the catalog's.
#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn builtin_array_types_match_the_catalog() {
    let url = database_url();
    let rows = rows(
        &url,
        "SELECT t.oid::text, e.oid::text, e.typdelim::text FROM pg_type t \
         JOIN pg_type e ON e.oid = t.typelem AND e.typarray = t.oid \
         WHERE t.oid < 10000 ORDER BY t.oid",
    )
    .await;
    let catalog: Vec<(u32, u32, String)> = rows
        .into_iter()
        .map(|r| match r.as_slice() {
            [Some(a), Some(e), Some(d)] => (a.parse().unwrap(), e.parse().unwrap(), d.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    let ours: Vec<(u32, u32, String)> = edgefront_origin::BUILTIN_ARRAYS
        .iter()
        .map(|&(a, e)| (a, e, if e == 603 { ";" } else { "," }.to_owned()))
        .collect();
    assert_eq!(ours, catalog);
}

/// A pooled session goes back without anything a request left in it (the pool's reset), and
/// the next request gets that same session. The statements the proxy itself parsed are what
/// stays (next test).
#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn a_pooled_session_keeps_nothing_of_the_request_before() {
    let url = database_url();
    let app = router(Config {
        pool_size: 1,
        ..config_for(&url)
    });
    let q = |query: &str| json!({ "query": query });
    let (status, body) = sql_on(&app, &url, q("SELECT pg_backend_pid()::text")).await;
    assert_eq!(status, 200, "{body}");
    let pid = body["rows"][0][0].clone();
    for leave in [
        "SELECT set_config('app.current_tenant', 'left-behind', false)",
        "SET statement_timeout = '1234ms'",
        "SET ROLE pg_read_all_data",
        "CREATE TEMP TABLE left_behind (x int)",
        "SELECT pg_advisory_lock(424242)",
        "PREPARE left_behind AS SELECT 1",
        "LISTEN left_behind",
        "DECLARE left_behind CURSOR WITH HOLD FOR SELECT 1",
    ] {
        let (status, body) = sql_on(&app, &url, q(leave)).await;
        assert_eq!(status, 200, "{leave}: {body}");
    }
    let (status, body) = sql_on(
        &app,
        &url,
        q("SELECT pg_backend_pid()::text, \
             coalesce(current_setting('app.current_tenant', true), ''), \
             current_setting('statement_timeout'), \
             current_user::text = session_user::text, \
             to_regclass('pg_temp.left_behind') IS NULL, \
             (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                AND pid = pg_backend_pid()), \
             (SELECT count(*) FROM pg_prepared_statements WHERE from_sql), \
             (SELECT count(*) FROM pg_listening_channels()), \
             (SELECT count(*) FROM pg_cursors WHERE name <> '')"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0][0], pid, "the pool reused the session");
    assert_eq!(
        body["rows"][0],
        json!([pid, "", "5s", "t", "t", "0", "0", "0", "0"]),
        "nothing of the requests before is left in the session"
    );
}

/// A statement the proxy has parsed once on a session is only bound and executed after that,
/// across requests; a session keeps at most `PREPARED_CAPACITY` of them; and a parsed statement
/// whose result changed shape (a column added under `SELECT *`) is parsed again instead of
/// failing the request.
#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn parsed_statements_are_reused_bounded_and_reparsed_when_stale() {
    let url = database_url();
    let app = router(Config {
        pool_size: 1,
        ..config_for(&url)
    });
    let table = format!("stale_{}", std::process::id());
    rows(&url, &format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (a int); INSERT INTO {table} VALUES (1)")).await;

    // The same text in single queries and in batches: one Parse, then executions only.
    let probe = "SELECT $1::int + 1 AS n";
    for i in 0..3 {
        let (status, body) = sql_on(&app, &url, json!({"query": probe, "params": [i]})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["rows"], json!([[(i + 1).to_string()]]));
    }
    let batch =
        json!({"queries": [{"query": probe, "params": [7]}, {"query": probe, "params": [8]}]});
    let (status, body) = sql_on(&app, &url, batch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][1]["rows"], json!([["9"]]));
    let (status, body) = sql_on(
        &app,
        &url,
        json!({"query": "SELECT count(*)::text, sum(generic_plans + custom_plans)::text \
                          FROM pg_prepared_statements WHERE statement = $1 AND NOT from_sql",
               "params": [probe]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["rows"],
        json!([["1", "5"]]),
        "parsed once, executed five times"
    );

    // Many different texts: the session never holds many more than the capacity.
    for i in 0..PREPARED_CAPACITY + 20 {
        let (status, body) = sql_on(&app, &url, json!({"query": format!("SELECT {i} AS n")})).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = sql_on(
        &app,
        &url,
        json!({"query": "SELECT count(*) FROM pg_prepared_statements"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let held: usize = body["rows"][0][0].as_str().unwrap().parse().unwrap();
    assert!(
        (1..=PREPARED_CAPACITY + 1).contains(&held),
        "{held} statements held"
    );
    // A full session started over at its reset: a new text is parsed under a name again.
    let fresh = "SELECT $1::text AS fresh";
    for v in ["a", "b"] {
        let (status, body) = sql_on(&app, &url, json!({"query": fresh, "params": [v]})).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = sql_on(
        &app,
        &url,
        json!({"query": "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1",
               "params": [fresh]}),
    )
    .await;
    assert_eq!(
        (status, body["rows"].clone()),
        (200, json!([["1"]])),
        "{body}"
    );

    // The shape of `SELECT *` changes under a parsed statement: the request still succeeds,
    // alone and in a batch.
    let star = format!("SELECT * FROM {table}");
    let (status, body) = sql_on(&app, &url, json!({"query": star})).await;
    assert_eq!(
        (status, body["rows"].clone()),
        (200, json!([["1"]])),
        "{body}"
    );
    rows(
        &url,
        &format!("ALTER TABLE {table} ADD COLUMN b text DEFAULT 'x'"),
    )
    .await;
    let (status, body) = sql_on(&app, &url, json!({"query": star})).await;
    assert_eq!(
        (status, body["rows"].clone()),
        (200, json!([["1", "x"]])),
        "{body}"
    );
    rows(
        &url,
        &format!("ALTER TABLE {table} ADD COLUMN c int DEFAULT 3"),
    )
    .await;
    let batch = json!({"queries": [{"query": format!("INSERT INTO {table} (a) VALUES (2)")}, {"query": star}]});
    let (status, body) = sql_on(&app, &url, batch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"][1]["rows"],
        json!([["1", "x", "3"], ["2", "x", "3"]])
    );
    assert_eq!(
        column(&url, &format!("SELECT count(*) FROM {table}")).await,
        ["2"],
        "the batch that met the stale statement ran once"
    );
    rows(&url, &format!("DROP TABLE {table}")).await;
}
