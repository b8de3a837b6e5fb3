//! auto_whitelist — whitelist the correspondents of local users (spec §7.3). Outgoing mail (a
//! non-empty SMTP AUTH `i` record) records `K(sender, recipient) = now` for every recipient
//! other than the sender itself; incoming mail gets `200 Ok` when every recipient has written
//! to the sender before, i.e. `K(recipient, sender)` exists for each. `K(a, b)` is
//! `md5(lower(a) ‖ lower(b))` in the TtlDb `auto_whitelist`. Lookups do not refresh entries.
//! A message without a sender (`s` record) gets no decision, and so does one with no
//! undelivered recipients (the reference whitelists those: "all" of none).

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterError, FilterResult, Verdict};
use crate::store::{StoreError, TtlDb, md5_key};

pub const TABLE: &str = "auto_whitelist";

pub struct AutoWhitelist {
    db: TtlDb,
    /// The current unix time; tests replace it.
    pub clock: fn() -> i64,
}

pub fn build(sec: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    Ok(Box::new(AutoWhitelist::from_section(sec)?))
}

impl AutoWhitelist {
    pub fn from_section(sec: &Section<'_>) -> Result<AutoWhitelist, ConfigError> {
        let ttl = super::greylist::seconds(sec, "whitelist_ttl", 2_592_000)?;
        let purge_interval = super::greylist::seconds(sec, "whitelist_purge_interval", 43200)?;
        super::initialized("auto_whitelist");
        Ok(AutoWhitelist {
            db: TtlDb {
                name: TABLE.into(),
                ttl,
                purge_interval,
            },
            clock: crate::store::now,
        })
    }
}

