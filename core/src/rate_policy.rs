//! Rate-limit policy: the route classes and the configured limits (`RATE_LIMITS`, with tier
//! defaults), parsed and validated. Configuration reads it; [`crate::ratelimit`] applies it.

use std::time::Duration;

use http::Method;
use serde_json::Value;

/// The kinds of request that are limited separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// GET and HEAD on a tenant's public routes (storefront).
    PublicRead,
    /// Writes on a tenant's public routes: visits, checkout, chat.
    VisitorWrite,
    /// GET and HEAD on routes that need a token.
    AuthRead,
    /// Writes on routes that need a token.
    AuthWrite,
}

impl Class {
    pub const ALL: [Class; 4] = [
        Class::PublicRead,
        Class::VisitorWrite,
        Class::AuthRead,
        Class::AuthWrite,
    ];

    /// The class of a request to a route that needs (`authenticated`) or does not need a token.
    pub fn of(method: &Method, authenticated: bool) -> Self {
        let read = method == Method::GET || method == Method::HEAD;
        match (authenticated, read) {
            (false, true) => Self::PublicRead,
            (false, false) => Self::VisitorWrite,
            (true, true) => Self::AuthRead,
            (true, false) => Self::AuthWrite,
        }
    }

    /// The name in configuration, keys and headers.
    pub fn name(self) -> &'static str {
        match self {
            Self::PublicRead => "public_read",
            Self::VisitorWrite => "visitor_write",
            Self::AuthRead => "auth_read",
            Self::AuthWrite => "auth_write",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Requests per window for each class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassLimits([u32; 4]);

impl ClassLimits {
    pub const fn new(
        public_read: u32,
        visitor_write: u32,
        auth_read: u32,
        auth_write: u32,
    ) -> Self {
        Self([public_read, visitor_write, auth_read, auth_write])
    }

    pub fn get(&self, class: Class) -> u32 {
        self.0.get(class.index()).copied().unwrap_or(0)
    }

    /// These limits with the classes `o` names replaced (an object of class → count).
    pub fn merged(mut self, o: &serde_json::Map<String, Value>) -> Result<Self, String> {
        for (name, value) in o {
            let class = Class::ALL
                .into_iter()
                .find(|c| c.name() == name)
                .ok_or_else(|| format!("unknown class {name:?}"))?;
            let n = value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("{name} must be a whole number of requests"))?;
            if let Some(slot) = self.0.get_mut(class.index()) {
                *slot = n;
            }
        }
        Ok(self)
    }
}

/// The configured limits (`RATE_LIMITS`): a window, per-IP limits and per-tier tenant limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    pub enabled: bool,
    pub window_seconds: u32,
    /// One client IP on one tenant (or on the platform host).
    pub ip: ClassLimits,
    /// A tenant as a whole, by tier.
    pub tiers: Vec<(String, ClassLimits)>,
    /// `RATE_LIMIT_URL`: the origin's limiter endpoint, used instead of the platform's store.
    pub url: Option<http::Uri>,
    /// `RATE_LIMIT_TIMEOUT_MS`: past it the request goes through unlimited.
    pub timeout: Duration,
    /// Turns client IPs into counter keys ([`RateLimits::set_key_secret`]).
    pub ip_key: IpKey,
}

/// The SipHash-2-4 key that turns a client IP into its counters' key: derived from a secret
/// (the visitor cookie secret, when set), so keys name no address and cannot be computed from
/// one without the secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IpKey(pub [u8; 16]);

impl IpKey {
    pub fn from_secret(secret: &[u8]) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"edgefront rate-limit ip key\0")
            .chain_update(secret)
            .finalize();
        let mut key = [0; 16];
        for (k, d) in key.iter_mut().zip(digest) {
            *k = d;
        }
        Self(key)
    }
}

/// Derived from a secret: never printed.
impl std::fmt::Debug for IpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IpKey(…)")
    }
}

impl RateLimits {
    /// Keys client IPs with `secret`.
    pub fn set_key_secret(&mut self, secret: &[u8]) {
        self.ip_key = IpKey::from_secret(secret);
    }
}

