//! Bearer-token authentication: verifies Cognito-shaped JWTs (and other OIDC issuers' tokens)
//! against issuers' published keys and turns their claims into a [`Principal`]. Modelled on
//! awslabs/aws-jwt-verify: refuse early and cheaply, verify the signature before trusting a claim.

mod cache;
mod config;
mod crypto;
mod verified;

#[cfg(test)]
mod tests;

use std::fmt;
use std::rc::Rc;

use chrono::{DateTime, Utc};
use jwt_compact::{Claims, TimeOptions, UntrustedToken, ValidationError};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::code::Code;
use crate::obs::Cache;
use crate::ports::Platform;

pub use crate::jwk::{Algorithm, Jwk, Jwks, KeyError};
pub use crate::ports::SignatureVerifier;
pub use cache::JwksCache;
pub use config::{AuthConfig, ClaimsMapping, IssuerConfig, JwksPolicy, MembershipMode, TokenUse};
#[cfg(feature = "rust-crypto")]
pub use crypto::RustCrypto;

/// Who made the request, as the verified token says. Which tenants they belong to, and with
/// what role, is decided by `identity` (our database), unless the issuer is in claims mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The issuer's id for the user (`sub` by default); unique only together with `issuer`.
    pub subject: String,
    /// `email`, when the token carries one.
    pub email: Option<String>,
    /// `email_verified` is `true` (a boolean or the string Cognito sometimes sends).
    pub email_verified: bool,
    /// `name`, else `cognito:username`/`preferred_username`, when present.
    pub name: Option<String>,
    pub tenant_id: Option<String>,
    /// Merged from every configured role claim, in order, without duplicates.
    pub roles: Vec<String>,
    pub tier: Option<String>,
    pub issuer: String,
    /// The token's `token_use` (`"id"`, `"access"`), if it had one.
    pub token_use: Option<String>,
    /// `exp`, in Unix seconds.
    pub expires_at: u64,
    /// The issuer is one whose tokens may carry the platform-admin role.
    pub platform_admin_issuer: bool,
    /// The issuer's membership mode.
    pub membership: MembershipMode,
    /// The user's key-value key ([`Principal::user_key`]), derived once: the verified-token
    /// cache keeps this principal for every request that sends the same token.
    pub(crate) kept_user_key: UserKey,
}

impl Principal {
    /// The key `derive` makes of the issuer and the subject (identity's cache key for this
    /// user), derived on the first call and kept with the principal.
    pub fn user_key(&self, derive: impl FnOnce(&str, &str) -> String) -> &str {
        self.kept_user_key
            .0
            .get_or_init(|| derive(&self.issuer, &self.subject))
    }
}

/// A key derived from a principal's issuer and subject, kept once derived. Principals compare
/// by what it is derived from, so it takes no part in their equality.
#[derive(Debug, Clone, Default)]
pub(crate) struct UserKey(std::cell::OnceCell<String>);

impl PartialEq for UserKey {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for UserKey {}

/// Why a request is not authenticated. `code` is stable; `detail` never contains the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Malformed,
    TooLarge,
    UnsupportedAlgorithm,
    AlgorithmMismatch,
    UnknownKey,
    /// The issuer's key exists but cannot be used (RSA shorter than 2048 bits, bad coordinates).
    UnusableKey(String),
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    WrongIssuer,
    WrongAudience,
    WrongTokenUse,
    MissingClaim(&'static str),
    /// No usable key set: the issuer's JWKS could not be fetched and none is cached.
    JwksUnavailable(String),
}

impl AuthError {
    /// The problem code a client sees. Both server-side failures are `jwks_unavailable`: the
    /// client cannot tell (and need not know) whether the keys were unreachable or unusable.
    pub fn code(&self) -> Code {
        match self {
            Self::Missing => Code::MissingToken,
            Self::Malformed => Code::MalformedToken,
            Self::TooLarge => Code::TokenTooLarge,
            Self::UnsupportedAlgorithm => Code::UnsupportedAlgorithm,
            Self::AlgorithmMismatch => Code::AlgorithmMismatch,
            Self::UnknownKey => Code::UnknownKey,
            Self::BadSignature => Code::BadSignature,
            Self::Expired => Code::Expired,
            Self::NotYetValid => Code::NotYetValid,
            Self::IssuedInFuture => Code::IssuedInFuture,
            Self::WrongIssuer => Code::WrongIssuer,
            Self::WrongAudience => Code::WrongAudience,
            Self::WrongTokenUse => Code::WrongTokenUse,
            Self::MissingClaim(_) => Code::MissingClaim,
            Self::UnusableKey(_) | Self::JwksUnavailable(_) => Code::JwksUnavailable,
        }
    }

