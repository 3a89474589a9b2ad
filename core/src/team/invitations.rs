//! Invitations: admins invite an email address with a role (`POST /v1/members/invitations`),
//! list the pending ones and revoke them; the invitee, signed in with that verified address,
//! accepts (`super::accept`) and becomes a member.
//!
//! The token is the invitation's only credential: 32 random bytes from the entropy port,
//! base64url without padding (43 characters), shown once in the creating response. The
//! database keeps only its SHA-256 (hex), so a leaked table accepts nothing; accepting looks
//! the invitation up by that hash, within the host's tenant.

use std::fmt;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};
use sha2::{Digest, Sha256};

use super::members::above_own_role;
use super::{read_role, role_name, MAX_BODY, ROLES};
use crate::authz::Role;
use crate::cx::{FromPath, Json, Member, Path, Query};
use crate::error::{ApiError, Code};
use crate::ids::{hex, Uuid};
use crate::input::{
    is_email, normalize_email, BodyCx, FromJson, FromQuery, JsonObject, QueryString, MAX_EMAIL,
};
use crate::page::{PageRequest, Select, Sort};
use crate::ports::{Entropy, Platform};
use crate::reply::{Cache, Reply};
use crate::resource_id;
use crate::sql::{Params, Statement};

/// Page size when none is asked for.
const DEFAULT_LIMIT: i64 = 50;

resource_id!(
    /// An invitation's id, as a path names it.
    pub InvitationId,
    "invitation"
);

/// An invitation's secret: what its accept path carries. Debug output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct InvitationToken(String);

impl InvitationToken {
    /// Random bytes in a token.
    const BYTES: usize = 32;
    /// Characters of a token: 32 bytes in base64url without padding.
    pub const LEN: usize = 43;

    /// A new token from the platform's entropy.
    pub fn generate<P: Entropy + ?Sized>(platform: &P) -> Result<Self, ApiError> {
        let mut bytes = [0u8; Self::BYTES];
        platform
            .fill(&mut bytes)
            .map_err(|e| ApiError::upstream(format!("no randomness: {e}")))?;
        Ok(Self(Base64UrlUnpadded::encode_string(&bytes)))
    }

    /// A token as a path carries it: exactly [`Self::LEN`] base64url characters; anything else
    /// can name no invitation.
    pub fn parse(s: &str) -> Option<Self> {
        let shaped = s.len() == Self::LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        shaped.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the database stores and looks invitations up by: SHA-256 of the token's text, as
    /// lower-case hex.
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes()))
    }

    /// `/v1/invitations/{token}/accept`, where the invitee accepts.
    pub fn accept_path(&self) -> String {
        format!("/v1/invitations/{}/accept", self.0)
    }
}

impl fmt::Debug for InvitationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InvitationToken(…)")
    }
}

impl FromPath for InvitationToken {
    const KIND: &'static str = "invitation";
    fn from_path(segment: &str) -> Option<Self> {
        Self::parse(segment)
    }
}

/// Where an invitation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

/// An invitation as the API shows it (never its token or hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invitation {
    pub id: Uuid,
    /// Lower-case.
    pub email: String,
    #[serde(with = "role_name")]
    pub role: Role,
    pub status: InvitationStatus,
    pub created_at: String,
    pub expires_at: String,
    pub accepted_at: Option<String>,
}

/// Listing orders; the first is the default (newest first).
const SORTS: &[Sort] = &[
    Sort {
        name: "-created_at",
        column: "i.created_at",
        key: "public.iso_utc(i.created_at)",
        cast: "timestamptz",
        descending: true,
    },
    Sort {
        name: "created_at",
        column: "i.created_at",
        key: "public.iso_utc(i.created_at)",
        cast: "timestamptz",
        descending: false,
    },
];

/// `GET /v1/members/invitations?role=&sort=&limit=&cursor=`.
pub struct InvitationListing {
    page: PageRequest,
    role: Option<Role>,
}

impl FromQuery for InvitationListing {
    fn from_query(q: &mut QueryString, _: &BodyCx<'_>) -> Self {
        let page = PageRequest::read(q, SORTS, DEFAULT_LIMIT);
        let role = q.one_of("role", ROLES).as_deref().and_then(Role::parse);
        Self { page, role }
    }
}

