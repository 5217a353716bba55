//! HTTP/1.1 request heads (RFC 9112): httparse (hyper's parser) for the syntax, and here the
//! rules it leaves to the server: size limits, Host, message framing (no smuggling), the
//! request target, connection persistence, and the JSON error bodies.

use std::fmt::Write;

pub const MAX_REQUEST_LINE: usize = 8190;
pub const MAX_FIELD_LINE: usize = 8190;
pub const MAX_HEAD: usize = 32 * 1024;
pub const MAX_HEADERS: usize = 100;

/// A request the server refuses before routing it: status and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: &'static str,
}

const fn refuse(status: u16, message: &'static str) -> Refusal {
    Refusal { status, message }
}

/// How the request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub minor: u8,
    /// (name as sent, value)
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: Framing,
    pub keep_alive: bool,
    /// The path, percent-decoded (`None`: not valid UTF-8 once decoded).
    pub path: Option<String>,
    /// The path as sent (percent escapes intact): path tokens check it for encoded escapes.
    pub raw_path: String,
    pub raw_query: String,
}

impl Request {
    /// The first value of a header (case-insensitive name), when it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

/// Check the size limits on what has arrived so far (complete or not): the request line, each
/// field line, and the whole head.
pub fn check_limits(data: &[u8]) -> Result<(), Refusal> {
    let mut lines = data.split(|&b| b == b'\n');
    let mut offset = 0;
    let mut first = true;
    let mut seen_start = false;
    for line in lines.by_ref() {
        let complete = offset + line.len() < data.len();
        offset += line.len() + 1;
        let limit = if first { MAX_REQUEST_LINE } else { MAX_FIELD_LINE };
        if line.len() > limit + 1 {
            return Err(if first {
                refuse(400, "the request line is too long")
            } else {
                refuse(431, "a header field is too long")
            });
        }
        let empty = line.is_empty() || line == b"\r";
        if first && empty && !seen_start {
            continue; // empty lines before the request line are ignored (RFC 9112 2.2)
        }
        seen_start = true;
        if !first && empty && complete {
            // the end of the head
            return if offset > MAX_HEAD {
                Err(refuse(431, "the request header fields are too large"))
            } else {
                Ok(())
            };
        }
        first = false;
    }
    if data.len() > MAX_HEAD {
        return Err(refuse(431, "the request header fields are too large"));
    }
    Ok(())
}

/// Parse a complete head (httparse said Complete) into a Request, applying RFC 9112's rules.
pub fn parse_head(data: &[u8]) -> Result<Option<(Request, usize)>, Refusal> {
    check_limits(data)?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let length = match parsed.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(refuse(431, "too many header fields")),
        Err(httparse::Error::Version) => return Err(refuse(400, "unsupported HTTP version")),
        Err(_) => return Err(refuse(400, "malformed request")),
    };
    let method = parsed.method.unwrap_or("").to_string();
    let target = parsed.path.unwrap_or("").to_string();
    let minor = parsed.version.unwrap_or(1);
    let headers: Vec<(String, Vec<u8>)> =
        parsed.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect();

    // Host (RFC 9112 3.2): exactly one in HTTP/1.1, with a valid value.
    let hosts: Vec<&[u8]> =
        headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("host")).map(|(_, v)| v.as_slice()).collect();
    if hosts.len() > 1 {
        return Err(refuse(400, "more than one Host header field"));
    }
    if minor == 1 && hosts.is_empty() {
        return Err(refuse(400, "an HTTP/1.1 request needs a Host header field"));
    }
    if let Some(host) = hosts.first() {
        if !host.iter().all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b)) {
            return Err(refuse(400, "invalid Host header field"));
        }
    }

    // Framing (RFC 9112 6): no request smuggling.
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    for (name, value) in &headers {
        if name.eq_ignore_ascii_case("content-length") {
            for item in value.split(|&b| b == b',') {
                let item = trim(item);
                if item.is_empty() || item.len() > 18 || !item.iter().all(u8::is_ascii_digit) {
                    return Err(refuse(400, "invalid Content-Length"));
                }
                let n: u64 = std::str::from_utf8(item).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                if content_length.is_some_and(|c| c != n) {
                    return Err(refuse(400, "conflicting Content-Length values"));
                }
                content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            for item in value.split(|&b| b == b',') {
                let item = trim(item);
                if item.is_empty() {
                    continue;
                }
                if chunked || !item.eq_ignore_ascii_case(b"chunked") {
                    // chunked must be the last and only coding we accept
                    return Err(refuse(400, "unsupported Transfer-Encoding"));
                }
                chunked = true;
            }
        }
    }
    if transfer_encoding && (content_length.is_some() || minor == 0 || !chunked) {
        return Err(refuse(400, "Transfer-Encoding with Content-Length, in HTTP/1.0, or without chunked"));
    }
    let framing = if chunked {
        Framing::Chunked
    } else {
        match content_length {
            Some(0) | None => Framing::None,
            Some(n) => Framing::Length(n),
        }
    };

    // Persistence (RFC 9112 9.3).
    let mut close = false;
    let mut keep = false;
    for (name, value) in &headers {
        if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',') {
                let token = trim(token);
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let keep_alive = !close && (minor == 1 || keep);

    // The target: origin-form, absolute-form (its path), or `*` (OPTIONS only).
    let (raw_path, raw_query) = split_target(&method, &target)?;
    let path = percent_decode(raw_path.as_bytes()).and_then(|b| String::from_utf8(b).ok());
    Ok(Some((
        Request { method, target, minor, headers, framing, keep_alive, path, raw_path, raw_query },
        length,
    )))
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn split_target(method: &str, target: &str) -> Result<(String, String), Refusal> {
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(("*".into(), String::new()))
        } else {
            Err(refuse(400, "invalid request target"))
        };
    }
    let origin_form = if target.starts_with('/') {
        target
    } else {
        let lower = target.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
        let rest = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return Err(refuse(400, "invalid request target"));
        };
        match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
            Some(i) => return Ok(("/".into(), rest[i + 1..].to_string())),
            None => "/",
        }
    };
    let (path, query) = origin_form.split_once('?').unwrap_or((origin_form, ""));
    let path = path.split('#').next().unwrap_or("");
    Ok((path.to_string(), query.to_string()))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding; `None` for a malformed escape.