    pub fn detail(&self) -> String {
        match self {
            Self::Missing => "No bearer token was presented.".into(),
            Self::Malformed => "The bearer token is not a compact JWS.".into(),
            Self::TooLarge => "The bearer token is too large.".into(),
            Self::UnsupportedAlgorithm => {
                "The token's algorithm is not one of RS256, RS384, RS512, ES256, ES384, EdDSA."
                    .into()
            }
            Self::AlgorithmMismatch => "The token's algorithm does not match its key.".into(),
            Self::UnknownKey => {
                "The token was signed with a key the issuer does not publish.".into()
            }
            Self::UnusableKey(why) => format!("The issuer's key cannot be used: {why}."),
            Self::BadSignature => "The token's signature is invalid.".into(),
            Self::Expired => "The token has expired.".into(),
            Self::NotYetValid => "The token is not valid yet.".into(),
            Self::IssuedInFuture => "The token claims to be issued in the future.".into(),
            Self::WrongIssuer => "The token's issuer is not trusted.".into(),
            Self::WrongAudience => "The token was issued for another client.".into(),
            Self::WrongTokenUse => "This kind of token is not accepted here.".into(),
            Self::MissingClaim(c) => format!("The token lacks the `{c}` claim."),
            Self::JwksUnavailable(why) => format!("The issuer's keys are unavailable: {why}."),
        }
    }

    /// A server-side failure (the caller should answer 503), not a client's bad token (401).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::JwksUnavailable(_) | Self::UnusableKey(_))
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.detail())
    }
}

impl std::error::Error for AuthError {}

impl From<KeyError> for AuthError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::AlgorithmMismatch => Self::AlgorithmMismatch,
            KeyError::Unusable(why) => Self::UnusableKey(why),
        }
    }
}

/// Header members beyond jwt-compact's: `crit` names extensions the verifier must understand,
/// and this one understands none (RFC 7515 §4.1.11).
#[derive(Debug, Deserialize)]
struct ExtraHeader {
    #[serde(default)]
    crit: Option<Value>,
}

/// Verifies bearer tokens for one instance; holds the configuration and the key-set cache.
pub struct Authenticator {
    config: AuthConfig,
    cache: JwksCache,
    verified: verified::VerifiedTokens,
}

