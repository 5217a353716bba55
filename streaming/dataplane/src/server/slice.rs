//! Media from a remote origin (S3, HTTP) through the slice cache: stat, plan, then the body as
//! the cache yields it (memory or cached slices on disk, by sendfile).

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::connection::{Conn, Next};
use super::record::Record;
use super::send::Cut;
use super::static_file::{cork_head, pread_full};
use super::{Refused, INLINE_BODY, SENDFILE_CHUNK};
use crate::cache::{Chunk, Object, SliceCache, Speculation};
use crate::http::{error_body, Request};
use crate::plan::{Plan, Representation, Segment};

impl Conn {
    /// A media GET/HEAD against a remote origin: stat (cached; for a cold object, taken from the
    /// GET of the slices this request starts with), plan, then the body through the slice cache.
    /// The head waits for the body's first bytes, so an origin that fails before any byte gets a
    /// JSON 502/504 (404 when the object is gone); after that, a failure (or an object that
    /// changed) cuts the connection: a client never gets a spliced body.
    pub(super) async fn remote_plan(
        &self,
        request: &Request,
        cache: &Arc<SliceCache>,
    ) -> Result<(Plan, Arc<Object>), Refused> {
        let (relative, signed) = self.authorize(request)?;
        let (meta, own) = match cache.stat(&relative, speculation(request, self.state.cfg.max_ranges)).await {
            Ok(stat) => stat,
            Err(e) => {
                let (status, message) = e.status();
                return Err((status, message, Vec::new()));
            }
        };
        let etag =
            meta.etag.as_deref().and_then(crate::conditional::parse_single_etag).unwrap_or_else(|| {
                crate::conditional::EntityTag::strong(format!("{:x}-{:x}", meta.size, meta.last_modified))
            });
        let rep = Representation::new(
            meta.size,
            meta.last_modified,
            etag,
            self.state.cfg.content_type(&relative).to_string(),
        );
        let plan = self.plan_for(request, &rep, &relative, signed)?;
        Ok((plan, Arc::new(Object::new(&relative, meta).owning(own))))
    }

    pub(super) async fn send_remote(
        &mut self,
        request: &Request,
        record: &mut Record,
        plan: Plan,
        object: Arc<Object>,
        headers: Vec<(&'static str, String)>,
        keep_alive: bool,
    ) -> Result<Next, Cut> {
        let cache = self.state.cache.clone().expect("a remote origin");
        let Some(mut out) = self.head_or_done(request, record, &plan, &headers, keep_alive).await? else {
            return Ok(if keep_alive { Next::KeepAlive } else { Next::Close });
        };
        let mut head_sent = false;
        let mut missed = false;
        for segment in &plan.body {
            let range = match segment {
                Segment::Bytes(b) => {
                    out.extend_from_slice(b);
                    continue;
                }
                Segment::File(r) => *r,
            };
            let mut reader = cache.reader(object.clone(), range.start, range.end);
            while let Some(chunk) = reader.next(SENDFILE_CHUNK).await {
                match chunk {
                    Err(e) if !head_sent => {
                        let (status, message) = e.status();
                        let mut common = vec![("X-Request-Id", record.request_id.clone())];
                        self.state.cors_headers(request.header("origin"), &mut common);
                        common.push(("Content-Type", "application/json".into()));
                        let body = error_body(status, message);
                        return self.send_simple(request, record, status, common, Some(body), false).await;
                    }
                    Err(_) => return Err(Cut::Closed),
                    Ok(Chunk::Memory(bytes)) => {
                        out.extend_from_slice(&bytes);
                        record.sent += bytes.len() as u64;
                        self.write_all(&out, false).await.map_err(|c| self.cut(record, c))?;
                        record.count_sent();
                        out.clear();
                        head_sent = true;
                    }
                    Ok(Chunk::Disk { file, offset, length }) => {
                        if out.len() as u64 + length <= INLINE_BODY {
                            let start = out.len();
                            out.resize(start + length as usize, 0);
                            if pread_full(file.fd.as_raw_fd(), &mut out[start..], offset).is_err() {
                                return Err(Cut::Closed);
                            }
                            record.sent += length;
                            continue;
                        }
                        if !out.is_empty() {
                            self.write_all(&out, cork_head(length)).await.map_err(|c| self.cut(record, c))?;
                            out.clear();
                        }
                        head_sent = true;
                        let mut at = offset;
                        while at < offset + length {
                            let sent = self
                                .sendfile_fd(file.fd.as_raw_fd(), at, offset + length - at)
                                .await
                                .map_err(|c| self.cut(record, c))?;
                            at += sent;
                            record.sent += sent;
                            record.count_sent();
                        }
                    }
                }
            }
            missed |= reader.missed;
        }
        if !out.is_empty() {
            self.write_all(&out, false).await.map_err(|c| self.cut(record, c))?;
        }
        let counter = if missed { &cache.stats.miss_requests } else { &cache.stats.hit_requests };
        counter.fetch_add(1, Relaxed);
        record.done = true;
        Ok(if keep_alive { Next::KeepAlive } else { Next::Close })
    }
}

/// What a media request reads first, when that is known before the object's size: a GET's first
/// range (or byte 0). `None` (the stat is then a HEAD) for HEAD requests, suffix ranges, and
/// revalidations (If-None-Match, If-Modified-Since), which usually end as a 304 without bytes.
pub(super) fn speculation(request: &Request, max_ranges: usize) -> Option<Speculation> {
    if request.method != "GET"
        || request.header("if-none-match").is_some()
        || request.header("if-modified-since").is_some()
    {
        return None;
    }
    let (first, last) = crate::ranges::first_bytes(request.header("range"), max_ranges)?;
    Some(Speculation { first, last })
}
