//! The accept loop: one task per connection, up to VOD_MAX_CONNECTIONS (then a 503).

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::timeout;

use super::connection::Conn;
use super::State;

const BUSY_BODY: &str =
    "{\"error\": {\"status\": 503, \"message\": \"too many connections, retry shortly\"}}";

pub async fn accept_loop(state: Arc<State>, listener: TcpListener, stop: Arc<Notify>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.notified() => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await; // EMFILE and friends
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if state.connections.load(SeqCst) >= state.cfg.max_connections {
            tokio::spawn(refuse_busy(stream));
            continue;
        }
        state.connections.fetch_add(1, SeqCst);
        let state = state.clone();
        tokio::spawn(async move {
            let guard = ConnGuard(state.clone());
            let mut conn = Conn { state, stream, buf: Vec::with_capacity(4096), peer: Some(peer.ip()) };
            conn.run().await;
            drop(guard);
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
