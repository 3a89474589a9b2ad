//! CORS for browser clients of tenant endpoints, answered at the edge.
//!
//! An origin may call a tenant's API when it is:
//! 1. the request's own host (same site, different scheme or port in dev);
//! 2. listed in `CORS_ALLOWED_ORIGINS` (every tenant) or in the tenant's `settings.cors_origins`;
//! 3. one of the tenant's own hosts: `{slug}.{BASE_DOMAIN}` or one of its verified custom
//!    domains (`Tenant::domains`).
//!
//! All of it is decided from configuration and the tenant record the request already resolved:
//! an `Origin` header is attacker input, so it never costs a lookup or a cache entry (a browser
//! script, or anyone, can send any number of distinct ones).
//!
//! `http://` origins are accepted only for `localhost` names (development); production
//! storefronts are `https://`.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::config::{parse_origin, Config};
use crate::error::{ApiError, Code};
use crate::tenancy::Tenant;

/// Request headers a browser may send cross-origin.
const ALLOW_HEADERS: &str = "authorization, content-type, idempotency-key, if-match, if-none-match";
/// Response headers a browser script may read.
const EXPOSE_HEADERS: &str = "etag, location, retry-after";
/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: &str = "600";

fn is_local(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost") || host == "127.0.0.1"
}

/// The `Origin` to echo in `Access-Control-Allow-Origin`, if this tenant allows it.
/// `None` when the request has no Origin (not a CORS request) or it is not allowed. Pure: no
/// lookup, whatever the Origin.
pub fn allowed_origin(
    config: &Config,
    tenant: &Tenant,
    headers: &HeaderMap,
    request_host: Option<&str>,
) -> Option<HeaderValue> {
    let raw = headers.get(header::ORIGIN)?.to_str().ok()?;
    let origin = raw.trim().to_ascii_lowercase();
    let (scheme, host) = parse_origin(&origin)?;
    if scheme == "http" && !is_local(host) {
        return None;
    }
    let listed = |o: &str| o.trim().trim_end_matches('/').eq_ignore_ascii_case(&origin);
    let allowed = request_host == Some(host)
        || config.tenancy.cors_origins.iter().any(|o| listed(o))
        || tenant.settings.cors_origins.iter().any(|o| listed(o))
        || tenant.owns_host(host, &config.base_domain);
    if allowed {
        crate::request_headers::header_value(&origin).ok()
    } else {
        None
    }
}

/// Adds the CORS response headers for an allowed origin; always adds `Vary: Origin`, because
/// the answer depends on it and shared caches must not mix origins.
pub fn decorate(h: &mut HeaderMap, origin: Option<HeaderValue>) {
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
        // The visitor cookie of storefront chat; safe because the origin is echoed, never `*`.
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// Answers a preflight (`OPTIONS` with `Access-Control-Request-Method`).
pub fn preflight(
    origin: Option<HeaderValue>,
    allow: &[Method],
    requested: &str,
) -> Result<Response<Bytes>, ApiError> {
    let Some(origin) = origin else {
        return Err(ApiError::new(
            Code::OriginNotAllowed,
            "This origin may not call this tenant's API from a browser.",
        ));
    };
    if !allow
        .iter()
        .any(|m| m.as_str().eq_ignore_ascii_case(requested))
    {
        return Err(ApiError::method_not_allowed(allow.to_vec()));
    }
    let methods = allow
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    if let Ok(v) = HeaderValue::from_str(&methods) {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_strictly() {
        assert_eq!(
            parse_origin("https://shop.acme.test"),
            Some(("https", "shop.acme.test"))
        );
        assert_eq!(
            parse_origin("http://demo.localhost:8787"),
            Some(("http", "demo.localhost"))
        );
        for bad in [
            "null",
            "ftp://x.test",
            "https://x.test/path",
            "https://u@x.test",
            "https://x.test:",
            "https://",
        ] {
            assert_eq!(parse_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn preflights_name_methods_and_headers_or_refuse() {
        let ok = preflight(
            Some(HeaderValue::from_static("https://a.test")),
            &[Method::GET, Method::HEAD],
            "GET",
        )
        .unwrap();
        assert_eq!(ok.status(), 204);
        assert_eq!(
            ok.headers()[header::ACCESS_CONTROL_ALLOW_METHODS],
            "GET, HEAD"
        );
        assert_eq!(
            ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://a.test"
        );
        assert_eq!(
            preflight(None, &[Method::GET], "GET").unwrap_err().code(),
            Code::OriginNotAllowed
        );
        assert_eq!(
            preflight(
                Some(HeaderValue::from_static("https://a.test")),
                &[Method::GET],
                "DELETE"
            )
            .unwrap_err()
            .code(),
            Code::MethodNotAllowed
        );
    }

    #[test]
    fn origins_are_decided_from_the_tenant_record_alone() {
        use crate::config::tests::dev_settings;
        use crate::testing::{tenant, TENANT};
        let mut settings = dev_settings();
        settings.insert("CORS_ALLOWED_ORIGINS", "https://console.example".into());
        let config = Config::load(&|k: &str| settings.get(k).cloned()).unwrap();
        let mut t = tenant(TENANT, "basic");
        t.domains = vec!["shop.demo.test".into()];
        t.settings.cors_origins = vec!["https://brand.example/".into()];
        let allowed = |origin: &str, request_host: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
            allowed_origin(&config, &t, &h, request_host).map(|v| v.to_str().unwrap().to_owned())
        };
        for ok in [
            "https://shop.demo.test",
            "https://SHOP.demo.test:8443",
            "http://demo.localhost:8787",
            "https://demo.localhost",
            "https://console.example",
            "https://brand.example",
        ] {
            assert_eq!(allowed(ok, None), Some(ok.to_ascii_lowercase()), "{ok}");
        }
        assert!(allowed("http://acme.localhost:8787", Some("acme.localhost")).is_some());
        for refused in [
            "https://other.demo.test",
            "https://shop.demo.test.evil.example",
            "https://evil-shop.demo.test",
            "https://acme.localhost",
            "https://a.demo.localhost",
            "https://localhost",
            "http://shop.demo.test",
            "https://brand.example.evil",
            "null",
        ] {
            assert_eq!(allowed(refused, None), None, "{refused}");
        }
    }
}
