//! Client side of Neon's SQL-over-HTTP protocol: how core talks to origin Postgres through the
//! SQL proxy. One HTTP POST per query or per batch; a batch is one transaction on the server.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use http::{header, HeaderName, Method, Request, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::OriginConfig;
use crate::ids::TenantId;
use crate::json_writer::push_string;
use crate::outcome::{self, Outcome};
use crate::ports::{Clock, HttpClient, OutboundError};
use crate::sql_answer::{self, RawResult};

/// A parameter as the protocol carries it: Postgres text input, or NULL.
pub type Param = Option<String>;

/// One statement of a batch.
#[derive(Debug, Clone)]
pub struct Statement {
    pub query: String,
    pub params: Vec<Param>,
}

impl Statement {
    pub fn new(query: impl Into<String>, params: Vec<Param>) -> Self {
        Self {
            query: query.into(),
            params,
        }
    }
}

/// Postgres' `json` and `jsonb`, whose values the proxy writes as the JSON they are.
const JSON: u32 = 114;
const JSONB: u32 = 3802;

/// One statement's result as the proxy writes it without `Neon-Raw-Text-Output` (Neon's
/// typed output): a `json` or `jsonb` value is the document itself, any other value JSON of its
/// own (text a string, `int4` a number, …). Its values stay in the answer, found but not read
/// ([`crate::sql_answer`]), until a caller reads them as its types.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// The proxy's whole answer (shared by a batch's results).
    answer: Bytes,
    /// Each column's type OID.
    types: Vec<u32>,
    /// Each row's values: where each stands in `answer`, `None` for `null`.
    rows: Vec<Vec<Option<Range<usize>>>>,
}

impl QueryResult {
    fn new(answer: &Bytes, raw: RawResult) -> Self {
        QueryResult {
            answer: answer.clone(),
            types: raw.types,
            rows: raw.rows,
        }
    }

    /// A single statement's result, from the proxy's answer.
    pub fn read(answer: Bytes) -> Result<Self, SqlError> {
        let raw = sql_answer::single(&answer)
            .map_err(|e| SqlError::Protocol(format!("bad result: {e}")))?;
        Ok(Self::new(&answer, raw))
    }

    /// A batch's results, from the proxy's answer.
    pub fn read_batch(answer: Bytes) -> Result<Vec<Self>, SqlError> {
        let raw = sql_answer::batch(&answer)
            .map_err(|e| SqlError::Protocol(format!("bad batch result: {e}")))?;
        Ok(raw.into_iter().map(|r| Self::new(&answer, r)).collect())
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A value as the proxy wrote it (JSON text); `None` for `null` or outside the result.
    pub fn value(&self, row: usize, column: usize) -> Option<&[u8]> {
        let range = self.rows.get(row)?.get(column)?.clone()?;
        self.answer.get(range)
    }

    /// Every row's only column, a JSON document, read as `T`. Documents are built in SQL
    /// (`json_build_object` and the `*_json` functions of `migrations/`), so a shape is defined
    /// once, next to its query; Rust reads them into types and never indexes a `Value`. A
    /// `json` or `jsonb` column's document is read once, where it stands in the answer; a text
    /// column's (`…::text`) is the string's content, unescaped and then read.
    pub fn docs<T: DeserializeOwned>(&self) -> Result<Vec<T>, SqlError> {
        let json = self.document_is_json();
        (0..self.rows.len())
            .map(|i| {
                serde_json::from_slice(&self.document(i, json)?)
                    .map_err(|e| SqlError::Protocol(format!("unexpected row shape: {e}")))
            })
            .collect()
    }

    /// The only row's document: for statements that always return exactly one.
    pub fn doc<T: DeserializeOwned>(&self) -> Result<T, SqlError> {
        self.docs()?
            .pop()
            .ok_or_else(|| SqlError::Protocol("no row where one was expected".into()))
    }

    /// The only row's document, what a SQL function decided (`{"outcome": …}`), read as `T`.
    pub fn outcome<T: Outcome>(&self) -> Result<T, SqlError> {
        match self.rows.len() {
            1 => outcome::from_slice(&self.document(0, self.document_is_json())?)
                .map_err(|e| SqlError::Protocol(format!("unexpected outcome: {e}"))),
            n => Err(SqlError::Protocol(format!(
                "{n} rows where one outcome was expected"
            ))),
        }
    }

    /// Whether the one column is `json` or `jsonb` (otherwise its documents are text).
    fn document_is_json(&self) -> bool {
        matches!(self.types.as_slice(), [JSON | JSONB])
    }

    /// Row `i`'s only column, a JSON document: the value itself in a `json` column (where
    /// typed output writes SQL NULL as JSON's `null`, so the two read alike), the text a
    /// non-NULL string holds in any other.
    fn document(&self, i: usize, json: bool) -> Result<Cow<'_, [u8]>, SqlError> {
        let row = self.rows.get(i).map(Vec::as_slice).unwrap_or_default();
        let value = |range: &Range<usize>| self.answer.get(range.clone()).unwrap_or_default();
        match row {
            [Some(v)] if json => Ok(Cow::Borrowed(value(v))),
            [None] if json => Ok(Cow::Borrowed(b"null")),
            [Some(v)] => serde_json::from_slice::<String>(value(v))
                .map(|text| Cow::Owned(text.into_bytes()))
                .map_err(|e| SqlError::Protocol(format!("a document that is not text: {e}"))),
            [None] => Err(SqlError::Protocol("a NULL document".into())),
            other => Err(SqlError::Protocol(format!(
                "{} columns where one document was expected",
                other.len()
            ))),
        }
    }
}

