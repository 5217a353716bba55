//! Remote origins: an S3-compatible object store or a plain HTTP(S) server that answers Range,
//! both through the `object_store` crate (one client family with the Python side's `obstore`).
//!
//! One interface: `stat(path)` (size, ETag, Last-Modified by a HEAD; cached for
//! `VOD_ORIGIN_STAT_TTL_SECONDS`, and reused past that while the origin is unreachable, so cached
//! slices stay servable), `open(path, range)`, an unconditional ranged GET whose response gives
//! the stat and the bytes at once (a cold object's first request: one round trip, not two), and
//! `read(path, range, etag)`, a byte stream of one ranged GET made conditional on the ETag. The
//! filesystem origin (`VOD_ORIGIN=file`) is not here: it keeps the server's own sendfile path.
//!
//! Timeouts are ours, not the HTTP client's: connecting is bounded by the client's connect
//! timeout (then 502), and every wait for origin bytes (response head, next chunk) by
//! `VOD_ORIGIN_TIMEOUT_SECONDS` (then 504). The client makes no retries: a failing origin is
//! answered quickly and the client retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as StorePath;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig,
};

use crate::config::OriginConfig;

/// What the origin says about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub size: u64,
    /// The ETag as the origin sent it (quotes included), if any.
    pub etag: Option<String>,
    /// Last-Modified, epoch seconds.
    pub last_modified: i64,
    /// Hex key of (path, ETag, size, Last-Modified), made once per stat: the slice cache's name
    /// for this version of the object (a replaced object never reuses slices).
    pub key: String,
}

impl Meta {
    pub fn new(relative: &str, size: u64, etag: Option<String>, last_modified: i64) -> Meta {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(relative.as_bytes());
        hash.update(b"\n");
        hash.update(etag.as_deref().unwrap_or("").as_bytes());
        hash.update(format!("\n{size}\n{last_modified}").as_bytes());
        let digest = hash.finalize();
        let key = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Meta { size, etag, last_modified, key }
    }
}

/// Why the origin did not deliver: each cause is a metric label and an HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginError {
    NotFound,
    /// Refused, reset, DNS, TLS, or an HTTP error status: 502.
    Unreachable(String),
    /// No bytes for `VOD_ORIGIN_TIMEOUT_SECONDS`: 504.
    Timeout,
    /// The object's ETag is not the one the response was planned with.
    Changed,
    /// The origin sent fewer bytes than it announced.
    Truncated,
}

impl OriginError {
    pub const CAUSES: [&'static str; 5] = ["not_found", "unreachable", "timeout", "changed", "truncated"];

    pub fn cause(&self) -> &'static str {
        match self {
            OriginError::NotFound => "not_found",
            OriginError::Unreachable(_) => "unreachable",
            OriginError::Timeout => "timeout",
            OriginError::Changed => "changed",
            OriginError::Truncated => "truncated",
        }
    }

    /// The answer to a client when nothing was sent yet.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            OriginError::NotFound => (404, "not found"),
            OriginError::Timeout => (504, "the origin did not answer in time"),
            OriginError::Changed => (502, "the object changed at the origin during the request"),
            OriginError::Truncated => (502, "the origin sent a truncated body"),
            OriginError::Unreachable(_) => (502, "the origin is unreachable"),
        }
    }

    fn from_store(error: object_store::Error) -> OriginError {
        match error {
            object_store::Error::NotFound { .. } => OriginError::NotFound,
            object_store::Error::Precondition { .. } => OriginError::Changed,
            other => {
                // the HTTP store reports a refused If-Match as a generic request error
                let text = other.to_string();
                if http_status(&text) == Some(412) {
                    OriginError::Changed
                } else {
                    crate::logs::event(
                        "warning",
                        "origin request failed",
                        vec![("error", serde_json::Value::String(text.clone()))],
                    );
                    OriginError::Unreachable(text)
                }
            }
        }
    }
}

/// The HTTP status an origin answered, from the text of an `object_store` error (its HTTP store
/// wraps the status in a private type; only its message says "non-2xx status code: 412 ...").
/// Only that phrase counts: a URL in the same message (a port such as 41234) is not a status.
fn http_status(error: &str) -> Option<u16> {
    let (_, after) = error.split_once("non-2xx status code: ")?;
    let code = after.get(..3)?;
    let next = after[3..].chars().next();
    match next {
        None | Some(' ') | Some(':') => code.parse().ok(),
        _ => None,
    }
}

pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    timeout: Duration,
    stat_ttl: Duration,
    stats: Mutex<HashMap<String, (Arc<Meta>, Instant)>>,
}

fn seconds(value: f64, fallback: f64) -> Duration {
    Duration::from_secs_f64(if value > 0.0 { value } else { fallback })
}

