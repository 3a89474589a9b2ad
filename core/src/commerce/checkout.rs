//! Checkout: `POST /v1/storefront/checkout` turns a visitor's cart (or a donation) into an
//! order in one transaction — the database prices every line from the active catalog, checks
//! and takes stock, checks the tier's monthly limit, numbers the order, writes it, its lines and
//! its outbox row — and `GET /v1/storefront/orders/{id}` shows a visitor their own order.
//! Retries are safe: the `Idempotency-Key` is required, the same key with the same request
//! replays the first answer, with another request it is a conflict.

use http::header;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Address, Order, OrderId};
use crate::cx::{FromPath as _, Json, Path, Public, RequiredIdempotencyKey};
use crate::error::{ApiError, Code, FieldError};
use crate::ids::{hex, Uuid};
use crate::input::{is_email, BodyCx, FromJson, JsonObject};
use crate::ports::Platform;
use crate::reply::{Cache, Reply};
use crate::sql::{AuditCx, Statement};
use crate::visitor::{KnownVisitor, Visitor};

/// Lines per order, and units per line.
pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: i64 = 1_000;

/// The checkout body: a cart or a donation, who pays, where it goes.
#[derive(Debug, Serialize)]
pub struct CheckoutRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<Vec<CartLine>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    donation: Option<Donation>,
    customer: CustomerInput,
    #[serde(skip_serializing_if = "Option::is_none")]
    shipping_address: Option<Address>,
    #[serde(skip_serializing_if = "Option::is_none")]
    visit_id: Option<Uuid>,
}

#[derive(Debug, Serialize)]
struct CartLine {
    item_id: Uuid,
    quantity: i64,
}

#[derive(Debug, Serialize)]
struct Donation {
    /// Canonical decimal text (`"25.5"`).
    amount: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign: Option<String>,
}

#[derive(Debug, Serialize)]
struct CustomerInput {
    email: String,
    name: String,
}

fn read_line(o: &mut JsonObject) -> Option<CartLine> {
    let item_id = o.string("item_id", true, 36);
    let item_id = match item_id {
        Some(s) => {
            let id = Uuid::parse(&s);
            if id.is_none() {
                o.error("item_id", "invalid_value", "must be an item id (UUID)");
            }
            id
        }
        None => None,
    };
    let quantity = o.integer("quantity", true, 1, MAX_QUANTITY);
    Some(CartLine {
        item_id: item_id?,
        quantity: quantity?,
    })
}

fn read_donation(o: &mut JsonObject) -> Option<Donation> {
    let amount = o.decimal("amount", true, 9, 3);
    let campaign = o.string("campaign", false, 100);
    if amount
        .as_deref()
        .is_some_and(|a| a.trim_matches(['0', '.']).is_empty())
    {
        o.error("amount", "out_of_range", "must be more than 0");
        return None;
    }
    Some(Donation {
        amount: amount?,
        campaign,
    })
}

fn read_customer(o: &mut JsonObject) -> Option<CustomerInput> {
    let email = o.string("email", true, 254);
    let name = o.string("name", true, 200);
    if email.as_deref().is_some_and(|e| !is_email(e)) {
        o.error("email", "invalid_value", "must be an email address");
        return None;
    }
    Some(CustomerInput {
        email: email?.to_ascii_lowercase(),
        name: name?,
    })
}

fn read_address(o: &mut JsonObject) -> Option<Address> {
    let line1 = o.string("line1", true, 200);
    let line2 = o.string("line2", false, 200);
    let city = o.string("city", true, 100);
    let region = o.string("region", false, 100);
    let postal_code = o.string("postal_code", true, 20);
    let country = o.string("country", true, 2);
    if country
        .as_deref()
        .is_some_and(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()))
    {
        o.error(
            "country",
            "invalid_value",
            "must be an ISO 3166-1 code such as DE",
        );
        return None;
    }
    Some(Address {
        line1: line1?,
        line2,
        city: city?,
        region,
        postal_code: postal_code?,
        country: country?,
    })
}

