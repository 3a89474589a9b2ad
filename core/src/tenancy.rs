//! Which tenant a request is for, from its Host: `{slug}.{BASE_DOMAIN}` or a custom domain in
//! `tenant_domains`. Records come from the SQL proxy and are cached in the key-value port
//! (negative answers too), so a hot tenant costs no origin round trip.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, Uri};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Config;
use crate::error::ApiError;
use crate::ports::Platform;
use crate::sql;

/// A tenant's subdomain label: `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let ok_inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
        let ok_edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let valid = (1..=63).contains(&b.len())
            && b.first().is_some_and(ok_edge)
            && b.last().is_some_and(ok_edge)
            && b.iter().all(ok_inner);
        valid.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Slug {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Slug::parse(&s).ok_or_else(|| format!("invalid slug {s:?}"))
    }
}

impl From<Slug> for String {
    fn from(s: Slug) -> String {
        s.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant id: a UUID in canonical lower-case hyphenated form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.to_ascii_lowercase();
        let b = s.as_bytes();
        let valid = b.len() == 36
            && b.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            });
        valid.then_some(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        TenantId::parse(&s).ok_or_else(|| format!("invalid tenant id {s:?}"))
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Suspended,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: Slug,
    pub name: String,
    pub tier: String,
    pub status: TenantStatus,
    pub settings: Value,
}

/// What a Host names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTarget {
    /// `{slug}.{base}`: a tenant subdomain.
    Subdomain(Slug),
    /// Any other hostname: looked up in `tenant_domains`.
    Custom(String),
    /// A reserved label (www, api, …) or the bare base domain: never a tenant.
    Reserved(String),
}

/// Extracts the request's host name (port stripped, lower-cased). The URI authority covers
/// HTTP/2 `:authority`; `X-Forwarded-Host` only when configured, because anyone can send it.
pub fn request_host(headers: &HeaderMap, uri: &Uri, trust_forwarded: bool) -> Option<String> {
    let forwarded = trust_forwarded
        .then(|| headers.get("x-forwarded-host"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next());
    let raw = forwarded
        .or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()))
        .or_else(|| uri.authority().map(|a| a.as_str()))?
        .trim();
    // Strip the port; reject IPv6 literals and userinfo outright (no tenant lives there).
    if raw.starts_with('[') || raw.contains('@') {
        return None;
    }
    let host = match raw.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        Some(_) => return None,
        None => raw,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    valid.then_some(host)
}

/// Classifies a host name against the base domain and the reserved labels.
pub fn classify(
    host: &str,
    base_domain: &str,
    reserved: &[String],
) -> Result<HostTarget, ApiError> {
    if host == base_domain {
        return Ok(HostTarget::Reserved(host.to_owned()));
    }
    match host
        .strip_suffix(base_domain)
        .and_then(|p| p.strip_suffix('.'))
    {
        Some(label) if label.contains('.') => Err(ApiError::InvalidHost(format!(
            "{host} is more than one label below {base_domain}"
        ))),
        Some(label) if reserved.iter().any(|r| r == label) => {
            Ok(HostTarget::Reserved(label.to_owned()))
        }
        Some(label) => Slug::parse(label)
            .map(HostTarget::Subdomain)
            .ok_or_else(|| ApiError::InvalidHost(format!("{label:?} is not a valid tenant name"))),
        None => Ok(HostTarget::Custom(host.to_owned())),
    }
}

