//! The public storefront API (no credentials; tenant from Host): the tenant's profile and its
//! active catalog. Responses are cacheable by CDNs and browsers (`Cache-Control: public`,
//! `ETag`, `304` on `If-None-Match`); CORS is applied by the router.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::answers::{Computing, Found};
use crate::catalog::{find_item, tenant_currency, ItemId, StorefrontListing};
use crate::config::S3Config;
use crate::cx::{Path, Public, Query};
use crate::error::ApiError;
use crate::ids::Uuid;
use crate::json_key;
use crate::json_writer::JsonObject;
use crate::obs::Cache;
use crate::page::Page;
use crate::ports::Platform;
use crate::reply::{body_tag, Reply};

/// An active item as shoppers see it: no inventory count, status or version.
///
/// `images`: which of the item's `image_file_ids` are still ready image files (a file deleted
/// since just disappears; row security keeps them the tenant's), in the item's order, as
/// `[{"id","key","filename","content_type"}]`; the answer presigns a GET per entry
/// ([`crate::uploads::image_url`]). A subquery, not a SQL function: Postgres cannot inline a
/// function with a `FROM`, and runs its SQL-function executor once per row, which was a third
/// of a 20-item page's batch.
const PUBLIC_ITEM: &str = "jsonb_build_object(\
    'id', i.id, 'sku', i.sku, 'name', i.name, 'description', i.description, \
    'price', i.price::text, 'currency', i.currency, 'category', i.category, \
    'in_stock', i.inventory > 0, \
    'images', (SELECT coalesce(jsonb_agg(jsonb_build_object(\
        'id', f.id, 'key', f.key, 'filename', f.filename, 'content_type', f.content_type) \
        ORDER BY ids.ord), '[]'::jsonb) \
        FROM unnest(i.image_file_ids) WITH ORDINALITY AS ids (id, ord) \
        JOIN public.files f ON f.id = ids.id \
        WHERE f.status = 'ready' AND f.content_type LIKE 'image/%'), \
    'updated_at', public.iso_utc(i.updated_at))";

/// [`PUBLIC_ITEM`]'s document, with `T` the images: object keys from the database, presigned
/// links in the response.
#[derive(Debug, Serialize, Deserialize)]
pub struct PublicItem<T> {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: Option<String>,
    pub price: String,
    pub currency: String,
    pub category: Option<String>,
    /// `null` when the item's inventory is not tracked (unlimited).
    pub in_stock: Option<bool>,
    pub images: Vec<T>,
    pub updated_at: String,
}

/// A ready image file of an item ([`PUBLIC_ITEM`]'s `images`).
#[derive(Debug, Deserialize)]
pub struct StoredImage {
    id: Uuid,
    key: String,
    filename: String,
    content_type: String,
}

/// An image as shoppers get it: a presigned inline GET.
#[derive(Debug, Serialize)]
pub struct ImageLink {
    id: Uuid,
    content_type: String,
    url: String,
}

/// Replaces each image's object key with a presigned inline GET URL. Signing time is rounded
/// down to the minute, so the body (and its ETag) stays the same for a minute and caches can
/// revalidate; URLs stay valid for at least `DOWNLOAD_URL_TTL_SECONDS` minus that minute.
fn with_image_urls(
    s3: &S3Config,
    now: SystemTime,
    item: PublicItem<StoredImage>,
) -> PublicItem<ImageLink> {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let signed_at = UNIX_EPOCH + Duration::from_secs(secs - secs % 60);
    let images = item
        .images
        .into_iter()
        .filter_map(|img| {
            let url = crate::uploads::image_url(s3, &img.key, &img.filename, signed_at).ok()?;
            Some(ImageLink {
                id: img.id,
                content_type: img.content_type,
                url,
            })
        })
        .collect();
    PublicItem {
        id: item.id,
        sku: item.sku,
        name: item.name,
        description: item.description,
        price: item.price,
        currency: item.currency,
        category: item.category,
        in_stock: item.in_stock,
        images,
        updated_at: item.updated_at,
    }
}

/// A public, cacheable answer, or `304 Not Modified` when the client has it already.
fn cacheable<P, T: Serialize>(cx: &Public<'_, P>, body: &T) -> Reply {
    public(cx, Reply::ok(body))
}

/// [`cacheable`] for an answer written by [`JsonObject`].
fn public<P>(cx: &Public<'_, P>, reply: Reply) -> Reply {
    reply.public(cx.env.config.tenancy.storefront_max_age, if_none_match(cx))
}

fn if_none_match<'c, P>(cx: &'c Public<'_, P>) -> Option<&'c str> {
    cx.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
}

