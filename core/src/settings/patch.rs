//! `PATCH /v1/tenant`'s body, read completely before any SQL: the tenant's name and the
//! members of `tenants.settings` an owner may set. Each settings member given replaces the
//! stored one whole (`null` removes it); members not given stay as they are, and so do the
//! ones owners cannot set (`limits`, the platform's). What is stored keeps the shapes the
//! edge reads (`tenancy::TenantSettings`, checkout's `settings.donations`).

use std::cmp::Ordering;

use serde::Serialize;
use serde_json::Value;

use crate::config::parse_origin;
use crate::ids::Uuid;
use crate::input::{BodyCx, FromJson, JsonObject};

/// Longest tenant name, description and AI system prompt (characters).
pub const MAX_NAME: usize = 200;
pub const MAX_DESCRIPTION: usize = 2000;
pub const MAX_SYSTEM_PROMPT: usize = 4000;
/// Most browser origins a tenant may list, and donation campaigns.
pub const MAX_CORS_ORIGINS: usize = 20;
pub const MAX_CAMPAIGNS: usize = 50;
/// Longest campaign slug (checkout accepts campaigns of up to 100 characters).
const MAX_CAMPAIGN: usize = 100;
/// Donation bounds when a tenant sets none, as checkout applies them
/// (`migrations/functions/40_commerce.sql`).
const DEFAULT_DONATION_MINIMUM: &str = "1";
const DEFAULT_DONATION_MAXIMUM: &str = "1000000";
/// `settings.ai.responder`: the configured provider (the default) or the built-in one.
pub const RESPONDERS: &[&str] = &["provider", "local"];

/// ISO 4217 codes of circulating currencies (no precious metals, fund or testing codes),
/// sorted. The few recently withdrawn ones that stored settings may still carry (ANG, CUC,
/// SLL, ZWL) stay accepted.
pub const CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP",
    "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF",
    "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD",
    "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP",
    "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR",
    "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB",
    "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD",
    "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL", "SOS", "SRD", "SSP", "STN", "SVC", "SYP",
    "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD",
    "UYU", "UZS", "VED", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER",
    "ZAR", "ZMW", "ZWG", "ZWL",
];

/// An ISO 4217 currency code of [`CURRENCIES`].
pub fn is_currency(s: &str) -> bool {
    CURRENCIES.binary_search(&s).is_ok()
}

/// A CSS hex colour, `#rgb` or `#rrggbb`.
pub fn is_color(s: &str) -> bool {
    s.strip_prefix('#')
        .is_some_and(|h| matches!(h.len(), 3 | 6) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A campaign slug: lower-case letters, digits, `-` and `_`, starting with a letter or digit
/// (UTM campaign names such as `spring-sale` or `summer_2026`).
pub fn is_campaign(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=MAX_CAMPAIGN).contains(&b.len())
        && b.first()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_'))
}

/// A browser origin a tenant may allow, normalised (lower case): `https://host[:port]`, or
/// `http://` for local development names, as `cors` accepts them.
pub fn origin(s: &str) -> Option<String> {
    let o = s.trim().to_ascii_lowercase();
    let (scheme, host) = parse_origin(&o)?;
    let local = host == "localhost" || host.ends_with(".localhost") || host == "127.0.0.1";
    let labels_ok = host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    let port_ok = o
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .and_then(|r| r.strip_prefix(host))
        .is_some_and(|rest| match rest.strip_prefix(':') {
            None => rest.is_empty(),
            Some(p) => p.parse::<u16>().is_ok_and(|p| p > 0),
        });
    let scheme_ok = scheme == "https" || (scheme == "http" && local);
    (labels_ok && port_ok && scheme_ok).then_some(o)
}

/// Compares two canonical decimals of `input::parse_decimal` (no sign, no leading zeros).
fn cmp_decimal(a: &str, b: &str) -> Ordering {
    let split = |s: &str| {
        let (i, f) = s.split_once('.').unwrap_or((s, ""));
        (i.len(), i.to_owned(), format!("{f:0<3}"))
    };
    split(a).cmp(&split(b))
}

/// `settings.branding`: the storefront's look.
#[derive(Debug, Default, Serialize)]
pub struct Branding {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_color: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accent_color: Option<String>,
    /// A ready image file of this tenant (`tenant_update` checks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_file_id: Option<Uuid>,
}

/// `settings.ai`.
#[derive(Debug, Default, Serialize)]
pub struct Ai {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub responder: Option<String>,
}

/// `settings.donations`, as checkout reads it: amounts are canonical decimal strings.
#[derive(Debug, Default, Serialize)]
pub struct Donations {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<String>,
    /// When present, the only campaigns a donation may name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaigns: Option<Vec<String>>,
}

/// The settings members to replace: `None` leaves one alone, `Some(None)` (JSON `null`)
/// removes it, `Some(Some(v))` replaces it with `v`.
#[derive(Debug, Default, Serialize)]
pub struct SettingsPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branding: Option<Option<Branding>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors_origins: Option<Option<Vec<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ai: Option<Option<Ai>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub donations: Option<Option<Donations>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Option<String>>,
}

