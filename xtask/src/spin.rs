//! How xtask serves the Spin component. With `spin` on PATH, `spin up` serves the `spin-kv`
//! build (what spin.toml deploys) from a dev manifest derived from spin.toml; otherwise
//! `wasmtime serve` serves the portable build. The host decides the build here, and only here.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::artifacts::SpinBuild;
use crate::proc::write_private;
use crate::repo_root;
use crate::tools::{which, Tools};

/// The component spin.toml routes every request to.
pub const COMPONENT: &str = "edgefront";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpinHost {
    /// `spin up`, with the `spin` CLI at this path.
    SpinUp(PathBuf),
    /// `wasmtime serve`, installed by xtask.
    WasmtimeServe,
}

impl SpinHost {
    /// `spin up` when `spin` is on PATH, else `wasmtime serve`.
    pub fn detect() -> Self {
        which("spin").map_or(Self::WasmtimeServe, Self::SpinUp)
    }

    /// The build this host serves: Spin links its key-value store, wasmtime cannot.
    pub fn build(&self) -> SpinBuild {
        match self {
            Self::SpinUp(_) => SpinBuild::SpinKv,
            Self::WasmtimeServe => SpinBuild::Portable,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::SpinUp(_) => "spin up",
            Self::WasmtimeServe => "wasmtime serve",
        }
    }

    /// The command serving this host's build on `addr` with `settings` as the component's
    /// environment. Secrets never reach the command line (`ps`): `spin up` reads them from a
    /// dev manifest written with mode 0600 into `dir`, `wasmtime serve --env NAME` inherits
    /// them. Everything `spin up` writes (key-value database, logs) stays in `dir` too.
    pub fn command(
        &self,
        tools: &Tools,
        dir: &Path,
        addr: &str,
        settings: &[(&str, String)],
        outbound: &[String],
    ) -> Result<Command> {
        let artifact = self.build().artifact();
        // Serving a leftover of the other build would go unnoticed until caches misbehave.
        self.build().check(&artifact)?;
        let cmd = match self {
            Self::SpinUp(spin) => {
                std::fs::create_dir_all(dir)?;
                let shipped = std::fs::read_to_string(repo_root().join("spin.toml"))
                    .context("reading spin.toml")?;
                let manifest = dir.join("spin.toml");
                write_private(
                    &manifest,
                    &dev_manifest(&shipped, &artifact, settings, outbound)?,
                )?;
                let mut c = Command::new(spin);
                c.current_dir(dir)
                    .arg("up")
                    .arg("--from")
                    .arg(&manifest)
                    .args(["--listen", addr])
                    .arg("--state-dir")
                    .arg(dir.join("state"));
                c
            }
            Self::WasmtimeServe => {
                let mut c = Command::new(&tools.wasmtime);
                c.args([
                    "serve",
                    "-S",
                    "cli=y",
                    "--addr",
                    addr,
                    // A fresh instance per request, as `spin up` runs a wasip2 component, and
                    // with no key-value store (wasmtime cannot link Spin's): nothing carries
                    // over from one request to the next but the database. Reusing instances to
                    // keep caches warm does not hold up: wasmtime starts another instance
                    // whenever a request arrives before the busy one reports itself free (just
                    // after the response is written), and an invalidation in one instance's
                    // memory (a role changed, a tenant suspended) never reaches the others,
                    // so the next request could read the old answer. Warm-cache behaviour is
                    // tested on Workers. Concurrent client requests queue here; their
                    // atomicity is proven in SQL.
                    "--max-instance-reuse-count",
                    "1",
                    "--max-concurrent-requests",
                    "1",
                ]);
                for (k, v) in settings {
                    // `--env NAME` inherits the value.
                    c.env(k, v).arg("--env").arg(k);
                }
                c.arg(&artifact);
                c
            }
        };
        Ok(cmd)
    }
}

/// spin.toml as `spin up` runs it on the dev stack: the component's source is the built
/// `spin-kv` artifact (by absolute path: the dev manifest lives in the stack's state dir), no
/// build section, the stack's settings added to its environment, and outbound HTTP allowed to
/// the stack's own services by exact origin. The shipped spin.toml keeps none of this.
pub fn dev_manifest(
    shipped: &str,
    source: &Path,
    settings: &[(&str, String)],
    outbound: &[String],
) -> Result<String> {
    let mut manifest: toml::Table = shipped.parse().context("parsing spin.toml")?;
    let Some(component) = manifest
        .get_mut("component")
        .and_then(|c| c.get_mut(COMPONENT))
        .and_then(toml::Value::as_table_mut)
    else {
        bail!("spin.toml has no [component.{COMPONENT}]");
    };
    component.insert("source".into(), source.display().to_string().into());
    component.remove("build");
    let Some(hosts) = component
        .entry("allowed_outbound_hosts")
        .or_insert_with(|| toml::Value::Array(Vec::new()))
        .as_array_mut()
    else {
        bail!("spin.toml: allowed_outbound_hosts is not an array");
    };
    for origin in outbound {
        if !hosts.iter().any(|h| h.as_str() == Some(origin.as_str())) {
            hosts.push(origin.as_str().into());
        }
    }
    let Some(environment) = component
        .entry("environment")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
    else {
        bail!("spin.toml: environment is not a table");
    };
    for (k, v) in settings {
        environment.insert((*k).to_owned(), v.as_str().into());
    }
    let header =
        "# Generated by `cargo xtask` from spin.toml for this dev stack; holds its secrets.\n";
    Ok(format!("{header}{}", toml::to_string(&manifest)?))
}

