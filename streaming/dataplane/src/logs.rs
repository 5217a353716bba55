//! JSON log lines on stdout, in the Python side's format (`vod_stream.logs`): one object per
//! record.
//!
//! Access records are formatted straight into a buffer of the worker thread that answered the
//! request (no JSON tree, no allocation per record), as nginx's `access_log ... buffer=64k
//! flush=1s`: a buffer is handed to the writer thread when it holds 64 KiB, and the writer
//! takes whatever a buffer has held for a second. Handing over never waits: when the writer is
//! behind (stdout blocked) by more than `QUEUE` buffers, the buffer is dropped and its records
//! counted (`vod_access_log_dropped_total`). Events (rare) are formatted with serde_json and
//! queued the same way.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// A worker's buffer is handed over when it holds this much (nginx's `buffer=`).
const BUFFER: usize = 64 * 1024;
/// Records wait at most this long in a worker's buffer (nginx's `flush=`).
const FLUSH: Duration = Duration::from_secs(1);
/// How often the writer looks for buffers older than `FLUSH`.
const SWEEP: Duration = Duration::from_millis(100);
/// Buffers waiting for the writer beyond this are dropped (4 MiB of records).
const QUEUE: usize = 64;

enum Message {
    /// Formatted lines.
    Lines(Vec<u8>),
    Stop,
}

/// One worker thread's records not yet handed over.
#[derive(Default)]
struct Shard {
    data: Vec<u8>,
    records: u64,
    since: Option<Instant>,
}

static SENDER: OnceLock<SyncSender<Message>> = OnceLock::new();
static WRITER: OnceLock<Mutex<Option<std::thread::JoinHandle<()>>>> = OnceLock::new();
static SHARDS: Mutex<Vec<Arc<Mutex<Shard>>>> = Mutex::new(Vec::new());
static STOPPED: AtomicBool = AtomicBool::new(false);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static PID: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static SHARD: Arc<Mutex<Shard>> = register();
    /// The formatted second of the last record on this thread: (epoch second, its text).
    static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

fn register() -> Arc<Mutex<Shard>> {
    let shard = Arc::new(Mutex::new(Shard { data: Vec::with_capacity(BUFFER + 1024), ..Shard::default() }));
    lock(&SHARDS).push(shard.clone());
    shard
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records dropped because the writer could not keep up.
pub fn dropped() -> u64 {
    DROPPED.load(Relaxed)
}

/// Write lines to stdout in writes of whole lines of at most `PIPE_BUF` bytes each (a longer
/// line alone): on a pipe such a write is atomic, so the lines of the Python side, which shares
/// stdout, never land inside ours.
fn write_out(data: &[u8]) {
    const ATOMIC: usize = libc::PIPE_BUF;
    let mut rest = data;
    while !rest.is_empty() {
        let take = if rest.len() <= ATOMIC {
            rest.len()
        } else {
            match rest[..ATOMIC].iter().rposition(|&b| b == b'\n') {
                Some(end) => end + 1,
                None => rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |end| end + 1),
            }
        };
        write_fd(&rest[..take]);
        rest = &rest[take..];
    }
}

