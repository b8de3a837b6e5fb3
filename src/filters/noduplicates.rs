//! noduplicates — remove recipients whose address repeats an earlier one (alias expansion can
//! produce them), by marking the duplicate delivered in the control file. No decision.

use std::collections::HashSet;

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterResult, Verdict};

pub struct NoDuplicates;

pub fn build(_: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    super::initialized("noduplicates");
    Ok(Box::new(NoDuplicates))
}

impl Filter for NoDuplicates {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let mut seen = HashSet::new();
        for rcpt in ctx.envelope.recipients() {
            if seen.contains(&rcpt.addr) {
                log::info!(
                    "noduplicates filter: Removing duplicate address \"{}\" from control file.",
                    rcpt.addr
                );
                ctx.envelope.remove_recipient(&rcpt)?;
            } else {
                seen.insert(rcpt.addr);
            }
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use crate::filter::Verdict;
    use crate::filters::testutil::{Fixture, build};

    #[test]
    fn second_copy_is_marked_delivered() {
        let control = "sa@x.example\nrg@y.example\nR\nN\nrg@y.example\nRrfc822;pm@y.example\nN\nro@y.example\nR\nN\n";
        let fx = Fixture::new(control, "\n", &[]);
        let f = build(super::build, "noduplicates", "", &fx.courier).expect("builds");
        assert_eq!(fx.run(f.as_ref()).expect("runs"), Verdict::Continue);
        let text = fx.control_text();
        assert!(text.starts_with(control), "{text}");
        let added: Vec<&str> = text[control.len()..].lines().collect();
        assert_eq!(added.len(), 2, "{added:?}");
        assert!(added[0].starts_with("I1 R 250 "), "{added:?}");
        assert!(added[1].starts_with("S1 "), "{added:?}");
        // Nothing left to remove on a second run.
        assert_eq!(fx.run(f.as_ref()).expect("runs"), Verdict::Continue);
        assert_eq!(
            fx.control_text().lines().count(),
            control.lines().count() + 2
        );
    }
}
