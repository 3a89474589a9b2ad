//! Builds the deployable artifacts: the Workers bundle (worker-build: wasm-bindgen, wasm-opt,
//! JS glue; served by edge/worker/entry.mjs) and the two builds of the Spin component
//! (wasm32-wasip2 `wasi:http` components), each checked by what it imports before it is put
//! in place.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use sha2::{Digest, Sha256};

use crate::tools::Tools;
use crate::{repo_root, run, target_dir};

pub fn worker_wasm() -> PathBuf {
    repo_root().join("edge/worker/build/index_bg.wasm")
}

/// The two builds of `edge/spin`. Cargo writes both to the same file, so each is copied to a
/// path of its own: one never overwrites the other, and nothing serves a leftover of the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpinBuild {
    /// Imports only `wasi:*`: `wasmtime serve` (any `wasi:http` 0.2 host) runs it; its caches
    /// live per instance.
    Portable,
    /// Feature `spin-kv`: caches in Spin's `default` key-value store, so they outlive Spin's
    /// instance per request. What spin.toml deploys and `spin up` serves.
    SpinKv,
}

/// The interface through which the `spin-kv` build reaches Spin's key-value store (spin-sdk 5.2).
pub const SPIN_KEY_VALUE: &str = "fermyon:spin/key-value@2.0.0";

impl SpinBuild {
    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::SpinKv => "spin-kv",
        }
    }

    fn features(self) -> &'static [&'static str] {
        match self {
            Self::Portable => &[],
            Self::SpinKv => &["--features", "spin-kv"],
        }
    }

    /// Where the build is put, relative to the repository (spin.toml's `source` is SpinKv's).
    pub fn relative_artifact(self) -> &'static str {
        match self {
            Self::Portable => "edge/spin/build/edgefront-spin-portable.wasm",
            Self::SpinKv => "edge/spin/build/edgefront-spin-kv.wasm",
        }
    }

    pub fn artifact(self) -> PathBuf {
        repo_root().join(self.relative_artifact())
    }

    /// Errs unless `component`'s imports are this build's: the portable build imports nothing
    /// but `wasi:*` (Spin-specific imports cannot be linked by `wasmtime serve`); the `spin-kv`
    /// build imports Spin's key-value store.
    pub fn check(self, component: &Path) -> Result<()> {
        let bytes = std::fs::read(component)
            .with_context(|| format!("reading {}: build it first", component.display()))?;
        let imports = component_imports(&bytes)
            .with_context(|| format!("parsing the component {}", component.display()))?;
        match self {
            Self::Portable => {
                let foreign: Vec<&String> =
                    imports.iter().filter(|i| !i.starts_with("wasi:")).collect();
                ensure!(
                    foreign.is_empty(),
                    "{} is not the portable Spin build: it imports {foreign:?}",
                    component.display()
                );
            }
            Self::SpinKv => ensure!(
                imports.iter().any(|i| i == SPIN_KEY_VALUE),
                "{} is not the spin-kv build: it does not import {SPIN_KEY_VALUE} (imports: {imports:?})",
                component.display()
            ),
        }
        Ok(())
    }
}

