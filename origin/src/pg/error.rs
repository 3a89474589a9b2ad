//! Errors of the Postgres wire client: a server `ErrorResponse` (the connection stays usable)
//! versus everything that leaves the connection in an unknown state and must close it.

use std::fmt;
use std::io;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorFields;

/// Every field of a Postgres `ErrorResponse`, as Neon's proxy reports them (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbError {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub position: Option<String>,
    pub internal_position: Option<String>,
    pub internal_query: Option<String>,
    pub where_: Option<String>,
    pub schema: Option<String>,
    pub table: Option<String>,
    pub column: Option<String>,
    pub data_type: Option<String>,
    pub constraint: Option<String>,
    pub file: Option<String>,
    pub line: Option<String>,
    pub routine: Option<String>,
}

impl DbError {
    /// Decodes the field list of an `ErrorResponse`/`NoticeResponse` (protocol §55.8).
    pub fn from_fields(mut fields: ErrorFields<'_>) -> io::Result<DbError> {
        let mut e = DbError::default();
        let mut localized_severity = None;
        while let Some(field) = fields.next()? {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'S' => localized_severity = Some(value),
                b'V' => e.severity = value,
                b'C' => e.code = value,
                b'M' => e.message = value,
                b'D' => e.detail = Some(value),
                b'H' => e.hint = Some(value),
                b'P' => e.position = Some(value),
                b'p' => e.internal_position = Some(value),
                b'q' => e.internal_query = Some(value),
                b'W' => e.where_ = Some(value),
                b's' => e.schema = Some(value),
                b't' => e.table = Some(value),
                b'c' => e.column = Some(value),
                b'd' => e.data_type = Some(value),
                b'n' => e.constraint = Some(value),
                b'F' => e.file = Some(value),
                b'L' => e.line = Some(value),
                b'R' => e.routine = Some(value),
                _ => {}
            }
        }
        // tokio-postgres (and so Neon) reports the localized `S` severity; `V` is the fallback
        // for the rare server that sends only the non-localized one.
        if let Some(s) = localized_severity {
            e.severity = s;
        }
        Ok(e)
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)
    }
}

#[derive(Debug)]
pub enum PgError {
    /// The server rejected the statement (or the login); the session is still in sync.
    Db(Box<DbError>),
    /// The socket failed or closed.
    Io(io::Error),
    /// The server said something this client does not understand.
    Protocol(String),
    /// Connecting (TCP + startup + auth) took longer than allowed.
    ConnectTimeout,
    /// The server stopped answering within the client-side guard time.
    Timeout,
    /// The result grew past the configured response limit; reading was abandoned.
    ResponseTooLarge,
    /// A parameter could not be encoded (e.g. too many parameters).
    Encode(String),
}

impl PgError {
    /// Whether the connection can still be used after this error.
    pub fn connection_usable(&self) -> bool {
        matches!(self, PgError::Db(_))
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::Db(e) => write!(f, "{e}"),
            PgError::Io(e) => write!(f, "postgres connection error: {e}"),
            PgError::Protocol(m) => write!(f, "postgres protocol error: {m}"),
            PgError::ConnectTimeout => write!(f, "timed out connecting to postgres"),
            PgError::Timeout => write!(f, "timed out waiting for postgres"),
            PgError::ResponseTooLarge => write!(f, "response is too large"),
            PgError::Encode(m) => write!(f, "cannot encode query: {m}"),
        }
    }
}

impl std::error::Error for PgError {}

impl From<io::Error> for PgError {
    fn from(e: io::Error) -> Self {
        PgError::Io(e)
    }
}

impl From<DbError> for PgError {
    fn from(e: DbError) -> Self {
        PgError::Db(Box::new(e))
    }
}