impl Authenticator {
    pub fn new(config: AuthConfig) -> Self {
        Self {
            config,
            cache: JwksCache::new(),
            verified: verified::VerifiedTokens::default(),
        }
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    pub fn cache(&self) -> &JwksCache {
        &self.cache
    }

    /// `authorization` is the raw Authorization header value (`"Bearer <jwt>"`), if any, as
    /// bytes: a token the instance verified before is found by its bytes alone, so the ≈ 1 KB
    /// value is read as text (checked to be visible ASCII) only when it is verified.
    pub async fn authenticate<P: Platform, V: SignatureVerifier>(
        &self,
        platform: &P,
        verifier: &V,
        authorization: Option<&[u8]>,
    ) -> Result<Rc<Principal>, AuthError> {
        let token = bearer(authorization, self.config.max_token_bytes)?;
        let now = platform.now();
        // A cached token is these exact bytes, which passed every check below when it was
        // verified: only its times are checked again.
        if let Some(hit) = self.verified.get(token, now) {
            crate::ports::note(platform, |t| t.note_cache(Cache::Token, true));
            check_times(&hit.claims, hit.leeway, now)?;
            return Ok(hit.principal);
        }
        // Not UTF-8 is not a compact JWS (which `verify` checks the characters of).
        let token = std::str::from_utf8(token).map_err(|_| AuthError::Malformed)?;
        crate::ports::cold(self.verify(platform, verifier, token)).await
    }

    /// A token the instance has not verified yet: every check, then the cache.
    async fn verify<P: Platform, V: SignatureVerifier>(
        &self,
        platform: &P,
        verifier: &V,
        token: &str,
    ) -> Result<Rc<Principal>, AuthError> {
        check_compact_shape(token)?;
        crate::ports::note(platform, |t| t.note_cache(Cache::Token, false));
        let untrusted =
            UntrustedToken::<ExtraHeader>::try_from(token).map_err(|_| AuthError::Malformed)?;
        let alg =
            Algorithm::from_name(untrusted.algorithm()).ok_or(AuthError::UnsupportedAlgorithm)?;
        if token.ends_with('.') {
            return Err(AuthError::Malformed);
        }
        let header = untrusted.header();
        if header.other_fields.crit.is_some() {
            return Err(AuthError::Malformed);
        }
        let kid = header
            .key_id
            .as_deref()
            .filter(|k| !k.is_empty())
            .ok_or(AuthError::Malformed)?;
        let claims: Claims<Map<String, Value>> = untrusted
            .deserialize_claims_unchecked()
            .map_err(|_| AuthError::Malformed)?;

        // The issuer is chosen by the unverified `iss`; nothing else is read before the signature
        // is checked with that issuer's key.
        let iss = claims
            .custom
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(AuthError::MissingClaim("iss"))?;
        let issuer = self.config.issuer(iss).ok_or(AuthError::WrongIssuer)?;
        let jwk = self
            .cache
            .key(platform, &self.config.jwks, &issuer.jwks_url, kid)
            .await?;
        jwk.check_usable_with(alg)?;
        let (signing_input, _) = token.rsplit_once('.').ok_or(AuthError::Malformed)?;
        let signed = verifier
            .verify(
                alg,
                &jwk,
                signing_input.as_bytes(),
                untrusted.signature_bytes(),
            )
            .await?;
        if !signed {
            return Err(AuthError::BadSignature);
        }

        let principal = Rc::new(self.validated(platform, issuer, &claims)?);
        // Only a token that passed every check is remembered (an expired one would be
        // refused on every request anyway).
        let verified = verified::Verified {
            claims: Rc::new(claims),
            principal: principal.clone(),
            leeway: issuer.leeway,
        };
        self.verified.insert(token, verified, platform.now());
        Ok(principal)
    }

    fn validated<P: Platform>(
        &self,
        platform: &P,
        issuer: &IssuerConfig,
        claims: &Claims<Map<String, Value>>,
    ) -> Result<Principal, AuthError> {
        let exp = check_times(claims, issuer.leeway, platform.now())?;

        let c = &claims.custom;
        let token_use = match c.get("token_use") {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(AuthError::WrongTokenUse),
        };
        let kind = match token_use {
            Some("id") => TokenUse::Id,
            Some("access") => TokenUse::Access,
            Some(_) => return Err(AuthError::WrongTokenUse),
            None => TokenUse::Absent,
        };
        if !issuer.token_use.contains(&kind) {
            return Err(AuthError::WrongTokenUse);
        }
        if let Some(allowed) = &issuer.client_ids {
            let ok = match kind {
                // Cognito access tokens carry the app client in `client_id` and have no `aud`.
                TokenUse::Access => c
                    .get("client_id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| allowed.iter().any(|a| a == id)),
                TokenUse::Id | TokenUse::Absent => audiences(c.get("aud"))
                    .iter()
                    .any(|aud| allowed.iter().any(|a| a == aud)),
            };
            if !ok {
                return Err(AuthError::WrongAudience);
            }
        }

        let mapping = &self.config.claims;
        let subject = claim(c, &mapping.user_id)
            .and_then(scalar)
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::MissingClaim("user_id"))?;
        let tenant_id = mapping
            .tenant
            .iter()
            .find_map(|name| claim(c, name).and_then(scalar).filter(|s| !s.is_empty()));
        let mut roles: Vec<String> = Vec::new();
        for name in &mapping.roles {
            for role in claim(c, name).map(strings).unwrap_or_default() {
                if !role.is_empty() && !roles.contains(&role) {
                    roles.push(role);
                }
            }
        }
        let tier = claim(c, &mapping.tier)
            .and_then(scalar)
            .filter(|s| !s.is_empty());
        let email = c
            .get("email")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|e| !e.is_empty() && e.len() <= 254)
            .map(str::to_ascii_lowercase);
        let email_verified = matches!(c.get("email_verified"), Some(Value::Bool(true)))
            || c.get("email_verified").and_then(Value::as_str) == Some("true");
        let name = ["name", "cognito:username", "preferred_username"]
            .iter()
            .find_map(|n| c.get(*n).and_then(Value::as_str))
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| n.chars().take(200).collect());
        Ok(Principal {
            subject,
            email,
            email_verified,
            name,
            tenant_id,
            roles,
            tier,
            issuer: issuer.issuer.clone(),
            token_use: token_use.map(str::to_owned),
            expires_at: u64::try_from(exp.timestamp()).unwrap_or(0),
            platform_admin_issuer: issuer.platform_admin,
            membership: issuer.membership,
            kept_user_key: UserKey::default(),
        })
    }
}