/// The public answer to this request: the one the instance kept for its path and query while
/// it is fresh, with its `Age` ([`crate::answers`]), or else `answer`'s, kept for the next
/// shopper. `answer` runs (and makes its SQL batch) only when nothing fresh is kept.
async fn remembered<P: Platform>(
    cx: &Public<'_, P>,
    answer: impl Future<Output = Result<JsonObject, ApiError>>,
) -> Result<Reply, ApiError> {
    let now = cx.env.platform.now();
    let lookup = Lookup::of(cx, now);
    let computing = match lookup.find() {
        Ok(reply) => {
            crate::ports::note(cx.env.platform, |t| t.note_cache(Cache::Answer, true));
            return Ok(reply);
        }
        Err(computing) => computing,
    };
    if lookup.counts() {
        crate::ports::note(cx.env.platform, |t| t.note_cache(Cache::Answer, false));
    }
    match answer.await {
        Ok(body) => Ok(lookup.keep(computing, body)),
        // The origin failed (database down, slow or refusing): the answer this one refreshes,
        // if any, rather than the failure (`stale-if-error`). The failure is still the
        // request's to log.
        Err(e) if e.status().is_server_error() => match computing.stale(now) {
            Some(kept) => {
                crate::ports::note(cx.env.platform, |t| {
                    t.note_error(&e.code().to_string(), e.log())
                });
                Ok(lookup.reply(kept))
            }
            None => Err(e),
        },
        // Dropped with the failure: the next request computes it.
        Err(e) => Err(e),
    }
}

/// What [`remembered`] looks up and keeps, for one request (not generic: one copy for every
/// route and platform).
struct Lookup<'c> {
    answers: &'c crate::answers::Answers,
    tenant: &'c str,
    key: &'c str,
    now: SystemTime,
    max_age: Duration,
    if_none_match: Option<&'c str>,
}

impl<'c> Lookup<'c> {
    fn of<P>(cx: &'c Public<'_, P>, now: SystemTime) -> Self {
        let uri = &cx.head.uri;
        Self {
            answers: cx.env.answers,
            tenant: cx.tenant.id.as_str(),
            key: uri
                .path_and_query()
                .map_or_else(|| uri.path(), |pq| pq.as_str()),
            now,
            max_age: cx.env.config.tenancy.storefront_max_age,
            if_none_match: if_none_match(cx),
        }
    }

    /// Whether answers are kept at all (so a lookup is a hit or a miss worth counting).
    fn counts(&self) -> bool {
        !self.answers.ttl().is_zero()
    }

    /// The kept answer's reply, with its `Age`, or the computation to make.
    fn find(&self) -> Result<Reply, Computing<'c>> {
        match self.answers.find(self.tenant, self.key, self.now) {
            Found::Kept(kept) => Ok(self.reply(kept)),
            Found::Compute(computing) => Err(computing),
        }
    }

    /// A kept answer's reply, with its `Age`.
    fn reply(&self, kept: crate::answers::Kept) -> Reply {
        let mut age = itoa::Buffer::new();
        Reply::public_json(kept.body, &kept.etag, self.max_age, self.if_none_match)
            .header(header::AGE, age.format(kept.age.as_secs()))
    }

    /// Keeps the answer `computing` asked for, and replies with it.
    fn keep(&self, computing: Computing<'c>, answer: JsonObject) -> Reply {
        let body = Bytes::from(answer.finish_bytes());
        let etag = body_tag(&body);
        self.answers.keep(
            computing,
            self.tenant,
            self.key,
            body.clone(),
            &etag,
            self.now,
        );
        Reply::public_json(body, &etag, self.max_age, self.if_none_match)
    }
}

impl PublicItem<ImageLink> {
    /// This item's members, into the object open in `o`: the JSON `serde` writes for it,
    /// member for member (a test holds them to it), without `serde_json`'s byte-at-a-time
    /// escaping: a catalog page is several kilobytes of text (BENCHMARKS.md, change 60).
    fn write_members(&self, o: &mut JsonObject) {
        o.str(json_key!("id"), self.id.as_str());
        o.str(json_key!("sku"), &self.sku);
        o.str(json_key!("name"), &self.name);
        o.opt_str(json_key!("description"), self.description.as_deref());
        o.str(json_key!("price"), &self.price);
        o.str(json_key!("currency"), &self.currency);
        o.opt_str(json_key!("category"), self.category.as_deref());
        o.opt_bool(json_key!("in_stock"), self.in_stock);
        o.open_array(json_key!("images"));
        for image in &self.images {
            o.element();
            o.str(json_key!("id"), image.id.as_str());
            o.str(json_key!("content_type"), &image.content_type);
            o.str(json_key!("url"), &image.url);
            o.close();
        }
        o.end_array();
        o.str(json_key!("updated_at"), &self.updated_at);
    }
}

