//! The slice cache in front of a remote origin.
//!
//! An object is cut into slices of `VOD_CACHE_SLICE_BYTES`. A range is served slice by slice:
//! a slice on disk is read from its file; a slice being fetched is read from its in-memory
//! fill as the bytes arrive; a missing slice starts a fill for it and the missing slices
//! after it (up to the range's end, at most `MAX_RUN` slices), one ranged origin request for
//! the whole run. The fetch runs in its own task: it finishes (and caches) the run even when
//! the client that started it leaves, and every request that needs one of its slices reads
//! from the same fill, so concurrent misses make one origin request (the data plane is one
//! process with worker threads: one in-flight table covers the whole pod). Without
//! `VOD_CACHE_DIR` the same fills collapse concurrent reads; nothing is kept.
//!
//! A GET whose object has no fresh stat and whose first slice is neither on disk nor in flight
//! does not HEAD the object first: `stat` makes one ranged GET for the slice run that covers the
//! request's first byte, takes size, ETag and Last-Modified from its response and feeds that
//! run's fills from the same body (one round trip, as nginx's slice module makes). Concurrent
//! stats of one object share one origin request (`stating`).

pub mod plan;
pub mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

use crate::origin::{ByteStream, Meta, OriginError, Remote};
use plan::{coalesce_missing, slice_bounds, slices_of, speculative_run};
use store::{SliceFile, Store};

/// Most slices one origin request fetches: bounds the memory a run holds for a slow client.
pub const MAX_RUN: u64 = 8;

/// The object a response is planned for: its path and what the origin said about it.
#[derive(Clone, Debug)]
pub struct Object {
    pub relative: String,
    pub meta: Arc<Meta>,
    /// The slice cache's key for this version of the object (`Meta::key`).
    pub key: String,
    /// The slice whose fill this response's own stat started (reading it is not a collapsed
    /// wait).
    pub own: Option<u64>,
}

impl Object {
    pub fn new(relative: &str, meta: Arc<Meta>) -> Object {
        Object { relative: relative.to_string(), key: meta.key.clone(), meta, own: None }
    }

    pub fn owning(mut self, index: Option<u64>) -> Object {
        self.own = index;
        self
    }
}

enum FillState {
    Filling,
    Done,
    Failed(OriginError),
}

/// One slice being fetched: its bytes so far, shared by every reader.
struct Fill {
    data: Mutex<(Vec<u8>, FillState)>,
    progress: watch::Sender<()>,
}

impl Fill {
    fn new(capacity: usize) -> Fill {
        Fill {
            data: Mutex::new((Vec::with_capacity(capacity), FillState::Filling)),
            progress: watch::channel(()).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<u8>, FillState)> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append(&self, bytes: &[u8]) {
        self.lock().0.extend_from_slice(bytes);
        self.progress.send_replace(());
    }

    fn finish(&self, state: FillState) {
        self.lock().1 = state;
        self.progress.send_replace(());
    }

    /// Bytes from `offset` on (at most `max`), waiting until some are there.
    async fn read(&self, offset: usize, max: usize) -> Result<Bytes, OriginError> {
        let mut progress = self.progress.subscribe();
        loop {
            {
                let data = self.lock();
                if data.0.len() > offset {
                    let end = data.0.len().min(offset + max);
                    return Ok(Bytes::copy_from_slice(&data.0[offset..end]));
                }
                match &data.1 {
                    FillState::Failed(e) => return Err(e.clone()),
                    FillState::Done => return Err(OriginError::Truncated),
                    FillState::Filling => {}
                }
            }
            if progress.changed().await.is_err() {
                return Err(OriginError::Truncated);
            }
        }
    }
}

/// Counters the metrics show (the store's are in `store.stats`).
#[derive(Default)]
pub struct CacheStats {
    pub hit_requests: AtomicU64,
    pub miss_requests: AtomicU64,
    pub hit_bytes: AtomicU64,
    pub miss_bytes: AtomicU64,
    pub origin_requests: AtomicU64,
    pub origin_bytes: AtomicU64,
    pub origin_errors: [AtomicU64; 5],
    pub collapsed: AtomicU64,
}

impl CacheStats {
    pub fn origin_error(&self, error: &OriginError) {
        let i = OriginError::CAUSES.iter().position(|c| *c == error.cause()).unwrap_or(0);
        self.origin_errors[i].fetch_add(1, Relaxed);
    }
}

/// The outcome of one object's stat, shared by every request waiting for it.
type StatResult = Option<Result<Arc<Meta>, OriginError>>;

/// What a request will read first, known before the object's size: bytes `first..=last`
/// (`last`: `None` for "to the end").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Speculation {
    pub first: u64,
    pub last: Option<u64>,
}

