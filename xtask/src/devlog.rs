//! `cargo xtask dev`'s request log: follows the edge runtime's log files in the stack's logs
//! directory (`wrangler-*.log`, where wrangler writes the worker's console output, and
//! `spin.log`, the component's stdout) and prints one readable line per request, or the raw
//! JSON lines with `--json`. New lines only; a file that appears later (wrangler starts a new
//! timestamped file when it restarts) is read from its start.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The longest line kept while waiting for its newline; the rest of a longer one is skipped.
const MAX_LINE: usize = 1 << 20;
/// At most this much of one file per poll, so a burst never stalls the dev loop.
const MAX_READ: u64 = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One readable line per request; status colours when `color`.
    Pretty { color: bool },
    /// The edge's JSON lines as they are.
    Json,
}

/// Whether a file in the logs directory is the runtime's own output.
pub fn is_runtime_log(name: &str) -> bool {
    name == "spin.log" || (name.starts_with("wrangler-") && name.ends_with(".log"))
}

/// Splits one file's bytes into complete lines across reads: an incomplete trailing line waits
/// for its newline; invalid UTF-8 is replaced, never fatal.
#[derive(Debug, Default)]
pub struct LineBuf {
    partial: Vec<u8>,
    /// Inside a line longer than [`MAX_LINE`]: dropped up to its newline.
    skipping: bool,
}

impl LineBuf {
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            if !self.skipping {
                self.partial.extend_from_slice(&chunk[..i]);
                let line = String::from_utf8_lossy(&self.partial);
                lines.push(line.trim_end_matches('\r').to_owned());
            }
            self.partial.clear();
            self.skipping = false;
            chunk = &chunk[i + 1..];
        }
        if !self.skipping {
            self.partial.extend_from_slice(chunk);
            if self.partial.len() > MAX_LINE {
                self.partial.clear();
                self.skipping = true;
            }
        }
        lines
    }
}

#[derive(Debug, Default)]
struct Tracked {
    offset: u64,
    lines: LineBuf,
}

/// Follows the runtime's log files in one directory.
pub struct Follower {
    dir: PathBuf,
    files: HashMap<PathBuf, Tracked>,
    tenants: HashMap<String, String>,
    mode: Mode,
}

impl Follower {
    /// `tenants` is the stack description's list (`[{slug, id}, …]`). Files already in `dir`
    /// are followed from their current end.
    pub fn new(dir: &Path, tenants: &Value, mode: Mode) -> Self {
        let tenants = tenants
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| Some((t["id"].as_str()?.to_owned(), t["slug"].as_str()?.to_owned())))
            .collect();
        let mut follower = Self {
            dir: dir.to_path_buf(),
            files: HashMap::new(),
            tenants,
            mode,
        };
        for path in follower.runtime_logs() {
            let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            follower.files.insert(
                path,
                Tracked {
                    offset,
                    ..Tracked::default()
                },
            );
        }
        follower
    }

    fn runtime_logs(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(is_runtime_log))
            .map(|e| e.path())
            .collect();
        paths.sort();
        paths
    }

    /// The lines to print for everything written since the last poll.
    pub fn poll(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for path in self.runtime_logs() {
            let tracked = self.files.entry(path.clone()).or_default();
            let Ok(lines) = read_new(&path, tracked) else {
                continue;
            };
            out.extend(
                lines
                    .iter()
                    .filter_map(|l| render(l, &self.tenants, self.mode)),
            );
        }
        out
    }
}

/// Reads what was appended to `path` since `tracked.offset`; a shorter file starts over.
fn read_new(path: &Path, tracked: &mut Tracked) -> std::io::Result<Vec<String>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len < tracked.offset {
        *tracked = Tracked::default();
    }
    if len == tracked.offset {
        return Ok(Vec::new());
    }
    f.seek(SeekFrom::Start(tracked.offset))?;
    let mut buf = Vec::new();
    f.take((len - tracked.offset).min(MAX_READ))
        .read_to_end(&mut buf)?;
    tracked.offset += buf.len() as u64;
    Ok(tracked.lines.push(&buf))
}

