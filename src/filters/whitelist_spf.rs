//! whitelist_spf — accept mail whose sender's domain authorizes the client by SPF (spec §7.26):
//! `pass` gives `200 Ok`; every other result (including `temperror`: this module only
//! whitelists) gives no decision. The check is spfcheck's (MAIL FROM identity, HELO from the
//! `f` record; null sender or no client address: no decision).

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterResult, Verdict};
use crate::net::spf;

use super::spfcheck::SpfChecker;

pub struct WhitelistSpf {
    spf: SpfChecker,
}

pub fn build(_: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    super::initialized("whitelist_spf");
    Ok(Box::new(WhitelistSpf {
        spf: SpfChecker::new(),
    }))
}

impl Filter for WhitelistSpf {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        Ok(match self.spf.check(ctx)? {
            Some(r) if r.verdict == spf::Verdict::Pass => Verdict::reply("200 Ok"),
            Some(r) if r.verdict == spf::Verdict::TempError => {
                log::warn!(
                    "whitelist_spf: SPF temperror, not whitelisted: {}",
                    r.detail
                );
                Verdict::Continue
            }
            _ => Verdict::Continue,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::spfcheck::tests::{run_with, silent_resolver};
    use crate::net::dns::testing;

    fn run(f: &dyn Filter, sender: &str, ip: Option<&str>) -> Verdict {
        run_with(f, sender, ip, testing::resolver())
    }

    #[test]
    fn only_pass_whitelists() {
        let f = WhitelistSpf {
            spf: SpfChecker::new(),
        };
        assert_eq!(
            run(&f, "a@example.test", Some("127.0.0.2")),
            Verdict::reply("200 Ok")
        );
        for (sender, ip) in [
            ("a@example.test", Some("192.0.2.9")),       // fail
            ("a@_spf.example.test", Some("192.0.2.9")),  // softfail
            ("a@nospf.example.test", Some("127.0.0.2")), // none
            ("", Some("127.0.0.2")),                     // null sender
            ("a@example.test", None),                    // no client
        ] {
            assert_eq!(run(&f, sender, ip), Verdict::Continue, "{sender} {ip:?}");
        }
    }

    #[test]
    fn temperror_is_no_decision() {
        let (_sock, resolver) = silent_resolver();
        let f = WhitelistSpf {
            spf: SpfChecker::new(),
        };
        assert_eq!(
            run_with(&f, "a@example.test", Some("127.0.0.2"), resolver),
            Verdict::Continue
        );
    }
}
