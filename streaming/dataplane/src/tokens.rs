//! Playback tokens carried in the path: `/t/<token>/<path under the signed prefix>`.
//!
//! One token authorizes every file under one folder (an asset's prefix: its master playlist,
//! variant playlists, segments, poster and storyboard) and nothing else. Because the token is
//! a path segment, the relative URIs inside playlists (`720p/index.m3u8`, `seg_00001.m4s`)
//! resolve to URLs that carry it too: playlists are served unchanged, byte for byte.
//!
//! Token: `<kid>~<exp>~<base64url(prefix)>~<bind>~<sig>`, where `bind` is `a` (any client) or
//! `ip` (the client's IP is part of the signed string), and `sig` is the HMAC-SHA256 of the
//! prefix's canonical string (`signing::canonical(prefix, exp, ip, prefix=true)`). `~` is
//! unreserved in URLs and occurs in neither key ids nor base64url.

use base64::Engine;

use crate::http::percent_decode;
use crate::paths::media_path;
use crate::signing::{canonical, constant_time_eq, signature, valid_key_id};

/// Paths starting with this carry a token in their next segment.
pub const PATH_PREFIX: &str = "/t/";
const SEPARATOR: char = '~';
/// Longest token accepted (the prefix is at most a few path segments).
const MAX_TOKEN: usize = 1024;

/// Whether `prefix` is a folder a token may cover: `/a/b/`, clean (as `media_path` accepts),
/// at least one segment deep.
pub fn valid_prefix(prefix: &str) -> bool {
    let Some(inner) = prefix.strip_prefix('/').and_then(|p| p.strip_suffix('/')) else {
        return false;
    };
    !inner.is_empty() && media_path(prefix).as_deref() == Some(inner) && !inner.contains("//")
}

/// The token for every path under `prefix` until `exp`; bound to `ip` when given.
pub fn make(
    key_id: &str,
    key: &[u8],
    prefix: &str,
    exp: i64,
    ip: Option<&str>,
) -> Result<String, &'static str> {
    if !valid_key_id(key_id) {
        return Err("invalid key id");
    }
    if !valid_prefix(prefix) {
        return Err("the prefix must be a clean folder path such as /assets/ns/name/");
    }
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(prefix);
    let bind = if ip.is_some() { "ip" } else { "a" };
    let sig = signature(key, &canonical(prefix, exp, ip, true));
    Ok(format!("{key_id}~{exp}~{encoded}~{bind}~{sig}"))
}

/// What the client asked for, once a path token is checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorized {
    /// The decoded path under the prefix, e.g. `/assets/ns/name/master.m3u8`.
    pub path: String,
    pub prefix: String,
}

/// Split `/t/<token>/<rest>` (the raw path, escapes intact) into the token and the raw rest;
/// `None` when the path does not use a token.
pub fn split(raw_path: &str) -> Option<(&str, &str)> {
    let after = raw_path.strip_prefix(PATH_PREFIX)?;
    Some(match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    })
}

/// `path` as logs may keep it: a path token's signature replaced by `-` (whoever reads the
/// logs cannot replay the URL; key id, expiry and prefix stay for debugging).
pub fn redact(path: &str) -> String {
    match split(path) {
        Some((token, rest)) => match token.rsplit_once(SEPARATOR) {
            Some((head, _signature)) => format!("{PATH_PREFIX}{head}{SEPARATOR}-{rest}"),
            None => format!("{PATH_PREFIX}-{rest}"),
        },
        None => path.to_string(),
    }
}

/// The decoded path of `raw_rest` when it is a clean path: no encoded `/` or `\`, no empty,
/// `.`, `..` or hidden segments, no control characters.
fn clean_rest(raw_rest: &str) -> Option<String> {
    let lower = raw_rest.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return None;
    }
    let decoded = String::from_utf8(percent_decode(raw_rest.as_bytes())?).ok()?;
    let inner = decoded.strip_prefix('/')?;
    if inner.is_empty() || inner.split('/').any(str::is_empty) {
        return None;
    }
    (media_path(&decoded).as_deref() == Some(inner)).then_some(decoded)
}

