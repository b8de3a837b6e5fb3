//! log_aliases — log the original address of recipients reached through an alias (an `R`
//! record): `Message delivered to <addr> was originally addressed to <orig>.` No decision.

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterResult, Verdict};

pub struct LogAliases;

pub fn build(_: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    super::initialized("log_aliases");
    Ok(Box::new(LogAliases))
}

impl Filter for LogAliases {
    fn waits(&self) -> bool {
        false
    }

    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        for rcpt in ctx.envelope.recipients() {
            if rcpt.orig.is_empty() {
                continue;
            }
            let orig = rcpt.orig.strip_prefix("rfc822;").unwrap_or(&rcpt.orig);
            log::info!(
                "Message delivered to {} was originally addressed to {}.",
                rcpt.addr,
                orig
            );
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use crate::filter::Verdict;
    use crate::filters::testutil::{Fixture, build};

    #[test]
    fn never_decides_and_never_edits() {
        let control = "sa@x.example\nra@y.example\nRrfc822;alias@y.example\nN\n";
        let fx = Fixture::new(control, "\n", &[]);
        let f = build(super::build, "log_aliases", "", &fx.courier).expect("builds");
        assert_eq!(fx.run(f.as_ref()).expect("runs"), Verdict::Continue);
        assert_eq!(fx.control_text(), control);
    }
}
