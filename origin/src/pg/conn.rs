//! One Postgres session spoken over the v3 wire protocol with `postgres-protocol`'s codecs.
//! Unlike tokio-postgres it asks for TEXT results (format 0), so every value comes back exactly
//! as Postgres prints it, which is what Neon's SQL-over-HTTP protocol returns.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use postgres_protocol::message::backend::{Header, Message};
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::{DbError, PgError};

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct ConnectParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    /// Extra startup parameters (any GUC may be set this way; they become the session's
    /// `RESET` defaults, so the pool's session reset keeps them).
    pub options: Vec<(String, String)>,
    pub connect_timeout: Duration,
}

/// Transaction status from the last `ReadyForQuery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Idle,
    InTransaction,
    Failed,
}

/// One column of a `RowDescription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub table_oid: u32,
    pub column_id: i16,
    pub type_oid: u32,
    pub type_size: i16,
    pub type_modifier: i32,
}

/// The outcome of one statement: its columns, its rows in text form, and its command tag
/// (`None` for an empty query string).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOutput {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Option<String>>>,
    pub tag: Option<String>,
}

/// How many bytes of row data a request may still receive. Shared by all statements of a
/// batch. Raw text is never longer than its JSON encoding, so exceeding it here means the JSON
/// response would exceed it too (give or take a byte a float in typed output, which writes
/// `1e+300` as `1e300`).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub remaining: usize,
}

impl Budget {
    pub fn unlimited() -> Self {
        Budget {
            remaining: usize::MAX,
        }
    }

    fn take(&mut self, n: usize) -> Result<(), PgError> {
        self.remaining = self
            .remaining
            .checked_sub(n)
            .ok_or(PgError::ResponseTooLarge)?;
        Ok(())
    }
}

/// How a session is wiped before it goes back to the pool ([`PgConnection::reset`]): what
/// Postgres documents `DISCARD ALL` to be, without `DISCARD PLANS` and `DEALLOCATE ALL`.
/// Everything a request can leave behind goes: cursors, the session user and role, every
/// setting (session-level `set_config` included), `LISTEN`s, advisory locks, temporary tables,
/// sequence state. The last statement counts the prepared statements a request made with SQL
/// `PREPARE`; if there are any, `DEALLOCATE ALL` follows.
///
/// Plans stay, and so do the statements this client parsed ([`Prepared`]). They hold no data
/// and no request's state: Postgres replans by itself when a table a plan uses changes, when
/// the role or `search_path` differs from the one it was planned under, or when row security
/// applies differently. `DISCARD PLANS` threw away every PL/pgSQL function's plans, so each
/// batch planned its functions' statements again: about 1 ms of `upload_create`'s 2 ms.
pub const RESET_SESSION: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
    UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES; \
    SELECT count(*) FROM pg_prepared_statements WHERE from_sql";

/// At most this many statements are kept parsed per session; a session that reaches it
/// forgets them all when it is reset (`DEALLOCATE ALL`) and starts over.
pub const PREPARED_CAPACITY: usize = 256;
/// Longer statement texts are parsed unnamed every time, as before (they are rarely repeated).
const PREPARED_MAX_SQL: usize = 8 * 1024;

/// The statements this session has parsed under a name (`ef_<n>`), by their text. A statement
/// sent again is only bound and executed: Postgres skips parsing and analysing it and, once a
/// generic plan proves as good as the custom ones, planning it. The catalog listing's planning
/// alone took 0.25 ms of its 0.8 ms batch.
#[derive(Debug, Default)]
struct Prepared {
    names: HashMap<String, u32>,
    next: u32,
    /// The `Parse` messages of the exchange under way, in order: `Some` for a named one.
    sent: Vec<Option<(String, u32)>>,
    /// The session may hold statements `names` does not list; the reset deallocates all.
    dirty: bool,
}

impl Prepared {
    /// The statement name to bind `sql` to and whether it must be parsed first; `None` for the
    /// unnamed statement (always parsed).
    fn name_for(&mut self, sql: &str) -> (Option<u32>, bool) {
        if let Some(&id) = self.names.get(sql) {
            return (Some(id), false);
        }
        if let Some(id) = self
            .sent
            .iter()
            .flatten()
            .find(|(s, _)| s == sql)
            .map(|p| p.1)
        {
            return (Some(id), false);
        }
        let room = self.names.len() + self.sent.len() < PREPARED_CAPACITY;
        if sql.len() > PREPARED_MAX_SQL || !room {
            self.sent.push(None);
            return (None, true);
        }
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        self.sent.push(Some((sql.to_owned(), id)));
        (Some(id), true)
    }

