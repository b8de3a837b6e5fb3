//! fixed_reply (rustfilter's own) — answer every message with the configured `reply`, e.g.
//! `451 4.3.2 Maintenance, try again later` for a maintenance window, or a canned reply to test
//! a chain and Courier's handling of it. Multi-line replies are lines joined by `\n`.

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterResult, Verdict};

pub struct FixedReply {
    reply: String,
}

pub fn build(sec: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    let reply = sec.string("reply", "")?;
    if reply.is_empty() {
        return Err(sec.error(
            "reply",
            "is required (e.g. '451 4.3.2 Maintenance, try again later')",
        ));
    }
    for line in reply.split('\n') {
        let b = line.as_bytes();
        let coded = b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit);
        if !coded || (b.len() > 3 && b[3] != b' ' && b[3] != b'-') {
            return Err(sec.error(
                "reply",
                format!("line '{line}' does not start with a 3-digit code"),
            ));
        }
    }
    super::initialized("fixed_reply");
    Ok(Box::new(FixedReply { reply }))
}

impl Filter for FixedReply {
    fn waits(&self) -> bool {
        false
    }

    fn check(&self, _: &mut Context<'_>) -> FilterResult {
        Ok(Verdict::reply(self.reply.clone()))
    }
}

#[cfg(test)]
mod tests {
    use crate::filter::Verdict;
    use crate::filters::testutil::{Fixture, build};

    #[test]
    fn replies_as_configured() {
        let fx = Fixture::new("s\n", "\n", &[]);
        let cfg = "[fixed_reply]\nreply = '550-5.7.1 one\\n550 5.7.1 two'\n";
        let f = build(super::build, "fixed_reply", cfg, &fx.courier).expect("builds");
        assert_eq!(
            fx.run(f.as_ref()).expect("runs"),
            Verdict::reply("550-5.7.1 one\n550 5.7.1 two")
        );
    }

    #[test]
    fn reply_must_be_coded() {
        let fx = Fixture::new("s\n", "\n", &[]);
        assert!(build(super::build, "fixed_reply", "", &fx.courier).is_err());
        assert!(
            build(
                super::build,
                "fixed_reply",
                "[fixed_reply]\nreply = 'go away'\n",
                &fx.courier
            )
            .is_err()
        );
        assert!(
            build(
                super::build,
                "fixed_reply",
                "[fixed_reply]\nreply = '050 OK'\n",
                &fx.courier
            )
            .is_ok()
        );
    }
}
