//! A fake DNS-over-HTTPS resolver for the test stack, speaking Cloudflare's JSON API:
//! `GET /dns-query?name=<n>&type=TXT` with `accept: application/dns-json` (or `ct=` in the
//! query) answers `application/dns-json` from records the tests register with
//! `POST /_records {"name": n, "txt": ["..."]}` (an empty list deletes the name). Unknown names
//! are NXDOMAIN (`Status` 3, no `Answer`). `GET /_stats` counts queries per name, so tests can
//! tell whether the edge asked at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// DNS record type numbers (RFC 1035) the resolver knows by name.
const TYPES: &[(&str, u16)] = &[
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
];
const TXT: u16 = 16;
const DNS_JSON: &str = "application/dns-json";

#[derive(Clone, Default)]
struct Shared {
    /// Lower-case name without the trailing dot → its TXT strings.
    records: Arc<Mutex<HashMap<String, Vec<String>>>>,
    queries: Arc<Mutex<HashMap<String, u64>>>,
}

pub struct DohServer {
    /// The resolver endpoint, `http://127.0.0.1:<port>/dns-query` (`DOH_RESOLVER_URL`).
    pub url: String,
    /// Where tests register records, `http://127.0.0.1:<port>/_records`.
    pub records_url: String,
    /// Queries per name so far, `http://127.0.0.1:<port>/_stats`.
    pub stats_url: String,
    task: tokio::task::JoinHandle<()>,
}

fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn record_type(t: Option<&str>) -> Option<u16> {
    match t {
        None => Some(1), // Cloudflare's default type is A.
        Some(t) => t.parse::<u16>().ok().or_else(|| {
            TYPES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(t))
                .map(|(_, v)| *v)
        }),
    }
}

/// A TXT string in presentation form, as Cloudflare's JSON API shows it: quoted, with `"` and
/// `\` escaped.
fn quoted(txt: &str) -> String {
    let mut s = String::with_capacity(txt.len() + 2);
    s.push('"');
    for c in txt.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

fn dns_json(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, DNS_JSON)], body.to_string()).into_response()
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": message }).to_string(),
    )
        .into_response()
}

async fn query(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    // Like Cloudflare: the JSON API is chosen by `accept` (or `ct=`); anything else would be
    // a wire-format query, which this fake does not speak.
    let accepts = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(DNS_JSON))
        || q.get("ct").is_some_and(|ct| ct == DNS_JSON);
    if !accepts {
        return bad_request("send accept: application/dns-json (only the JSON API is served)");
    }
    let Some(raw) = q.get("name").filter(|n| !n.trim().is_empty()) else {
        return bad_request("missing name");
    };
    let Some(rtype) = record_type(q.get("type").map(String::as_str)) else {
        return bad_request("unknown type");
    };
    let name = normalize(raw);
    if let Ok(mut m) = s.queries.lock() {
        *m.entry(name.clone()).or_default() += 1;
    }
    let txt = s.records.lock().ok().and_then(|r| r.get(&name).cloned());
    let question = json!([{ "name": raw, "type": rtype }]);
    let mut body = json!({
        "Status": if txt.is_some() { 0 } else { 3 },
        "TC": false, "RD": true, "RA": true, "AD": false, "CD": false,
        "Question": question,
    });
    if let Some(txt) = txt.filter(|_| rtype == TXT) {
        body["Answer"] = txt
            .iter()
            .map(|t| json!({ "name": raw, "type": TXT, "TTL": 60, "data": quoted(t) }))
            .collect();
    }
    dns_json(StatusCode::OK, body)
}

#[derive(Deserialize)]
struct Records {
    name: String,
    txt: Vec<String>,
}

async fn set_records(State(s): State<Shared>, Json(r): Json<Records>) -> Response {
    let name = normalize(&r.name);
    if name.is_empty() {
        return bad_request("missing name");
    }
    if let Ok(mut m) = s.records.lock() {
        if r.txt.is_empty() {
            m.remove(&name);
        } else {
            m.insert(name.clone(), r.txt.clone());
        }
    }
    Json(json!({ "name": name, "txt": r.txt })).into_response()
}

