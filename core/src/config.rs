//! Instance configuration: read once from the runtime (Workers vars/secrets, Spin/wasi
//! environment), validated into typed settings. A bad value names its setting instead of panicking.

use std::fmt;
use std::time::Duration;

use http::Uri;

use crate::auth::AuthConfig;

/// Where settings come from. Adapters look names up in their runtime's vars and secrets.
pub trait ConfigSource {
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> ConfigSource for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// A setting that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "setting {}: {}", self.setting, self.problem)
    }
}

/// A string that must never reach logs or responses.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Defaults for the reserved labels: infrastructure names that must never become tenants.
pub const DEFAULT_RESERVED: &[&str] = &[
    "www",
    "api",
    "admin",
    "app",
    "auth",
    "static",
    "cdn",
    "mail",
    "status",
    "docs",
    "help",
    "support",
    "billing",
    "dashboard",
    "login",
    "signup",
    "assets",
    "media",
    "img",
    "blog",
    "dev",
    "staging",
    "internal",
    "smtp",
    "ftp",
    "ns1",
    "ns2",
];

/// Tenancy settings.
#[derive(Debug, Clone)]
pub struct TenancyConfig {
    pub reserved: Vec<String>,
    pub trust_forwarded_host: bool,
    pub cache_ttl: Duration,
    pub negative_cache_ttl: Duration,
    /// Browser origins allowed on every tenant besides the tenant's own (`CORS_ALLOWED_ORIGINS`).
    pub cors_origins: Vec<String>,
    /// `max-age` of public storefront responses (`STOREFRONT_CACHE_SECONDS`).
    pub storefront_max_age: Duration,
    /// How long an instance serves a storefront answer it computed without computing it again
    /// (`STOREFRONT_EDGE_CACHE_SECONDS`, default 10, at most `storefront_max_age`; 0: never).
    /// See [`crate::answers`].
    pub storefront_edge_ttl: Duration,
}

/// Splits `scheme://host[:port]` into (scheme, host); anything else (paths, userinfo,
/// `null`) is not an origin we can allow.
pub fn parse_origin(origin: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = origin.split_once("://")?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains(['/', '@', '?', '#'])
    {
        return None;
    }
    let host = match rest.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        Some(_) => return None,
        None => rest,
    };
    (!host.is_empty()).then_some((scheme, host))
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Tenants live at `{slug}.{base_domain}`.
    pub base_domain: String,
    pub origin: OriginConfig,
    pub s3: S3Config,
    pub tenancy: TenancyConfig,
    pub auth: AuthConfig,
    pub chat: ChatConfig,
    pub platform: PlatformConfig,
    /// Requests per window by route class, per client IP and per tenant (`RATE_LIMITS`,
    /// `RATE_LIMIT_URL`, `RATE_LIMIT_TIMEOUT_MS`; see [`crate::ratelimit`]).
    pub rate_limits: crate::rate_policy::RateLimits,
    /// Request ids, logs and traces (`REQUEST_ID_HEADER`, `LOG_LEVEL`,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, …).
    pub telemetry: TelemetryConfig,
}

/// What goes to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Nothing.
    Off,
    /// Only `error` lines: an upstream's or backend's failure, in its own words.
    Error,
    /// Also one `request` line per request (the default).
    Info,
}