/// The names a component imports at its top level (e.g. `wasi:http/types@0.2.0`); imports of
/// the core modules and components nested inside it are not the host's business.
pub fn component_imports(bytes: &[u8]) -> Result<Vec<String>> {
    use wasmparser::{Parser, Payload};
    let mut names = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::Version { encoding, .. } => {
                depth += 1;
                ensure!(
                    depth > 1 || encoding == wasmparser::Encoding::Component,
                    "a core module, not a component"
                );
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    names.push(import?.name.0.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

/// Builds the worker. Skips worker-build's post-processing when cargo's output and the crate's
/// manifest are unchanged, which keeps `wrangler dev` (which runs this as its build command)
/// quick to start.
pub fn build_worker(tools: &Tools) -> Result<()> {
    let root = repo_root();
    build_release_with(WORKER, &[], WORKER_PROFILE_ENV)?;
    let raw = target_dir().join("wasm32-unknown-unknown/release/edgefront_worker.wasm");
    // worker-build's own settings (its wasm-opt arguments) are in the crate's manifest.
    let mut hasher = Sha256::new();
    hasher.update(std::fs::read(&raw).context("reading worker wasm")?);
    hasher.update(
        std::fs::read(root.join("edge/worker/Cargo.toml"))
            .context("reading the worker's manifest")?,
    );
    let digest = hex(&hasher.finalize());
    let stamp = root.join("edge/worker/build/.edgefront-stamp");
    let bundle = root.join("edge/worker/build/index.js");
    if bundle.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(digest.as_str()) {
        return Ok(());
    }
    let mut cmd = Command::new(&tools.worker_build);
    cmd.arg("--release").current_dir(root.join("edge/worker"));
    for (k, v) in tools.worker_env() {
        cmd.env(k, v);
    }
    // worker-build runs cargo again: the same profile, or it would rebuild at another one.
    cmd.envs(WORKER_PROFILE_ENV.iter().copied());
    run(&mut cmd)?;
    strip_names(tools, &worker_wasm())?;
    std::fs::write(&stamp, digest)?;
    Ok(())
}

/// How the worker is compiled, on top of `[profile.release]`: for size (`z`), because Workers
/// limit the bundle (ours: 512 KiB gzip) and every KiB is also startup time; `s` costs
/// +70 KiB gzip, and core's CPU work per request is small next to its I/O (BENCHMARKS.md).
/// Spin and native builds keep `[profile.release]`.
///
/// With Wasm SIMD (`simd128`, which Workers' V8 runs): LLVM vectorizes byte loops (header
/// checks, JSON escaping, copies), −3.7% CPU on `/v1/me` in a side-by-side A/B and 2.4 KiB
/// less gzip (BENCHMARKS.md, eleventh round). Set for the target rather than in `RUSTFLAGS`, so
/// the host-built build scripts and proc-macros are untouched.
pub const WORKER_PROFILE_ENV: &[(&str, &str)] = &[
    ("CARGO_PROFILE_RELEASE_OPT_LEVEL", "z"),
    (
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
        "-C target-feature=+simd128",
    ),
];

/// Where the worker with its function names is kept: Workers' stack traces name functions
/// by index and code offset, the same in both files (the name section comes after the code),
/// so this copy symbolicates them.
pub fn worker_wasm_with_names() -> PathBuf {
    target_dir().join("wasm32-unknown-unknown/release/edgefront_worker.names.wasm")
}

/// Drops the name section that worker-build keeps (it runs wasm-opt with `--debuginfo`): ~15%
/// of the bundle gzipped. The named module is kept at [`worker_wasm_with_names`].
fn strip_names(tools: &Tools, wasm: &Path) -> Result<()> {
    std::fs::copy(wasm, worker_wasm_with_names())?;
    let stripped = wasm.with_extension("stripped.wasm");
    run(Command::new(tools.node_bin.join("wasm-opt"))
        .arg(wasm)
        .arg("-o")
        .arg(&stripped)
        // No optimisation pass: only re-encode without names (and without producers). The
        // features are those worker-build enables, so nothing is lowered or rejected.
        .args(WORKER_WASM_FEATURES.iter().map(|f| format!("--enable-{f}")))
        .args(["--strip-debug", "--strip-producers"]))?;
    std::fs::rename(&stripped, wasm)?;
    Ok(())
}

/// The wasm features worker-build 0.8.7 passes to wasm-opt (workerd supports these).
const WORKER_WASM_FEATURES: &[&str] = &[
    "mutable-globals",
    "sign-ext",
    "nontrapping-float-to-int",
    "bulk-memory",
    "multivalue",
    "reference-types",
    "exception-handling",
];

/// Builds one Spin build and puts it at its artifact path (written beside it, checked, then
/// renamed, so the path never holds a half-written or wrong component). Returns that path.
pub fn build_spin(build: SpinBuild) -> Result<PathBuf> {
    let (package, target) = SPIN;
    build_release((package, target), build.features())?;
    let built = target_dir()
        .join(target)
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    let artifact = build.artifact();
    if let Some(dir) = artifact.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let staged = artifact.with_extension("wasm.partial");
    std::fs::copy(&built, &staged)
        .with_context(|| format!("copying {} to {}", built.display(), staged.display()))?;
    build.check(&staged)?;
    std::fs::rename(&staged, &artifact)?;
    Ok(artifact)
}

/// The adapter crates and the wasm target each is built for.
pub const WORKER: (&str, &str) = ("edgefront-worker", "wasm32-unknown-unknown");
pub const SPIN: (&str, &str) = ("edgefront-spin", "wasm32-wasip2");
/// The floor of a Rust Worker (bench/floor), built like the worker for `cargo xtask bench`.
pub const FLOOR: (&str, &str) = ("edgefront-bench-floor", "wasm32-unknown-unknown");

/// Builds bench/floor with worker-build, the tools and the profile the worker gets, so its
/// glue is the worker's (and its entry, edge/worker/src/entry.js, the same file).
pub fn build_floor(tools: &Tools) -> Result<()> {
    let mut cmd = Command::new(&tools.worker_build);
    cmd.arg("--release")
        .current_dir(repo_root().join("bench/floor"));
    for (k, v) in tools.worker_env() {
        cmd.env(k, v);
    }
    cmd.envs(WORKER_PROFILE_ENV.iter().copied());
    run(&mut cmd)
}

/// What `wrangler deploy` would upload for the Worker `config` describes (a path under the
/// repository), written to `outdir` offline (`--dry-run`): one JS module beside the wasm it
/// imports. `logs` gets wrangler's own log files.
pub fn deploy_bundle(tools: &Tools, config: &str, outdir: &Path, logs: &Path) -> Result<()> {
    let mut cmd = Command::new(tools.node_bin.join("wrangler"));
    cmd.current_dir(repo_root())
        .args(["deploy", "--dry-run", "--outdir"])
        .arg(outdir)
        .arg("--config")
        .arg(repo_root().join(config))
        .env("WRANGLER_LOG_PATH", logs);
    for (k, v) in tools.worker_env() {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .with_context(|| format!("wrangler deploy --dry-run for {config}"))?;
    ensure!(
        out.status.success(),
        "wrangler deploy --dry-run --config {config} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn build_release(build: (&str, &str), features: &[&str]) -> Result<()> {
    build_release_with(build, features, &[])
}

fn build_release_with(
    (package, target): (&str, &str),
    features: &[&str],
    env: &[(&str, &str)],
) -> Result<()> {
    run(Command::new("cargo")
        .envs(env.iter().copied())
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            target,
            "-p",
            package,
        ])
        .args(features)
        .current_dir(repo_root()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// (raw bytes, gzip -9 bytes) of a file.
pub fn sizes(path: &Path) -> Result<(u64, u64)> {
    let raw = std::fs::metadata(path)?.len();
    let out = Command::new("gzip").args(["-9", "-c"]).arg(path).output()?;
    Ok((raw, out.stdout.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The build `spin up` serves reaches Spin's key-value store; the one `wasmtime serve`
    /// serves imports nothing but `wasi:*`. Reads the built components (`cargo xtask test`
    /// builds both before it runs the ignored tests).
    #[test]
    #[ignore = "needs both Spin builds: cargo xtask build spin && cargo xtask build spin-portable"]
    fn spin_kv_build_imports_spin_key_value_and_portable_build_only_wasi() {
        let imports = |build: SpinBuild| {
            let bytes = std::fs::read(build.artifact()).unwrap_or_else(|e| {
                panic!("{}: {e}", build.artifact().display());
            });
            component_imports(&bytes).unwrap()
        };
        let spin_kv = imports(SpinBuild::SpinKv);
        let portable = imports(SpinBuild::Portable);
        assert!(spin_kv.iter().any(|i| i == SPIN_KEY_VALUE), "{spin_kv:?}");
        assert!(
            !portable.iter().any(|i| i == SPIN_KEY_VALUE),
            "{portable:?}"
        );
        assert!(
            portable.iter().all(|i| i.starts_with("wasi:")),
            "{portable:?}"
        );
        // Both serve wasi:http 0.2's incoming handler, through the same imports otherwise.
        assert!(portable
            .iter()
            .any(|i| i.starts_with("wasi:http/types@0.2.")));
        for import in &portable {
            assert!(spin_kv.contains(import), "spin-kv lacks {import}");
        }
        for build in [SpinBuild::SpinKv, SpinBuild::Portable] {
            build.check(&build.artifact()).unwrap();
        }
        assert!(SpinBuild::Portable
            .check(&SpinBuild::SpinKv.artifact())
            .is_err());
        assert!(SpinBuild::SpinKv
            .check(&SpinBuild::Portable.artifact())
            .is_err());
    }

    #[test]
    fn a_core_module_is_not_a_component() {
        // `\0asm`, version 1: an empty core module.
        let module = b"\0asm\x01\0\0\0";
        assert!(component_imports(module).is_err());
    }
}
