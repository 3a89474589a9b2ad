//! Applies numbered SQL migrations (`NNNN_name.sql`) in order, each in its own transaction,
//! recording them in `schema_migrations` with a sha256 checksum. Applied files must never
//! change: a changed checksum is an error rather than a silent drift.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::pg::{Budget, ConnectParams, PgConnection, PgError};

/// Arbitrary constant key for `pg_advisory_lock`, so two migrators never interleave.
const LOCK_KEY: i64 = 0x6564_6765_6672_6e74; // "edgefrnt"

#[derive(Debug)]
pub enum Error {
    InvalidUrl(String),
    Postgres(PgError),
    /// A migration failed; the file's transaction was rolled back.
    Migration {
        file: String,
        source: PgError,
    },
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    InvalidDir(String),
    ChecksumMismatch {
        version: String,
        name: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidUrl(m) => write!(f, "{m}"),
            Error::Postgres(e) => write!(f, "{e}"),
            Error::Migration { file, source } => write!(f, "migration {file} failed: {source}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::InvalidDir(m) => write!(f, "{m}"),
            Error::ChecksumMismatch { version, name } => write!(
                f,
                "migration {version}_{name} was changed after it was applied (checksum mismatch)"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<PgError> for Error {
    fn from(e: PgError) -> Self {
        Error::Postgres(e)
    }
}

/// One migration file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFile {
    pub version: String,
    pub name: String,
    pub path: PathBuf,
}

/// Splits `0001_tenancy.sql` into (`0001`, `tenancy`); anything else is not a migration.
pub fn parse_file_name(file_name: &str) -> Option<(String, String)> {
    let stem = file_name.strip_suffix(".sql")?;
    let (version, name) = stem.split_once('_')?;
    if version.is_empty() || name.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((version.to_owned(), name.to_owned()))
}

/// Lists the migrations in `dir`, ordered by numeric version; duplicate versions are an error.
pub fn discover(dir: &Path) -> Result<Vec<MigrationFile>, Error> {
    let io = |source| Error::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let file_name = entry.file_name();
        let Some((version, name)) = file_name.to_str().and_then(parse_file_name) else {
            continue;
        };
        files.push(MigrationFile {
            version,
            name,
            path: entry.path(),
        });
    }
    files.sort_by(|a, b| numeric_key(&a.version).cmp(&numeric_key(&b.version)));
    for pair in files.windows(2) {
        if numeric_key(&pair[0].version) == numeric_key(&pair[1].version) {
            return Err(Error::InvalidDir(format!(
                "duplicate migration version {} ({} and {})",
                pair[0].version,
                pair[0].path.display(),
                pair[1].path.display()
            )));
        }
    }
    Ok(files)
}

/// Compares `0002` and `10` by number: leading zeros stripped, then by length, then digits.
fn numeric_key(version: &str) -> (usize, &str) {
    let trimmed = version.trim_start_matches('0');
    (trimmed.len(), trimmed)
}

pub fn checksum(contents: &[u8]) -> String {
    hex::encode(Sha256::digest(contents))
}

/// Applies the pending migrations in `dir` and returns their names (`0001_tenancy`).
pub async fn apply(superuser_database_url: &str, dir: &Path) -> Result<Vec<String>, Error> {
    let info = crate::conninfo::parse(superuser_database_url).map_err(Error::InvalidUrl)?;
    let files = discover(dir)?;
    let params = ConnectParams {
        host: info.host,
        port: info.port.unwrap_or(5432),
        user: info.user,
        password: info.password,
        database: info.database,
        options: vec![("application_name".into(), "edgefront-migrate".into())],
        connect_timeout: Duration::from_secs(10),
    };
    let mut conn = PgConnection::connect(&params).await?;
    let result = apply_on(&mut conn, &files).await;
    conn.close().await;
    result
}

async fn apply_on(conn: &mut PgConnection, files: &[MigrationFile]) -> Result<Vec<String>, Error> {
    // Session-level lock, released when the session ends.
    conn.simple_query(&format!("SELECT pg_advisory_lock({LOCK_KEY})"))
        .await?;
    conn.simple_query(
        "CREATE TABLE IF NOT EXISTS public.schema_migrations (
            version text PRIMARY KEY,
            name text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let applied: HashMap<String, String> = conn
        .simple_query("SELECT version, checksum FROM public.schema_migrations")
        .await?
        .into_iter()
        .flat_map(|o| o.rows)
        .filter_map(|row| match row.as_slice() {
            [Some(v), Some(c)] => Some((v.clone(), c.clone())),
            _ => None,
        })
        .collect();

    let mut done = Vec::new();
    for file in files {
        let contents = std::fs::read(&file.path).map_err(|source| Error::Io {
            path: file.path.clone(),
            source,
        })?;
        let sum = checksum(&contents);
        if let Some(recorded) = applied.get(&file.version) {
            if *recorded != sum {
                return Err(Error::ChecksumMismatch {
                    version: file.version.clone(),
                    name: file.name.clone(),
                });
            }
            continue;
        }
        let label = format!("{}_{}", file.version, file.name);
        let sql = String::from_utf8(contents)
            .map_err(|_| Error::InvalidDir(format!("{} is not UTF-8", file.path.display())))?;
        tracing::info!("applying migration {label}");
        apply_one(conn, file, &sql, &sum)
            .await
            .map_err(|source| Error::Migration {
                file: label.clone(),
                source,
            })?;
        done.push(label);
    }
    conn.simple_query(&format!("SELECT pg_advisory_unlock({LOCK_KEY})"))
        .await?;
    Ok(done)
}

async fn apply_one(
    conn: &mut PgConnection,
    file: &MigrationFile,
    sql: &str,
    sum: &str,
) -> Result<(), PgError> {
    conn.simple_query("BEGIN").await?;
    let result = async {
        // The simple protocol runs a multi-statement file (DO blocks included) as written.
        conn.simple_query(sql).await?;
        conn.query(
            "INSERT INTO public.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[
                Some(file.version.clone()),
                Some(file.name.clone()),
                Some(sum.to_owned()),
            ],
            &mut Budget::unlimited(),
        )
        .await?;
        conn.simple_query("COMMIT").await?;
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = conn.simple_query("ROLLBACK").await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(
            parse_file_name("0001_tenancy.sql"),
            Some(("0001".into(), "tenancy".into()))
        );
        assert_eq!(
            parse_file_name("12_add_two_things.sql"),
            Some(("12".into(), "add_two_things".into()))
        );
        assert_eq!(parse_file_name("README.md"), None);
        assert_eq!(parse_file_name("0001.sql"), None);
        assert_eq!(parse_file_name("abc_x.sql"), None);
        assert_eq!(parse_file_name("0001_x.sql.bak"), None);
    }

    #[test]
    fn ordering_is_numeric() {
        let dir =
            std::env::temp_dir().join(format!("edgefront-migrate-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["10_c.sql", "0002_b.sql", "1_a.sql", "notes.txt"] {
            std::fs::write(dir.join(f), "SELECT 1;").unwrap();
        }
        let names: Vec<_> = discover(&dir)
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        std::fs::write(dir.join("002_dup.sql"), "SELECT 1;").unwrap();
        assert!(matches!(discover(&dir), Err(Error::InvalidDir(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn checksum_is_sha256_hex() {
        assert_eq!(
            checksum(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
