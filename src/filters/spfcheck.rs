//! spfcheck — refuse mail whose sender's domain says, by SPF, that the client may not send for
//! it (spec §7.21): `fail` gives `517 SPF returns deny`.
//!
//! The MAIL FROM identity is checked (RFC 7208 `check_host`) with the HELO name taken from the
//! `f` record (word index 1 of `dns; mx.example.org (rdns [1.2.3.4])`; `unknown` when the
//! record is missing or short). A null sender, or mail without a client address (DECISIONS §4),
//! gets no decision, as do `pass`, `neutral`, `softfail`, `none` and `permerror`.
//!
//! `temperror` (a DNS failure or timeout while checking) is a tempfail,
//! `451 4.4.3 SPF temporary error, try again later`, where the reference makes no decision:
//! RFC 7208 §8.6 recommends a 4xx, and accepting would let mail the domain forbids through
//! whenever its DNS (or ours) is briefly unreachable. The sender retries, as it does for
//! any check that could not be done (DECISIONS §3).
//!
//! The lookups of one check stop at the message's deadline or after the SPF time limit
//! (20 s), whichever comes first.

use std::time::Instant;

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterError, FilterResult, Verdict};
use crate::net::spf::{self, SpfOptions, SpfResult};

pub const DENY: &str = "517 SPF returns deny";
pub const TEMPERROR: &str = "451 4.4.3 SPF temporary error, try again later";

/// The SPF check on a message, shared with whitelist_spf.
pub(crate) struct SpfChecker {
    options: SpfOptions,
}

impl SpfChecker {
    pub(crate) fn new() -> SpfChecker {
        SpfChecker {
            options: SpfOptions::default(),
        }
    }

    /// The SPF result for the message's sender, or `None` when there is nothing to check
    /// (null or missing sender, no client address).
    pub(crate) fn check(&self, ctx: &mut Context<'_>) -> Result<Option<SpfResult>, FilterError> {
        let Some(ip) = ctx.envelope.client_ip() else {
            return Ok(None);
        };
        let sender = match ctx.envelope.sender() {
            None | Some("") => return Ok(None),
            Some(s) => s,
        };
        let helo = helo_name(ctx.envelope.senders_mta());
        // The SPF time limit, within the message's deadline (restored afterwards).
        ctx.dns
            .set_deadline(ctx.deadline.min(Instant::now() + self.options.time_limit));
        let result = spf::check_mail_from(ctx.dns, ip, sender, helo, &self.options);
        ctx.dns.set_deadline(ctx.deadline);
        log::debug!(
            "SPF {} for {sender} from {ip} (helo {helo}): {}",
            result.verdict,
            result.detail
        );
        Ok(Some(result))
    }
}

/// Word index 1 of the `f` record split on single spaces; `unknown` without one.
pub fn helo_name(f: Option<&str>) -> &str {
    f.and_then(|f| f.split(' ').nth(1))
        .filter(|w| !w.is_empty())
        .unwrap_or("unknown")
}

pub struct Spfcheck {
    spf: SpfChecker,
}

pub fn build(_: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    super::initialized("spfcheck");
    Ok(Box::new(Spfcheck {
        spf: SpfChecker::new(),
    }))
}

impl Filter for Spfcheck {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let Some(result) = self.spf.check(ctx)? else {
            return Ok(Verdict::Continue);
        };
        Ok(match result.verdict {
            spf::Verdict::Fail => Verdict::reply(DENY),
            spf::Verdict::TempError => {
                log::warn!("spfcheck: SPF temperror: {}", result.detail);
                Verdict::reply(TEMPERROR)
            }
            _ => Verdict::Continue,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::UdpSocket;
    use std::time::Duration;

    use super::*;
    use crate::filters::testutil::{Fixture, build as build_module};
    use crate::net::dns::{Resolver, ResolverConfig, testing};

    /// A name server that never answers: a bound UDP socket nobody reads.
    pub(crate) fn silent_resolver() -> (UdpSocket, Resolver) {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = sock.local_addr().expect("local addr");
        let resolver = Resolver::new(ResolverConfig {
            nameservers: vec![addr],
            timeout: Duration::from_millis(200),
            attempts: 1,
        });
        (sock, resolver)
    }

    pub(crate) fn control(sender: &str, ip: Option<&str>) -> String {
        let mut c =
            format!("s{sender}\nfdns; mx.example.test (rdns [192.0.2.9])\nrb@y.example\nR\nN\n");
        if let Some(ip) = ip {
            c.push_str(&format!("OTCPREMOTEIP={ip}\n"));
        }
        c
    }

    /// Run on the test name server (or `resolver`).
    pub(crate) fn run_with(
        f: &dyn Filter,
        sender: &str,
        ip: Option<&str>,
        resolver: Resolver,
    ) -> Verdict {
        let fx = Fixture::new(&control(sender, ip), "\n", &[]);
        fx.dns.replace(resolver);
        fx.run(f).expect("runs")
    }

    fn run(f: &dyn Filter, sender: &str, ip: Option<&str>) -> Verdict {
        run_with(f, sender, ip, testing::resolver())
    }

    fn spfcheck() -> Spfcheck {
        Spfcheck {
            spf: SpfChecker::new(),
        }
    }

    #[test]
    fn helo_is_word_one_of_f() {
        assert_eq!(
            helo_name(Some("dns; mx.example.org (rdns [1.2.3.4])")),
            "mx.example.org"
        );
        assert_eq!(helo_name(Some("dns;")), "unknown");
        assert_eq!(helo_name(None), "unknown");
    }

    #[test]
    fn fail_is_refused_and_the_rest_pass_on() {
        let f = spfcheck();
        // example.test: "v=spf1 ip4:127.0.0.0/8 mx -all"
        assert_eq!(
            run(&f, "a@example.test", Some("192.0.2.9")),
            Verdict::reply(DENY)
        );
        assert_eq!(
            run(&f, "a@example.test", Some("127.0.0.2")),
            Verdict::Continue
        );
        // _spf.example.test: "~all" → softfail
        assert_eq!(
            run(&f, "a@_spf.example.test", Some("192.0.2.9")),
            Verdict::Continue
        );
        // no SPF record → none
        assert_eq!(
            run(&f, "a@nospf.example.test", Some("192.0.2.9")),
            Verdict::Continue
        );
    }

    #[test]
    fn no_sender_or_no_client_is_no_decision() {
        let f = spfcheck();
        assert_eq!(run(&f, "", Some("192.0.2.9")), Verdict::Continue);
        assert_eq!(run(&f, "a@example.test", None), Verdict::Continue);
    }

    #[test]
    fn temperror_is_a_tempfail() {
        let (_sock, resolver) = silent_resolver();
        let f = spfcheck();
        assert_eq!(
            run_with(&f, "a@example.test", Some("192.0.2.9"), resolver),
            Verdict::reply(TEMPERROR)
        );
    }

    #[test]
    fn builds_without_keys() {
        let fx = Fixture::new("\n", "\n", &[]);
        assert!(build_module(super::build, "spfcheck", "", &fx.courier).is_ok());
        assert!(
            build_module(
                super::build,
                "spfcheck",
                "[spfcheck.py]\nx = 1\n",
                &fx.courier
            )
            .is_err()
        );
    }
}
