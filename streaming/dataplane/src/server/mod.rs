//! The data plane: owns the listening socket; answers GET/HEAD/OPTIONS of media itself and
//! proxies every other request to the Python application over its Unix socket.
//!
//! One task per connection, on one worker thread's runtime for its whole life, reads a request
//! head, answers it completely, then reads the next: pipelined requests are answered in order,
//! and reading pauses while a response is being sent, so a connection holds at most one head
//! buffer whatever the client does. File bytes go out with sendfile(2) (small bodies with one
//! positional read and one write), on the worker thread while the page cache has them; a chunk
//! that is not cached is first read in the blocking pool, so a cold disk does not stall the
//! other connections of the worker.
//!
//! - `listener`: the accept loop (connection limit, busy refusals);
//! - `workers`: one single-threaded runtime per worker thread, each connection on one of them;
//! - `connection`: one connection's loop: read a head, route it, answer, keep alive or close;
//! - `access`: who may read what: signed URLs and tokens, the client IP, CORS and preflights;
//! - `static_file`: media from the filesystem origin (open-file cache, sendfile, cold reads);
//! - `slice`: media from a remote origin through the slice cache;
//! - `proxy`: everything else, streamed to the Python application and back;
//! - `response`: response plans and heads, small complete responses;
//! - `send`: bytes to the client's socket (write, sendfile) under the send timeout;
//! - `record`: request ids, trace context, and each request's metrics and access-log record.

mod access;
mod connection;
mod listener;
mod proxy;
mod record;
mod response;
mod send;
mod slice;
mod static_file;
mod workers;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

use crate::cache::store::Store;
use crate::cache::SliceCache;
use crate::config::Config;
use crate::descriptors;
use crate::logs;
use crate::metrics::Metrics;
use crate::origin::Remote;
use crate::paths::FileCache;
use crate::signing::KeyRing;

pub use connection::route_of;
pub use listener::accept_loop;
pub use workers::Workers;

/// Bodies up to this size are read into the response buffer and sent with the head in one write;
/// larger ones go out with sendfile. perf on 64 KiB random ranges: read + send spent about 45 % of
/// the data plane's CPU copying (page cache to the buffer, the buffer to the socket, zeroing it),
/// sendfile none of it; that CPU per request fell from 51 to 29 us (median of 5 interleaved runs).
const INLINE_BODY: u64 = 16 * 1024;
/// Bytes handed to one sendfile(2) call; each chunk's residency in the page cache is probed.
const SENDFILE_CHUNK: u64 = 512 * 1024;

/// The answer when no descriptor is left for a file or the application's socket.
pub(super) const EXHAUSTED_MESSAGE: &str = "the server is out of file descriptors, retry shortly";

/// A media request answered with an error: status, message, extra headers.
type Refused = (u16, &'static str, Vec<(&'static str, String)>);

/// The refusal of a request that found no descriptor left: 503, retry in a second, not stored.
fn exhausted_refusal() -> Refused {
    (503, EXHAUSTED_MESSAGE, vec![("Retry-After", "1".into()), ("Cache-Control", "no-store".into())])
}

pub struct State {
    pub cfg: Config,
    files: FileCache,
    keys: KeyRing,
    pub metrics: Metrics,
    cors_any: bool,
    cors_origins: Vec<String>,
    pub draining: AtomicBool,
    /// Woken when the drain starts: idle keep-alive connections close.
    pub drain: Notify,
    pub connections: AtomicUsize,
    nowait_unsupported: AtomicBool,
    /// Set for a remote origin (s3, http): every media read goes through it.
    pub cache: Option<Arc<SliceCache>>,
    /// When "file descriptors exhausted" was last logged (seconds since the epoch).
    exhausted_logged_at: AtomicU64,
}

/// The slice cache in front of the configured remote origin (`None`: the filesystem origin).
pub(super) fn remote_cache(cfg: &Config) -> Result<Option<Arc<SliceCache>>, String> {
    let Some(remote) = Remote::from_config(&cfg.origin)? else { return Ok(None) };
    let store = match &cfg.origin.cache_dir {
        None => None,
        Some(dir) => match Store::open(dir.clone(), cfg.origin.cache_max_bytes) {
            Ok(store) => Some(store),
            Err(e) => {
                // a cache disk that fails degrades to serving from the origin, uncached
                logs::event(
                    "warning",
                    "slice cache unavailable, serving from the origin without caching",
                    vec![
                        ("dir", Value::String(dir.display().to_string())),
                        ("error", Value::String(e.to_string())),
                    ],
                );
                None
            }
        },
    };
    Ok(Some(Arc::new(SliceCache::new(remote, store, cfg.origin.cache_slice_bytes))))
}

impl State {
    /// `soft_limit`: the process's descriptor limit, which sizes the open-file cache unless
    /// VOD_OPEN_FILE_CACHE_SIZE does.
    pub fn new(cfg: Config, soft_limit: u64) -> Result<State, String> {
        let cache = remote_cache(&cfg)?;
        let root_real = std::fs::canonicalize(&cfg.media_root).unwrap_or_else(|_| cfg.media_root.clone());
        let cors_any = cfg.cors_allowed_origins.iter().any(|o| o == "*");
        let cors_origins =
            cfg.cors_allowed_origins.iter().map(|o| o.trim_end_matches('/').to_string()).collect();
        Ok(State {
            files: FileCache::new(
                root_real,
                descriptors::cache_capacity(cfg.open_file_cache_size, soft_limit),
                Duration::from_secs(30),
                State::seconds(cfg.open_file_cache_valid_seconds).unwrap_or(Duration::ZERO),
            ),
            keys: KeyRing::new(cfg.signing_keys_dir.clone()),
            exhausted_logged_at: AtomicU64::new(0),
            metrics: Metrics::default(),
            cors_any,
            cors_origins,
            draining: AtomicBool::new(false),
            drain: Notify::new(),
            connections: AtomicUsize::new(0),
            nowait_unsupported: AtomicBool::new(false),
            cache,
            cfg,
        })
    }

    /// The open-file cache's capacity (logged at start).
    pub fn open_file_cache_capacity(&self) -> usize {
        self.files.capacity()
    }

    /// A descriptor could not be had (`where_`: accept, open, upstream): counted, and logged at
    /// most once a second.
    pub(super) fn descriptors_exhausted(&self, where_: &str) {
        self.metrics.fd_exhausted.fetch_add(1, Relaxed);
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        if self.exhausted_logged_at.swap(now, Relaxed) != now {
            logs::event(
                "warning",
                "file descriptors exhausted",
                vec![
                    ("where", Value::String(where_.into())),
                    ("total", Value::from(self.metrics.fd_exhausted.load(Relaxed))),
                ],
            );
        }
    }

    pub(super) fn seconds(value: f64) -> Option<Duration> {
        (value > 0.0).then(|| Duration::from_secs_f64(value))
    }
}
