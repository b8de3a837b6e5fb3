//! The courierfilter side and nothing else: the socket's life cycle (dot-name bind, mode, rename,
//! stale cleanup), fd-3 readiness, stdin-EOF / SIGTERM shutdown, the pre-forked pool of blocking
//! workers (spawn, respawn with backoff, drain) and the request/reply wire format with hard
//! limits. It knows nothing about modules: a [`Handler`] answers each request.

pub mod pool;
pub mod socket;
mod tuning;
pub mod wire;

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

pub use wire::{Limits, Request, RequestError};

/// Answers requests. Built in the master (config already validated); each worker calls
/// `worker_init` once after fork, then `handle` for every connection it accepts.
pub trait Handler {
    /// Open per-process resources. An error is logged and the worker exits (the master
    /// respawns it with backoff).
    fn worker_init(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// The reply text for one request (`200 Ok`, `451 …`, lines joined by `\n`).
    fn handle(&mut self, request: &Request) -> String;

    /// Called once the reply of the last `handle` has been sent and the connection closed:
    /// the place for work Courier need not wait for (the log lines). Still under the
    /// watchdog's time limit.
    fn after_reply(&mut self) {}

    /// The longest one `handle` call may take. A worker still in `handle` after this is
    /// killed by the master's watchdog (logged; the connection closes without a reply, so
    /// Courier tempfails the message) and replaced. `None`: no limit.
    fn time_limit(&self) -> Option<Duration> {
        None
    }
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Socket name (`<localstatedir>/allfilters/<name>`) and log prefix.
    pub name: String,
    pub localstatedir: PathBuf,
    pub workers: usize,
    pub limits: Limits,
    /// fd 3 when courierfilter opened it: closed once the workers can accept.
    pub ready_fd: Option<RawFd>,
    /// Logged by the master at this interval while serving (the deferring mode's reminder).
    pub reminder: Option<(Duration, String)>,
}

/// Why serving failed (the caller maps it to an exit status: 71 for OS errors).
#[derive(Debug)]
pub struct DaemonError(pub String);

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DaemonError {}

/// Create the socket, fork the workers, signal readiness, supervise until stdin EOF or
/// SIGTERM/SIGINT, then unlink the socket, let in-flight messages finish (≤ 10 s) and return.
pub fn serve<H: Handler>(opts: &ServeOptions, handler: H) -> Result<(), DaemonError> {
    pool::run(opts, handler)
}
