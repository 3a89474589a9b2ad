//! Rate limiting per client IP and per tenant, by route class.
//!
//! Every tenant and platform route belongs to a [`Class`] (public reads, visitor writes,
//! authenticated reads, authenticated writes; operational routes are not limited). A request
//! counts against two budgets of its class: its client IP's on this tenant (or on the platform
//! host) and its tenant's as a whole, each a [`Rule`] of so many requests per window. Limits come
//! from configuration (`RATE_LIMITS`, with defaults per tier) and an operator's per-tenant
//! override (`settings.limits.rate`).
//!
//! The algorithm is a sliding-window counter ([`Counter`]): the current fixed window's count
//! plus the previous window's weighted by how much of it still overlaps the sliding window. It
//! needs two integers per key, refuses bursts at window boundaries that a fixed window lets
//! through (at most `limit` requests in any window-long span, assuming evenly spread requests in
//! the previous window), and tells exactly when the next request would pass (`Retry-After`).
//! Refused requests are not counted, so a client that backs off as told gets through.
//!
//! Where the counters live is the platform's ([`crate::ports::RateLimiter`]): a Durable Object
//! per tenant and class on Workers (global and exact; both budgets in one call), Spin's key-value store (global, approximate under
//! concurrency: read-modify-write), or, with `RATE_LIMIT_URL`, the origin's limiter endpoint
//! (global and exact, one HTTP round trip; any runtime). A platform without a shared store
//! counts in the instance's memory (per instance, approximate). A limiter that fails or is slow
//! (`RATE_LIMIT_TIMEOUT_MS`) lets the request through: limits protect the service, they must not
//! become its single point of failure.
//!
//! Answers carry the IETF `RateLimit-Policy` and `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers); a refusal is 429 `rate_limited` with `Retry-After`.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{header, HeaderMap, HeaderName, Request};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::code::Code;
use crate::config::Config;
use crate::error::ApiError;
use crate::ports::{with_timeout, OutboundError, Platform};
use crate::rate_policy::window;
pub use crate::rate_policy::{Class, ClassLimits, RateLimits};
use crate::tenancy::Tenant;
pub use crate::window::{admit_chain, Counter, Decision, Hit, Rule};

/// The rules for `class` on `tenant` (none: the platform host), with the tenant's override
/// (`settings.limits.rate`, same shape as `RATE_LIMITS` without tiers: `{"window_seconds",
/// "ip", "tenant"}`; a malformed one is ignored).
fn rules(limits: &RateLimits, class: Class, tenant: Option<&Tenant>) -> (Rule, Option<Rule>) {
    let mut window_seconds = limits.window_seconds;
    let mut ip = limits.ip;
    let mut whole = tenant.map(|t| limits.tier(&t.tier));
    if let Some(o) = tenant
        .and_then(|t| t.settings.limits.other.get("rate"))
        .and_then(Value::as_object)
    {
        if let Some(w) = o.get("window_seconds").and_then(|v| window(v).ok()) {
            window_seconds = w;
        }
        if let Some(m) = o.get("ip").and_then(Value::as_object) {
            ip = ip.merged(m).unwrap_or(ip);
        }
        if let (Some(m), Some(l)) = (o.get("tenant").and_then(Value::as_object), whole) {
            whole = Some(l.merged(m).unwrap_or(l));
        }
    }
    let rule = |l: ClassLimits| Rule {
        limit: l.get(class),
        window_seconds,
    };
    (rule(ip), whole.map(rule))
}

/// A limit that was checked: the policy's name in the headers, its rule and the decision.
#[derive(Debug, Clone, Copy)]
pub struct Checked {
    pub policy: &'static str,
    pub rule: Rule,
    pub decision: Decision,
}

/// The outcome for a request: the limits that apply (for the headers), or a 429. A request
/// counts against two budgets at most, its client's and its tenant's, kept in place.
#[derive(Debug, Clone, Copy, Default)]
pub struct Verdict {
    checked: [Option<Checked>; 2],
}

