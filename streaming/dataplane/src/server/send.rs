//! Bytes to the client's socket: send(2) and sendfile(2) on the raw socket, waiting for
//! writability through the runtime, under the send timeout.
//!
//! The send timeout counts time without progress, not time between two writes: while a write
//! waits, the socket's unacknowledged byte count (SIOCOUTQ) is read a few times a second, and
//! every drop in it (the client took bytes) starts the timeout over. A large send buffer
//! becomes writable only after the client drained a good part of it, which for a slow but
//! steady reader can take longer than the timeout; a reader that stopped takes nothing, and is
//! cut once the timeout has passed since its last progress (plus at most one check interval).

use std::future::Future;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::time::timeout;

use super::connection::Conn;
use super::State;

#[derive(Debug)]
pub(super) enum Cut {
    /// The client went away, or the connection must close without another word.
    Closed,
    /// The client took nothing for the send timeout.
    SendTimeout,
}

impl From<std::io::Error> for Cut {
    fn from(_: std::io::Error) -> Cut {
        Cut::Closed
    }
}

impl Conn {
    pub(super) async fn sendfile_fd(&self, fd: RawFd, offset: u64, length: u64) -> Result<u64, Cut> {
        let send_timeout = State::seconds(self.state.cfg.send_timeout_seconds);
        let socket = self.stream.as_raw_fd();
        loop {
            let attempt = self.stream.try_io(Interest::WRITABLE, || {
                let mut off = offset as libc::off_t;
                // SAFETY: valid descriptors; `off` is a local the kernel updates.
                let n = unsafe { libc::sendfile(socket, fd, &mut off, length as usize) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as u64)
                }
            });
            match attempt {
                Ok(0) => return Err(Cut::Closed), // the file shrank under us
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.wait_writable(send_timeout).await?
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Cut::Closed),
            }
        }
    }

    pub(super) async fn wait_writable(&self, send_timeout: Option<Duration>) -> Result<(), Cut> {
        match send_timeout {
            Some(t) => match until_stalled(self.stream.as_raw_fd(), t, self.stream.writable()).await {
                Some(Ok(())) => Ok(()),
                Some(Err(_)) => Err(Cut::Closed),
                None => Err(Cut::SendTimeout),
            },
            None => self.stream.writable().await.map_err(|_| Cut::Closed),
        }
    }

    /// Write all of `data`; `more`: further bytes follow at once (MSG_MORE: one packet).
    pub(super) async fn write_all(&self, mut data: &[u8], more: bool) -> Result<(), Cut> {
        let send_timeout = State::seconds(self.state.cfg.send_timeout_seconds);
        let socket = self.stream.as_raw_fd();
        let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
        while !data.is_empty() {
            let attempt = self.stream.try_io(Interest::WRITABLE, || {
                // SAFETY: a valid socket and an initialised buffer.
                let n = unsafe { libc::send(socket, data.as_ptr().cast(), data.len(), flags) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match attempt {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.wait_writable(send_timeout).await?
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Cut::Closed),
            }
        }
        Ok(())
    }
}

/// Bytes sent on `socket` that the peer has not acknowledged yet (or not even been sent).
fn unacknowledged(socket: RawFd) -> Option<i64> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one int.
    let rc = unsafe { libc::ioctl(socket, libc::TIOCOUTQ, &mut queued) };
    (rc == 0).then_some(i64::from(queued))
}

/// How often a waiting write looks for progress: a stall is cut at most this much after the
/// timeout.
fn check_interval(limit: Duration) -> Duration {
    (limit / 4).clamp(Duration::from_millis(10), Duration::from_millis(250))
}

/// Await `ready` (a write, or the socket's writability) unless the client makes no progress
/// for `limit`: `None` then. Progress is a drop of the socket's unacknowledged bytes.
pub(super) async fn until_stalled<F: Future>(socket: RawFd, limit: Duration, ready: F) -> Option<F::Output> {
    tokio::pin!(ready);
    let interval = check_interval(limit);
    let mut queued = unacknowledged(socket);
    let mut progress_at = Instant::now();
    loop {
        let left = limit.saturating_sub(progress_at.elapsed());
        if left.is_zero() {
            return None;
        }
        if let Ok(output) = timeout(left.min(interval), &mut ready).await {
            return Some(output);
        }
        let now = unacknowledged(socket);
        if let (Some(before), Some(after)) = (queued, now) {
            if after < before {
                progress_at = Instant::now();
            }
        }
        queued = now;
    }
}