/// Check the token of a `/t/<token>/...` raw path. `Err` says why it may not be served (403).
///
/// `client_ip` is the address the request came from (used when the token is IP-bound);
/// `require_bound`: the server refuses tokens that are not IP-bound.
pub fn verify(
    raw_path: &str,
    lookup: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
    now: f64,
    client_ip: Option<&str>,
    require_bound: bool,
) -> Result<Authorized, &'static str> {
    let (token, raw_rest) = split(raw_path).ok_or("no path token")?;
    if token.len() > MAX_TOKEN {
        return Err("malformed token");
    }
    let fields: Vec<&str> = token.split(SEPARATOR).collect();
    let [key_id, exp_text, encoded, bind, sig] = fields[..] else {
        return Err("malformed token");
    };
    if !valid_key_id(key_id)
        || exp_text.is_empty()
        || exp_text.len() > 12
        || !exp_text.bytes().all(|b| b.is_ascii_digit())
        || sig.is_empty()
    {
        return Err("malformed token");
    }
    let prefix = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|p| valid_prefix(p))
        .ok_or("malformed token")?;
    let ip = match bind {
        "a" if require_bound => return Err("this server accepts IP-bound tokens only"),
        "a" => None,
        "ip" => Some(client_ip.ok_or("the client address is unknown")?),
        _ => return Err("malformed token"),
    };
    let path = clean_rest(raw_rest).ok_or("path escapes the signed prefix")?;
    if !path.starts_with(prefix.as_str()) {
        return Err("path is outside the signed prefix");
    }
    let exp: i64 = exp_text.parse().map_err(|_| "malformed token")?;
    if (exp as f64) < now {
        return Err("signature expired");
    }
    let key = lookup(key_id).ok_or("unknown key id")?;
    let expected = signature(&key, &canonical(&prefix, exp, ip, true));
    if !constant_time_eq(expected.as_bytes(), sig.as_bytes()) {
        return Err("invalid signature");
    }
    Ok(Authorized { path, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_800_000_000.0;
    const PREFIX: &str = "/assets/media/intro/";

    fn keys(kid: &str) -> Option<Vec<u8>> {
        match kid {
            "k1" => Some(b"first-key".to_vec()),
            "k2" => Some(b"second-key".to_vec()),
            _ => None,
        }
    }

    fn check(token: &str, rest: &str, ip: Option<&str>, bound: bool) -> Result<String, &'static str> {
        let mut lookup = |kid: &str| keys(kid);
        verify(&format!("/t/{token}{rest}"), &mut lookup, NOW, ip, bound).map(|a| a.path)
    }

    fn token(kid: &str, prefix: &str, exp: i64, ip: Option<&str>) -> String {
        make(kid, &keys(kid).unwrap_or(b"not-a-known-key".to_vec()), prefix, exp, ip).unwrap()
    }

    #[test]
    fn one_token_covers_the_whole_prefix() {
        let t = token("k1", PREFIX, NOW as i64 + 60, None);
        for rest in [
            "/assets/media/intro/master.m3u8",
            "/assets/media/intro/0a1b2c3d/720p/index.m3u8",
            "/assets/media/intro/0a1b2c3d/720p/init_0.mp4",
            "/assets/media/intro/0a1b2c3d/720p/seg_00001.m4s",
            "/assets/media/intro/0a1b2c3d/poster.jpg",
            "/assets/media/intro/0a1b2c3d/storyboard.vtt",
            "/assets/media/intro/0a1b2c3d/storyboard%20x.jpg",
        ] {
            let decoded = String::from_utf8(percent_decode(rest.as_bytes()).unwrap()).unwrap();
            assert_eq!(check(&t, rest, None, false), Ok(decoded), "{rest}");
        }
    }

    #[test]
    fn the_tamper_matrix() {
        let exp = NOW as i64 + 60;
        let good = token("k1", PREFIX, exp, None);
        let sig = good.rsplit('~').next().unwrap();
        let mut flipped = sig.as_bytes().to_vec();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let tampered = good.replace(sig, std::str::from_utf8(&flipped).unwrap());
        let other_prefix = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("/assets/media/");
        let widened =
            good.replace(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(PREFIX), &other_prefix);
        let later = good.replacen(&format!("~{exp}~"), &format!("~{}~", exp + 3600), 1);
        let wrong_key = good.replacen("k1~", "k2~", 1);
        let unknown_key = good.replacen("k1~", "k9~", 1);
        let bound = token("k1", PREFIX, exp, Some("10.0.0.1"));
        let unbound_flag = bound.replacen("~ip~", "~a~", 1);
        let m = "/assets/media/intro/master.m3u8";
        // (case, token, path, client address, accepted, reason)
        type Case<'a> = (&'a str, String, &'a str, Option<&'a str>, bool, &'a str);
        let cases: Vec<Case> = vec![
            ("tampered signature", tampered, m, None, false, "invalid signature"),
            ("expiry moved", later, m, None, false, "invalid signature"),
            ("prefix widened", widened, "/assets/media/other/master.m3u8", None, false, "invalid signature"),
            ("other key id", wrong_key, m, None, false, "invalid signature"),
            ("unknown key id", unknown_key, m, None, false, "unknown key id"),
            ("expired", token("k1", PREFIX, NOW as i64 - 1, None), m, None, false, "signature expired"),
            (
                "other asset",
                good.clone(),
                "/assets/media/intro2/master.m3u8",
                None,
                false,
                "path is outside the signed prefix",
            ),
            (
                "parent folder",
                good.clone(),
                "/assets/media/other.mp4",
                None,
                false,
                "path is outside the signed prefix",
            ),
            (
                "dot-dot",
                good.clone(),
                "/assets/media/intro/../other/master.m3u8",
                None,
                false,
                "path escapes the signed prefix",
            ),
            (
                "encoded dot-dot",
                good.clone(),
                "/assets/media/intro/%2e%2e/other/master.m3u8",
                None,
                false,
                "path escapes the signed prefix",
            ),
            (
                "encoded slash",
                good.clone(),
                "/assets/media/intro/..%2fother%2fmaster.m3u8",
                None,
                false,
                "path escapes the signed prefix",
            ),
            (
                "encoded backslash",
                good.clone(),
                "/assets/media/intro/..%5cother",
                None,
                false,
                "path escapes the signed prefix",
            ),
            (
                "dot segment",
                good.clone(),
                "/assets/media/intro/./master.m3u8",
                None,
                false,
                "path escapes the signed prefix",
            ),
            (
                "hidden file",
                good.clone(),
                "/assets/media/intro/.staging-1/master.m3u8",
                None,
                false,
                "path escapes the signed prefix",
            ),
            (
                "empty segment",
                good.clone(),
                "/assets/media//intro/master.m3u8",
                None,
                false,
                "path escapes the signed prefix",
            ),
            ("no path", good.clone(), "", None, false, "path escapes the signed prefix"),
            ("wrong IP", bound.clone(), m, Some("10.0.0.2"), false, "invalid signature"),
            ("bound flag dropped", unbound_flag, m, Some("10.0.0.1"), false, "invalid signature"),
            (
                "unbound on a binding server",
                good.clone(),
                m,
                Some("10.0.0.1"),
                true,
                "this server accepts IP-bound tokens only",
            ),
            ("malformed", "k1~1~x".to_string(), m, None, false, "malformed token"),
            ("bad exp", good.replacen(&format!("~{exp}~"), "~12ab~", 1), m, None, false, "malformed token"),
            (
                "bad prefix",
                good.replace(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(PREFIX), "Lw"),
                m,
                None,
                false,
                "malformed token",
            ),
        ];
        for (name, t, rest, ip, require, why) in cases {
            assert_eq!(check(&t, rest, ip, require), Err(why), "{name}");
        }
        assert!(check(&bound, m, Some("10.0.0.1"), true).is_ok(), "the right IP");
    }

    #[test]
    fn rotation_keeps_old_tokens_while_their_key_exists() {
        let old = token("k1", PREFIX, NOW as i64 + 60, None);
        let new = token("k2", PREFIX, NOW as i64 + 60, None);
        assert!(check(&old, "/assets/media/intro/master.m3u8", None, false).is_ok());
        assert!(check(&new, "/assets/media/intro/master.m3u8", None, false).is_ok());
    }

    #[test]
    fn prefixes() {
        for good in ["/a/", "/assets/ns/name/"] {
            assert!(valid_prefix(good), "{good}");
        }
        for bad in ["/", "", "a/", "/a", "/a/../b/", "/a/./", "/.hidden/", "/a//b/", "/a\\b/"] {
            assert!(!valid_prefix(bad), "{bad}");
        }
        assert!(make("k1", b"k", "/a", 1, None).is_err());
        assert!(make("bad kid", b"k", "/a/", 1, None).is_err());
    }

    #[test]
    fn logs_never_keep_the_signature() {
        let t = token("k1", PREFIX, 1_900_000_000, None);
        let logged = redact(&format!("/t/{t}/assets/media/intro/master.m3u8"));
        assert_eq!(logged, "/t/k1~1900000000~L2Fzc2V0cy9tZWRpYS9pbnRyby8~a~-/assets/media/intro/master.m3u8");
        assert_eq!(redact("/t/garbage/x"), "/t/-/x");
        assert_eq!(redact("/movie.mp4"), "/movie.mp4");
    }

    #[test]
    fn split_paths() {
        assert_eq!(split("/t/abc/x/y"), Some(("abc", "/x/y")));
        assert_eq!(split("/t/abc"), Some(("abc", "")));
        assert_eq!(split("/x/t/abc"), None);
    }
}
