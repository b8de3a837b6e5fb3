//! whitelist_dnswl — accept mail from clients listed in a DNS whitelist (spec §7.24 as amended
//! by DECISIONS): the client address, reversed (IPv4 octets, IPv6 nibbles), is looked up as an
//! A record under each zone of `dnswl_zone` in turn. An answer inside 127.0.0.0/8, other than
//! `127.0.0.255` (dnswl.org's "query refused / over the limit"), whose last octet (the trust
//! level) is at least `min_trust`, gives `200 Ok`. Anything else — another answer, NXDOMAIN,
//! NODATA, a DNS error (logged) — moves on to the next zone, and after the last one the module
//! makes no decision: it only whitelists. Mail without a client address gets no decision.

use std::net::{IpAddr, Ipv4Addr};

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterResult, Verdict};
use crate::net::dns::{Lookup, reverse_name};

pub const DEFAULT_ZONE: &str = "list.dnswl.org";
/// dnswl.org's answer for refused queries: never a listing.
const REFUSED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 255);

pub struct WhitelistDnswl {
    zones: Vec<String>,
    min_trust: u8,
}

pub fn build(sec: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    Ok(Box::new(WhitelistDnswl::from_section(sec)?))
}

impl WhitelistDnswl {
    pub fn from_section(sec: &Section<'_>) -> Result<WhitelistDnswl, ConfigError> {
        // A single string is one zone (DECISIONS), which `string_list` gives.
        let mut zones = Vec::new();
        for zone in sec.string_list("dnswl_zone", &[DEFAULT_ZONE])? {
            let zone = zone.trim().trim_end_matches('.');
            if zone.is_empty() || zone.contains(char::is_whitespace) {
                return Err(sec.error("dnswl_zone", format!("'{zone}' is not a zone name")));
            }
            zones.push(zone.to_ascii_lowercase());
        }
        let min_trust = sec.int("min_trust", 0)?;
        let min_trust = u8::try_from(min_trust)
            .ok()
            .filter(|t| *t <= 3)
            .ok_or_else(|| sec.error("min_trust", "must be 0, 1, 2 or 3"))?;
        super::initialized("whitelist_dnswl");
        Ok(WhitelistDnswl { zones, min_trust })
    }

    /// Whether one answer is a listing trusted enough.
    fn listed(&self, addr: Ipv4Addr) -> bool {
        addr.octets()[0] == 127 && addr != REFUSED && addr.octets()[3] >= self.min_trust
    }
}

/// The query name's prefix: `4.3.2.1` for 1.2.3.4, the 32 reversed nibbles for IPv6.
pub fn reversed(ip: IpAddr) -> String {
    let name = reverse_name(ip);
    let suffix = match ip {
        IpAddr::V4(_) => ".in-addr.arpa",
        IpAddr::V6(_) => ".ip6.arpa",
    };
    name.strip_suffix(suffix).unwrap_or(&name).to_string()
}

impl Filter for WhitelistDnswl {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let Some(ip) = ctx.envelope.client_ip() else {
            return Ok(Verdict::Continue);
        };
        let prefix = reversed(ip);
        let mut verdict = Verdict::Continue;
        for zone in &self.zones {
            let name = format!("{prefix}.{zone}");
            match ctx.dns.a(&name) {
                Ok(addrs) => {
                    if let Some(hit) = addrs.iter().find(|a| self.listed(**a)) {
                        log::debug!("whitelist_dnswl: {ip} listed in {zone} ({hit})");
                        verdict = Verdict::reply("200 Ok");
                        break;
                    }
                    if !addrs.is_empty() {
                        log::debug!("whitelist_dnswl: {name} answers {addrs:?}: not a listing");
                    }
                }
                Err(crate::net::dns::DnsError::NxDomain) => {}
                Err(e) => log::warn!("whitelist_dnswl: lookup of {name} failed: {e}"),
            }
        }
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModulesConfig;
    use crate::filters::spfcheck::tests::silent_resolver;
    use crate::filters::testutil::{Fixture, build};
    use crate::net::dns::{Resolver, testing};

    fn module(settings: &str) -> WhitelistDnswl {
        let text = format!("[whitelist_dnswl.py]\n{settings}");
        let cfg = ModulesConfig::parse(std::path::Path::new("t.conf"), &text).expect("parses");
        let sec = cfg.section("whitelist_dnswl");
        let m = WhitelistDnswl::from_section(&sec).expect("builds");
        sec.finish().expect("known keys");
        m
    }

