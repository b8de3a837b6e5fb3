//! A small blocking DNS stub resolver: /etc/resolv.conf (or `[dns] nameservers`), UDP with
//! EDNS0, TCP on truncation, ID / question / source checks, CNAME chains, A / AAAA / TXT / MX /
//! PTR. Results keep NXDOMAIN, NODATA (an empty answer), SERVFAIL and timeouts apart.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::{ConfigError, ModulesConfig};

pub mod testing;
pub mod wire;

pub use wire::{RData, Record, type_from_name, type_name};

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

impl Default for ResolverConfig {
    /// What glibc uses with no /etc/resolv.conf: 127.0.0.1:53, 5 s, 2 attempts.
    fn default() -> ResolverConfig {
        ResolverConfig {
            nameservers: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 53))],
            timeout: ResolverConfig::DEFAULT_TIMEOUT,
            attempts: ResolverConfig::DEFAULT_ATTEMPTS,
        }
    }
}

impl ResolverConfig {
    pub const SECTION: &'static str = "dns";
    pub const RESOLV_CONF: &'static str = "/etc/resolv.conf";
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_ATTEMPTS: u32 = 2;
    /// glibc's caps (RES_MAXRETRANS 30 s, RES_MAXRETRY 5); also ours for `[dns]`.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
    pub const MAX_ATTEMPTS: u32 = 5;
    /// resolv.conf's limit (MAXNS); `[dns] nameservers` may list a few more.
    const MAX_RESOLV_NAMESERVERS: usize = 3;
    const MAX_NAMESERVERS: usize = 8;

    /// Read a resolv.conf: `nameserver` lines (IPv4 or IPv6, at most 3, as glibc), `options
    /// timeout:N attempts:N`. A missing or unreadable file, or one without nameservers, gives
    /// the defaults (127.0.0.1:53, 5 s, 2 attempts), as glibc does.
    pub fn from_resolv_conf(path: &Path) -> ResolverConfig {
        match std::fs::read(path) {
            Ok(bytes) => ResolverConfig::parse_resolv_conf(&String::from_utf8_lossy(&bytes)),
            Err(_) => ResolverConfig::default(),
        }
    }

    /// The text of a resolv.conf, see [`ResolverConfig::from_resolv_conf`].
    pub fn parse_resolv_conf(text: &str) -> ResolverConfig {
        let mut config = ResolverConfig::default();
        let mut nameservers = Vec::new();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // An unparsable address (e.g. with a zone name like %eth0) is skipped.
                    if let Some(addr) = words.next().and_then(|w| parse_nameserver(w).ok())
                        && nameservers.len() < Self::MAX_RESOLV_NAMESERVERS
                    {
                        nameservers.push(addr);
                    }
                }
                Some("options") => {
                    for opt in words {
                        if let Some(v) = opt.strip_prefix("timeout:") {
                            if let Ok(n) = v.parse::<u64>() {
                                config.timeout = Duration::from_secs(n.clamp(1, 30));
                            }
                        } else if let Some(v) = opt.strip_prefix("attempts:")
                            && let Ok(n) = v.parse::<u32>()
                        {
                            config.attempts = n.clamp(1, Self::MAX_ATTEMPTS);
                        }
                    }
                }
                _ => {}
            }
        }
        if !nameservers.is_empty() {
            config.nameservers = nameservers;
        }
        config
    }

    /// The `[dns]` section of the modules file: `nameservers` (a list of `'host'` or
    /// `'host:port'`, IPv6 as `'[::1]:53'`), `timeout` (seconds, may be fractional),
    /// `attempts`. What is not set comes from /etc/resolv.conf.
    pub fn from_config(modules: &ModulesConfig) -> Result<ResolverConfig, ConfigError> {
        Self::from_config_with(modules, Path::new(Self::RESOLV_CONF))
    }

    /// [`ResolverConfig::from_config`] with another resolv.conf for the fallback.
    pub fn from_config_with(
        modules: &ModulesConfig,
        resolv_conf: &Path,
    ) -> Result<ResolverConfig, ConfigError> {
        let sec = modules.section(Self::SECTION);
        let mut config = ResolverConfig::from_resolv_conf(resolv_conf);
        // Asked for even when absent, so that the unknown-key error lists it.
        let list = sec.string_list("nameservers", &[])?;
        if sec.has("nameservers") {
            if list.is_empty() {
                return Err(sec.error("nameservers", "the list is empty"));
            }
            if list.len() > Self::MAX_NAMESERVERS {
                return Err(sec.error(
                    "nameservers",
                    format!("at most {} name servers", Self::MAX_NAMESERVERS),
                ));
            }
            let mut servers = Vec::with_capacity(list.len());
            for entry in &list {
                servers.push(parse_nameserver(entry).map_err(|e| sec.error("nameservers", e))?);
            }
            config.nameservers = servers;
        }
        if let Some(t) = sec.opt_float("timeout")? {
            if !(t > 0.0 && t <= Self::MAX_TIMEOUT.as_secs_f64()) {
                return Err(sec.error("timeout", "must be more than 0 and at most 30 seconds"));
            }
            config.timeout = Duration::from_secs_f64(t);
        }
        if let Some(n) = sec.opt_int("attempts")? {
            if !(1..=i64::from(Self::MAX_ATTEMPTS)).contains(&n) {
                return Err(sec.error("attempts", "must be between 1 and 5"));
            }
            config.attempts = n as u32;
        }
        sec.finish()?;
        Ok(config)
    }

    /// The longest one lookup can wait for answers: every attempt at every server.
    pub fn lookup_time(&self) -> Duration {
        self.timeout
            .saturating_mul(self.attempts.max(1))
            .saturating_mul(self.nameservers.len().max(1) as u32)
    }
}