fn read_secret(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn client_options(cfg: &OriginConfig, ca_file: Option<&std::path::Path>) -> Result<ClientOptions, String> {
    let mut options = ClientOptions::new()
        .with_allow_http(true)
        .with_connect_timeout(seconds(cfg.origin_connect_timeout_seconds, 2.0))
        .with_timeout_disabled();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let certs = object_store::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())?;
        for cert in certs {
            options = options.with_root_certificate(cert);
        }
    }
    Ok(options)
}

fn no_retries() -> RetryConfig {
    RetryConfig { backoff: BackoffConfig::default(), max_retries: 0, retry_timeout: Duration::from_secs(1) }
}

/// The S3 client of the `VOD_S3_*` settings (`retry`: none for reads, which are answered
/// quickly and retried by the client; a few for the uploads' multipart calls, `multipart`).
pub fn s3_store(cfg: &OriginConfig, retry: RetryConfig) -> Result<AmazonS3, String> {
    let endpoint = cfg.s3_endpoint.clone().ok_or("VOD_S3_ENDPOINT is required")?;
    let bucket = cfg.s3_bucket.clone().ok_or("VOD_S3_BUCKET is required")?;
    let mut builder = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(bucket)
        .with_region(cfg.s3_region.clone())
        .with_virtual_hosted_style_request(!cfg.s3_path_style)
        .with_allow_http(true)
        .with_retry(retry)
        .with_client_options(client_options(cfg, cfg.s3_ca_file.as_deref())?);
    match (&cfg.s3_access_key_id_file, &cfg.s3_secret_access_key_file) {
        (Some(key), Some(secret)) => {
            builder =
                builder.with_access_key_id(read_secret(key)?).with_secret_access_key(read_secret(secret)?);
        }
        _ => builder = builder.with_skip_signature(true),
    }
    builder.build().map_err(|e| e.to_string())
}

impl Remote {
    /// The configured remote origin; `Ok(None)` for the filesystem origin.
    pub fn from_config(cfg: &OriginConfig) -> Result<Option<Remote>, String> {
        let store: Arc<dyn ObjectStore> = match cfg.origin.as_str() {
            "file" => return Ok(None),
            "s3" => Arc::new(s3_store(cfg, no_retries())?),
            "http" => {
                let url = cfg.http_origin_url.clone().ok_or("VOD_HTTP_ORIGIN_URL is required")?;
                let store = object_store::http::HttpBuilder::new()
                    .with_url(url)
                    .with_retry(no_retries())
                    .with_client_options(client_options(cfg, cfg.http_origin_ca_file.as_deref())?)
                    .build()
                    .map_err(|e| e.to_string())?;
                Arc::new(store)
            }
            other => return Err(format!("unknown origin {other:?}")),
        };
        let prefix =
            if cfg.origin == "s3" { cfg.s3_prefix.trim_matches('/').to_string() } else { String::new() };
        Ok(Some(Remote {
            store,
            prefix,
            timeout: seconds(cfg.origin_timeout_seconds, 10.0),
            stat_ttl: Duration::from_secs_f64(cfg.origin_stat_ttl_seconds.max(0.0)),
            stats: Mutex::new(HashMap::new()),
        }))
    }

    fn location(&self, relative: &str) -> StorePath {
        if self.prefix.is_empty() {
            StorePath::from(relative)
        } else {
            StorePath::from(format!("{}/{relative}", self.prefix))
        }
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<Meta>, Instant)>> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stat cache's answer for `relative`: `Some((meta, fresh))` when any stat is known.
    pub fn known(&self, relative: &str) -> Option<(Arc<Meta>, bool)> {
        let stats = self.stats();
        let (meta, at) = stats.get(relative)?;
        Some((meta.clone(), at.elapsed() < self.stat_ttl))
    }

    fn remember(&self, relative: &str, meta: object_store::ObjectMeta) -> Arc<Meta> {
        let meta = Arc::new(Meta::new(relative, meta.size, meta.e_tag, meta.last_modified.timestamp()));
        let mut stats = self.stats();
        if stats.len() >= 65_536 {
            stats.clear(); // a bound, not a policy: stats are cheap to make again
        }
        stats.insert(relative.to_string(), (meta.clone(), Instant::now()));
        meta
    }

    /// Size, ETag and Last-Modified of `relative`: from the stat cache while fresh, else a HEAD;
    /// when the origin cannot be reached, the last known answer (so cached slices stay servable).
    pub async fn stat(&self, relative: &str) -> Result<Arc<Meta>, OriginError> {
        let known = self.known(relative);
        if let Some((meta, true)) = &known {
            return Ok(meta.clone());
        }
        let location = self.location(relative);
        let answer = match tokio::time::timeout(self.timeout, self.store.head(&location)).await {
            Err(_) => Err(OriginError::Timeout),
            Ok(result) => result.map_err(OriginError::from_store),
        };
        match answer {
            Ok(meta) => Ok(self.remember(relative, meta)),
            Err(OriginError::NotFound) => {
                self.forget(relative);
                Err(OriginError::NotFound)
            }
            Err(e) => known.map(|(meta, _)| meta).ok_or(e),
        }
    }