/// `scheme://host:port` of a URL, the form of an entry in Spin's `allowed_outbound_hosts`.
pub fn origin(url: &str) -> Result<String> {
    let uri: http::Uri = url.parse().with_context(|| format!("parsing {url}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => Ok(format!("{scheme}://{authority}")),
        _ => bail!("not an absolute URL: {url}"),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use clap::Parser;

    use super::*;
    use crate::{Cli, Cmd};

    fn shipped() -> toml::Table {
        let text = std::fs::read_to_string(repo_root().join("spin.toml")).unwrap();
        text.parse().unwrap()
    }

    fn component(manifest: &toml::Table) -> &toml::Table {
        manifest["component"][COMPONENT].as_table().unwrap()
    }

    fn strings(v: &toml::Value) -> Vec<&str> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect()
    }

    #[test]
    fn spin_up_serves_the_spin_kv_build_and_wasmtime_the_portable_one() {
        let spin = SpinHost::SpinUp(PathBuf::from("/usr/local/bin/spin"));
        assert_eq!(spin.build(), SpinBuild::SpinKv);
        assert_eq!(SpinHost::WasmtimeServe.build(), SpinBuild::Portable);
        assert_ne!(
            SpinBuild::SpinKv.relative_artifact(),
            SpinBuild::Portable.relative_artifact()
        );
    }

    /// spin.toml's build command is xtask's own, building (and writing where spin.toml's
    /// `source` reads) exactly the build xtask serves under `spin up`: the two cannot drift.
    #[test]
    fn spin_toml_builds_and_deploys_what_spin_up_serves() {
        let manifest = shipped();
        let component = component(&manifest);
        let command = component["build"]["command"].as_str().unwrap();
        let args = command.strip_prefix("cargo xtask ").unwrap_or_else(|| {
            panic!("spin.toml's build command is not `cargo xtask …`: {command}")
        });
        let cli =
            Cli::try_parse_from(std::iter::once("cargo xtask").chain(args.split_whitespace()))
                .unwrap();
        let Cmd::Build { target } = cli.cmd else {
            panic!("spin.toml's build command is not `cargo xtask build …`: {command}");
        };
        let served = SpinHost::SpinUp(PathBuf::from("spin")).build();
        assert_eq!(target.spin_build(), Some(served));
        assert_eq!(
            component["source"].as_str(),
            Some(served.relative_artifact())
        );
    }

    #[test]
    fn shipped_spin_toml_allows_no_loopback_hosts() {
        let manifest = shipped();
        for host in strings(&component(&manifest)["allowed_outbound_hosts"]) {
            for local in ["127.0.0.1", "localhost", "[::1]", "0.0.0.0"] {
                assert!(!host.contains(local), "spin.toml allows {host}");
            }
        }
    }

    #[test]
    fn dev_manifest_serves_the_artifact_with_the_stack_settings_and_services() {
        let text = std::fs::read_to_string(repo_root().join("spin.toml")).unwrap();
        let artifact = SpinBuild::SpinKv.artifact();
        let settings = [
            (
                "DATABASE_URL",
                "postgresql://app:s3cret@localhost/db".to_owned(),
            ),
            (
                "JWT_ISSUERS",
                r#"[{"issuer":"http://127.0.0.1:4001/x"}]"#.to_owned(),
            ),
        ];
        let outbound = [
            "http://127.0.0.1:4000".to_owned(),
            "http://127.0.0.1:4001".to_owned(),
        ];
        let dev: toml::Table = dev_manifest(&text, &artifact, &settings, &outbound)
            .unwrap()
            .parse()
            .unwrap();
        let shipped = shipped();
        let (dev_c, shipped_c) = (component(&dev), component(&shipped));
        assert_eq!(dev_c["source"].as_str(), Some(artifact.to_str().unwrap()));
        assert!(!dev_c.contains_key("build"));
        // Everything else of the shipped manifest holds: triggers, stores, hosts, settings.
        assert_eq!(dev["trigger"], shipped["trigger"]);
        assert_eq!(dev_c["key_value_stores"], shipped_c["key_value_stores"]);
        let mut hosts = strings(&shipped_c["allowed_outbound_hosts"]);
        hosts.extend(outbound.iter().map(String::as_str));
        assert_eq!(strings(&dev_c["allowed_outbound_hosts"]), hosts);
        let env = dev_c["environment"].as_table().unwrap();
        assert_eq!(env["DATABASE_URL"].as_str(), Some(settings[0].1.as_str()));
        assert_eq!(env["JWT_ISSUERS"].as_str(), Some(settings[1].1.as_str()));
        assert_eq!(
            env["UPLOAD_URL_TTL_SECONDS"],
            shipped_c["environment"]["UPLOAD_URL_TTL_SECONDS"]
        );
    }

    #[test]
    fn dev_manifest_file_is_private_even_over_an_older_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spin.toml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, "secret = 1\n").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret = 1\n");
    }

    #[test]
    fn origins_name_scheme_host_and_port() {
        assert_eq!(
            origin("http://127.0.0.1:4100/sql").unwrap(),
            "http://127.0.0.1:4100"
        );
        assert_eq!(
            origin("http://127.0.0.1:4200/v1").unwrap(),
            "http://127.0.0.1:4200"
        );
        assert!(origin("/relative").is_err());
    }
}
