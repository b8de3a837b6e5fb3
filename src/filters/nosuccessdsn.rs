//! nosuccessdsn — drop "notify on success" DSN requests. A recipient whose `N` flags contain
//! `S` is replaced by one with the same address and ORCPT and the other flags kept (DECISIONS:
//! the reference clears them all). When nothing is left, the flags become `N` (never): the
//! sender asked for success notices only, and an empty `N` would mean Courier's default
//! failure and delay notices instead. No decision.

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::courier::control::Recipient;
use crate::filter::{Context, Filter, FilterResult, Verdict};

pub struct NoSuccessDsn;

pub fn build(_: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    super::initialized("nosuccessdsn");
    Ok(Box::new(NoSuccessDsn))
}

/// The DSN flags without `S`; `N` when nothing remains.
pub fn without_success(dsn: &str) -> String {
    let kept: String = dsn.chars().filter(|&c| c != 'S').collect();
    if kept.is_empty() {
        "N".to_string()
    } else {
        kept
    }
}

impl Filter for NoSuccessDsn {
    fn waits(&self) -> bool {
        false
    }

    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        // Copied out first (usually none, then nothing is allocated): the edits change the
        // envelope, and recipients added here are not looked at again.
        let asking: Vec<Recipient> = ctx
            .envelope
            .undelivered()
            .filter(|r| r.dsn.as_bytes().contains(&b'S'))
            .map(|r| r.to_recipient())
            .collect();
        for rcpt in asking {
            let replacement = Recipient::new(&rcpt.addr, &rcpt.orig, &without_success(&rcpt.dsn));
            ctx.envelope.add_recipient(&replacement)?;
            ctx.envelope.remove_recipient(&rcpt)?;
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::without_success;

    #[test]
    fn keeps_failure_and_delay() {
        assert_eq!(without_success("SFD"), "FD");
        assert_eq!(without_success("SF"), "F");
        assert_eq!(without_success("S"), "N");
        assert_eq!(without_success("FS"), "F");
    }
}

#[cfg(test)]
mod module_tests {
    use crate::courier::control::{Envelope, Recipient};
    use crate::filter::Verdict;
    use crate::filters::testutil::{Fixture, build};

    #[test]
    fn success_flag_is_dropped() {
        let control = "sa@x.example\nra@y.example\nRrfc822;a@y.example\nNSF\nrb@y.example\nR\nNF\nrc@y.example\nR\nNS\n";
        let fx = Fixture::new(control, "\n", &[]);
        let f = build(super::build, "nosuccessdsn", "", &fx.courier).expect("builds");
        assert_eq!(fx.run(f.as_ref()).expect("runs"), Verdict::Continue);
        let env = Envelope::load(std::slice::from_ref(&fx.control)).expect("reload");
        let mut got = env.recipients();
        got.sort_by(|a, b| a.addr.cmp(&b.addr));
        assert_eq!(
            got,
            vec![
                Recipient::new("a@y.example", "rfc822;a@y.example", "F"),
                Recipient::new("b@y.example", "", "F"),
                Recipient::new("c@y.example", "", "N"),
            ]
        );
    }
}