/// The edge's log record in a line (a host may prefix it), if the line holds one.
fn record(line: &str) -> Option<(&str, Value)> {
    let json = line[line.find('{')?..].trim_end();
    let v: Value = serde_json::from_str(json).ok()?;
    let is_record = v["ts"].is_string() && v["level"].is_string() && v["msg"].is_string();
    is_record.then_some((json, v))
}

/// What to print for one line of the runtime's output; None for anything else.
pub fn render(line: &str, tenants: &HashMap<String, String>, mode: Mode) -> Option<String> {
    let (json, v) = record(line)?;
    match mode {
        Mode::Json => Some(json.to_owned()),
        Mode::Pretty { color } => pretty(&v, tenants, color),
    }
}

fn pretty(v: &Value, tenants: &HashMap<String, String>, color: bool) -> Option<String> {
    let text = |key: &str| v[key].as_str().map(clean);
    let time = v["ts"]
        .as_str()
        .and_then(|ts| ts.get(11..19))
        .unwrap_or("--:--:--");
    let tenant = match v["tenant_id"].as_str() {
        Some(id) => tenants
            .get(id)
            .cloned()
            .unwrap_or_else(|| clean(id).chars().take(8).collect()),
        None => "-".into(),
    };
    let rid: String = text("request_id")
        .unwrap_or_else(|| "-".into())
        .chars()
        .take(8)
        .collect();
    let route = text("route").unwrap_or_else(|| "-".into());
    let code = text("code");
    let msg = text("msg").unwrap_or_default();
    match text("level").as_deref() {
        _ if msg == "request" => {
            let method = text("method").unwrap_or_else(|| "-".into());
            let status = v["status"].as_u64().unwrap_or(0);
            let shade = match status {
                200..=299 => "32",
                400..=499 => "33",
                500..=599 => "31",
                _ => "",
            };
            let status = paint(&status.to_string(), shade, color);
            let ms = v["duration_ms"].as_f64().unwrap_or(0.0);
            let sql = v["sql_batches"].as_u64().unwrap_or(0);
            // An answer the instance kept (core's `answers`): served without its batch.
            let kept = if v["cache"]["answer"]["hits"].as_u64().unwrap_or(0) > 0 {
                " (kept)"
            } else {
                ""
            };
            let code = code.map(|c| format!("  {c}")).unwrap_or_default();
            Some(format!(
                "{time} {tenant:<6} {method:<4} {route}  {status}  {ms:.0} ms  sql {sql}{kept}{code}  [{rid}]"
            ))
        }
        Some(level @ ("error" | "warn")) => {
            let label = if level == "error" {
                paint("ERROR", "31", color)
            } else {
                paint("WARN", "33", color)
            };
            let what = if msg == "upstream error" {
                match code {
                    Some(code) => format!("{route} {code}"),
                    None => route,
                }
            } else {
                msg
            };
            let error = text("error").unwrap_or_default();
            Some(format!(
                "{time} {tenant:<6} {label} {what}: {error}  [{rid}]"
            ))
        }
        _ => None,
    }
}

fn paint(s: &str, shade: &str, color: bool) -> String {
    if color && !shade.is_empty() {
        format!("\x1b[{shade}m{s}\x1b[0m")
    } else {
        s.to_owned()
    }
}

