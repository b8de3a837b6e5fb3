//! The Courier installation: paths from `courier-config`, the single-line control files in
//! sysconfdir (`me`, `defaultdomain`, `locals`, …), the `.dat` lookups (hosteddomains, aliases,
//! smtpaccess), the queue control files ([`control`]) and the message body ([`message`]).

pub mod authdaemon;
pub mod config;
pub mod control;
pub mod dat;
pub mod message;
pub mod mime;
pub mod paths;
pub mod sendmail;
pub mod spool;
mod watch;

pub use config::Courier;
pub use paths::{CourierPaths, PathOverrides};
pub(crate) use watch::find_byte;