/// `192.0.2.1`, `192.0.2.1:5353`, `::1`, `[::1]`, `[::1]:5353`: a name server's address
/// (port 53 when none is given). Host names are refused: a resolver cannot need one.
pub fn parse_nameserver(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    match bare.parse::<IpAddr>() {
        Ok(ip) => Ok(SocketAddr::new(ip, 53)),
        Err(_) => Err(format!(
            "'{text}' is not an IP address with an optional port (e.g. '127.0.0.1:53', '[::1]:53')"
        )),
    }
}

/// The reverse-lookup name of an address: `4.3.2.1.in-addr.arpa`, or the 32 nibbles of an
/// IPv6 address in reverse under `ip6.arpa`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
            }
            name.push_str("ip6.arpa");
            name
        }
    }
}

/// The outcome of one lookup: the CNAMEs followed, then the records of the asked type at the
/// end of the chain (empty for NODATA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// (alias, target) pairs, in order.
    pub cnames: Vec<(String, String)>,
    /// The name the records belong to (the question, or the last CNAME target).
    pub name: String,
    pub records: Vec<RData>,
}

/// CNAME hops followed in one lookup (within answers and through new queries).
const MAX_CNAME_HOPS: usize = 8;
/// Largest DNS message (TCP length prefix); UDP answers are read into a buffer this size too.
const MAX_MESSAGE: usize = 65535;

/// A blocking stub resolver. Not shared between threads: each worker makes its own.
#[derive(Debug, Clone)]
pub struct Resolver {
    config: ResolverConfig,
    /// The overall budget, e.g. of one message (see [`Resolver::set_deadline`]).
    deadline: Option<Instant>,
}

impl Resolver {
    pub fn new(config: ResolverConfig) -> Resolver {
        Resolver {
            config,
            deadline: None,
        }
    }

    /// A resolver configured by the `[dns]` section (and /etc/resolv.conf).
    pub fn from_config(modules: &ModulesConfig) -> Result<Resolver, ConfigError> {
        Ok(Resolver::new(ResolverConfig::from_config(modules)?))
    }

    /// A resolver configured by /etc/resolv.conf.
    pub fn system() -> Resolver {
        Resolver::new(ResolverConfig::from_resolv_conf(Path::new(
            ResolverConfig::RESOLV_CONF,
        )))
    }

