//! Database migrations: two kinds of SQL file in one directory (`migrations/`).
//!
//! * `NNNN_name.sql` — numbered migrations are **history**: tables, columns, constraints,
//!   indexes, policies, grants on tables, data. Each is applied once, in numeric order, in its
//!   own transaction, and recorded in `schema_migrations` with a sha256 checksum. A file is
//!   never edited once applied: a changed checksum is an error, not a silent drift.
//! * `functions/*.sql` — repeatable files hold the **current definition of every SQL
//!   function**, with its GRANT/REVOKE and the triggers that execute it. After the numbered
//!   migrations, every file whose sha256 differs from the one recorded in `schema_repeatables`
//!   (or that is new) is applied, in file-name order, each in its own transaction, and its
//!   checksum recorded; unchanged files are skipped. So a file must be safe to run again:
//!   `CREATE OR REPLACE FUNCTION`, `DROP TRIGGER IF EXISTS` + `CREATE TRIGGER`, GRANT/REVOKE.
//!   To change a function, edit its file.
//!
//! Order on an empty database: every numbered migration, then every functions file. Hence:
//! * A numbered migration must not need a function from `functions/` (they do not exist yet on
//!   a fresh database): no trigger, policy, CHECK, column DEFAULT, index expression or data
//!   change that calls one. Such an object goes in the functions file, after its function
//!   (as `tenants_set_updated_at` does in `00_shared.sql`).
//! * A functions file may use every table and row type (`catalog_item_json(i
//!   public.catalog_items)`), and the functions of files sorting before it (`LANGUAGE sql`
//!   bodies are checked at creation: `iso_utc` and `current_tenant_id` are in `00_shared.sql`).
//! * What `CREATE OR REPLACE` cannot do — a changed argument list or return type, a removed
//!   function — is a numbered migration with `DROP FUNCTION IF EXISTS …` (`IF EXISTS`: on a
//!   fresh database the function was never created), committed with the edit of the functions
//!   file, which is re-applied right after it.
//!
//! Both phases run under one session-level advisory lock, so two migrators never interleave.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::pg::{Budget, PgConnection, PgError};

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

/// Repeatable files live in this subdirectory of the migrations directory.
pub const FUNCTIONS_DIR: &str = "functions";

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
                "migration {version}_{name} was changed after it was applied (checksum mismatch); \
                 applied migrations are history: restore the file and put the change in a new \
                 migration (function bodies belong in {FUNCTIONS_DIR}/)"
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

/// One repeatable file (`functions/10_catalog.sql`) found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatableFile {
    /// The file name (`10_catalog.sql`), its key in `schema_repeatables`.
    pub name: String,
    pub path: PathBuf,
}

impl RepeatableFile {
    /// How results and errors name it: `functions/10_catalog.sql`.
    pub fn label(&self) -> String {
        format!("{FUNCTIONS_DIR}/{}", self.name)
    }
}

