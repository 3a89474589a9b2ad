//! Which tenant a request is for, from its Host: `{slug}.{BASE_DOMAIN}` or a custom domain in
//! `tenant_domains`. Records come from the SQL proxy and are cached in the key-value port
//! (negative answers too), so a hot tenant costs no origin round trip.

use std::borrow::Cow;
use std::fmt;
use std::rc::Rc;

use bytes::Bytes;
use http::{header, HeaderMap, Uri};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Config;
use crate::error::ApiError;
use crate::obs::Cache;
use crate::ports::Platform;
use crate::sql;

/// A tenant's subdomain label: `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
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

/// Serialized as its text, without the copy `#[serde(into = "String")]` would make.
impl Serialize for Slug {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub use crate::ids::TenantId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Suspended,
    Deleted,
}

/// A tenant as the edge caches it (and as `resolve_tenant_by_*` return it, one JSON row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: Slug,
    pub name: String,
    pub tier: String,
    pub status: TenantStatus,
    #[serde(default)]
    pub settings: TenantSettings,
    /// The tenant's verified custom domains (lower-case hostnames): with `{slug}.{BASE_DOMAIN}`
    /// its own browser origins, decided from this record ([`crate::cors`]) rather than by a
    /// lookup per `Origin`. Every change to them invalidates the cached record ([`invalidate`]).
    /// A record cached before this member existed reads as none until it expires.
    #[serde(default)]
    pub domains: Vec<String>,
}

impl Tenant {
    /// Whether `host` (a normalised host name) is one this tenant answers on: its subdomain of
    /// `base_domain` or one of its verified custom domains. Decided from the record alone.
    pub fn owns_host(&self, host: &str, base_domain: &str) -> bool {
        let own_subdomain = host
            .strip_suffix(base_domain)
            .and_then(|p| p.strip_suffix('.'))
            .is_some_and(|label| label == self.slug.as_str());
        own_subdomain || self.domains.iter().any(|d| d.eq_ignore_ascii_case(host))
    }
}

/// The members of `tenants.settings` the edge reads, typed. Settings are tenant-editable
/// JSON, so a member of the wrong shape reads as absent rather than failing the tenant; members
/// the edge does not know are kept (and cached) as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TenantSettings {
    /// Default currency of new items (ISO 4217).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Browser origins allowed besides the tenant's own hosts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cors_origins: Vec<String>,
    /// Shown by the storefront profile as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branding: Option<serde_json::Map<String, Value>>,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub description: Value,
    pub ai: AiSettings,
    pub limits: Limits,
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// `settings.ai`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AiSettings {
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub system_prompt: Option<String>,
    /// `"local"` answers from the catalog even when a provider is configured.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub responder: Option<String>,
}

/// `settings.limits`: per-tenant overrides of the tier's limits (enforced in SQL).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ai_monthly_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor_messages_per_hour: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor_tenant_messages_per_hour: Option<i64>,
    /// Storefront visits one visitor may record per hour (default 60).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visits_per_visitor_per_hour: Option<i64>,
    /// Chat turns anonymous visitors may start per hour from one client IP, whatever their
    /// cookies (default 30).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor_messages_per_ip_per_hour: Option<i64>,
    /// AI tokens the tenant's anonymous visitors together may spend per month, inside the
    /// tenant's own quota (default a fifth of it), so visitors cannot starve the team.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor_monthly_tokens: Option<i64>,
    /// Chat turns the tenant's anonymous visitors together may start per month (default
    /// unlimited: the token budget applies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor_monthly_turns: Option<i64>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// Reads `T`, or its default when the value has another shape.
fn lenient<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    Ok(lenient_value(Value::deserialize(d)?))
}

fn lenient_value<T: serde::de::DeserializeOwned + Default>(v: Value) -> T {
    serde_json::from_value(v).unwrap_or_default()
}

/// Takes the member `key` out of `members`, read leniently.
fn take<T: serde::de::DeserializeOwned + Default>(
    members: &mut serde_json::Map<String, Value>,
    key: &str,
) -> T {
    members.remove(key).map(lenient_value).unwrap_or_default()
}

// Settings keep the members they do not know. They are read as one JSON object, then the known
// members are taken out of it: serde's `#[serde(flatten)]` would buffer the object into its
// private `Content` tree first, and the Worker would carry a second deserializer for every
// type inside (the tenant is read on every request, from the memory tier).

impl<'de> Deserialize<'de> for TenantSettings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut other = serde_json::Map::deserialize(d)?;
        Ok(Self {
            currency: take(&mut other, "currency"),
            cors_origins: take(&mut other, "cors_origins"),
            branding: take(&mut other, "branding"),
            description: other.remove("description").unwrap_or(Value::Null),
            ai: take(&mut other, "ai"),
            limits: take(&mut other, "limits"),
            other,
        })
    }
}