impl SettingsPatch {
    /// `tenant_update`'s `p_settings` (a JSON object; `{}` changes nothing).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    pub fn is_empty(&self) -> bool {
        self.to_json() == "{}"
    }
}

/// `PATCH /v1/tenant`'s body: a new name, settings members, or both.
#[derive(Debug)]
pub struct TenantPatch {
    /// `None`: unchanged.
    pub name: Option<String>,
    pub settings: SettingsPatch,
}

impl FromJson for TenantPatch {
    /// Room for a 4000-character system prompt and a 2000-character description in any script.
    const MAX_BODY: usize = 64 * 1024;

    fn from_json(o: &mut JsonObject, _: &BodyCx<'_>) -> Option<Self> {
        let name = o.string("name", false, MAX_NAME);
        let currency = o.nullable_string("currency", 3).and_then(|c| match c {
            Some(c) if !is_currency(&c) => {
                o.error(
                    "currency",
                    "invalid_value",
                    "must be an ISO 4217 currency code such as USD",
                );
                None
            }
            c => Some(c),
        });
        let branding = nullable(o, "branding", read_branding);
        let cors_origins = nullable(o, "cors_origins", read_origins);
        let ai = nullable(o, "ai", read_ai);
        let donations = nullable(o, "donations", read_donations);
        let description = o.nullable_string("description", MAX_DESCRIPTION);
        let patch = Self {
            name,
            settings: SettingsPatch {
                currency,
                branding,
                cors_origins,
                ai,
                donations,
                description,
            },
        };
        if patch.name.is_none() && patch.settings.is_empty() {
            if o.is_clean() {
                o.error(
                    "",
                    "empty",
                    "name at least one member to change: name, currency, branding, cors_origins, ai, donations, description",
                );
            }
            return None;
        }
        Some(patch)
    }
}

/// A member that may be `null`: `Some(None)` for `null`, `Some(Some(v))` for what `read`
/// accepts, `None` when absent or refused (the refusal recorded by `read`).
fn nullable<T>(
    o: &mut JsonObject,
    field: &str,
    read: impl FnOnce(&mut JsonObject, &str) -> Option<T>,
) -> Option<Option<T>> {
    if matches!(o.peek(field), Some(Value::Null)) {
        // Takes the null member out, whatever the member's type otherwise is.
        let _ = o.nullable_string(field, 0);
        return Some(None);
    }
    if !o.has(field) {
        return None;
    }
    read(o, field).map(Some)
}

/// A nullable string inside an object whose members are all optional: `null` and absent
/// both mean "not set".
fn optional_string(o: &mut JsonObject, field: &str, max: usize) -> Option<String> {
    o.nullable_string(field, max).flatten()
}

fn read_branding(o: &mut JsonObject, field: &str) -> Option<Branding> {
    let mut b = o.object_member(field, true)?;
    let primary_color = read_color(&mut b, "primary_color");
    let accent_color = read_color(&mut b, "accent_color");
    let logo_file_id = optional_string(&mut b, "logo_file_id", 36).and_then(|s| {
        let id = Uuid::parse(&s);
        if id.is_none() {
            b.error("logo_file_id", "invalid_value", "must be a file id (UUID)");
        }
        id
    });
    o.absorb(b);
    Some(Branding {
        primary_color,
        accent_color,
        logo_file_id,
    })
}

fn read_color(o: &mut JsonObject, field: &str) -> Option<String> {
    let c = optional_string(o, field, 7)?;
    if is_color(&c) {
        Some(c.to_ascii_lowercase())
    } else {
        o.error(
            field,
            "invalid_value",
            "must be a CSS hex colour: #rgb or #rrggbb",
        );
        None
    }
}

fn read_origins(o: &mut JsonObject, field: &str) -> Option<Vec<String>> {
    let list = o.string_array(
        field,
        MAX_CORS_ORIGINS,
        |s| origin(s).is_some(),
        "an origin such as https://shop.example.com (https://host[:port], no path)",
    )?;
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for o in list.iter().filter_map(|s| origin(s)) {
        if !out.contains(&o) {
            out.push(o);
        }
    }
    Some(out)
}

