//! comeagain — a minimal greylist (spec §7.5): the first message of a (sender, recipient) pair
//! is refused with `421 Please send the message again to prove you are not spamware or
//! virusware.`; any retry passes, however soon. Keys are `md5(sender ‖ recipient)` as written
//! (not lower-cased, like the reference) in the TtlDb `correspondents`; every message refreshes
//! them. A null sender gets no decision.

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterError, FilterResult, Verdict};
use crate::store::{StoreError, TtlDb, md5_key};

pub const TABLE: &str = "correspondents";
pub const REPLY: &str =
    "421 Please send the message again to prove you are not spamware or virusware.";

pub struct ComeAgain {
    db: TtlDb,
    /// The current unix time; tests replace it.
    pub clock: fn() -> i64,
}

pub fn build(sec: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    Ok(Box::new(ComeAgain::from_section(sec)?))
}

impl ComeAgain {
    pub fn from_section(sec: &Section<'_>) -> Result<ComeAgain, ConfigError> {
        let ttl = super::greylist::seconds(sec, "senders_ttl", 2_592_000)?;
        let purge_interval = super::greylist::seconds(sec, "senders_purge_interval", 43200)?;
        super::initialized("comeagain");
        Ok(ComeAgain {
            db: TtlDb {
                name: TABLE.into(),
                ttl,
                purge_interval,
            },
            clock: crate::store::now,
        })
    }
}

impl Filter for ComeAgain {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let sender = match ctx.envelope.sender() {
            None | Some("") => return Ok(Verdict::Continue),
            Some(s) => s.to_string(),
        };
        let now = (self.clock)();
        let fail = |e: StoreError| FilterError::new(format!("comeagain TtlDb: {e}"));
        ctx.store.maybe_purge(&self.db, now).map_err(fail)?;
        let keys: Vec<String> = ctx
            .envelope
            .recipients()
            .iter()
            .map(|r| md5_key(&[&sender, &r.addr]))
            .collect();
        let all_known = ctx
            .store
            .transaction(&[&self.db], &[], |tx| {
                let mut all_known = true;
                for key in &keys {
                    all_known &= tx.get(TABLE, key)?.is_some();
                    tx.set(TABLE, key, now)?;
                }
                Ok(all_known)
            })
            .map_err(fail)?;
        Ok(if all_known {
            Verdict::Continue
        } else {
            Verdict::reply(REPLY)
        })
    }

    fn ttl_tables(&self) -> Vec<TtlDb> {
        vec![self.db.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::stateful_testutil::{Backend, Harness, set_clock, test_clock};

    const T0: f64 = 1_700_000_000.0;

    fn comeagain(h: &Harness, text: &str) -> ComeAgain {
        let mut f = h
            .section("comeagain", text, ComeAgain::from_section)
            .expect("builds");
        f.clock = test_clock;
        f
    }

    #[test]
    fn settings() {
        let h = Harness::new(Backend::Sqlite, "s\n");
        let f = comeagain(&h, "");
        assert_eq!(
            f.ttl_tables(),
            vec![TtlDb {
                name: TABLE.into(),
                ttl: 2_592_000,
                purge_interval: 43200
            }]
        );
        let f = comeagain(
            &h,
            "[comeagain.py]\nsenders_ttl = 10\nsenders_purge_interval = 5\n",
        );
        assert_eq!((f.db.ttl, f.db.purge_interval), (10, 5));
        assert!(
            h.section(
                "comeagain",
                "[comeagain]\nsenders_ttl = -1\n",
                ComeAgain::from_section
            )
            .is_err()
        );
        assert!(
            h.section(
                "comeagain",
                "[comeagain]\ngreylist_time = 1\n",
                ComeAgain::from_section
            )
            .is_err()
        );
    }

    fn first_message_is_refused_any_retry_passes(backend: Backend) {
        let h = Harness::new(backend, "sA@x.example\nrb@e2e.test\nR\nN\n");
        let f = comeagain(&h, "");
        set_clock(T0);
        assert_eq!(h.run(&f), Verdict::reply(REPLY));
        assert_eq!(h.run(&f), Verdict::Continue);
        // Refreshed on every message.
        set_clock(T0 + 100.0);
        assert_eq!(h.run(&f), Verdict::Continue);
        assert_eq!(
            h.dump(TABLE),
            vec![(md5_key(&["A@x.example", "b@e2e.test"]), T0 as i64 + 100)]
        );
        // Keys keep the case: another spelling is another pair.
        h.control("sa@x.example\nrb@e2e.test\nR\nN\n");
        assert_eq!(h.run(&f), Verdict::reply(REPLY));
        // One new recipient among known ones: refused, and all of them recorded.
        h.control("sa@x.example\nrb@e2e.test\nR\nN\nrc@e2e.test\nR\nN\n");
        assert_eq!(h.run(&f), Verdict::reply(REPLY));
        assert_eq!(h.run(&f), Verdict::Continue);
    }

    fn null_sender_gets_no_decision(backend: Backend) {
        let h = Harness::new(backend, "s\nrb@e2e.test\nR\nN\n");
        let f = comeagain(&h, "");
        assert_eq!(h.run(&f), Verdict::Continue);
        h.control("rb@e2e.test\nR\nN\n");
        assert_eq!(h.run(&f), Verdict::Continue);
        assert_eq!(h.dump(TABLE), vec![]);
    }

    fn expired_pairs_are_forgotten(backend: Backend) {
        let h = Harness::new(backend, "sa@x.example\nrb@e2e.test\nR\nN\n");
        let f = comeagain(
            &h,
            "[comeagain]\nsenders_ttl = 100\nsenders_purge_interval = 10\n",
        );
        set_clock(T0);
        assert_eq!(h.run(&f), Verdict::reply(REPLY));
        set_clock(T0 + 50.0);
        assert_eq!(h.run(&f), Verdict::Continue);
        set_clock(T0 + 200.0);
        assert_eq!(h.run(&f), Verdict::reply(REPLY));
    }

    fn store_failure_is_an_error(backend: Backend) {
        let h = Harness::new(backend, "sa@x.example\nrb@e2e.test\nR\nN\n");
        let f = comeagain(&h, "");
        h.break_store();
        assert!(h.run_result(&f).is_err());
    }

    crate::filters::stateful_testutil::on_both_backends!(
        first_message_is_refused_any_retry_passes,
        null_sender_gets_no_decision,
        expired_pairs_are_forgotten,
        store_failure_is_an_error,
    );
}
