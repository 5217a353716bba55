//! The accept loop: one task per connection on the least busy worker, up to
//! VOD_MAX_CONNECTIONS (then a 503).
//!
//! When no descriptor is left (`EMFILE`, `ENFILE`) the loop neither spins nor stops: it gives
//! up a reserve descriptor (`/dev/null`) to accept one waiting client, answers it 503 with
//! `Retry-After` and closes it, then takes the reserve back; with no reserve to give it waits a
//! moment before trying again. Accepting resumes by itself once descriptors are free.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::timeout;

use futures_util::FutureExt;

use super::connection::Conn;
use super::workers::Workers;
use super::{State, EXHAUSTED_MESSAGE};
use crate::descriptors;

const BUSY_BODY: &str =
    "{\"error\": {\"status\": 503, \"message\": \"too many connections, retry shortly\"}}";

/// How long the loop waits when it has no descriptor to accept with.
const EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);

fn reserve() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

pub async fn accept_loop(state: Arc<State>, workers: Arc<Workers>, listener: TcpListener, stop: Arc<Notify>) {
    let mut spare = reserve();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.notified() => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) if descriptors::exhausted(&e) => {
                state.descriptors_exhausted("accept");
                if spare.is_none() {
                    spare = reserve();
                }
                match spare.take() {
                    Some(file) => {
                        drop(file);
                        if let Some(Ok((stream, _))) = listener.accept().now_or_never() {
                            refuse_exhausted(stream);
                        }
                        spare = reserve();
                    }
                    None => {
                        tokio::select! {
                            () = tokio::time::sleep(EXHAUSTED_PAUSE) => {}
                            () = stop.notified() => return,
                        }
                    }
                }
                continue;
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await; // ECONNABORTED and friends
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if state.connections.load(SeqCst) >= state.cfg.max_connections {
            tokio::spawn(refuse_busy(stream));
            continue;
        }
        // the socket moves to its worker's own reactor
        let Ok(stream) = stream.into_std() else { continue };
        state.connections.fetch_add(1, SeqCst);
        let state = state.clone();
        workers.spawn(move |assigned| async move {
            let guard = ConnGuard(state.clone());
            if let Ok(stream) = TcpStream::from_std(stream) {
                let mut conn = Conn { state, stream, buf: Vec::with_capacity(4096), peer: Some(peer.ip()) };
                conn.run().await;
            }
            drop(guard);
            drop(assigned);
        });
    }
}

pub(super) struct ConnGuard(Arc<State>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, SeqCst);
    }
}

pub(super) async fn refuse_busy(mut stream: TcpStream) {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{BUSY_BODY}",
        BUSY_BODY.len()
    );
    let _ = timeout(Duration::from_secs(5), stream.write_all(response.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// Answer a client accepted on the reserve descriptor at once (a fresh socket takes the few
/// bytes without waiting), read what it sent so closing does not reset the connection before
/// it reads the answer, and close: the descriptor is free again right away.
fn refuse_exhausted(stream: TcpStream) {
    let body = crate::http::error_body(503, EXHAUSTED_MESSAGE);
    let mut response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    let _ = stream.try_write(&response);
    let mut sink = [0u8; 8192];
    for _ in 0..8 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    // SAFETY: shuts down the sending side of a socket we own.
    unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR) };
}
