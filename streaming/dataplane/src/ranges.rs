//! RFC 9110 section 14: parse a `Range` header against a representation's size.
//!
//! Pure and bounded: the work is linear in the header's length (which the HTTP parser caps),
//! numbers are clamped once they have more than 18 significant digits, and at most
//! `max_ranges` range-specs are kept (CVE-2025-62727 was a quadratic range parser).

/// Larger than any file we serve; numbers with more significant digits are clamped to it.
const HUGE: u64 = 1_000_000_000_000_000_000;
const MAX_DIGITS: usize = 18;

/// An inclusive byte range `start..=end` of a representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn length(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{}", self.start, self.end, size)
    }
}

/// How a Range header was answered; also the `kind` label of the range metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RangeKind {
    /// No Range header, or not a GET.
    None,
    /// Invalid syntax, another unit, too many ranges, or more than the file.
    Ignored,
    Single,
    Suffix,
    Multi,
    Unsatisfiable,
}

impl RangeKind {
    pub fn label(self) -> &'static str {
        match self {
            RangeKind::None => "none",
            RangeKind::Ignored => "ignored",
            RangeKind::Single => "single",
            RangeKind::Suffix => "suffix",
            RangeKind::Multi => "multi",
            RangeKind::Unsatisfiable => "unsatisfiable",
        }
    }

    pub const ALL: [RangeKind; 6] = [
        RangeKind::None,
        RangeKind::Ignored,
        RangeKind::Single,
        RangeKind::Suffix,
        RangeKind::Multi,
        RangeKind::Unsatisfiable,
    ];
}

/// The outcome of parsing: a kind and, for Single/Suffix/Multi, the ranges to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSet {
    pub kind: RangeKind,
    pub ranges: Vec<ByteRange>,
}

impl RangeSet {
    fn of(kind: RangeKind) -> RangeSet {
        RangeSet { kind, ranges: Vec::new() }
    }
}

fn number(digits: &[u8]) -> u64 {
    let significant = match digits.iter().position(|&b| b != b'0') {
        Some(first) => &digits[first..],
        None => return 0,
    };
    if significant.len() > MAX_DIGITS {
        return HUGE;
    }
    significant.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'))
}

fn all_digits(s: &[u8]) -> bool {
    s.iter().all(u8::is_ascii_digit)
}

/// Parse a Range header value for a representation of `size` bytes.
///
/// Ignored (the whole representation is sent with 200): another unit, invalid syntax, more than
/// `max_ranges` range-specs, or ranges adding up to more than the representation. Unsatisfiable
/// (416) when no range overlaps it. Otherwise the satisfiable ranges, clamped to the size,
/// coalesced where they overlap or touch, in the order requested.
pub fn parse_range(value: &str, size: u64, max_ranges: usize) -> RangeSet {
    let bytes = value.as_bytes();
    let Some(eq) = bytes.iter().position(|&b| b == b'=') else {
        return RangeSet::of(RangeKind::Ignored);
    };
    if !bytes[..eq].eq_ignore_ascii_case(b"bytes") {
        return RangeSet::of(RangeKind::Ignored);
    }
    let mut wanted: Vec<ByteRange> = Vec::new();
    let mut specs = 0usize;
    let mut suffix = false;
    for item in bytes[eq + 1..].split(|&b| b == b',') {
        let spec = trim_ows(item);
        if spec.is_empty() {
            continue; // RFC 9110 5.6.1.2: empty list elements are ignored
        }
        specs += 1;
        if specs > max_ranges {
            return RangeSet::of(RangeKind::Ignored);
        }
        let Some(dash) = spec.iter().position(|&b| b == b'-') else {
            return RangeSet::of(RangeKind::Ignored);
        };
        let (first, last) = (&spec[..dash], &spec[dash + 1..]);
        if !all_digits(first) || !all_digits(last) {
            return RangeSet::of(RangeKind::Ignored);
        }
        if first.is_empty() {
            if last.is_empty() {
                return RangeSet::of(RangeKind::Ignored);
            }
            let suffix_length = number(last);
            suffix = true;
            if suffix_length > 0 && size > 0 {
                wanted.push(ByteRange { start: size.saturating_sub(suffix_length), end: size - 1 });
            } else if suffix_length > 0 {
                // satisfiable, but a zero-length file has no bytes to name
                return RangeSet::of(RangeKind::Ignored);
            }
            continue;
        }
        let start = number(first);
        let end = if last.is_empty() { HUGE } else { number(last) };
        if end < start {
            return RangeSet::of(RangeKind::Ignored);
        }
        if start < size {
            wanted.push(ByteRange { start, end: end.min(size - 1) });
        }
    }
    if specs == 0 {
        return RangeSet::of(RangeKind::Ignored);
    }
    if wanted.is_empty() {
        return RangeSet::of(RangeKind::Unsatisfiable);
    }
    let total: u64 = wanted.iter().map(|r| r.length()).sum();
    if total > size {
        return RangeSet::of(RangeKind::Ignored);
    }
    let merged = coalesce(&wanted);
    if merged.len() > 1 {
        return RangeSet { kind: RangeKind::Multi, ranges: merged };
    }
    let kind = if suffix && specs == 1 { RangeKind::Suffix } else { RangeKind::Single };
    RangeSet { kind, ranges: merged }
}

