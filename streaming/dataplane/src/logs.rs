//! JSON log lines on stdout, in the Python side's format (`vod_stream.logs`): one object per
//! record. Lines go through a channel to one writer thread, which writes them in batches, so a
//! worker thread never waits on stdout.

use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

static SENDER: OnceLock<SyncSender<Option<String>>> = OnceLock::new();
static WRITER: OnceLock<Mutex<Option<std::thread::JoinHandle<()>>>> = OnceLock::new();

fn writer(rx: Receiver<Option<String>>) {
    let stdout = std::io::stdout();
    let mut batch = String::with_capacity(64 * 1024);
    while let Ok(first) = rx.recv() {
        let Some(line) = first else { break };
        batch.push_str(&line);
        let mut stop = false;
        while batch.len() < 60 * 1024 {
            match rx.try_recv() {
                Ok(Some(line)) => batch.push_str(&line),
                Ok(None) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let mut out = stdout.lock();
        let _ = out.write_all(batch.as_bytes());
        let _ = out.flush();
        batch.clear();
        if stop {
            break;
        }
    }
}

pub fn start() {
    let (tx, rx) = sync_channel(65_536);
    let handle = std::thread::Builder::new().name("vod-log".into()).spawn(move || writer(rx)).ok();
    let _ = SENDER.set(tx);
    *WRITER.get_or_init(|| Mutex::new(None)).lock().unwrap_or_else(|e| e.into_inner()) = handle;
}

/// Write what is queued and stop the writer thread.
pub fn stop() {
    if let Some(tx) = SENDER.get() {
        let _ = tx.send(None);
    }
    if let Some(lock) = WRITER.get() {
        if let Some(handle) = lock.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

fn now_text() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
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

fn emit(level: &str, logger: &str, message: &str, fields: Map<String, Value>) {
    let mut entry = Map::new();
    entry.insert("time".into(), Value::String(now_text()));
    entry.insert("level".into(), Value::String(level.into()));
    entry.insert("logger".into(), Value::String(logger.into()));
    entry.insert("message".into(), Value::String(message.into()));
    entry.insert("pid".into(), Value::from(std::process::id()));
    entry.extend(fields);
    let mut line = Value::Object(entry).to_string();
    line.push('\n');
    // A full queue blocks the worker (as a blocking write(2) of nginx's log would): no line is
    // lost. After `stop`, lines are written directly.
    let line = match SENDER.get() {
        Some(tx) => match tx.send(Some(line)) {
            Ok(()) => return,
            Err(e) => e.0.unwrap_or_default(),
        },
        None => line,
    };
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
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

/// The access-log line of one request, as `vod_stream.logs.access`.
pub fn access(fields: Vec<(&str, Value)>) {
    let mut map = Map::new();
    map.insert("event".into(), Value::String("access".into()));
    map.insert("worker".into(), Value::from(std::process::id()));
    for (k, v) in fields {
        map.insert(k.into(), v);
    }
    emit("info", "vod_stream.access", "access", map);
}
