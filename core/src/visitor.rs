//! Anonymous storefront visitors (chat, visits, checkout, their own orders): a random id in an
//! HttpOnly cookie, signed with HMAC-SHA256 over the tenant and the id, so a cookie is worthless
//! on another tenant and cannot be forged. [`Visitor`] and [`KnownVisitor`] are extractors, so
//! the cookie is checked before the body.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use base64ct::{Base64UrlUnpadded, Encoding};
use hmac::{Hmac, Mac};
use http::{header, HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

use crate::config::ConfigError;
use crate::cx::{Extract, FromPath, RequestParts};
use crate::error::ApiError;
use crate::ids::{is_uuid, Uuid};
use crate::ports::Platform;
use crate::tenancy::{request_host, Tenant};

const COOKIE: &str = "ef_visitor";
const COOKIE_MAX_AGE: u64 = 60 * 60 * 24 * 365;

type HmacSha256 = Hmac<Sha256>;

fn visitor_mac(secret: &[u8], tenant: &Tenant, visitor: &str) -> Option<String> {
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(tenant.id.as_str().as_bytes());
    mac.update(b":");
    mac.update(visitor.as_bytes());
    Some(Base64UrlUnpadded::encode_string(
        mac.finalize().into_bytes().get(..16)?,
    ))
}

/// The visitor named by a valid cookie for this tenant. Cookies are bound to the tenant, so one
/// tenant's cookie means nothing on another.
pub fn visitor_from_cookie(secret: &[u8], tenant: &Tenant, headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())?;
    let (id, mac) = value.split_once('.')?;
    if !is_uuid(id) {
        return None;
    }
    let want = visitor_mac(secret, tenant, id)?;
    // Constant-time comparison.
    let same = want.len() == mac.len()
        && want
            .bytes()
            .zip(mac.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    same.then(|| id.to_owned())
}

/// The client a request comes from, as a key that limits can count without storing the address:
/// the IP in the configured trusted header (`CLIENT_IP_HEADER`), HMAC-SHA256'd with the cookie
/// secret over the tenant, so the key means nothing outside this tenant and cannot be reversed
/// by trying the 2^32 IPv4 addresses. IPv6 clients are keyed by their /64 (one subscriber's
/// usual allocation, so rotating addresses inside it gains nothing). `None` without the header
/// or with a value that is not an IP address (Spin: wasi:http has no peer address, so only the
/// header applies).
pub fn client_key(
    secret: &[u8],
    tenant: &Tenant,
    headers: &HeaderMap,
    header: Option<&HeaderName>,
) -> Option<String> {
    let canonical = client_address(headers, header)?;
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(b"client-ip:");
    mac.update(tenant.id.as_str().as_bytes());
    mac.update(b":");
    mac.update(canonical.as_bytes());
    Some(Base64UrlUnpadded::encode_string(
        mac.finalize().into_bytes().get(..16)?,
    ))
}

/// The client's address from the configured trusted header, canonical: an IPv4 address, or an
/// IPv6 client's /64. `None` without the header or with a value that is not an IP address.
pub fn client_address<'h>(
    headers: &'h HeaderMap,
    header: Option<&HeaderName>,
) -> Option<Cow<'h, str>> {
    let raw = headers.get(header?)?.to_str().ok()?;
    // A proxy that appends (`client, proxy1, …`): the first is the client.
    let first = raw.split(',').next()?.trim();
    // The usual case, an IPv4 address, is canonical as sent when it parses (std refuses
    // leading zeros): kept as is instead of being written out again.
    if first.parse::<Ipv4Addr>().is_ok() {
        return Some(Cow::Borrowed(first));
    }
    let ip: IpAddr = first
        .parse()
        .or_else(|_| first.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()?;
    Some(Cow::Owned(match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
        }
    }))
}

/// The visitor of a storefront request: from their cookie, or a new one with the `Set-Cookie` to
/// send. Without a cookie secret there are no visitors at all (500 naming the setting).
pub struct Visitor {
    pub id: String,
    /// Set for a new visitor.
    pub set_cookie: Option<HeaderValue>,
    /// The client's key ([`client_key`]), for limits per client IP as well as per cookie (a
    /// visitor who drops their cookie is a new visitor, but not a new client).
    pub client: Option<String>,
}

impl<'a, P: Platform> Extract<'a, P> for Visitor {
    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError> {
        let tenant = parts.tenant()?;
        let config = parts.env.config;
        let secret = config.chat.visitor_secret.as_ref().ok_or_else(|| {
            ApiError::from(ConfigError {
                setting: "VISITOR_COOKIE_SECRET",
                problem: "is not set, so anonymous visitors cannot chat".into(),
            })
        })?;
        let secret = secret.expose().as_bytes();
        let headers = &parts.head.headers;
        let client = client_key(
            secret,
            &tenant,
            headers,
            config.chat.client_ip_header.as_ref(),
        );
        if let Some(id) = visitor_from_cookie(secret, &tenant, headers) {
            return Ok(Self {
                id,
                set_cookie: None,
                client,
            });
        }
        let id = Uuid::random(parts.env.platform)?.to_string();
        let mac = visitor_mac(secret, &tenant, &id)
            .ok_or_else(|| ApiError::upstream("cannot sign the visitor cookie"))?;
        // `Secure` except on plain-http development hosts (browsers drop Secure cookies there).
        let host = request_host(
            headers,
            &parts.head.uri,
            config.tenancy.trust_forwarded_host,
        )
        .unwrap_or_default();
        let secure = if host == "localhost" || host.ends_with(".localhost") {
            ""
        } else {
            "; Secure"
        };
        let cookie = format!(
            "{COOKIE}={id}.{mac}; Path=/v1/storefront; Max-Age={COOKIE_MAX_AGE}; HttpOnly; SameSite=Lax{secure}"
        );
        let value = HeaderValue::from_str(&cookie)
            .map_err(|_| ApiError::upstream("cannot encode the visitor cookie"))?;
        Ok(Self {
            id,
            set_cookie: Some(value),
            client,
        })
    }
}

