//! The secret-leak scan of `cargo xtask test`: after the black-box suites, every log line the
//! stack's services wrote (wrangler and workerd, wasmtime or Spin, the SQL proxy, Postgres) is
//! searched for the stack's own secrets and for the shapes of credentials — bearer tokens,
//! JWTs, `Authorization` and cookie header values, the visitor cookie, presigned URLs' and
//! SigV4 signatures. A hit is reported as file:line with its kind and a masked excerpt, never
//! with the secret itself.

use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The visitor cookie's name (core/src/visitor.rs).
const VISITOR_COOKIE: &str = "ef_visitor=";
/// Secrets shorter than this are not searched for (they would match by chance).
const MIN_SECRET: usize = 8;
/// Hits printed in full; the rest are counted.
const MAX_PRINTED: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// What leaked, e.g. "JWT" or "secret value (OPERATOR_TOKEN)".
    pub kind: String,
    /// The line around the hit, every hit on it masked.
    pub excerpt: String,
}

/// A hit: its byte range in the line, how many of its leading bytes name it (kept in the
/// excerpt: `Bearer `, `X-Amz-Signature=`), and its kind.
type Found = (Range<usize>, usize, String);

#[derive(Debug, Default)]
pub struct Scan {
    pub files: usize,
    pub lines: u64,
    /// (file, 1-based line, hit)
    pub hits: Vec<(PathBuf, u64, Hit)>,
    /// Files that could not be read (not counted as scanned).
    pub unreadable: Vec<(PathBuf, String)>,
}

impl Scan {
    /// Prints the hits and unreadable files (to stderr) and a one-line summary for the report.
    pub fn print_hits(&self) -> String {
        for (file, line, hit) in self.hits.iter().take(MAX_PRINTED) {
            eprintln!(
                "xtask: log secret scan: {}:{line}: {}: {}",
                file.display(),
                hit.kind,
                hit.excerpt
            );
        }
        if self.hits.len() > MAX_PRINTED {
            eprintln!(
                "xtask: log secret scan: … and {} more hits",
                self.hits.len() - MAX_PRINTED
            );
        }
        for (file, e) in &self.unreadable {
            eprintln!(
                "xtask: log secret scan: cannot read {}: {e}",
                file.display()
            );
        }
        format!(
            "log secret scan ({} files, {} lines)",
            self.files, self.lines
        )
    }
}

/// The log files of a stack in `stack_dir`: everything under `logs/`, Postgres' logs in
/// `pg/`, and the logs `spin up` keeps in `spin/`.
pub fn log_files(stack_dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    collect(&stack_dir.join("logs"), &|_| true, &mut files);
    let is_log = |p: &Path| {
        p.extension()
            .is_some_and(|e| e == "log" || e == "txt" || e == "csv")
    };
    collect(&stack_dir.join("pg"), &is_log, &mut files);
    collect(&stack_dir.join("spin"), &is_log, &mut files);
    files.sort();
    files
}

fn collect(dir: &Path, keep: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            // Postgres' data directory holds no logs of ours, only table files.
            Ok(t) if t.is_dir() && entry.file_name() != "data" => collect(&path, keep, out),
            Ok(t) if t.is_file() && keep(&path) => out.push(path),
            _ => {}
        }
    }
}

/// Scans every line of `files` for `secrets` (name, value) and credential shapes.
pub fn scan_files(files: &[PathBuf], secrets: &[(&str, String)]) -> Scan {
    let mut scan = Scan::default();
    for path in files {
        match scan_file(path, secrets, &mut scan) {
            Ok(()) => scan.files += 1,
            Err(e) => scan.unreadable.push((path.clone(), e.to_string())),
        }
    }
    scan
}

fn scan_file(path: &Path, secrets: &[(&str, String)], scan: &mut Scan) -> std::io::Result<()> {
    let mut reader = BufReader::new(std::fs::File::open(path)?);
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        n += 1;
        scan.lines += 1;
        let line = String::from_utf8_lossy(&buf);
        for hit in scan_line(line.trim_end(), secrets) {
            scan.hits.push((path.to_path_buf(), n, hit));
        }
    }
    Ok(())
}

