//! RFC 9110 section 13: validators (ETag, Last-Modified) and the conditional-request checks.

/// An entity-tag: opaque value and weakness.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EntityTag {
    pub opaque: String,
    pub weak: bool,
}

impl EntityTag {
    pub fn strong(opaque: impl Into<String>) -> EntityTag {
        EntityTag { opaque: opaque.into(), weak: false }
    }

    pub fn render(&self) -> String {
        format!("{}\"{}\"", if self.weak { "W/" } else { "" }, self.opaque)
    }
}

/// A strong ETag that changes whenever the file is replaced or modified.
pub fn make_etag(inode: u64, size: u64, mtime_ns: i128) -> EntityTag {
    let mtime = if mtime_ns < 0 { format!("-{:x}", -mtime_ns) } else { format!("{mtime_ns:x}") };
    EntityTag::strong(format!("{inode:x}-{size:x}-{mtime}"))
}

fn is_etagc(b: u8) -> bool {
    b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
}

fn skip_ows(s: &[u8], mut pos: usize) -> usize {
    while pos < s.len() && (s[pos] == b' ' || s[pos] == b'\t') {
        pos += 1;
    }
    pos
}

/// One entity-tag at `pos` (after optional whitespace): the tag and the position after it.
fn etag_at(s: &[u8], pos: usize) -> Option<(EntityTag, usize)> {
    let mut p = skip_ows(s, pos);
    let weak = s[p..].starts_with(b"W/");
    if weak {
        p += 2;
    }
    if s.get(p) != Some(&b'"') {
        return None;
    }
    p += 1;
    let start = p;
    while p < s.len() && is_etagc(s[p]) {
        p += 1;
    }
    if s.get(p) != Some(&b'"') {
        return None;
    }
    let opaque = String::from_utf8_lossy(&s[start..p]).into_owned();
    Some((EntityTag { opaque, weak }, p + 1))
}

/// Parse an If-Match / If-None-Match list; `None` means `*`.
///
/// Parsing stops at the first malformed member (what was parsed before it is kept), as Go does.
pub fn parse_etags(value: &str) -> Option<Vec<EntityTag>> {
    let s = value.as_bytes();
    if trim_ows(s) == b"*" {
        return None;
    }
    let mut tags = Vec::new();
    let mut pos = 0;
    while pos < s.len() {
        let p = skip_ows(s, pos);
        if s.get(p) == Some(&b',') {
            pos = p + 1;
            continue;
        }
        if p == s.len() {
            break;
        }
        let Some((tag, after)) = etag_at(s, p) else { break };
        let after = skip_ows(s, after);
        match s.get(after) {
            None => {
                tags.push(tag);
                break;
            }
            Some(b',') => {
                tags.push(tag);
                pos = after + 1;
            }
            Some(_) => break,
        }
    }
    Some(tags)
}

/// Parse exactly one entity-tag (If-Range); `None` when it is not exactly one.
pub fn parse_single_etag(value: &str) -> Option<EntityTag> {
    let s = value.as_bytes();
    let (tag, after) = etag_at(s, 0)?;
    if skip_ows(s, after) != s.len() {
        return None;
    }
    Some(tag)
}

pub fn strong_match(a: &EntityTag, b: &EntityTag) -> bool {
    !a.weak && !b.weak && a.opaque == b.opaque
}