fn write_fd(mut chunk: &[u8]) {
    while !chunk.is_empty() {
        // SAFETY: writes from a live buffer to the process's stdout.
        let n = unsafe { libc::write(1, chunk.as_ptr().cast(), chunk.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return; // stdout is gone: nothing else to do with the line
        }
        chunk = &chunk[n as usize..];
    }
}

/// Take the buffers that waited `FLUSH` (all of them with `all`) and write them.
fn sweep(all: bool) {
    let shards: Vec<Arc<Mutex<Shard>>> = lock(&SHARDS).clone();
    for shard in shards {
        let data = {
            let mut s = lock(&shard);
            let due = s.since.is_some_and(|since| all || since.elapsed() >= FLUSH);
            if !due {
                continue;
            }
            s.records = 0;
            s.since = None;
            std::mem::replace(&mut s.data, Vec::with_capacity(BUFFER + 1024))
        };
        write_out(&data);
    }
}

fn writer(rx: Receiver<Message>) {
    let mut swept = Instant::now();
    loop {
        match rx.recv_timeout(SWEEP) {
            Ok(Message::Lines(data)) => write_out(&data),
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if swept.elapsed() >= SWEEP {
            sweep(false);
            swept = Instant::now();
        }
    }
    // what was queued before the stop, then what the workers still hold
    while let Ok(Message::Lines(data)) = rx.try_recv() {
        write_out(&data);
    }
    sweep(true);
}

pub fn start() {
    PID.store(std::process::id(), Relaxed);
    STOPPED.store(false, SeqCst);
    let (tx, rx) = sync_channel(QUEUE);
    let handle = std::thread::Builder::new().name("vod-log".into()).spawn(move || writer(rx)).ok();
    let _ = SENDER.set(tx);
    *lock(WRITER.get_or_init(|| Mutex::new(None))) = handle;
}

/// Write what is queued and buffered, and stop the writer thread; later records are written
/// directly.
pub fn stop() {
    STOPPED.store(true, SeqCst);
    if let Some(tx) = SENDER.get() {
        let _ = tx.send(Message::Stop);
    }
    if let Some(lock_) = WRITER.get() {
        if let Some(handle) = lock(lock_).take() {
            let _ = handle.join();
        }
    }
    sweep(true);
}

/// Hand lines to the writer without waiting: dropped (and counted) when its queue is full.
fn hand_over(data: Vec<u8>, records: u64) {
    let rejected = match SENDER.get() {
        Some(tx) if !STOPPED.load(Relaxed) => match tx.try_send(Message::Lines(data)) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => {
                DROPPED.fetch_add(records, Relaxed);
                return;
            }
            Err(TrySendError::Disconnected(Message::Lines(data))) => data,
            Err(TrySendError::Disconnected(Message::Stop)) => return,
        },
        _ => data,
    };
    write_out(&rejected);
}

fn pid() -> u32 {
    match PID.load(Relaxed) {
        0 => std::process::id(),
        pid => pid,
    }
}

/// `2026-01-02T03:04:05.678Z`, as the Python side's `time` field.
fn write_time(out: &mut Vec<u8>) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let days = (secs / 86_400) as i64;
            let rem = secs % 86_400;
            let (y, m, d) = civil(days);
            let mut text = [0u8; 19];
            let _ = write!(
                &mut text[..],
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60
            );
            *cached = (secs, text);
        }
        out.extend_from_slice(&cached.1);
    });
    let millis = now.subsec_millis();
    out.extend_from_slice(&[
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
    ]);
}

