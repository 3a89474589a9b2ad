//! Purging deleted tenants once their grace period is over: `POST /v1/platform/purge`, the job
//! a scheduler (a Workers Cron Trigger, cron with a platform token) calls daily. Objects go
//! before rows: the candidates are listed, each one's uploads (everything under `{tenant id}/`,
//! listed with ListObjectsV2 and deleted one key at a time) are removed, and only the tenants
//! whose objects are all gone are purged from the database (re-checked there, so a tenant
//! restored meanwhile survives). A tenant whose objects could not all be removed waits for the
//! next run.

use bytes::Bytes;
use http::{Method, Request};
use serde::{Deserialize, Serialize};

use crate::config::S3Config;
use crate::cx::{PlatformAdmin, Query};
use crate::error::ApiError;
use crate::ids::TenantId;
use crate::input::{BodyCx, FromQuery, QueryString};
use crate::ports::{Clock, HttpClient, Platform};
use crate::reply::{Cache, Reply};
use crate::s3::{self, S3Error};
use crate::sql::Statement;

/// `POST /v1/platform/purge?grace_days=30&limit=20`.
#[derive(Debug)]
pub struct PurgeRequest {
    grace_days: i64,
    limit: i64,
}

impl FromQuery for PurgeRequest {
    fn from_query(q: &mut QueryString, _: &BodyCx<'_>) -> Self {
        Self {
            grace_days: q.integer("grace_days", 0, 3650, 30),
            limit: q.integer("limit", 1, 100, 20),
        }
    }
}

#[derive(Deserialize)]
struct Candidates {
    tenants: Vec<TenantId>,
}

#[derive(Deserialize)]
struct Purged {
    purged: Vec<TenantId>,
}

#[derive(Serialize)]
struct Failure {
    tenant: TenantId,
    /// A summary; the storage service's own text stays out of responses.
    error: &'static str,
}

#[derive(Serialize)]
struct PurgeReport {
    purged: Vec<TenantId>,
    objects_deleted: u64,
    /// Tenants left for the next run.
    failed: Vec<Failure>,
}

/// Purges up to `limit` tenants deleted more than `grace_days` ago: their objects, then their
/// rows. Three steps, two SQL calls: a job, not a request path.
pub async fn purge<P: Platform>(
    cx: PlatformAdmin<'_, P>,
    Query(req): Query<PurgeRequest>,
) -> Result<Reply, ApiError> {
    let grace = (req.grace_days * 86_400).to_string();
    let candidates: Candidates = cx
        .db
        .call(Statement::new(
            "SELECT public.platform_purge_candidates($1::bigint, $2::int)",
            vec![Some(grace.clone()), Some(req.limit.to_string())],
        ))
        .await?;
    let mut cleared = Vec::new();
    let mut failed = Vec::new();
    let mut objects_deleted = 0;
    for tenant in candidates.tenants {
        match purge_prefix(cx.env.platform, &cx.env.config.s3, &tenant).await {
            Ok(n) => {
                objects_deleted += n;
                cleared.push(tenant);
            }
            Err(_) => failed.push(Failure {
                tenant,
                error: "its objects could not all be deleted; the next run retries",
            }),
        }
    }
    let purged = if cleared.is_empty() {
        Vec::new()
    } else {
        let ids = format!(
            "{{{}}}",
            cleared
                .iter()
                .map(TenantId::as_str)
                .collect::<Vec<_>>()
                .join(",")
        );
        let done: Purged = cx
            .db
            .call(Statement::new(
                "SELECT public.platform_purge_tenants($1::uuid[], $2::bigint)",
                vec![Some(ids), Some(grace)],
            ))
            .await?;
        done.purged
    };
    let report = PurgeReport {
        purged,
        objects_deleted,
        failed,
    };
    Ok(Reply::ok(&report).cache(Cache::NoStore))
}

/// One page of a ListObjectsV2 answer.
#[derive(Debug, PartialEq, Eq)]
struct Listing {
    keys: Vec<String>,
    /// More keys follow, from `next`.
    truncated: bool,
    next: Option<String>,
}

/// Deletes every object whose key starts with `{tenant}/` and returns how many it deleted.
/// Each S3 call has the S3 timeout; the first failure stops it (what is deleted stays deleted,
/// so running it again finishes the job). A key outside the prefix, should S3 list one, is
/// never deleted.
pub async fn purge_prefix<P: HttpClient + Clock>(
    platform: &P,
    cfg: &S3Config,
    tenant: &TenantId,
) -> Result<u64, S3Error> {
    let prefix = format!("{tenant}/");
    let mut token: Option<String> = None;
    let mut deleted = 0_u64;
    loop {
        let page = list_page(platform, cfg, &prefix, token.as_deref()).await?;
        for key in page.keys.iter().filter(|k| k.starts_with(&prefix)) {
            s3::delete_object(platform, cfg, key).await?;
            deleted += 1;
        }
        match page.next {
            _ if !page.truncated => return Ok(deleted),
            // A token that does not move on would list the same page for ever.
            Some(next) if token.as_ref() != Some(&next) => token = Some(next),
            _ => {
                return Err(S3Error::Protocol(
                    "a truncated listing without a new continuation token".into(),
                ))
            }
        }
    }
}