impl Verdict {
    /// The first two of `checked`, in order.
    pub fn new(checked: impl IntoIterator<Item = Checked>) -> Self {
        let mut v = Self::default();
        for (slot, c) in v.checked.iter_mut().zip(checked) {
            *slot = Some(c);
        }
        v
    }

    /// The limits checked, in order.
    pub fn checked(&self) -> impl Iterator<Item = &Checked> {
        self.checked.iter().flatten()
    }

    /// The 429 when a limit refused the request.
    pub fn refusal(&self) -> Option<ApiError> {
        let refused = self
            .checked()
            .filter(|c| !c.decision.allowed)
            .max_by_key(|c| c.decision.reset_seconds)?;
        let who = if refused.policy == "tenant" {
            "this storefront"
        } else {
            "your address"
        };
        Some(ApiError::too_many(
            Code::RateLimited,
            format!(
                "Too many requests from {who}: {} per {} s. Retry after {} s.",
                refused.rule.limit, refused.rule.window_seconds, refused.decision.reset_seconds
            ),
            Some(u64::from(refused.decision.reset_seconds)),
        ))
    }

    /// Sets `RateLimit-Policy` (every policy) and `RateLimit` (the one closest to refusing).
    pub fn decorate(&self, headers: &mut HeaderMap) {
        let Some((policies, tightest)) = self.header_values() else {
            return;
        };
        if let Ok(p) = crate::request_headers::header_value(&policies) {
            headers.insert(RATELIMIT_POLICY, p);
            if let Ok(v) = crate::request_headers::header_value(&tightest) {
                headers.insert(RATELIMIT, v);
            }
        }
    }

    /// The values of `RateLimit-Policy` and `RateLimit` ([`Verdict::decorate`]); `None` when
    /// no limit was checked.
    pub fn header_values(&self) -> Option<(String, String)> {
        // `"ip";q=600;w=60, "tenant";q=6000;w=60`, then `"ip";r=599;t=42`: written out
        // directly, every request carries them.
        let item = |out: &mut String, policy: &str, (a, x): (&str, u32), (b, y): (&str, u32)| {
            let mut n = itoa::Buffer::new();
            for part in ["\"", policy, "\";", a, n.format(x), ";", b] {
                out.push_str(part);
            }
            out.push_str(n.format(y));
        };
        let tightest = self
            .checked()
            .min_by_key(|c| (c.decision.allowed, c.decision.remaining))?;
        let mut policies = String::with_capacity(96);
        for (i, c) in self.checked().enumerate() {
            if i > 0 {
                policies.push_str(", ");
            }
            let rule = c.rule;
            item(
                &mut policies,
                c.policy,
                ("q=", rule.limit),
                ("w=", rule.window_seconds),
            );
        }
        let mut value = String::with_capacity(40);
        let d = &tightest.decision;
        item(
            &mut value,
            tightest.policy,
            ("r=", d.remaining),
            ("t=", d.reset_seconds),
        );
        Some((policies, value))
    }
}

pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Checks (and counts) a request of `class` against its client IP's and its tenant's limits.
/// Without a client IP (no trusted header) only the tenant's limit applies.
pub async fn check<P: Platform>(
    platform: &P,
    config: &Config,
    class: Class,
    tenant: Option<&Tenant>,
    headers: &HeaderMap,
) -> Verdict {
    let limits = &config.rate_limits;
    if !limits.enabled {
        return Verdict::default();
    }
    let (ip_rule, tenant_rule) = rules(limits, class, tenant);
    let scope = tenant.map_or("platform", |t| t.id.as_str());
    let ip = crate::visitor::client_address(headers, config.chat.client_ip_header.as_ref());
    let ip_key = ip.map(|ip| ip_key(limits.ip_key, class, scope, &ip));
    let tenant_key = tenant_rule.map(|_| ["rl:v2:", class.name(), ":t:", scope].concat());
    // The client's budget first: a request its address may not make must not spend the
    // tenant's budget too, or one abuser would lock the tenant's other clients out. Both in
    // one call to the store (`admit_chain`'s order and stopping rule).
    let budgets = [
        ip_key.as_deref().map(|key| ("ip", key, ip_rule)),
        tenant_key
            .as_deref()
            .zip(tenant_rule)
            .map(|(key, rule)| ("tenant", key, rule)),
    ];
    let mut hits = [Hit::new("", ip_rule); 2];
    let mut n = 0;
    for ((_, key, rule), slot) in budgets.iter().flatten().zip(&mut hits) {
        *slot = Hit::new(key, *rule);
        n += 1;
    }
    let hits = hits.get(..n).unwrap_or_default();
    // Where the request's counters live together: the last key's store (the tenant's).
    let anchor = hits.last().map_or("", |h| h.key);
    let now = platform.now();
    let fut = async {
        match &limits.url {
            Some(url) => crate::ports::cold(remote(platform, config, url, hits, now)).await,
            // `Memo` always answers (its own memory when the platform shares nothing).
            None => platform
                .admit(anchor, hits, now)
                .await
                .unwrap_or_else(|| Err(OutboundError::Invalid("no limiter".into()))),
        }
    };
    // A failing limiter lets the request through (see the module docs).
    let decisions = with_timeout(platform, limits.timeout, fut)
        .await
        .unwrap_or_default();
    Verdict::new(
        budgets
            .iter()
            .flatten()
            .zip(decisions)
            .map(|((policy, _, rule), decision)| Checked {
                policy,
                rule: *rule,
                decision,
            }),
    )
}

/// The counters' key for client address `ip` on `scope` (a tenant, or the platform host):
/// `rl:v2:{class}:ip:{scope}:{hash}`, where the hash is SipHash-2-4 of scope and address under
/// the instance's [`IpKey`](crate::rate_policy::IpKey). A keyed hash, so the key names no
/// address and nobody without the secret can tell which address a key counts.
fn ip_key(key: crate::rate_policy::IpKey, class: Class, scope: &str, ip: &str) -> String {
    use std::hash::Hasher as _;
    let mut h = siphasher::sip::SipHasher24::new_with_key(&key.0);
    h.write(scope.as_bytes());
    h.write(&[0]);
    h.write(ip.as_bytes());
    let mut out = ["rl:v2:", class.name(), ":ip:", scope, ":"].concat();
    crate::ids::hex_into(&mut out, &h.finish().to_be_bytes());
    out
}

/// What the origin's limiter endpoint (`RATE_LIMIT_URL`) and the Workers rate-limit object
/// receive, one per budget of the request (a JSON array, counted as [`admit_chain`] does).
#[derive(Debug, Serialize, Deserialize)]
pub struct RemoteHit {
    pub key: String,
    pub limit: u32,
    pub window_seconds: u32,
    /// The edge's clock (Unix milliseconds): windows are the caller's.
    pub now_ms: u64,
    /// Hits to count beyond this request's and grant the caller ([`Hit::lease`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lease: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl RemoteHit {
    /// One hit on `key` under `rule` at the edge's `now`.
    pub fn new(hit: &Hit<'_>, now: SystemTime) -> Self {
        Self {
            key: hit.key.to_owned(),
            limit: hit.rule.limit,
            window_seconds: hit.rule.window_seconds,
            now_ms: unix_ms(now),
            lease: hit.lease,
        }
    }

    pub fn rule(&self) -> Rule {
        Rule {
            limit: self.limit,
            window_seconds: self.window_seconds,
        }
    }