/// Request ids, logs and traces.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `REQUEST_ID_HEADER`: a header the platform or a trusted proxy sets (`cf-ray` on
    /// Cloudflare, `x-request-id` behind a proxy that sets it); its value becomes the request id
    /// when well formed. Unset: ids are generated. Never a header only clients set.
    pub request_id_header: Option<http::HeaderName>,
    pub log_level: LogLevel,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (base URL): spans go to `{endpoint}/v1/traces` as OTLP/HTTP
    /// JSON after the response. Unset: no tracing.
    pub otlp_endpoint: Option<Uri>,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` (ms, default 2000): an export that takes longer is dropped.
    pub otlp_timeout: Duration,
    /// `OTEL_SERVICE_NAME` (default `edgefront`).
    pub service_name: String,
    /// `OTEL_BSP_SCHEDULE_DELAY` (ms, default 0): how long the first finished request waits to
    /// gather other requests' spans into one export. 0: each request exports its own at once.
    pub otlp_delay: Duration,
}

/// Onboarding and the platform API.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// The host that serves `/v1/platform/*` and `/v1/signup` (`PLATFORM_HOST`, default
    /// `admin.{BASE_DOMAIN}`); never a tenant's.
    pub host: String,
    /// Self-service `POST /v1/signup` (`SIGNUP_ENABLED`, default off).
    pub signup_enabled: bool,
    /// DNS-over-HTTPS JSON endpoint that verifies custom domains (`DOH_RESOLVER_URL`).
    pub doh_url: Uri,
    /// Deadline of one DNS-over-HTTPS query (`DOH_TIMEOUT_MS`).
    pub doh_timeout: Duration,
    /// How long an invitation can be accepted (`INVITATION_TTL_SECONDS`, default 7 days).
    pub invitation_ttl: Duration,
    /// Bearer token of operators (`OPERATOR_TOKEN`, at least 16 characters): required by
    /// `/healthz?deep=1`, which costs backend round trips. Unset: the deep check is refused.
    pub operator_token: Option<Secret>,
}

/// AI chat: the OpenAI-compatible provider (none: the built-in local responder answers) and
/// the limits of a turn.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    pub provider: Option<ProviderConfig>,
    /// Most completion tokens a turn may ask for (`AI_MAX_TOKENS`).
    pub max_tokens: u32,
    /// Until the provider's response head (`AI_TIMEOUT_MS`).
    pub timeout: Duration,
    /// Longest silence between two chunks of the provider's stream (`AI_IDLE_TIMEOUT_MS`).
    pub idle_timeout: Duration,
    /// Signs anonymous visitors' cookies (`VISITOR_COOKIE_SECRET`, at least 32 bytes).
    pub visitor_secret: Option<Secret>,
    /// The request header that carries the client's IP (`CLIENT_IP_HEADER`, default
    /// `cf-connecting-ip`, which Cloudflare sets and overwrites; `none`: no header is trusted).
    /// Only a header the platform or a trusted proxy in front sets may be named: clients can
    /// send any header. Visitor chat is limited per (hashed) client IP as well as per cookie.
    pub client_ip_header: Option<http::HeaderName>,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// `AI_BASE_URL`, e.g. `https://api.openai.com/v1`; requests go to `{base}/chat/completions`.
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub model: String,
}

/// The SQL-over-HTTP proxy in front of Postgres (Neon protocol).
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// Absolute URL of the proxy's `/sql` endpoint.
    pub url: Uri,
    /// Sent as `Neon-Connection-String`; carries the application role's password.
    pub connection_string: Secret,
    /// Optional `Authorization: Bearer` token the proxy requires.
    pub token: Option<Secret>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct S3Config {
    /// Service endpoint without the bucket (`https://s3.us-east-1.amazonaws.com`, `http://127.0.0.1:9000`).
    pub endpoint: Uri,
    pub region: String,
    pub bucket: String,
    /// Path-style (`endpoint/bucket/key`) rather than virtual-hosted (`bucket.endpoint/key`).
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub timeout: Duration,
    /// Validity of presigned upload URLs and forms (`UPLOAD_URL_TTL_SECONDS`, default 15 min);
    /// also the longest a client may ask for.
    pub upload_url_ttl: Duration,
    /// Validity of presigned download URLs (`DOWNLOAD_URL_TTL_SECONDS`, default 5 min).
    pub download_url_ttl: Duration,
    /// The SigV4 signing key derived from `secret_access_key`, kept for its day and scope.
    pub signing_keys: crate::sigv4::KeyCache,
}

impl Config {
    /// Names of every setting, for adapters that must declare them (spin.toml, wrangler.toml).
    pub const SETTINGS: &'static [&'static str] = &[
        "BASE_DOMAIN",
        "ORIGIN_SQL_URL",
        "DATABASE_URL",
        "ORIGIN_SQL_TOKEN",
        "ORIGIN_TIMEOUT_MS",
        "S3_ENDPOINT",
        "S3_REGION",
        "S3_BUCKET",
        "S3_FORCE_PATH_STYLE",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
        "S3_TIMEOUT_MS",
        "UPLOAD_URL_TTL_SECONDS",
        "DOWNLOAD_URL_TTL_SECONDS",
        "RESERVED_SUBDOMAINS",
        "TRUST_FORWARDED_HOST",
        "TENANT_CACHE_TTL_SECONDS",
        "TENANT_NEGATIVE_CACHE_TTL_SECONDS",
        "CORS_ALLOWED_ORIGINS",
        "STOREFRONT_CACHE_SECONDS",
        "STOREFRONT_EDGE_CACHE_SECONDS",
        "JWT_ISSUERS",
        "JWT_CLAIMS",
        "AI_BASE_URL",
        "AI_API_KEY",
        "AI_MODEL",
        "AI_MAX_TOKENS",
        "AI_TIMEOUT_MS",
        "AI_IDLE_TIMEOUT_MS",
        "VISITOR_COOKIE_SECRET",
        "PLATFORM_HOST",
        "SIGNUP_ENABLED",
        "DOH_RESOLVER_URL",
        "DOH_TIMEOUT_MS",
        "INVITATION_TTL_SECONDS",
        "OPERATOR_TOKEN",
        "CLIENT_IP_HEADER",
        "RATE_LIMITS",
        "RATE_LIMIT_URL",
        "RATE_LIMIT_TIMEOUT_MS",
    ];

    pub fn load(src: &dyn ConfigSource) -> Result<Self, ConfigError> {
        let r = Reader(src);
        let base_domain = r
            .required("BASE_DOMAIN")?
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if base_domain.is_empty() || !base_domain.split('.').all(is_dns_label) {
            return Err(r.bad(
                "BASE_DOMAIN",
                "must be a DNS name such as example.com or localhost",
            ));
        }
        let origin = OriginConfig {
            url: r.http_url("ORIGIN_SQL_URL", r.required("ORIGIN_SQL_URL")?)?,
            connection_string: Secret(r.postgres_url("DATABASE_URL")?),
            token: r.optional("ORIGIN_SQL_TOKEN").map(Secret),
            timeout: r.millis("ORIGIN_TIMEOUT_MS", 5_000)?,
        };
        let region = r.required("S3_REGION")?;
        if !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(r.bad("S3_REGION", "must look like us-east-1 or auto"));
        }
        let bucket = r.required("S3_BUCKET")?;
        if bucket.len() < 3
            || bucket.len() > 63
            || !bucket.split('.').all(is_dns_label)
            || bucket.contains("..")
        {
            return Err(r.bad("S3_BUCKET", "must be a valid S3 bucket name"));
        }
        let endpoint = match r.optional("S3_ENDPOINT") {
            Some(e) => r.http_url("S3_ENDPOINT", e)?,
            None => r.http_url("S3_ENDPOINT", format!("https://s3.{region}.amazonaws.com"))?,
        };
        let path_style = r.bool("S3_FORCE_PATH_STYLE", bucket.contains('.'))?;
        let s3 = S3Config {
            endpoint,
            region,
            bucket,
            path_style,
            access_key_id: r.required("S3_ACCESS_KEY_ID")?,
            secret_access_key: Secret(r.required("S3_SECRET_ACCESS_KEY")?),
            timeout: r.millis("S3_TIMEOUT_MS", 5_000)?,
            upload_url_ttl: r.seconds("UPLOAD_URL_TTL_SECONDS", 900)?,
            download_url_ttl: r.seconds("DOWNLOAD_URL_TTL_SECONDS", 300)?,
            signing_keys: Default::default(),
        };
        let reserved = match r.optional("RESERVED_SUBDOMAINS") {
            None => DEFAULT_RESERVED.iter().map(|s| s.to_string()).collect(),
            Some(list) => {
                let names: Vec<String> = list
                    .split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect();
                if names.iter().any(|n| !is_dns_label(n)) {
                    return Err(r.bad(
                        "RESERVED_SUBDOMAINS",
                        "must be a comma-separated list of DNS labels",
                    ));
                }
                names
            }
        };
        let storefront_max_age = r.seconds("STOREFRONT_CACHE_SECONDS", 60)?;
        let tenancy = TenancyConfig {
            reserved,
            trust_forwarded_host: r.bool("TRUST_FORWARDED_HOST", false)?,
            cache_ttl: r.seconds("TENANT_CACHE_TTL_SECONDS", 60)?,
            negative_cache_ttl: r.seconds("TENANT_NEGATIVE_CACHE_TTL_SECONDS", 60)?,
            cors_origins: match r.optional("CORS_ALLOWED_ORIGINS") {
                None => Vec::new(),
                Some(list) => {
                    let origins: Vec<String> = list
                        .split(',')
                        .map(|s| s.trim().trim_end_matches('/').to_ascii_lowercase())
                        .filter(|s| !s.is_empty())
                        .collect();
                    if origins.iter().any(|o| parse_origin(o).is_none()) {
                        return Err(r.bad(
                            "CORS_ALLOWED_ORIGINS",
                            "must be a comma-separated list of origins such as https://shop.example.com",
                        ));
                    }
                    origins
                }
            },
            storefront_max_age,
            storefront_edge_ttl: r
                .seconds_or_off("STOREFRONT_EDGE_CACHE_SECONDS", 10)?
                .min(storefront_max_age),
        };
        let issuers = r.required("JWT_ISSUERS")?;
        let auth =
            AuthConfig::from_json(&issuers, r.optional("JWT_CLAIMS").as_deref()).map_err(|e| {
                let setting = if e.starts_with("issuers") {
                    "JWT_ISSUERS"
                } else {
                    "JWT_CLAIMS"
                };
                ConfigError {
                    setting,
                    problem: e,
                }
            })?;
        let provider = match r.optional("AI_BASE_URL") {
            None => None,
            Some(url) => {
                let uri = r.http_url("AI_BASE_URL", url)?;
                Some(ProviderConfig {
                    base_url: uri.to_string().trim_end_matches('/').to_owned(),
                    api_key: r.optional("AI_API_KEY").map(Secret),
                    model: r
                        .optional("AI_MODEL")
                        .unwrap_or_else(|| "gpt-4o-mini".into()),
                })
            }
        };
        let max_tokens = match r.optional("AI_MAX_TOKENS") {
            None => 512,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (16..=8192).contains(&n) => n,
                _ => return Err(r.bad("AI_MAX_TOKENS", "must be a whole number from 16 to 8192")),
            },
        };
        let visitor_secret = match r.optional("VISITOR_COOKIE_SECRET") {
            Some(s) if s.len() < 32 => {
                return Err(r.bad("VISITOR_COOKIE_SECRET", "must be at least 32 characters"))
            }
            s => s.map(Secret),
        };
        let chat = ChatConfig {
            provider,
            max_tokens,
            timeout: r.millis("AI_TIMEOUT_MS", 30_000)?,
            idle_timeout: r.millis("AI_IDLE_TIMEOUT_MS", 30_000)?,
            visitor_secret,
            client_ip_header: match r.optional("CLIENT_IP_HEADER") {
                None => Some(http::HeaderName::from_static("cf-connecting-ip")),
                Some(h) if h.eq_ignore_ascii_case("none") => None,
                Some(h) => Some(http::HeaderName::from_bytes(h.trim().as_bytes()).map_err(
                    |_| {
                        r.bad(
                            "CLIENT_IP_HEADER",
                            "must be a header name such as cf-connecting-ip, or none",
                        )
                    },
                )?),
            },
        };
        let platform_host = match r.optional("PLATFORM_HOST") {
            Some(h) => h.trim_end_matches('.').to_ascii_lowercase(),
            None => format!("admin.{base_domain}"),
        };
        if !platform_host.split('.').all(is_dns_label) || platform_host.len() > 253 {
            return Err(r.bad(
                "PLATFORM_HOST",
                "must be a DNS name such as admin.example.com",
            ));
        }
        let platform = PlatformConfig {
            host: platform_host,
            signup_enabled: r.bool("SIGNUP_ENABLED", false)?,
            doh_url: r.http_url(
                "DOH_RESOLVER_URL",
                r.optional("DOH_RESOLVER_URL")
                    .unwrap_or_else(|| "https://cloudflare-dns.com/dns-query".into()),
            )?,
            doh_timeout: r.millis("DOH_TIMEOUT_MS", 3_000)?,
            invitation_ttl: match r.optional("INVITATION_TTL_SECONDS") {
                None => Duration::from_secs(7 * 24 * 3600),
                Some(v) => match v.parse::<u64>() {
                    Ok(s) if (60..=30 * 24 * 3600).contains(&s) => Duration::from_secs(s),
                    _ => {
                        return Err(r.bad(
                            "INVITATION_TTL_SECONDS",
                            "must be a whole number of seconds from 60 to 2592000 (30 days)",
                        ))
                    }
                },
            },
            operator_token: match r.optional("OPERATOR_TOKEN") {
                Some(t) if t.chars().count() < 16 => {
                    return Err(r.bad("OPERATOR_TOKEN", "must be at least 16 characters"))
                }
                t => t.map(Secret),
            },
        };
        let mut rate_limits =
            crate::rate_policy::RateLimits::parse(r.optional("RATE_LIMITS").as_deref())
                .map_err(|e| r.bad("RATE_LIMITS", &e))?;
        rate_limits.url = match r.optional("RATE_LIMIT_URL") {
            Some(u) => Some(r.http_url("RATE_LIMIT_URL", u)?),
            None => None,
        };
        rate_limits.timeout = r.millis("RATE_LIMIT_TIMEOUT_MS", 250)?;
        let telemetry = TelemetryConfig {
            request_id_header: match r.optional("REQUEST_ID_HEADER") {
                None => None,
                Some(h) => Some(http::HeaderName::from_bytes(h.trim().as_bytes()).map_err(
                    |_| r.bad("REQUEST_ID_HEADER", "must be a header name such as cf-ray"),
                )?),
            },
            log_level: match r.optional("LOG_LEVEL").as_deref().map(str::trim) {
                None | Some("info") => LogLevel::Info,
                Some("error") => LogLevel::Error,
                Some("off") => LogLevel::Off,
                Some(_) => return Err(r.bad("LOG_LEVEL", "must be info, error or off")),
            },
            otlp_endpoint: match r.optional("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(u) => Some(r.http_url("OTEL_EXPORTER_OTLP_ENDPOINT", u)?),
                None => None,
            },
            otlp_timeout: r.millis("OTEL_EXPORTER_OTLP_TIMEOUT", 2_000)?,
            service_name: r
                .optional("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| "edgefront".into()),
            otlp_delay: r.millis("OTEL_BSP_SCHEDULE_DELAY", 0)?,
        };
        rate_limits.set_key_secret(
            chat.visitor_secret
                .as_ref()
                .map_or(&[][..], |s| s.expose().as_bytes()),
        );
        Ok(Self {
            base_domain,
            origin,
            s3,
            tenancy,
            auth,
            chat,
            platform,
            rate_limits,
            telemetry,
        })
    }
}

fn is_dns_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

struct Reader<'a>(&'a dyn ConfigSource);

impl Reader<'_> {
    fn optional(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError {
            setting: name,
            problem: "is not set".into(),
        })
    }

    fn bad(&self, setting: &'static str, problem: &str) -> ConfigError {
        ConfigError {
            setting,
            problem: problem.into(),
        }
    }

    fn http_url(&self, name: &'static str, value: String) -> Result<Uri, ConfigError> {
        let uri: Uri = value
            .parse()
            .map_err(|_| self.bad(name, "is not a valid absolute URL"))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(uri),
            _ => Err(self.bad(name, "must be an http:// or https:// URL with a host")),
        }
    }

    fn postgres_url(&self, name: &'static str) -> Result<String, ConfigError> {
        let v = self.required(name)?;
        let rest = v
            .strip_prefix("postgresql://")
            .or_else(|| v.strip_prefix("postgres://"))
            .ok_or_else(|| self.bad(name, "must start with postgresql://"))?;
        // user[:password]@host[:port]/database[?params]; the Neon protocol needs all three parts.
        let (auth, host_and_db) = rest.rsplit_once('@').ok_or_else(|| {
            self.bad(
                name,
                "must name a user (postgresql://user:password@host/db)",
            )
        })?;
        let (host, db) = host_and_db
            .split_once('/')
            .ok_or_else(|| self.bad(name, "must name a database"))?;
        let db = db.split('?').next().unwrap_or_default();
        if auth.split(':').next().unwrap_or_default().is_empty() || host.is_empty() || db.is_empty()
        {
            return Err(self.bad(name, "must have a user, a host and a database"));
        }
        Ok(v)
    }

    fn millis(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        match self.optional(name) {
            None => Ok(Duration::from_millis(default)),
            Some(v) => match v.parse::<u64>() {
                Ok(ms) if (1..=120_000).contains(&ms) => Ok(Duration::from_millis(ms)),
                _ => Err(self.bad(
                    name,
                    "must be a whole number of milliseconds from 1 to 120000",
                )),
            },
        }
    }

    fn seconds(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.seconds_from(name, default, 1)
    }

    /// [`Reader::seconds`] where 0 turns the feature off.
    fn seconds_or_off(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.seconds_from(name, default, 0)
    }

    /// Whole seconds from `lowest` to a day.
    fn seconds_from(
        &self,
        name: &'static str,
        default: u64,
        lowest: u64,
    ) -> Result<Duration, ConfigError> {
        match self.optional(name) {
            None => Ok(Duration::from_secs(default)),
            Some(v) => match v.parse::<u64>() {
                Ok(s) if (lowest..=86_400).contains(&s) => Ok(Duration::from_secs(s)),
                _ => Err(self.bad(
                    name,
                    if lowest == 0 {
                        "must be a whole number of seconds from 0 (off) to 86400"
                    } else {
                        "must be a whole number of seconds from 1 to 86400"
                    },
                )),
            },
        }
    }

    fn bool(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes") => Ok(true),
            Some(v) if matches!(v.as_str(), "0" | "false" | "no") => Ok(false),
            Some(_) => Err(self.bad(name, "must be true or false")),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    pub fn dev_settings() -> HashMap<&'static str, String> {
        [
            ("BASE_DOMAIN", "localhost"),
            ("ORIGIN_SQL_URL", "http://127.0.0.1:4444/sql"),
            (
                "DATABASE_URL",
                "postgresql://edgefront_app:pw@localhost:5432/edgefront",
            ),
            ("S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("S3_REGION", "us-east-1"),
            ("S3_BUCKET", "edgefront-dev"),
            ("S3_FORCE_PATH_STYLE", "true"),
            ("S3_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            (
                "S3_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            ),
            (
                "JWT_ISSUERS",
                r#"[{"issuer":"https://idp.example.com/pool","client_ids":["app"],"token_use":["id","access"]}]"#,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect()
    }

    fn load(m: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::load(&|k: &str| m.get(k).cloned())
    }

    #[test]
    fn dev_settings_load_with_defaults() {
        let c = load(&dev_settings()).unwrap();
        assert_eq!(c.base_domain, "localhost");
        assert_eq!(c.origin.timeout, Duration::from_secs(5));
        assert!(c.s3.path_style);
        assert_eq!(c.s3.endpoint.host(), Some("127.0.0.1"));
        assert_eq!(c.s3.upload_url_ttl, Duration::from_secs(900));
        assert_eq!(c.s3.download_url_ttl, Duration::from_secs(300));
    }

    #[test]
    fn each_required_setting_is_named_when_missing() {
        for name in [
            "BASE_DOMAIN",
            "ORIGIN_SQL_URL",
            "DATABASE_URL",
            "S3_REGION",
            "S3_BUCKET",
            "S3_ACCESS_KEY_ID",
            "S3_SECRET_ACCESS_KEY",
            "JWT_ISSUERS",
        ] {
            let mut m = dev_settings();
            m.remove(name);
            let err = load(&m).unwrap_err();
            assert_eq!(err.setting, name);
            assert_eq!(err.problem, "is not set");
        }
    }

    #[test]
    fn malformed_settings_are_named() {
        for (name, value) in [
            ("ORIGIN_SQL_URL", "not a url"),
            ("ORIGIN_SQL_URL", "ftp://x/sql"),
            ("DATABASE_URL", "mysql://u@h/db"),
            ("DATABASE_URL", "postgresql://h/db"),
            ("DATABASE_URL", "postgresql://u:p@h"),
            ("ORIGIN_TIMEOUT_MS", "0"),
            ("ORIGIN_TIMEOUT_MS", "soon"),
            ("S3_FORCE_PATH_STYLE", "maybe"),
            ("UPLOAD_URL_TTL_SECONDS", "0"),
            ("DOWNLOAD_URL_TTL_SECONDS", "a week"),
            ("S3_BUCKET", "a"),
            ("S3_REGION", "US East"),
            ("BASE_DOMAIN", "-bad-.com"),
            ("JWT_ISSUERS", "[]"),
            ("JWT_ISSUERS", "not json"),
            ("JWT_CLAIMS", "{\"tenant\": 5}"),
        ] {
            let mut m = dev_settings();
            m.insert(name, value.into());
            let err = load(&m).unwrap_err();
            assert_eq!(err.setting, name, "{value}");
        }
    }

    #[test]
    fn aws_endpoint_is_derived_from_region() {
        let mut m = dev_settings();
        m.remove("S3_ENDPOINT");
        m.remove("S3_FORCE_PATH_STYLE");
        m.insert("S3_REGION", "eu-west-3".into());
        let c = load(&m).unwrap();
        assert_eq!(
            c.s3.endpoint.to_string(),
            "https://s3.eu-west-3.amazonaws.com/"
        );
        assert!(!c.s3.path_style);
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let c = load(&dev_settings()).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("wJalrXUtnFEMI"));
        assert!(!dbg.contains(":pw@"));
    }

    #[test]
    fn operator_token_is_optional_and_long() {
        let c = load(&dev_settings()).unwrap();
        assert!(c.platform.operator_token.is_none());
        let mut m = dev_settings();
        m.insert("OPERATOR_TOKEN", "short".into());
        assert_eq!(load(&m).unwrap_err().setting, "OPERATOR_TOKEN");
        m.insert("OPERATOR_TOKEN", "0123456789abcdef".into());
        let c = load(&m).unwrap();
        assert_eq!(
            c.platform.operator_token.as_ref().map(Secret::expose),
            Some("0123456789abcdef")
        );
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }
}