    pub fn config(&self) -> &ResolverConfig {
        &self.config
    }

    /// No lookup waits past `deadline` (lookups after it fail at once with `Timeout`): lets a
    /// module bound all the lookups it makes for one message.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }

    pub fn clear_deadline(&mut self) {
        self.deadline = None;
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Look up `name`/`qtype`, following CNAMEs. `Ok` with no records is NODATA.
    pub fn resolve(&mut self, name: &str, qtype: u16) -> Result<Answer, DnsError> {
        let start = Instant::now();
        let mut deadline = start + self.config.lookup_time();
        if let Some(overall) = self.deadline {
            deadline = deadline.min(overall);
        }
        // Validate once, with a clear message, before anything is sent.
        wire::encode_name(name, &mut Vec::new()).map_err(DnsError::Other)?;
        let mut answer = Answer {
            cnames: Vec::new(),
            name: name.strip_suffix('.').unwrap_or(name).to_string(),
            records: Vec::new(),
        };
        loop {
            let msg = self.exchange(&answer.name, qtype, deadline)?;
            if msg.rcode() == wire::RCODE_NXDOMAIN {
                return Err(DnsError::NxDomain);
            }
            let asked = answer.name.clone();
            // Follow the chain as far as this answer goes.
            loop {
                let here: Vec<RData> = msg
                    .answers
                    .iter()
                    .filter(|r| {
                        r.rtype == qtype
                            && r.class == wire::CLASS_IN
                            && wire::same_name(&r.name, &answer.name)
                    })
                    .map(|r| r.data.clone())
                    .collect();
                if !here.is_empty() {
                    answer.records = here;
                    return Ok(answer);
                }
                let next = msg.answers.iter().find_map(|r| match &r.data {
                    RData::Cname(target)
                        if qtype != wire::TYPE_CNAME
                            && r.class == wire::CLASS_IN
                            && wire::same_name(&r.name, &answer.name) =>
                    {
                        Some(target.clone())
                    }
                    _ => None,
                });
                let Some(target) = next else { break };
                if answer.cnames.len() >= MAX_CNAME_HOPS
                    || answer
                        .cnames
                        .iter()
                        .any(|(a, _)| wire::same_name(a, &target))
                {
                    return Err(DnsError::Other(format!(
                        "CNAME chain from {name} is too long or loops"
                    )));
                }
                answer.cnames.push((answer.name.clone(), target.clone()));
                answer.name = target;
            }
            if wire::same_name(&asked, &answer.name) {
                // No records of the type and no (further) alias: NODATA.
                return Ok(answer);
            }
            // The answer ended at an alias whose records it did not carry: ask for the target.
        }
    }

    /// One question to the servers in turn, `attempts` rounds, until an answer that is not
    /// a server failure; the last failure otherwise.
    fn exchange(
        &mut self,
        name: &str,
        qtype: u16,
        deadline: Instant,
    ) -> Result<wire::Message, DnsError> {
        let mut last = DnsError::Timeout;
        for _ in 0..self.config.attempts.max(1) {
            for &server in &self.config.nameservers {
                let now = Instant::now();
                if now >= deadline {
                    return Err(last);
                }
                let try_deadline = (now + self.config.timeout).min(deadline);
                let result = exchange_udp(server, name, qtype, try_deadline).and_then(|msg| {
                    if msg.truncated() {
                        // TC: the whole answer over TCP, within a fresh try's time.
                        let now = Instant::now();
                        exchange_tcp(
                            server,
                            name,
                            qtype,
                            (now + self.config.timeout).min(deadline),
                        )
                    } else {
                        Ok(msg)
                    }
                });
                match result {
                    Ok(msg) => match msg.rcode() {
                        wire::RCODE_NOERROR | wire::RCODE_NXDOMAIN => return Ok(msg),
                        rcode => last = DnsError::ServerFailure(rcode),
                    },
                    // A server's failure says more than another's silence or a network
                    // error, and an error more than silence.
                    Err(_) if matches!(last, DnsError::ServerFailure(_)) => {}
                    Err(DnsError::Timeout) if matches!(last, DnsError::Other(_)) => {}
                    Err(e) => last = e,
                }
            }
        }
        Err(last)
    }
}

/// 16 random bits from the kernel (getrandom; /dev/urandom if that fails).
fn random_id() -> u16 {
    let mut buf = [0u8; 2];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize
        && let Ok(mut f) = std::fs::File::open("/dev/urandom")
    {
        let _ = f.read_exact(&mut buf);
    }
    u16::from_ne_bytes(buf)
}

fn io_error(server: SocketAddr, e: std::io::Error) -> DnsError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => DnsError::Timeout,
        _ => DnsError::Other(format!("name server {server}: {e}")),
    }
}