/// Control characters (an upstream's words could hold terminal escapes) shown as `?`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const REQUEST: &str = r#"{"ts":"2026-12-03T05:58:44.432Z","level":"info","msg":"request","request_id":"bf12a9c07d1e4f55","runtime":"workers","method":"GET","route":"/v1/catalog","status":401,"code":"missing_token","duration_ms":73,"tenant_id":"00000000-0000-4000-8000-00000000d301","tier":"premium","user_id":null,"sql_batches":0,"cache":{"jwks":{"hits":0,"misses":0},"membership":{"hits":0,"misses":0},"tenant":{"hits":1,"misses":0}},"calls":[{"kind":"sql","method":"POST","host":"127.0.0.1:34937","status":200,"outcome":"ok","duration_ms":24}],"bytes_out":220}"#;

    fn tenants() -> HashMap<String, String> {
        let list = json!([{"slug": "demo", "id": "00000000-0000-4000-8000-00000000d301"}]);
        Follower::new(Path::new("/nonexistent"), &list, Mode::Json).tenants
    }

    const PLAIN: Mode = Mode::Pretty { color: false };

    #[test]
    fn request_line() {
        assert_eq!(
            render(REQUEST, &tenants(), PLAIN).as_deref(),
            Some("05:58:44 demo   GET  /v1/catalog  401  73 ms  sql 0  missing_token  [bf12a9c0]")
        );
        let ok = REQUEST
            .replace(
                r#""status":401,"code":"missing_token""#,
                r#""status":200,"code":null"#,
            )
            .replace(r#""sql_batches":0"#, r#""sql_batches":1"#);
        assert_eq!(
            render(&ok, &tenants(), PLAIN).as_deref(),
            Some("05:58:44 demo   GET  /v1/catalog  200  73 ms  sql 1  [bf12a9c0]")
        );
        let kept = ok.replace(
            r#""cache":{"#,
            r#""cache":{"answer":{"hits":1,"misses":0},"#,
        );
        assert_eq!(
            render(&kept, &tenants(), PLAIN).as_deref(),
            Some("05:58:44 demo   GET  /v1/catalog  200  73 ms  sql 1 (kept)  [bf12a9c0]")
        );
        let coloured = render(REQUEST, &tenants(), Mode::Pretty { color: true });
        assert!(coloured.is_some_and(|l| l.contains("\x1b[33m401\x1b[0m")));
        // A host's prefix before the record.
        let prefixed = format!("stdout [0] :: {REQUEST}");
        assert_eq!(
            render(&prefixed, &tenants(), PLAIN),
            render(REQUEST, &tenants(), PLAIN)
        );
    }

    #[test]
    fn json_mode_prints_the_record() {
        assert_eq!(
            render(&format!("{REQUEST}\r"), &tenants(), Mode::Json).as_deref(),
            Some(REQUEST)
        );
    }

    #[test]
    fn null_route_and_tenant() {
        let line = r#"{"ts":"2026-12-03T06:12:01.000Z","level":"info","msg":"request","request_id":"7f3a9c1e00","method":"POST","route":null,"status":404,"code":"not_found","duration_ms":1.6,"tenant_id":null,"tier":null,"user_id":null,"sql_batches":0,"bytes_out":null}"#;
        assert_eq!(
            render(line, &tenants(), PLAIN).as_deref(),
            Some("06:12:01 -      POST -  404  2 ms  sql 0  not_found  [7f3a9c1e]")
        );
        // A tenant that is not in the description: the start of its id.
        let other = line.replace(
            r#""tenant_id":null"#,
            r#""tenant_id":"9d2e4c1a-0000-4000-8000-000000000001""#,
        );
        assert!(render(&other, &tenants(), PLAIN).is_some_and(|l| l.contains(" 9d2e4c1a POST ")));
    }

    #[test]
    fn error_lines() {
        let line = r#"{"ts":"2026-12-03T05:58:44.500Z","level":"error","msg":"upstream error","request_id":"bf12a9c07d1e4f55","method":"GET","route":"/v1/catalog/{id}","code":"upstream_unavailable","tenant_id":"00000000-0000-4000-8000-00000000d301","error":"connection refused\u001b[2J"}"#;
        assert_eq!(
            render(line, &tenants(), PLAIN).as_deref(),
            Some("05:58:44 demo   ERROR /v1/catalog/{id} upstream_unavailable: connection refused?[2J  [bf12a9c0]")
        );
        let trace = r#"{"ts":"2026-12-03T05:58:45.000Z","level":"error","msg":"trace export failed","request_id":"bf12a9c07d1e4f55","error":"timeout"}"#;
        assert_eq!(
            render(trace, &tenants(), PLAIN).as_deref(),
            Some("05:58:45 -      ERROR trace export failed: timeout  [bf12a9c0]")
        );
    }

    #[test]
    fn other_lines_are_ignored() {
        for line in [
            "",
            "[wrangler:info] Ready on http://127.0.0.1:8899",
            "[wrangler:info] GET /healthz 200 OK (3ms) {\"not\": \"a record\"}",
            "{ not json",
            r#"{"level":"debug","msg":"x","ts":"2026-12-03T05:58:45.000Z"}"#,
        ] {
            assert_eq!(render(line, &tenants(), PLAIN), None, "{line}");
        }
    }

    #[test]
    fn partial_lines_wait_for_their_newline() {
        let mut buf = LineBuf::default();
        let (a, b) = REQUEST.as_bytes().split_at(100);
        assert!(buf.push(b"[wrangler:info] ready\n").len() == 1);
        assert!(buf.push(a).is_empty());
        let mut second = b.to_vec();
        second.extend_from_slice(b"\n{\"ts\"");
        assert_eq!(buf.push(&second), vec![REQUEST.to_owned()]);
        assert_eq!(buf.push(b":1}\n"), vec!["{\"ts\":1}".to_owned()]);
    }

    #[test]
    fn invalid_utf8_and_split_characters() {
        let mut buf = LineBuf::default();
        let text = "{\"error\":\"caf\u{e9}\"}\n".as_bytes();
        // Split inside the two-byte é.
        let cut = text.iter().position(|&b| b == 0xc3).map(|i| i + 1);
        let (a, b) = text.split_at(cut.unwrap_or(1));
        assert!(buf.push(a).is_empty());
        assert_eq!(buf.push(b), vec!["{\"error\":\"caf\u{e9}\"}".to_owned()]);
        assert_eq!(
            buf.push(b"\xff\xfe ok\n"),
            vec!["\u{fffd}\u{fffd} ok".to_owned()]
        );
    }

    #[test]
    fn overlong_lines_are_skipped_to_their_end() {
        let mut buf = LineBuf::default();
        assert!(buf.push(&vec![b'x'; MAX_LINE + 1]).is_empty());
        assert!(buf.push(b"more of it").is_empty());
        assert_eq!(buf.push(b"\nnext\n"), vec!["next".to_owned()]);
    }

    #[test]
    fn follows_new_and_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("wrangler-2026-12-03_05-00-00_001.log");
        std::fs::write(&old, format!("{REQUEST}\n")).unwrap();
        std::fs::write(dir.path().join("origin.log"), format!("{REQUEST}\n")).unwrap();
        let mut f = Follower::new(dir.path(), &json!([]), Mode::Json);
        assert!(
            f.poll().is_empty(),
            "lines from before the start are not shown"
        );
        let mut file = std::fs::OpenOptions::new().append(true).open(&old).unwrap();
        std::io::Write::write_all(&mut file, &REQUEST.as_bytes()[..50]).unwrap();
        assert!(f.poll().is_empty());
        std::io::Write::write_all(&mut file, &REQUEST.as_bytes()[50..]).unwrap();
        std::io::Write::write_all(&mut file, b"\n").unwrap();
        assert_eq!(f.poll(), vec![REQUEST.to_owned()]);
        // wrangler restarted: a new file, read from its start.
        let new = dir.path().join("wrangler-2026-12-03_05-10-00_002.log");
        std::fs::write(&new, format!("[wrangler:info] Ready\n{REQUEST}\n")).unwrap();
        std::fs::write(dir.path().join("spin.log"), format!("{REQUEST}\n")).unwrap();
        assert_eq!(f.poll().len(), 2);
        assert!(f.poll().is_empty());
    }
}
