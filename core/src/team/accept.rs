//! Accepting an invitation (`POST /v1/invitations/{token}/accept`): a signed-in user, member
//! of this tenant or not, whose token carries the invited address verified, joins with the
//! invitation's role. The path's token is looked up by its hash within the host's tenant;
//! `invitation_accept` locks the invitation, so of concurrent accepts exactly one succeeds.

use serde::{Deserialize, Serialize};

use super::invitations::{members_limit, InvitationToken};
use super::TeamMember;
use crate::cx::{FromPath as _, Path, SignedIn};
use crate::error::{ApiError, Code};
use crate::identity;
use crate::input::normalize_email;
use crate::ports::Platform;
use crate::reply::{Cache, Reply};
use crate::sql::Statement;

/// What `invitation_accept` decided.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Acceptance {
    Accepted {
        member: TeamMember,
    },
    NotFound,
    Expired,
    Used,
    EmailUnverified,
    EmailMismatch,
    /// `{member}` too: the caller as they already are.
    AlreadyMember,
    TierLimit {
        limit: i64,
        count: Option<i64>,
    },
}

impl crate::outcome::Outcome for Acceptance {}

/// 403 `email_unverified`: accepting needs a verified address in the token.
fn email_unverified() -> ApiError {
    ApiError::new(
        Code::EmailUnverified,
        "Accepting an invitation needs a token with a verified email address.",
    )
}

/// `{member}`: how accepting answers.
#[derive(Serialize)]
struct Accepted<'m> {
    member: &'m TeamMember,
}