/// `GET /{bucket}?list-type=2&prefix=…[&continuation-token=…]`, signed.
fn list_request(
    cfg: &S3Config,
    prefix: &str,
    token: Option<&str>,
) -> Result<Request<Bytes>, S3Error> {
    let mut uri = format!(
        "{}?list-type=2&prefix={}",
        s3::url(cfg, None)?,
        s3::uri_encode(prefix, false)
    );
    if let Some(t) = token {
        uri.push_str("&continuation-token=");
        uri.push_str(&s3::uri_encode(t, false));
    }
    Request::builder()
        .method(Method::GET)
        .uri(uri)
        .body(Bytes::new())
        .map_err(|e| S3Error::Signing(e.to_string()))
}

async fn list_page<P: HttpClient + Clock>(
    platform: &P,
    cfg: &S3Config,
    prefix: &str,
    token: Option<&str>,
) -> Result<Listing, S3Error> {
    let mut req = list_request(cfg, prefix, token)?;
    s3::sign_request(cfg, &mut req, platform.now())?;
    let resp = platform
        .send_within(req, cfg.timeout)
        .await
        .map_err(S3Error::Unavailable)?;
    if !resp.status().is_success() {
        return Err(S3Error::Status(resp.status().as_u16()));
    }
    let xml = std::str::from_utf8(resp.body())
        .map_err(|_| S3Error::Protocol("a listing that is not UTF-8".into()))?;
    parse_listing(xml)
}

/// Reads the keys and the continuation of a `ListBucketResult`: only what the loop needs, and
/// only elements whose names S3 documents, so anything else the document carries is ignored.
fn parse_listing(xml: &str) -> Result<Listing, S3Error> {
    let bad = |what: &str| S3Error::Protocol(format!("a listing with {what}"));
    if !xml.contains("<ListBucketResult") {
        return Err(bad("no ListBucketResult"));
    }
    let keys = elements(xml, "Contents")
        .map(|contents| {
            elements(contents, "Key")
                .next()
                .and_then(unescape)
                .ok_or_else(|| bad("an entry without a readable Key"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let truncated = elements(xml, "IsTruncated").next().map(str::trim) == Some("true");
    let next = match elements(xml, "NextContinuationToken").next() {
        Some(t) => Some(unescape(t).ok_or_else(|| bad("an unreadable continuation token"))?),
        None => None,
    };
    Ok(Listing {
        keys,
        truncated,
        next,
    })
}

/// The content of each `<name>…</name>` in `xml`, in order. S3 writes these elements without
/// attributes and never nests one in another of the same name.
fn elements<'x>(xml: &'x str, name: &str) -> impl Iterator<Item = &'x str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let after = rest.get(start..)?;
        let end = after.find(&close)?;
        let text = after.get(..end)?;
        rest = after.get(end + close.len()..)?;
        Some(text)
    })
}

