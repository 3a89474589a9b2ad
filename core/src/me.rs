//! `GET /v1/me`: who the caller is to us (user id, role on this tenant) and what the token says
//! (issuer, subject, email), until when.

use crate::auth::{MembershipMode, Principal};
use crate::authz::{is_platform_admin, Role};
use crate::cx::Member;
use crate::error::ApiError;
use crate::ids::UserId;
use crate::json_key;
use crate::json_writer::JsonObject;
use crate::ports::Platform;
use crate::reply::{Cache, Reply};
use crate::tenancy::Tenant;

pub async fn get<P: Platform>(cx: Member<'_, P>) -> Result<Reply, ApiError> {
    let answer = answer(&cx.principal, &cx.tenant, cx.role, &cx.user);
    Ok(Reply::ok_written(answer).cache(Cache::Private))
}

/// The answer. Members in alphabetical order: the order the document has always had.
/// Written member by member ([`JsonObject`]): this is the authenticated request clients make
/// most, and `serde_json` cost about a tenth of core's work on it (BENCHMARKS.md, change 47).
/// Public for the request benchmark's floor of this route's own work (`benches/request.rs`).
pub fn answer(p: &Principal, t: &Tenant, role: Role, user: &UserId) -> JsonObject {
    let mut o = JsonObject::with_capacity(640);
    o.opt_str(json_key!("email"), p.email.as_deref());
    o.bool(json_key!("email_verified"), p.email_verified);
    o.str(json_key!("issuer"), &p.issuer);
    o.str(
        json_key!("membership"),
        match p.membership {
            MembershipMode::Membership => "membership",
            MembershipMode::Claims => "claims",
        },
    );
    o.opt_str(json_key!("name"), p.name.as_deref());
    o.bool(json_key!("platform_admin"), is_platform_admin(p));
    o.str(json_key!("role"), role.as_str());
    // The token's role claims, as sent; they grant nothing in membership mode.
    o.strs(json_key!("roles"), p.roles.iter().map(String::as_str));
    o.str(json_key!("subject"), &p.subject);
    o.open(json_key!("tenant"));
    o.str(json_key!("id"), t.id.as_str());
    o.str(json_key!("name"), &t.name);
    o.str(json_key!("slug"), t.slug.as_str());
    o.str(json_key!("tier"), &t.tier);
    o.close();
    o.num(json_key!("token_expires_at"), p.expires_at);
    o.opt_str(json_key!("token_use"), p.token_use.as_deref());
    o.str(json_key!("user_id"), user.as_str());
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{member, tenant, user_of, TENANT};
    use serde_json::{json, Value};

    /// The document as `serde_json` writes it (a `Value` object keeps its keys sorted).
    fn expected(p: &Principal, t: &Tenant, role: Role, user: &UserId) -> String {
        json!({
            "email": p.email,
            "email_verified": p.email_verified,
            "issuer": p.issuer,
            "membership": match p.membership {
                MembershipMode::Membership => "membership",
                MembershipMode::Claims => "claims",
            },
            "name": p.name,
            "platform_admin": is_platform_admin(p),
            "role": role.as_str(),
            "roles": p.roles,
            "subject": p.subject,
            "tenant": {
                "id": t.id.as_str(),
                "name": t.name,
                "slug": t.slug.as_str(),
                "tier": t.tier,
            },
            "token_expires_at": p.expires_at,
            "token_use": p.token_use,
            "user_id": user.as_str(),
        })
        .to_string()
    }

    #[test]
    fn the_answer_is_the_document_serde_json_writes_byte_for_byte() {
        let user = user_of("u1");
        let mut t = tenant(TENANT, "premium");
        let plain = member("u1", &["admin"]);
        let mut odd = member("u1", &[]);
        odd.email = None;
        odd.email_verified = false;
        odd.name = Some("Zoë \"Z\" O'Brien\\\n\t\u{1}".into());
        odd.subject = "sub/with \u{2028} and é".into();
        odd.token_use = None;
        odd.membership = MembershipMode::Membership;
        t.name = "Café \"Ünïcode\"".into();
        let mut many = member("u1", &["admin", "edi\"tor", "x\\y", ""]);
        many.expires_at = u64::MAX;
        for (p, role) in [
            (&plain, Role::Admin),
            (&odd, Role::Member),
            (&many, Role::Owner),
        ] {
            let written = answer(p, &t, role, &user).finish();
            assert_eq!(written, expected(p, &t, role, &user));
            // And it is JSON a client reads back as the same document.
            let back: Value = serde_json::from_str(&written).unwrap();
            assert_eq!(back.to_string(), expected(p, &t, role, &user));
        }
    }
}
