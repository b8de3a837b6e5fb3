//! The `Filter` trait every module implements, its verdict, and what a module sees of a message.

use std::fmt;
use std::time::Instant;

use crate::courier::Courier;
use crate::courier::control::Envelope;
use crate::courier::message::Message;
use crate::net::dns::Resolver;
use crate::store::{Counter, Store, TtlDb};

/// What a module decided about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No decision: the next module runs (the reference's empty string).
    Continue,
    /// An SMTP-style reply (`200 Ok`, `451 …`, `050 OK`, lines joined by `\n`).
    Reply(String),
}

impl Verdict {
    pub fn reply(text: impl Into<String>) -> Verdict {
        Verdict::Reply(text.into())
    }
}

/// A module could not do its check. The chain turns this into a tempfail (DECISIONS §3); the
/// text goes to the log only, never into the SMTP reply.
#[derive(Debug)]
pub struct FilterError(pub String);

impl FilterError {
    pub fn new(msg: impl Into<String>) -> FilterError {
        FilterError(msg.into())
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for FilterError {
    fn from(e: E) -> FilterError {
        FilterError(e.to_string())
    }
}

pub type FilterResult = Result<Verdict, FilterError>;

/// Everything a module may look at or change for one message. The control files were parsed
/// once into `envelope`; the body is read only if a module asks `message` for it.
pub struct Context<'a> {
    pub courier: &'a Courier,
    pub envelope: &'a mut Envelope,
    pub message: &'a mut Message,
    /// The worker's store (TtlDb tables and rate counters), connected on first use.
    pub store: &'a mut Store,
    /// The worker's resolver (the `[dns]` settings), its deadline set to the message's.
    pub dns: &'a mut Resolver,
    /// The per-message deadline; network calls bound their timeouts by it.
    pub deadline: Instant,
}

/// One policy module. Built once (before the workers fork) from its config section.
pub trait Filter {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult;

    /// Whether `check` may wait for something outside the process: the network, DNS, another
    /// process (clamd, spamd, authdaemond, sendmail), a store and its locks. The chain reads
    /// the thread CPU clock (a system call) around such a module for the accounting line;
    /// modules that never wait (they only look at the envelope, the message and local files)
    /// share one reading between them. When in doubt, wait.
    fn waits(&self) -> bool {
        true
    }

    /// Open per-process resources (database connections, sockets). Called in each worker after
    /// fork, never in the master.
    fn open(&mut self) -> Result<(), FilterError> {
        Ok(())
    }

    /// The TtlDb tables this module keeps (for `rustfilter ttldb purge`).
    fn ttl_tables(&self) -> Vec<TtlDb> {
        Vec::new()
    }

    /// The rate-counter tables this module keeps.
    fn counters(&self) -> Vec<Counter> {
        Vec::new()
    }
}