impl<'de> Deserialize<'de> for Limits {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut other = serde_json::Map::deserialize(d)?;
        Ok(Self {
            ai_monthly_tokens: take(&mut other, "ai_monthly_tokens"),
            visitor_messages_per_hour: take(&mut other, "visitor_messages_per_hour"),
            visitor_tenant_messages_per_hour: take(&mut other, "visitor_tenant_messages_per_hour"),
            visits_per_visitor_per_hour: take(&mut other, "visits_per_visitor_per_hour"),
            visitor_messages_per_ip_per_hour: take(&mut other, "visitor_messages_per_ip_per_hour"),
            visitor_monthly_tokens: take(&mut other, "visitor_monthly_tokens"),
            visitor_monthly_turns: take(&mut other, "visitor_monthly_turns"),
            other,
        })
    }
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
pub fn request_host<'h>(
    headers: &'h HeaderMap,
    uri: &'h Uri,
    trust_forwarded: bool,
) -> Option<Cow<'h, str>> {
    let forwarded = trust_forwarded
        .then(|| headers.get(crate::request_headers::X_FORWARDED_HOST))
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
    let host = host.trim_end_matches('.');
    if !is_host_name(host.as_bytes()) {
        return None;
    }
    // Lower-cased only when it is not already (a copy only then).
    Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// A DNS name of letters, digits and hyphens: at most 253 bytes, labels of 1 to 63 that
/// neither start nor end with a hyphen. One pass over the bytes.
fn is_host_name(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let (mut label, mut last) = (0usize, b'.');
    for &b in name {
        if b == b'.' {
            if label == 0 || last == b'-' {
                return false;
            }
            label = 0;
        } else {
            let starts_with_hyphen = label == 0 && b == b'-';
            if !(b.is_ascii_alphanumeric() || b == b'-') || starts_with_hyphen || label == 63 {
                return false;
            }
            label += 1;
        }
        last = b;
    }
    label > 0 && last != b'-'
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
        Some(label) if label.contains('.') => Err(ApiError::invalid_host(format!(
            "{host} is more than one label below {base_domain}"
        ))),
        Some(label) if reserved.iter().any(|r| r == label) => {
            Ok(HostTarget::Reserved(label.to_owned()))
        }
        Some(label) => Slug::parse(label)
            .map(HostTarget::Subdomain)
            .ok_or_else(|| ApiError::invalid_host(format!("{label:?} is not a valid tenant name"))),
        None => Ok(HostTarget::Custom(host.to_owned())),
    }
}

/// Resolves the request's tenant from its host ([`request_host`]), refusing unknown,
/// reserved, suspended and deleted ones.
pub async fn resolve<P: Platform>(
    platform: &P,
    config: &Config,
    host: Option<&str>,
) -> Result<Rc<Tenant>, ApiError> {
    let host =
        host.ok_or_else(|| ApiError::invalid_host("the Host header is missing or malformed"))?;
    let tenant = lookup_host(platform, config, host)
        .await?
        .ok_or_else(|| ApiError::tenant_not_found(host))?;
    match tenant.status {
        TenantStatus::Active => Ok(tenant),
        TenantStatus::Suspended => Err(ApiError::tenant_suspended(tenant.slug.as_str())),
        TenantStatus::Deleted => Err(ApiError::tenant_deleted(tenant.slug.as_str())),
    }
}

/// The tenant a (normalised) host name belongs to, whatever its status; `None` for no tenant.
/// Reserved names are an error, as for requests.
pub async fn lookup_host<P: Platform>(
    platform: &P,
    config: &Config,
    host: &str,
) -> Result<Option<Rc<Tenant>>, ApiError> {
    match classify(host, &config.base_domain, &config.tenancy.reserved)? {
        HostTarget::Reserved(name) => Err(ApiError::reserved_host(&name)),
        HostTarget::Subdomain(slug) => lookup(platform, config, "slug", slug.as_str()).await,
        HostTarget::Custom(host) => lookup(platform, config, "domain", &host).await,
    }
}

/// Cached record: `Some(tenant)`, or `None` for "no such tenant" (negative caching).
#[derive(Serialize, Deserialize)]
struct Cached {
    tenant: Option<Tenant>,
}

/// Slots for negative answers. Anyone can send any Host, so "no tenant here" answers are
/// cached in a fixed number of slots (each remembering which host it is for) instead of one
/// key per host: the store never holds more than this many of them.
pub const NEGATIVE_SLOTS: u64 = 1024;

/// A negative answer, in its slot.
#[derive(Serialize, Deserialize)]
struct Miss {
    key: String,
}

fn negative_slot(cache_key: &str) -> String {
    // FNV-1a: stable across instances and runtimes, which a slot name must be.
    let h = cache_key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("tenant:v2:miss:{}", h % NEGATIVE_SLOTS)
}

