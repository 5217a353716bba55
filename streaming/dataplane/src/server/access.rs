//! Access control: which file a media request may read (signed URLs, path tokens, the client
//! IP they may be bound to), and CORS (response headers, preflights).

use std::net::IpAddr;

use super::connection::{route_of, Conn};
use super::{Refused, State};
use crate::http::{self, Request};
use crate::paths::media_path;
use crate::signing;
use crate::tokens;

const MEDIA_METHODS: &str = "GET, HEAD, PUT, DELETE, OPTIONS";
/// The resumable uploads' endpoint (tus 1.0.0, answered by the Python side).
const TUS_METHODS: &str = "POST, HEAD, PATCH, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "Range, If-Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, Authorization, Content-Type, X-Request-Id, traceparent, Tus-Resumable, Upload-Length, Upload-Defer-Length, Upload-Offset, Upload-Metadata, Upload-Checksum, Upload-Concat, X-HTTP-Method-Override";
const EXPOSE_HEADERS: &str = "Content-Range, Accept-Ranges, Content-Length, ETag, Last-Modified, X-Request-Id, Location, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, Upload-Offset, Upload-Length, Upload-Metadata, Upload-Expires";

impl State {
    pub(super) fn cors_enabled(&self) -> bool {
        self.cors_any || !self.cors_origins.is_empty()
    }

    pub(super) fn cors_allows(&self, origin: &str) -> bool {
        self.cors_any || self.cors_origins.iter().any(|o| o == origin)
    }

    /// CORS headers of an actual (non-preflight) response.
    pub(super) fn cors_headers(&self, origin: Option<&str>, out: &mut Vec<(&'static str, String)>) {
        let Some(origin) = origin.filter(|o| !o.is_empty()) else { return };
        if !self.cors_enabled() {
            return;
        }
        if !self.cors_allows(origin) {
            out.push(("Vary", "Origin".into()));
            return;
        }
        out.push(("Access-Control-Allow-Origin", if self.cors_any { "*".into() } else { origin.into() }));
        out.push(("Access-Control-Expose-Headers", EXPOSE_HEADERS.into()));
        out.push(("Vary", "Origin".into()));
    }
}

pub(super) fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl Conn {
    pub(super) fn options(
        &self,
        request: &Request,
        mut common: Vec<(&'static str, String)>,
    ) -> (u16, Vec<(&'static str, String)>) {
        let state = &self.state;
        let methods = if route_of(request.path.as_deref().unwrap_or("")) == "tus" {
            TUS_METHODS
        } else {
            MEDIA_METHODS
        };
        if let (Some(origin), Some(wanted)) =
            (request.header("origin"), request.header("access-control-request-method"))
        {
            if !origin.is_empty() && !wanted.is_empty() && state.cors_enabled() {
                let method_ok = methods.split(", ").any(|m| m.eq_ignore_ascii_case(wanted));
                if !state.cors_allows(origin) || !method_ok {
                    return (403, vec![("Content-Type", "application/json".into())]);
                }
                common.push((
                    "Access-Control-Allow-Origin",
                    if state.cors_any { "*".into() } else { origin.into() },
                ));
                common.push(("Access-Control-Allow-Methods", methods.into()));
                common.push(("Access-Control-Allow-Headers", ALLOW_HEADERS.into()));
                common.push(("Access-Control-Max-Age", "600".into()));
                common.push(("Vary", "Origin".into()));
                return (204, common);
            }
        }
        state.cors_headers(request.header("origin"), &mut common);
        common.push(("Allow", methods.into()));
        (204, common)
    }

    /// The root-relative file a media request may read, and whether it was signed; else the
    /// refusal (404 for a path that cannot be served, 403 for a missing or bad signature).
    /// A `/t/<token>/...` path is always checked; the query form when VOD_SIGNED_URLS is on.
    pub(super) fn authorize(&self, request: &Request) -> Result<(String, bool), Refused> {
        let state = &self.state;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let mut lookup = |kid: &str| state.keys.get(kid);
        if tokens::split(&request.raw_path).is_some() {
            let ip = self.client_ip(request);
            return match tokens::verify(
                &request.raw_path,
                &mut lookup,
                now,
                ip.as_deref(),
                state.cfg.signed_url_bind_ip,
            ) {
                Ok(authorized) => {
                    Ok((media_path(&authorized.path).ok_or((404, "not found", Vec::new()))?, true))
                }
                Err(why) => Err((403, why, vec![("Cache-Control", "no-store".into())])),
            };
        }
        let path = request.path.as_deref().ok_or((404, "not found", Vec::new()))?;
        let relative = media_path(path).ok_or((404, "not found", Vec::new()))?;
        if state.cfg.signed_urls {
            let ip = if state.cfg.signed_url_bind_ip { self.client_ip(request) } else { None };
            let query = request.raw_query.as_str();
            let param = |name: &str| http::query_param(query, name);
            if let Some(refusal) = signing::verify(path, &param, &mut lookup, now, ip.as_deref()) {
                return Err((403, refusal, vec![("Cache-Control", "no-store".into())]));
            }
        }
        Ok((relative, state.cfg.signed_urls))
    }

    /// The client's IP: the first entry of the configured header, else the peer address.
    pub(super) fn client_ip(&self, request: &Request) -> Option<String> {
        if let Some(name) = &self.state.cfg.client_ip_header {
            if let Some(value) = request.header(name).filter(|v| !v.is_empty()) {
                return Some(value.split(',').next().unwrap_or("").trim().to_string());
            }
        }
        self.peer.map(|p| unmap(p).to_string())
    }
}