async fn stats(State(s): State<Shared>) -> Json<HashMap<String, u64>> {
    Json(s.queries.lock().map(|m| m.clone()).unwrap_or_default())
}

impl DohServer {
    pub async fn start() -> Result<Self> {
        let app = axum::Router::new()
            .route("/dns-query", get(query))
            .route("/_records", post(set_records))
            .route("/_stats", get(stats))
            .with_state(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url: format!("{base_url}/dns-query"),
            records_url: format!("{base_url}/_records"),
            stats_url: format!("{base_url}/_stats"),
            task,
        })
    }
}

impl Drop for DohServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_strings_are_quoted_like_cloudflare_shows_them() {
        assert_eq!(quoted("edgefront-verify=abc"), "\"edgefront-verify=abc\"");
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn names_and_types_normalize() {
        assert_eq!(
            normalize("_Edgefront-Challenge.Shop.Example."),
            "_edgefront-challenge.shop.example"
        );
        assert_eq!(record_type(Some("TXT")), Some(16));
        assert_eq!(record_type(Some("txt")), Some(16));
        assert_eq!(record_type(Some("16")), Some(16));
        assert_eq!(record_type(None), Some(1));
        assert_eq!(record_type(Some("BOGUS")), None);
    }

    /// A minimal HTTP/1.1 exchange (xtask has no HTTP client): status and body.
    async fn request(
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let uri: http::Uri = url.parse().unwrap();
        let authority = uri.authority().unwrap().as_str().to_owned();
        let path = uri.path_and_query().unwrap().as_str().to_owned();
        let mut s = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n{extra}content-length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn answers_registered_txt_records_and_nxdomain_otherwise() {
        let doh = DohServer::start().await.unwrap();
        let name = "_edgefront-challenge.shop.example.test";
        let q = format!("{}?name={name}&type=TXT", doh.url);
        let accept = [("accept", DNS_JSON)];
        let set = |txt: Value| {
            let body = json!({ "name": name, "txt": txt }).to_string();
            let url = doh.records_url.clone();
            async move {
                let (status, _) =
                    request("POST", &url, &[("content-type", "application/json")], &body).await;
                assert_eq!(status, 200);
            }
        };

        let (status, body) = request("GET", &q, &accept, "").await;
        assert_eq!(status, 200);
        assert_eq!(body["Status"], 3);
        assert!(body.get("Answer").is_none());

        set(json!(["one", "two"])).await;
        let (_, body) = request("GET", &q, &accept, "").await;
        assert_eq!(body["Status"], 0);
        assert_eq!(body["Question"][0]["type"], 16);
        let data: Vec<&str> = body["Answer"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["data"].as_str().unwrap())
            .collect();
        assert_eq!(data, ["\"one\"", "\"two\""]);
        // Same name in another case and with the root dot.
        let upper = format!(
            "{}?name=_EDGEFRONT-challenge.shop.example.test.&type=TXT",
            doh.url
        );
        assert_eq!(request("GET", &upper, &accept, "").await.1["Status"], 0);
        // Another type of a known name: no error, no answer.
        let a = format!("{}?name={name}&type=A", doh.url);
        assert!(request("GET", &a, &accept, "")
            .await
            .1
            .get("Answer")
            .is_none());
        // The JSON API is chosen by accept (or ct=).
        assert_eq!(request("GET", &q, &[], "").await.0, 400);
        let ct = format!("{q}&ct=application/dns-json");
        assert_eq!(request("GET", &ct, &[], "").await.0, 200);

        set(json!([])).await;
        let (_, body) = request("GET", &q, &accept, "").await;
        assert_eq!(body["Status"], 3);
        let (_, stats) = request("GET", &doh.stats_url, &[], "").await;
        assert!(stats[name].as_u64().unwrap() >= 5, "{stats}");
    }
}