/// XML text with its five named entities and numeric references decoded; `None` for a
/// reference that is not one.
fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(rest.get(..i)?);
        let after = rest.get(i + 1..)?;
        let end = after.find(';')?;
        let entity = after.get(..end)?;
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = match entity.strip_prefix("#x").or(entity.strip_prefix("#X")) {
                    Some(h) => u32::from_str_radix(h, 16).ok()?,
                    None => entity.strip_prefix('#')?.parse::<u32>().ok()?,
                };
                char::from_u32(code)?
            }
        };
        out.push(c);
        rest = after.get(end + 1..)?;
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::cell::RefCell;
    use std::rc::Rc;

    use futures_executor::block_on;
    use http::Response;

    use crate::ports::OutboundError;
    use crate::testing::{Instance, TENANT};

    fn listing(keys: &[&str], next: Option<&str>) -> String {
        let contents: String = keys
            .iter()
            .map(|k| {
                format!(
                    "<Contents><Key>{k}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>\
                     <ETag>&quot;x&quot;</ETag><Size>1</Size><StorageClass>STANDARD</StorageClass></Contents>"
                )
            })
            .collect();
        let tail = match next {
            Some(t) => format!(
                "<IsTruncated>true</IsTruncated><NextContinuationToken>{t}</NextContinuationToken>"
            ),
            None => "<IsTruncated>false</IsTruncated>".into(),
        };
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Name>edgefront-dev</Name><Prefix>{TENANT}/</Prefix><KeyCount>{}</KeyCount><MaxKeys>1000</MaxKeys>{tail}{contents}</ListBucketResult>",
            keys.len()
        )
    }

    #[test]
    fn listings_are_read_with_their_entities_decoded() {
        let xml = listing(
            &["t/a&amp;b.png", "t/&#233;t&#xE9;.txt"],
            Some("1/&lt;x&gt;=="),
        );
        assert_eq!(
            parse_listing(&xml).unwrap(),
            Listing {
                keys: vec!["t/a&b.png".into(), "t/été.txt".into()],
                truncated: true,
                next: Some("1/<x>==".into()),
            }
        );
        let empty = parse_listing(&listing(&[], None)).unwrap();
        assert!(empty.keys.is_empty() && !empty.truncated && empty.next.is_none());
        for bad in [
            "<Error><Code>AccessDenied</Code></Error>",
            "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
            "<ListBucketResult><Contents><Key>a&bogus;</Key></Contents></ListBucketResult>",
            "<ListBucketResult><Contents><Key>a&amp</Key></Contents></ListBucketResult>",
        ] {
            assert!(
                matches!(parse_listing(bad), Err(S3Error::Protocol(_))),
                "{bad}"
            );
        }
    }

    /// Serves a two-page listing of the tenant's prefix (with one key S3 should never have
    /// listed) and records every deleted key.
    fn scripted(deleted: Rc<RefCell<Vec<String>>>) -> crate::testing::Responder {
        Box::new(move |req: &Request<Bytes>| {
            assert!(req.headers().contains_key("authorization"), "unsigned");
            let query = req.uri().query().unwrap_or_default().to_owned();
            let body = match *req.method() {
                Method::GET if query.contains("continuation-token=p%2F2%2B%3D") => {
                    listing(&[&format!("{TENANT}/f3/c.txt")], None)
                }
                Method::GET => {
                    assert!(query.contains(&format!("prefix={TENANT}%2F")), "{query}");
                    listing(
                        &[
                            &format!("{TENANT}/f1/a&amp;b.png"),
                            &format!("{TENANT}/f2/b.png"),
                            "someone-else/f9/z.png",
                        ],
                        Some("p/2+="),
                    )
                }
                Method::DELETE => {
                    deleted.borrow_mut().push(req.uri().path().to_owned());
                    let mut r = Response::new(Bytes::new());
                    *r.status_mut() = http::StatusCode::NO_CONTENT;
                    return Ok(r);
                }
                _ => panic!("unexpected {} {}", req.method(), req.uri()),
            };
            Ok(Response::new(Bytes::from(body)))
        })
    }

    #[test]
    fn every_page_is_listed_and_every_key_under_the_prefix_deleted() {
        let deleted = Rc::new(RefCell::new(Vec::new()));
        let i = Instance::new(&[], scripted(deleted.clone()));
        let tenant = TenantId::parse(TENANT).unwrap();
        let n = block_on(purge_prefix(&i.platform, &i.config.s3, &tenant)).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            *deleted.borrow(),
            vec![
                format!("/edgefront-dev/{TENANT}/f1/a%26b.png"),
                format!("/edgefront-dev/{TENANT}/f2/b.png"),
                format!("/edgefront-dev/{TENANT}/f3/c.txt"),
            ]
        );
        // Two listings, three deletions; nothing outside the prefix.
        assert_eq!(i.platform.count(Some("/edgefront-dev")), 2);
        assert_eq!(i.platform.count(None), 5);
    }

    #[test]
    fn a_listing_that_does_not_move_on_is_an_error_not_a_loop() {
        let i = Instance::new(
            &[],
            Box::new(|req: &Request<Bytes>| match *req.method() {
                Method::GET => Ok(Response::new(Bytes::from(listing(&[], Some("same"))))),
                _ => Ok(Response::new(Bytes::new())),
            }),
        );
        let tenant = TenantId::parse(TENANT).unwrap();
        let err = block_on(purge_prefix(&i.platform, &i.config.s3, &tenant)).unwrap_err();
        assert!(matches!(err, S3Error::Protocol(_)), "{err:?}");
        assert_eq!(i.platform.count(None), 2);
    }

    #[test]
    fn refusals_and_silence_stop_the_purge() {
        let tenant = TenantId::parse(TENANT).unwrap();
        let forbidden = Instance::new(
            &[],
            Box::new(|_: &Request<Bytes>| {
                let mut r = Response::new(Bytes::from("<Error><Code>AccessDenied</Code></Error>"));
                *r.status_mut() = http::StatusCode::FORBIDDEN;
                Ok(r)
            }),
        );
        assert_eq!(
            block_on(purge_prefix(
                &forbidden.platform,
                &forbidden.config.s3,
                &tenant
            )),
            Err(S3Error::Status(403))
        );
        let silent = Instance::new(
            &[],
            Box::new(|_: &Request<Bytes>| Err(OutboundError::Timeout(Default::default()))),
        );
        let err = block_on(purge_prefix(&silent.platform, &silent.config.s3, &tenant)).unwrap_err();
        assert_eq!(
            err,
            S3Error::Unavailable(OutboundError::Timeout(silent.config.s3.timeout))
        );
        // A deletion S3 refuses stops it too.
        let i = Instance::new(
            &[],
            Box::new(|req: &Request<Bytes>| match *req.method() {
                Method::GET => Ok(Response::new(Bytes::from(listing(
                    &[&format!("{TENANT}/f1/a.png")],
                    None,
                )))),
                _ => {
                    let mut r = Response::new(Bytes::new());
                    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    Ok(r)
                }
            }),
        );
        assert_eq!(
            block_on(purge_prefix(&i.platform, &i.config.s3, &tenant)),
            Err(S3Error::Status(500))
        );
    }
}
