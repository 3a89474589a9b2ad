//! Runs a parsed `/sql` request on one Postgres session with Neon's transaction semantics: a
//! single query runs on its own (autocommit); a batch is one transaction, opened with its
//! `Neon-Batch-*` options and committed whole or rolled back at its first failure.

use crate::pg::{Budget, PgConnection, PgError};
use crate::sql::{BatchOptions, Payload, QueryData, QueryResult, RowFormat};

/// What a request produced, before it is written as Neon's JSON.
#[derive(Debug)]
pub(crate) enum Outcome {
    Single(QueryResult),
    Batch(Vec<QueryResult>),
}

/// Runs `payload` on `conn`. `batch_options` only matter for a batch (the defaults when `None`);
/// every statement's rows draw on the one `budget`; `format` is the request's row format
/// (a query's `arrayMode` overrides its row mode).
///
/// After an error that is not `connection_usable` the session is in an unknown state and must
/// be closed. After a usable one (a Postgres error) a batch has been rolled back, unless the
/// rollback itself failed; the pool checks the transaction status before reusing the session.
pub(crate) async fn execute(
    conn: &mut PgConnection,
    payload: &Payload,
    batch_options: Option<&BatchOptions>,
    budget: &mut Budget,
    format: RowFormat,
) -> Result<Outcome, PgError> {
    match payload {
        Payload::Single(q) => Ok(Outcome::Single(run_one(conn, q, budget, format).await?)),
        Payload::Batch(b) => {
            let default_options = BatchOptions::default();
            let options = batch_options.unwrap_or(&default_options);
            let results = run_batch(conn, &b.queries, options, budget, format).await?;
            Ok(Outcome::Batch(results))
        }
    }
}

async fn run_one(
    conn: &mut PgConnection,
    q: &QueryData,
    budget: &mut Budget,
    format: RowFormat,
) -> Result<QueryResult, PgError> {
    let out = conn.query(&q.query, &q.pg_params(), budget).await?;
    Ok(QueryResult::from_output(out, format.for_query(q)))
}

/// Runs the batch as one transaction in one round trip to Postgres
/// ([`PgConnection::transaction`]); on the first failure rolls back and returns only that
/// failure, as Neon does (no partial results).
async fn run_batch(
    conn: &mut PgConnection,
    queries: &[QueryData],
    options: &BatchOptions,
    budget: &mut Budget,
    format: RowFormat,
) -> Result<Vec<QueryResult>, PgError> {
    if queries.iter().any(|q| may_copy(&q.query)) {
        return run_batch_in_turns(conn, queries, options, budget, format).await;
    }
    let statements: Vec<(&str, Vec<Option<String>>)> = queries
        .iter()
        .map(|q| (q.query.as_str(), q.pg_params()))
        .collect();
    let outputs = conn
        .transaction(&options.begin_statement(), &statements, budget)
        .await?;
    Ok(outputs
        .into_iter()
        .zip(queries)
        .map(|(out, q)| QueryResult::from_output(out, format.for_query(q)))
        .collect())
}

/// Whether a statement might be a `COPY … FROM STDIN`. Postgres reads the next pipelined message
/// of a copy-in as a protocol violation and drops the session, so such a batch (never the
/// edge's) goes a statement at a time, where the copy can be refused cleanly. Any mention of
/// the word counts: a false alarm only costs round trips.
fn may_copy(sql: &str) -> bool {
    sql.as_bytes()
        .windows(4)
        .any(|w| w.eq_ignore_ascii_case(b"copy"))
}