/// The visitor a valid cookie names, for reading what they own (a conversation, an order: `K`).
/// Without one (or without a cookie secret) the visitor owns nothing, so the `K` asked for does
/// not exist: 404.
pub struct KnownVisitor<K>(pub String, pub PhantomData<K>);

impl<'a, P: Platform, K: FromPath> Extract<'a, P> for KnownVisitor<K> {
    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError> {
        let tenant = parts.tenant()?;
        parts
            .env
            .config
            .chat
            .visitor_secret
            .as_ref()
            .and_then(|k| visitor_from_cookie(k.expose().as_bytes(), &tenant, &parts.head.headers))
            .map(|id| Self(id, PhantomData))
            .ok_or_else(|| ApiError::not_found(K::KIND))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn tenant(id: &str) -> Tenant {
        crate::testing::tenant(id, "basic")
    }

    #[test]
    fn visitor_cookies_verify_only_for_their_tenant() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let a = tenant("00000000-0000-4000-8000-00000000000a");
        let b = tenant("00000000-0000-4000-8000-00000000000b");
        let id = "00000000-0000-4000-8000-0000000000ff";
        let mac = visitor_mac(secret, &a, id).unwrap();
        let mut h = http::HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("x=1; {COOKIE}={id}.{mac}")).unwrap(),
        );
        assert_eq!(visitor_from_cookie(secret, &a, &h).as_deref(), Some(id));
        assert_eq!(visitor_from_cookie(secret, &b, &h), None);
        let mut forged = http::HeaderMap::new();
        forged.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!(
                "{COOKIE}=00000000-0000-4000-8000-0000000000fe.{mac}"
            ))
            .unwrap(),
        );
        assert_eq!(visitor_from_cookie(secret, &a, &forged), None);
    }

    #[test]
    fn client_addresses_are_canonical() {
        let name = HeaderName::from_static("cf-connecting-ip");
        let of = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_str(v).unwrap());
            client_address(&h, Some(&name)).map(Cow::into_owned)
        };
        assert_eq!(of("203.0.113.7").as_deref(), Some("203.0.113.7"));
        assert_eq!(
            of(" 203.0.113.7 , 10.0.0.1").as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(of("203.0.113.7:5555").as_deref(), Some("203.0.113.7"));
        assert_eq!(of("::ffff:203.0.113.7").as_deref(), Some("203.0.113.7"));
        assert_eq!(
            of("2001:db8:1:2:3:4:5:6").as_deref(),
            Some("2001:db8:1:2::/64")
        );
        // Leading zeros are not an address (octal or decimal, nobody can tell).
        assert_eq!(of("203.0.113.07"), None);
        assert_eq!(of("not-an-ip"), None);
    }

    #[test]
    fn client_keys_hash_the_trusted_headers_ip_per_tenant() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let a = tenant("00000000-0000-4000-8000-00000000000a");
        let b = tenant("00000000-0000-4000-8000-00000000000b");
        let name = HeaderName::from_static("cf-connecting-ip");
        let key = |t: &Tenant, v: &str, name: Option<&HeaderName>| {
            let mut h = HeaderMap::new();
            h.insert("cf-connecting-ip", HeaderValue::from_str(v).unwrap());
            client_key(secret, t, &h, name)
        };
        let one = key(&a, "203.0.113.7", Some(&name)).unwrap();
        assert!(!one.contains("203"), "never the address itself");
        assert_eq!(one.len(), 22);
        // The first of a list, a port, the IPv4-mapped form: the same client.
        assert_eq!(
            key(&a, " 203.0.113.7, 10.0.0.1", Some(&name)).as_ref(),
            Some(&one)
        );
        assert_eq!(
            key(&a, "203.0.113.7:5555", Some(&name)).as_ref(),
            Some(&one)
        );
        assert_eq!(
            key(&a, "::ffff:203.0.113.7", Some(&name)).as_ref(),
            Some(&one)
        );
        assert_ne!(key(&a, "203.0.113.8", Some(&name)).as_ref(), Some(&one));
        // Another tenant cannot correlate it.
        assert_ne!(key(&b, "203.0.113.7", Some(&name)).as_ref(), Some(&one));
        // One IPv6 /64 is one client.
        assert_eq!(
            key(&a, "2001:db8:1:2::1", Some(&name)),
            key(&a, "2001:db8:1:2:ffff::9", Some(&name))
        );
        assert_ne!(
            key(&a, "2001:db8:1:2::1", Some(&name)),
            key(&a, "2001:db8:1:3::1", Some(&name))
        );
        // No trusted header configured, or not an address: no key.
        assert_eq!(key(&a, "203.0.113.7", None), None);
        assert_eq!(key(&a, "unknown", Some(&name)), None);
        assert_eq!(client_key(secret, &a, &HeaderMap::new(), Some(&name)), None);
    }
}