fn remaining(deadline: Instant) -> Result<Duration, DnsError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(DnsError::Timeout)
    } else {
        Ok(left)
    }
}

/// Whether `msg` answers our query: ID, QR, opcode QUERY, and the same question (name
/// case-insensitive). A FORMERR without a question (an old server rejecting EDNS) also counts.
fn answers_query(msg: &wire::Message, id: u16, name: &str, qtype: u16) -> bool {
    if msg.id != id || !msg.is_response() || msg.opcode() != 0 {
        return false;
    }
    match &msg.question {
        Some((qname, t, c)) => *t == qtype && *c == wire::CLASS_IN && wire::same_name(qname, name),
        None => msg.rcode() == wire::RCODE_FORMERR,
    }
}

fn exchange_udp(
    server: SocketAddr,
    name: &str,
    qtype: u16,
    deadline: Instant,
) -> Result<wire::Message, DnsError> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).map_err(|e| io_error(server, e))?;
    // Connected: the kernel drops datagrams from any other address.
    socket.connect(server).map_err(|e| io_error(server, e))?;
    let mut edns = true;
    let mut id = random_id();
    let mut query = wire::build_query(id, name, qtype, edns).map_err(DnsError::Other)?;
    send_udp(&socket, &query, server)?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        socket
            .set_read_timeout(Some(remaining(deadline)?))
            .map_err(|e| io_error(server, e))?;
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            // A signal (a worker's SIGCHLD, say) is no reason to give up: wait out the rest.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(server, e)),
        };
        // Anything unparsable or not matching is ignored, as a spoofed answer would be.
        let Ok(msg) = wire::parse(&buf[..n]) else {
            continue;
        };
        if !answers_query(&msg, id, name, qtype) {
            continue;
        }
        if msg.rcode() == wire::RCODE_FORMERR && edns {
            // A server that does not know EDNS0: ask again without it (RFC 6891 §7).
            edns = false;
            id = random_id();
            query = wire::build_query(id, name, qtype, edns).map_err(DnsError::Other)?;
            send_udp(&socket, &query, server)?;
            continue;
        }
        return Ok(msg);
    }
}

fn send_udp(socket: &UdpSocket, query: &[u8], server: SocketAddr) -> Result<(), DnsError> {
    loop {
        match socket.send(query) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(server, e)),
        }
    }
}

fn exchange_tcp(
    server: SocketAddr,
    name: &str,
    qtype: u16,
    deadline: Instant,
) -> Result<wire::Message, DnsError> {
    let mut stream = TcpStream::connect_timeout(&server, remaining(deadline)?)
        .map_err(|e| io_error(server, e))?;
    let id = random_id();
    let query = wire::build_query(id, name, qtype, true).map_err(DnsError::Other)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
    framed.extend_from_slice(&query);
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(|e| io_error(server, e))?;
    stream.write_all(&framed).map_err(|e| io_error(server, e))?;
    let mut len = [0u8; 2];
    read_full(&mut stream, &mut len, deadline, server)?;
    let len = u16::from_be_bytes(len) as usize;
    let mut buf = vec![0u8; len];
    read_full(&mut stream, &mut buf, deadline, server)?;
    let msg = wire::parse(&buf)
        .map_err(|e| DnsError::Other(format!("name server {server} (TCP): {e}")))?;
    if !answers_query(&msg, id, name, qtype) {
        return Err(DnsError::Other(format!(
            "name server {server} (TCP) answered another question"
        )));
    }
    Ok(msg)
}