    /// The exchange ended with `parsed` `ParseComplete`s: those `Parse`s, the first ones sent,
    /// succeeded (after an error the server skips the rest), and their names now exist.
    fn settle(&mut self, parsed: usize) {
        // Draining empties `sent` whole, the `Parse`s past `parsed` included.
        for (sql, id) in self.sent.drain(..).take(parsed).flatten() {
            self.names.insert(sql, id);
        }
    }

    fn forget(&mut self) {
        self.names.clear();
        self.sent.clear();
        self.dirty = false;
    }
}

fn statement_name(id: Option<u32>) -> String {
    id.map(|id| format!("ef_{id}")).unwrap_or_default()
}

/// Whether Postgres refused a parsed statement because what it returns changed since (a
/// migration altered a table it reads with `*`, say). The statement must be parsed again.
fn is_stale_statement(e: &PgError) -> bool {
    matches!(e, PgError::Db(db) if db.code == "0A000"
        && db.message == "cached plan must not change result type")
}

pub struct PgConnection {
    stream: TcpStream,
    read_buf: BytesMut,
    write_buf: BytesMut,
    status: TxStatus,
    prepared: Prepared,
    /// Client-side guard on every exchange, in case the server or network stalls.
    io_timeout: Option<Duration>,
    pub(crate) last_used: Instant,
}

impl PgConnection {
    /// Opens a TCP session, runs startup and authentication (cleartext, md5, SCRAM-SHA-256)
    /// and waits for the first `ReadyForQuery`, all within `connect_timeout`.
    pub async fn connect(params: &ConnectParams) -> Result<PgConnection, PgError> {
        tokio::time::timeout(params.connect_timeout, Self::connect_inner(params))
            .await
            .map_err(|_| PgError::ConnectTimeout)?
    }

