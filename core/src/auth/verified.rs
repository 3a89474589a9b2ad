//! Bearer tokens whose signature this instance has already verified, so that a client sending
//! the same token again (every request of a session does) costs a hash and a lookup instead of
//! a key-set lookup and an RSA/ECDSA verification. What is cached is the token's claims and the
//! [`Principal`] they were mapped to, found by the token's end and matched on its exact bytes
//! (compared in full, so no hash collision can stand in for a verified token; a digest would
//! cost a SHA-256 per request): a token that differs in any byte is another token.
//! The checks that depend only on the claims and the configuration (issuer, token use,
//! audience, claim mapping) passed before the entry was made and would give the same answer
//! again, since an instance's configuration never changes. The ones that depend on time —
//! expiry, not-before, issued-at — run on every request against the clock port, so a cached
//! token stops working the moment it expires. An entry lives at most [`TTL`], so a key the
//! issuer withdraws from its set stops accepting its tokens here within that time, as it would
//! once the key set is refetched.
//! Bounded at [`CAPACITY`] entries: past that, the expired ones go, then all.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use jwt_compact::Claims;
use serde_json::{Map, Value};

use super::Principal;

/// How long a verification is trusted.
pub const TTL: Duration = Duration::from_secs(300);
/// Entries held at most per instance.
pub const CAPACITY: usize = 1024;

pub type TokenClaims = Claims<Map<String, Value>>;

/// A verified token: its claims, who they say the caller is, and the leeway its issuer allows
/// on the times in them.
#[derive(Clone)]
pub struct Verified {
    pub claims: Rc<TokenClaims>,
    pub principal: Rc<Principal>,
    pub leeway: Duration,
}

struct Entry {
    /// The token, its exact text.
    token: Box<str>,
    verified: Verified,
    until: SystemTime,
}

#[derive(Default)]
pub struct VerifiedTokens {
    /// A token's last [`TAIL`] bytes → the token and what it says. Hashing a whole ≈ 1 KB
    /// token on every request cost more than the rest of a lookup; its tail is the end of its
    /// signature, which differs between any two tokens this instance verified. A token whose
    /// tail matches an entry is that entry's only if the whole text is the same.
    entries: RefCell<HashMap<Box<[u8]>, Entry>>,
}

/// How much of a token's end keys the map: 32 base64url characters, 24 bytes of signature.
const TAIL: usize = 32;

/// The end of `token` the map is keyed by (all of it when short, or when the cut would split
/// a character, which no well-formed token has).
fn tail(token: &[u8]) -> &[u8] {
    token
        .len()
        .checked_sub(TAIL)
        .and_then(|start| token.get(start..))
        .unwrap_or(token)
}

impl VerifiedTokens {
    /// What was learned from a token verified less than [`TTL`] before `now`.
    pub fn get(&self, token: &[u8], now: SystemTime) -> Option<Verified> {
        let entries = self.entries.borrow();
        let entry = entries.get(tail(token))?;
        let same = crate::words::same_bytes(entry.token.as_bytes(), token);
        (same && now < entry.until).then(|| entry.verified.clone())
    }

    /// Records a token whose signature was just verified at `now`.
    pub fn insert(&self, token: &str, verified: Verified, now: SystemTime) {
        let mut entries = self.entries.borrow_mut();
        let key = tail(token.as_bytes());
        if entries.len() >= CAPACITY && !entries.contains_key(key) {
            entries.retain(|_, e| e.until > now);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            key.into(),
            Entry {
                token: token.into(),
                verified,
                until: now + TTL,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Verified {
        Verified {
            claims: Rc::new(Claims::new(Map::new())),
            principal: Rc::new(Principal {
                subject: "u".into(),
                email: None,
                email_verified: false,
                name: None,
                tenant_id: None,
                roles: Vec::new(),
                tier: None,
                issuer: "https://idp".into(),
                token_use: None,
                expires_at: 0,
                platform_admin_issuer: false,
                membership: crate::auth::MembershipMode::Membership,
                kept_user_key: Default::default(),
            }),
            leeway: Duration::ZERO,
        }
    }

    #[test]
    fn an_entry_serves_until_its_ttl_and_only_its_exact_token() {
        let cache = VerifiedTokens::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        cache.insert("a.b.c", claims(), t0);
        assert!(cache
            .get(b"a.b.c", t0 + TTL - Duration::from_secs(1))
            .is_some());
        assert!(cache.get(b"a.b.c", t0 + TTL).is_none());
        assert!(cache.get(b"a.b.d", t0).is_none());
        assert!(
            cache.get(b"a.b.", t0).is_none(),
            "a prefix is another token"
        );
    }

    #[test]
    fn a_token_with_an_entrys_tail_is_not_that_entry() {
        let cache = VerifiedTokens::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let signature = "S".repeat(342);
        let verified = format!("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.{signature}");
        let forged = format!("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiIn0.{signature}");
        cache.insert(&verified, claims(), t0);
        assert!(cache.get(verified.as_bytes(), t0).is_some());
        assert!(
            cache.get(forged.as_bytes(), t0).is_none(),
            "same signature, other claims"
        );
        assert!(
            cache.get(&verified.as_bytes()[1..], t0).is_none(),
            "a suffix is another token"
        );
    }

    #[test]
    fn stays_bounded() {
        let cache = VerifiedTokens::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for i in 0..CAPACITY {
            cache.insert(&format!("t{i}"), claims(), t0);
        }
        assert_eq!(cache.len(), CAPACITY);
        // Past the limit with every entry live, the map starts afresh.
        cache.insert("one more", claims(), t0);
        assert_eq!(cache.len(), 1);
        // Expired entries go first.
        for i in 0..CAPACITY - 1 {
            cache.insert(&format!("u{i}"), claims(), t0);
        }
        let later = t0 + TTL + Duration::from_secs(1);
        cache.insert("fresh", claims(), later);
        assert_eq!(cache.len(), 1);
    }
}