/// Runs the batch as one transaction a statement at a time (a round trip each, plus `BEGIN`
/// and `COMMIT`); on the first failure rolls back and returns only that failure.
async fn run_batch_in_turns(
    conn: &mut PgConnection,
    queries: &[QueryData],
    options: &BatchOptions,
    budget: &mut Budget,
    format: RowFormat,
) -> Result<Vec<QueryResult>, PgError> {
    conn.simple_query(&options.begin_statement()).await?;
    let mut results = Vec::with_capacity(queries.len());
    for q in queries {
        match run_one(conn, q, budget, format).await {
            Ok(r) => results.push(r),
            Err(e) => {
                if e.connection_usable() {
                    // If the rollback itself fails the session is left in a transaction and
                    // the pool will close it instead of reusing it.
                    if let Err(rb) = conn.simple_query("ROLLBACK").await {
                        tracing::warn!("rollback after failed batch query failed: {rb}");
                        return Err(rb);
                    }
                }
                return Err(e);
            }
        }
    }
    conn.simple_query("COMMIT").await?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::{HeaderMap, HeaderValue};

    use super::*;
    use crate::conninfo;
    use crate::pg::TxStatus;
    use crate::sql::{parse_payload, HDR_READ_ONLY};

    /// A session on the scratch database named by EDGEFRONT_TEST_DATABASE_URL (as in
    /// tests/postgres.rs; `cargo xtask test` sets it).
    async fn connect() -> PgConnection {
        let url = std::env::var("EDGEFRONT_TEST_DATABASE_URL").expect(
            "EDGEFRONT_TEST_DATABASE_URL must name a superuser database (cargo xtask test sets it)",
        );
        let info = conninfo::parse(&url).unwrap();
        PgConnection::connect(&info.connect_params(Vec::new(), Duration::from_secs(10)))
            .await
            .unwrap()
    }

    async fn run(
        conn: &mut PgConnection,
        body: serde_json::Value,
        options: Option<&BatchOptions>,
    ) -> Result<Outcome, PgError> {
        let payload = parse_payload(body.to_string().as_bytes()).unwrap();
        execute(
            conn,
            &payload,
            options,
            &mut Budget::unlimited(),
            RowFormat::DRIVER,
        )
        .await
    }

    fn db_code(e: &PgError) -> &str {
        match e {
            PgError::Db(db) => &db.code,
            other => panic!("expected a Postgres error, got {other}"),
        }
    }

    /// What another session sees, so only committed rows count.
    async fn committed_rows(table: &str) -> Vec<Vec<Option<String>>> {
        let mut other = connect().await;
        let out = other
            .simple_query(&format!("SELECT x FROM {table} ORDER BY x"))
            .await
            .unwrap();
        out.into_iter().next_back().unwrap().rows
    }

    #[tokio::test]
    #[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
    async fn batch_commits_whole_or_rolls_back_and_honours_read_only() {
        let table = format!("exec_test_{}", std::process::id());
        let mut conn = connect().await;
        conn.simple_query(&format!("CREATE TABLE {table} (x int)"))
            .await
            .unwrap();
        let insert_sql = format!("INSERT INTO {table} VALUES ($1)");
        let insert = |x: i32| serde_json::json!({"query": insert_sql, "params": [x]});

        // A batch commits every statement and returns every result.
        let outcome = run(
            &mut conn,
            serde_json::json!({"queries": [insert(1), insert(2)]}),
            None,
        )
        .await
        .unwrap();
        match outcome {
            Outcome::Batch(results) => {
                assert_eq!(results.len(), 2);
                assert!(results
                    .iter()
                    .all(|r| r.command == "INSERT" && r.row_count == Some(1)));
            }
            Outcome::Single(_) => panic!("expected a batch outcome"),
        }
        assert_eq!(conn.status(), TxStatus::Idle);
        let two = vec![vec![Some("1".to_owned())], vec![Some("2".to_owned())]];
        assert_eq!(committed_rows(&table).await, two);

        // A failing statement rolls back the statements before it and the session is reusable.
        let err = run(
            &mut conn,
            serde_json::json!({"queries": [insert(3), {"query": "SELECT 1/0"}, insert(4)]}),
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(db_code(&err), "22012");
        assert_eq!(
            conn.status(),
            TxStatus::Idle,
            "rolled back, not left failed"
        );
        assert_eq!(committed_rows(&table).await, two);

        // COPY FROM STDIN in a batch fails the batch (no data to send) and leaves the session
        // usable, whatever follows it in the pipeline.
        let copy = serde_json::json!({"query": format!("COPY {table} FROM STDIN")});
        for queries in [
            serde_json::json!([copy, insert(7)]),
            serde_json::json!([insert(7), copy]),
        ] {
            let err = run(&mut conn, serde_json::json!({ "queries": queries }), None)
                .await
                .unwrap_err();
            assert!(err.connection_usable(), "{err}");
            assert_eq!(conn.status(), TxStatus::Idle);
            assert_eq!(committed_rows(&table).await, two);
        }

        // A failure at COMMIT (a deferred constraint) fails the batch and commits nothing.
        let deferred = format!("{table}_d");
        conn.simple_query(&format!(
            "CREATE TABLE {deferred} (x int UNIQUE DEFERRABLE INITIALLY DEFERRED)"
        ))
        .await
        .unwrap();
        let dup = serde_json::json!({"query": format!("INSERT INTO {deferred} VALUES (1)")});
        let err = run(
            &mut conn,
            serde_json::json!({ "queries": [dup.clone(), dup] }),
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(db_code(&err), "23505");
        assert_eq!(conn.status(), TxStatus::Idle);
        assert!(committed_rows(&deferred).await.is_empty());
        conn.simple_query(&format!("DROP TABLE {deferred}"))
            .await
            .unwrap();

        // Read-only batches (Neon-Batch-Read-Only: true) may read but not write.
        let mut headers = HeaderMap::new();
        headers.insert(HDR_READ_ONLY, HeaderValue::from_static("true"));
        let read_only = BatchOptions::from_headers(&headers).unwrap();
        let err = run(
            &mut conn,
            serde_json::json!({"queries": [insert(5)]}),
            Some(&read_only),
        )
        .await
        .unwrap_err();
        assert_eq!(db_code(&err), "25006", "read_only_sql_transaction");
        assert_eq!(conn.status(), TxStatus::Idle);
        let outcome = run(
            &mut conn,
            serde_json::json!({"queries": [{"query": format!("SELECT count(*) FROM {table}")}]}),
            Some(&read_only),
        )
        .await
        .unwrap();
        match outcome {
            Outcome::Batch(results) => assert_eq!(results[0].rows, vec![vec![Some("2".into())]]),
            Outcome::Single(_) => panic!("expected a batch outcome"),
        }
        assert_eq!(committed_rows(&table).await, two);

        // A single query runs on its own, outside any transaction.
        let outcome = run(&mut conn, insert(6), None).await.unwrap();
        assert!(matches!(outcome, Outcome::Single(ref r) if r.command == "INSERT"));
        assert_eq!(conn.status(), TxStatus::Idle);
        assert_eq!(committed_rows(&table).await.len(), 3);

        conn.simple_query(&format!("DROP TABLE {table}"))
            .await
            .unwrap();
    }
}
