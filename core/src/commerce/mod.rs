//! Storefront commerce: visits with UTM attribution, checkout (orders and donations, one
//! ledger), and the tenant's order management and reports.
//!
//! Every request is one SQL batch. The database decides everything that must hold under
//! concurrency — prices (never the client's), stock, the tier's monthly order limit,
//! idempotency, order numbers, the status machine, the outbox row of each event — inside the
//! functions of `migrations/functions/40_commerce.sql`; this module validates input completely
//! before any SQL, and reads the outcomes into types.
//!
//! - [`visits`]: `POST /v1/storefront/visits`;
//! - [`checkout`]: `POST /v1/storefront/checkout`, `GET /v1/storefront/orders/{id}`;
//! - [`orders`]: `/v1/orders…` and `/v1/analytics/visits` for the tenant's team.

pub mod checkout;
pub mod orders;
pub mod visits;

use serde::{Deserialize, Serialize};

use crate::ids::Uuid;
use crate::resource_id;

resource_id!(
    /// An order's id, as a path names it.
    pub OrderId,
    "order"
);

/// An order as the API shows it (`public.order_json`): to the team, and to the visitor who
/// placed it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    /// Per tenant, from 1001; unique, not gapless.
    pub number: i64,
    pub kind: OrderKind,
    pub status: OrderStatus,
    pub currency: String,
    pub subtotal: String,
    pub total: String,
    pub customer: Customer,
    pub shipping_address: Option<Address>,
    pub visit_id: Option<Uuid>,
    pub lines: Vec<Line>,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl Order {
    /// `"v{version}"`, for `If-Match`.
    pub fn etag(&self) -> String {
        format!("\"v{}\"", self.version)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderKind {
    Order,
    Donation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub const NAMES: &'static [&'static str] =
        &["pending", "confirmed", "shipped", "delivered", "cancelled"];
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Customer {
    pub email: String,
    pub name: String,
}

/// A postal address (validated on the way in; stored and shown as sent).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Address {
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

/// One line as sold: the item's name, SKU and price at the time, never today's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    pub line: i64,
    pub kind: String,
    pub item_id: Option<Uuid>,
    pub sku: Option<String>,
    pub name: String,
    pub unit_price: String,
    pub quantity: i64,
    pub line_total: String,
    pub campaign: Option<String>,
}