/// The checks on a token's times, at `now` with the issuer's `leeway`: run on every request,
/// a cached token's included. Returns `exp`.
fn check_times(
    claims: &verified::TokenClaims,
    leeway: std::time::Duration,
    now: std::time::SystemTime,
) -> Result<DateTime<Utc>, AuthError> {
    let now: DateTime<Utc> = now.into();
    let leeway = chrono::Duration::from_std(leeway).map_err(|_| AuthError::Malformed)?;
    let time = TimeOptions::new(leeway, move || now);
    let exp = match claims.validate_expiration(&time) {
        Ok(c) => c.expiration.ok_or(AuthError::MissingClaim("exp"))?,
        Err(ValidationError::NoClaim(_)) => return Err(AuthError::MissingClaim("exp")),
        Err(_) => return Err(AuthError::Expired),
    };
    if claims.not_before.is_some() && claims.validate_maturity(&time).is_err() {
        return Err(AuthError::NotYetValid);
    }
    // jwt-compact has no `iat` rule; a token "issued" beyond the leeway is forged or from a
    // broken clock.
    if claims.issued_at.is_some_and(|iat| iat > now + leeway) {
        return Err(AuthError::IssuedInFuture);
    }
    Ok(exp)
}

/// The token from `Bearer <token>`, length-checked before anything looks inside it.
fn bearer(authorization: Option<&[u8]>, max: usize) -> Result<&[u8], AuthError> {
    let value = authorization.map(<[u8]>::trim_ascii).unwrap_or_default();
    if value.is_empty() {
        return Err(AuthError::Missing);
    }
    // "Bearer " plus the cap: anything longer is refused without being split or scanned.
    if value.len() > max.saturating_add(7) {
        return Err(AuthError::TooLarge);
    }
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return Err(if value.eq_ignore_ascii_case(b"bearer") {
            AuthError::Missing
        } else {
            AuthError::Malformed
        });
    };
    let (scheme, token) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(AuthError::Malformed);
    }
    let token = token.trim_ascii_start();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    if token.len() > max {
        return Err(AuthError::TooLarge);
    }
    Ok(token)
}

/// Exactly three non-empty base64url segments, no padding, nothing else (RFC 7515 §7.1). The
/// decoder is strict too; this also refuses JWE (five parts) and stray characters up front.
fn check_compact_shape(token: &str) -> Result<(), AuthError> {
    let mut parts = 0;
    for part in token.split('.') {
        parts += 1;
        // An empty signature is judged after the header, so `alg: none` tokens (which have
        // none) are reported as the unsupported algorithm they are.
        if (part.is_empty() && parts != 3)
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            // No unpadded base64 text has a length of 4k+1.
            || part.len() % 4 == 1
        {
            return Err(AuthError::Malformed);
        }
    }
    if parts == 3 {
        Ok(())
    } else {
        Err(AuthError::Malformed)
    }
}

/// A claim by exact name, else (for dotted names) by path through nested objects.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut v = claims.get(parts.next()?)?;
    let mut walked = false;
    for p in parts {
        v = v.as_object()?.get(p)?;
        walked = true;
    }
    walked.then_some(v)
}

/// A string claim, or a number rendered as one (some issuers emit numeric ids).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Role-like claims: a string is one role; an array contributes its string members.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn audiences(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}
