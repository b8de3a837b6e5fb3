//! A small blocking DNS stub resolver: /etc/resolv.conf (or `[dns] nameservers`), UDP with
//! EDNS0, TCP on truncation, ID / question / source checks, CNAME chains, A / AAAA / TXT / MX /
//! PTR. Results keep NXDOMAIN, NODATA (an empty answer), SERVFAIL and timeouts apart.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Why a lookup gave no answer. NODATA is not an error: it is `Ok` with no records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The name does not exist (RCODE 3).
    NxDomain,
    /// The server failed (SERVFAIL, REFUSED, …): RCODE given.
    ServerFailure(u8),
    /// No server answered within the time allowed.
    Timeout,
    /// A local or network error, or an answer that could not be parsed.
    Other(String),
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsError::NxDomain => f.write_str("NXDOMAIN"),
            DnsError::ServerFailure(rcode) => write!(f, "server failure (RCODE {rcode})"),
            DnsError::Timeout => f.write_str("timeout"),
            DnsError::Other(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for DnsError {}

/// The lookups modules and the SPF evaluator need. Implemented by [`Resolver`] (and, in tests of
/// the SPF evaluator, by the RFC 7208 suite's zone data).
pub trait Lookup {
    fn a(&mut self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError>;
    fn aaaa(&mut self, name: &str) -> Result<Vec<Ipv6Addr>, DnsError>;
    /// Each TXT record's strings concatenated (RFC 7208 §3.3), as bytes decoded lossily.
    fn txt(&mut self, name: &str) -> Result<Vec<String>, DnsError>;
    /// (preference, exchange) pairs, unsorted.
    fn mx(&mut self, name: &str) -> Result<Vec<(u16, String)>, DnsError>;
    /// Names for an address (reverse lookup).
    fn ptr(&mut self, ip: IpAddr) -> Result<Vec<String>, DnsError>;
}

/// Where and how to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    pub nameservers: Vec<SocketAddr>,
    /// Per attempt, per server.
    pub timeout: Duration,
    pub attempts: u32,
}