    async fn connect_inner(params: &ConnectParams) -> Result<PgConnection, PgError> {
        let stream = TcpStream::connect((params.host.as_str(), params.port)).await?;
        // Messages go out as soon as they are flushed (a batch is one flush), never held back
        // for the server's acknowledgement of the previous write.
        stream.set_nodelay(true)?;
        stream.set_nodelay(true)?;
        let mut conn = PgConnection {
            stream,
            read_buf: BytesMut::with_capacity(8192),
            write_buf: BytesMut::with_capacity(1024),
            status: TxStatus::Idle,
            prepared: Prepared::default(),
            io_timeout: None,
            last_used: Instant::now(),
        };

        let mut startup: Vec<(&str, &str)> = vec![
            ("user", params.user.as_str()),
            ("database", params.database.as_str()),
            ("client_encoding", "UTF8"),
        ];
        startup.extend(params.options.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        frontend::startup_message(startup, &mut conn.write_buf)?;
        conn.flush().await?;

        let mut scram: Option<ScramSha256> = None;
        loop {
            match conn.read_raw().await? {
                Message::AuthenticationOk => {}
                Message::AuthenticationCleartextPassword => {
                    let pw = password(params)?;
                    frontend::password_message(pw.as_bytes(), &mut conn.write_buf)?;
                    conn.flush().await?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let pw = password(params)?;
                    let hash = postgres_protocol::authentication::md5_hash(
                        params.user.as_bytes(),
                        pw.as_bytes(),
                        body.salt(),
                    );
                    frontend::password_message(hash.as_bytes(), &mut conn.write_buf)?;
                    conn.flush().await?;
                }
                Message::AuthenticationSasl(body) => {
                    let pw = password(params)?;
                    let mut offers_scram = false;
                    let mut mechanisms = body.mechanisms();
                    while let Some(m) = mechanisms.next()? {
                        offers_scram |= m == sasl::SCRAM_SHA_256;
                    }
                    if !offers_scram {
                        return Err(PgError::Protocol(
                            "server offers no supported SASL mechanism".into(),
                        ));
                    }
                    // No TLS, so no channel binding.
                    let s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(
                        sasl::SCRAM_SHA_256,
                        s.message(),
                        &mut conn.write_buf,
                    )?;
                    conn.flush().await?;
                    scram = Some(s);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| PgError::Protocol("unexpected SASL continue".into()))?;
                    s.update(body.data())?;
                    frontend::sasl_response(s.message(), &mut conn.write_buf)?;
                    conn.flush().await?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| PgError::Protocol("unexpected SASL final".into()))?;
                    // Verifies the server's signature, so we know it really holds the secret.
                    s.finish(body.data())?;
                }
                Message::ErrorResponse(body) => {
                    return Err(DbError::from_fields(body.fields())?.into());
                }
                Message::BackendKeyData(_)
                | Message::ParameterStatus(_)
                | Message::NoticeResponse(_) => {}
                Message::ReadyForQuery(body) => {
                    conn.status = tx_status(body.status())?;
                    return Ok(conn);
                }
                _ => {
                    return Err(PgError::Protocol(
                        "unsupported authentication method or unexpected message".into(),
                    ))
                }
            }
        }
    }

    pub fn status(&self) -> TxStatus {
        self.status
    }

    pub fn set_io_timeout(&mut self, timeout: Option<Duration>) {
        self.io_timeout = timeout;
    }

    /// Cheap liveness probe for an idle pooled connection: an idle session must have nothing
    /// to read, so EOF or unsolicited bytes (e.g. a FATAL from `pg_terminate_backend`) mean
    /// it is dead.
    pub fn looks_alive(&self) -> bool {
        if !self.read_buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Runs one statement with the extended protocol: text parameters of unspecified type
    /// (OID 0, so the server infers them) and text results.
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[Option<String>],
        budget: &mut Budget,
    ) -> Result<QueryOutput, PgError> {
        match self.query_once(sql, params, budget).await {
            Err(e) if is_stale_statement(&e) && self.status == TxStatus::Idle => {
                self.deallocate_all().await?;
                self.query_once(sql, params, budget).await
            }
            Err(e) if is_stale_statement(&e) => {
                self.prepared.dirty = true;
                Err(e)
            }
            other => other,
        }
    }

    async fn query_once(
        &mut self,
        sql: &str,
        params: &[Option<String>],
        budget: &mut Budget,
    ) -> Result<QueryOutput, PgError> {
        match self.io_timeout {
            Some(t) => tokio::time::timeout(t, self.query_inner(sql, params, budget))
                .await
                .map_err(|_| PgError::Timeout)?,
            None => self.query_inner(sql, params, budget).await,
        }
    }

    async fn query_inner(
        &mut self,
        sql: &str,
        params: &[Option<String>],
        budget: &mut Budget,
    ) -> Result<QueryOutput, PgError> {
        self.encode_statement(sql, params, true)?;
        frontend::sync(&mut self.write_buf);
        self.flush().await?;
        self.read_results(budget).await
    }

    /// Runs `statements` as one transaction opened by `begin` (`BEGIN …`) in one round trip:
    /// `BEGIN`, every statement and `COMMIT` go out together under a single `Sync`, and the
    /// answers are read back in order. At the first failure the server skips the rest (the
    /// `COMMIT` included) up to the `Sync`, and the transaction is rolled back (one more round
    /// trip, on that path only). The statements are independent (a batch is not interactive),
    /// which is what makes sending them ahead of their answers safe.
    pub async fn transaction(
        &mut self,
        begin: &str,
        statements: &[(&str, Vec<Option<String>>)],
        budget: &mut Budget,
    ) -> Result<Vec<QueryOutput>, PgError> {
        match self.transaction_once(begin, statements, budget).await {
            // Rolled back: nothing of it happened, so it can run again.
            Err(e) if is_stale_statement(&e) && self.status == TxStatus::Idle => {
                self.deallocate_all().await?;
                self.transaction_once(begin, statements, budget).await
            }
            other => other,
        }
    }

    async fn transaction_once(
        &mut self,
        begin: &str,
        statements: &[(&str, Vec<Option<String>>)],
        budget: &mut Budget,
    ) -> Result<Vec<QueryOutput>, PgError> {
        // The per-statement guard, for each statement of the exchange.
        let io_timeout = self
            .io_timeout
            .map(|t| t.saturating_mul(u32::try_from(statements.len() + 2).unwrap_or(u32::MAX)));
        let run = self.transaction_inner(begin, statements, budget);
        let outcome = match io_timeout {
            Some(t) => tokio::time::timeout(t, run)
                .await
                .map_err(|_| PgError::Timeout)?,
            None => run.await,
        };
        match outcome {
            Err(e) if e.connection_usable() && self.status == TxStatus::Failed => {
                // If the rollback itself fails the session is left in a transaction and the
                // pool closes it instead of reusing it.
                if let Err(rb) = self.simple_query("ROLLBACK").await {
                    tracing::warn!("rollback after failed batch query failed: {rb}");
                    return Err(rb);
                }
                Err(e)
            }
            other => other,
        }
    }

    async fn transaction_inner(
        &mut self,
        begin: &str,
        statements: &[(&str, Vec<Option<String>>)],
        budget: &mut Budget,
    ) -> Result<Vec<QueryOutput>, PgError> {
        self.encode_statement(begin, &[], false)?;
        for (sql, params) in statements {
            self.encode_statement(sql, params, true)?;
        }
        self.encode_statement("COMMIT", &[], false)?;
        frontend::sync(&mut self.write_buf);
        self.flush().await?;
        let mut outputs = Vec::with_capacity(statements.len() + 2);
        let mut current = QueryOutput::default();
        let mut error = None;
        let mut parsed = 0;
        loop {
            let limit = budget.remaining.saturating_add(4096);
            match self.read_limited(limit).await? {
                Message::ParseComplete => parsed += 1,
                Message::BindComplete | Message::NoData | Message::PortalSuspended => {}
                Message::RowDescription(body) => current.columns = columns(&body)?,
                Message::DataRow(body) => current.rows.push(row(&body, budget)?),
                Message::CommandComplete(body) => {
                    current.tag = Some(body.tag()?.to_owned());
                    outputs.push(std::mem::take(&mut current));
                }
                Message::EmptyQueryResponse => outputs.push(std::mem::take(&mut current)),
                Message::ErrorResponse(body) => {
                    // The server now skips everything up to the Sync.
                    error.get_or_insert(DbError::from_fields(body.fields())?);
                }
                Message::CopyInResponse(_) => {
                    // The server reads the next statement's Parse as a protocol violation,
                    // fails the COPY and skips to the Sync; it ignores this CopyFail then.
                    frontend::copy_fail("COPY FROM STDIN is not supported", &mut self.write_buf)?;
                    self.flush().await?;
                }
                Message::ReadyForQuery(body) => {
                    self.status = tx_status(body.status())?;
                    self.last_used = Instant::now();
                    self.prepared.settle(parsed);
                    break;
                }
                other => self.ignore(other)?,
            }
        }
        if let Some(e) = error {
            return Err(e.into());
        }
        if outputs.len() != statements.len() + 2 {
            return Err(PgError::Protocol(format!(
                "{} results for {} statements",
                outputs.len(),
                statements.len() + 2
            )));
        }
        // Without BEGIN's and COMMIT's.
        outputs.pop();
        outputs.remove(0);
        Ok(outputs)
    }

    /// Parse/Bind/(Describe)/Execute of one statement with text parameters of unspecified type
    /// (OID 0, so the server infers them) and text results, into the write buffer.
    fn encode_statement(
        &mut self,
        sql: &str,
        params: &[Option<String>],
        describe: bool,
    ) -> Result<(), PgError> {
        if params.len() > usize::from(u16::MAX) {
            self.abandon_exchange();
            return Err(PgError::Encode(format!(
                "too many parameters: {}",
                params.len()
            )));
        }
        let (id, parse) = self.prepared.name_for(sql);
        let name = statement_name(id);
        if parse {
            if let Err(e) = frontend::parse(&name, sql, std::iter::empty(), &mut self.write_buf) {
                self.abandon_exchange();
                return Err(e.into());
            }
        }
        let bound = frontend::bind(
            "",
            &name,
            [0i16],
            params.iter(),
            |p, buf| {
                Ok(match p {
                    Some(s) => {
                        buf.extend_from_slice(s.as_bytes());
                        IsNull::No
                    }
                    None => IsNull::Yes,
                })
            },
            [0i16],
            &mut self.write_buf,
        );
        if let Err(e) = bound {
            self.abandon_exchange();
            return Err(PgError::Encode(match e {
                frontend::BindError::Conversion(e) => e.to_string(),
                frontend::BindError::Serialization(e) => e.to_string(),
            }));
        }
        if describe {
            frontend::describe(b'P', "", &mut self.write_buf)?;
        }
        frontend::execute("", 0, &mut self.write_buf)?;
        Ok(())
    }

    /// Drops what was encoded for an exchange that will not be sent.
    fn abandon_exchange(&mut self) {
        self.write_buf.clear();
        self.prepared.sent.clear();
    }

    /// Forgets every statement this client parsed, on the server too (`DEALLOCATE ALL`).
    async fn deallocate_all(&mut self) -> Result<(), PgError> {
        self.prepared.forget();
        self.simple_query("DEALLOCATE ALL").await.map(drop)
    }

    /// Wipes what a request left in the session ([`RESET_SESSION`]) so that it can serve the
    /// next one; the statements this client parsed stay, up to [`PREPARED_CAPACITY`].
    pub async fn reset(&mut self) -> Result<(), PgError> {
        let out = self.simple_query(RESET_SESSION).await?;
        let made_by_sql = out
            .last()
            .and_then(|o| o.rows.first())
            .and_then(|r| r.first())
            .is_none_or(|n| n.as_deref() != Some("0"));
        if made_by_sql || self.prepared.dirty || self.prepared.names.len() >= PREPARED_CAPACITY {
            self.deallocate_all().await?;
        }
        Ok(())
    }

    /// Runs a simple-protocol query (possibly several statements) and returns the last
    /// statement's output. Used for BEGIN/COMMIT, the pool's session reset and migrations.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<QueryOutput>, PgError> {
        match self.io_timeout {
            Some(t) => tokio::time::timeout(t, self.simple_query_inner(sql))
                .await
                .map_err(|_| PgError::Timeout)?,
            None => self.simple_query_inner(sql).await,
        }
    }

    async fn simple_query_inner(&mut self, sql: &str) -> Result<Vec<QueryOutput>, PgError> {
        frontend::query(sql, &mut self.write_buf)?;
        self.flush().await?;
        let mut outputs = Vec::new();
        let mut budget = Budget::unlimited();
        let mut current = QueryOutput::default();
        let mut error = None;
        loop {
            match self.read_raw().await? {
                Message::RowDescription(body) => current.columns = columns(&body)?,
                Message::DataRow(body) => current.rows.push(row(&body, &mut budget)?),
                Message::CommandComplete(body) => {
                    current.tag = Some(body.tag()?.to_owned());
                    outputs.push(std::mem::take(&mut current));
                }
                Message::EmptyQueryResponse => outputs.push(std::mem::take(&mut current)),
                Message::ErrorResponse(body) => error = Some(DbError::from_fields(body.fields())?),
                Message::CopyInResponse(_) => {
                    frontend::copy_fail("COPY FROM STDIN is not supported", &mut self.write_buf)?;
                    self.flush().await?;
                }
                Message::ReadyForQuery(body) => {
                    self.status = tx_status(body.status())?;
                    self.last_used = Instant::now();
                    return match error {
                        Some(e) => Err(e.into()),
                        None => Ok(outputs),
                    };
                }
                other => self.ignore(other)?,
            }
        }
    }

    /// Reads the answer to Parse/Bind/Describe/Execute/Sync up to `ReadyForQuery`.
    async fn read_results(&mut self, budget: &mut Budget) -> Result<QueryOutput, PgError> {
        let mut out = QueryOutput::default();
        let mut error = None;
        let mut parsed = 0;
        loop {
            // Refuse a single huge row before buffering it.
            let limit = budget.remaining.saturating_add(4096);
            match self.read_limited(limit).await? {
                Message::ParseComplete => parsed += 1,
                Message::BindComplete | Message::NoData => {}
                Message::RowDescription(body) => out.columns = columns(&body)?,
                Message::DataRow(body) => out.rows.push(row(&body, budget)?),
                Message::CommandComplete(body) => out.tag = Some(body.tag()?.to_owned()),
                Message::EmptyQueryResponse | Message::PortalSuspended => {}
                Message::ErrorResponse(body) => error = Some(DbError::from_fields(body.fields())?),
                Message::CopyInResponse(_) => {
                    // We have no data to send. The server ignores the Sync sent during copy-in,
                    // so fail the copy and sync again.
                    frontend::copy_fail("COPY FROM STDIN is not supported", &mut self.write_buf)?;
                    frontend::sync(&mut self.write_buf);
                    self.flush().await?;
                }
                Message::ReadyForQuery(body) => {
                    self.status = tx_status(body.status())?;
                    self.last_used = Instant::now();
                    self.prepared.settle(parsed);
                    return match error {
                        Some(e) => Err(e.into()),
                        None => Ok(out),
                    };
                }
                other => self.ignore(other)?,
            }
        }
    }

    /// Messages that may arrive at any time and need no answer.
    fn ignore(&self, msg: Message) -> Result<(), PgError> {
        match msg {
            Message::NoticeResponse(body) => {
                if let Ok(n) = DbError::from_fields(body.fields()) {
                    tracing::debug!(severity = %n.severity, code = %n.code, "postgres notice: {}", n.message);
                }
                Ok(())
            }
            Message::ParameterStatus(_)
            | Message::NotificationResponse(_)
            | Message::CopyOutResponse(_)
            | Message::CopyData(_)
            | Message::CopyDone
            | Message::CloseComplete
            | Message::ParameterDescription(_) => Ok(()),
            _ => Err(PgError::Protocol("unexpected message from server".into())),
        }
    }

    /// Sends `Terminate` so the server ends the session without logging an EOF warning.
    pub async fn close(mut self) {
        frontend::terminate(&mut self.write_buf);
        let _ = self.flush().await;
    }

    async fn flush(&mut self) -> Result<(), PgError> {
        let res = self.stream.write_all(&self.write_buf).await;
        self.write_buf.clear();
        res?;
        Ok(())
    }

    async fn read_raw(&mut self) -> Result<Message, PgError> {
        self.read_limited(usize::MAX).await
    }

    async fn read_limited(&mut self, data_row_limit: usize) -> Result<Message, PgError> {
        loop {
            if let Some(header) = Header::parse(&self.read_buf)? {
                if header.tag() == b'D'
                    && usize::try_from(header.len()).unwrap_or(0) > data_row_limit
                {
                    return Err(PgError::ResponseTooLarge);
                }
            }
            if let Some(msg) = Message::parse(&mut self.read_buf)? {
                return Ok(msg);
            }
            let n = self.stream.read_buf(&mut self.read_buf).await?;
            if n == 0 {
                return Err(PgError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                )));
            }
        }
    }
}