impl DbError {
    /// SQLSTATE class 23 (integrity) or a raised application error (P0001) with this text.
    pub fn is(&self, sqlstate: &str) -> bool {
        self.code == sqlstate
    }
}

/// A Postgres error as the proxy reports it (HTTP 400).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct DbError {
    pub message: String,
    #[serde(default)]
    pub code: String,
    pub constraint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlError {
    /// Postgres rejected the statement (SQLSTATE in `code`).
    Db(DbError),
    /// The proxy could not be reached or did not answer in time.
    Unavailable(OutboundError),
    /// The proxy answered with a status or body outside the protocol.
    Protocol(String),
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Db(e) => write!(f, "database error {}: {}", e.code, e.message),
            Self::Unavailable(e) => write!(f, "SQL proxy unavailable: {e}"),
            Self::Protocol(m) => write!(f, "SQL proxy protocol error: {m}"),
        }
    }
}

/// Runs one statement (autocommit).
pub async fn query<P: HttpClient + Clock>(
    platform: &P,
    cfg: &OriginConfig,
    query: &str,
    params: &[Param],
) -> Result<QueryResult, SqlError> {
    let mut body = Vec::with_capacity(query.len() + 64);
    write_statement(&mut body, query, params);
    QueryResult::read(post(platform, cfg, body).await?)
}

/// Runs `prelude` and then `statements` as one transaction: all commit, or none do. The
/// prelude's result is dropped; one result per statement.
pub async fn transaction<P: HttpClient + Clock>(
    platform: &P,
    cfg: &OriginConfig,
    prelude: &Statement,
    statements: &[Statement],
) -> Result<Vec<QueryResult>, SqlError> {
    let mut results =
        QueryResult::read_batch(post(platform, cfg, batch_body(prelude, statements)).await?)?;
    if results.len() != statements.len() + 1 {
        return Err(SqlError::Protocol(format!(
            "{} results for {} statements",
            results.len(),
            statements.len() + 1
        )));
    }
    results.remove(0);
    Ok(results)
}

/// A batch's body, `{"queries":[{"query":…,"params":[…]},…]}`, written straight from the
/// statements: no `serde_json::Value` tree holding a copy of every query, and strings escaped
/// by [`push_string`], a word at a time where `serde_json` goes a byte at a time (a 20-item
/// catalog page's query is over a kilobyte).
fn batch_body(prelude: &Statement, statements: &[Statement]) -> Vec<u8> {
    // Room for every query and its punctuation; the parameters (short) grow it if need be.
    let queries: usize = statements.iter().map(|s| s.query.len()).sum();
    let mut out = Vec::with_capacity(prelude.query.len() + queries + 64 * (statements.len() + 2));
    out.extend_from_slice(b"{\"queries\":[");
    for (i, s) in std::iter::once(prelude).chain(statements).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_statement(&mut out, &s.query, &s.params);
    }
    out.extend_from_slice(b"]}");
    out
}

