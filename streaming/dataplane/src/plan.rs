//! `decide(request, file) -> response plan` for GET/HEAD of a file, as Go's ServeContent does.
//!
//! Preconditions are evaluated in RFC 9110 section 13.2.2 order (If-Match, If-Unmodified-Since,
//! If-None-Match, If-Modified-Since), then If-Range and Range. No I/O: the plan names the status,
//! the headers and the body as a sequence of literal bytes and file ranges.

use crate::conditional::{
    format_http_date, if_match_passes, if_none_match_passes, if_range_matches, parse_http_date, EntityTag,
};
use crate::ranges::{parse_range, ByteRange, RangeKind, RangeSet};

/// What the plan needs to know about a file, with its validators rendered once (a file's
/// representation is kept with it in the open-file cache).
#[derive(Clone, Debug)]
pub struct Representation {
    pub size: u64,
    /// Whole seconds, as Last-Modified carries them.
    pub mtime: i64,
    pub etag: EntityTag,
    pub content_type: String,
    /// The ETag and Last-Modified field values.
    etag_value: String,
    last_modified: String,
}

impl Representation {
    pub fn new(size: u64, mtime: i64, etag: EntityTag, content_type: String) -> Representation {
        let etag_value = etag.render();
        Representation { size, mtime, etag, content_type, etag_value, last_modified: format_http_date(mtime) }
    }
}

/// The request fields that decide the response (`None` when absent).
#[derive(Clone, Debug, Default)]
pub struct Conditions<'a> {
    pub head: bool,
    pub range: Option<&'a str>,
    pub if_range: Option<&'a str>,
    pub if_match: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
    pub if_unmodified_since: Option<&'a str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Bytes(Vec<u8>),
    File(ByteRange),
}

impl Segment {
    pub fn length(&self) -> u64 {
        match self {
            Segment::Bytes(b) => b.len() as u64,
            Segment::File(r) => r.length(),
        }
    }
}

/// A response to send: status, headers, and (unless `error`) the body's segments.
#[derive(Clone, Debug)]
pub struct Plan {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<Segment>,
    pub kind: RangeKind,
    /// Set for 412/416: the server answers with a JSON error.
    pub error: Option<&'static str>,
    /// HEAD or 304: send the headers only.
    pub head: bool,
}

impl Plan {
    fn error(
        status: u16,
        headers: Vec<(&'static str, String)>,
        kind: RangeKind,
        message: &'static str,
    ) -> Plan {
        Plan { status, headers, body: Vec::new(), kind, error: Some(message), head: false }
    }

    pub fn content_length(&self) -> u64 {
        self.body.iter().map(Segment::length).sum()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Choose 200, 206, 304, 412 or 416 for a GET or HEAD of `rep`.
pub fn decide(cond: &Conditions, rep: &Representation, max_ranges: usize, boundary: &str) -> Plan {
    let validators = || vec![("ETag", rep.etag_value.clone()), ("Last-Modified", rep.last_modified.clone())];
    if let Some(if_match) = cond.if_match {
        if !if_match_passes(if_match, &rep.etag) {
            return Plan::error(412, Vec::new(), RangeKind::None, "If-Match does not match the current ETag");
        }
    } else if let Some(since) = cond.if_unmodified_since {
        if parse_http_date(since).is_some_and(|since| rep.mtime > since) {
            return Plan::error(
                412,
                Vec::new(),
                RangeKind::None,
                "modified since the If-Unmodified-Since date",
            );
        }
    }
    if let Some(if_none_match) = cond.if_none_match {
        if !if_none_match_passes(if_none_match, &rep.etag) {
            return not_modified(validators());
        }
    } else if let Some(since) = cond.if_modified_since {
        if parse_http_date(since).is_some_and(|since| rep.mtime <= since) {
            return not_modified(validators());
        }
    }

    let mut headers = vec![("Accept-Ranges", "bytes".to_string())];
    headers.extend(validators());
    let ranges = ranges_to_send(cond, rep, max_ranges);
    let (status, body) = match ranges.kind {
        RangeKind::Unsatisfiable => {
            headers.push(("Content-Range", format!("bytes */{}", rep.size)));
            return Plan::error(416, headers, ranges.kind, "no requested range overlaps the file");
        }
        RangeKind::Single | RangeKind::Suffix => {
            let only = ranges.ranges[0];
            headers.push(("Content-Type", rep.content_type.clone()));
            headers.push(("Content-Range", only.content_range(rep.size)));
            (206, vec![Segment::File(only)])
        }
        RangeKind::Multi => {
            headers.push(("Content-Type", format!("multipart/byteranges; boundary={boundary}")));
            (206, multipart_body(&ranges.ranges, rep, boundary))
        }
        RangeKind::None | RangeKind::Ignored => {
            headers.push(("Content-Type", rep.content_type.clone()));
            let body = if rep.size > 0 {
                vec![Segment::File(ByteRange { start: 0, end: rep.size - 1 })]
            } else {
                Vec::new()
            };
            (200, body)
        }
    };
    let mut plan = Plan { status, headers, body, kind: ranges.kind, error: None, head: cond.head };
    let length = plan.content_length();
    plan.headers.push(("Content-Length", length.to_string()));
    plan
}

fn not_modified(headers: Vec<(&'static str, String)>) -> Plan {
    Plan { status: 304, headers, body: Vec::new(), kind: RangeKind::None, error: None, head: true }
}

fn ranges_to_send(cond: &Conditions, rep: &Representation, max_ranges: usize) -> RangeSet {
    // RFC 9110 14.2: GET is the only method for which range handling is defined.
    let Some(range) = cond.range.filter(|_| !cond.head) else {
        return RangeSet { kind: RangeKind::None, ranges: Vec::new() };
    };
    if let Some(if_range) = cond.if_range {
        if !if_range_matches(if_range, &rep.etag, rep.mtime) {
            return RangeSet { kind: RangeKind::Ignored, ranges: Vec::new() };
        }
    }
    parse_range(range, rep.size, max_ranges)
}

/// The segments of a `multipart/byteranges` body (RFC 9110 14.6).
pub fn multipart_body(ranges: &[ByteRange], rep: &Representation, boundary: &str) -> Vec<Segment> {
    let mut body = Vec::with_capacity(ranges.len() * 2 + 1);
    for (index, part) in ranges.iter().enumerate() {
        let lead = if index == 0 { "--" } else { "\r\n--" };
        body.push(Segment::Bytes(
            format!(
                "{lead}{boundary}\r\nContent-Type: {}\r\nContent-Range: {}\r\n\r\n",
                rep.content_type,
                part.content_range(rep.size)
            )
            .into_bytes(),
        ));
        body.push(Segment::File(*part));
    }
    body.push(Segment::Bytes(format!("\r\n--{boundary}--\r\n").into_bytes()));
    body
}