fn password(params: &ConnectParams) -> Result<&str, PgError> {
    params.password.as_deref().ok_or_else(|| {
        DbError {
            severity: "FATAL".into(),
            code: "28P01".into(),
            message: format!(
                "password authentication failed for user \"{}\": no password supplied",
                params.user
            ),
            ..DbError::default()
        }
        .into()
    })
}

fn tx_status(b: u8) -> Result<TxStatus, PgError> {
    match b {
        b'I' => Ok(TxStatus::Idle),
        b'T' => Ok(TxStatus::InTransaction),
        b'E' => Ok(TxStatus::Failed),
        other => Err(PgError::Protocol(format!(
            "unknown transaction status {other}"
        ))),
    }
}

fn columns(
    body: &postgres_protocol::message::backend::RowDescriptionBody,
) -> Result<Vec<Column>, PgError> {
    let cols = body
        .fields()
        .map(|f| {
            Ok(Column {
                name: f.name().to_owned(),
                table_oid: f.table_oid(),
                column_id: f.column_id(),
                type_oid: f.type_oid(),
                type_size: f.type_size(),
                type_modifier: f.type_modifier(),
            })
        })
        .collect()?;
    Ok(cols)
}

fn row(
    body: &postgres_protocol::message::backend::DataRowBody,
    budget: &mut Budget,
) -> Result<Vec<Option<String>>, PgError> {
    let buf = body.buffer();
    let mut values = Vec::new();
    let mut ranges = body.ranges();
    while let Some(range) = ranges.next()? {
        match range {
            None => {
                budget.take(4)?; // `null`
                values.push(None);
            }
            Some(r) => {
                let bytes = buf
                    .get(r)
                    .ok_or_else(|| PgError::Protocol("bad DataRow range".into()))?;
                budget.take(bytes.len() + 2)?; // the value plus its quotes
                                               // client_encoding is UTF8, so this is lossless for valid data.
                values.push(Some(String::from_utf8_lossy(bytes).into_owned()));
            }
        }
    }
    Ok(values)
}