/// `{"query":…,"params":[…]}`: a parameter is a JSON string, or `null` for SQL NULL.
fn write_statement(out: &mut Vec<u8>, query: &str, params: &[Param]) {
    out.extend_from_slice(b"{\"query\":");
    push_string(out, query);
    out.extend_from_slice(b",\"params\":[");
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match p {
            Some(text) => push_string(out, text),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.extend_from_slice(b"]}");
}

/// Runs `statements` as one transaction scoped to `tenant`: the batch always begins with
/// `set_config('app.current_tenant', …, true)`, so row-level security in Postgres — not only
/// the edge — confines every statement to the tenant. The same prelude statement sets who acts
/// and for which request (`app.actor`, `app.request_id`: the audit log's). Its result is
/// dropped.
pub async fn tenant_transaction<P: HttpClient + Clock>(
    platform: &P,
    cfg: &OriginConfig,
    tenant: &TenantId,
    audit: &AuditCx,
    statements: &[Statement],
) -> Result<Vec<QueryResult>, SqlError> {
    transaction(platform, cfg, &tenant_prelude(tenant, audit), statements).await
}

/// Who a batch's writes are recorded as in the audit log, and for which request: set in the
/// batch's prelude as `app.actor` and `app.request_id` (an empty text when unknown, which the
/// SQL side reads as NULL). Actors: our user id, `visitor:<id>`, `platform:<user id>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditCx {
    pub actor: Option<String>,
    pub request_id: Option<String>,
}

impl AuditCx {
    /// The actor for an anonymous storefront visitor.
    pub fn visitor(id: &str) -> String {
        format!("visitor:{id}")
    }

    /// The actor for a platform administrator.
    pub fn platform(user: &str) -> String {
        format!("platform:{user}")
    }

    fn actor_param(&self) -> Param {
        Some(self.actor.clone().unwrap_or_default())
    }

    fn request_id_param(&self) -> Param {
        Some(self.request_id.clone().unwrap_or_default())
    }
}

/// A database handle bound to one tenant: the only way a tenant handler reaches SQL. Every
/// batch it sends is one transaction (one HTTP round trip) that opens with the tenant's
/// `set_config`, so row-level security applies whatever the statements say.
pub struct Db<'a, P> {
    platform: &'a P,
    origin: &'a OriginConfig,
    tenant: TenantId,
    audit: AuditCx,
}

impl<'a, P: HttpClient + Clock> Db<'a, P> {
    pub fn new(
        platform: &'a P,
        origin: &'a OriginConfig,
        tenant: TenantId,
        audit: AuditCx,
    ) -> Self {
        Self {
            platform,
            origin,
            tenant,
            audit,
        }
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Who this handle's writes are recorded as, and for which request.
    pub fn audit(&self) -> &AuditCx {
        &self.audit
    }

    /// Records this handle's writes as `actor`'s: for callers known only inside the handler
    /// (a storefront visitor, from the cookie).
    pub fn set_actor(&mut self, actor: impl Into<String>) {
        self.audit.actor = Some(actor.into());
    }

    /// Runs `statements` as one tenant-scoped transaction; one result per statement.
    pub async fn batch(&self, statements: &[Statement]) -> Result<Vec<QueryResult>, SqlError> {
        tenant_transaction(
            self.platform,
            self.origin,
            &self.tenant,
            &self.audit,
            statements,
        )
        .await
    }

    /// One statement, alone in its batch.
    pub async fn one(&self, statement: Statement) -> Result<QueryResult, SqlError> {
        self.batch(std::slice::from_ref(&statement))
            .await?
            .pop()
            .ok_or_else(|| SqlError::Protocol("no result".into()))
    }

    /// The documents of a one-statement batch.
    pub async fn docs<T: DeserializeOwned>(
        &self,
        statement: Statement,
    ) -> Result<Vec<T>, SqlError> {
        self.one(statement).await?.docs()
    }

    /// The document of a one-statement batch that returns at most one row.
    pub async fn find<T: DeserializeOwned>(
        &self,
        statement: Statement,
    ) -> Result<Option<T>, SqlError> {
        Ok(self.docs(statement).await?.pop())
    }

    /// The document of a SQL function that always returns one row.
    pub async fn call<T: DeserializeOwned>(&self, statement: Statement) -> Result<T, SqlError> {
        self.one(statement).await?.doc()
    }

    /// What a SQL function decided (one row, `{"outcome": …}`), read as `T`.
    pub async fn outcome<T: Outcome>(&self, statement: Statement) -> Result<T, SqlError> {
        self.one(statement).await?.outcome()
    }
}

/// A database handle for the platform API and sign-up, bound to no tenant: its statements
/// reach tenant data only through the SECURITY DEFINER functions of `migrations/functions/`
/// (row-level security confines everything else to nothing). One batch per call, as [`Db`];
/// each opens with a prelude setting the audit log's actor and request id, its result dropped.
pub struct PlatformDb<'a, P> {
    platform: &'a P,
    origin: &'a OriginConfig,
    audit: AuditCx,
}

