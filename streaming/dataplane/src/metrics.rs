//! The data plane's Prometheus series: the same names and labels as the Python side's
//! (`vod_stream.metrics`), and the merge that makes one `/metrics` of both.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::ranges::RangeKind;

pub const ROUTES: [&str; 8] = ["media", "ping", "healthz", "readyz", "metrics", "admin", "tus", "player"];
pub const METHODS: [&str; 8] = ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "POST", "PATCH", "other"];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const BUCKETS: [f64; 16] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The route whose series alerts and the autoscaler read (index 0 of ROUTES).
const MEDIA: usize = 0;

pub fn route_index(route: &str) -> usize {
    ROUTES.iter().position(|r| *r == route).unwrap_or(0)
}

/// The `method` label: any other method (clients choose it) is `other`.
pub fn method_index(method: &str) -> usize {
    METHODS.iter().position(|m| *m == method).unwrap_or(METHODS.len() - 1)
}

pub struct Metrics {
    requests: Vec<AtomicU64>, // route x method x class
    bytes: Vec<AtomicU64>,    // route
    ranges: Vec<AtomicU64>,   // kind
    buckets: Vec<AtomicU64>,  // route x bucket (non-cumulative), +Inf last
    duration_sum_ns: Vec<AtomicU64>,
    duration_count: Vec<AtomicU64>,
    pub in_flight: AtomicI64,
    pub send_timeouts: AtomicU64,
    pub fd_exhausted: AtomicU64,
}

fn zeros(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: zeros(ROUTES.len() * METHODS.len() * CLASSES.len()),
            bytes: zeros(ROUTES.len()),
            ranges: zeros(RangeKind::ALL.len()),
            buckets: zeros(ROUTES.len() * (BUCKETS.len() + 1)),
            duration_sum_ns: zeros(ROUTES.len()),
            duration_count: zeros(ROUTES.len()),
            in_flight: AtomicI64::new(0),
            send_timeouts: AtomicU64::new(0),
            fd_exhausted: AtomicU64::new(0),
        }
    }
}

/// A series written from the start, at zero, rather than at its first increment: rate() and
/// increase() see a first increment only if an earlier sample exists. These are what alerts,
/// panels and the autoscaler rate: the media route's GET and HEAD by class (2xx to 5xx), its body
/// bytes and its durations, and every range kind (the other routes' series appear when used).
fn preset(route: usize, method: usize, class: usize) -> bool {
    route == MEDIA && method < 2 && class >= 1
}

