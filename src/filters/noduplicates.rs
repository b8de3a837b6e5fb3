//! noduplicates — remove recipients whose address repeats an earlier one (alias expansion can
//! produce them), by marking the duplicate delivered in the control file. No decision.

use std::collections::HashSet;

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::courier::control::{Envelope, Recipient};
use crate::filter::{Context, Filter, FilterResult, Verdict};

pub struct NoDuplicates;

pub fn build(_: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    super::initialized("noduplicates");
    Ok(Box::new(NoDuplicates))
}

/// The recipients whose address repeats an earlier recipient's, in order. Usually none, and
/// then nothing is allocated.
fn duplicates(envelope: &Envelope) -> Vec<Recipient> {
    let mut seen = SeenAddrs::default();
    envelope
        .undelivered()
        .filter(|rcpt| !seen.insert(rcpt.addr))
        .map(|rcpt| rcpt.to_recipient())
        .collect()
}

/// Up to this many addresses are kept in an array and compared one by one; beyond, a hash set
/// keeps the cost linear.
const FEW: usize = 8;

/// The addresses seen so far.
#[derive(Default)]
struct SeenAddrs<'a> {
    few: [&'a str; FEW],
    few_len: usize,
    /// All of them, once there are more than [`FEW`] (made only then).
    many: Option<HashSet<&'a str>>,
}

impl<'a> SeenAddrs<'a> {
    /// Add `addr`; false when it was there already.
    fn insert(&mut self, addr: &'a str) -> bool {
        if let Some(many) = &mut self.many {
            return many.insert(addr);
        }
        if self.few[..self.few_len].contains(&addr) {
            return false;
        }
        if self.few_len < FEW {
            self.few[self.few_len] = addr;
            self.few_len += 1;
            return true;
        }
        let mut many: HashSet<&str> = self.few.into_iter().collect();
        many.insert(addr);
        self.many = Some(many);
        true
    }
}

impl Filter for NoDuplicates {
    fn waits(&self) -> bool {
        false
    }

    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        for rcpt in duplicates(ctx.envelope) {
            log::info!(
                "noduplicates filter: Removing duplicate address \"{}\" from control file.",
                rcpt.addr
            );
            ctx.envelope.remove_recipient(&rcpt)?;
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use crate::courier::control::Envelope;
    use crate::filter::Verdict;
    use crate::filters::testutil::{Fixture, build};

    #[test]
    fn duplicates_few_and_many_recipients() {
        for n in [3, super::FEW, super::FEW + 1, super::FEW + 2, 40] {
            // Recipient k has address a<k % 3>: all but the first three are duplicates.
            let mut control = String::from("sa@x.example\n");
            for k in 0..n {
                control.push_str(&format!("ra{}@y.example\nR{k}\nN\n", k % 3));
            }
            let env = Envelope::from_bytes(vec![("C".into(), control.into_bytes())]);
            let found: Vec<String> = super::duplicates(&env)
                .into_iter()
                .map(|r| format!("{} {}", r.addr, r.orig))
                .collect();
            let want: Vec<String> = (3..n)
                .map(|k| format!("a{}@y.example {k}", k % 3))
                .collect();
            assert_eq!(found, want, "{n} recipients");
        }
    }

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
