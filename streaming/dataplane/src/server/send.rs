//! Bytes to the client's socket: send(2) and sendfile(2) on the raw socket, waiting for
//! writability through the runtime, under the send timeout.

use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

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
            // the send timeout runs between two successive writes (nginx's send_timeout)
            Some(t) => match timeout(t, self.stream.writable()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Cut::Closed),
                Err(_) => Err(Cut::SendTimeout),
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