/// Defaults: a storefront page load is a handful of public reads, a busy shopper a few visitor
/// writes a minute; teams read more than they write. Higher tiers get 5× and 20× the tenant-wide
/// budget; one IP's budget does not depend on the tier.
const DEFAULT_IP: ClassLimits = ClassLimits::new(600, 60, 1200, 300);
const DEFAULT_BASIC: ClassLimits = ClassLimits::new(6_000, 600, 3_000, 600);
const DEFAULT_PREMIUM: ClassLimits = ClassLimits::new(30_000, 3_000, 15_000, 3_000);
const DEFAULT_ENTERPRISE: ClassLimits = ClassLimits::new(120_000, 12_000, 60_000, 12_000);

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            window_seconds: 60,
            ip: DEFAULT_IP,
            tiers: vec![
                ("basic".into(), DEFAULT_BASIC),
                ("premium".into(), DEFAULT_PREMIUM),
                ("enterprise".into(), DEFAULT_ENTERPRISE),
            ],
            url: None,
            timeout: Duration::from_millis(250),
            ip_key: IpKey::from_secret(&[]),
        }
    }
}

impl RateLimits {
    /// Reads `RATE_LIMITS`: `off`, or a JSON object
    /// `{"window_seconds": 60, "ip": {class: n, …}, "tiers": {"basic": {class: n, …}, …}}`
    /// whose members replace the defaults they name.
    pub fn parse(text: Option<&str>) -> Result<Self, String> {
        let mut limits = Self::default();
        let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(limits);
        };
        if text.eq_ignore_ascii_case("off") {
            limits.enabled = false;
            return Ok(limits);
        }
        let v: Value =
            serde_json::from_slice(text.as_bytes()).map_err(|e| format!("is not JSON: {e}"))?;
        let o = v.as_object().ok_or("must be a JSON object or off")?;
        for (name, value) in o {
            match name.as_str() {
                "window_seconds" => limits.window_seconds = window(value)?,
                "ip" => {
                    let ip = value.as_object().ok_or("ip must be an object")?;
                    limits.ip = limits.ip.merged(ip)?;
                }
                "tiers" => {
                    let tiers = value.as_object().ok_or("tiers must be an object")?;
                    for (tier, v) in tiers {
                        let o = v.as_object().ok_or("each tier must be an object")?;
                        match limits.tiers.iter_mut().find(|(t, _)| t == tier) {
                            Some((_, l)) => *l = l.merged(o)?,
                            None => {
                                let l = DEFAULT_BASIC.merged(o)?;
                                limits.tiers.push((tier.clone(), l));
                            }
                        }
                    }
                }
                other => return Err(format!("unknown member {other:?}")),
            }
        }
        Ok(limits)
    }

    pub fn tier(&self, tier: &str) -> ClassLimits {
        self.tiers
            .iter()
            .find(|(t, _)| t == tier)
            .map_or(DEFAULT_BASIC, |(_, l)| *l)
    }
}

pub fn window(v: &Value) -> Result<u32, String> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (1..=86_400).contains(n))
        .ok_or_else(|| "window_seconds must be 1 to 86400".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_replaces_what_it_names() {
        let l = RateLimits::parse(Some(
            r#"{"window_seconds": 10, "ip": {"public_read": 7}, "tiers": {"premium": {"auth_write": 9}, "trial": {"auth_read": 1}}}"#,
        ))
        .unwrap();
        assert_eq!(l.window_seconds, 10);
        assert_eq!(l.ip.get(Class::PublicRead), 7);
        assert_eq!(
            l.ip.get(Class::VisitorWrite),
            DEFAULT_IP.get(Class::VisitorWrite)
        );
        assert_eq!(l.tier("premium").get(Class::AuthWrite), 9);
        assert_eq!(l.tier("premium").get(Class::AuthRead), 15_000);
        assert_eq!(l.tier("trial").get(Class::AuthRead), 1);
        assert_eq!(l.tier("unknown"), DEFAULT_BASIC);
        assert!(!RateLimits::parse(Some("off")).unwrap().enabled);
        for bad in [
            "[]",
            r#"{"ip": {"public_reads": 1}}"#,
            r#"{"ip": {"public_read": -1}}"#,
            r#"{"window_seconds": 0}"#,
            r#"{"burst": 1}"#,
        ] {
            assert!(RateLimits::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
