//! Wires the chain into the daemon: the request handler of a normal start, and the deferring
//! handler used while the configuration is broken (DECISIONS §2).

use std::time::Duration;

use crate::chain::Chain;
use crate::courier::Courier;
use crate::daemon::{Handler, Request};

/// The reply of deferring mode.
pub const DEFERRING_REPLY: &str = "451 4.3.5 rustfilter configuration error, mail deferred";

/// How long past `message_timeout` a message may run before the watchdog kills its worker.
/// The chain stops starting modules at the deadline; this catches one that never returns.
pub const WATCHDOG_GRACE: Duration = Duration::from_secs(30);

pub struct ChainHandler {
    pub chain: Chain,
    pub courier: Courier,
}

impl Handler for ChainHandler {
    fn worker_init(&mut self) -> Result<(), String> {
        self.chain.open().map_err(|e| e.to_string())
    }

    fn handle(&mut self, request: &Request) -> String {
        self.chain
            .answer(&self.courier, &request.data_path, &request.control_paths)
    }

    fn after_reply(&mut self) {
        self.chain.finish();
    }

    /// Last-resort watchdog: a module stuck beyond the message deadline (plus grace) gets this
    /// worker killed; Courier then tempfails the message and the master starts a new worker.
    fn time_limit(&self) -> Option<Duration> {
        Some(self.chain.settings.message_timeout + WATCHDOG_GRACE)
    }
}

/// Answers every request with [`DEFERRING_REPLY`].
pub struct DeferringHandler;

impl Handler for DeferringHandler {
    fn handle(&mut self, _: &Request) -> String {
        DEFERRING_REPLY.to_string()
    }
}