/// Fill `buf`, each read bounded by what is left until `deadline`.
fn read_full(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    server: SocketAddr,
) -> Result<(), DnsError> {
    let mut got = 0;
    while got < buf.len() {
        stream
            .set_read_timeout(Some(remaining(deadline)?))
            .map_err(|e| io_error(server, e))?;
        match stream.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(DnsError::Other(format!(
                    "name server {server} closed the TCP connection mid-answer"
                )));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(server, e)),
        }
    }
    Ok(())
}

fn records<T>(
    resolver: &mut Resolver,
    name: &str,
    qtype: u16,
    pick: impl Fn(RData) -> Option<T>,
) -> Result<Vec<T>, DnsError> {
    Ok(resolver
        .resolve(name, qtype)?
        .records
        .into_iter()
        .filter_map(pick)
        .collect())
}

impl Lookup for Resolver {
    fn a(&mut self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        records(self, name, wire::TYPE_A, |r| match r {
            RData::A(ip) => Some(ip),
            _ => None,
        })
    }

    fn aaaa(&mut self, name: &str) -> Result<Vec<Ipv6Addr>, DnsError> {
        records(self, name, wire::TYPE_AAAA, |r| match r {
            RData::Aaaa(ip) => Some(ip),
            _ => None,
        })
    }