/// Every host a tenant answers on, as the SQL functions that change a tenant report them
/// (`{"slug": …, "domains": [verified hostnames]}`): the cache entries to forget.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Hosts {
    pub slug: Slug,
    #[serde(default)]
    pub domains: Vec<String>,
}

/// Forgets the cached record (and any cached "no such tenant") of every host in `hosts`, so a
/// change to the tenant (status, tier, settings, domains) applies from the next request on,
/// and a new tenant's subdomain works at once.
pub async fn invalidate<P: Platform>(platform: &P, hosts: &Hosts) {
    let mut keys = vec![format!("tenant:v2:slug:{}", hosts.slug)];
    keys.extend(
        hosts
            .domains
            .iter()
            .map(|d| format!("tenant:v2:domain:{d}")),
    );
    for key in keys {
        let _ = platform.delete(&negative_slot(&key)).await;
        let _ = platform.delete(&key).await;
    }
}

/// A cached record as [`lookup`] shares it.
fn decode_cached(bytes: &[u8]) -> Option<Option<Rc<Tenant>>> {
    serde_json::from_slice::<Cached>(bytes)
        .ok()
        .map(|c| c.tenant.map(Rc::new))
}

async fn lookup<P: Platform>(
    platform: &P,
    config: &Config,
    by: &'static str,
    key: &str,
) -> Result<Option<Rc<Tenant>>, ApiError> {
    let cache_key = ["tenant:v2:", by, ":", key].concat();
    // A cache that fails is a miss, never an outage. The record is decoded once per instance
    // and cached value, not on every request (`get_decoded`).
    if let Ok(Some(cached)) = platform.get_decoded(&cache_key, decode_cached).await {
        crate::ports::note(platform, |t| t.note_cache(Cache::Tenant, true));
        return Ok(Option::clone(&cached));
    }
    crate::ports::cold(look_up(platform, config, by, key, cache_key)).await
}