fn now_text() -> String {
    let mut out = Vec::with_capacity(24);
    write_time(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn civil(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `text` as a JSON string (quotes, backslashes and control characters escaped).
fn write_str(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => &[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_opt(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => write_str(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// One access-log record: the fields of `vod_stream.logs.access`.
pub struct Access<'a> {
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    pub status: u16,
    pub bytes: u64,
    /// Microseconds (the record's `duration_ms` has three decimals).
    pub duration_us: u64,
    pub range: Option<&'a str>,
    pub remote: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: &'a str,
    pub traceparent: &'a str,
    /// Why a malformed request was refused.
    pub error: Option<&'a str>,
}

/// The record's JSON line (with its newline) appended to `out`.
pub fn format_access(out: &mut Vec<u8>, record: &Access<'_>) {
    out.extend_from_slice(b"{\"time\": \"");
    write_time(out);
    let pid = pid();
    let _ = write!(
        out,
        "\", \"level\": \"info\", \"logger\": \"vod_stream.access\", \"message\": \"access\", \"pid\": {pid}, \"event\": \"access\", \"worker\": {pid}, \"method\": "
    );
    write_opt(out, record.method);
    out.extend_from_slice(b", \"path\": ");
    write_opt(out, record.path);
    let _ = write!(
        out,
        ", \"status\": {}, \"bytes\": {}, \"duration_ms\": {}.{:03}, \"range\": ",
        record.status,
        record.bytes,
        record.duration_us / 1000,
        record.duration_us % 1000
    );
    write_opt(out, record.range);
    out.extend_from_slice(b", \"remote\": ");
    write_opt(out, record.remote);
    out.extend_from_slice(b", \"user_agent\": ");
    write_opt(out, record.user_agent);
    out.extend_from_slice(b", \"request_id\": ");
    write_str(out, record.request_id);
    out.extend_from_slice(b", \"traceparent\": ");
    write_str(out, record.traceparent);
    if let Some(error) = record.error {
        out.extend_from_slice(b", \"error\": ");
        write_str(out, error);
    }
    out.extend_from_slice(b"}\n");
}

/// Log one access record, as `vod_stream.logs.access`: into this thread's buffer.
pub fn access(record: &Access<'_>) {
    if STOPPED.load(Relaxed) {
        let mut line = Vec::with_capacity(512);
        format_access(&mut line, record);
        write_out(&line);
        return;
    }
    let full = SHARD.try_with(|shard| {
        let mut s = lock(shard);
        format_access(&mut s.data, record);
        s.records += 1;
        if s.since.is_none() {
            s.since = Some(Instant::now());
        }
        if s.data.len() < BUFFER {
            return None;
        }
        let records = std::mem::take(&mut s.records);
        s.since = None;
        Some((std::mem::replace(&mut s.data, Vec::with_capacity(BUFFER + 1024)), records))
    });
    match full {
        Ok(Some((data, records))) => hand_over(data, records),
        Ok(None) => {}
        // the thread is exiting: its buffer is gone, write the line directly
        Err(_) => {
            let mut line = Vec::with_capacity(512);
            format_access(&mut line, record);
            write_out(&line);
        }
    }
}

fn emit(level: &str, logger: &str, message: &str, fields: Map<String, Value>) {
    let mut entry = Map::new();
    entry.insert("time".into(), Value::String(now_text()));
    entry.insert("level".into(), Value::String(level.into()));
    entry.insert("logger".into(), Value::String(logger.into()));
    entry.insert("message".into(), Value::String(message.into()));
    entry.insert("pid".into(), Value::from(pid()));
    entry.extend(fields);
    let mut line = Value::Object(entry).to_string().into_bytes();
    line.push(b'\n');
    hand_over(line, 1);
}

/// One event with structured fields (`{"event": message, ...}`), as `vod_stream.logs.event`.
pub fn event(level: &str, message: &str, fields: Vec<(&str, Value)>) {
    let mut map = Map::new();
    map.insert("event".into(), Value::String(message.into()));
    for (k, v) in fields {
        map.insert(k.into(), v);
    }
    emit(level, "vod_stream", message, map);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(path: &'a str, user_agent: Option<&'a str>, error: Option<&'a str>) -> Access<'a> {
        Access {
            method: Some("GET"),
            path: Some(path),
            status: 206,
            bytes: 65536,
            duration_us: 12_345,
            range: Some("bytes=0-65535"),
            remote: Some("127.0.0.1"),
            user_agent,
            request_id: "abc",
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            error,
        }
    }

    #[test]
    fn an_access_line_is_one_json_object_with_the_fields() {
        let mut out = Vec::new();
        let nasty = "a\"b\\c\u{1}d\te\u{7f}é🙂\n";
        format_access(&mut out, &record(nasty, None, Some("bad\r")));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(out.last(), Some(&b'\n'));
        let value: Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(value["path"], nasty);
        assert_eq!(value["user_agent"], Value::Null);
        assert_eq!(value["error"], "bad\r");
        assert_eq!(value["status"], 206);
        assert_eq!(value["bytes"], 65536);
        assert_eq!(value["duration_ms"].as_f64(), Some(12.345));
        assert_eq!(value["event"], "access");
        assert_eq!(value["logger"], "vod_stream.access");
        assert_eq!(value["pid"], value["worker"]);
        let time = value["time"].as_str().expect("a time");
        assert_eq!(time.len(), 24);
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T');
        let mut keys: Vec<&str> = value.as_object().expect("an object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "bytes",
                "duration_ms",
                "error",
                "event",
                "level",
                "logger",
                "message",
                "method",
                "path",
                "pid",
                "range",
                "remote",
                "request_id",
                "status",
                "time",
                "traceparent",
                "user_agent",
                "worker"
            ]
        );
    }

    #[test]
    fn whole_milliseconds_keep_three_decimals() {
        let mut out = Vec::new();
        let mut r = record("/a", Some("ua"), None);
        r.duration_us = 7_000;
        format_access(&mut out, &r);
        let value: Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(value["duration_ms"].as_f64(), Some(7.0));
        assert!(value.get("error").is_none());
    }

    #[test]
    fn the_date_is_the_civil_date() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_723), (2024, 1, 1));
        assert_eq!(civil(19_782), (2024, 2, 29));
    }
}
