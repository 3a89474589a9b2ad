//! Parses Postgres connection URLs: the `Neon-Connection-String` header (only its login is
//! used; host and port come from the server's configuration) and `migrate --database-url`.

use percent_encoding::percent_decode_str;
use url::Url;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    pub host: String,
    pub port: Option<u16>,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
}

impl ConnInfo {
    /// How to open a session as this login (port 5432 unless the URL names one).
    pub fn connect_params(
        self,
        options: Vec<(String, String)>,
        connect_timeout: std::time::Duration,
    ) -> crate::pg::ConnectParams {
        crate::pg::ConnectParams {
            host: self.host,
            port: self.port.unwrap_or(5432),
            user: self.user,
            password: self.password,
            database: self.database,
            options,
            connect_timeout,
        }
    }
}

/// Parses `postgres://` / `postgresql://` URLs. User, host and database are required, as the
/// Neon driver and proxy require them.
pub fn parse(s: &str) -> Result<ConnInfo, String> {
    let url = Url::parse(s).map_err(|e| format!("invalid connection string: {e}"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(
            "invalid connection string: scheme must be postgres:// or postgresql://".into(),
        );
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("invalid connection string: missing host")?
        .to_owned();
    let user = decode(url.username())?;
    if user.is_empty() {
        return Err("invalid connection string: missing user".into());
    }
    let password = url.password().map(decode).transpose()?;
    let database = decode(url.path().trim_start_matches('/'))?;
    if database.is_empty() {
        return Err("invalid connection string: missing database".into());
    }
    Ok(ConnInfo {
        host,
        port: url.port(),
        user,
        password,
        database,
    })
}

fn decode(s: &str) -> Result<String, String> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "invalid connection string: not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_driver_url() {
        let c = parse("postgresql://edgefront_app:p%40ss%3Aw@localhost:5432/edgefront?application_name=pkg%3Anpm")
            .unwrap();
        assert_eq!(c.user, "edgefront_app");
        assert_eq!(c.password.as_deref(), Some("p@ss:w"));
        assert_eq!(c.database, "edgefront");
        assert_eq!(c.host, "localhost");
        assert_eq!(c.port, Some(5432));
    }

    #[test]
    fn rejects_incomplete() {
        assert!(parse("postgresql://localhost/db").is_err());
        assert!(parse("postgresql://u:p@localhost").is_err());
        assert!(parse("postgresql://u:p@localhost/").is_err());
        assert!(parse("mysql://u:p@localhost/db").is_err());
        assert!(parse("not a url").is_err());
        let c = parse("postgres://u@h/d").unwrap();
        assert_eq!(c.password, None);
        assert_eq!(c.port, None);
    }
}