    /// One unconditional GET of bytes `start..end` of `relative` (the origin clamps `end` to the
    /// object's size): the object's stat (remembered, as `stat` does) and the bytes actually sent
    /// (`start..` up to the clamped end). `Ok(None)` when the origin answers 416 (`start` is past
    /// the object's end): the caller then stats it, since a 416 carries no validators.
    pub async fn open(
        &self,
        relative: &str,
        start: u64,
        end: u64,
    ) -> Result<Option<(Arc<Meta>, ByteStream)>, OriginError> {
        let options = GetOptions { range: Some(GetRange::Bounded(start..end)), ..GetOptions::default() };
        let location = self.location(relative);
        let result = match tokio::time::timeout(self.timeout, self.store.get_opts(&location, options)).await {
            Err(_) => return Err(OriginError::Timeout),
            Ok(Err(e)) if http_status(&e.to_string()) == Some(416) => return Ok(None),
            Ok(result) => result.map_err(OriginError::from_store),
        };
        let result = match result {
            Err(OriginError::NotFound) => {
                self.forget(relative);
                return Err(OriginError::NotFound);
            }
            other => other?,
        };
        let left = result.range.end - result.range.start;
        let meta = self.remember(relative, result.meta.clone());
        Ok(Some((meta, ByteStream { inner: result.into_stream(), wait: self.timeout, left })))
    }

    /// Forget what `stat` knows of `relative` (the object changed).
    pub fn forget(&self, relative: &str) {
        self.stats().remove(relative);
    }

    /// The bytes `start..end` of `relative`, only if its ETag is still `etag`.
    pub async fn read(
        &self,
        relative: &str,
        start: u64,
        end: u64,
        etag: Option<&str>,
    ) -> Result<ByteStream, OriginError> {
        let options = GetOptions {
            if_match: etag.map(str::to_string),
            range: Some(GetRange::Bounded(start..end)),
            ..GetOptions::default()
        };
        let location = self.location(relative);
        let result = match tokio::time::timeout(self.timeout, self.store.get_opts(&location, options)).await {
            Err(_) => return Err(OriginError::Timeout),
            Ok(result) => result.map_err(OriginError::from_store)?,
        };
        if etag.is_some() && result.meta.e_tag.is_some() && result.meta.e_tag.as_deref() != etag {
            return Err(OriginError::Changed); // an origin that ignored If-Match
        }
        Ok(ByteStream { inner: result.into_stream(), wait: self.timeout, left: end - start })
    }
}

/// The bytes of one ranged read, in order, as they arrive; every wait bounded by the timeout.
pub struct ByteStream {
    inner: BoxStream<'static, object_store::Result<Bytes>>,
    wait: Duration,
    left: u64,
}

impl ByteStream {
    /// At most the next `bytes` bytes (the rest of the response is never read).
    pub fn limit(mut self, bytes: u64) -> ByteStream {
        self.left = self.left.min(bytes);
        self
    }

    /// The next bytes; `None` after the last one.
    pub async fn next(&mut self) -> Option<Result<Bytes, OriginError>> {
        if self.left == 0 {
            return None;
        }
        match tokio::time::timeout(self.wait, self.inner.next()).await {
            Err(_) => Some(Err(OriginError::Timeout)),
            Ok(None) => Some(Err(OriginError::Truncated)),
            Ok(Some(Err(e))) => Some(Err(OriginError::from_store(e))),
            Ok(Some(Ok(mut bytes))) => {
                if bytes.len() as u64 > self.left {
                    bytes.truncate(self.left as usize);
                }
                self.left -= bytes.len() as u64;
                Some(Ok(bytes))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::http_status;

    #[test]
    fn the_status_comes_from_the_status_phrase_only() {
        let refused = "Generic HTTP error: Request error: Error performing GET \
            http://127.0.0.1:41234/v.mp4 in 1ms - error sending request: Connection refused";
        assert_eq!(http_status(refused), None);
        let precondition = "Generic HTTP error: Request error: Error performing GET \
            http://127.0.0.1:41600/v.mp4 in 2ms - Server returned non-2xx status code: \
            412 Precondition Failed: ";
        assert_eq!(http_status(precondition), Some(412));
        let range = "Server returned non-2xx status code: 416 Range Not Satisfiable: {}";
        assert_eq!(http_status(range), Some(416));
        assert_eq!(http_status("Server returned non-2xx status code: 4125"), None);
    }
}