/// The bytes `(first, last)` a GET's body will start with, known before the representation's
/// size: `(0, None)` without a Range header (or with one that is ignored), else the first range
/// sent (`last`: `None` when open-ended). `None` when a suffix range makes it depend on the size.
pub fn first_bytes(range: Option<&str>, max_ranges: usize) -> Option<(u64, Option<u64>)> {
    let Some(value) = range else { return Some((0, None)) };
    let specs = value.split_once('=').map_or("", |(_, specs)| specs);
    if specs.split(',').any(|spec| spec.trim_matches([' ', '\t']).starts_with('-')) {
        return None;
    }
    let parsed = parse_range(value, HUGE, max_ranges);
    match parsed.kind {
        RangeKind::Single | RangeKind::Multi => {
            let first = parsed.ranges[0];
            Some((first.start, (first.end < HUGE - 1).then_some(first.end)))
        }
        _ => Some((0, None)),
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Merge the ranges that overlap or are adjacent, keeping the order of the request
/// (RFC 9110 15.3.7.2): a merged range takes the place of its first-requested member.
pub fn coalesce(ranges: &[ByteRange]) -> Vec<ByteRange> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| (ranges[i].start, i));
    let mut merged: Vec<(usize, ByteRange)> = Vec::with_capacity(ranges.len());
    for index in order {
        let current = ranges[index];
        match merged.last_mut() {
            Some((first, last)) if current.start <= last.end.saturating_add(1) => {
                *first = (*first).min(index);
                last.end = last.end.max(current.end);
            }
            _ => merged.push((index, current)),
        }
    }
    merged.sort_by_key(|m| m.0);
    merged.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_examples() {
        let r = parse_range("bytes=-1,0-0", 10000, 16);
        assert_eq!(r.kind, RangeKind::Multi);
        assert_eq!(r.ranges, vec![ByteRange { start: 9999, end: 9999 }, ByteRange { start: 0, end: 0 }]);
        assert_eq!(parse_range("bytes=-0", 10000, 16).kind, RangeKind::Unsatisfiable);
        assert_eq!(parse_range("items=0-1", 10000, 16).kind, RangeKind::Ignored);
    }

    #[test]
    fn first_bytes_before_the_size_is_known() {
        assert_eq!(first_bytes(None, 16), Some((0, None)));
        assert_eq!(first_bytes(Some("bytes=100-199"), 16), Some((100, Some(199))));
        assert_eq!(first_bytes(Some("bytes=100-"), 16), Some((100, None)));
        assert_eq!(first_bytes(Some("bytes=500-600, 0-10"), 16), Some((500, Some(600))));
        assert_eq!(first_bytes(Some("bytes=10-20,5-15"), 16), Some((5, Some(20))));
        assert_eq!(first_bytes(Some("bytes=-500"), 16), None);
        assert_eq!(first_bytes(Some("bytes=0-1, -500"), 16), None);
        assert_eq!(first_bytes(Some("items=5-9"), 16), Some((0, None)));
        assert_eq!(first_bytes(Some("bytes=9-5"), 16), Some((0, None)));
    }
}