    /// The request's hits, as sent.
    pub fn all(hits: &[Hit<'_>], now: SystemTime) -> Vec<Self> {
        hits.iter().map(|h| Self::new(h, now)).collect()
    }

    /// What a store does with a request's hits it received: counts them in order with
    /// `admit` (a key's counter, at the sender's clock in Unix milliseconds; the store calls
    /// [`Counter::admit_hit`], which grants the hit's lease), as [`admit_chain`] does.
    pub fn admit_received(
        hits: &[RemoteHit],
        mut admit: impl FnMut(&Hit<'_>, u64) -> Decision,
    ) -> Vec<Decision> {
        let chain: Vec<Hit<'_>> = hits
            .iter()
            .map(|h| Hit {
                key: &h.key,
                rule: h.rule(),
                lease: h.lease,
            })
            .collect();
        let now_ms = hits.first().map_or(0, |h| h.now_ms);
        admit_chain(&chain, |hit| admit(hit, now_ms))
    }
}

async fn remote<P: Platform>(
    platform: &P,
    config: &Config,
    url: &http::Uri,
    hits: &[Hit<'_>],
    now: SystemTime,
) -> Result<Vec<Decision>, OutboundError> {
    let body = serde_json::to_vec(&RemoteHit::all(hits, now))
        .map_err(|e| OutboundError::Network(e.to_string()))?;
    let mut req = Request::post(url.clone()).header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = &config.origin.token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    let req = req
        .body(body.into())
        .map_err(|e| OutboundError::Network(e.to_string()))?;
    let resp = platform.send(req).await?;
    if !resp.status().is_success() {
        return Err(OutboundError::Network(format!(
            "limiter answered {}",
            resp.status()
        )));
    }
    serde_json::from_slice(resp.body()).map_err(|e| OutboundError::Network(e.to_string()))
}

/// Unix milliseconds of a clock reading (0 before the epoch).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: Rule = Rule {
        limit: 5,
        window_seconds: 10,
    };
    #[test]
    fn ip_keys_are_keyed_per_secret_scope_and_address() {
        use crate::rate_policy::IpKey;
        let (a, b) = (IpKey::from_secret(b"one"), IpKey::from_secret(b"two"));
        let scope = "00000000-0000-4000-8000-00000000d301";
        let key = ip_key(a, Class::AuthRead, scope, "203.0.113.7");
        let (prefix, hash) = key.rsplit_once(':').unwrap();
        assert_eq!(prefix, format!("rl:v2:auth_read:ip:{scope}"));
        assert_eq!(hash.len(), 16);
        assert!(hash
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(!key.contains("203.0.113.7"), "the key names no address");
        assert_eq!(key, ip_key(a, Class::AuthRead, scope, "203.0.113.7"));
        for other in [
            ip_key(b, Class::AuthRead, scope, "203.0.113.7"),
            ip_key(a, Class::AuthRead, scope, "203.0.113.8"),
            ip_key(a, Class::AuthRead, "platform", "203.0.113.7"),
        ] {
            assert_ne!(other.rsplit_once(':').unwrap().1, hash);
        }
        assert_eq!(
            format!("{a:?}"),
            "IpKey(…)",
            "a key derived from a secret is not printed"
        );
    }

    #[test]
    fn headers_name_every_policy_and_the_tightest_state() {
        let v = Verdict::new([
            Checked {
                policy: "ip",
                rule: RULE,
                decision: Decision {
                    allowed: true,
                    remaining: 3,
                    reset_seconds: 20,
                    leased: 0,
                },
            },
            Checked {
                policy: "tenant",
                rule: Rule {
                    limit: 100,
                    window_seconds: 10,
                },
                decision: Decision {
                    allowed: true,
                    remaining: 1,
                    reset_seconds: 15,
                    leased: 0,
                },
            },
        ]);
        let mut h = HeaderMap::new();
        v.decorate(&mut h);
        assert_eq!(
            h[RATELIMIT_POLICY],
            "\"ip\";q=5;w=10, \"tenant\";q=100;w=10"
        );
        assert_eq!(h[RATELIMIT], "\"tenant\";r=1;t=15");
        assert_eq!(
            v.header_values(),
            Some((
                h[RATELIMIT_POLICY].to_str().unwrap().to_owned(),
                h[RATELIMIT].to_str().unwrap().to_owned()
            )),
            "the values are the headers'"
        );
        assert!(v.refusal().is_none());
        // Nothing checked (an unlimited route, limits off): no values and no headers.
        let mut h = HeaderMap::new();
        Verdict::default().decorate(&mut h);
        assert!(h.is_empty());
        assert_eq!(Verdict::default().header_values(), None);
    }
}
