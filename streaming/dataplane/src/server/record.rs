//! Request identity (X-Request-Id, W3C traceparent) and the record of one request the data
//! plane answers: its metrics and access-log line, written when the record is dropped, so a
//! response cut short (client gone, send timeout, drain deadline) is counted and logged too, as
//! nginx does, with 499.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use super::State;
use crate::logs;
use crate::metrics::method_index;
use crate::random::random_u64;

pub(super) fn request_id_for(received: Option<&str>) -> String {
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

pub(super) fn valid_traceparent(value: &str) -> bool {
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

pub(super) fn traceparent_for(received: Option<&str>) -> String {
    match received.map(str::trim) {
        Some(tp) if valid_traceparent(tp) => tp.to_string(),
        _ => format!("00-{:016x}{:016x}-{:016x}-00", random_u64() | 1, random_u64(), random_u64() | 1),
    }
}

pub(super) struct Record {
    pub(super) state: Arc<State>,
    pub(super) route: usize,
    pub(super) method: String,
    pub(super) path: String,
    pub(super) range: Option<String>,
    pub(super) user_agent: Option<String>,
    pub(super) remote: Option<String>,
    pub(super) request_id: String,
    pub(super) traceparent: String,
    pub(super) started: Instant,
    pub(super) status: u16,
    pub(super) sent: u64,
    /// How much of `sent` the body-bytes counter holds already.
    pub(super) counted: u64,
    pub(super) done: bool,
}

impl Record {
    /// Add what was sent since the last call to the body-bytes counter: called after each chunk
    /// of a long body, so the egress rate follows a download while it lasts.
    pub(super) fn count_sent(&mut self) {
        if self.sent > self.counted {
            self.state.metrics.body_bytes(self.route, self.sent - self.counted);
            self.counted = self.sent;
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let status = if self.done { self.status } else { 499 };
        let elapsed = self.started.elapsed().as_secs_f64();
        self.count_sent();
        let m = &self.state.metrics;
        m.in_flight.fetch_sub(1, Relaxed);
        m.request(self.route, method_index(&self.method), status, elapsed);
        if self.state.cfg.access_log {
            logs::access(&logs::Access {
                method: Some(&self.method),
                path: Some(&self.path),
                status,
                bytes: self.sent,
                duration_us: (elapsed * 1_000_000.0).round() as u64,
                range: self.range.as_deref(),
                remote: self.remote.as_deref(),
                user_agent: self.user_agent.as_deref(),
                request_id: &self.request_id,
                traceparent: &self.traceparent,
                error: None,
            });
        }
    }
}