fn python_float(v: f64) -> String {
    if v.is_infinite() {
        return "+Inf".into();
    }
    if v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

impl Metrics {
    /// One answered request (its body bytes are counted as they are sent: `body_bytes`).
    pub fn request(&self, route: usize, method: usize, status: u16, seconds: f64) {
        let class = (usize::from(status / 100)).clamp(1, 5) - 1;
        self.requests[(route * METHODS.len() + method) * CLASSES.len() + class].fetch_add(1, Relaxed);
        let bucket = BUCKETS.iter().position(|&b| seconds <= b).unwrap_or(BUCKETS.len());
        self.buckets[route * (BUCKETS.len() + 1) + bucket].fetch_add(1, Relaxed);
        self.duration_sum_ns[route].fetch_add((seconds * 1e9) as u64, Relaxed);
        self.duration_count[route].fetch_add(1, Relaxed);
    }

    /// Body bytes handed to the kernel, counted while a response is sent (not when it ends), so
    /// the egress rate follows long downloads as they happen.
    pub fn body_bytes(&self, route: usize, n: u64) {
        if n > 0 {
            self.bytes[route].fetch_add(n, Relaxed);
        }
    }

    pub fn range(&self, kind: RangeKind) {
        let index = RangeKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.ranges[index].fetch_add(1, Relaxed);
    }

    /// The data plane's samples, by family: (family, type, [(sample key, value)]).
    pub fn families(&self) -> Vec<Family> {
        let mut out = Vec::new();
        let mut requests = Family::new(
            "vod_http_requests_total",
            "counter",
            "HTTP requests answered, by route, method and status class.",
        );
        for (r, route) in ROUTES.iter().enumerate() {
            for (m, method) in METHODS.iter().enumerate() {
                for (c, class) in CLASSES.iter().enumerate() {
                    let n = self.requests[(r * METHODS.len() + m) * CLASSES.len() + c].load(Relaxed);
                    if n > 0 || preset(r, m, c) {
                        requests.add(format!("vod_http_requests_total{{method=\"{method}\",route=\"{route}\",status_class=\"{class}\"}}"), n as f64);
                    }
                }
            }
        }
        out.push(requests);
        let mut bytes = Family::new(
            "vod_http_response_body_bytes_total",
            "counter",
            "Response body bytes sent, by route.",
        );
        for (r, route) in ROUTES.iter().enumerate() {
            let n = self.bytes[r].load(Relaxed);
            if n > 0 || r == MEDIA {
                bytes.add(format!("vod_http_response_body_bytes_total{{route=\"{route}\"}}"), n as f64);
            }
        }
        out.push(bytes);
        let mut ranges = Family::new("vod_range_requests_total", "counter", "GET requests carrying a Range header, by how they were answered (single, suffix, multi, unsatisfiable, ignored).");
        for (i, kind) in RangeKind::ALL.iter().enumerate() {
            let n = self.ranges[i].load(Relaxed);
            ranges.add(format!("vod_range_requests_total{{kind=\"{}\"}}", kind.label()), n as f64);
        }
        out.push(ranges);
        let mut duration = Family::new(
            "vod_http_request_duration_seconds",
            "histogram",
            "Time from request headers to the last body byte handed to the kernel.",
        );
        for (r, route) in ROUTES.iter().enumerate() {
            let count = self.duration_count[r].load(Relaxed);
            if count == 0 && r != MEDIA {
                continue;
            }
            let sum = self.duration_sum_ns[r].load(Relaxed) as f64 / 1e9;
            duration.add(format!("vod_http_request_duration_seconds_sum{{route=\"{route}\"}}"), sum);
            let mut cumulative = 0u64;
            for (b, bound) in BUCKETS.iter().map(|b| python_float(*b)).chain(["+Inf".to_string()]).enumerate()
            {
                cumulative += self.buckets[r * (BUCKETS.len() + 1) + b].load(Relaxed);
                duration.add(
                    format!("vod_http_request_duration_seconds_bucket{{le=\"{bound}\",route=\"{route}\"}}"),
                    cumulative as f64,
                );
            }
            duration
                .add(format!("vod_http_request_duration_seconds_count{{route=\"{route}\"}}"), count as f64);
        }
        out.push(duration);
        let mut in_flight = Family::new(
            "vod_http_requests_in_flight",
            "gauge",
            "Requests being handled right now (the scrape reading it is not counted).",
        );
        in_flight.add("vod_http_requests_in_flight".into(), self.in_flight.load(Relaxed) as f64);
        out.push(in_flight);
        let mut timeouts = Family::new(
            "vod_send_timeouts_total",
            "counter",
            "Responses cut because the client read nothing for VOD_SEND_TIMEOUT_SECONDS.",
        );
        timeouts.add("vod_send_timeouts_total".into(), self.send_timeouts.load(Relaxed) as f64);
        out.push(timeouts);
        let mut exhausted = Family::new(
            "vod_fd_exhausted_total",
            "counter",
            "Times no file descriptor was left (EMFILE, ENFILE): a 503 with Retry-After, or an accept postponed.",
        );
        exhausted.add("vod_fd_exhausted_total".into(), self.fd_exhausted.load(Relaxed) as f64);
        out.push(exhausted);
        let mut dropped = Family::new(
            "vod_access_log_dropped_total",
            "counter",
            "Access-log records dropped because the log writer could not keep up (stdout blocked).",
        );
        dropped.add("vod_access_log_dropped_total".into(), crate::logs::dropped() as f64);
        out.push(dropped);
        out
    }
}

pub struct Family {
    pub name: String,
    pub kind: String,
    pub help: String,
    pub samples: Vec<(String, f64)>,
}

impl Family {
    fn new(name: &str, kind: &str, help: &str) -> Family {
        Family { name: name.into(), kind: kind.into(), help: help.into(), samples: Vec::new() }
    }

    fn add(&mut self, key: String, value: f64) {
        self.samples.push((key, value));
    }
}

/// Parse a text exposition (what prometheus_client writes) into families.
pub fn parse(text: &str) -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    let mut help: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help.insert(name.to_string(), text.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let h = help.get(name).cloned().unwrap_or_default();
            families.push(Family::new(name, kind, &h));
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let Some((key, value)) = line.rsplit_once(' ') else { continue };
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or(f64::NAN),
            };
            if families.is_empty() {
                families.push(Family::new("", "untyped", ""));
            }
            families.last_mut().expect("one family").add(key.to_string(), value);
        }
    }
    families
}