    fn txt(&mut self, name: &str) -> Result<Vec<String>, DnsError> {
        records(self, name, wire::TYPE_TXT, |r| match r {
            RData::Txt(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            _ => None,
        })
    }

    fn mx(&mut self, name: &str) -> Result<Vec<(u16, String)>, DnsError> {
        records(self, name, wire::TYPE_MX, |r| match r {
            RData::Mx(pref, host) => Some((pref, host)),
            _ => None,
        })
    }

    fn ptr(&mut self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        records(self, &reverse_name(ip), wire::TYPE_PTR, |r| match r {
            RData::Ptr(name) => Some(name),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules(text: &str) -> ModulesConfig {
        match ModulesConfig::parse(Path::new("/etc/rustfilter-modules.conf"), text) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn resolv_conf() {
        let c = ResolverConfig::parse_resolv_conf(
            "# comment\nsearch example.org\nnameserver 192.0.2.53 ; trailing\n\
             nameserver 2001:db8::53\nnameserver fe80::1%eth0\nnameserver bogus\n\
             nameserver 192.0.2.54\nnameserver 192.0.2.55\n\
             options ndots:2 timeout:3 attempts:4 rotate\n",
        );
        assert_eq!(
            c.nameservers,
            vec![
                "192.0.2.53:53".parse().unwrap(),
                "[2001:db8::53]:53".parse().unwrap(),
                "192.0.2.54:53".parse().unwrap(),
            ]
        );
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.attempts, 4);

        let c = ResolverConfig::parse_resolv_conf("options timeout:0 attempts:99\n");
        assert_eq!(c.nameservers, vec!["127.0.0.1:53".parse().unwrap()]);
        assert_eq!((c.timeout, c.attempts), (Duration::from_secs(1), 5));
        assert_eq!(
            ResolverConfig::from_resolv_conf(Path::new("/nonexistent/resolv.conf")),
            ResolverConfig::default()
        );
        assert_eq!(ResolverConfig::default().timeout, Duration::from_secs(5));
    }

    #[test]
    fn nameserver_syntax() {
        for (text, want) in [
            ("127.0.0.1", "127.0.0.1:53"),
            ("127.0.0.1:15353", "127.0.0.1:15353"),
            ("::1", "[::1]:53"),
            ("[::1]", "[::1]:53"),
            ("[::1]:5353", "[::1]:5353"),
            (" 10.0.0.1 ", "10.0.0.1:53"),
        ] {
            assert_eq!(parse_nameserver(text), Ok(want.parse().unwrap()), "{text}");
        }
        for bad in ["ns1.example.org", "127.0.0.1:99999", "", "[::1", "1.2.3.4:"] {
            assert!(parse_nameserver(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_section() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(
            &resolv,
            "nameserver 192.0.2.1\noptions timeout:7 attempts:3\n",
        )
        .unwrap();

        let c = ResolverConfig::from_config_with(&modules(""), &resolv).unwrap();
        assert_eq!(c.nameservers, vec!["192.0.2.1:53".parse().unwrap()]);
        assert_eq!((c.timeout, c.attempts), (Duration::from_secs(7), 3));

        let c = ResolverConfig::from_config_with(
            &modules("[dns]\nnameservers = ['127.0.0.1:15353', '[::1]:53', '192.0.2.9']\ntimeout = 0.5\n"),
            &resolv,
        )
        .unwrap();
        assert_eq!(
            c.nameservers,
            vec![
                "127.0.0.1:15353".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
                "192.0.2.9:53".parse().unwrap()
            ]
        );
        assert_eq!((c.timeout, c.attempts), (Duration::from_millis(500), 3));

        // a single string is a one-element list
        let c = ResolverConfig::from_config_with(
            &modules("[dns]\nnameservers = '127.0.0.1:15353'\nattempts = 1\n"),
            &resolv,
        )
        .unwrap();
        assert_eq!(c.nameservers, vec!["127.0.0.1:15353".parse().unwrap()]);
        assert_eq!((c.timeout, c.attempts), (Duration::from_secs(7), 1));

        for (text, needle) in [
            (
                "[dns]\nnameservers = ['ns.example.org']\n",
                "not an IP address",
            ),
            ("[dns]\nnameservers = []\n", "empty"),
            ("[dns]\nnameservers = [53]\n", "list of strings"),
            ("[dns]\ntimeout = 0\n", "more than 0"),
            ("[dns]\ntimeout = 31\n", "at most 30"),
            ("[dns]\ntimeout = 'x'\n", "a number"),
            ("[dns]\nattempts = 0\n", "between 1 and 5"),
            (
                "[dns]\nnameserver = ['127.0.0.1']\n",
                "unknown key 'nameserver' for module 'dns' (known keys: nameservers, timeout, attempts)",
            ),
        ] {
            let e = ResolverConfig::from_config_with(&modules(text), &resolv).unwrap_err();
            assert!(e.to_string().contains(needle), "{text}: {e}");
            assert!(e.to_string().contains("[dns]"), "{text}: {e}");
        }
    }

    #[test]
    fn lookup_time_covers_every_try() {
        let c = ResolverConfig {
            nameservers: vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.2:1".parse().unwrap(),
            ],
            timeout: Duration::from_millis(300),
            attempts: 3,
        };
        assert_eq!(c.lookup_time(), Duration::from_millis(1800));
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.10".parse().unwrap()),
            "10.2.0.192.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[test]
    fn bad_names_fail_before_sending() {
        // A port nothing listens on: the name check must come first.
        let mut r = Resolver::new(ResolverConfig {
            nameservers: vec!["127.0.0.1:9".parse().unwrap()],
            timeout: Duration::from_millis(100),
            attempts: 1,
        });
        let e = r.a(&"x".repeat(64)).unwrap_err();
        assert!(
            matches!(&e, DnsError::Other(m) if m.contains("label")),
            "{e}"
        );
        let e = r.a("a..b").unwrap_err();
        assert!(
            matches!(&e, DnsError::Other(m) if m.contains("empty label")),
            "{e}"
        );
    }

    #[test]
    fn a_passed_deadline_fails_at_once() {
        let mut r = Resolver::new(ResolverConfig {
            nameservers: vec!["127.0.0.1:9".parse().unwrap()],
            timeout: Duration::from_secs(5),
            attempts: 2,
        });
        r.set_deadline(Instant::now());
        let t = Instant::now();
        assert_eq!(r.a("example.test"), Err(DnsError::Timeout));
        assert!(t.elapsed() < Duration::from_millis(100));
        r.clear_deadline();
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn random_ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| random_id()).collect();
        assert!(ids.len() > 50, "{}", ids.len());
    }
}