impl Filter for AutoWhitelist {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let now = (self.clock)();
        let fail = |e: StoreError| FilterError::new(format!("auto_whitelist TtlDb: {e}"));
        ctx.store.maybe_purge(&self.db, now).map_err(fail)?;
        let Some(sender) = ctx.envelope.sender().map(str::to_lowercase) else {
            return Ok(Verdict::Continue);
        };
        let rcpts: Vec<String> = ctx
            .envelope
            .recipients()
            .iter()
            .map(|r| r.addr.to_lowercase())
            .collect();
        let outgoing = ctx.envelope.auth_user().is_some_and(|u| !u.is_empty());
        if outgoing {
            let keys: Vec<String> = rcpts
                .iter()
                .filter(|r| **r != sender)
                .map(|r| md5_key(&[&sender, r]))
                .collect();
            ctx.store
                .transaction(&[&self.db], &[], |tx| {
                    for key in &keys {
                        tx.set(TABLE, key, now)?;
                    }
                    Ok(())
                })
                .map_err(fail)?;
            return Ok(Verdict::Continue);
        }
        if rcpts.is_empty() {
            return Ok(Verdict::Continue);
        }
        let keys: Vec<String> = rcpts.iter().map(|r| md5_key(&[r, &sender])).collect();
        let all_known = ctx
            .store
            .transaction(&[&self.db], &[], |tx| {
                for key in &keys {
                    if tx.get(TABLE, key)?.is_none() {
                        return Ok(false);
                    }
                }
                Ok(true)
            })
            .map_err(fail)?;
        Ok(if all_known {
            Verdict::reply("200 Ok")
        } else {
            Verdict::Continue
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
    const OUT: &str =
        "sLocal@E2E.test\nrFriend@Remote.example\nR\nN\nrlocal@e2e.test\nR\nN\nilocal\n";

    fn whitelist(h: &Harness, text: &str) -> AutoWhitelist {
        let mut f = h
            .section("auto_whitelist", text, AutoWhitelist::from_section)
            .expect("builds");
        f.clock = test_clock;
        f
    }

    #[test]
    fn settings() {
        let h = Harness::new(Backend::Sqlite, "s\n");
        let f = whitelist(&h, "");
        assert_eq!(
            f.ttl_tables(),
            vec![TtlDb {
                name: TABLE.into(),
                ttl: 2_592_000,
                purge_interval: 43200
            }]
        );
        let f = whitelist(
            &h,
            "[auto_whitelist.py]\nwhitelist_ttl = 7\nwhitelist_purge_interval = 3\n",
        );
        assert_eq!((f.db.ttl, f.db.purge_interval), (7, 3));
        assert!(
            h.section(
                "auto_whitelist",
                "[auto_whitelist]\nwhitelist_ttl = 'long'\n",
                AutoWhitelist::from_section
            )
            .is_err()
        );
    }

    fn replies_from_correspondents_are_whitelisted(backend: Backend) {
        let h = Harness::new(backend, OUT);
        let f = whitelist(&h, "");
        set_clock(T0);
        // Outgoing: recorded (not the note to self), no decision.
        assert_eq!(h.run(&f), Verdict::Continue);
        assert_eq!(
            h.dump(TABLE),
            vec![(
                md5_key(&["local@e2e.test", "friend@remote.example"]),
                T0 as i64
            )]
        );
        // The reply comes in, in any case.
        h.control("sFRIEND@remote.example\nrLocal@e2e.test\nR\nN\n");
        assert_eq!(h.run(&f), Verdict::reply("200 Ok"));
        // Lookups do not refresh.
        set_clock(T0 + 100.0);
        assert_eq!(h.run(&f), Verdict::reply("200 Ok"));
        assert_eq!(h.dump(TABLE)[0].1, T0 as i64);
        // Every recipient must know the sender.
        h.control("sfriend@remote.example\nrlocal@e2e.test\nR\nN\nrother@e2e.test\nR\nN\n");
        assert_eq!(h.run(&f), Verdict::Continue);
        h.control("sstranger@remote.example\nrlocal@e2e.test\nR\nN\n");
        assert_eq!(h.run(&f), Verdict::Continue);
        // An empty `i` record is not authentication.
        h.control("slocal@e2e.test\nrsomeone@remote.example\nR\nN\ni\n");
        assert_eq!(h.run(&f), Verdict::Continue);
        assert_eq!(h.dump(TABLE).len(), 1);
    }

    fn no_recipients_or_no_sender_is_no_decision(backend: Backend) {
        let h = Harness::new(backend, OUT);
        let f = whitelist(&h, "");
        set_clock(T0);
        assert_eq!(h.run(&f), Verdict::Continue);
        // All recipients delivered already: not whitelisted (the reference's "all of none").
        h.control("sfriend@remote.example\nrlocal@e2e.test\nR\nN\nS0 250 ok\n");
        assert_eq!(h.run(&f), Verdict::Continue);
        h.control("rlocal@e2e.test\nR\nN\n");
        assert_eq!(h.run(&f), Verdict::Continue);
        h.control("rfriend@remote.example\nR\nN\nilocal\n");
        assert_eq!(h.run(&f), Verdict::Continue);
        assert_eq!(h.dump(TABLE).len(), 1);
    }

    fn expired_entries_are_forgotten(backend: Backend) {
        let h = Harness::new(backend, OUT);
        let f = whitelist(
            &h,
            "[auto_whitelist]\nwhitelist_ttl = 100\nwhitelist_purge_interval = 10\n",
        );
        set_clock(T0);
        assert_eq!(h.run(&f), Verdict::Continue);
        h.control("sfriend@remote.example\nrlocal@e2e.test\nR\nN\n");
        set_clock(T0 + 90.0);
        assert_eq!(h.run(&f), Verdict::reply("200 Ok"));
        set_clock(T0 + 150.0);
        assert_eq!(h.run(&f), Verdict::Continue);
    }

    fn store_failure_is_an_error(backend: Backend) {
        let h = Harness::new(backend, OUT);
        let f = whitelist(&h, "");
        h.break_store();
        assert!(h.run_result(&f).is_err());
    }

    crate::filters::stateful_testutil::on_both_backends!(
        replies_from_correspondents_are_whitelisted,
        no_recipients_or_no_sender_is_no_decision,
        expired_entries_are_forgotten,
        store_failure_is_an_error,
    );
}
