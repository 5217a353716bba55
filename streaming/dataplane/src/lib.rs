//! vod-stream's data plane, a Python extension module (`vod_stream._dataplane`).
//!
//! `serve` runs the HTTP server (see `server`); the other functions and classes are the rules
//! the server applies (ranges, preconditions, the response plan, signed URLs, path confinement),
//! exposed to Python so the Python side and the tests use the one compiled implementation.

pub mod cache;
pub mod conditional;
pub mod config;
pub mod descriptors;
pub mod hls;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod multipart;
pub mod origin;
pub mod paths;
pub mod plan;
pub mod random;
pub mod ranges;
pub mod server;
pub mod signing;
pub mod tokens;

mod bindings;

use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Notify;

/// Most threads the workers' blocking pools hold together (cold-disk reads).
const BLOCKING_THREADS: usize = 16;

/// Run the server until SIGTERM/SIGINT and its drain: fail readiness, keep accepting for the
/// drain delay, stop accepting, let responses finish for the grace period, then stop whatever
/// is left. Returns the process exit status.
pub fn run(cfg: config::Config, listen_fd: i32, ready_fd: i32) -> i32 {
    if let Some(parent) = cfg.parent_pid {
        // SAFETY: plain process attributes.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
        if unsafe { libc::getppid() } != parent {
            return 1; // the supervisor died before the line above: nobody to serve for
        }
    }
    logs::start();
    let limits = descriptors::raise_limit();
    let workers = if cfg.workers > 0 {
        cfg.workers
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    // the main thread's runtime accepts and drains; the workers' serve the connections
    let started = tokio::runtime::Builder::new_current_thread()
        .thread_name("vod-dataplane")
        .enable_all()
        .build()
        .and_then(|rt| Ok((rt, server::Workers::start(workers, BLOCKING_THREADS.div_ceil(workers))?)));
    let (runtime, workers) = match started {
        Ok(both) => both,
        Err(e) => {
            logs::event("error", "data plane failed to start", vec![("error", Value::String(e.to_string()))]);
            logs::stop();
            return 1;
        }
    };
    let drain_delay = cfg.drain_delay_seconds;
    let grace = cfg.shutdown_grace_seconds;
    let state = match server::State::new(cfg, limits.soft) {
        Ok(state) => Arc::new(state),
        Err(e) => {
            logs::event("error", "data plane failed to start", vec![("error", Value::String(e))]);
            logs::stop();
            return 1;
        }
    };
    logs::event(
        "info",
        "descriptors",
        vec![
            ("soft_limit_at_start", Value::from(limits.initial_soft)),
            ("soft_limit", Value::from(limits.soft)),
            ("hard_limit", Value::from(limits.hard)),
            ("open_file_cache", Value::from(state.open_file_cache_capacity())),
        ],
    );
    let outcome = runtime.block_on(async {
        // SAFETY: the supervisor passed us this listening socket; we own it from here on.
        let std_listener = unsafe { std::net::TcpListener::from_raw_fd(listen_fd) };
        std_listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(|e| e.to_string())?;
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        let stop_accept = Arc::new(Notify::new());
        let workers = Arc::new(workers);
        let accept =
            tokio::spawn(server::accept_loop(state.clone(), workers.clone(), listener, stop_accept.clone()));
        if ready_fd >= 0 {
            // SAFETY: the supervisor's pipe; written once and closed.
            let ready = unsafe { std::fs::File::from_raw_fd(ready_fd) };
            use std::io::Write;
            let _ = (&ready).write_all(b"ready\n");
        }
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        state.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        if drain_delay > 0.0 {
            // still accepting, so requests routed before the endpoint is removed are served
            logs::event("info", "drain delay", vec![("seconds", Value::from(drain_delay))]);
            tokio::time::sleep(Duration::from_secs_f64(drain_delay)).await;
        }
        stop_accept.notify_one();
        let _ = accept.await; // the listener is closed: no new connections
        let busy = state.metrics.in_flight.load(std::sync::atomic::Ordering::Relaxed);
        logs::event(
            "info",
            "draining",
            vec![("in_flight", Value::from(busy)), ("grace_seconds", Value::from(grace))],
        );
        let deadline = Instant::now() + Duration::from_secs_f64(grace);
        while state.connections.load(std::sync::atomic::Ordering::SeqCst) > 0 && Instant::now() < deadline {
            state.drain.notify_waiters();
            tokio::time::sleep(
                Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
        }
        Ok::<Arc<server::Workers>, String>(workers)
    });
    // whatever is still running is cut here (and logged as cut, 499)
    // (each worker drops its remaining tasks, which logs them; a read stuck in a blocking pool
    // is not waited for beyond a moment)
    runtime.shutdown_timeout(Duration::from_millis(500));
    let code = match outcome {
        Ok(workers) => {
            if let Ok(workers) = Arc::try_unwrap(workers) {
                workers.shutdown(Duration::from_millis(500));
            }
            logs::event("info", "data plane stopped", vec![]);
            0
        }
        Err(e) => {
            logs::event("error", "data plane failed", vec![("error", Value::String(e))]);
            1
        }
    };
    logs::stop();
    code
}