impl FromJson for CheckoutRequest {
    fn from_json(o: &mut JsonObject, _: &BodyCx<'_>) -> Option<Self> {
        let (has_items, has_donation) = (o.has("items"), o.has("donation"));
        if has_items == has_donation {
            let msg = if has_items {
                "send either items or a donation, not both"
            } else {
                "send items (a cart) or a donation"
            };
            o.error(
                "items",
                if has_items {
                    "invalid_value"
                } else {
                    "required"
                },
                msg,
            );
        }
        let mut items = None;
        if has_items {
            if let Some(lines) = o.objects_member("items", true, MAX_LINES) {
                let mut read = Vec::with_capacity(lines.len());
                let mut ok = true;
                for line in lines {
                    let Some(mut line) = line else {
                        ok = false;
                        continue;
                    };
                    match read_line(&mut line) {
                        Some(l) => read.push(l),
                        None => ok = false,
                    }
                    o.absorb(line);
                }
                let mut ids: Vec<&Uuid> = read.iter().map(|l| &l.item_id).collect();
                ids.sort();
                ids.dedup();
                if ids.len() != read.len() {
                    o.error(
                        "items",
                        "invalid_value",
                        "must name each item once (use quantity)",
                    );
                    ok = false;
                }
                items = ok.then_some(read);
            }
        }
        let mut donation = None;
        if has_donation {
            if let Some(mut d) = o.object_member("donation", true) {
                donation = read_donation(&mut d);
                o.absorb(d);
            }
        }
        let customer = match o.object_member("customer", true) {
            Some(mut c) => {
                let customer = read_customer(&mut c);
                o.absorb(c);
                customer
            }
            None => None,
        };
        let shipping_address = match o.object_member("shipping_address", false) {
            Some(mut a) => {
                let address = read_address(&mut a);
                o.absorb(a);
                Some(address?)
            }
            None => None,
        };
        let visit_id = o.string("visit_id", false, 36).and_then(|v| {
            let id = Uuid::parse(&v);
            if id.is_none() {
                o.error("visit_id", "invalid_value", "must be a visit id (UUID)");
            }
            id
        });
        if has_items == has_donation || (items.is_none() && donation.is_none()) {
            return None;
        }
        Some(Self {
            items,
            donation,
            customer: customer?,
            shipping_address,
            visit_id,
        })
    }
}

/// What `checkout` decided.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Checkout {
    Created { order: Box<Order> },
    Replayed { order: Box<Order> },
    KeyReused,
    TierLimit { limit: i64, count: i64 },
    Unavailable { items: Vec<Uuid> },
    OutOfStock { items: Vec<Shortage> },
    DonationsDisabled,
    DonationOutOfRange { minimum: String, maximum: String },
    UnknownCampaign { campaigns: Vec<String> },
}

impl crate::outcome::Outcome for Checkout {}

/// A line the stock cannot cover.
#[derive(Debug, Serialize, Deserialize)]
struct Shortage {
    item_id: Uuid,
    requested: i64,
    available: i64,
}

fn members(key: &str, value: impl Serialize) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        key.to_owned(),
        serde_json::to_value(value).unwrap_or(Value::Null),
    );
    m
}

impl Checkout {
    fn refusal(self) -> ApiError {
        match self {
            Self::KeyReused => ApiError::new(
                Code::IdempotencyKeyReused,
                "This Idempotency-Key was used with a different request body.",
            ),
            Self::TierLimit { limit, count } => {
                ApiError::tier_limit("orders this month", limit, count)
            }
            Self::Unavailable { items } => ApiError::new(
                Code::ItemUnavailable,
                "Some items are not for sale here; see `items`.",
            )
            .with_members(members("items", items)),
            Self::OutOfStock { items } => ApiError::new(
                Code::OutOfStock,
                "Not enough stock for some items; see `items`.",
            )
            .with_members(members("items", items)),
            Self::DonationsDisabled => ApiError::new(
                Code::DonationsDisabled,
                "This store does not accept donations.",
            ),
            Self::DonationOutOfRange { minimum, maximum } => {
                ApiError::validation(vec![FieldError::new(
                    "donation.amount",
                    "out_of_range",
                    format!("must be between {minimum} and {maximum}"),
                )])
            }
            Self::UnknownCampaign { campaigns } => ApiError::validation(vec![FieldError::new(
                "donation.campaign",
                "invalid_value",
                format!("must be one of: {}", campaigns.join(", ")),
            )]),
            Self::Created { .. } | Self::Replayed { .. } => {
                ApiError::upstream("a checkout succeeded where it was expected to refuse")
            }
        }
    }
}

/// `POST /v1/storefront/checkout` → 201 with the order.
pub async fn checkout<P: Platform>(
    mut cx: Public<'_, P>,
    visitor: Visitor,
    RequiredIdempotencyKey(key): RequiredIdempotencyKey,
    Json(request): Json<CheckoutRequest>,
) -> Result<Reply, ApiError> {
    // The key is bound to what the request means (member order and whitespace do not count),
    // not to the visitor: a retry whose first answer (and cookie) was lost comes back as a new
    // visitor and must still get its order. The key is therefore a capability, like an order
    // id: checkout requires one of at least 16 characters (a UUID).
    let doc = serde_json::to_value(&request)
        .map_err(|e| ApiError::upstream(format!("cannot encode the request: {e}")))?
        .to_string();
    let hash = hex(&Sha256::digest(doc.as_bytes()));
    let id = Uuid::random(cx.env.platform)?;
    // The audit log records the order as the visitor's.
    cx.db.set_actor(AuditCx::visitor(&visitor.id));
    let outcome: Checkout = cx
        .db
        .outcome(Statement::new(
            "SELECT public.checkout($1::uuid, $2, $3, $4, $5::jsonb)",
            vec![
                Some(id.to_string()),
                Some(key),
                Some(hash),
                Some(visitor.id.clone()),
                Some(doc),
            ],
        ))
        .await?;
    let (order, replayed) = match outcome {
        Checkout::Created { order } => (order, false),
        Checkout::Replayed { order } => (order, true),
        refused => return Err(refused.refusal()),
    };
    let mut reply = Reply::created(&format!("/v1/storefront/orders/{}", order.id), &order)
        .etag(&order.etag())
        .cache(Cache::Private);
    if replayed {
        reply = reply.header(http::HeaderName::from_static("idempotent-replayed"), "true");
    }
    if let Some(cookie) = visitor.set_cookie {
        reply = reply.header(header::SET_COOKIE, cookie.to_str().unwrap_or_default());
    }
    Ok(reply)
}