/// One exposition of both sides: samples with the same name and labels are summed (counters,
/// histogram buckets, the in-flight gauge), the others listed once.
pub fn merge(python: Vec<Family>, own: Vec<Family>) -> String {
    let mut families = python;
    for mine in own {
        match families.iter_mut().find(|f| f.name == mine.name) {
            Some(theirs) => {
                for (key, value) in mine.samples {
                    match theirs.samples.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, v)) => *v += value,
                        None => theirs.samples.push((key, value)),
                    }
                }
            }
            None => families.push(mine),
        }
    }
    let mut out = String::new();
    for family in families {
        if !family.name.is_empty() {
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        }
        for (key, value) in family.samples {
            let _ = writeln!(out, "{key} {}", python_float(value));
        }
    }
    out
}

/// The slice cache's and the remote origin's series (`vod_cache_*`, `vod_origin_*`).
pub fn cache_families(cache: &crate::cache::SliceCache) -> Vec<Family> {
    let s = &cache.stats;
    let mut out = Vec::new();
    let mut counter = |name: &str, help: &str, samples: Vec<(String, u64)>| {
        let mut family = Family::new(name, "counter", help);
        for (key, value) in samples {
            family.add(key, value as f64);
        }
        out.push(family);
    };
    let by_result = |name: &str, hit: &AtomicU64, miss: &AtomicU64| {
        vec![
            (format!("{name}{{result=\"hit\"}}"), hit.load(Relaxed)),
            (format!("{name}{{result=\"miss\"}}"), miss.load(Relaxed)),
        ]
    };
    counter(
        "vod_cache_requests_total",
        "Media requests of a remote origin: hit (every byte from the slice cache) or miss.",
        by_result("vod_cache_requests_total", &s.hit_requests, &s.miss_requests),
    );
    counter(
        "vod_cache_bytes_total",
        "Body bytes served from cached slices (hit) or from origin fetches (miss).",
        by_result("vod_cache_bytes_total", &s.hit_bytes, &s.miss_bytes),
    );
    counter(
        "vod_origin_requests_total",
        "Requests made to the origin for bytes (one per run of missing slices).",
        vec![("vod_origin_requests_total".into(), s.origin_requests.load(Relaxed))],
    );
    counter(
        "vod_origin_bytes_total",
        "Bytes received from the origin.",
        vec![("vod_origin_bytes_total".into(), s.origin_bytes.load(Relaxed))],
    );
    counter(
        "vod_origin_errors_total",
        "Origin failures, by cause (not_found, unreachable, timeout, changed, truncated).",
        crate::origin::OriginError::CAUSES
            .iter()
            .zip(&s.origin_errors)
            .map(|(cause, n)| (format!("vod_origin_errors_total{{cause=\"{cause}\"}}"), n.load(Relaxed)))
            .collect(),
    );
    counter(
        "vod_cache_collapsed_waits_total",
        "Reads of a slice that another request was already fetching (no origin request made).",
        vec![("vod_cache_collapsed_waits_total".into(), s.collapsed.load(Relaxed))],
    );
    if let Some(store) = &cache.store {
        let st = &store.stats;
        counter(
            "vod_cache_evictions_total",
            "Slices evicted to keep the cache under VOD_CACHE_MAX_BYTES.",
            vec![("vod_cache_evictions_total".into(), st.evictions.load(Relaxed))],
        );
        counter(
            "vod_cache_write_errors_total",
            "Slices that could not be written (disk full or failing): served, not cached.",
            vec![("vod_cache_write_errors_total".into(), st.write_errors.load(Relaxed))],
        );
        counter(
            "vod_cache_corrupt_slices_total",
            "Cached slices found truncated or corrupted on read (dropped and fetched again).",
            vec![("vod_cache_corrupt_slices_total".into(), st.corrupt.load(Relaxed))],
        );
        let mut used =
            Family::new("vod_cache_bytes_used", "gauge", "Bytes of the slice cache on disk (and reserved).");
        used.add("vod_cache_bytes_used".into(), st.used.load(Relaxed) as f64);
        out.push(used);
    }
    out
}
