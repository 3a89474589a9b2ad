//! Presigned URLs and POST forms are byte-identical to botocore's for the same inputs. The
//! vectors are not stored: botocore generates them at test time (wasm-tests/tools/
//! botocore_presign.py). `cargo xtask test` runs this with a pinned botocore on PYTHONPATH
//! (EDGEFRONT_BOTOCORE_PATH); `cargo test -- --ignored` uses whatever python3 has.
#![cfg(not(target_family = "wasm"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use edgefront_core::config::{Config, S3Config};
use edgefront_core::s3;
use edgefront_core::tenancy::TenantId;
use edgefront_core::uploads::{content_disposition, object_key};
use serde_json::{json, Value};

const ACCESS_KEY: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// (endpoint or None for AWS, region, path style)
const TARGETS: &[(Option<&str>, &str, bool)] = &[
    (Some("http://127.0.0.1:9000"), "us-east-1", true),
    (None, "eu-west-3", false),
    (
        Some("https://0123abcd.r2.cloudflarestorage.com"),
        "auto",
        true,
    ),
];

fn s3_config(endpoint: Option<&str>, region: &str, path_style: bool) -> S3Config {
    let mut m: HashMap<&str, String> = [
        ("BASE_DOMAIN", "localhost"),
        ("ORIGIN_SQL_URL", "http://127.0.0.1:4444/sql"),
        ("DATABASE_URL", "postgresql://app:pw@localhost:5432/edgefront"),
        ("S3_REGION", region),
        ("S3_BUCKET", "edgefront-dev"),
        ("S3_ACCESS_KEY_ID", ACCESS_KEY),
        ("S3_SECRET_ACCESS_KEY", SECRET),
        (
            "JWT_ISSUERS",
            r#"[{"issuer":"https://idp.example.com/pool","client_ids":["app"],"token_use":["id"]}]"#,
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    if let Some(e) = endpoint {
        m.insert("S3_ENDPOINT", e.to_owned());
    }
    m.insert("S3_FORCE_PATH_STYLE", path_style.to_string());
    Config::load(&|k: &str| m.get(k).cloned()).unwrap().s3
}

fn botocore(cases: &[Value]) -> (String, Vec<Value>) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../wasm-tests/tools/botocore_presign.py"
    );
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Ok(path) = std::env::var("EDGEFRONT_BOTOCORE_PATH") {
        cmd.env("PYTHONPATH", path);
    }
    let mut child = cmd
        .spawn()
        .expect("python3 is needed for the botocore vectors");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::from(cases.to_vec()).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "botocore_presign.py failed (is botocore installed?)"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["botocore"].as_str().unwrap().to_owned(),
        v["results"].as_array().unwrap().clone(),
    )
}

#[test]
#[ignore = "needs python3 with botocore; cargo xtask test provides a pinned one"]
fn presigned_requests_are_byte_identical_to_botocores() {
    // 2026-01-02T03:04:05Z, and a time just before midnight (the expiry crosses the date).
    let times = [1_767_323_045u64, 1_767_311_999];
    let tenant = TenantId::parse("00000000-0000-4000-8000-00000000d301").unwrap();
    let file = "7d1c1c5e-8b7a-4f3e-9f58-0b9d2d0c6a11";
    let keys = [
        object_key(&tenant, file, "photo.png"),
        object_key(&tenant, file, "../../été à la plage (1).JPG"),
    ];
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for &(endpoint, region, path_style) in TARGETS {
        let cfg = s3_config(endpoint, region, path_style);
        let base = json!({
            "endpoint": cfg.endpoint.to_string().trim_end_matches('/'),
            "region": region, "bucket": "edgefront-dev", "path_style": path_style,
            "access_key_id": ACCESS_KEY, "secret_access_key": SECRET,
        });
        for &t in &times {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(t);
            for key in &keys {
                for (ct, len, expires) in [
                    ("image/png", 70_000u64, 900u64),
                    ("application/pdf", 1, 604_800),
                ] {
                    let mut c = base.clone();
                    c["op"] = json!("put");
                    c["time"] = json!(t);
                    c["key"] = json!(key);
                    c["content_type"] = json!(ct);
                    c["content_length"] = json!(len);
                    c["expires"] = json!(expires);
                    cases.push(c);
                    let url =
                        s3::presign_put(&cfg, key, ct, len, now, Duration::from_secs(expires))
                            .unwrap();
                    ours.push(json!({ "url": url }));
                }
                for disposition in [
                    None,
                    Some(content_disposition("attachment", "été 1.png")),
                    Some(content_disposition("inline", "a\"b;c.png")),
                ] {
                    let mut c = base.clone();
                    c["op"] = json!("get");
                    c["time"] = json!(t);
                    c["key"] = json!(key);
                    c["expires"] = json!(300);
                    c["disposition"] = json!(disposition);
                    cases.push(c);
                    let url = s3::presign_get(
                        &cfg,
                        key,
                        now,
                        Duration::from_secs(300),
                        disposition.as_deref(),
                    )
                    .unwrap();
                    ours.push(json!({ "url": url }));
                }
                for (ct, max) in [("image/png", 5_242_880u64), ("image/webp", 1)] {
                    let mut c = base.clone();
                    c["op"] = json!("post");
                    c["time"] = json!(t);
                    c["key"] = json!(key);
                    c["content_type"] = json!(ct);
                    c["max_bytes"] = json!(max);
                    c["expires"] = json!(900);
                    cases.push(c);
                    let post = s3::presign_post(&cfg, key, ct, max, now, Duration::from_secs(900))
                        .unwrap();
                    ours.push(json!({ "url": post.url, "fields": post.fields }));
                }
            }
        }
    }
    let (version, theirs) = botocore(&cases);
    if let Ok(pinned) = std::env::var("EDGEFRONT_BOTOCORE_VERSION") {
        assert_eq!(version, pinned, "not the pinned botocore");
    }
    assert_eq!(theirs.len(), ours.len());
    for ((case, mine), reference) in cases.iter().zip(&ours).zip(&theirs) {
        assert_eq!(mine, reference, "botocore {version} differs for {case}");
    }
    eprintln!(
        "{} presigned requests identical to botocore {version}'s",
        ours.len()
    );
}
