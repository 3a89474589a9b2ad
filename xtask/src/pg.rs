//! A throwaway Postgres 15 cluster (Debian's server binaries) on 127.0.0.1 and a free port.
//! As root the server runs as the `postgres` user; the cluster dies with xtask.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::proc::{free_port, Proc};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct PgCluster {
    pub port: u16,
    pub superuser_password: String,
    _server: Proc,
}

fn postgres_ids() -> Result<Option<(u32, u32)>> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Ok(None);
    }
    let out = Command::new("id").args(["-u", "postgres"]).output()?;
    let uid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context(
        "running as root needs a `postgres` user for the server (apt-get install postgresql-15)",
    )?;
    let out = Command::new("id").args(["-g", "postgres"]).output()?;
    let gid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    Ok(Some((uid, gid)))
}

fn chown_tree(path: &Path, ids: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = ids {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    }
    Ok(())
}

impl PgCluster {
    /// initdb + start in `dir` (created if needed). ≈ 2 s.
    pub async fn start(dir: &Path, password: &str) -> Result<Self> {
        if !Path::new(PG_BIN).join("initdb").exists() {
            bail!(
                "Postgres 15 server binaries not found in {PG_BIN} (apt-get install postgresql-15)"
            );
        }
        let ids = postgres_ids()?;
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        chown_tree(dir, ids)?;
        let data: PathBuf = dir.join("data");
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, password)?;
        chown_tree(&pwfile, ids)?;

        let mut initdb = Command::new(Path::new(PG_BIN).join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        let log = dir.join("initdb.log");
        let mut p = Proc::spawn("initdb", &mut initdb, &log, ids)?;
        let start = Instant::now();
        loop {
            if let Err(e) = p.check_alive() {
                // Exited: success is judged by the data directory.
                if data.join("PG_VERSION").exists() {
                    break;
                }
                return Err(e.context(crate::proc::log_tail(Some(&log))));
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("initdb took over 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(p);
        std::fs::remove_file(&pwfile)?;

        for _attempt in 0..3 {
            let port = free_port()?;
            let mut cmd = Command::new(Path::new(PG_BIN).join("postgres"));
            cmd.arg("-D")
                .arg(&data)
                .args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string()])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.display()))
                .args([
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ])
                .args(["-c", "max_connections=200"]);
            let log = dir.join("postgres.log");
            let mut server = Proc::spawn("postgres", &mut cmd, &log, ids)?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    let cluster = Self {
                        port,
                        superuser_password: password.to_owned(),
                        _server: server,
                    };
                    cluster.wait_ready().await?;
                    return Ok(cluster);
                }
                if server.check_alive().is_err() || Instant::now() > deadline {
                    break; // port taken in the meantime, or slow: try another port
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            eprintln!(
                "postgres did not start on port {port}; retrying\n{}",
                crate::proc::log_tail(Some(&log))
            );
        }
        bail!("could not start postgres")
    }

    pub fn superuser_url(&self, db: &str) -> String {
        format!(
            "postgresql://postgres:{}@127.0.0.1:{}/{db}",
            self.superuser_password, self.port
        )
    }

    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client> {
        let (client, conn) =
            tokio_postgres::connect(&self.superuser_url(db), tokio_postgres::NoTls)
                .await
                .with_context(|| format!("connecting to postgres database {db}"))?;
        tokio::spawn(conn);
        Ok(client)
    }

    async fn wait_ready(&self) -> Result<()> {
        let start = Instant::now();
        loop {
            match self.connect("postgres").await {
                Ok(_) => return Ok(()),
                // "the database system is starting up"
                Err(_) if start.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => return Err(e),
            }
        }
    }
}