pub fn weak_match(a: &EntityTag, b: &EntityTag) -> bool {
    a.opaque == b.opaque
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

/// If-Match: true for `*` or any strongly matching member.
pub fn if_match_passes(header: &str, etag: &EntityTag) -> bool {
    match parse_etags(header) {
        None => true,
        Some(tags) => tags.iter().any(|t| strong_match(t, etag)),
    }
}

/// If-None-Match: false for `*` or any weakly matching member.
pub fn if_none_match_passes(header: &str, etag: &EntityTag) -> bool {
    match parse_etags(header) {
        None => false,
        Some(tags) => !tags.iter().any(|t| weak_match(t, etag)),
    }
}

/// If-Range: an exact strong ETag, or exactly the Last-Modified date.
pub fn if_range_matches(header: &str, etag: &EntityTag, last_modified: i64) -> bool {
    let value = std::str::from_utf8(trim_ows(header.as_bytes())).unwrap_or("");
    if value.starts_with('"') || value.starts_with("W/") {
        return parse_single_etag(value).is_some_and(|t| strong_match(&t, etag));
    }
    parse_http_date(value) == Some(last_modified)
}

// ---------------------------------------------------------------------------------------------
// HTTP-date (RFC 9110 5.6.7): IMF-fixdate, and the obsolete RFC 850 and asctime formats.

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // 1970-01-01 was a Thursday

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Format epoch seconds as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn format_http_date(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn month_number(name: &str) -> Option<i64> {
    MONTHS.iter().position(|m| m.eq_ignore_ascii_case(name)).map(|i| i as i64 + 1)
}

fn small_number(s: &str, max_digits: usize) -> Option<i64> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn clock(s: &str) -> Option<i64> {
    let mut parts = s.split(':');
    let h = small_number(parts.next()?, 2)?;
    let m = small_number(parts.next()?, 2)?;
    let sec = small_number(parts.next().unwrap_or("0"), 2)?;
    if parts.next().is_some() || h > 23 || m > 59 || sec > 61 {
        return None;
    }
    Some(h * 3600 + m * 60 + sec.min(59))
}

/// The offset of a zone in seconds: GMT/UTC/UT/Z, or +HHMM / -HHMM under 24 hours.
fn zone(s: &str) -> Option<i64> {
    if ["GMT", "UTC", "UT", "Z"].iter().any(|z| z.eq_ignore_ascii_case(s)) {
        return Some(0);
    }
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let n = small_number(digits, 4)?;
    if digits.len() != 4 || n / 100 > 23 || n % 100 > 59 {
        return None;
    }
    Some(sign * ((n / 100) * 3600 + (n % 100) * 60))
}

fn epoch_of(year: i64, month: i64, day: i64, seconds: i64, offset: i64) -> Option<i64> {
    if !(1..=9999).contains(&year) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + seconds - offset)
}

/// An HTTP-date as epoch seconds, or `None` when it is not a valid date (RFC 9110 13.1.3:
/// an invalid date in a conditional header is ignored).
pub fn parse_http_date(value: &str) -> Option<i64> {
    if value.len() > 64 || value.bytes().filter(|&b| b == b',').count() > 1 {
        return None;
    }
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let weekday_ok = |w: &str| {
        let w = w.strip_suffix(',').unwrap_or(w);
        !w.is_empty() && w.len() <= 9 && w.bytes().all(|b| b.is_ascii_alphabetic())
    };
    match fields.as_slice() {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        [wd, d, mon, y, t, z] if wd.ends_with(',') && weekday_ok(wd) => {
            let year = small_number(y, 4)?;
            let year = if y.len() == 2 { two_digit_year(year) } else { year };
            epoch_of(year, month_number(mon)?, small_number(d, 2)?, clock(t)?, zone(z)?)
        }
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        [wd, dmy, t, z] if wd.ends_with(',') && weekday_ok(wd) => {
            let mut parts = dmy.split('-');
            let d = small_number(parts.next()?, 2)?;
            let mon = month_number(parts.next()?)?;
            let y_text = parts.next()?;
            if parts.next().is_some() {
                return None;
            }
            let y = small_number(y_text, 4)?;
            let year = if y_text.len() == 2 { two_digit_year(y) } else { y };
            epoch_of(year, mon, d, clock(t)?, zone(z)?)
        }
        // asctime: Sun Nov  6 08:49:37 1994 (GMT by definition)
        [wd, mon, d, t, y] if !wd.ends_with(',') && weekday_ok(wd) => {
            epoch_of(small_number(y, 4)?, month_number(mon)?, small_number(d, 2)?, clock(t)?, 0)
        }
        _ => None,
    }
}

fn two_digit_year(y: i64) -> i64 {
    // As Python's email.utils: 00-68 are 2000-2068, 69-99 are 1969-1999.
    if y < 69 {
        y + 2000
    } else {
        y + 1900
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let epoch = 784_111_777;
        assert_eq!(format_http_date(epoch), "Sun, 06 Nov 1994 08:49:37 GMT");
        for v in
            ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"]
        {
            assert_eq!(parse_http_date(v), Some(epoch), "{v}");
        }
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37"), None);
    }
}
