//! SPF (net/spf.rs): record parsing, and a whole check_host evaluation (mechanisms, macro
//! expansion, explanations, the DNS-term and void-lookup limits) against a zone made from the
//! input. Input lines: 1 the MAIL FROM, 2 the HELO name, then one or more TXT records; the
//! checked domain gets the first, any other name one picked by its length.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use rustfilter::net::dns::{DnsError, Lookup};
use rustfilter::net::spf::{SpfOptions, check_mail_from, parse_record};

struct Zone<'a> {
    records: Vec<&'a str>,
    queries: usize,
}

impl Zone<'_> {
    /// Names starting with `nx` do not exist: void lookups.
    fn exists(&mut self, name: &str) -> Result<(), DnsError> {
        self.queries += 1;
        // Far more than the RFC limits allow: the evaluator must stop long before.
        assert!(self.queries < 1000, "unbounded DNS queries");
        if name.starts_with("nx") {
            Err(DnsError::NxDomain)
        } else {
            Ok(())
        }
    }
}

impl Lookup for Zone<'_> {
    fn a(&mut self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        self.exists(name)?;
        Ok(vec![
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(198, 51, 100, 7),
        ])
    }
    fn aaaa(&mut self, name: &str) -> Result<Vec<Ipv6Addr>, DnsError> {
        self.exists(name)?;
        Ok(vec![Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)])
    }
    fn txt(&mut self, name: &str) -> Result<Vec<String>, DnsError> {
        self.exists(name)?;
        if self.records.is_empty() {
            return Ok(Vec::new());
        }
        let record = if name.eq_ignore_ascii_case("example.com") {
            self.records[0]
        } else {
            self.records[name.len() % self.records.len()]
        };
        Ok(vec![record.to_string()])
    }
    fn mx(&mut self, name: &str) -> Result<Vec<(u16, String)>, DnsError> {
        self.exists(name)?;
        Ok(vec![(10, format!("mx.{name}")), (20, format!("nx.{name}"))])
    }
    fn ptr(&mut self, _ip: IpAddr) -> Result<Vec<String>, DnsError> {
        self.queries += 1;
        Ok(vec![
            "mail.example.com".to_string(),
            "host.example.org".to_string(),
        ])
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(record) = parse_record(&text) {
        let _ = format!("{record:?}");
    }
    let mut lines = text.lines();
    let mail_from = lines.next().unwrap_or_default();
    let helo = lines.next().unwrap_or_default();
    let mut zone = Zone {
        records: lines.collect(),
        queries: 0,
    };
    let ip = if data.len().is_multiple_of(2) {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))
    } else {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
    };
    let opts = SpfOptions {
        receiver: "mx.receiver.example".to_string(),
        ..SpfOptions::default()
    };
    let result = check_mail_from(&mut zone, ip, mail_from, helo, &opts);
    let _ = result.verdict.as_str();
});
