//! Everything the data plane does not answer itself, streamed to the Python application over
//! its Unix socket and back: request head and body out, 1xx and final response in (hop-by-hop
//! fields replaced, CORS added, the data plane's series merged into `/metrics`).

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::timeout;

use super::access::unmap;
use super::connection::{Conn, Next};
use super::record::{request_id_for, traceparent_for};
use super::send::{until_stalled, Cut};
use super::{exhausted_refusal, State};
use crate::descriptors;
use crate::http::{error_body, reason, ChunkedDecoder, Framing, Request};
use crate::metrics;

impl Conn {
    pub(super) async fn proxy(&mut self, request: &Request, merge_metrics: bool) -> Result<Next, Cut> {
        let state = self.state.clone();
        let request_id = request_id_for(request.header("x-request-id"));
        let traceparent = traceparent_for(request.header("traceparent"));
        let upstream =
            match timeout(Duration::from_secs(5), UnixStream::connect(&state.cfg.upstream_socket)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) if descriptors::exhausted(&e) => {
                    state.descriptors_exhausted("upstream");
                    let (status, message, extra) = exhausted_refusal();
                    return self
                        .plain_with(request, status, &request_id, error_body(status, message), extra)
                        .await;
                }
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
        // an upload, a delete or an admin change may have replaced media under the open-file cache
        let writes = !matches!(request.method.as_str(), "GET" | "HEAD" | "OPTIONS");

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
                writes,
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
}

#[derive(Debug)]
pub(super) enum BodyError {
    Timeout,
    Closed,
    Malformed,
}

/// Copy the request body from the client to the application, as it arrives (the bytes already
/// buffered first). Bytes after the body (a pipelined request) stay in `buf`.
pub(super) async fn forward_body(
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

pub(super) enum ResponseEnd {
    KeepAlive,
    Close,
}

#[derive(Debug)]
pub(super) enum ResponseError {
    /// Nothing reached the client: the data plane can still answer 502.
    NothingSent,
    Cut,
}

pub(super) async fn write_client(
    client: &mut tokio::net::tcp::WriteHalf<'_>,
    data: &[u8],
    send_timeout: Option<Duration>,
) -> Result<(), ResponseError> {
    let mut rest = data;
    while !rest.is_empty() {
        let n = match send_timeout {
            Some(t) => {
                let socket = client.as_ref().as_raw_fd();
                until_stalled(socket, t, client.write(rest)).await.ok_or(ResponseError::Cut)?
            }
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
/// (hop-by-hop fields replaced, CORS added) and the body as it is framed. After a request that
/// `writes`, the open-file cache is emptied when the final head arrives, before the client can
/// see it: a client that uploads, then reads, gets what it uploaded.
#[allow(clippy::too_many_arguments)]
pub(super) async fn forward_response(
    upstream: &mut tokio::net::unix::OwnedReadHalf,
    client: &mut tokio::net::tcp::WriteHalf<'_>,
    state: &State,
    origin: Option<&str>,
    keep_alive: bool,
    head_request: bool,
    merge_metrics: bool,
    writes: bool,
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
        if writes {
            state.files.forget_all();
        }
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

pub(super) fn dechunk(body: &[u8]) -> Vec<u8> {
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
