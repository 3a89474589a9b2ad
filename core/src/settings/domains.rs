//! Custom domains: an owner claims a hostname (`POST /v1/tenant/domains`), publishes the TXT
//! record the claim names, and asks for verification (`POST …/{hostname}/verify`): the edge
//! reads the record through DNS over HTTPS ([`crate::doh`]) and `domain_verify` decides, in
//! one SQL call, whether it proves the claim and whether another tenant holds the hostname
//! already. A verified domain routes to the tenant from the next request on: the cached
//! answers for its host (a "no such tenant" included) are forgotten. Several tenants may claim
//! one hostname; only one can hold it verified.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{tenant_doc, Domain};
use crate::config::Config;
use crate::cx::{FromPath, Json, Member, Path};
use crate::doh;
use crate::error::{ApiError, Code};
use crate::ids::hex;
use crate::input::{BodyCx, FromJson, JsonObject};
use crate::page::Page;
use crate::ports::Platform;
use crate::reply::{Cache, Reply};
use crate::sql::Statement;
use crate::tenancy::{self, Hosts};

/// The label under a hostname whose TXT record proves it: `_edgefront-challenge.<hostname>`.
pub const CHALLENGE_LABEL: &str = "_edgefront-challenge";
/// What a proof's value starts with: `edgefront-verify=<token>`.
pub const PROOF_PREFIX: &str = "edgefront-verify=";
/// Most TXT values sent to `domain_verify` (only those that look like proofs are).
const MAX_PROOFS: usize = 20;
/// Longest TXT value sent; a token is 32 characters.
const MAX_PROOF_LEN: usize = 256;

/// A custom domain's hostname, as paths and bodies name it: a lower-case DNS name of at least
/// two labels (letters, digits, `-`; internationalised names in punycode), not an IP
/// address, and short enough that its challenge name is still a DNS name (253 octets). A
/// trailing dot is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Hostname(String);

impl Hostname {
    /// Longest hostname: `_edgefront-challenge.` and it fit in 253 octets.
    pub const MAX_LEN: usize = 253 - CHALLENGE_LABEL.len() - 1;

    pub fn parse(s: &str) -> Option<Self> {
        let h = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        let label = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let valid = h.len() <= Self::MAX_LEN
            && h.split('.').count() >= 2
            && h.split('.').all(label)
            // An all-digit top-level label is an IPv4 address (or nothing DNS can name).
            && h
                .rsplit('.')
                .next()
                .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()));
        valid.then_some(Self(h))
    }

    /// Why this instance cannot give the hostname to a tenant, if it cannot: the base domain
    /// and its subdomains are the platform's to hand out, and so is the platform host.
    pub fn refusal(&self, config: &Config) -> Option<String> {
        let base = config.base_domain.as_str();
        let under_base = self
            .0
            .strip_suffix(base)
            .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'));
        if under_base {
            Some(format!(
                "must not be {base} or one of its subdomains: those are the platform's"
            ))
        } else if self.0 == config.platform.host {
            Some("must not be the platform's host".to_owned())
        } else {
            None
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name of the TXT record that proves it.
    pub fn challenge_name(&self) -> String {
        format!("{CHALLENGE_LABEL}.{}", self.0)
    }
}

impl std::fmt::Display for Hostname {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromPath for Hostname {
    const KIND: &'static str = "domain";
    fn from_path(segment: &str) -> Option<Self> {
        Self::parse(segment)
    }
}

/// `POST /v1/tenant/domains`'s body: `{hostname}`.
pub struct NewDomain(pub Hostname);

impl FromJson for NewDomain {
    fn from_json(o: &mut JsonObject, cx: &BodyCx<'_>) -> Option<Self> {
        let raw = o.string("hostname", true, 254)?;
        let Some(host) = Hostname::parse(&raw) else {
            o.error(
                "hostname",
                "invalid_value",
                format!(
                    "must be a DNS name such as shop.example.com: at least two labels of \
                     letters, digits and '-' (internationalised names in punycode), not an IP \
                     address, at most {} characters",
                    Hostname::MAX_LEN
                ),
            );
            return None;
        };
        if let Some(why) = host.refusal(cx.config) {
            o.error("hostname", "invalid_value", why);
            return None;
        }
        Some(Self(host))
    }
}

/// What `domain_add` decided.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum DomainAdd {
    Created { domain: Domain },
    Exists { domain: Domain },
    Taken,
}

impl crate::outcome::Outcome for DomainAdd {}

/// What `domain_verify` decided.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum DomainVerify {
    Verified { domain: Domain, hosts: Hosts },
    AlreadyVerified { domain: Domain },
    NotFound,
    Mismatch { domain: Domain },
    Taken,
}