fn read_ai(o: &mut JsonObject, field: &str) -> Option<Ai> {
    let mut a = o.object_member(field, true)?;
    let system_prompt = optional_string(&mut a, "system_prompt", MAX_SYSTEM_PROMPT);
    let responder = nullable(&mut a, "responder", |a, f| a.one_of(f, true, RESPONDERS)).flatten();
    o.absorb(a);
    Some(Ai {
        system_prompt,
        responder,
    })
}

fn read_donations(o: &mut JsonObject, field: &str) -> Option<Donations> {
    let mut d = o.object_member(field, true)?;
    let enabled = d.boolean("enabled", true);
    let currency = optional_string(&mut d, "currency", 3).and_then(|c| {
        if is_currency(&c) {
            Some(c)
        } else {
            d.error(
                "currency",
                "invalid_value",
                "must be an ISO 4217 currency code such as USD",
            );
            None
        }
    });
    let minimum = nullable(&mut d, "minimum", |d, f| d.decimal(f, true, 9, 3)).flatten();
    let maximum = nullable(&mut d, "maximum", |d, f| d.decimal(f, true, 9, 3)).flatten();
    let low = minimum.as_deref().unwrap_or(DEFAULT_DONATION_MINIMUM);
    let high = maximum.as_deref().unwrap_or(DEFAULT_DONATION_MAXIMUM);
    if cmp_decimal(low, high) == Ordering::Greater {
        d.error(
            if maximum.is_some() {
                "maximum"
            } else {
                "minimum"
            },
            "out_of_range",
            format!(
                "minimum ({low}) must not exceed maximum ({high}); unset bounds are \
                 {DEFAULT_DONATION_MINIMUM} and {DEFAULT_DONATION_MAXIMUM}"
            ),
        );
    }
    let campaigns = nullable(&mut d, "campaigns", |d, f| {
        d.string_array(
            f,
            MAX_CAMPAIGNS,
            is_campaign,
            "a campaign slug: a-z, 0-9, '-' and '_', at most 100 characters",
        )
    })
    .flatten()
    .map(|list| {
        let mut out: Vec<String> = Vec::with_capacity(list.len());
        for c in list {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    });
    o.absorb(d);
    Some(Donations {
        enabled: enabled?,
        currency,
        minimum,
        maximum,
        campaigns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use http::{header, HeaderMap, HeaderValue};
    use serde_json::json;

    use crate::config::{tests::dev_settings, Config};
    use crate::error::ApiError;

    fn read(body: &str) -> Result<TenantPatch, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let m = dev_settings();
        let config = Config::load(&|k: &str| m.get(k).cloned()).unwrap();
        let cx = BodyCx {
            config: &config,
            authenticated: true,
        };
        let mut o = JsonObject::parse(&h, &Bytes::from(body.to_owned()), TenantPatch::MAX_BODY)?;
        let patch = TenantPatch::from_json(&mut o, &cx);
        o.finish()?;
        Ok(patch.unwrap())
    }

    fn fields(body: &str) -> Vec<(String, &'static str)> {
        let e = read(body).unwrap_err();
        assert_eq!(e.code(), "validation_failed", "{e:?}");
        let mut f: Vec<_> = e
            .field_errors()
            .iter()
            .map(|e| (e.field.clone(), e.code))
            .collect();
        f.sort();
        f
    }

    fn settings(body: &str) -> serde_json::Value {
        serde_json::from_str(&read(body).unwrap().settings.to_json()).unwrap()
    }

    #[test]
    fn a_full_patch_is_stored_in_the_shapes_the_edge_reads() {
        let p = read(
            r##"{"name":"  Acme Shop ","currency":"EUR",
                "branding":{"primary_color":"#AABBCC","accent_color":"#fff","logo_file_id":"00000000-0000-4000-8000-0000000000AA"},
                "cors_origins":["https://Shop.Example.com","http://localhost:3000","https://shop.example.com","https://x.example:8443"],
                "ai":{"system_prompt":"Be brief.\nAlways.","responder":"local"},
                "donations":{"enabled":true,"currency":"EUR","minimum":"2.50","maximum":500,"campaigns":["spring-sale","summer_2026","spring-sale"]},
                "description":"We sell things."}"##,
        )
        .unwrap();
        assert_eq!(p.name.as_deref(), Some("Acme Shop"));
        let s: serde_json::Value = serde_json::from_str(&p.settings.to_json()).unwrap();
        assert_eq!(
            s,
            json!({
                "currency": "EUR",
                "branding": {"primary_color": "#aabbcc", "accent_color": "#fff",
                             "logo_file_id": "00000000-0000-4000-8000-0000000000aa"},
                "cors_origins": ["https://shop.example.com", "http://localhost:3000",
                                 "https://x.example:8443"],
                "ai": {"system_prompt": "Be brief.\nAlways.", "responder": "local"},
                "donations": {"enabled": true, "currency": "EUR", "minimum": "2.5",
                              "maximum": "500", "campaigns": ["spring-sale", "summer_2026"]},
                "description": "We sell things.",
            })
        );
        // The edge's typed reading of these settings sees every member.
        let t: crate::tenancy::TenantSettings = serde_json::from_value(s).unwrap();
        assert_eq!(t.currency.as_deref(), Some("EUR"));
        assert_eq!(t.cors_origins.len(), 3);
        assert_eq!(t.ai.responder.as_deref(), Some("local"));
        assert_eq!(t.ai.system_prompt.as_deref(), Some("Be brief.\nAlways."));
        assert_eq!(t.branding.unwrap()["primary_color"], "#aabbcc");
        assert_eq!(t.description, "We sell things.");
    }

    #[test]
    fn null_removes_a_member_and_absent_leaves_it() {
        assert_eq!(
            settings(
                r#"{"currency":null,"branding":null,"cors_origins":null,"ai":null,"donations":null,"description":null}"#
            ),
            json!({"currency": null, "branding": null, "cors_origins": null, "ai": null,
                   "donations": null, "description": null})
        );
        // Only what is named is sent; a name alone changes no setting.
        let p = read(r#"{"name":"New"}"#).unwrap();
        assert_eq!(p.settings.to_json(), "{}");
        assert_eq!(
            settings(r#"{"description":"x"}"#),
            json!({"description": "x"})
        );
        // Inside an object, null and absent are both "not set".
        assert_eq!(
            settings(r#"{"ai":{"system_prompt":null,"responder":null},"branding":{}}"#),
            json!({"ai": {}, "branding": {}})
        );
        assert_eq!(
            settings(r#"{"donations":{"enabled":false,"minimum":null,"campaigns":null}}"#),
            json!({"donations": {"enabled": false}})
        );
    }

    #[test]
    fn every_bad_member_is_reported_at_once() {
        let long = "x".repeat(MAX_SYSTEM_PROMPT + 1);
        let body = format!(
            r##"{{"name":"  ","currency":"usd","limits":{{"ai_monthly_tokens":1}},"theme":"dark",
                "branding":{{"primary_color":"red","accent_color":"#12345","logo_file_id":"nope","font":"x"}},
                "cors_origins":["https://ok.example","https://evil.example/path"],
                "ai":{{"system_prompt":"{long}","responder":"gpt","temperature":1}},
                "donations":{{"enabled":"yes","currency":"XXX","minimum":"-1","maximum":"1.2345","campaigns":["Bad Name"],"goal":5}},
                "description":7}}"##
        );
        assert_eq!(
            fields(&body),
            vec![
                ("ai.responder".into(), "invalid_value"),
                ("ai.system_prompt".into(), "too_long"),
                ("ai.temperature".into(), "unknown_field"),
                ("branding.accent_color".into(), "invalid_value"),
                ("branding.font".into(), "unknown_field"),
                ("branding.logo_file_id".into(), "invalid_value"),
                ("branding.primary_color".into(), "invalid_value"),
                ("cors_origins".into(), "invalid_value"),
                ("currency".into(), "invalid_value"),
                ("description".into(), "wrong_type"),
                ("donations.campaigns".into(), "invalid_value"),
                ("donations.currency".into(), "invalid_value"),
                ("donations.enabled".into(), "wrong_type"),
                ("donations.goal".into(), "unknown_field"),
                ("donations.maximum".into(), "too_many_decimals"),
                ("donations.minimum".into(), "out_of_range"),
                ("limits".into(), "unknown_field"),
                ("name".into(), "empty"),
                ("theme".into(), "unknown_field"),
            ]
        );
    }

    #[test]
    fn members_of_the_wrong_type_or_size_are_refused() {
        assert_eq!(
            fields(
                r#"{"name":null,"branding":"blue","ai":[],"donations":{},"cors_origins":"https://a.example"}"#
            ),
            vec![
                ("ai".into(), "wrong_type"),
                ("branding".into(), "wrong_type"),
                ("cors_origins".into(), "wrong_type"),
                ("donations.enabled".into(), "required"),
                ("name".into(), "wrong_type"),
            ]
        );
        let many: Vec<String> = (0..=MAX_CORS_ORIGINS)
            .map(|i| format!("\"https://s{i}.example\""))
            .collect();
        assert_eq!(
            fields(&format!(r#"{{"cors_origins":[{}]}}"#, many.join(","))),
            vec![("cors_origins".into(), "too_long")]
        );
        let many: Vec<String> = (0..=MAX_CAMPAIGNS).map(|i| format!("\"c{i}\"")).collect();
        assert_eq!(
            fields(&format!(
                r#"{{"donations":{{"enabled":true,"campaigns":[{}]}}}}"#,
                many.join(",")
            )),
            vec![("donations.campaigns".into(), "too_long")]
        );
        assert_eq!(
            fields(&format!(r#"{{"name":"{}"}}"#, "n".repeat(MAX_NAME + 1))),
            vec![("name".into(), "too_long")]
        );
        assert_eq!(
            fields(&format!(
                r#"{{"description":"{}"}}"#,
                "d".repeat(MAX_DESCRIPTION + 1)
            )),
            vec![("description".into(), "too_long")]
        );
        assert!(read(&format!(
            r#"{{"description":"{}"}}"#,
            "é".repeat(MAX_DESCRIPTION)
        ))
        .is_ok());
    }

    #[test]
    fn an_empty_patch_is_refused() {
        assert_eq!(fields("{}"), vec![("".into(), "empty")]);
        // With other problems, those are reported instead.
        assert_eq!(fields(r#"{"x":1}"#), vec![("x".into(), "unknown_field")]);
    }

    #[test]
    fn donation_bounds_must_leave_a_range() {
        assert_eq!(
            fields(r#"{"donations":{"enabled":true,"minimum":"10","maximum":"9.999"}}"#),
            vec![("donations.maximum".into(), "out_of_range")]
        );
        // Unset bounds are checkout's defaults: 1 and 1000000.
        assert_eq!(
            fields(r#"{"donations":{"enabled":true,"maximum":"0.5"}}"#),
            vec![("donations.maximum".into(), "out_of_range")]
        );
        assert_eq!(
            fields(r#"{"donations":{"enabled":true,"minimum":"1000000.001"}}"#),
            vec![("donations.minimum".into(), "out_of_range")]
        );
        assert!(read(r#"{"donations":{"enabled":true,"minimum":"5","maximum":"5"}}"#).is_ok());
        assert!(read(r#"{"donations":{"enabled":true,"minimum":0.5}}"#).is_ok());
    }

    #[test]
    fn values_have_their_shapes() {
        assert!(CURRENCIES.windows(2).all(|w| w[0] < w[1]), "sorted, unique");
        assert!(CURRENCIES
            .iter()
            .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())));
        for ok in ["USD", "EUR", "JPY", "CHF", "XOF"] {
            assert!(is_currency(ok), "{ok}");
        }
        for bad in ["usd", "US", "USDD", "XXX", "XAU", "ABC", ""] {
            assert!(!is_currency(bad), "{bad}");
        }
        for ok in ["#fff", "#A0b1C2", "#000000"] {
            assert!(is_color(ok), "{ok}");
        }
        for bad in ["fff", "#ffff", "#ggg", "#", "red", "#12345", "#1234567"] {
            assert!(!is_color(bad), "{bad}");
        }
        for ok in ["spring", "spring-sale", "summer_2026", "2026"] {
            assert!(is_campaign(ok), "{ok}");
        }
        for bad in ["", "-x", "_x", "Spring", "a b", "é", &"c".repeat(101)] {
            assert!(!is_campaign(bad), "{bad}");
        }
        assert_eq!(
            origin(" HTTPS://Shop.Example.COM:8443 ").as_deref(),
            Some("https://shop.example.com:8443")
        );
        assert_eq!(
            origin("http://app.localhost:5173").as_deref(),
            Some("http://app.localhost:5173")
        );
        for bad in [
            "http://shop.example.com",
            "https://shop.example.com/",
            "https://shop.example.com:0",
            "https://shop.example.com:65536",
            "https://shop.example.com:",
            "https://user@shop.example.com",
            "https://-x.example",
            "https://a..b",
            "https://a_b.example",
            "ftp://shop.example.com",
            "null",
            "*",
        ] {
            assert_eq!(origin(bad), None, "{bad}");
        }
        assert_eq!(cmp_decimal("10", "9.999"), Ordering::Greater);
        assert_eq!(cmp_decimal("1.5", "1.50"), Ordering::Equal);
        assert_eq!(cmp_decimal("0.001", "0.01"), Ordering::Less);
        assert_eq!(cmp_decimal("1000000", "999999.999"), Ordering::Greater);
    }
}
