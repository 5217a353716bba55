//! The slice files on disk and their index: one file per complete slice, named after the object
//! key (path + ETag + size), slice index, length and CRC32C. A slice is written to a temporary
//! file, its size checked, then renamed: only complete slices are visible. The index is rebuilt
//! from the names at start; a slice's checksum is verified the first time it is opened and again
//! whenever its file changed (size or mtime) since, so a truncated or corrupted slice is dropped
//! and fetched again. Bytes are reserved (evicting least recently used slices) before a write
//! starts, so the folder stays under `VOD_CACHE_MAX_BYTES` at all times. Any disk error only
//! means "not cached".

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::plan::{lru_victims, parse_slice_name, slice_name};

/// An open, verified slice file (kept open between requests, as the file origin's fd cache).
#[derive(Debug)]
pub struct SliceFile {
    pub fd: OwnedFd,
    pub length: u64,
    mtime_ns: i128,
}

struct Entry {
    length: u64,
    crc: u32,
    tick: u64,
    open: Option<Arc<SliceFile>>,
}

type Key = (String, u64);

#[derive(Default)]
struct Index {
    entries: HashMap<Key, Entry>,
    /// Bytes of the entries plus the writes under way.
    used: u64,
    tick: u64,
}

/// Counters the metrics show.
#[derive(Default)]
pub struct StoreStats {
    pub evictions: AtomicU64,
    pub write_errors: AtomicU64,
    pub corrupt: AtomicU64,
    pub used: AtomicU64,
}

pub struct Store {
    dir: PathBuf,
    max: u64,
    index: Mutex<Index>,
    pub stats: StoreStats,
}

fn fstat(fd: &OwnedFd) -> Option<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and out-pointer.
    (unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0).then_some(st)
}

fn mtime_ns(st: &libc::stat) -> i128 {
    i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec)
}