/// The leaks in one line.
pub fn scan_line(line: &str, secrets: &[(&str, String)]) -> Vec<Hit> {
    // ASCII lowercasing keeps byte offsets.
    let lower = line.to_ascii_lowercase();
    let mut found: Vec<Found> = Vec::new();
    for (name, value) in secrets {
        if value.len() < MIN_SECRET {
            continue;
        }
        for (at, _) in line.match_indices(value.as_str()) {
            found.push((at..at + value.len(), 0, format!("secret value ({name})")));
        }
    }
    jwts(line, &mut found);
    // A presigned URL's signature, in a query or a header name.
    for (at, _) in lower.match_indices("x-amz-signature") {
        let end = value_end(line, at + "x-amz-signature".len(), is_token);
        found.push((
            at..end,
            "x-amz-signature".len(),
            "presigned URL signature".into(),
        ));
    }
    // A SigV4 signature (`Authorization: AWS4-HMAC-SHA256 …, Signature=<64 hex>`).
    for (at, _) in lower.match_indices("signature=") {
        let start = at + "signature=".len();
        let hex = run(line, start, |b| b.is_ascii_hexdigit());
        if hex >= 64 {
            found.push((
                at..start + hex,
                "signature=".len(),
                "SigV4 signature".into(),
            ));
        }
    }
    for (at, _) in lower.match_indices(VISITOR_COOKIE) {
        let start = at + VISITOR_COOKIE.len();
        let len = run(line, start, |b| {
            b.is_ascii_alphanumeric() || b"-._%".contains(&b)
        });
        if len >= MIN_SECRET {
            found.push((
                at..start + len,
                VISITOR_COOKIE.len(),
                "visitor cookie".into(),
            ));
        }
    }
    for (at, _) in lower.match_indices("bearer ") {
        let start = skip(line, at + "bearer ".len(), b" ");
        let len = run(line, start, is_token);
        let token = &line[start..start + len];
        if len >= 16 && token.bytes().any(|b| b.is_ascii_digit()) {
            found.push((at..start + len, start - at, "bearer token".into()));
        }
    }
    // Header values, as a header dump (`Authorization: …`) or JSON (`"authorization":"…"`)
    // would show them: a credential-like word in the value.
    for (header, kind) in [
        ("authorization", "Authorization header value"),
        ("cookie", "cookie header value"),
    ] {
        for (at, _) in lower.match_indices(header) {
            let mut i = at + header.len();
            i = skip(line, i, b"\"'");
            if !matches!(line.as_bytes().get(i), Some(b':' | b'=')) {
                continue;
            }
            let start = skip(line, i + 1, b" \"'");
            let end = value_end(line, start, |b| !b"\",;}\r\n".contains(&b));
            if credential_like(&line[start..end]) {
                found.push((at..end, start - at, kind.into()));
            }
        }
    }
    masked(line, found)
}

/// JWS compact serialisations: `eyJ…` `.` `…` `.` `…` (base64url; the signature may be empty).
fn jwts(line: &str, found: &mut Vec<Found>) {
    let bytes = line.as_bytes();
    for (at, _) in line.match_indices("eyJ") {
        if at > 0 && is_b64url(bytes[at - 1]) {
            continue;
        }
        let header = run(line, at, is_b64url);
        let dot1 = at + header;
        if header < 10 || bytes.get(dot1) != Some(&b'.') {
            continue;
        }
        let payload = run(line, dot1 + 1, is_b64url);
        let dot2 = dot1 + 1 + payload;
        if payload < 2 || bytes.get(dot2) != Some(&b'.') {
            continue;
        }
        let signature = run(line, dot2 + 1, is_b64url);
        found.push((at..dot2 + 1 + signature, 3, "JWT".into()));
    }
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// RFC 7235 token68 characters (and `=` padding).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)
}

