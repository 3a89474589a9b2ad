//! The error-code table: every `code` a problem document can carry, with its HTTP status and
//! title, declared once (quinn-proto's `errors!` pattern). Clients switch on these strings, so
//! they are an API: a test lists them all, and no module spells one as a literal.
//!
//! This module is a leaf (it imports nothing from the crate) so that every layer, the verifier
//! included, can name its codes without depending on the problem renderer in `error`.

use std::fmt;

use http::StatusCode;

macro_rules! codes {
    ($( $(#[doc = $doc:literal])* $name:ident = ($status:ident, $code:literal, $title:literal); )*) => {
        /// A stable, machine-readable error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $( $(#[doc = $doc])* $name, )*
        }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$name),*];

            /// The wire form (`"sku_taken"`).
            pub const fn as_str(self) -> &'static str {
                match self { $(Code::$name => $code,)* }
            }

            /// The HTTP status every response with this code has.
            pub const fn status(self) -> StatusCode {
                match self { $(Code::$name => StatusCode::$status,)* }
            }

            /// The problem document's `title`: short and the same for every occurrence.
            pub const fn title(self) -> &'static str {
                match self { $(Code::$name => $title,)* }
            }
        }
    };
}

codes! {
    // 400
    /// The request could not be read (the runtime failed to read its body, …).
    BadRequest = (BAD_REQUEST, "bad_request", "Bad Request");
    /// The body or query failed validation; `errors` lists every offending field.
    ValidationFailed = (BAD_REQUEST, "validation_failed", "Invalid request");
    /// The Host header is missing or cannot name a tenant.
    InvalidHost = (BAD_REQUEST, "invalid_host", "Invalid Host");
    // 401: why a bearer token was refused (RFC 6750 `WWW-Authenticate` accompanies them).
    MissingToken = (UNAUTHORIZED, "missing_token", "Unauthorized");
    MalformedToken = (UNAUTHORIZED, "malformed_token", "Unauthorized");
    TokenTooLarge = (UNAUTHORIZED, "token_too_large", "Unauthorized");
    UnsupportedAlgorithm = (UNAUTHORIZED, "unsupported_algorithm", "Unauthorized");
    AlgorithmMismatch = (UNAUTHORIZED, "algorithm_mismatch", "Unauthorized");
    UnknownKey = (UNAUTHORIZED, "unknown_key", "Unauthorized");
    BadSignature = (UNAUTHORIZED, "bad_signature", "Unauthorized");
    Expired = (UNAUTHORIZED, "expired", "Unauthorized");
    NotYetValid = (UNAUTHORIZED, "not_yet_valid", "Unauthorized");
    IssuedInFuture = (UNAUTHORIZED, "issued_in_future", "Unauthorized");
    WrongIssuer = (UNAUTHORIZED, "wrong_issuer", "Unauthorized");
    WrongAudience = (UNAUTHORIZED, "wrong_audience", "Unauthorized");
    WrongTokenUse = (UNAUTHORIZED, "wrong_token_use", "Unauthorized");
    MissingClaim = (UNAUTHORIZED, "missing_claim", "Unauthorized");
    // 403
    /// The token belongs to another tenant than the Host's.
    TenantMismatch = (FORBIDDEN, "tenant_mismatch", "Forbidden");
    /// The caller's role is below what the route or the action needs.
    InsufficientRole = (FORBIDDEN, "insufficient_role", "Forbidden");
    /// A CORS preflight from an origin this tenant does not allow.
    OriginNotAllowed = (FORBIDDEN, "origin_not_allowed", "Forbidden");
    TenantSuspended = (FORBIDDEN, "tenant_suspended", "Tenant suspended");
    /// A tier limit would be exceeded; `resource`, `limit` and `count` say which.
    TierLimitReached = (FORBIDDEN, "tier_limit_reached", "Tier limit reached");
    /// The caller is signed in but holds no membership of this tenant.
    NotAMember = (FORBIDDEN, "not_a_member", "Forbidden");
    /// A platform API route called without a platform-admin token.
    PlatformAdminRequired = (FORBIDDEN, "platform_admin_required", "Forbidden");
    /// An invitation for another address than the token's verified email.
    EmailMismatch = (FORBIDDEN, "email_mismatch", "Forbidden");
    /// The action needs a verified email address in the token (`email_verified`).
    EmailUnverified = (FORBIDDEN, "email_unverified", "Forbidden");
    /// Self-service sign-up is turned off on this instance.
    SignupDisabled = (FORBIDDEN, "signup_disabled", "Forbidden");
    // 404
    /// No resource at this path, or no such id for this tenant (another tenant's ids look the same).
    NotFound = (NOT_FOUND, "not_found", "Not Found");
    /// The Host is a reserved name (www, api, …) or the bare base domain.
    ReservedHost = (NOT_FOUND, "reserved_host", "Not a tenant");
    TenantNotFound = (NOT_FOUND, "tenant_not_found", "Unknown tenant");
    // 405
    MethodNotAllowed = (METHOD_NOT_ALLOWED, "method_not_allowed", "Method Not Allowed");
    // 409
    /// The `Idempotency-Key` was used with a different request body.
    IdempotencyKeyReused = (CONFLICT, "idempotency_key_reused", "Conflict");
    SkuTaken = (CONFLICT, "sku_taken", "Conflict");
    /// `complete` was called before anything was uploaded.
    UploadMissing = (CONFLICT, "upload_missing", "Conflict");
    /// Checkout: not enough stock; `items` names each short line.
    OutOfStock = (CONFLICT, "out_of_stock", "Conflict");
    /// An order status change the state machine forbids; `from` and `allowed` say what is.
    InvalidTransition = (CONFLICT, "invalid_transition", "Conflict");
    /// The change would leave the tenant without an owner.
    LastOwner = (CONFLICT, "last_owner", "Conflict");
    SlugTaken = (CONFLICT, "slug_taken", "Conflict");
    /// The hostname is verified by another tenant.
    DomainTaken = (CONFLICT, "domain_taken", "Conflict");
    /// The user already belongs to this tenant (or, for sign-up, to a tenant).
    AlreadyMember = (CONFLICT, "already_member", "Conflict");
    /// The invitation has been accepted already.
    InvitationUsed = (CONFLICT, "invitation_used", "Conflict");
    // 410
    TenantDeleted = (GONE, "tenant_deleted", "Tenant deleted");
    InvitationExpired = (GONE, "invitation_expired", "Invitation expired");
    /// `complete` after the upload's URLs expired: the pending file is gone; start a new upload.
    UploadExpired = (GONE, "upload_expired", "Upload expired");
    // 412
    /// `If-Match` named a version that is no longer current; `current_etag` names the current one.
    PreconditionFailed = (PRECONDITION_FAILED, "precondition_failed", "Precondition failed");
    // 413, 415
    PayloadTooLarge = (PAYLOAD_TOO_LARGE, "payload_too_large", "Payload too large");
    UnsupportedMediaType = (UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Unsupported media type");
    // 422: well-formed, but not acceptable given what it refers to.
    ImageNotReady = (UNPROCESSABLE_ENTITY, "image_not_ready", "Unprocessable content");
    ContentTypeNotAllowed = (UNPROCESSABLE_ENTITY, "content_type_not_allowed", "Unprocessable content");
    FileTooLarge = (UNPROCESSABLE_ENTITY, "file_too_large", "Unprocessable content");
    ObjectEmpty = (UNPROCESSABLE_ENTITY, "object_empty", "Unprocessable content");
    ObjectTooLarge = (UNPROCESSABLE_ENTITY, "object_too_large", "Unprocessable content");
    ContentTypeMismatch = (UNPROCESSABLE_ENTITY, "content_type_mismatch", "Unprocessable content");
    /// Checkout: items unknown, or not for sale (draft, archived); `items` lists their ids.
    ItemUnavailable = (UNPROCESSABLE_ENTITY, "item_unavailable", "Unprocessable content");
    DonationsDisabled = (UNPROCESSABLE_ENTITY, "donations_disabled", "Unprocessable content");
    /// The domain's DNS TXT record does not carry its verification token (yet).
    DomainNotVerified = (UNPROCESSABLE_ENTITY, "domain_not_verified", "Unprocessable content");
    // 429 (with `Retry-After` when known)
    QuotaExhausted = (TOO_MANY_REQUESTS, "quota_exhausted", "Too many requests");
    VisitorLimit = (TOO_MANY_REQUESTS, "visitor_limit", "Too many requests");
    /// Too many requests of this kind from this caller; `Retry-After` says when to come back.
    RateLimited = (TOO_MANY_REQUESTS, "rate_limited", "Too many requests");
    // 5xx
    /// The instance's configuration is unusable; `setting` names the culprit.
    Misconfigured = (INTERNAL_SERVER_ERROR, "misconfigured", "Instance misconfigured");
    UpstreamUnavailable = (BAD_GATEWAY, "upstream_unavailable", "Upstream unavailable");
    /// Credentials cannot be checked right now (the issuer's keys are unreachable or unusable).
    JwksUnavailable = (SERVICE_UNAVAILABLE, "jwks_unavailable", "Cannot verify credentials");
    /// A deep health check failed; `failing` and `checks` say which dependency.
    DependencyUnavailable = (SERVICE_UNAVAILABLE, "dependency_unavailable", "Dependency unavailable");
    UpstreamTimeout = (GATEWAY_TIMEOUT, "upstream_timeout", "Upstream timeout");
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets tests and callers compare with the wire form: `assert_eq!(err.code(), "sku_taken")`.
impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table as clients see it. Adding, renaming or re-statusing a code changes the API:
    /// this list must change with it, on purpose.
    #[test]
    fn the_code_table_is_the_documented_api() {
        let listed: Vec<String> = Code::ALL
            .iter()
            .map(|c| format!("{} {}", c.status().as_u16(), c.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                "400 bad_request",
                "400 validation_failed",
                "400 invalid_host",
                "401 missing_token",
                "401 malformed_token",
                "401 token_too_large",
                "401 unsupported_algorithm",
                "401 algorithm_mismatch",
                "401 unknown_key",
                "401 bad_signature",
                "401 expired",
                "401 not_yet_valid",
                "401 issued_in_future",
                "401 wrong_issuer",
                "401 wrong_audience",
                "401 wrong_token_use",
                "401 missing_claim",
                "403 tenant_mismatch",
                "403 insufficient_role",
                "403 origin_not_allowed",
                "403 tenant_suspended",
                "403 tier_limit_reached",
                "403 not_a_member",
                "403 platform_admin_required",
                "403 email_mismatch",
                "403 email_unverified",
                "403 signup_disabled",
                "404 not_found",
                "404 reserved_host",
                "404 tenant_not_found",
                "405 method_not_allowed",
                "409 idempotency_key_reused",
                "409 sku_taken",
                "409 upload_missing",
                "409 out_of_stock",
                "409 invalid_transition",
                "409 last_owner",
                "409 slug_taken",
                "409 domain_taken",
                "409 already_member",
                "409 invitation_used",
                "410 tenant_deleted",
                "410 invitation_expired",
                "410 upload_expired",
                "412 precondition_failed",
                "413 payload_too_large",
                "415 unsupported_media_type",
                "422 image_not_ready",
                "422 content_type_not_allowed",
                "422 file_too_large",
                "422 object_empty",
                "422 object_too_large",
                "422 content_type_mismatch",
                "422 item_unavailable",
                "422 donations_disabled",
                "422 domain_not_verified",
                "429 quota_exhausted",
                "429 visitor_limit",
                "429 rate_limited",
                "500 misconfigured",
                "502 upstream_unavailable",
                "503 jwks_unavailable",
                "503 dependency_unavailable",
                "504 upstream_timeout",
            ]
        );
    }

    #[test]
    fn codes_are_unique_snake_case_and_statuses_are_errors() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "duplicate {c}");
            assert!(c
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(c.status().is_client_error() || c.status().is_server_error());
            assert!(!c.title().is_empty());
        }
    }
}
