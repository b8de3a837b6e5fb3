//! rustfilter — a Courier MTA global mail filter, the successor to courier-pythonfilter.
//!
//! Layers, top to bottom (an arrow only ever points down):
//! `main.rs` (command line) → [`daemon`] (courierfilter socket, pre-fork pool) →
//! [`chain`] + [`filter`] (policy engine) → [`filters`] (one file per module) →
//! [`courier`] / [`config`] (services used by filters).

pub mod archive;
pub mod chain;
pub mod config;
pub mod courier;
pub mod daemon;
pub mod filter;
pub mod filters;
pub mod logging;
pub mod net;
pub mod quarantine;
pub mod server;
pub mod stats;
pub mod store;