/// A host the memory tier and the store did not have as a tenant: the negative slot, then the
/// database, then both caches.
async fn look_up<P: Platform>(
    platform: &P,
    config: &Config,
    by: &'static str,
    key: &str,
    cache_key: String,
) -> Result<Option<Rc<Tenant>>, ApiError> {
    let slot = negative_slot(&cache_key);
    if let Ok(Some(bytes)) = platform.get(&slot).await {
        if serde_json::from_slice::<Miss>(&bytes).is_ok_and(|m| m.key == cache_key) {
            crate::ports::note(platform, |t| t.note_cache(Cache::Tenant, true));
            return Ok(None);
        }
    }
    crate::ports::note(platform, |t| t.note_cache(Cache::Tenant, false));
    let query = match by {
        "slug" => "SELECT row_to_json(t) FROM resolve_tenant_by_slug($1) t",
        _ => "SELECT row_to_json(t) FROM resolve_tenant_by_domain($1) t",
    };
    let tenant = sql::query(platform, &config.origin, query, &[Some(key.to_owned())])
        .await
        .and_then(|r| r.docs::<Tenant>())
        .map_err(|e| {
            let why = format!("tenant lookup failed: {e}");
            ApiError::from(e).logged(why)
        })?
        .pop();
    let written = match &tenant {
        Some(t) => serde_json::to_vec(&Cached {
            tenant: Some(t.clone()),
        })
        .map(|b| (cache_key, b, config.tenancy.cache_ttl)),
        None => serde_json::to_vec(&Miss { key: cache_key })
            .map(|b| (slot, b, config.tenancy.negative_cache_ttl)),
    };
    if let Ok((k, bytes, ttl)) = written {
        let _ = platform.put(&k, Bytes::from(bytes), ttl).await;
    }
    Ok(tenant.map(Rc::new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    use crate::config::DEFAULT_RESERVED;

    fn reserved() -> Vec<String> {
        DEFAULT_RESERVED.iter().map(|s| s.to_string()).collect()
    }

    fn host(h: &str, xfh: Option<&str>, trust: bool) -> Option<String> {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, HeaderValue::from_str(h).unwrap());
        if let Some(x) = xfh {
            m.insert("x-forwarded-host", HeaderValue::from_str(x).unwrap());
        }
        request_host(&m, &Uri::from_static("/"), trust).map(Cow::into_owned)
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
        // DNS labels: 1 to 63 letters, digits and hyphens, no hyphen at either end.
        let long = "a".repeat(63);
        assert_eq!(
            host(&format!("{long}.example.com"), None, false).unwrap(),
            format!("{long}.example.com")
        );
        for bad in [
            format!("a{long}.example.com"),
            "-acme.example.com".to_owned(),
            "acme-.example.com".to_owned(),
            "acme.-x.com".to_owned(),
            ".acme.com".to_owned(),
            "ac_me.example.com".to_owned(),
            "caf\u{e9}.example.com".to_owned(),
            format!("{}.com", ["a"; 126].join(".")),
            ".".to_owned(),
            String::new(),
        ] {
            assert!(host(&bad, None, false).is_none(), "{bad}");
        }
        assert_eq!(
            host("a-b.x-1.localhost", None, false).unwrap(),
            "a-b.x-1.localhost"
        );
        assert_eq!(
            host(&format!("{}.co", ["a"; 125].join(".")), None, false)
                .unwrap()
                .len(),
            252
        );
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
    fn rows_parse_into_tenants_with_typed_settings() {
        let row = r#"{"id":"00000000-0000-4000-8000-00000000d301","slug":"demo","name":"Demo",
            "tier":"premium","status":"suspended",
            "settings":{"currency":"USD","cors_origins":"not a list","limits":{"ai_monthly_tokens":5,
                        "visitor_monthly_turns":"many","rate":{"chat":3}},"ai":[1],"description":7,
                        "theme":"dark"}}"#;
        let t: Tenant = serde_json::from_str(row).unwrap();
        assert_eq!(t.status, TenantStatus::Suspended);
        assert_eq!(t.settings.currency.as_deref(), Some("USD"));
        // A member of the wrong shape reads as absent; unknown members are kept.
        assert!(t.settings.cors_origins.is_empty());
        assert_eq!(t.settings.limits.ai_monthly_tokens, Some(5));
        assert_eq!(t.settings.other["theme"], "dark");
        assert_eq!(t.settings.limits.visitor_monthly_turns, None);
        assert_eq!(t.settings.limits.other["rate"]["chat"], 3);
        assert_eq!(t.settings.ai, AiSettings::default());
        assert_eq!(t.settings.description, 7);
        let known = ["currency", "cors_origins", "limits", "ai", "description"];
        assert!(known.iter().all(|k| !t.settings.other.contains_key(*k)));
        let cached: Tenant = serde_json::from_slice(&serde_json::to_vec(&t).unwrap()).unwrap();
        assert_eq!(cached, t);
        // A row that is not a tenant is an error, not a tenant.
        assert!(
            serde_json::from_str::<Tenant>(&row.replace("\"demo\"", "\"Not A Slug\"")).is_err()
        );
    }

    #[test]
    fn negative_answers_share_a_bounded_set_of_slots() {
        let slots: std::collections::HashSet<String> = (0..20_000)
            .map(|i| negative_slot(&format!("tenant:v2:domain:h{i}.example")))
            .collect();
        assert_eq!(slots.len() as u64, NEGATIVE_SLOTS);
        assert_eq!(
            negative_slot("tenant:v2:slug:acme"),
            negative_slot("tenant:v2:slug:acme")
        );
    }

    #[test]
    fn a_failing_lookup_is_a_problem_without_the_database_text() {
        use crate::testing::Instance;
        use futures_executor::block_on;
        let i = Instance::new(
            &[],
            Box::new(|_| {
                Ok(http::Response::builder()
                    .status(400)
                    .body(Bytes::from_static(
                        br#"{"message":"relation \"tenants\" does not exist","code":"42P01"}"#,
                    ))
                    .unwrap())
            }),
        );
        let e = block_on(lookup_host(&i.platform, &i.config, "demo.localhost")).unwrap_err();
        assert_eq!(e.status(), 502);
        assert_eq!(e.detail(), "The database did not answer as expected.");
        assert!(e.log().is_some_and(|l| l.contains("tenant lookup failed")
            && l.contains("relation \"tenants\" does not exist")));
        let body = String::from_utf8_lossy(e.into_response("/v1/storefront").body()).into_owned();
        assert!(!body.contains("relation"), "{body}");
    }

    #[test]
    fn a_tenant_owns_its_subdomain_and_its_verified_domains_only() {
        let mut t = crate::testing::tenant(crate::testing::TENANT, "basic");
        t.domains = vec!["shop.demo.test".into()];
        assert!(t.owns_host("demo.example.com", "example.com"));
        assert!(t.owns_host("shop.demo.test", "example.com"));
        for not in [
            "example.com",
            "xdemo.example.com",
            "a.demo.example.com",
            "demo.example.com.evil",
            "demoexample.com",
            "other.demo.test",
        ] {
            assert!(!t.owns_host(not, "example.com"), "{not}");
        }
        // The record as resolve_tenant_by_* return it.
        let row = r#"{"id":"00000000-0000-4000-8000-00000000d301","slug":"demo","name":"Demo",
            "tier":"basic","status":"active","settings":{},"domains":["shop.demo.test"]}"#;
        let parsed: Tenant = serde_json::from_str(row).unwrap();
        assert_eq!(parsed.domains, ["shop.demo.test"]);
    }
}