/// `POST /v1/invitations/{token}/accept`: the signed-in caller, whose token carries the
/// invited address verified, joins this tenant with the invitation's role. Once only.
pub async fn accept<P: Platform>(
    cx: SignedIn<'_, P>,
    Path(token): Path<InvitationToken>,
) -> Result<Reply, ApiError> {
    let email = match (&cx.principal.email, cx.principal.email_verified) {
        (Some(email), true) if !email.trim().is_empty() => normalize_email(email.trim()),
        _ => return Err(email_unverified()),
    };
    let outcome: Acceptance = cx
        .db
        .outcome(Statement::new(
            "SELECT public.invitation_accept($1, $2::uuid, $3, $4::boolean)",
            vec![
                Some(token.hash()),
                Some(cx.user.to_string()),
                Some(email),
                Some(cx.principal.email_verified.to_string()),
            ],
        ))
        .await?;
    match outcome {
        Acceptance::Accepted { member } => {
            // The caller was cached as no member here (that is how they reached this route).
            identity::invalidate_member(cx.env.platform, &cx.tenant.id, &cx.user).await;
            Ok(Reply::ok(&Accepted { member: &member }).cache(Cache::Private))
        }
        Acceptance::NotFound => Err(ApiError::not_found(InvitationToken::KIND)),
        Acceptance::Expired => Err(ApiError::new(
            Code::InvitationExpired,
            "This invitation has expired: ask for a new one.",
        )),
        Acceptance::Used => Err(ApiError::new(
            Code::InvitationUsed,
            "This invitation has been accepted already.",
        )),
        Acceptance::EmailUnverified => Err(email_unverified()),
        Acceptance::EmailMismatch => Err(ApiError::new(
            Code::EmailMismatch,
            "This invitation is for another email address than your token's.",
        )),
        Acceptance::AlreadyMember => {
            // Whatever was cached for the caller, the database says they are a member.
            identity::invalidate_member(cx.env.platform, &cx.tenant.id, &cx.user).await;
            Err(ApiError::new(
                Code::AlreadyMember,
                "You are a member of this tenant already.",
            ))
        }
        Acceptance::TierLimit { limit, count } => Err(members_limit(limit, count)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::auth::Principal;
    use crate::cx::Handler;
    use crate::testing::{member, user_of, Instance, TestPlatform};
    use bytes::Bytes;
    use futures_executor::block_on;
    use http::Response;
    use serde_json::json;

    type Answer = Result<Response<Bytes>, ApiError>;

    /// `POST /v1/invitations/{token}/accept` by `principal`.
    fn accept_as(i: &Instance, principal: Principal, token: &str) -> Answer {
        let uri = format!("/v1/invitations/{token}/accept");
        let parts = i.parts(
            "basic",
            Some(principal),
            Some(token),
            request(POST, &uri, None),
        );
        full(block_on(Handler::call(accept::<TestPlatform>, parts)))
    }

    /// Someone signed in with no role here (the token names another tenant).
    fn outsider(subject: &str) -> Principal {
        let mut p = member(subject, &[]);
        p.tenant_id = None;
        p.email = Some(format!("{}@Example.com", subject.to_uppercase()));
        p
    }

    #[test]
    fn tokens_of_another_shape_name_no_invitation() {
        let i = instance(json!(null));
        for bad in [&TOKEN[1..], "x", &format!("{}.", &TOKEN[1..])] {
            let err = accept_as(&i, outsider(BOB), bad).unwrap_err();
            assert_eq!(err.code(), Code::NotFound, "{bad}");
            assert!(err.detail().contains("invitation"));
        }
        assert!(i.platform.sent.borrow().is_empty());
    }

    #[test]
    fn accepting_needs_a_verified_email_before_any_sql() {
        let i = instance(json!(null));
        let mut unverified = outsider(BOB);
        unverified.email_verified = false;
        let mut none = outsider(BOB);
        none.email = None;
        for p in [unverified, none] {
            let err = accept_as(&i, p, TOKEN).unwrap_err();
            assert_eq!(err.code(), Code::EmailUnverified);
        }
        assert!(i.platform.sent.borrow().is_empty());
    }

    #[test]
    fn accepting_makes_a_member_and_forgets_the_cached_non_member() {
        let i = instance(json!({ "outcome": "accepted", "member": member_doc(BOB, "admin") }));
        let key = cache_role(&i, BOB, None);
        let resp = accept_as(&i, outsider(BOB), TOKEN).unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["cache-control"], "private, no-store");
        let body = json_body(&resp);
        assert_eq!(body["member"]["user_id"], user_of(BOB).to_string());
        assert_eq!(body["member"]["role"], "admin");
        let s = statements(&i);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0]["query"],
            "SELECT public.invitation_accept($1, $2::uuid, $3, $4::boolean)"
        );
        assert_eq!(
            s[0]["params"],
            json!([sha256_hex(TOKEN), user_of(BOB), "bob@example.com", "true"])
        );
        assert!(
            i.platform.kv_get(&key).is_none(),
            "bob's cached non-membership is gone"
        );
    }

    #[test]
    fn acceptance_refusals_map_to_problems() {
        for (doc, code, forgets) in [
            (json!({ "outcome": "not_found" }), Code::NotFound, false),
            (
                json!({ "outcome": "expired" }),
                Code::InvitationExpired,
                false,
            ),
            (json!({ "outcome": "used" }), Code::InvitationUsed, false),
            (
                json!({ "outcome": "email_mismatch" }),
                Code::EmailMismatch,
                false,
            ),
            (
                json!({ "outcome": "email_unverified" }),
                Code::EmailUnverified,
                false,
            ),
            (
                json!({ "outcome": "already_member", "member": member_doc(BOB, "member") }),
                Code::AlreadyMember,
                true,
            ),
            (
                json!({ "outcome": "tier_limit", "limit": 5, "count": 6 }),
                Code::TierLimitReached,
                false,
            ),
        ] {
            let i = instance(doc.clone());
            let key = cache_role(&i, BOB, None);
            let err = accept_as(&i, outsider(BOB), TOKEN).unwrap_err();
            assert_eq!(err.code(), code, "{doc}");
            assert_eq!(i.platform.sent.borrow().len(), 1);
            assert_eq!(i.platform.kv_get(&key).is_none(), forgets, "{doc}");
        }
    }
}