impl crate::outcome::Outcome for DomainVerify {}

/// What `domain_delete` decided.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum DomainDelete {
    Deleted { hosts_before: Hosts },
    NotFound,
}

impl crate::outcome::Outcome for DomainDelete {}

fn taken(host: &Hostname) -> ApiError {
    ApiError::new(
        Code::DomainTaken,
        format!("{host} is verified by another tenant."),
    )
}

/// 422 `domain_not_verified`, naming the record to publish (also as `verification`).
fn not_verified(domain: &Domain) -> ApiError {
    let detail = match domain
        .verification
        .as_ref()
        .and_then(|v| Some((v, v.value.as_ref()?)))
    {
        Some((v, value)) => format!(
            "No {} record named {} has the value {} yet. Publish it with your DNS provider, \
             then retry: changes can take a few minutes to be seen.",
            v.kind, v.name, value
        ),
        None => format!("{} could not be verified.", domain.hostname),
    };
    let mut m = Map::new();
    m.insert(
        "verification".into(),
        serde_json::to_value(&domain.verification).unwrap_or(Value::Null),
    );
    ApiError::new(Code::DomainNotVerified, detail).with_members(m)
}

/// A path's hostname this instance could never give a tenant names no domain here: 404
/// before any lookup.
fn served_here<P>(cx: &Member<'_, P>, host: &Hostname) -> Result<(), ApiError> {
    match host.refusal(cx.env.config) {
        Some(_) => Err(ApiError::not_found(Hostname::KIND)),
        None => Ok(()),
    }
}

/// The TXT values worth sending to `domain_verify`: those that look like proofs (surrounding
/// whitespace dropped), none holding a NUL (Postgres text cannot), a bounded number of them.
fn proofs(records: Vec<String>) -> Vec<String> {
    records
        .into_iter()
        .map(|r| r.trim().to_owned())
        .filter(|r| r.starts_with(PROOF_PREFIX) && r.len() <= MAX_PROOF_LEN && !r.contains('\0'))
        .take(MAX_PROOFS)
        .collect()
}

/// `GET /v1/tenant/domains`: every domain of the tenant, claimed or verified.
pub async fn domains<P: Platform>(cx: Member<'_, P>) -> Result<Reply, ApiError> {
    let tenant = tenant_doc(&cx).await?;
    let page = Page {
        items: tenant.domains,
        next_cursor: None,
    };
    Ok(Reply::ok(&page).cache(Cache::Private))
}

/// `POST /v1/tenant/domains` `{hostname}` (owners): claims the hostname with a fresh
/// verification token → 201 with the record to publish; 200 when the tenant has it already.
pub async fn add_domain<P: Platform>(
    cx: Member<'_, P>,
    Json(NewDomain(host)): Json<NewDomain>,
) -> Result<Reply, ApiError> {
    let mut token = [0u8; 16];
    cx.env.platform.fill(&mut token)?;
    let outcome: DomainAdd = cx
        .db
        .outcome(Statement::new(
            "SELECT public.domain_add($1, $2)",
            vec![Some(host.to_string()), Some(hex(&token))],
        ))
        .await?;
    match outcome {
        DomainAdd::Created { domain } => {
            let location = format!("/v1/tenant/domains/{host}");
            Ok(Reply::created(&location, &domain).cache(Cache::Private))
        }
        DomainAdd::Exists { domain } => Ok(Reply::ok(&domain).cache(Cache::Private)),
        DomainAdd::Taken => Err(taken(&host)),
    }
}

