//! The data plane: owns the listening socket; answers GET/HEAD/OPTIONS of media itself and
//! proxies every other request to the Python application over its Unix socket.
//!
//! One task per connection reads a request head, answers it completely, then reads the next:
//! pipelined requests are answered in order, and reading pauses while a response is being
//! sent, so a connection holds at most one head buffer whatever the client does. File bytes
//! go out with sendfile(2) (small bodies with one positional read and one write), on the
//! worker thread while the page cache has them; a chunk that is not cached is first read in
//! the blocking pool, so a cold disk does not stall the other connections of the worker.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::Notify;
use tokio::time::timeout;

use crate::cache::store::Store;
use crate::cache::{Chunk, Object, SliceCache, Speculation};
use crate::config::Config;
use crate::http::{self, error_body, parse_head, reason, ChunkedDecoder, Framing, Refusal, Request};
use crate::logs;
use crate::metrics::{self, method_index, route_index, Metrics};
use crate::origin::Remote;
use crate::paths::{media_path, FileCache, OpenFile};
use crate::plan::{decide, Conditions, Plan, Representation, Segment};
use crate::ranges::RangeKind;
use crate::signing::{self, KeyRing};
use crate::{hls, tokens};

const MEDIA_METHODS: &str = "GET, HEAD, PUT, DELETE, OPTIONS";
/// The resumable uploads' endpoint (tus 1.0.0, answered by the Python side).
const TUS_METHODS: &str = "POST, HEAD, PATCH, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "Range, If-Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, Authorization, Content-Type, X-Request-Id, traceparent, Tus-Resumable, Upload-Length, Upload-Defer-Length, Upload-Offset, Upload-Metadata, Upload-Checksum, Upload-Concat, X-HTTP-Method-Override";
const EXPOSE_HEADERS: &str = "Content-Range, Accept-Ranges, Content-Length, ETag, Last-Modified, X-Request-Id, Location, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, Upload-Offset, Upload-Length, Upload-Metadata, Upload-Expires";
/// Bodies up to this size are read into the response buffer and sent with the head in one write
/// (measured: for 64 KiB ranges one positional read + one send costs less server CPU on loopback
/// than a send of the head + sendfile); larger ones go out with sendfile.
const INLINE_BODY: u64 = 96 * 1024;
/// Bytes handed to one sendfile(2) call; each chunk's residency in the page cache is probed.
const SENDFILE_CHUNK: u64 = 512 * 1024;
/// A body a GET/HEAD/OPTIONS may carry (read and dropped); larger ones are refused.
const MAX_IGNORED_BODY: u64 = 1024 * 1024;
const BUSY_BODY: &str =
    "{\"error\": {\"status\": 503, \"message\": \"too many connections, retry shortly\"}}";

/// A media request answered with an error: status, message, extra headers.
type Refused = (u16, &'static str, Vec<(&'static str, String)>);

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
}

/// The slice cache in front of the configured remote origin (`None`: the filesystem origin).
fn remote_cache(cfg: &Config) -> Result<Option<Arc<SliceCache>>, String> {
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
    pub fn new(cfg: Config) -> Result<State, String> {
        let cache = remote_cache(&cfg)?;
        let root_real = std::fs::canonicalize(&cfg.media_root).unwrap_or_else(|_| cfg.media_root.clone());
        let cors_any = cfg.cors_allowed_origins.iter().any(|o| o == "*");
        let cors_origins =
            cfg.cors_allowed_origins.iter().map(|o| o.trim_end_matches('/').to_string()).collect();
        Ok(State {
            files: FileCache::new(root_real, 1024, Duration::from_secs(30)),
            keys: KeyRing::new(cfg.signing_keys_dir.clone()),

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

    fn cors_enabled(&self) -> bool {
        self.cors_any || !self.cors_origins.is_empty()
    }

    fn cors_allows(&self, origin: &str) -> bool {
        self.cors_any || self.cors_origins.iter().any(|o| o == origin)
    }

    /// CORS headers of an actual (non-preflight) response.
    fn cors_headers(&self, origin: Option<&str>, out: &mut Vec<(&'static str, String)>) {
        let Some(origin) = origin.filter(|o| !o.is_empty()) else { return };
        if !self.cors_enabled() {
            return;
        }
        if !self.cors_allows(origin) {
            out.push(("Vary", "Origin".into()));
            return;
        }
        out.push(("Access-Control-Allow-Origin", if self.cors_any { "*".into() } else { origin.into() }));
        out.push(("Access-Control-Expose-Headers", EXPOSE_HEADERS.into()));
        out.push(("Vary", "Origin".into()));
    }

    fn seconds(value: f64) -> Option<Duration> {
        (value > 0.0).then(|| Duration::from_secs_f64(value))
    }
}

// ---------------------------------------------------------------------------------------------
// Identifiers (not secrets): a per-thread generator seeded from the OS.

thread_local! {
    static RNG: std::cell::Cell<u64> = std::cell::Cell::new(seed());
}

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: writes at most 8 bytes into `bytes`.
    unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), 8, 0) };
    u64::from_ne_bytes(bytes) ^ (std::process::id() as u64) << 32
}

pub fn random_u64() -> u64 {
    RNG.with(|state| {
        // splitmix64
        let mut z = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

fn request_id_for(received: Option<&str>) -> String {
    match received {
        Some(id)
            if (1..=128).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)) =>
        {
            id.to_string()
        }
        _ => format!("{:016x}", random_u64()),
    }
}

fn valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[0] != "ff"
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0')
}

fn traceparent_for(received: Option<&str>) -> String {
    match received.map(str::trim) {
        Some(tp) if valid_traceparent(tp) => tp.to_string(),
        _ => format!("00-{:016x}{:016x}-{:016x}-00", random_u64() | 1, random_u64(), random_u64() | 1),
    }
}

thread_local! {
    static DATE: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

fn http_date_now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
        as i64;
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != now {
            *cached = (now, crate::conditional::format_http_date(now));
        }
        cached.1.clone()
    })
}

// ---------------------------------------------------------------------------------------------
// The record of one request the data plane answers: metrics and the access-log line, written
// when it is dropped, so a response cut short (client gone, send timeout, drain deadline) is
// logged too, as nginx does, with 499.

struct Record {
    state: Arc<State>,
    route: usize,
    method: String,
    path: String,
    range: Option<String>,
    user_agent: Option<String>,
    remote: Option<String>,
    request_id: String,
    traceparent: String,
    started: Instant,
    status: u16,
    sent: u64,
    done: bool,
}

