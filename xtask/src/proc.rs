//! Child processes that never outlive xtask: each runs in its own process group (so a wrapper
//! such as wrangler takes its workerd with it), dies with its parent (PR_SET_PDEATHSIG), and is
//! stopped — TERM, then KILL — when its handle is dropped, including on error and Ctrl-C.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr in `log` (so a failure can be explained).
    pub fn spawn(
        name: &str,
        cmd: &mut Command,
        log: &Path,
        run_as: Option<(u32, u32)>,
    ) -> Result<Self> {
        let f = std::fs::File::create(log)
            .with_context(|| format!("creating log {}", log.display()))?;
        cmd.stdout(f.try_clone()?).stderr(f);
        cmd.stdin(Stdio::null());
        // SAFETY: only async-signal-safe libc calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some((uid, gid)) = run_as {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // After any credential change: the kernel clears this flag on setuid.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, which is also its process group's (the wrapper and what it spawned).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Err if the process has already exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("{} exited early ({status})", self.name);
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pgid = self.child.id() as i32;
        // SAFETY: signalling our own child's process group.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                // The leader is gone; make sure nothing it spawned lingers in its group.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free TCP port on 127.0.0.1 (bind to 0, read it, release it).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Waits until `url` answers with any HTTP status, or fails with the log's tail.
pub async fn wait_http(
    proc: &mut Proc,
    url: &str,
    timeout: Duration,
    log: Option<&Path>,
) -> Result<()> {
    let start = Instant::now();
    loop {
        if http_status(url, Duration::from_secs(2)).await.is_ok() {
            return Ok(());
        }
        if let Err(e) = proc.check_alive() {
            return Err(e.context(log_tail(log)));
        }
        if start.elapsed() > timeout {
            anyhow::bail!(
                "{} did not answer at {url} within {:?}\n{}",
                proc.name(),
                timeout,
                log_tail(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn log_tail(log: Option<&Path>) -> String {
    let Some(p) = log else { return String::new() };
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    format!("--- last lines of {} ---\n{tail}", p.display())
}

/// Status of a minimal HTTP/1.1 GET over loopback; reads only up to the end of the headers
/// (servers may keep the connection open). Enough for readiness probes.
pub async fn http_status(url: &str, timeout: Duration) -> Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .context("http:// URL expected")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(authority).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&buf);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no HTTP status")?;
        anyhow::Ok(status)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .context("timed out")?
}

/// Writes `contents` to a new file only its owner can read (dev manifests and env files hold secrets).
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    // Replaced, not rewritten: an older file may have wider permissions.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// TCP ports listened on over IPv4 by the processes of process group `pgid`, with the pid
/// holding each (from `/proc/net/tcp` and each process's socket descriptors; Linux only).
pub fn listening_ports(pgid: i32) -> Result<Vec<(i32, u16)>> {
    use std::collections::HashMap;
    // inode -> port, for sockets in the LISTEN state (0A).
    let table = std::fs::read_to_string("/proc/net/tcp").context("reading /proc/net/tcp")?;
    let mut listeners: HashMap<u64, u16> = HashMap::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9))
        else {
            continue;
        };
        if *state != "0A" {
            continue;
        }
        let port = local
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        if let (Some(port), Ok(inode)) = (port, inode.parse()) {
            listeners.insert(inode, port);
        }
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: getpgid has no memory effects.
        if unsafe { libc::getpgid(pid) } != pgid {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            let inode = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok());
            if let Some(port) = inode.and_then(|i| listeners.get(&i)) {
                found.push((pid, *port));
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}
