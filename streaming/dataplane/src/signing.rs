//! Signed playback URLs: HMAC-SHA256 over a canonical string, with a key id for rotation.
//!
//! Query parameters: `exp` (expiry, Unix seconds), `kid` (key id), `sig` (base64url HMAC, no
//! padding) and, for a whole folder such as an HLS rendition, `pfx` (the signed path prefix,
//! ending in `/`). The signed string is
//! `vod1 LF <"path" or "prefix"> LF <path or prefix> LF <exp> LF <client ip or empty>`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const VERSION: &str = "vod1";

pub fn canonical(target: &str, exp: i64, ip: Option<&str>, prefix: bool) -> Vec<u8> {
    let scope = if prefix { "prefix" } else { "path" };
    format!("{VERSION}\n{scope}\n{target}\n{exp}\n{}", ip.unwrap_or("")).into_bytes()
}

fn mac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// The base64url (unpadded) HMAC-SHA256 of `message`.
pub fn signature(key: &[u8], message: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac(key, message))
}

/// Equal in time independent of where the inputs differ (lengths are not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `None` when the request may proceed, else why it may not (answered with 403).
pub fn verify(
    path: &str,
    param: &dyn Fn(&str) -> Option<String>,
    lookup: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
    now: f64,
    ip: Option<&str>,
) -> Option<&'static str> {
    let (Some(exp_text), Some(key_id), Some(sig)) = (param("exp"), param("kid"), param("sig")) else {
        return Some("signature required: exp, kid and sig query parameters");
    };
    if exp_text.is_empty() || key_id.is_empty() || sig.is_empty() {
        return Some("signature required: exp, kid and sig query parameters");
    }
    if exp_text.len() > 12 || !exp_text.bytes().all(|b| b.is_ascii_digit()) {
        return Some("invalid exp");
    }
    let exp: i64 = exp_text.parse().ok()?;
    if (exp as f64) < now {
        return Some("signature expired");
    }
    let Some(key) = lookup(&key_id) else {
        return Some("unknown key id");
    };
    let prefix = param("pfx");
    if let Some(prefix) = &prefix {
        if !(prefix.ends_with('/') && path.starts_with(prefix.as_str())) {
            return Some("path is outside the signed prefix");
        }
    }
    let target = prefix.as_deref().unwrap_or(path);
    let expected = signature(&key, &canonical(target, exp, ip, prefix.is_some()));
    if !constant_time_eq(expected.as_bytes(), sig.as_bytes()) {
        return Some("invalid signature");
    }
    None
}

/// A key id: a file name of 1-64 characters from `[A-Za-z0-9._-]`.
pub fn valid_key_id(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Every key in a folder (a mounted Secret): file name = key id, contents = key (trailing
/// newlines dropped, at most 4096 bytes). Dotfiles (`..data`, `..2024_...`) are skipped.
pub fn read_keys(folder: &Path) -> HashMap<String, Vec<u8>> {
    let mut keys = HashMap::new();
    let Ok(entries) = std::fs::read_dir(folder) else { return keys };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else { continue };
        if name.starts_with('.') || !valid_key_id(&name) {
            continue;
        }
        let Ok(file) = std::fs::File::open(folder.join(&name)) else { continue };
        let mut key = Vec::new();
        use std::io::Read;
        if file.take(4096).read_to_end(&mut key).is_err() {
            continue;
        }
        while matches!(key.last(), Some(b'\r' | b'\n')) {
            key.pop();
        }
        if !key.is_empty() {
            keys.insert(name, key);
        }
    }
    keys
}

/// When the folder was last read, and the keys it held then.
type Scan = (Option<Instant>, HashMap<String, Vec<u8>>);

/// The key ring: re-read at most once a second, so a rotated Secret takes effect without a
/// restart.
pub struct KeyRing {
    folder: PathBuf,
    state: Mutex<Scan>,
}

impl KeyRing {
    pub fn new(folder: PathBuf) -> KeyRing {
        KeyRing { folder, state: Mutex::new((None, HashMap::new())) }
    }

    pub fn get(&self, key_id: &str) -> Option<Vec<u8>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let stale = state.0.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if stale {
            state.1 = read_keys(&self.folder);
            state.0 = Some(Instant::now());
        }
        state.1.get(key_id).cloned()
    }
}