/// `GET /v1/members/invitations`: the pending invitations, newest first.
pub async fn invitations<P: Platform>(
    cx: Member<'_, P>,
    Query(listing): Query<InvitationListing>,
) -> Result<Reply, ApiError> {
    let mut params = Params::new();
    let mut filters = Vec::new();
    if let Some(role) = listing.role {
        filters.push(format!("i.doc->>'role' = {}", params.bind(role.as_str())));
    }
    let stmt = listing.page.statement(
        Select {
            doc: "i.doc",
            from: "public.invitation_rows() i",
            id: "i.id",
            filters,
        },
        params,
    );
    let page = listing.page.page::<Invitation>(&cx.db.one(stmt).await?)?;
    Ok(Reply::ok(&page).cache(Cache::Private))
}

/// `POST /v1/members/invitations`'s body: `{email, role}`.
pub struct NewInvitation {
    /// Lower-cased.
    email: String,
    role: Role,
}

impl FromJson for NewInvitation {
    const MAX_BODY: usize = MAX_BODY;

    fn from_json(o: &mut JsonObject, _: &BodyCx<'_>) -> Option<Self> {
        let email = o.string("email", true, MAX_EMAIL);
        if email.as_deref().is_some_and(|e| !is_email(e)) {
            o.error(
                "email",
                "invalid_value",
                "must be an email address such as ann@example.com",
            );
        }
        let role = read_role(o);
        Some(Self {
            email: normalize_email(&email.filter(|e| is_email(e))?),
            role: role?,
        })
    }
}

/// What `invitation_create` decided.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Creation {
    Created {
        invitation: Invitation,
    },
    Forbidden {
        #[serde(default)]
        reason: String,
    },
    AlreadyMember,
    TierLimit {
        limit: i64,
        /// Members and pending invitations, when the function says; else at the limit.
        count: Option<i64>,
    },
}

impl crate::outcome::Outcome for Creation {}

/// What `invitation_revoke` decided.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Revocation {
    /// `{invitation}` too, as it now stands.
    Revoked,
    NotFound,
}

impl crate::outcome::Outcome for Revocation {}

/// The members tier limit, reached.
pub(super) fn members_limit(limit: i64, count: Option<i64>) -> ApiError {
    ApiError::tier_limit("members", limit, count.unwrap_or(limit))
}

/// `{invitation, token, accept_path}`: the creating response, the only one with the token.
#[derive(Serialize)]
struct Created<'a> {
    invitation: &'a Invitation,
    token: &'a str,
    accept_path: String,
}

/// `POST /v1/members/invitations` `{email, role}`: invites an address to join with a role no
/// higher than the caller's own. A pending invitation for the same address is superseded.
pub async fn invite<P: Platform>(
    cx: Member<'_, P>,
    Json(new): Json<NewInvitation>,
) -> Result<Reply, ApiError> {
    if new.role > cx.role {
        return Err(above_own_role(new.role, cx.role));
    }
    let id = Uuid::random(cx.env.platform)?;
    let token = InvitationToken::generate(cx.env.platform)?;
    let ttl = cx.env.config.platform.invitation_ttl.as_secs();
    let outcome: Creation = cx
        .db
        .outcome(Statement::new(
            "SELECT public.invitation_create($1::uuid, $2, $3::uuid, $4, $5, $6, $7::int)",
            vec![
                Some(cx.user().to_owned()),
                Some(cx.role.as_str().to_owned()),
                Some(id.to_string()),
                Some(new.email),
                Some(new.role.as_str().to_owned()),
                Some(token.hash()),
                Some(ttl.to_string()),
            ],
        ))
        .await?;
    match outcome {
        Creation::Created { invitation } => {
            let location = format!("/v1/members/invitations/{}", invitation.id);
            let body = Created {
                invitation: &invitation,
                token: token.as_str(),
                accept_path: token.accept_path(),
            };
            Ok(Reply::created(&location, &body).cache(Cache::Private))
        }
        Creation::Forbidden { reason } => {
            let mut m = Map::new();
            m.insert("reason".into(), json!(reason));
            Err(ApiError::new(
                Code::InsufficientRole,
                format!("Your role does not allow this invitation: {reason}."),
            )
            .with_members(m))
        }
        Creation::AlreadyMember => Err(ApiError::new(
            Code::AlreadyMember,
            "A member of this tenant already has this email address.",
        )),
        Creation::TierLimit { limit, count } => Err(members_limit(limit, count)),
    }
}