/// `GET /v1/storefront/orders/{id}`: the cookie's visitor's own order; anyone else's is 404.
pub async fn get<P: Platform>(
    cx: Public<'_, P>,
    KnownVisitor(visitor, _): KnownVisitor<OrderId>,
    Path(id): Path<OrderId>,
) -> Result<Reply, ApiError> {
    let order: Order = cx
        .db
        .find(Statement::new(
            "SELECT public.order_json(o) FROM public.orders o \
             WHERE o.id = $1::uuid AND o.visitor_id = $2",
            vec![Some(id.to_string()), Some(visitor)],
        ))
        .await?
        .ok_or_else(|| ApiError::not_found(OrderId::KIND))?;
    Ok(Reply::ok(&order).etag(&order.etag()).cache(Cache::Private))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::HeaderValue;

    fn read(body: &str) -> Result<Option<CheckoutRequest>, ApiError> {
        let mut h = http::HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let mut o = JsonObject::parse(&h, &Bytes::from(body.to_owned()), 16 * 1024)?;
        let m = crate::config::tests::dev_settings();
        let config = crate::Config::load(&|k: &str| m.get(k).cloned()).unwrap();
        let cx = BodyCx {
            config: &config,
            authenticated: false,
        };
        let r = CheckoutRequest::from_json(&mut o, &cx);
        o.finish().map(|()| r)
    }

    fn fields(e: ApiError) -> Vec<String> {
        e.field_errors().iter().map(|f| f.field.clone()).collect()
    }

    const ITEM: &str = "00000000-0000-4000-8000-0000000000a1";

    #[test]
    fn carts_are_read_and_client_prices_refused() {
        let ok = read(&format!(
            r#"{{"items":[{{"item_id":"{ITEM}","quantity":2}}],"customer":{{"email":"A@B.example","name":"Ann"}}}}"#
        ))
        .unwrap()
        .unwrap();
        assert_eq!(ok.customer.email, "a@b.example");
        let err = read(&format!(
            r#"{{"items":[{{"item_id":"{ITEM}","quantity":2,"price":"0.01"}}],"customer":{{"email":"a@b.example","name":"Ann"}}}}"#
        ))
        .unwrap_err();
        assert_eq!(fields(err), vec!["items[0].price"]);
    }

    #[test]
    fn every_problem_is_named_with_its_path() {
        let err = read(
            r#"{"items":[{"item_id":"x","quantity":0},5],"customer":{"email":"nope"},
                "shipping_address":{"line1":"1 Road","city":"X","postal_code":"1","country":"de"},
                "visit_id":"v"}"#,
        )
        .unwrap_err();
        let mut got = fields(err);
        got.sort();
        assert_eq!(
            got,
            vec![
                "customer.email",
                "customer.name",
                "items[0].item_id",
                "items[0].quantity",
                "items[1]",
                "shipping_address.country",
                "visit_id"
            ]
        );
    }

    #[test]
    fn a_request_is_a_cart_or_a_donation() {
        let customer = r#""customer":{"email":"a@b.example","name":"Ann"}"#;
        let both = read(&format!(
            r#"{{"items":[{{"item_id":"{ITEM}","quantity":1}}],"donation":{{"amount":5}},{customer}}}"#
        ))
        .unwrap_err();
        assert_eq!(fields(both), vec!["items"]);
        let neither = read(&format!("{{{customer}}}")).unwrap_err();
        assert_eq!(fields(neither), vec!["items"]);
        let zero = read(&format!(
            r#"{{"donation":{{"amount":"0.000"}},{customer}}}"#
        ))
        .unwrap_err();
        assert_eq!(fields(zero), vec!["donation.amount"]);
        let twice = read(&format!(
            r#"{{"items":[{{"item_id":"{ITEM}","quantity":1}},{{"item_id":"{ITEM}","quantity":1}}],{customer}}}"#
        ))
        .unwrap_err();
        assert_eq!(fields(twice), vec!["items"]);
        let gift = read(&format!(
            r#"{{"donation":{{"amount":25.5,"campaign":"spring"}},{customer}}}"#
        ))
        .unwrap()
        .unwrap();
        assert_eq!(gift.donation.unwrap().amount, "25.5");
    }
}