/// A page of items as `{"items":[…],"next_cursor":…}`, as [`Page`]'s `Serialize` writes it.
fn write_page(page: &Page<PublicItem<ImageLink>>) -> JsonObject {
    let mut o = JsonObject::with_capacity(512 * page.items.len() + 64);
    o.open_array(json_key!("items"));
    for item in &page.items {
        o.element();
        item.write_members(&mut o);
        o.close();
    }
    o.end_array();
    o.opt_str(json_key!("next_cursor"), page.next_cursor.as_deref());
    o
}

/// `GET /v1/storefront`: served from the cached tenant record, no SQL at all.
pub async fn profile<P: Platform>(cx: Public<'_, P>) -> Result<Reply, ApiError> {
    let t = &cx.tenant;
    let body = json!({
        "slug": t.slug,
        "name": t.name,
        "currency": tenant_currency(t),
        "branding": t.settings.branding.clone().unwrap_or_default(),
        "description": t.settings.description,
    });
    Ok(cacheable(&cx, &body))
}

pub async fn list<P: Platform>(
    cx: Public<'_, P>,
    Query(StorefrontListing(listing)): Query<StorefrontListing>,
) -> Result<Reply, ApiError> {
    remembered(&cx, async {
        let result = cx.db.one(listing.statement(PUBLIC_ITEM)).await?;
        let now = cx.env.platform.now();
        let s3 = &cx.env.config.s3;
        let page = listing
            .page()
            .page::<PublicItem<StoredImage>>(&result)?
            .map(|item| with_image_urls(s3, now, item));
        Ok(write_page(&page))
    })
    .await
}

pub async fn get<P: Platform>(
    cx: Public<'_, P>,
    Path(id): Path<ItemId>,
) -> Result<Reply, ApiError> {
    remembered(&cx, async {
        let item: PublicItem<StoredImage> =
            find_item(&cx.db, &id, PUBLIC_ITEM, "i.status = 'active'").await?;
        let item = with_image_urls(&cx.env.config.s3, cx.env.platform.now(), item);
        let mut o = JsonObject::with_capacity(512);
        item.write_members(&mut o);
        Ok(o)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: usize, images: Vec<ImageLink>) -> PublicItem<ImageLink> {
        PublicItem {
            id: Uuid::parse("c31b1765-83d9-4127-a7db-af6e67bdd33c").unwrap(),
            sku: format!("SKU-{n}"),
            name: "Jacket \"Storm\" \\ 2.0\n\u{1} é 😀".into(),
            description: n
                .is_multiple_of(2)
                .then(|| "Waterproof <shell> & more\t".into()),
            price: "189.000".into(),
            currency: "USD".into(),
            category: (!n.is_multiple_of(3)).then(|| "apparel".into()),
            in_stock: [Some(true), Some(false), None][n % 3],
            images,
            updated_at: "2026-12-05T03:51:36.642446Z".into(),
        }
    }

    fn link(n: usize) -> ImageLink {
        ImageLink {
            id: Uuid::parse("7db2c1ff-7db8-4576-b9ee-37d87b489793").unwrap(),
            content_type: "image/png".into(),
            url: format!("http://s3.test/b/k{n}?X-Amz-Signature=ab&response-content-disposition=inline%3B%22"),
        }
    }

    /// The written page is, byte for byte, what `serde_json` writes for the same page: every
    /// member, `null`s, escapes, images or none, with and without a next cursor.
    #[test]
    fn pages_are_written_as_serde_writes_them() {
        for next_cursor in [None, Some("eyJrIjoidiJ9".to_owned())] {
            let page = Page {
                items: vec![
                    item(0, vec![]),
                    item(1, vec![link(1)]),
                    item(2, vec![link(2), link(3)]),
                ],
                next_cursor,
            };
            let written = String::from_utf8(write_page(&page).finish_bytes()).unwrap();
            assert_eq!(written, serde_json::to_string(&page).unwrap());
        }
        let empty: Page<PublicItem<ImageLink>> = Page {
            items: vec![],
            next_cursor: None,
        };
        assert_eq!(
            String::from_utf8(write_page(&empty).finish_bytes()).unwrap(),
            r#"{"items":[],"next_cursor":null}"#
        );
        let one = item(4, vec![link(4)]);
        let mut o = JsonObject::with_capacity(0);
        one.write_members(&mut o);
        assert_eq!(o.finish(), serde_json::to_string(&one).unwrap());
    }
}