pub struct SliceCache {
    pub remote: Remote,
    pub store: Option<Store>,
    slice: u64,
    inflight: Mutex<HashMap<(String, u64), Arc<Fill>>>,
    /// The stat in flight per object path: one origin request however many requests wait.
    stating: Mutex<HashMap<String, watch::Receiver<StatResult>>>,
    pub stats: CacheStats,
}

/// A piece of a response body.
pub enum Chunk {
    /// Bytes from a fill (memory).
    Memory(Bytes),
    /// `length` bytes at `offset` of a cached slice file.
    Disk { file: Arc<SliceFile>, offset: u64, length: u64 },
}

impl SliceCache {
    pub fn new(remote: Remote, store: Option<Store>, slice: u64) -> SliceCache {
        SliceCache {
            remote,
            store,
            slice: slice.max(4096),
            inflight: Mutex::new(HashMap::new()),
            stating: Mutex::new(HashMap::new()),
            stats: CacheStats::default(),
        }
    }

    fn inflight(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Arc<Fill>>> {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A reader of bytes `start..=end` of `object`.
    pub fn reader(self: &Arc<Self>, object: Arc<Object>, start: u64, end: u64) -> RangeReader {
        RangeReader { cache: self.clone(), object, pos: start, end: end + 1, fill: None, missed: false }
    }

    /// The stat of `relative` for a request whose body starts at byte `first` and ends at `last`
    /// (inclusive) when those are known without the object's size (`Speculation`): from the stat
    /// cache while fresh; else from the one origin request in flight for it; else a new one:
    /// with `first` given and its slice neither cached nor in flight, a GET of the slice run
    /// covering `first` (its fills fed by that response: the returned slice index is then this
    /// request's own fill), otherwise (a stale stat whose slice is here, a HEAD request, a
    /// suffix range) a HEAD.
    pub async fn stat(
        self: &Arc<Self>,
        relative: &str,
        want: Option<Speculation>,
    ) -> Result<(Arc<Meta>, Option<u64>), OriginError> {
        let known = self.remote.known(relative);
        if let Some((meta, true)) = known {
            return Ok((meta, None));
        }
        // a stale stat is revalidated by a HEAD when the first slice is here (no bytes needed);
        // when it is not, the GET that fetches it revalidates too
        let speculate = want.filter(|w| match &known {
            None => true,
            Some((meta, _)) => !self.has_slice(&meta.key, w.first / self.slice),
        });
        let mut own = None;
        let mut receiver = {
            let mut stating = self.stating.lock().unwrap_or_else(|e| e.into_inner());
            match stating.get(relative) {
                Some(receiver) => {
                    self.stats.collapsed.fetch_add(1, Relaxed);
                    receiver.clone()
                }
                None => {
                    let (sender, receiver) = watch::channel(None);
                    stating.insert(relative.to_string(), receiver.clone());
                    own = speculate.map(|w| w.first / self.slice);
                    tokio::spawn(self.clone().stat_task(relative.to_string(), speculate, sender));
                    receiver
                }
            }
        };
        let result = match receiver.wait_for(Option::is_some).await {
            Ok(value) => value.clone().unwrap_or(Err(OriginError::Truncated)),
            Err(_) => Err(OriginError::Truncated), // the task ended without an answer
        };
        result.map(|meta| (meta, own))
    }

    /// One object's stat, in its own task (it completes even when the request that started it
    /// leaves): the answer is published to every waiter, then the entry leaves `stating`.
    async fn stat_task(
        self: Arc<Self>,
        relative: String,
        speculate: Option<Speculation>,
        sender: watch::Sender<StatResult>,
    ) {
        let result = match speculate {
            Some(want) => match self.open_run(&relative, want).await {
                Ok(Some(meta)) => Ok(meta),
                Ok(None) => self.head(&relative).await, // 416: the stat says why, with validators
                Err(e) => Err(e),
            },
            None => self.head(&relative).await,
        };
        sender.send_replace(Some(result));
        self.stating.lock().unwrap_or_else(|e| e.into_inner()).remove(&relative);
    }

    /// Slice `index` of the object version `key` is on disk or being fetched.
    fn has_slice(&self, key: &str, index: u64) -> bool {
        self.store.as_ref().is_some_and(|s| s.contains(key, index))
            || self.inflight().contains_key(&(key.to_string(), index))
    }

    async fn head(&self, relative: &str) -> Result<Arc<Meta>, OriginError> {
        self.stats.origin_requests.fetch_add(1, Relaxed);
        let result = self.remote.stat(relative).await;
        if let Err(e) = &result {
            self.stats.origin_error(e);
        }
        result
    }

    /// The speculative GET: slices `first..=last` of `want` (at most `MAX_RUN`), the object's
    /// stat from its response, and the run's fills fed from its body. Slices already cached or
    /// in flight (a restart's warm disk, another request's run) are not fetched twice: the run
    /// stops before the first of them, and the response is dropped when that is the first.
    async fn open_run(
        self: &Arc<Self>,
        relative: &str,
        want: Speculation,
    ) -> Result<Option<Arc<Meta>>, OriginError> {
        let (first, last) = speculative_run(want, self.slice, MAX_RUN);
        self.stats.origin_requests.fetch_add(1, Relaxed);
        let opened = self.remote.open(relative, first * self.slice, (last + 1) * self.slice).await;
        let (meta, stream) = match opened {
            Ok(Some(opened)) => opened,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.stats.origin_error(&e);
                return Err(e);
            }
        };
        let object = Arc::new(Object::new(relative, meta.clone()));
        let last = last.min(meta.size.saturating_sub(1) / self.slice);
        let mut fills = Vec::new();
        {
            let mut inflight = self.inflight();
            for i in first..=last {
                let cached = self.store.as_ref().is_some_and(|s| s.contains(&object.key, i));
                if cached || inflight.contains_key(&(object.key.clone(), i)) {
                    break;
                }
                let (s, e) = slice_bounds(i, self.slice, meta.size);
                let fill = Arc::new(Fill::new((e - s) as usize));
                inflight.insert((object.key.clone(), i), fill.clone());
                fills.push(fill);
            }
        }
        if !fills.is_empty() {
            tokio::spawn(self.clone().fetch_run(object, first, fills, Some(stream)));
        }
        Ok(Some(meta))
    }

    /// The fill for slice `index`: an existing one (a collapsed wait unless `mine`: the run this
    /// request's own stat started), or a new run of fills for the missing slices from `index` up
    /// to `last`, fetched by one spawned task.
    ///
    /// `None` when `on_disk` and the slice reached the store since the caller looked there (its
    /// fill completes and leaves this table after the store has it): read it from the store.
    fn fill_for(
        self: &Arc<Self>,
        object: &Arc<Object>,
        index: u64,
        last: u64,
        mine: bool,
        on_disk: bool,
    ) -> Option<Arc<Fill>> {
        let mut inflight = self.inflight();
        if let Some(fill) = inflight.get(&(object.key.clone(), index)) {
            if !mine {
                self.stats.collapsed.fetch_add(1, Relaxed);
            }
            return Some(fill.clone());
        }
        if on_disk && self.store.as_ref().is_some_and(|s| s.contains(&object.key, index)) {
            return None;
        }
        let missing: Vec<u64> = (index..=last)
            .take_while(|&i| {
                i == index
                    || (!inflight.contains_key(&(object.key.clone(), i))
                        && !self.store.as_ref().is_some_and(|s| s.contains(&object.key, i)))
            })
            .collect();
        let (first, count) = coalesce_missing(&missing, MAX_RUN)[0];
        let mut fills = Vec::with_capacity(count as usize);
        for i in first..first + count {
            let (s, e) = slice_bounds(i, self.slice, object.meta.size);
            let fill = Arc::new(Fill::new((e - s) as usize));
            inflight.insert((object.key.clone(), i), fill.clone());
            fills.push(fill);
        }
        let mine = fills[0].clone();
        drop(inflight);
        tokio::spawn(self.clone().fetch_run(object.clone(), first, fills, None));
        Some(mine)
    }

    /// Fetch slices `first..first + fills.len()` in one ranged request (or from `opened`, the
    /// body of the speculative GET that starts at slice `first`), feeding the fills and writing
    /// each complete slice to the store. Bytes past the run are not read (the response is
    /// dropped).
    async fn fetch_run(
        self: Arc<Self>,
        object: Arc<Object>,
        first: u64,
        fills: Vec<Arc<Fill>>,
        opened: Option<ByteStream>,
    ) {
        let size = object.meta.size;
        let start = first * self.slice;
        let end = slice_bounds(first + fills.len() as u64 - 1, self.slice, size).1;
        let mut current = 0usize;
        let mut filled = 0u64; // bytes of the current slice
        let result: Result<(), OriginError> = async {
            let mut stream = match opened {
                Some(stream) => stream.limit(end - start),
                None => {
                    self.stats.origin_requests.fetch_add(1, Relaxed);
                    self.remote.read(&object.relative, start, end, object.meta.etag.as_deref()).await?
                }
            };
            while let Some(bytes) = stream.next().await {
                let mut bytes = bytes?;
                self.stats.origin_bytes.fetch_add(bytes.len() as u64, Relaxed);
                while !bytes.is_empty() {
                    let index = first + current as u64;
                    let (s, e) = slice_bounds(index, self.slice, size);
                    let want = ((e - s) - filled) as usize;
                    let part = bytes.split_to(want.min(bytes.len()));
                    fills[current].append(&part);
                    filled += part.len() as u64;
                    if filled == e - s {
                        self.complete(&object, index, &fills[current]);
                        current += 1;
                        filled = 0;
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            self.stats.origin_error(&error);
            if error == OriginError::Changed {
                self.remote.forget(&object.relative);
            }
            let mut inflight = self.inflight();
            for (offset, fill) in fills.iter().enumerate().skip(current) {
                fill.finish(FillState::Failed(error.clone()));
                inflight.remove(&(object.key.clone(), first + offset as u64));
            }
        }
    }

    /// A slice is complete: readers see it done; it is written to the store (off the worker
    /// thread), then leaves the in-flight table (a reader arriving meanwhile still finds it).
    fn complete(self: &Arc<Self>, object: &Arc<Object>, index: u64, fill: &Arc<Fill>) {
        fill.finish(FillState::Done);
        let cache = self.clone();
        let object = object.clone();
        let fill = fill.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(store) = &cache.store {
                store.put(&object.key, index, &fill.lock().0);
            }
            cache.inflight().remove(&(object.key.clone(), index));
        });
    }
}

/// The bytes of one range, slice by slice, from disk, from a fill, or from a new fetch.
pub struct RangeReader {
    cache: Arc<SliceCache>,
    object: Arc<Object>,
    pos: u64,
    /// Exclusive.
    end: u64,
    fill: Option<(u64, Arc<Fill>)>,
    /// Some byte did not come from disk.
    pub missed: bool,
}

impl RangeReader {
    /// The next piece of the range, at most `max` bytes; `None` at its end.
    pub async fn next(&mut self, max: u64) -> Option<Result<Chunk, OriginError>> {
        if self.pos >= self.end {
            return None;
        }
        let cache = &self.cache;
        let slice = cache.slice;
        let index = self.pos / slice;
        let (slice_start, slice_end) = slice_bounds(index, slice, self.object.meta.size);
        let want = (slice_end.min(self.end) - self.pos).min(max);
        let fill = match &self.fill {
            Some((i, fill)) if *i == index => fill.clone(),
            _ => {
                self.fill = None;
                let last = *slices_of(self.pos, self.end - 1, slice).end();
                let mut on_disk = true; // look in the store again once if the slice just got there
                loop {
                    if let Some(store) = &cache.store {
                        if let Some(file) = store.get(&self.object.key, index, slice_end - slice_start) {
                            let offset = self.pos - slice_start;
                            self.pos += want;
                            cache.stats.hit_bytes.fetch_add(want, Relaxed);
                            return Some(Ok(Chunk::Disk { file, offset, length: want }));
                        }
                    }
                    let own = self.object.own == Some(index);
                    if let Some(fill) = cache.fill_for(&self.object, index, last, own, on_disk) {
                        self.fill = Some((index, fill.clone()));
                        break fill;
                    }
                    on_disk = false;
                }
            }
        };
        self.missed = true;
        match fill.read((self.pos - slice_start) as usize, want as usize).await {
            Ok(bytes) => {
                self.pos += bytes.len() as u64;
                cache.stats.miss_bytes.fetch_add(bytes.len() as u64, Relaxed);
                Some(Ok(Chunk::Memory(bytes)))
            }
            Err(e) => {
                self.pos = self.end;
                Some(Err(e))
            }
        }
    }
}
