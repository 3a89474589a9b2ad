//! S3 requests signed with SigV4 (aws-sigv4), with the signing time taken from the clock port.
//! Works against AWS (virtual-hosted style), and path-style endpoints (MinIO, R2, local s3s).

use std::fmt;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::{Method, Request, Uri};

use crate::config::S3Config;
use crate::ports::{with_timeout, Clock, HttpClient, OutboundError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Error {
    /// The request could not be built or signed (a configuration problem).
    Signing(String),
    Unavailable(OutboundError),
    /// S3 answered with an unexpected status.
    Status(u16),
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Signing(m) => write!(f, "cannot sign S3 request: {m}"),
            Self::Unavailable(e) => write!(f, "S3 unavailable: {e}"),
            Self::Status(s) => write!(f, "S3 answered HTTP {s}"),
        }
    }
}

/// URL of the bucket itself (`key == None`) or of an object, in the configured addressing style.
/// `key` must already be URI-encoded per segment.
pub fn url(cfg: &S3Config, key: Option<&str>) -> Result<Uri, S3Error> {
    let scheme = cfg.endpoint.scheme_str().unwrap_or("https");
    let authority = cfg
        .endpoint
        .authority()
        .map(|a| a.as_str())
        .ok_or_else(|| S3Error::Signing("endpoint has no host".into()))?;
    let base_path = cfg.endpoint.path().trim_end_matches('/');
    let s = match (cfg.path_style, key) {
        (true, None) => format!("{scheme}://{authority}{base_path}/{}", cfg.bucket),
        (true, Some(k)) => format!("{scheme}://{authority}{base_path}/{}/{k}", cfg.bucket),
        (false, None) => format!("{scheme}://{}.{authority}{base_path}/", cfg.bucket),
        (false, Some(k)) => format!("{scheme}://{}.{authority}{base_path}/{k}", cfg.bucket),
    };
    s.parse()
        .map_err(|e| S3Error::Signing(format!("bad URL {s}: {e}")))
}

/// Adds SigV4 `Authorization`, `x-amz-date` and `x-amz-content-sha256` headers to `req`.
pub fn sign_request(
    cfg: &S3Config,
    req: &mut Request<Bytes>,
    now: SystemTime,
) -> Result<(), S3Error> {
    let identity = Credentials::new(
        cfg.access_key_id.clone(),
        cfg.secret_access_key.expose().to_owned(),
        None,
        None,
        "edgefront-config",
    )
    .into();
    let mut settings = SigningSettings::default();
    // S3 signs the path as sent: no double encoding, no normalisation, and a payload hash header.
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&cfg.region)
        .name("s3")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| S3Error::Signing(e.to_string()))?
        .into();
    let uri = req.uri().to_string();
    let headers = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
    let signable = SignableRequest::new(
        req.method().as_str(),
        &uri,
        headers,
        SignableBody::Bytes(req.body()),
    )
    .map_err(|e| S3Error::Signing(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| S3Error::Signing(e.to_string()))?
        .into_parts();
    instructions.apply_to_request_http1x(req);
    Ok(())
}

/// Signed `HEAD` of the bucket: proves the endpoint, the credentials and the bucket.
pub async fn head_bucket<P: HttpClient + Clock>(
    platform: &P,
    cfg: &S3Config,
) -> Result<(), S3Error> {
    let mut req = Request::builder()
        .method(Method::HEAD)
        .uri(url(cfg, None)?)
        .body(Bytes::new())
        .map_err(|e| S3Error::Signing(e.to_string()))?;
    sign_request(cfg, &mut req, platform.now())?;
    let resp = with_timeout(platform, cfg.timeout, platform.send(req))
        .await
        .map_err(S3Error::Unavailable)?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(S3Error::Status(resp.status().as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{tests::dev_settings, Config};
    use std::time::Duration;

    fn cfg(path_style: bool) -> S3Config {
        let mut m = dev_settings();
        if !path_style {
            m.remove("S3_ENDPOINT");
            m.insert("S3_FORCE_PATH_STYLE", "false".into());
        }
        Config::load(&|k: &str| m.get(k).cloned()).unwrap().s3
    }

    #[test]
    fn urls_follow_the_addressing_style() {
        assert_eq!(
            url(&cfg(true), None).unwrap(),
            "http://127.0.0.1:9000/edgefront-dev"
        );
        assert_eq!(
            url(&cfg(true), Some("t/f/a%20b.png")).unwrap(),
            "http://127.0.0.1:9000/edgefront-dev/t/f/a%20b.png"
        );
        assert_eq!(
            url(&cfg(false), None).unwrap(),
            "https://edgefront-dev.s3.us-east-1.amazonaws.com/"
        );
    }

    #[test]
    fn signing_is_deterministic_for_a_given_time_and_changes_with_it() {
        let c = cfg(true);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let sign_at = |t| {
            let mut req = Request::builder()
                .method(Method::HEAD)
                .uri(url(&c, None).unwrap())
                .body(Bytes::new())
                .unwrap();
            sign_request(&c, &mut req, t).unwrap();
            req
        };
        let a = sign_at(t);
        let auth = a.headers()["authorization"].to_str().unwrap().to_owned();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/aws4_request"
        ));
        assert!(auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date"));
        assert_eq!(a.headers()["x-amz-date"], "20150830T123600Z");
        assert_eq!(
            a.headers()["x-amz-content-sha256"],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(sign_at(t).headers()["authorization"], auth.as_str());
        assert_ne!(
            sign_at(t + Duration::from_secs(1)).headers()["authorization"],
            auth.as_str()
        );
    }
}