/// A header value that holds a credential: a word of 8 or more token characters with a digit
/// (a prose word such as "missing" or "header" has none).
fn credential_like(value: &str) -> bool {
    value
        .split(|c: char| !c.is_ascii() || !is_token(c as u8))
        .any(|w| w.len() >= 8 && w.bytes().any(|b| b.is_ascii_digit()))
}

/// How many bytes from `start` satisfy `f`.
fn run(line: &str, start: usize, f: impl Fn(u8) -> bool) -> usize {
    line.as_bytes()
        .get(start..)
        .map_or(0, |rest| rest.iter().take_while(|&&b| f(b)).count())
}

fn skip(line: &str, start: usize, chars: &[u8]) -> usize {
    start + run(line, start, |b| chars.contains(&b))
}

/// The end of the value after a name at `start` (its `=`, `:`, quotes and spaces skipped).
fn value_end(line: &str, start: usize, f: impl Fn(u8) -> bool) -> usize {
    let value = skip(line, start, b"\"':= ");
    value + run(line, value, f)
}

/// One hit per overlapping group (the first found names it), with the line around it masked.
fn masked(line: &str, mut found: Vec<Found>) -> Vec<Hit> {
    found.sort_by_key(|(r, ..)| r.start);
    let mut kept: Vec<Found> = Vec::new();
    for f in found {
        match kept.last_mut() {
            Some(last) if f.0.start < last.0.end => last.0.end = last.0.end.max(f.0.end),
            _ => kept.push(f),
        }
    }
    // The line with every hit masked, and where each hit sits in it.
    let mut text = String::new();
    let mut spans = Vec::new();
    let mut at = 0;
    for (range, keep, _) in &kept {
        text.push_str(&line[at..range.start]);
        let start = text.len();
        text.push_str(&line[range.start..range.start + keep]);
        text.push_str("****");
        spans.push(start..text.len());
        at = range.end;
    }
    text.push_str(&line[at..]);
    kept.into_iter()
        .zip(spans)
        .map(|((_, _, kind), span)| {
            let from = floor_boundary(&text, span.start.saturating_sub(40));
            let to = floor_boundary(&text, (span.end + 20).min(text.len()));
            let pre = if from > 0 { "…" } else { "" };
            let post = if to < text.len() { "…" } else { "" };
            Hit {
                kind,
                excerpt: format!("{pre}{}{post}", &text[from..to]),
            }
        })
        .collect()
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = r#"{"ts":"2026-12-03T05:58:44.432Z","level":"info","msg":"request","request_id":"bf12a9c07d1e4f55bf12a9c07d1e4f55","runtime":"workers","method":"GET","route":"/v1/catalog","status":401,"code":"missing_token","duration_ms":73,"tenant_id":"00000000-0000-4000-8000-00000000d301","tier":"premium","user_id":null,"sql_batches":0,"cache":{"jwks":{"hits":0,"misses":0},"membership":{"hits":0,"misses":0},"tenant":{"hits":1,"misses":0}},"calls":[{"kind":"sql","method":"POST","host":"127.0.0.1:34937","status":200,"outcome":"ok","duration_ms":24}],"bytes_out":220}"#;
    const JWT: &str =
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
    const SECRET: &str = "0f1e2d3c4b5a69780f1e2d3c4b5a6978";

    fn secrets() -> Vec<(&'static str, String)> {
        vec![("OPERATOR_TOKEN", SECRET.into()), ("short", "abc".into())]
    }

    fn kinds(line: &str) -> Vec<String> {
        scan_line(line, &secrets())
            .into_iter()
            .map(|h| h.kind)
            .collect()
    }

    #[test]
    fn clean_lines_have_no_hits() {
        for line in [
            REQUEST,
            "00000000-0000-4000-8000-00000000d301",
            "bf12a9c07d1e4f55bf12a9c07d1e4f55",
            r#"2026-12-03T05:58:44Z  INFO edgefront_origin: POST /sql request_id="bf12a9c07d1e4f55" status=200 elapsed_ms=3"#,
            "[wrangler:info] GET /healthz 200 OK (3ms)",
            r#"{"level":"info","msg":"request","code":"missing_token","error":"missing bearer token in the Authorization header"}"#,
            r#"WWW-Authenticate: Bearer realm="edgefront", error="invalid_token""#,
            "a short abc value and a cookie-free line",
            "Set-Cookie: ef_visitor=; Max-Age=0",
        ] {
            assert_eq!(kinds(line), Vec::<String>::new(), "{line}");
        }
    }

    #[test]
    fn each_kind_is_found() {
        let cases = [
            (
                format!("token={SECRET} in a query"),
                "secret value (OPERATOR_TOKEN)",
            ),
            (format!(r#"{{"id_token":"{JWT}"}}"#), "JWT"),
            (
                "GET /b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab12".into(),
                "presigned URL signature",
            ),
            ("x-amz-signature".into(), "presigned URL signature"),
            (
                format!(
                    "Credential=EFDEV/20261203/us-east-1/s3/aws4_request, Signature={}",
                    "a1".repeat(32)
                ),
                "SigV4 signature",
            ),
            (
                "cookie ef_visitor=00000000-0000-4000-8000-0000000000fe.q83vEjRWeJA".into(),
                "visitor cookie",
            ),
            (
                "curl -H 'x: Bearer 9f8e7d6c5b4a39281706' …".into(),
                "bearer token",
            ),
            (
                "authorization: Basic dXNlcjpwYXNzd29yZDEyMw==".into(),
                "Authorization header value",
            ),
            (
                r#"{"headers":{"cookie":"session=s3cr3tvalue99"}}"#.into(),
                "cookie header value",
            ),
        ];
        for (line, kind) in cases {
            assert_eq!(kinds(&line), vec![kind.to_owned()], "{line}");
        }
    }

    #[test]
    fn excerpts_never_show_the_secret() {
        let line = format!(
            r#"{{"msg":"oops","authorization":"Bearer {JWT}","op":"{SECRET}","url":"/f?X-Amz-Signature={}"}}"#,
            "ab".repeat(32)
        );
        let hits = scan_line(&line, &secrets());
        let kinds: Vec<&str> = hits.iter().map(|h| h.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "Authorization header value",
                "secret value (OPERATOR_TOKEN)",
                "presigned URL signature"
            ]
        );
        for hit in &hits {
            assert!(!hit.excerpt.contains(SECRET), "{}", hit.excerpt);
            assert!(!hit.excerpt.contains("eyJhbGci"), "{}", hit.excerpt);
            assert!(!hit.excerpt.contains("abab"), "{}", hit.excerpt);
            assert!(hit.excerpt.contains("****"), "{}", hit.excerpt);
        }
        assert!(hits[2].excerpt.contains("X-Amz-Signature****"));
    }

    #[test]
    fn scans_files_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::create_dir_all(dir.path().join("pg/data")).unwrap();
        std::fs::write(logs.join("origin.log"), format!("{REQUEST}\nok\n")).unwrap();
        std::fs::write(
            logs.join("spin.log"),
            b"\xff\xfe\nsaw Bearer 0123456789abcdef01\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("pg/postgres.log"), format!("{SECRET}\n")).unwrap();
        std::fs::write(dir.path().join("pg/data/base.txt"), format!("{SECRET}\n")).unwrap();
        let files = log_files(dir.path());
        assert_eq!(files.len(), 3);
        let scan = scan_files(&files, &secrets());
        assert_eq!((scan.files, scan.lines), (3, 5));
        let hits: Vec<(String, u64, &str)> = scan
            .hits
            .iter()
            .map(|(f, n, h)| {
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                (name, *n, h.kind.as_str())
            })
            .collect();
        assert_eq!(
            hits,
            [
                ("spin.log".to_owned(), 2, "bearer token"),
                (
                    "postgres.log".to_owned(),
                    1,
                    "secret value (OPERATOR_TOKEN)"
                ),
            ]
        );
    }
}