impl Store {
    /// The store in `dir` with its index rebuilt from the files there (temporary files and
    /// files whose name or size is wrong are removed; over the bound, the oldest go).
    pub fn open(dir: PathBuf, max: u64) -> std::io::Result<Store> {
        std::fs::create_dir_all(&dir)?;
        let mut found: Vec<(Key, u64, u32, i128)> = Vec::new();
        for item in std::fs::read_dir(&dir)? {
            let Ok(item) = item else { continue };
            let name = item.file_name().to_string_lossy().into_owned();
            let Ok(meta) = item.metadata() else { continue };
            match parse_slice_name(&name) {
                Some((object, index, length, crc)) if meta.is_file() && meta.len() == length => {
                    use std::os::unix::fs::MetadataExt;
                    let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
                    found.push(((object, index), length, crc, mtime));
                }
                _ if meta.is_file() => {
                    let _ = std::fs::remove_file(item.path());
                }
                _ => {}
            }
        }
        found.sort_by_key(|(_, _, _, mtime)| *mtime);
        let store = Store { dir, max, index: Mutex::new(Index::default()), stats: StoreStats::default() };
        {
            let mut index = store.lock();
            for (key, length, crc, _) in found {
                index.tick += 1;
                index.used += length;
                let tick = index.tick;
                index.entries.insert(key, Entry { length, crc, tick, open: None });
            }
        }
        let victims = store.reserve(0);
        store.unlink(victims.unwrap_or_default());
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path_of(&self, key: &Key, length: u64, crc: u32) -> PathBuf {
        self.dir.join(slice_name(&key.0, key.1, length, crc))
    }

    pub fn contains(&self, object: &str, index: u64) -> bool {
        self.lock().entries.contains_key(&(object.to_string(), index))
    }

    /// The verified slice file, or `None` (absent, wrong length, truncated, corrupted: the
    /// last three are removed so the slice is fetched again).
    pub fn get(&self, object: &str, index: u64, length: u64) -> Option<Arc<SliceFile>> {
        let key = (object.to_string(), index);
        let (crc, open) = {
            let mut guard = self.lock();
            let idx = &mut *guard;
            idx.tick += 1;
            let entry = idx.entries.get_mut(&key)?;
            entry.tick = idx.tick;
            if entry.length != length {
                drop(guard);
                self.drop_entry(&key);
                return None;
            }
            (entry.crc, entry.open.clone())
        };
        if let Some(file) = open {
            match fstat(&file.fd) {
                Some(st) if st.st_size as u64 == file.length && mtime_ns(&st) == file.mtime_ns => {
                    return Some(file)
                }
                _ => {} // changed on disk since it was verified: verify again
            }
        }
        match self.verify(&key, length, crc) {
            Some(file) => {
                let file = Arc::new(file);
                if let Some(entry) = self.lock().entries.get_mut(&key) {
                    entry.open = Some(file.clone());
                }
                Some(file)
            }
            None => {
                self.stats.corrupt.fetch_add(1, Relaxed);
                self.drop_entry(&key);
                None
            }
        }
    }

    /// Open the slice and check its length and checksum.
    fn verify(&self, key: &Key, length: u64, crc: u32) -> Option<SliceFile> {
        use std::io::Read;
        let mut file = std::fs::File::open(self.path_of(key, length, crc)).ok()?;
        let mut data = Vec::with_capacity(length as usize);
        Read::take(&mut file, length + 1).read_to_end(&mut data).ok()?;
        if data.len() as u64 != length || crc32c::crc32c(&data) != crc {
            return None;
        }
        let fd = OwnedFd::from(file);
        let st = fstat(&fd)?;
        Some(SliceFile { fd, length, mtime_ns: mtime_ns(&st) })
    }

    fn drop_entry(&self, key: &Key) {
        let removed = {
            let mut index = self.lock();
            let removed = index.entries.remove(key);
            if let Some(entry) = &removed {
                index.used -= entry.length;
                self.stats.used.store(index.used, Relaxed);
            }
            removed
        };
        if let Some(entry) = removed {
            let _ = std::fs::remove_file(self.path_of(key, entry.length, entry.crc));
        }
    }

    /// Reserve `need` bytes, choosing the least recently used slices to evict (removed from
    /// the index here, their files unlinked by the caller outside the lock). `None`: too large.
    fn reserve(&self, need: u64) -> Option<Vec<(Key, u64, u32)>> {
        let mut index = self.lock();
        let listed: Vec<(Key, u64, u64)> =
            index.entries.iter().map(|(k, e)| (k.clone(), e.length, e.tick)).collect();
        let victims = lru_victims(&listed, index.used, need, self.max)?;
        let mut out = Vec::with_capacity(victims.len());
        for key in victims {
            if let Some(entry) = index.entries.remove(&key) {
                index.used -= entry.length;
                out.push((key, entry.length, entry.crc));
            }
        }
        index.used += need;
        self.stats.used.store(index.used, Relaxed);
        self.stats.evictions.fetch_add(out.len() as u64, Relaxed);
        Some(out)
    }

    fn unlink(&self, victims: Vec<(Key, u64, u32)>) {
        for (key, length, crc) in victims {
            let _ = std::fs::remove_file(self.path_of(&key, length, crc));
        }
    }

    fn release(&self, bytes: u64) {
        let mut index = self.lock();
        index.used -= bytes;
        self.stats.used.store(index.used, Relaxed);
    }

    /// Write a complete slice (blocking I/O: call it off the worker threads). A failure (disk
    /// full, read-only, gone) is counted and otherwise ignored: the slice is just not cached.
    pub fn put(&self, object: &str, index: u64, data: &[u8]) {
        let key = (object.to_string(), index);
        let length = data.len() as u64;
        if self.contains(object, index) {
            return;
        }
        let Some(victims) = self.reserve(length) else { return };
        self.unlink(victims);
        let crc = crc32c::crc32c(data);
        let path = self.path_of(&key, length, crc);
        let temp = self.dir.join(format!(".tmp-{:016x}", crate::random::random_u64()));
        let written = (|| -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&temp)?;
            file.write_all(data)?;
            if file.metadata()?.len() != length {
                return Err(std::io::Error::other("short slice write"));
            }
            std::fs::rename(&temp, &path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
            self.stats.write_errors.fetch_add(1, Relaxed);
            self.release(length);
            return;
        }
        let mut guard = self.lock();
        let idx = &mut *guard;
        idx.tick += 1;
        let tick = idx.tick;
        match idx.entries.entry(key) {
            // a concurrent writer won (same name, same bytes): count it once
            std::collections::hash_map::Entry::Occupied(_) => idx.used -= length,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Entry { length, crc, tick, open: None });
            }
        }
        self.stats.used.store(idx.used, Relaxed);
    }
}