/// Lists the `*.sql` files of `dir/functions/`, ordered by file name; no such directory means
/// no repeatable files.
pub fn discover_repeatable(dir: &Path) -> Result<Vec<RepeatableFile>, Error> {
    let functions = dir.join(FUNCTIONS_DIR);
    let io = |source| Error::Io {
        path: functions.clone(),
        source,
    };
    let entries = match std::fs::read_dir(&functions) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io)?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !name.ends_with(".sql") || !entry.file_type().map_err(io)?.is_file() {
            continue;
        }
        files.push(RepeatableFile {
            name,
            path: entry.path(),
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

pub fn checksum(contents: &[u8]) -> String {
    hex::encode(Sha256::digest(contents))
}

/// Applies the pending numbered migrations in `dir`, then the changed repeatable files of
/// `dir/functions/`, and returns what it applied, in order (`0001_tenancy`,
/// `functions/10_catalog.sql`).
pub async fn apply(superuser_database_url: &str, dir: &Path) -> Result<Vec<String>, Error> {
    let info = crate::conninfo::parse(superuser_database_url).map_err(Error::InvalidUrl)?;
    let files = discover(dir)?;
    let repeatables = discover_repeatable(dir)?;
    let params = info.connect_params(
        vec![("application_name".into(), "edgefront-migrate".into())],
        Duration::from_secs(10),
    );
    let mut conn = PgConnection::connect(&params).await?;
    let result = apply_on(&mut conn, &files, &repeatables).await;
    conn.close().await;
    result
}

async fn apply_on(
    conn: &mut PgConnection,
    files: &[MigrationFile],
    repeatables: &[RepeatableFile],
) -> Result<Vec<String>, Error> {
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
    conn.simple_query(
        "CREATE TABLE IF NOT EXISTS public.schema_repeatables (
            name text PRIMARY KEY,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let applied = recorded(
        conn,
        "SELECT version, checksum FROM public.schema_migrations",
    )
    .await?;
    let applied_repeatables =
        recorded(conn, "SELECT name, checksum FROM public.schema_repeatables").await?;

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
        let sql = utf8(contents, &file.path)?;
        tracing::info!("applying migration {label}");
        apply_one(
            conn,
            &sql,
            "INSERT INTO public.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            vec![
                Some(file.version.clone()),
                Some(file.name.clone()),
                Some(sum),
            ],
        )
        .await
        .map_err(|source| Error::Migration {
            file: label.clone(),
            source,
        })?;
        done.push(label);
    }

    // Repeatable files: the current definition of every function, re-applied when changed.
    for file in repeatables {
        let contents = std::fs::read(&file.path).map_err(|source| Error::Io {
            path: file.path.clone(),
            source,
        })?;
        let sum = checksum(&contents);
        if applied_repeatables.get(&file.name) == Some(&sum) {
            continue;
        }
        let label = file.label();
        let sql = utf8(contents, &file.path)?;
        tracing::info!("applying {label}");
        apply_one(
            conn,
            &sql,
            "INSERT INTO public.schema_repeatables (name, checksum) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
            vec![Some(file.name.clone()), Some(sum)],
        )
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

/// `key → checksum` from a two-column query.
async fn recorded(conn: &mut PgConnection, sql: &str) -> Result<HashMap<String, String>, Error> {
    Ok(conn
        .simple_query(sql)
        .await?
        .into_iter()
        .flat_map(|o| o.rows)
        .filter_map(|row| match row.as_slice() {
            [Some(k), Some(c)] => Some((k.clone(), c.clone())),
            _ => None,
        })
        .collect())
}

fn utf8(contents: Vec<u8>, path: &Path) -> Result<String, Error> {
    String::from_utf8(contents)
        .map_err(|_| Error::InvalidDir(format!("{} is not UTF-8", path.display())))
}

/// Runs one file and records it (`record` with `params`) in a single transaction.
async fn apply_one(
    conn: &mut PgConnection,
    sql: &str,
    record: &str,
    params: Vec<Option<String>>,
) -> Result<(), PgError> {
    conn.simple_query("BEGIN").await?;
    let result = async {
        // The simple protocol runs a multi-statement file (DO blocks included) as written.
        conn.simple_query(sql).await?;
        conn.query(record, &params, &mut Budget::unlimited())
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
    fn repeatable_files_in_name_order() {
        let dir = std::env::temp_dir().join(format!(
            "edgefront-migrate-repeatable-test-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(discover_repeatable(&dir).unwrap(), []);
        let functions = dir.join(FUNCTIONS_DIR);
        std::fs::create_dir_all(functions.join("nested.sql")).unwrap();
        for f in ["20_b.sql", "00_a.sql", "README.md", "10_c.sql.bak"] {
            std::fs::write(functions.join(f), "SELECT 1;").unwrap();
        }
        let found = discover_repeatable(&dir).unwrap();
        let labels: Vec<_> = found.iter().map(RepeatableFile::label).collect();
        assert_eq!(labels, ["functions/00_a.sql", "functions/20_b.sql"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// SQL without `--` comments, upper-cased, whitespace collapsed.
    fn statements_text(sql: &str) -> String {
        let code: Vec<&str> = sql
            .lines()
            .map(|l| l.split_once("--").map_or(l, |(code, _)| code))
            .collect();
        code.join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_uppercase()
    }

    /// The names after each occurrence of `keyword` (`CREATE TRIGGER x`, `… FUNCTION public.f(`).
    fn names_after(text: &str, keyword: &str) -> Vec<String> {
        text.match_indices(keyword)
            .map(|(i, _)| {
                text[i + keyword.len()..]
                    .trim_start()
                    .split(|c: char| c == '(' || c.is_whitespace())
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    }

    /// The rule of the module doc, checked on the real `migrations/`: functions and their
    /// triggers are only in `functions/`, each defined once, each statement re-runnable.
    #[test]
    fn real_migrations_keep_functions_in_functions_dir() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        let numbered = discover(&dir).unwrap();
        assert!(!numbered.is_empty());
        for file in &numbered {
            let text = statements_text(&std::fs::read_to_string(&file.path).unwrap());
            for keyword in [
                "FUNCTION PUBLIC.",
                "CREATE TRIGGER",
                "CREATE OR REPLACE TRIGGER",
            ] {
                assert!(
                    !text.contains(keyword),
                    "{} contains `{keyword}`: functions and their triggers belong in {FUNCTIONS_DIR}/",
                    file.path.display()
                );
            }
        }
        let repeatables = discover_repeatable(&dir).unwrap();
        assert!(repeatables.len() >= 4, "{repeatables:?}");
        let mut defined: Vec<String> = Vec::new();
        for file in &repeatables {
            let text = statements_text(&std::fs::read_to_string(&file.path).unwrap());
            assert_eq!(
                names_after(&text, "CREATE FUNCTION"),
                Vec::<String>::new(),
                "{}: use CREATE OR REPLACE FUNCTION (the file is re-applied)",
                file.name
            );
            for name in names_after(&text, "CREATE OR REPLACE FUNCTION") {
                assert!(
                    !defined.contains(&name),
                    "{name} is defined twice in {FUNCTIONS_DIR}/"
                );
                defined.push(name);
            }
            let drops = names_after(&text, "DROP TRIGGER IF EXISTS");
            for name in names_after(&text, "CREATE TRIGGER") {
                assert!(
                    drops.contains(&name),
                    "{}: CREATE TRIGGER {name} needs a DROP TRIGGER IF EXISTS first",
                    file.name
                );
            }
        }
        for shared in [
            "PUBLIC.ISO_UTC",
            "PUBLIC.CURRENT_TENANT_ID",
            "PUBLIC.SET_UPDATED_AT",
        ] {
            assert!(defined.iter().any(|d| d == shared), "{shared}: {defined:?}");
        }
    }

    #[test]
    fn checksum_is_sha256_hex() {
        assert_eq!(
            checksum(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
