//! Queue control files, parsed once per message into an [`Envelope`] (spec §4). Values are
//! decoded with the reference's "malformed UTF-8" rule. Recipient edits append records to the
//! files (one `write` per edit) and update the in-memory view, so later modules and the reject
//! log see them.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// One recipient: `r` (address), `R` (original recipient / ORCPT), `N` (DSN flags).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recipient {
    pub addr: String,
    pub orig: String,
    pub dsn: String,
}

impl Recipient {
    pub fn new(addr: &str, orig: &str, dsn: &str) -> Recipient {
        Recipient {
            addr: addr.to_string(),
            orig: orig.to_string(),
            dsn: dsn.to_string(),
        }
    }
}

/// Why the control files could not be loaded.
#[derive(Debug)]
pub struct ControlError {
    pub path: PathBuf,
    pub error: io::Error,
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "control file {}: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for ControlError {}

/// The envelope of one message: every record of every control file, in order.
#[derive(Debug)]
pub struct Envelope {
    paths: Vec<PathBuf>,
}

impl Envelope {
    /// Read and parse the control files (bounded in size; a file that is missing, unreadable
    /// or too large is an error).
    pub fn load(paths: &[PathBuf]) -> Result<Envelope, ControlError> {
        let _ = paths;
        todo!("courier/control.rs")
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Decoded values of every record with this letter, across all files in order.
    pub fn values(&self, letter: u8) -> Vec<&str> {
        let _ = letter;
        todo!("courier/control.rs")
    }

    /// The first value with this letter.
    pub fn first(&self, letter: u8) -> Option<&str> {
        let _ = letter;
        todo!("courier/control.rs")
    }

    /// Envelope sender (`s`); `None` when there is no `s` record, `Some("")` for a null sender.
    pub fn sender(&self) -> Option<&str> {
        self.first(b's')
    }

    /// The `f` record (received-from-MTA).
    pub fn senders_mta(&self) -> Option<&str> {
        self.first(b'f')
    }

    /// The SMTP AUTH identity (`i`).
    pub fn auth_user(&self) -> Option<&str> {
        self.first(b'i')
    }

    /// Courier's message id (`M`).
    pub fn message_id(&self) -> Option<&str> {
        self.first(b'M')
    }

    /// The client address from the first `OTCPREMOTEIP=` record, IPv4-mapped IPv6 turned into
    /// IPv4. `None` without the record, and for a malformed value (logged once, at load).
    pub fn client_ip(&self) -> Option<IpAddr> {
        todo!("courier/control.rs")
    }

    /// Undelivered recipients across all files, in order.
    pub fn recipients(&self) -> Vec<Recipient> {
        todo!("courier/control.rs")
    }

    /// Append a recipient (`r`, `R`, `N`) to the last control file.
    pub fn add_recipient(&mut self, rcpt: &Recipient) -> io::Result<()> {
        let _ = rcpt;
        todo!("courier/control.rs")
    }

    /// Mark the first undelivered recipient equal to `rcpt` (all three fields) as delivered
    /// (`I<n> R 250 Ok - Removed by …` + `S<n> <time>` in its file). Returns whether one was found.
    pub fn remove_recipient(&mut self, rcpt: &Recipient) -> io::Result<bool> {
        let _ = rcpt;
        todo!("courier/control.rs")
    }

    /// Like `remove_recipient`, matching the address only.
    pub fn remove_recipient_addr(&mut self, addr: &str) -> io::Result<bool> {
        let _ = addr;
        todo!("courier/control.rs")
    }
}

/// The reference's value decoding: strip ASCII whitespace, then UTF-8, else
/// `(malformed utf8):` + quote_plus-style escaping with `@` kept.
pub fn decode_value(raw: &[u8]) -> String {
    let _ = raw;
    todo!("courier/control.rs")
}

/// Resolve a request path as the reference does: relative paths live under `L/tmp/`.
pub fn resolve_spool_path(localstatedir: &Path, path: &str) -> PathBuf {
    if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        localstatedir.join("tmp").join(path)
    }
}