    fn run_with(f: &WhitelistDnswl, ip: Option<&str>, resolver: Resolver) -> Verdict {
        let mut c = "sa@x.example\nrb@y.example\nR\nN\n".to_string();
        if let Some(ip) = ip {
            c.push_str(&format!("OTCPREMOTEIP={ip}\n"));
        }
        let fx = Fixture::new(&c, "\n", &[]);
        fx.dns.replace(resolver);
        fx.run(f).expect("runs")
    }

    fn run(f: &WhitelistDnswl, ip: Option<&str>) -> Verdict {
        run_with(f, ip, testing::resolver())
    }

    const OK: fn() -> Verdict = || Verdict::reply("200 Ok");

    #[test]
    fn answers_in_127_whitelist() {
        let f = module("dnswl_zone = ['dnswl.test']\n");
        assert_eq!(run(&f, Some("127.0.0.2")), OK()); // 127.0.10.3
        assert_eq!(run(&f, Some("127.0.0.3")), OK()); // 127.0.10.0
        assert_eq!(run(&f, Some("127.0.0.4")), OK()); // 127.0.5.3
        assert_eq!(run(&f, Some("127.0.0.5")), Verdict::Continue); // 127.0.0.255
        assert_eq!(run(&f, Some("127.0.0.6")), Verdict::Continue); // 10.0.0.1
        assert_eq!(run(&f, Some("127.0.0.7")), Verdict::Continue); // NXDOMAIN
        assert_eq!(run(&f, None), Verdict::Continue);
    }

    #[test]
    fn ipv6_clients_use_nibbles() {
        let f = module("dnswl_zone = 'dnswl.test'\n");
        assert_eq!(run(&f, Some("::1")), OK());
        assert_eq!(run(&f, Some("2001:db8::1")), OK());
        assert_eq!(run(&f, Some("2001:db8::2")), Verdict::Continue);
        assert_eq!(
            reversed("2001:db8::1".parse().expect("ip")),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
        );
    }

    #[test]
    fn min_trust_compares_the_last_octet() {
        let f = module("dnswl_zone = ['dnswl.test']\nmin_trust = 1\n");
        assert_eq!(run(&f, Some("127.0.0.3")), Verdict::Continue); // trust 0
        assert_eq!(run(&f, Some("192.0.2.1")), OK()); // trust 1
        let f = module("dnswl_zone = ['dnswl.test']\nmin_trust = 3\n");
        assert_eq!(run(&f, Some("192.0.2.1")), Verdict::Continue);
        assert_eq!(run(&f, Some("127.0.0.4")), OK()); // 127.0.5.3
    }

    #[test]
    fn errors_move_on_to_the_next_zone() {
        // nsd refuses names outside its zones: a server failure, then the next zone answers.
        let f = module("dnswl_zone = ['nowhere.invalid', 'dnswl.test']\n");
        assert_eq!(run(&f, Some("127.0.0.2")), OK());
        // NXDOMAIN in the first zone, listed in the second.
        let f = module("dnswl_zone = ['example.test', 'dnswl.test.']\n");
        assert_eq!(run(&f, Some("127.0.0.2")), OK());
    }

    #[test]
    fn timeouts_are_no_decision() {
        let (_sock, resolver) = silent_resolver();
        let f = module("dnswl_zone = ['dnswl.test']\n");
        assert_eq!(run_with(&f, Some("127.0.0.2"), resolver), Verdict::Continue);
    }

    #[test]
    fn settings_are_checked() {
        let fx = Fixture::new("\n", "\n", &[]);
        let b = |t: &str| build(super::build, "whitelist_dnswl", t, &fx.courier).is_ok();
        assert!(b(""));
        assert!(b("[whitelist_dnswl.py]\nmin_trust = 3\n"));
        assert!(!b("[whitelist_dnswl.py]\nmin_trust = 4\n"));
        assert!(!b("[whitelist_dnswl.py]\nmin_trust = -1\n"));
        assert!(!b("[whitelist_dnswl.py]\ndnswl_zone = ['']\n"));
        assert!(!b("[whitelist_dnswl.py]\ndnswl_zone = 3\n"));
    }
}
