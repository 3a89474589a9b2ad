//! What the verifier trusts: issuers, their audiences and token kinds, and where tenant, roles and
//! tier live in the claims. Parsed once from JSON settings; a bad value is an error, never a panic.

use std::time::Duration;

use serde::Deserialize;

/// Which kinds of token an issuer may present, by Cognito's `token_use` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    /// Cognito ID token (`token_use: "id"`); audience in `aud`.
    Id,
    /// Cognito access token (`token_use: "access"`); audience in `client_id`.
    Access,
    /// A token without a `token_use` claim (Auth0, Keycloak, Entra ID, …); audience in `aud`.
    /// Listing it never lets a token that *does* carry a `token_use` through.
    Absent,
}

/// Where a tenant route takes the caller's tenant and role from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MembershipMode {
    /// Our database (`tenant_members`) says which tenants a user belongs to and with what
    /// role; tenant and role claims are ignored for authorization. The default: custom
    /// attributes such as Cognito's `custom:*` are often writable by the user themselves.
    #[default]
    Membership,
    /// The token's tenant and role claims decide, for identity providers whose claims only
    /// administrators can set.
    Claims,
}

/// One trusted issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    /// Compared byte for byte with the token's `iss`.
    pub issuer: String,
    /// Where the issuer publishes its keys; defaults to `{issuer}/.well-known/jwks.json`.
    pub jwks_url: String,
    /// Allowed audiences: `client_id` for access tokens, `aud` otherwise. `None` skips the check,
    /// which must be asked for explicitly (`"client_ids": null`) so an omission is not a hole.
    pub client_ids: Option<Vec<String>>,
    /// Allowed `token_use` values.
    pub token_use: Vec<TokenUse>,
    /// Tolerated clock skew for `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Tokens from this issuer may carry the platform-admin role (decided by the caller).
    pub platform_admin: bool,
    /// Where tenant and role come from for this issuer's users.
    pub membership: MembershipMode,
}

/// Where the claims the edge needs are found. Names are tried as top-level claims first; a name
/// with dots that is not a top-level claim is followed as a path (`realm_access.roles`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimsMapping {
    /// Candidates for the tenant id; the first present wins.
    pub tenant: Vec<String>,
    /// The user id claim; required in every token.
    pub user_id: String,
    /// Role claims (string or array of strings); all present ones are merged.
    pub roles: Vec<String>,
    /// The tenant's tier (plan).
    pub tier: String,
}

impl Default for ClaimsMapping {
    fn default() -> Self {
        Self {
            tenant: vec!["custom:tenant_id".into(), "org_id".into()],
            user_id: "sub".into(),
            roles: vec!["cognito:groups".into(), "custom:role".into()],
            tier: "custom:tenant_tier".into(),
        }
    }
}

/// How key sets are fetched and cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksPolicy {
    /// Deadline for one JWKS fetch (and for each key-value read or write).
    pub fetch_timeout: Duration,
    /// A key set younger than this is used without asking the issuer.
    pub ttl: Duration,
    /// After failed refreshes, keys last seen keep working this long (an issuer outage must not
    /// log everybody out); also the key-value TTL, so a fresh instance inherits them.
    pub max_stale: Duration,
    /// At most one fetch per JWKS URL in this window: bounds the refetches that tokens with
    /// unknown `kid`s (or an unreachable issuer) can cause, as aws-jwt-verify's penalty box does.
    pub refetch_penalty: Duration,
    /// Larger JWKS documents are refused.
    pub max_jwks_bytes: usize,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        Self {
            fetch_timeout: Duration::from_secs(3),
            ttl: Duration::from_secs(3600),
            max_stale: Duration::from_secs(24 * 3600),
            refetch_penalty: Duration::from_secs(10),
            max_jwks_bytes: 64 * 1024,
        }
    }
}

/// Everything the [`super::Authenticator`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub issuers: Vec<IssuerConfig>,
    pub claims: ClaimsMapping,
    /// Longer tokens are refused before any parsing.
    pub max_token_bytes: usize,
    pub jwks: JwksPolicy,
}

pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
const MAX_LEEWAY_SECONDS: u64 = 600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerJson {
    issuer: String,
    #[serde(default)]
    jwks_url: Option<String>,
    // Required but nullable: serde treats a missing Option as None, so presence is checked by
    // deserializing into a double Option.
    #[serde(default, deserialize_with = "present")]
    client_ids: Option<Option<Vec<String>>>,
    token_use: Vec<TokenUse>,
    #[serde(default)]
    leeway_seconds: Option<u64>,
    #[serde(default)]
    platform_admin: bool,
    #[serde(default)]
    membership: MembershipMode,
}

fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl AuthConfig {
    /// Builds the configuration from the issuers setting (a JSON array) and an optional claims
    /// mapping (a JSON object; omitted members keep their defaults).
    pub fn from_json(issuers_json: &str, claims_json: Option<&str>) -> Result<Self, String> {
        let raw: Vec<IssuerJson> =
            serde_json::from_slice(issuers_json.as_bytes()).map_err(|e| format!("issuers: {e}"))?;
        if raw.is_empty() {
            return Err("issuers: must list at least one issuer".into());
        }
        let mut issuers: Vec<IssuerConfig> = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let at = format!("issuers[{i}]");
            if !is_http_url(&r.issuer) {
                return Err(format!("{at}.issuer: must be an http(s) URL"));
            }
            if issuers.iter().any(|x| x.issuer == r.issuer) {
                return Err(format!("{at}.issuer: listed twice"));
            }
            let jwks_url = match r.jwks_url {
                Some(u) if is_http_url(&u) => u,
                Some(_) => return Err(format!("{at}.jwks_url: must be an http(s) URL")),
                None => format!("{}/.well-known/jwks.json", r.issuer.trim_end_matches('/')),
            };
            let client_ids = match r.client_ids {
                None => {
                    return Err(format!(
                        "{at}.client_ids: is required (null skips the audience check)"
                    ))
                }
                Some(None) => None,
                Some(Some(ids)) if ids.is_empty() || ids.iter().any(String::is_empty) => {
                    return Err(format!(
                        "{at}.client_ids: must list non-empty ids, or be null to skip the check"
                    ))
                }
                Some(Some(ids)) => Some(ids),
            };
            if r.token_use.is_empty() {
                return Err(format!("{at}.token_use: must list id, access or absent"));
            }
            let leeway = r.leeway_seconds.unwrap_or(60);
            if leeway > MAX_LEEWAY_SECONDS {
                return Err(format!(
                    "{at}.leeway_seconds: must be at most {MAX_LEEWAY_SECONDS}"
                ));
            }
            issuers.push(IssuerConfig {
                issuer: r.issuer,
                jwks_url,
                client_ids,
                token_use: r.token_use,
                leeway: Duration::from_secs(leeway),
                platform_admin: r.platform_admin,
                membership: r.membership,
            });
        }
        let claims = match claims_json {
            None => ClaimsMapping::default(),
            Some(s) => serde_json::from_slice(s.as_bytes()).map_err(|e| format!("claims: {e}"))?,
        };
        if claims.user_id.is_empty() {
            return Err("claims.user_id: must name a claim".into());
        }
        Ok(Self {
            issuers,
            claims,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            jwks: JwksPolicy::default(),
        })
    }

    pub(crate) fn issuer(&self, iss: &str) -> Option<&IssuerConfig> {
        self.issuers.iter().find(|i| i.issuer == iss)
    }
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/'))
        && !s.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Abc";

    #[test]
    fn cognito_issuer_parses_with_defaults() {
        let c = AuthConfig::from_json(
            &format!(r#"[{{"issuer":"{POOL}","client_ids":["abc"],"token_use":["id","access"]}}]"#),
            None,
        )
        .unwrap();
        let i = &c.issuers[0];
        assert_eq!(i.jwks_url, format!("{POOL}/.well-known/jwks.json"));
        assert_eq!(i.client_ids, Some(vec!["abc".to_owned()]));
        assert_eq!(i.token_use, vec![TokenUse::Id, TokenUse::Access]);
        assert_eq!(i.leeway, Duration::from_secs(60));
        assert!(!i.platform_admin);
        assert_eq!(i.membership, MembershipMode::Membership);
        assert_eq!(c.claims, ClaimsMapping::default());
        assert_eq!(c.max_token_bytes, 8192);
    }

    #[test]
    fn claims_mapping_overrides_only_what_it_names() {
        let c = AuthConfig::from_json(
            r#"[{"issuer":"https://kc.example/realms/x","client_ids":null,"token_use":["absent"],
                 "jwks_url":"https://kc.example/certs","leeway_seconds":5,"platform_admin":true,
                 "membership":"claims"}]"#,
            Some(r#"{"roles":["realm_access.roles"],"tenant":["tid"]}"#),
        )
        .unwrap();
        assert_eq!(c.issuers[0].client_ids, None);
        assert_eq!(c.issuers[0].jwks_url, "https://kc.example/certs");
        assert!(c.issuers[0].platform_admin);
        assert_eq!(c.issuers[0].membership, MembershipMode::Claims);
        assert_eq!(c.claims.roles, vec!["realm_access.roles"]);
        assert_eq!(c.claims.user_id, "sub");
    }

    #[test]
    fn bad_settings_are_refused_with_their_path() {
        for (json, want) in [
            ("[]", "at least one"),
            ("{}", "issuers:"),
            (
                r#"[{"issuer":"x","client_ids":["a"],"token_use":["id"]}]"#,
                "issuers[0].issuer",
            ),
            (
                r#"[{"issuer":"https://a","token_use":["id"]}]"#,
                "client_ids: is required",
            ),
            (
                r#"[{"issuer":"https://a","client_ids":[],"token_use":["id"]}]"#,
                "client_ids",
            ),
            (
                r#"[{"issuer":"https://a","client_ids":["a"],"token_use":[]}]"#,
                "token_use",
            ),
            (
                r#"[{"issuer":"https://a","client_ids":["a"],"token_use":["refresh"]}]"#,
                "issuers:",
            ),
            (
                r#"[{"issuer":"https://a","client_ids":["a"],"token_use":["id"],"leeway_seconds":9999}]"#,
                "leeway_seconds",
            ),
            (
                r#"[{"issuer":"https://a","client_ids":["a"],"token_use":["id"],"audience":"typo"}]"#,
                "unknown field",
            ),
            (
                r#"[{"issuer":"https://a","client_ids":["a"],"token_use":["id"]},
                    {"issuer":"https://a","client_ids":["a"],"token_use":["id"]}]"#,
                "twice",
            ),
        ] {
            let err = AuthConfig::from_json(json, None).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
        let err = AuthConfig::from_json(
            r#"[{"issuer":"https://a","client_ids":["a"],"token_use":["id"]}]"#,
            Some(r#"{"user_id":""}"#),
        )
        .unwrap_err();
        assert!(err.contains("user_id"));
    }
}