/// Resolves the request's tenant, refusing unknown, reserved, suspended and deleted ones.
pub async fn resolve<P: Platform>(
    platform: &P,
    config: &Config,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Tenant, ApiError> {
    let host = request_host(headers, uri, config.tenancy.trust_forwarded_host)
        .ok_or_else(|| ApiError::InvalidHost("the Host header is missing or malformed".into()))?;
    let tenant = lookup_host(platform, config, &host)
        .await?
        .ok_or(ApiError::TenantNotFound(host))?;
    match tenant.status {
        TenantStatus::Active => Ok(tenant),
        TenantStatus::Suspended => Err(ApiError::TenantSuspended(tenant.slug.to_string())),
        TenantStatus::Deleted => Err(ApiError::TenantDeleted(tenant.slug.to_string())),
    }
}

/// The tenant a (normalised) host name belongs to, whatever its status; `None` for no tenant.
/// Reserved names are an error, as for requests.
pub async fn lookup_host<P: Platform>(
    platform: &P,
    config: &Config,
    host: &str,
) -> Result<Option<Tenant>, ApiError> {
    match classify(host, &config.base_domain, &config.tenancy.reserved)? {
        HostTarget::Reserved(name) => Err(ApiError::ReservedHost(name)),
        HostTarget::Subdomain(slug) => lookup(platform, config, "slug", slug.as_str()).await,
        HostTarget::Custom(host) => lookup(platform, config, "domain", &host).await,
    }
}

/// Cached record: `Some(tenant)`, or `None` for "no such tenant" (negative caching).
#[derive(Serialize, Deserialize)]
struct Cached {
    tenant: Option<Tenant>,
}

async fn lookup<P: Platform>(
    platform: &P,
    config: &Config,
    by: &'static str,
    key: &str,
) -> Result<Option<Tenant>, ApiError> {
    let cache_key = format!("tenant:v1:{by}:{key}");
    // A cache that fails is a miss, never an outage.
    if let Ok(Some(bytes)) = platform.get(&cache_key).await {
        if let Ok(c) = serde_json::from_slice::<Cached>(&bytes) {
            return Ok(c.tenant);
        }
    }
    let query = match by {
        "slug" => "SELECT id, slug, name, tier, status, settings FROM resolve_tenant_by_slug($1)",
        _ => "SELECT id, slug, name, tier, status, settings FROM resolve_tenant_by_domain($1)",
    };
    let result = sql::query(platform, &config.origin, query, &[Some(key.to_owned())])
        .await
        .map_err(|e| ApiError::Upstream(format!("tenant lookup failed: {e}")))?;
    let tenant =
        match result.rows.first() {
            None => None,
            Some(row) => Some(parse_row(row).ok_or_else(|| {
                ApiError::Upstream("tenant lookup returned a malformed row".into())
            })?),
        };
    let ttl = if tenant.is_some() {
        config.tenancy.cache_ttl
    } else {
        config.tenancy.negative_cache_ttl
    };
    if let Ok(bytes) = serde_json::to_vec(&Cached {
        tenant: tenant.clone(),
    }) {
        let _ = platform.put(&cache_key, Bytes::from(bytes), ttl).await;
    }
    Ok(tenant)
}

fn parse_row(row: &[Option<String>]) -> Option<Tenant> {
    let col = |i: usize| row.get(i).and_then(|v| v.as_deref());
    Some(Tenant {
        id: TenantId::parse(col(0)?)?,
        slug: Slug::parse(col(1)?)?,
        name: col(2)?.to_owned(),
        tier: col(3)?.to_owned(),
        status: serde_json::from_value(Value::String(col(4)?.to_owned())).ok()?,
        settings: serde_json::from_str(col(5)?).ok()?,
    })
}

/// Defaults for the reserved labels: infrastructure names that must never become tenants.
pub const DEFAULT_RESERVED: &[&str] = &[
    "www",
    "api",
    "admin",
    "app",
    "auth",
    "static",
    "cdn",
    "mail",
    "status",
    "docs",
    "help",
    "support",
    "billing",
    "dashboard",
    "login",
    "signup",
    "assets",
    "media",
    "img",
    "blog",
    "dev",
    "staging",
    "internal",
    "smtp",
    "ftp",
    "ns1",
    "ns2",
];

/// Tenancy settings.
#[derive(Debug, Clone)]
pub struct TenancyConfig {
    pub reserved: Vec<String>,
    pub trust_forwarded_host: bool,
    pub cache_ttl: Duration,
    pub negative_cache_ttl: Duration,
    /// Browser origins allowed on every tenant besides the tenant's own (`CORS_ALLOWED_ORIGINS`).
    pub cors_origins: Vec<String>,
    /// `max-age` of public storefront responses (`STOREFRONT_CACHE_SECONDS`).
    pub storefront_max_age: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn reserved() -> Vec<String> {
        DEFAULT_RESERVED.iter().map(|s| s.to_string()).collect()
    }

    fn host(h: &str, xfh: Option<&str>, trust: bool) -> Option<String> {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, HeaderValue::from_str(h).unwrap());
        if let Some(x) = xfh {
            m.insert("x-forwarded-host", HeaderValue::from_str(x).unwrap());
        }
        request_host(&m, &Uri::from_static("/"), trust)
    }

    #[test]
    fn slugs_follow_the_dns_label_rule() {
        for ok in ["a", "acme", "a-b", "0", "x1-2-y", &"a".repeat(63)] {
            assert!(Slug::parse(ok).is_some(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "é", &"a".repeat(64)] {
            assert!(Slug::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn tenant_ids_are_canonical_uuids() {
        assert_eq!(
            TenantId::parse("00000000-0000-4000-8000-00000000AC3E")
                .unwrap()
                .as_str(),
            "00000000-0000-4000-8000-00000000ac3e"
        );
        for bad in [
            "",
            "not-a-uuid",
            "00000000000040008000000000000000",
            "00000000-0000-4000-8000-00000000ac3",
        ] {
            assert!(TenantId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(
            host("Acme.Example.com:8787", None, false).unwrap(),
            "acme.example.com"
        );
        assert_eq!(
            host("acme.example.com.", None, false).unwrap(),
            "acme.example.com"
        );
        assert!(host("acme.example.com:80x", None, false).is_none());
        assert!(host("[::1]:80", None, false).is_none());
        assert!(host("a..b", None, false).is_none());
        assert!(host("evil.com/x", None, false).is_none());
    }

    #[test]
    fn forwarded_host_is_ignored_unless_trusted() {
        assert_eq!(
            host("acme.localhost", Some("demo.localhost"), false).unwrap(),
            "acme.localhost"
        );
        assert_eq!(
            host("acme.localhost", Some("demo.localhost, x"), true).unwrap(),
            "demo.localhost"
        );
    }

    #[test]
    fn hosts_classify_into_subdomains_custom_domains_and_reserved_names() {
        let r = reserved();
        assert_eq!(
            classify("acme.example.com", "example.com", &r).unwrap(),
            HostTarget::Subdomain(Slug::parse("acme").unwrap())
        );
        assert_eq!(
            classify("shop.acme.org", "example.com", &r).unwrap(),
            HostTarget::Custom("shop.acme.org".into())
        );
        assert_eq!(
            classify("www.example.com", "example.com", &r).unwrap(),
            HostTarget::Reserved("www".into())
        );
        assert_eq!(
            classify("example.com", "example.com", &r).unwrap(),
            HostTarget::Reserved("example.com".into())
        );
        assert!(classify("a.b.example.com", "example.com", &r).is_err());
        // A suffix match must be on a label boundary.
        assert_eq!(
            classify("evilexample.com", "example.com", &r).unwrap(),
            HostTarget::Custom("evilexample.com".into())
        );
        assert_eq!(
            classify("demo.localhost", "localhost", &r).unwrap(),
            HostTarget::Subdomain(Slug::parse("demo").unwrap())
        );
    }

    #[test]
    fn rows_parse_from_text_output() {
        let row: Vec<Option<String>> = [
            "00000000-0000-4000-8000-00000000d301",
            "demo",
            "Demo",
            "premium",
            "suspended",
            r#"{"currency": "USD"}"#,
        ]
        .iter()
        .map(|s| Some(s.to_string()))
        .collect();
        let t = parse_row(&row).unwrap();
        assert_eq!(t.status, TenantStatus::Suspended);
        assert_eq!(t.settings["currency"], "USD");
        assert!(parse_row(&row[..5]).is_none());
    }
}
