//! One connection's state machine: read a request head (header and idle timeouts, the drain),
//! route it (media, the data plane's own answers, or the proxy), answer it, then keep the
//! connection alive or close it gracefully.

use std::net::IpAddr;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::access::unmap;
use super::record::{request_id_for, traceparent_for, Record};
use super::response::http_date_now;
use super::send::Cut;
use super::State;
use crate::http::{error_body, parse_head, reason, ChunkedDecoder, Framing, Refusal, Request};
use crate::logs;
use crate::metrics::route_index;
use crate::tokens;

/// A body a GET/HEAD/OPTIONS may carry (read and dropped); larger ones are refused.
const MAX_IGNORED_BODY: u64 = 1024 * 1024;

pub(super) struct Conn {
    pub(super) state: Arc<State>,
    pub(super) stream: TcpStream,
    pub(super) buf: Vec<u8>,
    pub(super) peer: Option<IpAddr>,
}

pub(super) enum Next {
    KeepAlive,
    Close,
}

impl Conn {
    pub(super) async fn run(&mut self) {
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
    pub(super) async fn read_request(&mut self, first: bool) -> Result<Option<Request>, Refusal> {
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
            // read straight into the buffer's spare room: no zeroed chunk, no copy
            self.buf.reserve(8192);
            let read = tokio::select! {
                read = timeout(wait, self.stream.read_buf(&mut self.buf)) => read,
                () = self.state.drain.notified(), if idle => return Ok(None),
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Ok(None),
                Ok(Ok(_)) => {
                    if deadline.is_none() {
                        deadline = header_timeout.map(|t| Instant::now() + t);
                    }
                }
            }
        }
    }

    /// Answer a malformed request with a JSON error, then close.
    pub(super) async fn refuse(&mut self, refusal: Refusal) {
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
            let remote = self.peer.map(|p| unmap(p).to_string());
            logs::access(&logs::Access {
                method: None,
                path: None,
                status: refusal.status,
                bytes: body.len() as u64,
                duration_us: 0,
                range: None,
                remote: remote.as_deref(),
                user_agent: None,
                request_id: &request_id_for(None),
                traceparent: &traceparent_for(None),
                error: Some(refusal.message),
            });
            self.linger().await;
        }
    }

    /// Close gracefully: stop sending, and read (and drop) what the client still sends for a
    /// moment, so the kernel does not reset the connection before the client read our answer.
    pub(super) async fn linger(&mut self) {
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

    pub(super) async fn answer(&mut self, request: Request) -> Result<Next, Cut> {
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
            counted: 0,
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

    /// Read and drop the body a GET/HEAD/OPTIONS carries; false when it cannot be (too large,
    /// malformed, stalled): the connection then closes.
    pub(super) async fn skip_body(&mut self, request: &Request) -> Result<bool, Cut> {
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