impl<'a, P: HttpClient + Clock> PlatformDb<'a, P> {
    pub fn new(platform: &'a P, origin: &'a OriginConfig, audit: AuditCx) -> Self {
        Self {
            platform,
            origin,
            audit,
        }
    }

    /// Who this handle's writes are recorded as, and for which request.
    pub fn audit(&self) -> &AuditCx {
        &self.audit
    }

    /// Runs `statements` as one transaction; one result per statement.
    pub async fn batch(&self, statements: &[Statement]) -> Result<Vec<QueryResult>, SqlError> {
        let prelude = platform_prelude(&self.audit);
        transaction(self.platform, self.origin, &prelude, statements).await
    }

    /// One statement, alone in its transaction.
    pub async fn one(&self, statement: Statement) -> Result<QueryResult, SqlError> {
        self.batch(std::slice::from_ref(&statement))
            .await?
            .pop()
            .ok_or_else(|| SqlError::Protocol("no result".into()))
    }

    /// The document of a SQL function that always returns one row.
    pub async fn call<T: DeserializeOwned>(&self, statement: Statement) -> Result<T, SqlError> {
        self.one(statement).await?.doc()
    }

    /// What a SQL function decided (one row, `{"outcome": …}`), read as `T`.
    pub async fn outcome<T: Outcome>(&self, statement: Statement) -> Result<T, SqlError> {
        self.one(statement).await?.outcome()
    }
}

/// Positional parameters of a statement being built: `bind` returns the placeholder.
#[derive(Debug, Default)]
pub struct Params(Vec<Param>);

impl Params {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value and returns its placeholder (`$3`).
    pub fn bind(&mut self, value: impl Into<String>) -> String {
        self.0.push(Some(value.into()));
        format!("${}", self.0.len())
    }

    /// Adds a NULL-able value and returns its placeholder.
    pub fn bind_opt(&mut self, value: Option<String>) -> String {
        self.0.push(value);
        format!("${}", self.0.len())
    }

    pub fn into_vec(self) -> Vec<Param> {
        self.0
    }
}

/// The prelude of every tenant batch: one statement, transaction-local settings.
pub const TENANT_PRELUDE: &str = "SELECT set_config('app.current_tenant', $1, true), \
     set_config('app.actor', $2, true), set_config('app.request_id', $3, true)";

/// The prelude of every platform batch (no tenant: the platform's functions name theirs).
pub const PLATFORM_PRELUDE: &str =
    "SELECT set_config('app.actor', $1, true), set_config('app.request_id', $2, true)";

fn tenant_prelude(tenant: &TenantId, audit: &AuditCx) -> Statement {
    Statement::new(
        TENANT_PRELUDE,
        vec![
            Some(tenant.to_string()),
            audit.actor_param(),
            audit.request_id_param(),
        ],
    )
}

fn platform_prelude(audit: &AuditCx) -> Statement {
    Statement::new(
        PLATFORM_PRELUDE,
        vec![audit.actor_param(), audit.request_id_param()],
    )
}

/// The headers of Neon's SQL-over-HTTP protocol, as constants: a name given as
/// text is parsed on every batch. No `Neon-Raw-Text-Output`: without it the proxy writes a
/// `json` value as the document it is, not as a string holding it ([`QueryResult`]).
const NEON_ARRAY_MODE: HeaderName = HeaderName::from_static("neon-array-mode");
const NEON_CONNECTION_STRING: HeaderName = HeaderName::from_static("neon-connection-string");

