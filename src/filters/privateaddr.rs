//! privateaddr — recipients that accept mail only from some senders. `private_rcpts` maps a
//! recipient address to regexes; a message to a listed recipient whose sender matches none of
//! them (matched from the start, Python `re.match`) gets
//! `517 Sender is not allowed by privacy settings.` The default is empty (DECISIONS; the
//! reference ships a live example). The recipient is the original address (`R`, minus
//! `rfc822;`) when there is one; with `locallowercase` it is lower-cased; domains compare
//! case-insensitively (DECISIONS §7), on both the recipient key and the sender.

use regex::Regex;

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterResult, Verdict};

pub const REFUSED_REPLY: &str = "517 Sender is not allowed by privacy settings.";

pub struct PrivateAddr {
    /// (recipient with lower-cased domain, patterns anchored at the start)
    rcpts: Vec<(String, Vec<Regex>)>,
}

pub fn build(sec: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    let mut rcpts = Vec::new();
    for (rcpt, patterns) in sec.string_list_map("private_rcpts")?.unwrap_or_default() {
        let mut compiled = Vec::new();
        for p in patterns {
            let re = Regex::new(&format!("^(?:{p})")).map_err(|e| {
                sec.error(
                    "private_rcpts",
                    format!("bad pattern for '{rcpt}': {p:?}: {e}"),
                )
            })?;
            compiled.push(re);
        }
        rcpts.push((lower_domain(&rcpt), compiled));
    }
    super::initialized("privateaddr");
    Ok(Box::new(PrivateAddr { rcpts }))
}

/// The address with its domain (after the last `@`) lower-cased.
fn lower_domain(addr: &str) -> String {
    match addr.rfind('@') {
        Some(at) => format!("{}{}", &addr[..at], addr[at..].to_ascii_lowercase()),
        None => addr.to_string(),
    }
}

impl Filter for PrivateAddr {
    fn waits(&self) -> bool {
        false
    }

    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        if self.rcpts.is_empty() {
            return Ok(Verdict::Continue);
        }
        let lowercase = ctx.courier.locallowercase();
        let sender = ctx.envelope.sender().unwrap_or("");
        let sender_key = lower_domain(sender);
        for rcpt in ctx.envelope.recipients() {
            let mut addr = if rcpt.orig.is_empty() {
                rcpt.addr.clone()
            } else {
                rcpt.orig
                    .strip_prefix("rfc822;")
                    .unwrap_or(&rcpt.orig)
                    .to_string()
            };
            if lowercase {
                addr = addr.to_lowercase();
            }
            let addr = lower_domain(&addr);
            let Some((_, patterns)) = self.rcpts.iter().find(|(r, _)| *r == addr) else {
                continue;
            };
            if !patterns.iter().any(|re| re.is_match(&sender_key)) {
                log::info!("Message to {addr} from {sender} refused by privateaddr.py");
                return Ok(Verdict::reply(REFUSED_REPLY));
            }
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::lower_domain;

    #[test]
    fn only_the_domain_is_lowered() {
        assert_eq!(lower_domain("Help@EE.Example.EDU"), "Help@ee.example.edu");
        assert_eq!(lower_domain("nodomain"), "nodomain");
    }
}

#[cfg(test)]
mod module_tests {
    use super::REFUSED_REPLY;
    use crate::filter::Verdict;
    use crate::filters::testutil::{Fixture, build};

    const CFG: &str = "[privateaddr.py]\nprivate_rcpts = {\n    'help@EE.example.edu': ['[^@]*@.*example.edu'],\n    # staff only\n    'boss@example.edu': ['alice@', 'bob@'],\n    }\n";

    fn check(control: &str, etc: &[(&str, &str)]) -> Verdict {
        let fx = Fixture::new(control, "\n", etc);
        let f = build(super::build, "privateaddr", CFG, &fx.courier).expect("builds");
        fx.run(f.as_ref()).expect("runs")
    }

    #[test]
    fn listed_recipient_needs_a_matching_sender() {
        assert_eq!(
            check("sx@example.edu\nrhelp@ee.example.edu\nR\nN\n", &[]),
            Verdict::Continue
        );
        assert_eq!(
            check("sx@Dept.Example.EDU\nrhelp@ee.example.edu\nR\nN\n", &[]),
            Verdict::Continue
        );
        assert_eq!(
            check("sx@evil.example\nrhelp@ee.example.edu\nR\nN\n", &[]),
            Verdict::reply(REFUSED_REPLY)
        );
        assert_eq!(
            check("salice@example.edu\nrboss@example.edu\nR\nN\n", &[]),
            Verdict::Continue
        );
        // Anchored at the start only, like Python's re.match.
        assert_eq!(
            check("smalice@example.edu\nrboss@example.edu\nR\nN\n", &[]),
            Verdict::reply(REFUSED_REPLY)
        );
        assert_eq!(
            check("s\nrboss@example.edu\nR\nN\n", &[]),
            Verdict::reply(REFUSED_REPLY)
        );
    }

    #[test]
    fn original_recipient_is_what_counts() {
        let control = "sx@evil.example\nrsomeone@ee.example.edu\nRrfc822;help@ee.example.edu\nN\n";
        assert_eq!(check(control, &[]), Verdict::reply(REFUSED_REPLY));
        let control = "sx@evil.example\nrhelp@ee.example.edu\nRrfc822;other@ee.example.edu\nN\n";
        assert_eq!(check(control, &[]), Verdict::Continue);
    }

    #[test]
    fn locallowercase_lowers_the_local_part() {
        let control = "sx@evil.example\nrBoss@example.edu\nR\nN\n";
        assert_eq!(check(control, &[]), Verdict::Continue);
        assert_eq!(
            check(control, &[("locallowercase", "")]),
            Verdict::reply(REFUSED_REPLY)
        );
    }

    #[test]
    fn default_is_empty_and_bad_patterns_are_config_errors() {
        let fx = Fixture::new(
            "sx@evil.example\nrhelp@ee.washington.edu\nR\nN\n",
            "\n",
            &[],
        );
        let f = build(super::build, "privateaddr", "", &fx.courier).expect("builds");
        assert_eq!(fx.run(f.as_ref()).expect("runs"), Verdict::Continue);
        let bad = "[privateaddr]\nprivate_rcpts = {'a@b': ['(unclosed']}\n";
        assert!(build(super::build, "privateaddr", bad, &fx.courier).is_err());
    }
}
