//! Responses the data plane writes: the plan of a media response (preconditions, ranges,
//! caching policy), response heads, and small complete responses.

use std::sync::atomic::Ordering::Relaxed;

use serde_json::Value;

use super::connection::{Conn, Next};
use super::record::Record;
use super::send::Cut;
use super::Refused;
use crate::hls;
use crate::http::{reason, Request};
use crate::logs;
use crate::plan::{decide, Conditions, Plan, Representation};
use crate::random::random_u64;
use crate::ranges::RangeKind;

thread_local! {
    static DATE: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

pub(super) fn http_date_now() -> String {
    with_http_date_now(str::to_string)
}

/// `use_date(the Date field's value now)`, formatted at most once a second per thread.
fn with_http_date_now<T>(use_date: impl FnOnce(&str) -> T) -> T {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
        as i64;
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != now {
            *cached = (now, crate::conditional::format_http_date(now));
        }
        use_date(&cached.1)
    })
}

/// A status code's three digits (100-999; HTTP has no others).
fn status_digits(status: u16) -> [u8; 3] {
    let status = status.clamp(100, 999);
    [b'0' + (status / 100) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8]
}

impl Conn {
    /// The response plan for the request against `rep` (412/416 as errors), with the caching
    /// policy of `relative` (`signed`: private).
    pub(super) fn plan_for(
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

    pub(super) fn head_bytes(
        &self,
        request: &Request,
        status: u16,
        headers: &[(&'static str, String)],
        keep_alive: bool,
    ) -> Vec<u8> {
        self.head_of_parts(request, status, &[headers], keep_alive)
    }

    /// The response head with the header fields of every part, in order.
    pub(super) fn head_of_parts(
        &self,
        request: &Request,
        status: u16,
        parts: &[&[(&'static str, String)]],
        keep_alive: bool,
    ) -> Vec<u8> {
        let mut head = Vec::with_capacity(512);
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(&status_digits(status));
        head.push(b' ');
        head.extend_from_slice(reason(status).as_bytes());
        head.extend_from_slice(b"\r\nDate: ");
        with_http_date_now(|date| head.extend_from_slice(date.as_bytes()));
        head.extend_from_slice(b"\r\n");
        for (name, value) in parts.iter().flat_map(|part| part.iter()) {
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

    pub(super) async fn send_simple(
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

    pub(super) fn cut(&self, record: &mut Record, cut: Cut) -> Cut {
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
    pub(super) async fn head_or_done(
        &mut self,
        request: &Request,
        record: &mut Record,
        plan: &Plan,
        headers: &[(&'static str, String)],
        keep_alive: bool,
    ) -> Result<Option<Vec<u8>>, Cut> {
        let out = self.head_of_parts(request, plan.status, &[&plan.headers, headers], keep_alive);
        record.status = plan.status;
        if plan.head || plan.status == 304 || plan.content_length() == 0 {
            self.write_all(&out, false).await.map_err(|c| self.cut(record, c))?;
            record.done = true;
            return Ok(None);
        }
        Ok(Some(out))
    }
    /// A JSON error the data plane writes itself, then the connection closes.
    pub(super) async fn plain(
        &mut self,
        request: &Request,
        status: u16,
        request_id: &str,
        body: Vec<u8>,
    ) -> Result<Next, Cut> {
        self.plain_with(request, status, request_id, body, Vec::new()).await
    }

    /// `plain` with extra header fields.
    pub(super) async fn plain_with(
        &mut self,
        request: &Request,
        status: u16,
        request_id: &str,
        body: Vec<u8>,
        extra: Vec<(&'static str, String)>,
    ) -> Result<Next, Cut> {
        let mut headers = vec![
            ("X-Request-Id", request_id.to_string()),
            ("Content-Type", "application/json".to_string()),
            ("Content-Length", body.len().to_string()),
        ];
        headers.extend(extra);
        let mut out = self.head_bytes(request, status, &headers, false);
        if request.method != "HEAD" {
            out.extend_from_slice(&body);
        }
        self.write_all(&out, false).await?;
        Ok(Next::Close)
    }
}