fn build_request(cfg: &OriginConfig, body: Vec<u8>) -> Result<Request<Bytes>, SqlError> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(cfg.url.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(NEON_ARRAY_MODE, "true");
    let conn = crate::request_headers::header_value(cfg.connection_string.expose())
        .map_err(|_| SqlError::Protocol("connection string is not a valid header".into()))?;
    req = req.header(NEON_CONNECTION_STRING, conn);
    if let Some(token) = &cfg.token {
        let v = crate::request_headers::header_value(&format!("Bearer {}", token.expose()))
            .map_err(|_| SqlError::Protocol("token is not a valid header".into()))?;
        req = req.header(header::AUTHORIZATION, v);
    }
    req.body(Bytes::from(body))
        .map_err(|e| SqlError::Protocol(e.to_string()))
}

async fn post<P: HttpClient + Clock>(
    platform: &P,
    cfg: &OriginConfig,
    body: Vec<u8>,
) -> Result<Bytes, SqlError> {
    let req = build_request(cfg, body)?;
    let resp = platform
        .send_within(req, cfg.timeout)
        .await
        .map_err(SqlError::Unavailable)?;
    match resp.status() {
        StatusCode::OK => Ok(resp.into_body()),
        StatusCode::BAD_REQUEST => match serde_json::from_slice::<DbError>(resp.body()) {
            Ok(e) => Err(SqlError::Db(e)),
            Err(_) => Err(SqlError::Protocol("400 without an error document".into())),
        },
        s => Err(SqlError::Protocol(format!(
            "HTTP {}: {}",
            s.as_u16(),
            String::from_utf8_lossy(resp.body())
                .chars()
                .take(200)
                .collect::<String>()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{tests::dev_settings, Config};

    #[test]
    fn requests_follow_the_neon_protocol() {
        let m = dev_settings();
        let cfg = Config::load(&|k: &str| m.get(k).cloned()).unwrap().origin;
        let mut body = Vec::new();
        write_statement(&mut body, "SELECT $1", &[Some("1".into())]);
        let req = build_request(&cfg, body).unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri(), "http://127.0.0.1:4444/sql");
        assert!(req.headers().get("neon-raw-text-output").is_none());
        assert_eq!(req.headers()["neon-array-mode"], "true");
        assert_eq!(
            req.headers()["neon-connection-string"],
            "postgresql://edgefront_app:pw@localhost:5432/edgefront"
        );
        assert!(req.headers().get(header::AUTHORIZATION).is_none());
        assert_eq!(
            req.body().as_ref(),
            br#"{"query":"SELECT $1","params":["1"]}"#
        );
    }

    /// The batch body is the JSON `serde_json` writes for the same statements, whatever the
    /// text holds: quotes, backslashes, control characters, non-ASCII, NULL parameters.
    #[test]
    fn batch_bodies_are_the_json_of_their_statements() {
        let prelude = Statement::new("SELECT set_config('a', $1, true)", vec![Some("t".into())]);
        let tricky =
            "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} del \u{7f} é € 😀";
        let statements = [
            Statement::new(tricky, vec![Some(tricky.into()), None, Some(String::new())]),
            Statement::new("SELECT 1", vec![]),
        ];
        let body = batch_body(&prelude, &statements);
        #[derive(serde::Serialize)]
        struct Query<'a> {
            query: &'a str,
            params: &'a [Param],
        }
        #[derive(serde::Serialize)]
        struct Batch<'a> {
            queries: Vec<Query<'a>>,
        }
        let expected = Batch {
            queries: std::iter::once(&prelude)
                .chain(&statements)
                .map(|s| Query {
                    query: &s.query,
                    params: &s.params,
                })
                .collect(),
        };
        assert_eq!(
            String::from_utf8(body).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
    }

    #[test]
    fn tenant_batches_open_with_the_tenant_setting() {
        let t = TenantId::parse("00000000-0000-4000-8000-00000000ac3e").unwrap();
        let audit = AuditCx {
            actor: Some("visitor:v1".into()),
            request_id: Some("r1".into()),
        };
        let p = tenant_prelude(&t, &audit);
        assert_eq!(
            p.query,
            "SELECT set_config('app.current_tenant', $1, true), \
             set_config('app.actor', $2, true), set_config('app.request_id', $3, true)"
        );
        assert_eq!(
            p.params,
            vec![
                Some(t.to_string()),
                Some("visitor:v1".into()),
                Some("r1".into())
            ]
        );
        let body = batch_body(&p, &[Statement::new("SELECT 1", vec![])]);
        let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(sent["queries"][0]["query"], p.query.as_str());
        assert_eq!(sent["queries"][1]["query"], "SELECT 1");
        assert_eq!(sent["queries"].as_array().unwrap().len(), 2);
        // Unknown actor and request: empty settings, which SQL reads as NULL.
        let p = tenant_prelude(&t, &AuditCx::default());
        assert_eq!(
            p.params,
            vec![
                Some(t.to_string()),
                Some(String::new()),
                Some(String::new())
            ]
        );
    }

    #[test]
    fn platform_batches_open_with_the_audit_settings() {
        let audit = AuditCx {
            actor: Some(AuditCx::platform("u1")),
            request_id: None,
        };
        let p = platform_prelude(&audit);
        assert_eq!(
            p.query,
            "SELECT set_config('app.actor', $1, true), set_config('app.request_id', $2, true)"
        );
        assert_eq!(
            p.params,
            vec![Some("platform:u1".into()), Some(String::new())]
        );
        assert_eq!(AuditCx::visitor("v"), "visitor:v");
    }

    #[test]
    fn results_and_errors_parse() {
        let r = QueryResult::read(Bytes::from_static(
            br#"{"command":"SELECT","rowCount":1,"rowAsArray":true,
                "fields":[{"name":"x","dataTypeID":23,"tableID":0,"columnID":0,"dataTypeSize":4,"dataTypeModifier":-1,"format":"text"}],
                "rows":[[1],[null]]}"#,
        ))
        .unwrap();
        assert_eq!(r.types, vec![23]);
        assert_eq!(r.len(), 2);
        assert_eq!(r.value(0, 0), Some(&b"1"[..]));
        assert_eq!(r.value(1, 0), None);
        assert_eq!(r.value(2, 0), None);
        assert!(matches!(
            QueryResult::read(Bytes::from_static(b"{\"rows\":[[1]")),
            Err(SqlError::Protocol(_))
        ));
        let e: DbError = serde_json::from_str(
            r#"{"message":"boom","code":"42P01","detail":null,"constraint":null}"#,
        )
        .unwrap();
        assert_eq!(e.code, "42P01");
    }

    /// A document reads the same from a `json`, a `jsonb` and a text column; a JSON string is
    /// a document of its own in a `json` column.
    #[test]
    fn documents_read_from_json_and_text_columns() {
        #[derive(Debug, PartialEq, Deserialize)]
        struct Doc {
            name: String,
            n: i64,
        }
        let doc = r#"{"name":"q\"é\\","n":2}"#;
        let result = |type_id: u32, cell: String| -> QueryResult {
            QueryResult::read(Bytes::from(format!(
                r#"{{"fields":[{{"name":"row","dataTypeID":{type_id}}}],"rows":[[{cell}]]}}"#
            )))
            .unwrap()
        };
        let expected = Doc {
            name: "q\"é\\".into(),
            n: 2,
        };
        for r in [
            result(JSON, doc.to_owned()),
            result(JSONB, doc.to_owned()),
            result(25, serde_json::to_string(doc).unwrap()),
        ] {
            assert_eq!(r.doc::<Doc>().unwrap(), expected);
        }
        assert_eq!(
            result(JSON, r#""text""#.into()).doc::<String>().unwrap(),
            "text"
        );
        assert!(matches!(
            result(25, doc.to_owned()).doc::<Doc>(),
            Err(SqlError::Protocol(_))
        ));
        assert_eq!(result(JSONB, "null".into()).doc::<Option<Doc>>(), Ok(None));
        assert!(matches!(
            result(JSON, "null".into()).doc::<Doc>(),
            Err(SqlError::Protocol(_))
        ));
        assert!(matches!(
            result(25, "null".into()).doc::<Option<Doc>>(),
            Err(SqlError::Protocol(m)) if m.contains("NULL")
        ));
    }
}
