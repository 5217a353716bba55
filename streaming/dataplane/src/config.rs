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
    pub log_level: String,
    /// The Python application's Unix socket: everything that is not media goes there.
    pub upstream_socket: PathBuf,
    /// Content-Type by lower-case file suffix (".mp4"), and the default.
    pub content_types: HashMap<String, String>,
    pub default_content_type: String,
    /// The supervisor: when it dies, the data plane is sent SIGTERM (it drains and exits).
    #[serde(default)]
    pub parent_pid: Option<i32>,
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
