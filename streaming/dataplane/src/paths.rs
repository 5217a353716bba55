//! Map a URL path to a file under the media root, refusing anything that could leave it, and
//! the open-file cache (nginx's `open_file_cache`).

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The root-relative path for a decoded URL path, or `None` when it may not be served.
///
/// Refused: NUL and control characters, backslashes, `.`/`..` segments, and any segment
/// starting with a dot (hidden files and the uploads' `.vod-tmp` staging folder). Empty
/// segments (`//`) are dropped; the root itself (a directory) is refused.
pub fn media_path(url_path: &str) -> Option<String> {
    if !url_path.starts_with('/') || url_path.chars().any(|c| c < ' ' || c == '\x7f' || c == '\\') {
        return None;
    }
    let segments: Vec<&str> = url_path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() || segments.iter().any(|s| s.starts_with('.')) {
        return None;
    }
    Some(segments.join("/"))
}

/// An open regular file: descriptor (closed on drop) and its identity.
#[derive(Debug)]
pub struct OpenFile {
    pub fd: std::os::fd::OwnedFd,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: i128,
    /// What a response plan needs (validators rendered), made on first use and kept while the
    /// open-file cache keeps the file.
    pub representation: OnceLock<crate::plan::Representation>,
}

fn stat_path(path: &CString) -> Option<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a valid out-pointer.
    (unsafe { libc::stat(path.as_ptr(), &mut st) } == 0).then_some(st)
}

fn mtime_ns(st: &libc::stat) -> i128 {
    i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec)
}

fn inside(root_real: &Path, real: &Path) -> bool {
    real != root_real && real.starts_with(root_real)
}

/// The resolved path of an open file (one readlink on Linux, no race with renames).
fn real_path_of(fd: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
}

/// Why a file could not be opened for a media request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Not a regular file inside the root (missing, a directory, outside, unreadable): 404.
    NotFound,
    /// No descriptor left (`EMFILE`, `ENFILE`): the file may well exist, so a 503, never a 404.
    Exhausted,
}

/// Open `relative` under the (already resolved) root for reading: an error unless it is a
/// regular file whose resolved location (after every symlink) is inside the root. O_NONBLOCK
/// keeps a FIFO from blocking the open.
pub fn open_regular_file(root_real: &Path, relative: &str) -> Result<OpenFile, OpenError> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let full =
        CString::new(root_real.join(relative).as_os_str().as_bytes()).map_err(|_| OpenError::NotFound)?;
    // SAFETY: a NUL-terminated path; the descriptor is owned right away.
    let raw = unsafe { libc::open(full.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if raw < 0 {
        let error = std::io::Error::last_os_error();
        return Err(if crate::descriptors::exhausted(&error) {
            OpenError::Exhausted
        } else {
            OpenError::NotFound
        });
    }
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 || (st.st_mode & libc::S_IFMT) != libc::S_IFREG {
        return Err(OpenError::NotFound);
    }
    if !real_path_of(fd.as_raw_fd()).is_some_and(|real| inside(root_real, &real)) {
        return Err(OpenError::NotFound);
    }
    Ok(OpenFile {
        fd,
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size as u64,
        mtime: st.st_mtime,
        mtime_ns: mtime_ns(&st),
        representation: OnceLock::new(),
    })
}

/// Open descriptors kept between requests. A hit within `check_every` of the entry's last check
/// costs a lookup and nothing else (nginx's `open_file_cache_valid`); after it, one `stat()` of
/// the path instead of open + fstat + readlink + close. The entry is used only while it still
/// names the same file (device, inode, size, modification time), so a replaced, modified or
/// deleted file, or a symlink that now points elsewhere, is reopened through
/// `open_regular_file` and its checks. `forget_all` drops every entry at once (a write through
/// this server). Entries are shared (`Arc`): evicting one never closes a file a response is
/// still sending; a descriptor is reopened after `reopen_after` however often it is checked.
pub struct FileCache {
    root: PathBuf,
    capacity: usize,
    reopen_after: Duration,
    check_every: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    file: Arc<OpenFile>,
    opened: Instant,
    checked: Instant,
}

impl FileCache {
    pub fn new(root: PathBuf, capacity: usize, reopen_after: Duration, check_every: Duration) -> FileCache {
        FileCache { root, capacity, reopen_after, check_every, entries: Mutex::new(HashMap::new()) }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn open(&self, relative: &str) -> Result<Arc<OpenFile>, OpenError> {
        let now = Instant::now();
        if !self.check_every.is_zero() {
            let entries = self.lock();
            if let Some(entry) = entries.get(relative) {
                if now.duration_since(entry.checked) < self.check_every
                    && now.duration_since(entry.opened) < self.reopen_after
                {
                    return Ok(entry.file.clone());
                }
            }
        }
        let full =
            CString::new(self.root.join(relative).as_os_str().as_bytes()).map_err(|_| OpenError::NotFound)?;
        let Some(current) = stat_path(&full) else {
            self.lock().remove(relative);
            return Err(OpenError::NotFound);
        };
        {
            let mut entries = self.lock();
            if let Some(entry) = entries.get_mut(relative) {
                let file = &entry.file;
                if now.duration_since(entry.opened) < self.reopen_after
                    && file.dev == current.st_dev
                    && file.ino == current.st_ino
                    && file.size == current.st_size as u64
                    && file.mtime_ns == mtime_ns(&current)
                {
                    entry.checked = now;
                    return Ok(file.clone());
                }
            }
        }
        let opened = open_regular_file(&self.root, relative);
        let mut entries = self.lock();
        let opened = match opened {
            Ok(opened) => opened,
            Err(e) => {
                if e == OpenError::NotFound {
                    entries.remove(relative);
                }
                return Err(e);
            }
        };
        let file = Arc::new(opened);
        if entries.len() >= self.capacity && !entries.contains_key(relative) {
            // evict the oldest entry (the cache is small: a linear scan is cheap)
            if let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.opened).map(|(k, _)| k.clone()) {
                entries.remove(&oldest);
            }
        }
        entries.insert(relative.to_string(), Entry { file: file.clone(), opened: now, checked: now });
        Ok(file)
    }

    /// Drop every entry: the next request for each file checks its path again.
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}