pub fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let h = hex(*s.get(i + 1)?)?;
            let l = hex(*s.get(i + 2)?)?;
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The first value of a query parameter, decoded as Python's `parse_qsl` does (`+` is a
/// space; an undecodable value is replaced, so it never matches a signature).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    for pair in query.split(['&', ';']) {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_form(k);
        if key == name {
            return Some(decode_form(v));
        }
    }
    None
}

fn decode_form(s: &str) -> String {
    let plus = s.replace('+', " ");
    let bytes = plus.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) =
                (bytes.get(i + 1).and_then(|&b| hex(b)), bytes.get(i + 2).and_then(|&b| hex(b)))
            {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// `{"error": {"status": 404, "message": "..."}}`, as the Python side writes it.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    let mut body = String::new();
    let _ = write!(
        body,
        "{{\"error\": {{\"status\": {status}, \"message\": {}}}}}",
        serde_json::Value::String(message.to_string())
    );
    body.into_bytes()
}

/// A decoder for a chunked body that passes the bytes through unchanged: `feed` says how many
/// of the given bytes belong to the body (the rest is the next request), and whether it ended.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
    line: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

const MAX_CHUNK_LINE: usize = 4096;

impl ChunkedDecoder {
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consume from `data`: (bytes consumed, finished), or a framing error.
    pub fn feed(&mut self, data: &[u8]) -> Result<(usize, bool), Refusal> {
        let bad = refuse(400, "malformed chunked body");
        let mut i = 0;
        while i < data.len() && self.state != ChunkState::Done {
            match self.state {
                ChunkState::Data(left) => {
                    let take = (left as usize).min(data.len() - i);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 { ChunkState::DataEnd } else { ChunkState::Data(left) };
                }
                ChunkState::Size | ChunkState::DataEnd | ChunkState::Trailer => {
                    let b = data[i];
                    i += 1;
                    if b != b'\n' {
                        self.line.push(b);
                        if self.line.len() > MAX_CHUNK_LINE {
                            return Err(bad);
                        }
                        continue;
                    }
                    let mut line = std::mem::take(&mut self.line);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    match self.state {
                        ChunkState::DataEnd => {
                            if !line.is_empty() {
                                return Err(bad);
                            }
                            self.state = ChunkState::Size;
                        }
                        ChunkState::Trailer => {
                            if line.is_empty() {
                                self.state = ChunkState::Done;
                            }
                        }
                        _ => {
                            let size_text = line.split(|&b| b == b';').next().unwrap_or(&[]);
                            let size_text = trim(size_text);
                            if size_text.is_empty() || size_text.len() > 15 {
                                return Err(bad);
                            }
                            let mut size = 0u64;
                            for &d in size_text {
                                size = size * 16 + u64::from(hex(d).ok_or(bad)?);
                            }
                            self.state = if size == 0 { ChunkState::Trailer } else { ChunkState::Data(size) };
                        }
                    }
                }
                ChunkState::Done => {}
            }
        }
        Ok((i, self.state == ChunkState::Done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked() {
        let mut d = ChunkedDecoder::default();
        let body = b"4\r\nwiki\r\n0\r\n\r\nGET";
        assert_eq!(d.feed(body), Ok((body.len() - 3, true)));
    }

    #[test]
    fn limits() {
        assert!(check_limits(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_ok());
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(check_limits(long.as_bytes()).unwrap_err().status, 431);
    }
}