impl Drop for Record {
    fn drop(&mut self) {
        let status = if self.done { self.status } else { 499 };
        let elapsed = self.started.elapsed().as_secs_f64();
        let m = &self.state.metrics;
        m.in_flight.fetch_sub(1, Relaxed);
        m.request(self.route, method_index(&self.method), status, elapsed, self.sent);
        if self.state.cfg.access_log {
            let opt = |v: &Option<String>| v.clone().map(Value::String).unwrap_or(Value::Null);
            logs::access(vec![
                ("method", Value::String(self.method.clone())),
                ("path", Value::String(self.path.clone())),
                ("status", Value::from(status)),
                ("bytes", Value::from(self.sent)),
                ("duration_ms", Value::from((elapsed * 1_000_000.0).round() / 1000.0)),
                ("range", opt(&self.range)),
                ("remote", opt(&self.remote)),
                ("user_agent", opt(&self.user_agent)),
                ("request_id", Value::String(self.request_id.clone())),
                ("traceparent", Value::String(self.traceparent.clone())),
            ]);
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum Cut {
    /// The client went away, or the connection must close without another word.
    Closed,
    /// The client took nothing for the send timeout.
    SendTimeout,
}

impl From<std::io::Error> for Cut {
    fn from(_: std::io::Error) -> Cut {
        Cut::Closed
    }
}

struct Conn {
    state: Arc<State>,
    stream: TcpStream,
    buf: Vec<u8>,
    peer: Option<IpAddr>,
}

enum Next {
    KeepAlive,
    Close,
}

pub async fn accept_loop(state: Arc<State>, listener: TcpListener, stop: Arc<Notify>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.notified() => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await; // EMFILE and friends
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if state.connections.load(SeqCst) >= state.cfg.max_connections {
            tokio::spawn(refuse_busy(stream));
            continue;
        }
        state.connections.fetch_add(1, SeqCst);
        let state = state.clone();
        tokio::spawn(async move {
            let guard = ConnGuard(state.clone());
            let mut conn = Conn { state, stream, buf: Vec::with_capacity(4096), peer: Some(peer.ip()) };
            conn.run().await;
            drop(guard);
        });
    }
}

struct ConnGuard(Arc<State>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, SeqCst);
    }
}

