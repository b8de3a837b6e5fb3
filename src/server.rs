//! Wires the chain into the daemon: the request handler of a normal start, and the deferring
//! handler used while the configuration is broken (DECISIONS §2).

use crate::chain::Chain;
use crate::courier::Courier;
use crate::daemon::{Handler, Request};

/// The reply of deferring mode.
pub const DEFERRING_REPLY: &str = "451 4.3.5 rustfilter configuration error, mail deferred";

pub struct ChainHandler {
    pub chain: Chain,
    pub courier: Courier,
}

impl Handler for ChainHandler {
    fn worker_init(&mut self) -> Result<(), String> {
        self.chain.open().map_err(|e| e.to_string())
    }

    fn handle(&mut self, request: &Request) -> String {
        // Last-resort watchdog: a module stuck beyond the message deadline (plus grace) ends
        // this worker; Courier then tempfails the message and the master starts a new worker.
        let limit = self.chain.settings.message_timeout.as_secs() + 30;
        // SAFETY: alarm only arms a process timer.
        unsafe { libc::alarm(limit.min(u32::MAX as u64) as u32) };
        let reply = self
            .chain
            .process(&self.courier, &request.data_path, &request.control_paths);
        // SAFETY: as above; 0 disarms it.
        unsafe { libc::alarm(0) };
        reply
    }
}

/// Answers every request with [`DEFERRING_REPLY`].
pub struct DeferringHandler;

impl Handler for DeferringHandler {
    fn handle(&mut self, _: &Request) -> String {
        DEFERRING_REPLY.to_string()
    }
}