/// `DELETE /v1/members/invitations/{id}`: revokes a pending invitation; its token accepts
/// nothing from now on.
pub async fn revoke<P: Platform>(
    cx: Member<'_, P>,
    Path(id): Path<InvitationId>,
) -> Result<Reply, ApiError> {
    let outcome: Revocation = cx
        .db
        .outcome(Statement::new(
            "SELECT public.invitation_revoke($1::uuid)",
            vec![Some(id.to_string())],
        ))
        .await?;
    match outcome {
        Revocation::Revoked => Ok(Reply::no_content()),
        Revocation::NotFound => Err(ApiError::not_found(InvitationId::KIND)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::cx::Handler;
    use crate::error::Extra;
    use crate::testing::{member, user_of, Instance, TestPlatform};
    use bytes::Bytes;
    use futures_executor::block_on;
    use http::Response;
    use serde_json::{json, Value};

    type Answer = Result<Response<Bytes>, ApiError>;

    /// `POST /v1/members/invitations` with `body`, by alice with `role`.
    fn post(i: &Instance, role: &str, body: &str) -> Answer {
        let parts = i.parts(
            "basic",
            Some(member(ALICE, &[role])),
            None,
            request(POST, "/v1/members/invitations", Some(body)),
        );
        full(block_on(Handler::call(invite::<TestPlatform>, parts)))
    }

    #[test]
    fn tokens_are_43_base64url_characters_hashed_as_sha256_hex() {
        let p = TestPlatform::new(Box::new(|_| unreachable!()));
        p.entropy.set(0xfb);
        let t = InvitationToken::generate(&p).unwrap();
        assert_eq!(t.as_str().len(), InvitationToken::LEN);
        assert_eq!(
            Base64UrlUnpadded::decode_vec(t.as_str()).unwrap(),
            vec![0xfb; 32]
        );
        // 0xfb… uses both of base64url's non-alphanumeric characters.
        assert!(
            t.as_str().contains('-') && t.as_str().contains('_'),
            "{t:?}"
        );
        assert_eq!(InvitationToken::parse(t.as_str()), Some(t.clone()));
        assert_eq!(t.hash(), sha256_hex(t.as_str()));
        assert_eq!(t.hash().len(), 64);
        assert_eq!(format!("{t:?}"), "InvitationToken(…)");
        assert_eq!(
            t.accept_path(),
            format!("/v1/invitations/{}/accept", t.as_str())
        );
        for bad in [
            &TOKEN[1..],
            &format!("{TOKEN}A"),
            &format!("{}=", &TOKEN[1..]),
            &format!("{}+", &TOKEN[1..]),
            &format!("{}/", &TOKEN[1..]),
            &format!("{}é", &TOKEN[2..]),
            "",
        ] {
            assert!(InvitationToken::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn invitations_are_validated_field_by_field_before_sql() {
        let i = instance(json!(null));
        for (body, fields) in [
            (
                r#"{"email":"not an address","role":"boss","colour":"red"}"#,
                vec!["colour", "email", "role"],
            ),
            (r#"{}"#, vec!["email", "role"]),
            (
                &format!(
                    r#"{{"email":"{}@example.com","role":"member"}}"#,
                    "a".repeat(250)
                ),
                vec!["email"],
            ),
            (r#"{"email":"a@b.co","role":"Owner"}"#, vec!["role"]),
        ] {
            let err = post(&i, "owner", body).unwrap_err();
            assert_eq!(err.code(), Code::ValidationFailed);
            let mut got: Vec<_> = err.field_errors().iter().map(|e| e.field.clone()).collect();
            got.sort();
            assert_eq!(got, fields, "{body}");
        }
        assert!(i.platform.sent.borrow().is_empty());
    }

    #[test]
    fn only_owners_invite_owners() {
        let i = instance(json!(null));
        let err = post(&i, "admin", r#"{"email":"a@b.co","role":"owner"}"#).unwrap_err();
        assert_eq!(err.code(), Code::InsufficientRole);
        assert!(
            i.platform.sent.borrow().is_empty(),
            "refused before any SQL"
        );
    }

    #[test]
    fn an_invitation_stores_only_the_hash_of_the_token_it_shows_once() {
        // The proxy echoes the id it was given, as the function would.
        let mut i = instance(json!(null));
        i.platform = TestPlatform::new(Box::new(|req| {
            let v: Value = serde_json::from_slice(req.body()).unwrap();
            let p = &v["queries"][1]["params"];
            let doc = invitation_doc(p[2].as_str().unwrap(), p[3].as_str().unwrap(), "owner");
            Ok(crate::testing::sql_answer(
                &json!({ "outcome": "created", "invitation": doc }),
            ))
        }));
        let resp = post(
            &i,
            "owner",
            r#"{"email":" Ann@Example.COM ","role":"owner"}"#,
        )
        .unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["cache-control"], "private, no-store");
        let body = json_body(&resp);
        let token = body["token"].as_str().unwrap();
        assert_eq!(token.len(), 43);
        assert_eq!(
            body["accept_path"],
            format!("/v1/invitations/{token}/accept")
        );
        // The id comes from the entropy port (all 7s), as a v4 UUID.
        let id = "07070707-0707-4707-8707-070707070707";
        assert_eq!(body["invitation"]["id"], id);
        assert_eq!(body["invitation"]["email"], "ann@example.com");
        assert_eq!(body["invitation"]["status"], "pending");
        assert_eq!(
            resp.headers()["location"],
            format!("/v1/members/invitations/{id}").as_str()
        );
        let s = statements(&i);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0]["query"],
            "SELECT public.invitation_create($1::uuid, $2, $3::uuid, $4, $5, $6, $7::int)"
        );
        assert_eq!(
            s[0]["params"],
            json!([
                user_of(ALICE),
                "owner",
                id,
                "ann@example.com",
                "owner",
                sha256_hex(token),
                "604800"
            ])
        );
        assert!(!i.platform.sent.borrow()[0]
            .body()
            .windows(token.len())
            .any(|w| w == token.as_bytes()));
    }

    #[test]
    fn invitation_refusals_map_to_problems() {
        for (doc, code) in [
            (
                json!({ "outcome": "forbidden", "reason": "role_above_actor" }),
                Code::InsufficientRole,
            ),
            (json!({ "outcome": "already_member" }), Code::AlreadyMember),
            (
                json!({ "outcome": "tier_limit", "limit": 5 }),
                Code::TierLimitReached,
            ),
        ] {
            let i = instance(doc.clone());
            let err = post(&i, "admin", r#"{"email":"a@b.co","role":"member"}"#).unwrap_err();
            assert_eq!(err.code(), code, "{doc}");
            assert_eq!(i.platform.sent.borrow().len(), 1);
            if code == Code::TierLimitReached {
                assert!(matches!(
                    err.extra(),
                    Extra::Tier {
                        resource: "members",
                        limit: 5,
                        count: 5
                    }
                ));
            }
            if code == Code::InsufficientRole {
                assert!(err.detail().contains("role_above_actor"));
            }
        }
    }

    #[test]
    fn pending_invitations_are_listed_newest_first() {
        let row = json!({ "doc": invitation_doc(INVITATION, "a@b.co", "admin"),
            "key": "2023-11-14T22:13:20.000000Z", "id": INVITATION });
        let i = instance(row);
        let parts = i.parts(
            "basic",
            Some(member(ALICE, &["admin"])),
            None,
            request(GET, "/v1/members/invitations?role=admin", None),
        );
        let resp = full(block_on(Handler::call(invitations::<TestPlatform>, parts))).unwrap();
        assert_eq!(resp.headers()["cache-control"], "private, no-store");
        assert_eq!(json_body(&resp)["items"][0]["id"], INVITATION);
        let s = statements(&i);
        let q = s[0]["query"].as_str().unwrap();
        assert!(q.contains("FROM public.invitation_rows() i"), "{q}");
        assert!(q.contains("i.doc->>'role' = $1"), "{q}");
        assert!(q.contains("ORDER BY i.created_at DESC, i.id DESC"), "{q}");
        assert_eq!(s[0]["params"], json!(["admin", "51"]));
    }

    #[test]
    fn revoking_answers_204_or_404() {
        for (doc, status) in [
            (
                json!({ "outcome": "revoked",
                    "invitation": invitation_doc(INVITATION, "a@b.co", "member") }),
                Some(204),
            ),
            (json!({ "outcome": "not_found" }), None),
        ] {
            let i = instance(doc);
            let parts = i.parts(
                "basic",
                Some(member(ALICE, &["admin"])),
                Some(INVITATION),
                request(
                    DELETE,
                    &format!("/v1/members/invitations/{INVITATION}"),
                    None,
                ),
            );
            let r = full(block_on(Handler::call(revoke::<TestPlatform>, parts)));
            match status {
                Some(s) => assert_eq!(r.unwrap().status(), s),
                None => assert_eq!(r.unwrap_err().code(), Code::NotFound),
            }
            let s = statements(&i);
            assert_eq!(s[0]["query"], "SELECT public.invitation_revoke($1::uuid)");
            assert_eq!(s[0]["params"], json!([INVITATION]));
        }
        let i = instance(json!(null));
        let parts = i.parts(
            "basic",
            Some(member(ALICE, &["admin"])),
            Some("nope"),
            request(DELETE, "/v1/members/invitations/nope", None),
        );
        let r = full(block_on(Handler::call(revoke::<TestPlatform>, parts)));
        assert_eq!(r.unwrap_err().code(), Code::NotFound);
        assert!(i.platform.sent.borrow().is_empty());
    }
}