/// `POST /v1/tenant/domains/{hostname}/verify` (owners): reads the challenge's TXT records,
/// then lets `domain_verify` compare them with the claim's token.
pub async fn verify_domain<P: Platform>(
    cx: Member<'_, P>,
    Path(host): Path<Hostname>,
) -> Result<Reply, ApiError> {
    served_here(&cx, &host)?;
    let records = doh::txt(
        cx.env.platform,
        &cx.env.config.platform,
        &host.challenge_name(),
    )
    .await?;
    let outcome: DomainVerify = cx
        .db
        .outcome(Statement::new(
            "SELECT public.domain_verify($1, \
             ARRAY(SELECT jsonb_array_elements_text($2::jsonb)))",
            vec![
                Some(host.to_string()),
                Some(Value::from(proofs(records)).to_string()),
            ],
        ))
        .await?;
    match outcome {
        DomainVerify::Verified { domain, mut hosts } => {
            // The new host's cached "no such tenant" must go, whatever `hosts` lists.
            if !hosts.domains.iter().any(|d| d == host.as_str()) {
                hosts.domains.push(host.to_string());
            }
            tenancy::invalidate(cx.env.platform, &hosts).await;
            Ok(Reply::ok(&domain).cache(Cache::Private))
        }
        DomainVerify::AlreadyVerified { domain } => Ok(Reply::ok(&domain).cache(Cache::Private)),
        DomainVerify::NotFound => Err(ApiError::not_found(Hostname::KIND)),
        DomainVerify::Mismatch { domain } => Err(not_verified(&domain)),
        DomainVerify::Taken => Err(taken(&host)),
    }
}

