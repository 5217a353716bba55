//! The data plane's settings: the `VOD_*` settings parsed once by Python (`vod_stream.config`),
//! handed over as JSON, plus what only the supervisor knows (the Python side's socket).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    pub media_root: PathBuf,
    pub workers: usize,
    pub max_ranges: usize,
    pub max_connections: usize,
    pub header_timeout_seconds: f64,
    pub body_timeout_seconds: f64,
    pub idle_timeout_seconds: f64,
    pub send_timeout_seconds: f64,
    pub shutdown_grace_seconds: f64,
    pub drain_delay_seconds: f64,
    pub signed_urls: bool,
    pub signing_keys_dir: PathBuf,
    pub signed_url_bind_ip: bool,
    pub client_ip_header: Option<String>,
    pub cors_allowed_origins: Vec<String>,
    pub access_log: bool,
    /// Descriptors the open-file cache keeps (0: sized from the descriptor limit).
    #[serde(default)]
    pub open_file_cache_size: usize,
    /// How long a kept file is served without a `stat()` of its path (0: every request).
    #[serde(default)]
    pub open_file_cache_valid_seconds: f64,
    pub log_level: String,
    /// The Python application's Unix socket: everything that is not media goes there.
    pub upstream_socket: PathBuf,
    /// Content-Type by lower-case file suffix (".mp4"), and the default.
    pub content_types: HashMap<String, String>,
    pub default_content_type: String,
    /// The supervisor: when it dies, the data plane is sent SIGTERM (it drains and exits).
    #[serde(default)]
    pub parent_pid: Option<i32>,
    /// Where media is read from: `file` (the media root), `s3` or `http` (see `origin`).
    #[serde(flatten)]
    pub origin: OriginConfig,
}

/// The origin and slice-cache settings (`VOD_ORIGIN`, `VOD_S3_*`, `VOD_HTTP_ORIGIN_*`,
/// `VOD_ORIGIN_*`, `VOD_CACHE_*`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct OriginConfig {
    pub origin: String,
    pub s3_endpoint: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_prefix: String,
    pub s3_region: String,
    pub s3_path_style: bool,
    pub s3_access_key_id_file: Option<PathBuf>,
    pub s3_secret_access_key_file: Option<PathBuf>,
    pub s3_ca_file: Option<PathBuf>,
    pub http_origin_url: Option<String>,
    pub http_origin_ca_file: Option<PathBuf>,
    pub origin_connect_timeout_seconds: f64,
    pub origin_timeout_seconds: f64,
    pub origin_stat_ttl_seconds: f64,
    pub cache_dir: Option<PathBuf>,
    pub cache_max_bytes: u64,
    pub cache_slice_bytes: u64,
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig {
            origin: "file".into(),
            s3_endpoint: None,
            s3_bucket: None,
            s3_prefix: String::new(),
            s3_region: "us-east-1".into(),
            s3_path_style: true,
            s3_access_key_id_file: None,
            s3_secret_access_key_file: None,
            s3_ca_file: None,
            http_origin_url: None,
            http_origin_ca_file: None,
            origin_connect_timeout_seconds: 2.0,
            origin_timeout_seconds: 10.0,
            origin_stat_ttl_seconds: 5.0,
            cache_dir: None,
            cache_max_bytes: 1 << 30,
            cache_slice_bytes: 1 << 20,
        }
    }
}

impl Config {
    pub fn content_type(&self, relative: &str) -> &str {
        let name = relative.rsplit('/').next().unwrap_or(relative);
        // as Python's os.path.splitext: a leading dot does not start a suffix
        let suffix = match name.rfind('.') {
            Some(dot) if dot > 0 && name[..dot].bytes().any(|b| b != b'.') => &name[dot..],
            _ => "",
        };
        if suffix.is_empty() {
            return &self.default_content_type;
        }
        let lower = suffix.to_ascii_lowercase();
        self.content_types.get(&lower).map(String::as_str).unwrap_or(&self.default_content_type)
    }
}