async fn refuse_busy(mut stream: TcpStream) {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{BUSY_BODY}",
        BUSY_BODY.len()
    );
    let _ = timeout(Duration::from_secs(5), stream.write_all(response.as_bytes())).await;
    let _ = stream.shutdown().await;
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl Conn {
    async fn run(&mut self) {
        let mut first = true;
        loop {
            let request = match self.read_request(first).await {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(refusal) => {
                    self.refuse(refusal).await;
                    return;
                }
            };
            first = false;
            let next = match self.answer(request).await {
                Ok(next) => next,
                Err(_) => return,
            };
            if matches!(next, Next::Close) || self.state.draining.load(SeqCst) {
                self.linger().await;
                return;
            }
        }
    }

    /// Wait for a complete request head. `Ok(None)`: closed, timed out, or draining while idle.
    async fn read_request(&mut self, first: bool) -> Result<Option<Request>, Refusal> {
        let header_timeout = State::seconds(self.state.cfg.header_timeout_seconds);
        let idle_timeout = State::seconds(self.state.cfg.idle_timeout_seconds);
        let mut deadline =
            if first || !self.buf.is_empty() { header_timeout.map(|t| Instant::now() + t) } else { None };
        loop {
            if !self.buf.is_empty() {
                if let Some((request, length)) = parse_head(&self.buf)? {
                    self.buf.drain(..length);
                    return Ok(Some(request));
                }
            }
            // a kept-alive connection closes when the drain starts; a new one is served
            if !first && self.buf.is_empty() && self.state.draining.load(SeqCst) {
                return Ok(None);
            }
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => idle_timeout.unwrap_or(Duration::from_secs(86_400 * 365)),
            };
            let idle = !first && self.buf.is_empty();
            let mut chunk = [0u8; 8192];
            let read = tokio::select! {
                read = timeout(wait, self.stream.read(&mut chunk)) => read,
                () = self.state.drain.notified(), if idle => return Ok(None),
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Ok(None),
                Ok(Ok(n)) => {
                    if deadline.is_none() {
                        deadline = header_timeout.map(|t| Instant::now() + t);
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }

    /// Answer a malformed request with a JSON error, then close.
    async fn refuse(&mut self, refusal: Refusal) {
        let body = error_body(refusal.status, refusal.message);
        let head = format!(
            "HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            refusal.status,
            reason(refusal.status),
            http_date_now(),
            body.len()
        );
        let mut out = head.into_bytes();
        out.extend_from_slice(&body);
        if self.write_all(&out, false).await.is_ok() {
            logs::access(vec![
                ("method", Value::Null),
                ("path", Value::Null),
                ("status", Value::from(refusal.status)),
                ("bytes", Value::from(body.len())),
                ("remote", self.peer.map(|p| Value::String(unmap(p).to_string())).unwrap_or(Value::Null)),
                ("duration_ms", Value::from(0.0)),
                ("range", Value::Null),
                ("user_agent", Value::Null),
                ("request_id", Value::String(request_id_for(None))),
                ("traceparent", Value::String(traceparent_for(None))),
                ("error", Value::String(refusal.message.into())),
            ]);
            self.linger().await;
        }
    }

    /// Close gracefully: stop sending, and read (and drop) what the client still sends for a
    /// moment, so the kernel does not reset the connection before the client read our answer.
    async fn linger(&mut self) {
        let _ = self.stream.shutdown().await;
        let until = Instant::now() + Duration::from_secs(2);
        let mut sink = [0u8; 8192];
        let mut total = 0usize;
        while total < 256 * 1024 {
            match timeout(until.saturating_duration_since(Instant::now()), self.stream.read(&mut sink)).await
            {
                Ok(Ok(n)) if n > 0 => total += n,
                _ => break,
            }
        }
    }

    async fn answer(&mut self, request: Request) -> Result<Next, Cut> {
        let route = route_of(request.path.as_deref().unwrap_or(""));
        let method = request.method.as_str();
        let ours = match method {
            // tus discovery (an OPTIONS that is not a CORS preflight) is the application's
            "OPTIONS" => route != "tus" || request.header("access-control-request-method").is_some(),
            "GET" | "HEAD" => route == "media" || (route == "readyz" && self.state.draining.load(SeqCst)),
            _ => false,
        };
        if !ours {
            return self.proxy(&request, route == "metrics" && method == "GET").await;
        }
        if !self.skip_body(&request).await? {
            return Ok(Next::Close);
        }
        let state = self.state.clone();
        state.metrics.in_flight.fetch_add(1, Relaxed);
        // what only the access log needs is made only when it is on
        let logged = state.cfg.access_log;
        let mut record = Record {
            state: state.clone(),
            route: route_index(route),
            method: request.method.clone(),
            path: tokens::redact(request.path.as_deref().unwrap_or(&request.target)),
            range: request.header("range").filter(|_| logged).map(str::to_string),
            user_agent: request.header("user-agent").filter(|_| logged).map(str::to_string),
            remote: self.peer.filter(|_| logged).map(|p| unmap(p).to_string()),
            request_id: request_id_for(request.header("x-request-id")),
            traceparent: if logged { traceparent_for(request.header("traceparent")) } else { String::new() },
            started: Instant::now(),
            status: 0,
            sent: 0,
            done: false,
        };
        let keep_alive = request.keep_alive && !state.draining.load(SeqCst);
        let mut common: Vec<(&'static str, String)> = vec![("X-Request-Id", record.request_id.clone())];
        if method == "OPTIONS" {
            let (status, headers) = self.options(&request, common);
            return self.send_simple(&request, &mut record, status, headers, None, keep_alive).await;
        }
        if route == "readyz" {
            let body = b"{\"status\": \"draining\"}".to_vec();
            common.push(("Content-Type", "application/json".into()));
            return self.send_simple(&request, &mut record, 503, common, Some(body), keep_alive).await;
        }
        state.cors_headers(request.header("origin"), &mut common);
        if let Some(cache) = state.cache.clone() {
            return match self.remote_plan(&request, &cache).await {
                Err((status, message, extra)) => {
                    common.extend(extra);
                    common.push(("Content-Type", "application/json".into()));
                    let body = error_body(status, message);
                    self.send_simple(&request, &mut record, status, common, Some(body), keep_alive).await
                }
                Ok((plan, object)) => {
                    self.send_remote(&request, &mut record, plan, object, common, keep_alive).await
                }
            };
        }
        match self.media_plan(&request) {
            Err((status, message, extra)) => {
                common.extend(extra);
                common.push(("Content-Type", "application/json".into()));
                let body = error_body(status, message);
                self.send_simple(&request, &mut record, status, common, Some(body), keep_alive).await
            }
            Ok((plan, file)) => self.send_plan(&request, &mut record, plan, file, common, keep_alive).await,
        }
    }

    fn options(
        &self,
        request: &Request,
        mut common: Vec<(&'static str, String)>,
    ) -> (u16, Vec<(&'static str, String)>) {
        let state = &self.state;
        let methods = if route_of(request.path.as_deref().unwrap_or("")) == "tus" {
            TUS_METHODS
        } else {
            MEDIA_METHODS
        };
        if let (Some(origin), Some(wanted)) =
            (request.header("origin"), request.header("access-control-request-method"))
        {
            if !origin.is_empty() && !wanted.is_empty() && state.cors_enabled() {
                let method_ok = methods.split(", ").any(|m| m.eq_ignore_ascii_case(wanted));
                if !state.cors_allows(origin) || !method_ok {
                    return (403, vec![("Content-Type", "application/json".into())]);
                }
                common.push((
                    "Access-Control-Allow-Origin",
                    if state.cors_any { "*".into() } else { origin.into() },
                ));
                common.push(("Access-Control-Allow-Methods", methods.into()));
                common.push(("Access-Control-Allow-Headers", ALLOW_HEADERS.into()));
                common.push(("Access-Control-Max-Age", "600".into()));
                common.push(("Vary", "Origin".into()));
                return (204, common);
            }
        }
        state.cors_headers(request.header("origin"), &mut common);
        common.push(("Allow", methods.into()));
        (204, common)
    }

    /// Read and drop the body a GET/HEAD/OPTIONS carries; false when it cannot be (too large,
    /// malformed, stalled): the connection then closes.
    async fn skip_body(&mut self, request: &Request) -> Result<bool, Cut> {
        match request.framing {
            Framing::None => Ok(true),
            Framing::Length(n) if n > MAX_IGNORED_BODY => Ok(false),
            Framing::Length(n) => {
                let mut left = n as usize;
                let take = left.min(self.buf.len());
                self.buf.drain(..take);
                left -= take;
                let body_timeout =
                    State::seconds(self.state.cfg.body_timeout_seconds).unwrap_or(Duration::from_secs(3600));
                let mut sink = [0u8; 8192];
                while left > 0 {
                    let want = left.min(sink.len());
                    match timeout(body_timeout, self.stream.read(&mut sink[..want])).await {
                        Ok(Ok(k)) if k > 0 => left -= k,
                        _ => return Ok(false),
                    }
                }
                Ok(true)
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::default();
                let mut total = 0usize;
                let body_timeout =
                    State::seconds(self.state.cfg.body_timeout_seconds).unwrap_or(Duration::from_secs(3600));
                loop {
                    let Ok((used, done)) = decoder.feed(&self.buf) else { return Ok(false) };
                    self.buf.drain(..used);
                    total += used;
                    if done {
                        return Ok(true);
                    }
                    if total as u64 > MAX_IGNORED_BODY {
                        return Ok(false);
                    }
                    let mut chunk = [0u8; 8192];
                    match timeout(body_timeout, self.stream.read(&mut chunk)).await {
                        Ok(Ok(k)) if k > 0 => self.buf.extend_from_slice(&chunk[..k]),
                        _ => return Ok(false),
                    }
                }
            }
        }
    }

    fn media_plan(&self, request: &Request) -> Result<(Plan, Arc<OpenFile>), Refused> {
        let (relative, signed) = self.authorize(request)?;
        let file = self.state.files.open(&relative).ok_or((404, "not found", Vec::new()))?;
        let rep = Representation {
            size: file.size,
            mtime: file.mtime,
            etag: crate::conditional::make_etag(file.ino, file.size, file.mtime_ns),
            content_type: self.state.cfg.content_type(&relative).to_string(),
        };
        Ok((self.plan_for(request, &rep, &relative, signed)?, file))
    }

    /// The response plan for the request against `rep` (412/416 as errors), with the caching
    /// policy of `relative` (`signed`: private).
    fn plan_for(
        &self,
        request: &Request,
        rep: &Representation,
        relative: &str,
        signed: bool,
    ) -> Result<Plan, Refused> {
        let state = &self.state;
        let range = request.header("range");
        let cond = Conditions {
            head: request.method == "HEAD",
            range,
            if_range: request.header("if-range"),
            if_match: request.header("if-match"),
            if_none_match: request.header("if-none-match"),
            if_modified_since: request.header("if-modified-since"),
            if_unmodified_since: request.header("if-unmodified-since"),
        };
        let boundary = if range.is_some_and(|r| r.contains(',')) {
            format!("{:016x}{:08x}", random_u64(), random_u64() as u32)
        } else {
            String::new()
        };
        let mut plan = decide(&cond, rep, state.cfg.max_ranges, &boundary);
        if plan.kind != RangeKind::None {
            state.metrics.range(plan.kind);
        }
        if let Some(message) = plan.error {
            return Err((plan.status, message, plan.headers));
        }
        plan.headers.push(("Cache-Control", hls::cache_control(relative, signed).into()));
        Ok(plan)
    }

    /// A media GET/HEAD against a remote origin: stat (cached; for a cold object, taken from the
    /// GET of the slices this request starts with), plan, then the body through the slice cache.
    /// The head waits for the body's first bytes, so an origin that fails before any byte gets a
    /// JSON 502/504 (404 when the object is gone); after that, a failure (or an object that
    /// changed) cuts the connection: a client never gets a spliced body.
    async fn remote_plan(
        &self,
        request: &Request,
        cache: &Arc<SliceCache>,
    ) -> Result<(Plan, Arc<Object>), Refused> {
        let (relative, signed) = self.authorize(request)?;
        let (meta, own) = match cache.stat(&relative, speculation(request, self.state.cfg.max_ranges)).await {
            Ok(stat) => stat,
            Err(e) => {
                let (status, message) = e.status();
                return Err((status, message, Vec::new()));
            }
        };
        let etag =
            meta.etag.as_deref().and_then(crate::conditional::parse_single_etag).unwrap_or_else(|| {
                crate::conditional::EntityTag::strong(format!("{:x}-{:x}", meta.size, meta.last_modified))
            });
        let rep = Representation {
            size: meta.size,
            mtime: meta.last_modified,
            etag,
            content_type: self.state.cfg.content_type(&relative).to_string(),
        };
        let plan = self.plan_for(request, &rep, &relative, signed)?;
        Ok((plan, Arc::new(Object::new(&relative, meta).owning(own))))
    }

    async fn send_remote(
        &mut self,
        request: &Request,
        record: &mut Record,
        plan: Plan,
        object: Arc<Object>,
        mut headers: Vec<(&'static str, String)>,
        keep_alive: bool,
    ) -> Result<Next, Cut> {
        let cache = self.state.cache.clone().expect("a remote origin");
        let Some(mut out) = self.head_or_done(request, record, &plan, &mut headers, keep_alive).await? else {
            return Ok(if keep_alive { Next::KeepAlive } else { Next::Close });
        };
        let mut head_sent = false;
        let mut missed = false;
        for segment in &plan.body {
            let range = match segment {
                Segment::Bytes(b) => {
                    out.extend_from_slice(b);
                    continue;
                }
                Segment::File(r) => *r,
            };
            let mut reader = cache.reader(object.clone(), range.start, range.end);
            while let Some(chunk) = reader.next(SENDFILE_CHUNK).await {
                match chunk {
                    Err(e) if !head_sent => {
                        let (status, message) = e.status();
                        let mut common = vec![("X-Request-Id", record.request_id.clone())];
                        self.state.cors_headers(request.header("origin"), &mut common);
                        common.push(("Content-Type", "application/json".into()));
                        let body = error_body(status, message);
                        return self.send_simple(request, record, status, common, Some(body), false).await;
                    }
                    Err(_) => return Err(Cut::Closed),
                    Ok(Chunk::Memory(bytes)) => {
                        out.extend_from_slice(&bytes);
                        record.sent += bytes.len() as u64;
                        self.write_all(&out, false).await.map_err(|c| self.cut(record, c))?;
                        out.clear();
                        head_sent = true;
                    }
                    Ok(Chunk::Disk { file, offset, length }) => {
                        if out.len() as u64 + length <= INLINE_BODY {
                            let start = out.len();
                            out.resize(start + length as usize, 0);
                            if pread_full(file.fd.as_raw_fd(), &mut out[start..], offset).is_err() {
                                return Err(Cut::Closed);
                            }
                            record.sent += length;
                            continue;
                        }
                        if !out.is_empty() {
                            self.write_all(&out, true).await.map_err(|c| self.cut(record, c))?;
                            out.clear();
                        }
                        head_sent = true;
                        let mut at = offset;
                        while at < offset + length {
                            let sent = self
                                .sendfile_fd(file.fd.as_raw_fd(), at, offset + length - at)
                                .await
                                .map_err(|c| self.cut(record, c))?;
                            at += sent;
                            record.sent += sent;
                        }
                    }
                }
            }
            missed |= reader.missed;
        }
        if !out.is_empty() {
            self.write_all(&out, false).await.map_err(|c| self.cut(record, c))?;
        }
        let counter = if missed { &cache.stats.miss_requests } else { &cache.stats.hit_requests };
        counter.fetch_add(1, Relaxed);
        record.done = true;
        Ok(if keep_alive { Next::KeepAlive } else { Next::Close })
    }

    /// The root-relative file a media request may read, and whether it was signed; else the
    /// refusal (404 for a path that cannot be served, 403 for a missing or bad signature).
    /// A `/t/<token>/...` path is always checked; the query form when VOD_SIGNED_URLS is on.
    fn authorize(&self, request: &Request) -> Result<(String, bool), Refused> {
        let state = &self.state;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let mut lookup = |kid: &str| state.keys.get(kid);
        if tokens::split(&request.raw_path).is_some() {
            let ip = self.client_ip(request);
            return match tokens::verify(
                &request.raw_path,
                &mut lookup,
                now,
                ip.as_deref(),
                state.cfg.signed_url_bind_ip,
            ) {
                Ok(authorized) => {
                    Ok((media_path(&authorized.path).ok_or((404, "not found", Vec::new()))?, true))
                }
                Err(why) => Err((403, why, vec![("Cache-Control", "no-store".into())])),
            };
        }
        let path = request.path.as_deref().ok_or((404, "not found", Vec::new()))?;
        let relative = media_path(path).ok_or((404, "not found", Vec::new()))?;
        if state.cfg.signed_urls {
            let ip = if state.cfg.signed_url_bind_ip { self.client_ip(request) } else { None };
            let query = request.raw_query.as_str();
            let param = |name: &str| http::query_param(query, name);
            if let Some(refusal) = signing::verify(path, &param, &mut lookup, now, ip.as_deref()) {
                return Err((403, refusal, vec![("Cache-Control", "no-store".into())]));
            }
        }
        Ok((relative, state.cfg.signed_urls))
    }

    /// The client's IP: the first entry of the configured header, else the peer address.
    fn client_ip(&self, request: &Request) -> Option<String> {
        if let Some(name) = &self.state.cfg.client_ip_header {
            if let Some(value) = request.header(name).filter(|v| !v.is_empty()) {
                return Some(value.split(',').next().unwrap_or("").trim().to_string());
            }
        }
        self.peer.map(|p| unmap(p).to_string())
    }

    fn head_bytes(
        &self,
        request: &Request,
        status: u16,
        headers: &[(&'static str, String)],
        keep_alive: bool,
    ) -> Vec<u8> {
        let mut head = Vec::with_capacity(512);
        head.extend_from_slice(
            format!("HTTP/1.1 {status} {}\r\nDate: {}\r\n", reason(status), http_date_now()).as_bytes(),
        );
        for (name, value) in headers {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        if !keep_alive {
            head.extend_from_slice(b"Connection: close\r\n");
        } else if request.minor == 0 {
            head.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        head.extend_from_slice(b"\r\n");
        head
    }

    async fn send_simple(
        &mut self,
        request: &Request,
        record: &mut Record,
        status: u16,
        mut headers: Vec<(&'static str, String)>,
        body: Option<Vec<u8>>,
        keep_alive: bool,
    ) -> Result<Next, Cut> {
        let body = body.unwrap_or_default();
        if status != 204 && status != 304 {
            headers.push(("Content-Length", body.len().to_string()));
        }
        let mut out = self.head_bytes(request, status, &headers, keep_alive);
        if request.method != "HEAD" {
            // RFC 9110 9.3.2: HEAD gets GET's Content-Length, no content
            out.extend_from_slice(&body);
            record.sent = body.len() as u64;
        }
        record.status = status;
        self.write_all(&out, false).await.map_err(|c| self.cut(record, c))?;
        record.done = true;
        Ok(if keep_alive { Next::KeepAlive } else { Next::Close })
    }

    fn cut(&self, record: &mut Record, cut: Cut) -> Cut {
        if matches!(cut, Cut::SendTimeout) {
            self.state.metrics.send_timeouts.fetch_add(1, Relaxed);
            logs::event(
                "info",
                "send timeout",
                vec![
                    ("request_id", Value::String(record.request_id.clone())),
                    ("path", Value::String(record.path.clone())),
                    ("bytes", Value::from(record.sent)),
                    ("seconds", Value::from(self.state.cfg.send_timeout_seconds)),
                ],
            );
        }
        cut
    }

    /// The response head of `plan` (with `headers`), ready to be sent with the body; `None` when
    /// the response has no body (HEAD, 304, empty) and the head was sent already.
    async fn head_or_done(
        &mut self,
        request: &Request,
        record: &mut Record,
        plan: &Plan,
        headers: &mut Vec<(&'static str, String)>,
        keep_alive: bool,
    ) -> Result<Option<Vec<u8>>, Cut> {
        let mut all = plan.headers.clone();
        all.append(headers);
        let out = self.head_bytes(request, plan.status, &all, keep_alive);
        record.status = plan.status;
        if plan.head || plan.status == 304 || plan.content_length() == 0 {
            self.write_all(&out, false).await.map_err(|c| self.cut(record, c))?;
            record.done = true;
            return Ok(None);
        }
        Ok(Some(out))
    }

    async fn send_plan(
        &mut self,
        request: &Request,
        record: &mut Record,
        plan: Plan,
        file: Arc<OpenFile>,
        mut headers: Vec<(&'static str, String)>,
        keep_alive: bool,
    ) -> Result<Next, Cut> {
        let Some(mut out) = self.head_or_done(request, record, &plan, &mut headers, keep_alive).await? else {
            return Ok(if keep_alive { Next::KeepAlive } else { Next::Close });
        };
        let body_len = plan.content_length();
        if body_len <= INLINE_BODY {
            for segment in &plan.body {
                match segment {
                    Segment::Bytes(b) => out.extend_from_slice(b),
                    Segment::File(r) => {
                        let start = out.len();
                        out.resize(start + r.length() as usize, 0);
                        self.read_at(&file, &mut out[start..], r.start).await.map_err(|_| Cut::Closed)?;
                    }
                }
            }
            record.sent = body_len;
            self.write_all(&out, false).await.map_err(|c| self.cut(record, c))?;
            record.done = true;
            return Ok(if keep_alive { Next::KeepAlive } else { Next::Close });
        }
        self.write_all(&out, true).await.map_err(|c| self.cut(record, c))?;
        let last = plan.body.len() - 1;
        for (index, segment) in plan.body.iter().enumerate() {
            match segment {
                Segment::Bytes(b) => {
                    self.write_all(b, index != last).await.map_err(|c| self.cut(record, c))?;
                    record.sent += b.len() as u64;
                }
                Segment::File(r) => {
                    let mut offset = r.start;
                    let end = r.end + 1;
                    while offset < end {
                        let chunk = (end - offset).min(SENDFILE_CHUNK);
                        self.warm(&file, offset, chunk).await;
                        let sent =
                            self.sendfile(&file, offset, chunk).await.map_err(|c| self.cut(record, c))?;
                        offset += sent;
                        record.sent += sent;
                    }
                }
            }
        }
        record.done = true;
        Ok(if keep_alive { Next::KeepAlive } else { Next::Close })
    }

    /// The cold-page-cache policy: probe whether the chunk's first byte is cached (preadv2 with
    /// RWF_NOWAIT, which never waits for the disk); when it is not, read the chunk in the
    /// blocking pool first, so sendfile then finds it in the page cache.
    async fn warm(&self, file: &Arc<OpenFile>, offset: u64, length: u64) {
        if self.state.nowait_unsupported.load(Relaxed) {
            return;
        }
        let mut probe = [0u8; 1];
        match pread_nowait(file.fd.as_raw_fd(), &mut probe, offset) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                let file = file.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    // SAFETY: plain advice + a read into an owned buffer on a valid descriptor.
                    unsafe {
                        libc::posix_fadvise(
                            file.fd.as_raw_fd(),
                            offset as i64,
                            length as i64,
                            libc::POSIX_FADV_WILLNEED,
                        )
                    };
                    let mut buffer = vec![0u8; length as usize];
                    let _ = pread_full(file.fd.as_raw_fd(), &mut buffer, offset);
                })
                .await;
            }
            Err(e)
                if e.raw_os_error() == Some(libc::EOPNOTSUPP) || e.raw_os_error() == Some(libc::ENOSYS) =>
            {
                self.state.nowait_unsupported.store(true, Relaxed);
            }
            Err(_) => {}
        }
    }

    /// Read `buf.len()` bytes at `offset`: on this thread when cached, else in the blocking pool.
    async fn read_at(&self, file: &Arc<OpenFile>, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        if !self.state.nowait_unsupported.load(Relaxed) {
            match pread_nowait(file.fd.as_raw_fd(), buf, offset) {
                Ok(n) if n == buf.len() => return Ok(()),
                Ok(_) => {}
                Err(e)
                    if e.raw_os_error() == Some(libc::EOPNOTSUPP)
                        || e.raw_os_error() == Some(libc::ENOSYS) =>
                {
                    self.state.nowait_unsupported.store(true, Relaxed);
                    return pread_full(file.fd.as_raw_fd(), buf, offset);
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
                Err(e) => return Err(e),
            }
        } else {
            return pread_full(file.fd.as_raw_fd(), buf, offset);
        }
        let file = file.clone();
        let length = buf.len();
        let data = tokio::task::spawn_blocking(move || {
            let mut data = vec![0u8; length];
            pread_full(file.fd.as_raw_fd(), &mut data, offset).map(|()| data)
        })
        .await
        .map_err(std::io::Error::other)??;
        buf.copy_from_slice(&data);
        Ok(())
    }

    /// One sendfile(2) call's worth (waiting for the socket as needed): the bytes sent.
    async fn sendfile(&self, file: &OpenFile, offset: u64, length: u64) -> Result<u64, Cut> {
        self.sendfile_fd(file.fd.as_raw_fd(), offset, length).await
    }

    async fn sendfile_fd(&self, fd: RawFd, offset: u64, length: u64) -> Result<u64, Cut> {
        let send_timeout = State::seconds(self.state.cfg.send_timeout_seconds);
        let socket = self.stream.as_raw_fd();
        loop {
            let attempt = self.stream.try_io(Interest::WRITABLE, || {
                let mut off = offset as libc::off_t;
                // SAFETY: valid descriptors; `off` is a local the kernel updates.
                let n = unsafe { libc::sendfile(socket, fd, &mut off, length as usize) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as u64)
                }
            });
            match attempt {
                Ok(0) => return Err(Cut::Closed), // the file shrank under us
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.wait_writable(send_timeout).await?
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Cut::Closed),
            }
        }
    }

    async fn wait_writable(&self, send_timeout: Option<Duration>) -> Result<(), Cut> {
        match send_timeout {
            // the send timeout runs between two successive writes (nginx's send_timeout)
            Some(t) => match timeout(t, self.stream.writable()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Cut::Closed),
                Err(_) => Err(Cut::SendTimeout),
            },
            None => self.stream.writable().await.map_err(|_| Cut::Closed),
        }
    }

    /// Write all of `data`; `more`: further bytes follow at once (MSG_MORE: one packet).
    async fn write_all(&self, mut data: &[u8], more: bool) -> Result<(), Cut> {
        let send_timeout = State::seconds(self.state.cfg.send_timeout_seconds);
        let socket = self.stream.as_raw_fd();
        let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
        while !data.is_empty() {
            let attempt = self.stream.try_io(Interest::WRITABLE, || {
                // SAFETY: a valid socket and an initialised buffer.
                let n = unsafe { libc::send(socket, data.as_ptr().cast(), data.len(), flags) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match attempt {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.wait_writable(send_timeout).await?
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Cut::Closed),
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Everything else: streamed to the Python application and back.

    async fn proxy(&mut self, request: &Request, merge_metrics: bool) -> Result<Next, Cut> {
        let state = self.state.clone();
        let request_id = request_id_for(request.header("x-request-id"));
        let traceparent = traceparent_for(request.header("traceparent"));
        let upstream =
            match timeout(Duration::from_secs(5), UnixStream::connect(&state.cfg.upstream_socket)).await {
                Ok(Ok(s)) => s,
                _ => {
                    let body = error_body(502, "the application behind the data plane is unavailable");
                    return self.plain(request, 502, &request_id, body).await;
                }
            };
        let mut head =
            format!("{} {} HTTP/1.{}\r\n", request.method, request.target, request.minor).into_bytes();
        for (name, value) in &request.headers {
            let lower = name.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "connection"
                    | "keep-alive"
                    | "proxy-connection"
                    | "te"
                    | "upgrade"
                    | "x-request-id"
                    | "traceparent"
                    | "x-vod-remote"
                    | "transfer-encoding"
                    | "content-length"
            ) {
                continue;
            }
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        let remote = self.peer.map(|p| unmap(p).to_string()).unwrap_or_default();
        head.extend_from_slice(format!("X-Request-Id: {request_id}\r\ntraceparent: {traceparent}\r\nX-Vod-Remote: {remote}\r\nConnection: close\r\n").as_bytes());
        match request.framing {
            Framing::None => {}
            Framing::Length(n) => head.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes()),
            Framing::Chunked => head.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        }
        head.extend_from_slice(b"\r\n");
        let (mut up_read, mut up_write) = upstream.into_split();
        if up_write.write_all(&head).await.is_err() {
            let body = error_body(502, "the application behind the data plane is unavailable");
            return self.plain(request, 502, &request_id, body).await;
        }
        // The application applies the body timeout (and answers 408 after cleaning up); this
        // one, a second later, only stops a stalled body the application did not.
        let body_timeout = State::seconds(state.cfg.body_timeout_seconds).map(|t| t + Duration::from_secs(1));
        let send_timeout = State::seconds(state.cfg.send_timeout_seconds);
        let origin = request.header("origin").map(str::to_string);
        let keep_alive = request.keep_alive && request.minor == 1 && !state.draining.load(SeqCst);
        let head_request = request.method == "HEAD";

        let (response, body_result) = {
            let Conn { stream, buf, .. } = &mut *self;
            let (mut client_read, mut client_write) = stream.split();
            let forward_body =
                forward_body(buf, &mut client_read, &mut up_write, request.framing, body_timeout);
            let forward_response = forward_response(
                &mut up_read,
                &mut client_write,
                &state,
                origin.as_deref(),
                keep_alive,
                head_request,
                merge_metrics,
                send_timeout,
            );
            tokio::pin!(forward_body, forward_response);
            let mut body_result: Option<Result<(), BodyError>> =
                if request.framing == Framing::None { Some(Ok(())) } else { None };
            let response = loop {
                tokio::select! {
                    result = &mut forward_body, if body_result.is_none() => {
                        let failed = result.is_err();
                        body_result = Some(result);
                        if failed {
                            break None;
                        }
                    }
                    result = &mut forward_response => break Some(result),
                }
            };
            (response, body_result)
        };
        match (response, body_result) {
            (None, Some(Err(BodyError::Timeout))) => {
                let body = error_body(408, "the request body stalled");
                self.plain(request, 408, &request_id, body).await?;
                Ok(Next::Close)
            }
            (None, Some(Err(BodyError::Malformed))) => {
                let body = error_body(400, "malformed chunked body");
                self.plain(request, 400, &request_id, body).await?;
                Ok(Next::Close)
            }
            (None, _) => Err(Cut::Closed),
            (Some(Ok(ResponseEnd::KeepAlive)), Some(Ok(()))) if keep_alive => Ok(Next::KeepAlive),
            (Some(Ok(_)), _) => Ok(Next::Close),
            (Some(Err(ResponseError::NothingSent)), _) => {
                let body = error_body(502, "the application behind the data plane failed");
                self.plain(request, 502, &request_id, body).await?;
                Ok(Next::Close)
            }
            (Some(Err(ResponseError::Cut)), _) => Err(Cut::Closed),
        }
    }

    /// A JSON error the data plane writes itself, then the connection closes.
    async fn plain(
        &mut self,
        request: &Request,
        status: u16,
        request_id: &str,
        body: Vec<u8>,
    ) -> Result<Next, Cut> {
        let headers = vec![
            ("X-Request-Id", request_id.to_string()),
            ("Content-Type", "application/json".to_string()),
            ("Content-Length", body.len().to_string()),
        ];
        let mut out = self.head_bytes(request, status, &headers, false);
        if request.method != "HEAD" {
            out.extend_from_slice(&body);
        }
        self.write_all(&out, false).await?;
        Ok(Next::Close)
    }
}

/// What a media request reads first, when that is known before the object's size: a GET's first
/// range (or byte 0). `None` (the stat is then a HEAD) for HEAD requests, suffix ranges, and
/// revalidations (If-None-Match, If-Modified-Since), which usually end as a 304 without bytes.
fn speculation(request: &Request, max_ranges: usize) -> Option<Speculation> {
    if request.method != "GET"
        || request.header("if-none-match").is_some()
        || request.header("if-modified-since").is_some()
    {
        return None;
    }
    let (first, last) = crate::ranges::first_bytes(request.header("range"), max_ranges)?;
    Some(Speculation { first, last })
}

pub fn route_of(path: &str) -> &'static str {
    match path {
        "/ping" => "ping",
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        p if p.starts_with("/admin/") => "admin",
        p if p == "/tus" || p.starts_with("/tus/") => "tus",
        p if p.starts_with("/play/") || p.starts_with("/player/") => "player",
        _ => "media",
    }
}

fn pread_nowait(fd: RawFd, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: one iovec over a live, writable buffer.
    let n = unsafe { libc::preadv2(fd, &iov, 1, offset as libc::off_t, libc::RWF_NOWAIT) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn pread_full(fd: RawFd, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: reads into the unfilled tail of a live buffer.
        let n = unsafe {
            libc::pread(
                fd,
                buf[done..].as_mut_ptr().cast(),
                buf.len() - done,
                (offset + done as u64) as libc::off_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file ended early"));
        }
        done += n as usize;
    }
    Ok(())
}

#[derive(Debug)]
enum BodyError {
    Timeout,
    Closed,
    Malformed,
}

/// Copy the request body from the client to the application, as it arrives (the bytes already
/// buffered first). Bytes after the body (a pipelined request) stay in `buf`.
async fn forward_body(
    buf: &mut Vec<u8>,
    client: &mut tokio::net::tcp::ReadHalf<'_>,
    upstream: &mut tokio::net::unix::OwnedWriteHalf,
    framing: Framing,
    body_timeout: Option<Duration>,
) -> Result<(), BodyError> {
    let wait = body_timeout.unwrap_or(Duration::from_secs(86_400));
    let mut chunk = vec![0u8; 64 * 1024];
    match framing {
        Framing::None => Ok(()),
        Framing::Length(total) => {
            let mut left = total;
            let take = (left as usize).min(buf.len());
            if take > 0 {
                upstream.write_all(&buf[..take]).await.map_err(|_| BodyError::Closed)?;
                buf.drain(..take);
                left -= take as u64;
            }
            while left > 0 {
                let want = (left as usize).min(chunk.len());
                let n = match timeout(wait, client.read(&mut chunk[..want])).await {
                    Err(_) => return Err(BodyError::Timeout),
                    Ok(Ok(n)) if n > 0 => n,
                    Ok(_) => return Err(BodyError::Closed),
                };
                upstream.write_all(&chunk[..n]).await.map_err(|_| BodyError::Closed)?;
                left -= n as u64;
            }
            Ok(())
        }
        Framing::Chunked => {
            let mut decoder = ChunkedDecoder::default();
            loop {
                let (used, done) = decoder.feed(buf).map_err(|_| BodyError::Malformed)?;
                if used > 0 {
                    upstream.write_all(&buf[..used]).await.map_err(|_| BodyError::Closed)?;
                    buf.drain(..used);
                }
                if done {
                    return Ok(());
                }
                let n = match timeout(wait, client.read(&mut chunk)).await {
                    Err(_) => return Err(BodyError::Timeout),
                    Ok(Ok(n)) if n > 0 => n,
                    Ok(_) => return Err(BodyError::Closed),
                };
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

enum ResponseEnd {
    KeepAlive,
    Close,
}

#[derive(Debug)]
enum ResponseError {
    /// Nothing reached the client: the data plane can still answer 502.
    NothingSent,
    Cut,
}

async fn write_client(
    client: &mut tokio::net::tcp::WriteHalf<'_>,
    data: &[u8],
    send_timeout: Option<Duration>,
) -> Result<(), ResponseError> {
    let mut rest = data;
    while !rest.is_empty() {
        let n = match send_timeout {
            Some(t) => timeout(t, client.write(rest)).await.map_err(|_| ResponseError::Cut)?,
            None => client.write(rest).await,
        }
        .map_err(|_| ResponseError::Cut)?;
        if n == 0 {
            return Err(ResponseError::Cut);
        }
        rest = &rest[n..];
    }
    Ok(())
}

/// Copy the application's response to the client: 1xx heads as they come, then the final head
/// (hop-by-hop fields replaced, CORS added) and the body as it is framed.
#[allow(clippy::too_many_arguments)]
async fn forward_response(
    upstream: &mut tokio::net::unix::OwnedReadHalf,
    client: &mut tokio::net::tcp::WriteHalf<'_>,
    state: &State,
    origin: Option<&str>,
    keep_alive: bool,
    head_request: bool,
    merge_metrics: bool,
    send_timeout: Option<Duration>,
) -> Result<ResponseEnd, ResponseError> {
    let mut data: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sent_any = false;
    loop {
        // read until a complete response head
        let (status, head_len, headers) = loop {
            let mut storage = [httparse::EMPTY_HEADER; 128];
            let mut response = httparse::Response::new(&mut storage);
            match response.parse(&data) {
                Ok(httparse::Status::Complete(n)) => {
                    let headers: Vec<(String, Vec<u8>)> =
                        response.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect();
                    break (response.code.unwrap_or(502), n, headers);
                }
                Ok(httparse::Status::Partial) if data.len() < 256 * 1024 => {}
                _ => return Err(if sent_any { ResponseError::Cut } else { ResponseError::NothingSent }),
            }
            let n = upstream.read(&mut chunk).await.map_err(|_| {
                if sent_any {
                    ResponseError::Cut
                } else {
                    ResponseError::NothingSent
                }
            })?;
            if n == 0 {
                return Err(if sent_any { ResponseError::Cut } else { ResponseError::NothingSent });
            }
            data.extend_from_slice(&chunk[..n]);
        };
        if (100..200).contains(&status) {
            write_client(client, &data[..head_len], send_timeout).await?;
            sent_any = true;
            data.drain(..head_len);
            continue;
        }
        data.drain(..head_len);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let chunked = header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length: Option<u64> = header("content-length").and_then(|v| v.trim().parse().ok());
        let no_body = head_request || status == 204 || status == 304;
        let mut body_override: Option<Vec<u8>> = None;
        if merge_metrics && status == 200 && !no_body {
            // the whole exposition, merged with the data plane's own series
            let mut body = std::mem::take(&mut data);
            loop {
                let n = upstream.read(&mut chunk).await.map_err(|_| ResponseError::NothingSent)?;
                if n == 0 || body.len() > 64 * 1024 * 1024 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            if chunked {
                body = dechunk(&body);
            } else if let Some(n) = length {
                body.truncate(n as usize);
            }
            let text = String::from_utf8_lossy(&body);
            let mut own = state.metrics.families();
            if let Some(cache) = &state.cache {
                own.extend(metrics::cache_families(cache));
            }
            let merged = metrics::merge(metrics::parse(&text), own);
            body_override = Some(merged.into_bytes());
        }
        let close_delimited = !no_body && !chunked && length.is_none() && body_override.is_none();
        let keep = keep_alive && !close_delimited;
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
        for (name, value) in &headers {
            let lower = name.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "connection" | "keep-alive" | "access-control-allow-origin" | "access-control-expose-headers"
            ) {
                continue;
            }
            if body_override.is_some() && matches!(lower.as_str(), "content-length" | "transfer-encoding") {
                continue;
            }
            if lower == "vary" && origin.is_some() && state.cors_enabled() {
                continue; // set below with Origin
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        let mut cors = Vec::new();
        state.cors_headers(origin, &mut cors);
        for (name, value) in cors {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if let Some(body) = &body_override {
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(if keep { b"\r\n" as &[u8] } else { b"Connection: close\r\n\r\n" });
        if let Some(body) = body_override {
            out.extend_from_slice(&body);
            write_client(client, &out, send_timeout).await?;
            return Ok(if keep { ResponseEnd::KeepAlive } else { ResponseEnd::Close });
        }
        if no_body {
            write_client(client, &out, send_timeout).await?;
            return Ok(if keep { ResponseEnd::KeepAlive } else { ResponseEnd::Close });
        }
        // the body: the application closes its end after it (Connection: close); what came
        // with the head leaves in the same write
        let mut left = length;
        let take = left.map_or(data.len(), |l| (l as usize).min(data.len()));
        out.extend_from_slice(&data[..take]);
        if let Some(l) = left.as_mut() {
            *l -= take as u64;
        }
        write_client(client, &out, send_timeout).await?;
        let mut pending: Vec<u8> = Vec::new();
        loop {
            if !pending.is_empty() {
                let take = left.map_or(pending.len(), |l| (l as usize).min(pending.len()));
                write_client(client, &pending[..take], send_timeout).await?;
                if let Some(l) = left.as_mut() {
                    *l -= take as u64;
                }
                pending.clear();
            }
            if left == Some(0) {
                break;
            }
            let n = upstream.read(&mut chunk).await.map_err(|_| ResponseError::Cut)?;
            if n == 0 {
                if left.is_some_and(|l| l > 0) {
                    return Err(ResponseError::Cut);
                }
                break;
            }
            pending.extend_from_slice(&chunk[..n]);
        }
        return Ok(if keep { ResponseEnd::KeepAlive } else { ResponseEnd::Close });
    }
}

fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(line_end) = rest.iter().position(|&b| b == b'\n') {
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size =
            usize::from_str_radix(size_text.trim().split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        rest = &rest[line_end + 1..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
    out
}