/// `DELETE /v1/tenant/domains/{hostname}` (owners) → 204; the hostname stops routing here at
/// once.
pub async fn remove_domain<P: Platform>(
    cx: Member<'_, P>,
    Path(host): Path<Hostname>,
) -> Result<Reply, ApiError> {
    served_here(&cx, &host)?;
    let outcome: DomainDelete = cx
        .db
        .outcome(Statement::new(
            "SELECT public.domain_delete($1)",
            vec![Some(host.to_string())],
        ))
        .await?;
    match outcome {
        DomainDelete::Deleted { hosts_before } => {
            tenancy::invalidate(cx.env.platform, &hosts_before).await;
            Ok(Reply::no_content())
        }
        DomainDelete::NotFound => Err(ApiError::not_found(Hostname::KIND)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    use bytes::Bytes;
    use futures_executor::block_on;
    use http::{Method, Request, Response};
    use serde_json::json;

    use crate::ports::OutboundError;
    use crate::testing::{sql_answer, statement, Instance, TENANT};

    const HOST: &str = "shop.example.com";
    const TOKEN: &str = "07070707070707070707070707070707";

    fn is_resolver(req: &Request<Bytes>) -> bool {
        req.uri().host() == Some("cloudflare-dns.com")
    }

    fn dns(txt: &[&str]) -> Response<Bytes> {
        let answer: Vec<Value> = txt
            .iter()
            .map(|t| {
                json!({"name": format!("_edgefront-challenge.{HOST}."), "type": 16, "TTL": 60,
                            "data": format!("\"{t}\"")})
            })
            .collect();
        Response::new(Bytes::from(
            json!({"Status": 0, "Answer": answer}).to_string(),
        ))
    }

    fn config() -> Config {
        Instance::new(&[], Box::new(|_| unreachable!())).config
    }

    #[test]
    fn hostnames_are_dns_names_this_instance_can_give_away() {
        for (raw, want) in [
            ("shop.example.com", "shop.example.com"),
            ("Shop.Example.COM.", "shop.example.com"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("a.b", "a.b"),
            ("1.example", "1.example"),
        ] {
            assert_eq!(Hostname::parse(raw).unwrap().as_str(), want, "{raw}");
        }
        let longest = format!("{}shop", "a.".repeat(114));
        assert_eq!(longest.len(), Hostname::MAX_LEN);
        assert!(Hostname::parse(&longest).is_some());
        for bad in [
            "",
            "localhost",
            "example",
            "1.2.3.4",
            "10.0.0.1.",
            "[::1]",
            "::1",
            "a..b",
            ".a.b",
            "-a.example",
            "a-.example",
            "a_b.example",
            "bücher.example",
            "shop.example.com:443",
            "shop.example.com/x",
            "*.example.com",
            &format!("{}.com", "a".repeat(64)),
            &format!("x{longest}"),
        ] {
            assert_eq!(Hostname::parse(bad), None, "{bad}");
        }
        // The dev base domain is `localhost`; the platform host is `admin.localhost`.
        let c = config();
        for platform_owned in ["demo.localhost", "a.b.localhost"] {
            assert!(Hostname::parse(platform_owned)
                .unwrap()
                .refusal(&c)
                .is_some());
        }
        assert!(Hostname::parse("notlocalhost.example")
            .unwrap()
            .refusal(&c)
            .is_none());
        assert!(Hostname::parse("evil-localhost.example")
            .unwrap()
            .refusal(&c)
            .is_none());
        assert_eq!(
            Hostname::parse(HOST).unwrap().challenge_name(),
            "_edgefront-challenge.shop.example.com"
        );
    }

    #[test]
    fn platform_hosts_are_refused_even_outside_the_base_domain() {
        let i = Instance::new(
            &[("PLATFORM_HOST", "admin.example.net")],
            Box::new(|_| unreachable!()),
        );
        let h = Hostname::parse("admin.example.net").unwrap();
        assert_eq!(
            h.refusal(&i.config).as_deref(),
            Some("must not be the platform's host")
        );
    }

    fn add(i: &Instance, body: &str) -> Result<Response<Bytes>, ApiError> {
        let req = request(Method::POST, "/v1/tenant/domains", Some(body));
        call(add_domain::<P>, parts(i, None, req))
    }

    #[test]
    fn a_claim_gets_a_random_token_and_201_with_its_location() {
        let i = instance(Box::new(|req| {
            let s = statement(req);
            assert_eq!(s["query"], "SELECT public.domain_add($1, $2)");
            assert_eq!(s["params"], json!([HOST, TOKEN]));
            Ok(sql_answer(
                &json!({"outcome": "created", "domain": domain_doc(HOST, false)}),
            ))
        }));
        let resp = add(&i, r#"{"hostname":"Shop.Example.com."}"#).unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(
            resp.headers()["location"],
            "/v1/tenant/domains/shop.example.com"
        );
        assert_eq!(resp.headers()["cache-control"], "private, no-store");
        let body = json_body(&resp);
        assert_eq!(body["status"], "pending");
        assert_eq!(body["verification"]["type"], "TXT");
        assert_eq!(i.platform.count(Some("/sql")), 1);
    }

    #[test]
    fn claiming_again_is_200_and_a_hostname_verified_elsewhere_is_409() {
        let i = instance(Box::new(|_| {
            Ok(sql_answer(
                &json!({"outcome": "exists", "domain": domain_doc(HOST, true)}),
            ))
        }));
        let resp = add(&i, r#"{"hostname":"shop.example.com"}"#).unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(json_body(&resp)["status"], "verified");
        let i = instance(Box::new(|_| Ok(sql_answer(&json!({"outcome": "taken"})))));
        let e = add(&i, r#"{"hostname":"shop.example.com"}"#).unwrap_err();
        assert_eq!(e.code(), Code::DomainTaken);
        assert_eq!(e.status(), 409);
    }

    #[test]
    fn bad_hostnames_are_400_and_send_nothing() {
        let i = instance(Box::new(|_| panic!("nothing may be sent")));
        for body in [
            r#"{"hostname":"localhost"}"#,
            r#"{"hostname":"192.168.1.1"}"#,
            r#"{"hostname":"demo.localhost"}"#,
            r#"{"hostname":"admin.localhost"}"#,
            r#"{"hostname":"a b.example"}"#,
            r#"{"hostname":7}"#,
            r#"{}"#,
            r#"{"hostname":"shop.example.com","verified":true}"#,
        ] {
            let e = add(&i, body).unwrap_err();
            assert_eq!(e.code(), Code::ValidationFailed, "{body}");
        }
        assert!(i.platform.sent.borrow().is_empty());
    }

    #[test]
    fn domains_are_listed_from_the_tenant_document() {
        let i = instance(Box::new(|_| Ok(sql_answer(&tenant_json(3)))));
        let req = request(Method::GET, "/v1/tenant/domains", None);
        let resp = call(domains::<P>, parts(&i, None, req)).unwrap();
        let body = json_body(&resp);
        assert_eq!(body["items"].as_array().unwrap().len(), 2);
        assert_eq!(body["items"][0]["hostname"], "shop.example.com");
        assert_eq!(body["next_cursor"], Value::Null);
        assert_eq!(resp.headers()["cache-control"], "private, no-store");
    }

    fn verify(i: &Instance, host: &str) -> Result<Response<Bytes>, ApiError> {
        let req = request(
            Method::POST,
            &format!("/v1/tenant/domains/{host}/verify"),
            None,
        );
        call(verify_domain::<P>, parts(i, Some(host), req))
    }

    /// The proxy's answer to a single (not batched) query: `rows`, one `json` document each.
    fn rows(docs: &[Value]) -> Response<Bytes> {
        let rows: Vec<Value> = docs.iter().map(|d| json!([d])).collect();
        Response::new(Bytes::from(
            json!({"command": "SELECT", "rowCount": rows.len(),
                   "fields": [{"name": "row_to_json", "dataTypeID": 114}], "rows": rows})
            .to_string(),
        ))
    }

    #[test]
    fn a_published_proof_verifies_and_the_domain_routes_at_once() {
        let verified = Rc::new(Cell::new(false));
        let v = verified.clone();
        let i = instance(Box::new(move |req| {
            if is_resolver(req) {
                assert_eq!(
                    req.uri().query(),
                    Some("name=_edgefront-challenge.shop.example.com&type=TXT")
                );
                assert_eq!(req.headers()["accept"], "application/dns-json");
                return Ok(dns(&[
                    "v=spf1 -all",
                    &format!("  edgefront-verify={TOKEN} "),
                    "edgefront-verify=stale",
                ]));
            }
            let body: Value = serde_json::from_slice(req.body()).unwrap();
            if body.get("queries").is_none() {
                // The edge looking the host up (tenancy::lookup_host).
                return Ok(if v.get() {
                    rows(&[json!({"id": TENANT, "slug": "demo", "name": "Demo",
                                  "tier": "premium", "status": "active", "settings": {}})])
                } else {
                    rows(&[])
                });
            }
            let s = statement(req);
            assert_eq!(s["params"][0], HOST);
            let sent: Vec<String> = serde_json::from_str(s["params"][1].as_str().unwrap()).unwrap();
            // Only proof-shaped values, trimmed, travel to SQL.
            assert_eq!(
                sent,
                vec![
                    format!("edgefront-verify={TOKEN}"),
                    "edgefront-verify=stale".into()
                ]
            );
            assert!(s["query"].as_str().unwrap().contains(
                "public.domain_verify($1, ARRAY(SELECT jsonb_array_elements_text($2::jsonb)))"
            ));
            v.set(true);
            Ok(sql_answer(
                &json!({"outcome": "verified", "domain": domain_doc(HOST, true),
                "hosts": {"slug": "demo", "domains": [HOST]}}),
            ))
        }));
        let lookup = || block_on(tenancy::lookup_host(&i.platform, &i.config, HOST)).unwrap();
        // Before: no tenant at this host, and that answer is cached.
        assert!(lookup().is_none());
        assert!(lookup().is_none());
        assert_eq!(i.platform.count(Some("/sql")), 1);
        let resp = verify(&i, HOST).unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(json_body(&resp)["status"], "verified");
        // One lookup of DNS, one SQL call.
        assert_eq!(i.platform.count(Some("/dns-query")), 1);
        assert_eq!(i.platform.count(Some("/sql")), 2);
        // After: the cached "no such tenant" is gone; the host routes to the tenant.
        assert_eq!(lookup().unwrap().slug.as_str(), "demo");
    }

    #[test]
    fn the_verified_host_is_forgotten_even_when_hosts_omits_it() {
        let i = instance(Box::new(|req| {
            if is_resolver(req) {
                return Ok(dns(&[&format!("edgefront-verify={TOKEN}")]));
            }
            Ok(sql_answer(
                &json!({"outcome": "verified", "domain": domain_doc(HOST, true),
                "hosts": {"slug": "demo", "domains": []}}),
            ))
        }));
        i.platform.kv_insert(
            &format!("tenant:v2:domain:{HOST}"),
            Bytes::from_static(b"{\"tenant\":null}"),
        );
        i.platform.kv_insert(
            "tenant:v2:slug:demo",
            Bytes::from_static(b"{\"tenant\":null}"),
        );
        assert_eq!(verify(&i, HOST).unwrap().status(), 200);
        assert!(i
            .platform
            .kv_get(&format!("tenant:v2:domain:{HOST}"))
            .is_none());
        assert!(i.platform.kv_get("tenant:v2:slug:demo").is_none());
    }

    #[test]
    fn a_missing_proof_is_422_naming_the_record_to_publish() {
        let i = instance(Box::new(|req| {
            if is_resolver(req) {
                // NXDOMAIN: nothing published yet.
                return Ok(Response::new(Bytes::from_static(br#"{"Status":3}"#)));
            }
            assert_eq!(statement(req)["params"][1], "[]");
            Ok(sql_answer(
                &json!({"outcome": "mismatch", "domain": domain_doc(HOST, false)}),
            ))
        }));
        let e = verify(&i, HOST).unwrap_err();
        assert_eq!(e.code(), Code::DomainNotVerified);
        assert_eq!(e.status(), 422);
        assert!(e.detail().contains("_edgefront-challenge.shop.example.com"));
        assert!(e.detail().contains("edgefront-verify="));
        assert_eq!(
            e.to_problem("/")["verification"]["name"],
            "_edgefront-challenge.shop.example.com"
        );
    }

    #[test]
    fn verify_outcomes_map_to_statuses() {
        for (outcome, status) in [
            (
                json!({"outcome": "already_verified", "domain": domain_doc(HOST, true)}),
                Ok(200),
            ),
            (json!({"outcome": "not_found"}), Err(Code::NotFound)),
            (json!({"outcome": "taken"}), Err(Code::DomainTaken)),
        ] {
            let o = outcome.clone();
            let i = instance(Box::new(move |req| {
                if is_resolver(req) {
                    return Ok(dns(&[]));
                }
                Ok(sql_answer(&o))
            }));
            i.platform.kv_insert(
                "tenant:v2:slug:demo",
                Bytes::from_static(b"{\"tenant\":null}"),
            );
            let got = verify(&i, HOST)
                .map(|r| r.status().as_u16())
                .map_err(|e| e.code());
            assert_eq!(got, status, "{outcome}");
            // Only a new verification changes routing.
            assert!(i.platform.kv_get("tenant:v2:slug:demo").is_some());
        }
    }

    #[test]
    fn resolver_failures_are_gateway_errors_and_reach_no_sql() {
        let i = instance(Box::new(|req| {
            assert!(is_resolver(req), "no SQL without an answer from DNS");
            Err(OutboundError::Timeout(Duration::ZERO))
        }));
        let e = verify(&i, HOST).unwrap_err();
        assert_eq!(e.code(), Code::UpstreamTimeout);
        assert_eq!(e.status(), 504);
        let i = instance(Box::new(|req| {
            assert!(is_resolver(req), "no SQL without an answer from DNS");
            Ok(Response::builder()
                .status(503)
                .body(Bytes::from_static(b"resolver internals"))
                .unwrap())
        }));
        let e = verify(&i, HOST).unwrap_err();
        assert_eq!(e.status(), 502);
        assert!(!e.detail().contains("internals"), "{}", e.detail());
        let i = instance(Box::new(|req| {
            assert!(is_resolver(req), "no SQL without an answer from DNS");
            Ok(Response::new(Bytes::from_static(br#"{"Status":2}"#)))
        }));
        assert_eq!(verify(&i, HOST).unwrap_err().status(), 502);
    }

    #[test]
    fn paths_that_name_no_possible_domain_are_404_without_lookups() {
        let i = instance(Box::new(|_| panic!("nothing may be sent")));
        for host in [
            "localhost",
            "1.2.3.4",
            "demo.localhost",
            "admin.localhost",
            "a..b",
        ] {
            let e = verify(&i, host).unwrap_err();
            assert_eq!(e.code(), Code::NotFound, "{host}");
            let req = request(Method::DELETE, &format!("/v1/tenant/domains/{host}"), None);
            let e = call(remove_domain::<P>, parts(&i, Some(host), req)).unwrap_err();
            assert_eq!(e.code(), Code::NotFound, "{host}");
        }
    }

    fn remove(i: &Instance, host: &str) -> Result<Response<Bytes>, ApiError> {
        let req = request(Method::DELETE, &format!("/v1/tenant/domains/{host}"), None);
        call(remove_domain::<P>, parts(i, Some(host), req))
    }

    #[test]
    fn removing_a_domain_is_204_and_forgets_the_hosts_it_had() {
        let i = instance(Box::new(|req| {
            let s = statement(req);
            assert_eq!(s["query"], "SELECT public.domain_delete($1)");
            assert_eq!(s["params"], json!([HOST]));
            Ok(sql_answer(&json!({"outcome": "deleted",
                "hosts_before": {"slug": "demo", "domains": [HOST, "other.example.org"]}})))
        }));
        for key in [
            format!("tenant:v2:domain:{HOST}"),
            "tenant:v2:domain:other.example.org".into(),
            "tenant:v2:slug:demo".into(),
        ] {
            i.platform
                .kv_insert(&key, Bytes::from_static(b"{\"tenant\":null}"));
        }
        let resp = remove(&i, "SHOP.example.com").unwrap();
        assert_eq!(resp.status(), 204);
        assert!(resp.body().is_empty());
        assert!(i
            .platform
            .kv_get(&format!("tenant:v2:domain:{HOST}"))
            .is_none());
        assert!(i
            .platform
            .kv_get("tenant:v2:domain:other.example.org")
            .is_none());
        assert!(i.platform.kv_get("tenant:v2:slug:demo").is_none());
        let i = instance(Box::new(|_| {
            Ok(sql_answer(&json!({"outcome": "not_found"})))
        }));
        assert_eq!(remove(&i, HOST).unwrap_err().code(), Code::NotFound);
    }

    #[test]
    fn only_proof_shaped_txt_values_are_sent() {
        let nul = format!("{PROOF_PREFIX}a\0b");
        let long = format!("{PROOF_PREFIX}{}", "x".repeat(MAX_PROOF_LEN));
        let many: Vec<String> = (0..30).map(|n| format!("{PROOF_PREFIX}{n}")).collect();
        assert_eq!(
            proofs(vec![
                "google-site-verification=x".into(),
                nul,
                long,
                format!("\t{PROOF_PREFIX}ok\n"),
            ]),
            vec![format!("{PROOF_PREFIX}ok")]
        );
        assert_eq!(proofs(many).len(), MAX_PROOFS);
    }
}
