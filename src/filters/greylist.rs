//! greylist — triplet greylisting on (sender, recipient, client network), spec §7.9.
//!
//! The network is the first three octets of an IPv4 client (`10.1.10`) or the first three
//! hextets of an IPv6 one's exploded form (`2001:0db8:0000`). Per recipient the key is
//! `md5(sender_lc ‖ rcpt_lc ‖ network)`. A triplet first seen goes into `greylist_NotPassed`
//! with that time; once `greylist_time` has passed it is promoted to `greylist_Passed`, where
//! each use refreshes it. Unless every recipient passes, the reply is
//! `451 4.7.1 Greylisting in action, please come back in HH:MM:SS` (the longest wait).
//! A null sender, or mail without a client IP (DECISIONS §4), gets no decision. The whole
//! decision for all recipients is one store transaction, so concurrent workers and hosts agree.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterError, FilterResult, Verdict};
use crate::store::{Counter, StoreError, TtlDb, Tx, md5_key};

pub const PASSED: &str = "greylist_Passed";
pub const NOT_PASSED: &str = "greylist_NotPassed";

pub struct Greylist {
    passed: TtlDb,
    not_passed: TtlDb,
    /// Seconds a new triplet must wait before a retry passes.
    greylist_time: f64,
    /// The current unix time (with a fraction, as the reference compares floats); tests
    /// replace it.
    pub clock: fn() -> f64,
}

/// The current unix time in (fractional) seconds.
pub fn wall_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn build(sec: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    Ok(Box::new(Greylist::from_section(sec)?))
}

/// A non-negative int setting.
pub(crate) fn seconds(sec: &Section<'_>, key: &str, default: i64) -> Result<i64, ConfigError> {
    let v = sec.int(key, default)?;
    if v < 0 {
        return Err(sec.error(key, "must not be negative"));
    }
    Ok(v)
}

impl Greylist {
    pub fn from_section(sec: &Section<'_>) -> Result<Greylist, ConfigError> {
        let purge_interval = seconds(sec, "senders_purge_interval", 7200)?;
        let passed_ttl = seconds(sec, "senders_passed_ttl", 3_110_400)?;
        let not_passed_ttl = seconds(sec, "senders_not_passed_ttl", 86400)?;
        let greylist_time = sec.float("greylist_time", 300.0)?;
        if greylist_time.is_nan() || greylist_time < 0.0 {
            return Err(sec.error("greylist_time", "must not be negative"));
        }
        super::initialized("greylist");
        Ok(Greylist {
            passed: TtlDb {
                name: PASSED.into(),
                ttl: passed_ttl,
                purge_interval,
            },
            not_passed: TtlDb {
                name: NOT_PASSED.into(),
                ttl: not_passed_ttl,
                purge_interval,
            },
            greylist_time,
            clock: wall_clock,
        })
    }

    /// One recipient's key in both tables: update them, and return how long the triplet must
    /// still wait (`None`: it passes).
    fn decide(&self, tx: &mut dyn Tx, key: &str, now: f64) -> Result<Option<f64>, StoreError> {
        let stamp = now as i64;
        match tx.get_first(&[NOT_PASSED, PASSED], key)? {
            Some((0, first)) => {
                // A first-seen time after `now` (another host's clock ahead, or a worker that
                // waited for the lock with an older clock reading) never lengthens the wait.
                let wait = (first as f64 + self.greylist_time - now).min(self.greylist_time);
                if wait > 0.0 {
                    return Ok(Some(wait));
                }
                tx.set(PASSED, key, stamp)?;
                tx.delete(NOT_PASSED, key)?;
                Ok(None)
            }
            Some((_, last)) => {
                // Refreshing to the value it already has (a second use within the same
                // second) would change nothing but cost a write.
                if last != stamp {
                    tx.set(PASSED, key, stamp)?;
                }
                Ok(None)
            }
            None => {
                tx.set(NOT_PASSED, key, stamp)?;
                Ok(Some(self.greylist_time))
            }
        }
    }
}

/// `s.to_lowercase()`, without a copy when `s` is lower-case ASCII already (most addresses).
fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.to_lowercase())
    }
}

/// The network part of the key: IPv4 `a.b.c`, IPv6 the first three exploded hextets.
pub fn network(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:04x}:{:04x}:{:04x}", s[0], s[1], s[2])
        }
    }
}

/// `HH:MM:SS` of a wait in seconds: truncated to whole seconds, as a UTC time of day (so it
/// wraps at 24 hours, like the reference).
pub fn format_wait(wait: f64) -> String {
    let secs = (wait.max(0.0) as u64) % 86400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

impl Filter for Greylist {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let Some(ip) = ctx.envelope.client_ip() else {
            return Ok(Verdict::Continue);
        };
        let net = network(&ip);
        let sender = match ctx.envelope.sender() {
            None | Some("") => return Ok(Verdict::Continue),
            Some(s) => lowercase(s),
        };
        let fail = |e: StoreError| FilterError::new(format!("greylist TtlDb: {e}"));
        let purge_time = (self.clock)() as i64;
        ctx.store
            .maybe_purge(&self.passed, purge_time)
            .map_err(fail)?;
        ctx.store
            .maybe_purge(&self.not_passed, purge_time)
            .map_err(fail)?;
        let keys: Vec<String> = ctx
            .envelope
            .recipients()
            .iter()
            .map(|r| md5_key(&[&sender, &lowercase(&r.addr), &net]))
            .collect();
        let max_wait = ctx
            .store
            .transaction(&[&self.passed, &self.not_passed], &[], |tx| {
                // Read per attempt: a retried transaction runs later.
                let now = (self.clock)();
                let mut max_wait: Option<f64> = None;
                for key in &keys {
                    if let Some(wait) = self.decide(tx, key, now)? {
                        max_wait = Some(max_wait.map_or(wait, |m| m.max(wait)));
                    }
                }
                Ok(max_wait)
            })
            .map_err(fail)?;
        Ok(match max_wait {
            None => Verdict::Continue,
            Some(wait) => Verdict::reply(format!(
                "451 4.7.1 Greylisting in action, please come back in {}",
                format_wait(wait)
            )),
        })
    }

    fn ttl_tables(&self) -> Vec<TtlDb> {
        vec![self.passed.clone(), self.not_passed.clone()]
    }

    fn counters(&self) -> Vec<Counter> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::stateful_testutil::{Backend, Harness, set_clock, test_clock_f64};

    #[test]
    fn keys_lower_case_the_addresses() {
        assert!(matches!(
            lowercase("a.b@c.example"),
            Cow::Borrowed("a.b@c.example")
        ));
        assert_eq!(lowercase("A.b@C.Example"), "a.b@c.example");
        assert_eq!(lowercase("Ünï@X.example"), "ünï@x.example");
    }

    #[test]
    fn networks_are_the_reference_strings() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(network(&ip("10.1.10.163")), "10.1.10");
        assert_eq!(network(&ip("2001:db8::1")), "2001:0db8:0000");
        assert_eq!(network(&ip("2001:DB8:ab:cd::1")), "2001:0db8:00ab");
    }

    #[test]
    fn waits_are_truncated_times_of_day() {
        assert_eq!(format_wait(299.7), "00:04:59");
        assert_eq!(format_wait(300.0), "00:05:00");
        assert_eq!(format_wait(90000.0), "01:00:00");
        assert_eq!(format_wait(3661.9), "01:01:01");
    }

    #[test]
    fn settings() {
        let h = Harness::new(Backend::Sqlite, "sa@b.example\nrc@d.example\nR\nN\n");
        let g = h.section("greylist", "[greylist.py]\ngreylist_time = 60\nsenders_passed_ttl = 10\nsenders_not_passed_ttl = 20\nsenders_purge_interval = 30\n", Greylist::from_section).expect("builds");
        assert_eq!(g.greylist_time, 60.0);
        assert_eq!(
            g.ttl_tables(),
            vec![
                TtlDb {
                    name: PASSED.into(),
                    ttl: 10,
                    purge_interval: 30
                },
                TtlDb {
                    name: NOT_PASSED.into(),
                    ttl: 20,
                    purge_interval: 30
                }
            ]
        );
        let d = h
            .section("greylist", "", Greylist::from_section)
            .expect("defaults");
        assert_eq!(d.greylist_time, 300.0);
        assert_eq!(
            (d.passed.ttl, d.not_passed.ttl, d.passed.purge_interval),
            (3_110_400, 86400, 7200)
        );
        assert!(
            h.section(
                "greylist",
                "[greylist]\ngreylist_time = -1\n",
                Greylist::from_section
            )
            .is_err()
        );
        assert!(
            h.section(
                "greylist",
                "[greylist]\ngreylist_time = 'x'\n",
                Greylist::from_section
            )
            .is_err()
        );
        assert!(
            h.section(
                "greylist",
                "[greylist]\nbogus = 1\n",
                Greylist::from_section
            )
            .is_err()
        );
    }

    fn greylist(h: &Harness) -> Greylist {
        let mut g = h
            .section(
                "greylist",
                "[greylist]\ngreylist_time = 300\n",
                Greylist::from_section,
            )
            .expect("builds");
        g.clock = test_clock_f64;
        g
    }

    const T0: f64 = 1_700_000_000.25;
    const ONE: &str = "sAlice@Example.ORG\nrBob@E2E.test\nR\nN\nOTCPREMOTEIP=192.0.2.55\n";

    fn greylisted(wait: &str) -> Verdict {
        Verdict::reply(format!(
            "451 4.7.1 Greylisting in action, please come back in {wait}"
        ))
    }

    fn a_triplet_waits_then_passes(backend: Backend) {
        let h = Harness::new(backend, ONE);
        let g = greylist(&h);
        set_clock(T0);
        assert_eq!(h.run(&g), greylisted("00:05:00"));
        let key = md5_key(&["alice@example.org", "bob@e2e.test", "192.0.2"]);
        assert_eq!(h.dump(NOT_PASSED), vec![(key.clone(), T0 as i64)]);
        // A retry too early: the first-seen time is kept, the wait shrinks.
        set_clock(T0 + 0.45);
        assert_eq!(h.run(&g), greylisted("00:04:59"));
        set_clock(T0 + 200.0);
        assert_eq!(h.run(&g), greylisted("00:01:39"));
        assert_eq!(h.dump(NOT_PASSED), vec![(key.clone(), T0 as i64)]);
        // Another host of the same /24, other case: the same triplet.
        h.control("salice@example.org\nrBOB@e2e.test\nR\nN\nOTCPREMOTEIP=192.0.2.1\n");
        set_clock(T0 + 300.0);
        assert_eq!(h.run(&g), Verdict::Continue);
        assert_eq!(h.dump(NOT_PASSED), vec![]);
        assert_eq!(h.dump(PASSED), vec![(key.clone(), (T0 + 300.0) as i64)]);
        // Passed triplets are refreshed on use.
        set_clock(T0 + 5000.0);
        assert_eq!(h.run(&g), Verdict::Continue);
        assert_eq!(h.dump(PASSED), vec![(key, (T0 + 5000.0) as i64)]);
        // Another network is another triplet.
        h.control("salice@example.org\nrbob@e2e.test\nR\nN\nOTCPREMOTEIP=192.0.3.1\n");
        assert_eq!(h.run(&g), greylisted("00:05:00"));
    }

    fn every_recipient_must_pass(backend: Backend) {
        let h = Harness::new(
            backend,
            "sa@x.example\nrold@e2e.test\nR\nN\nOTCPREMOTEIP=2001:db8::7\n",
        );
        let g = greylist(&h);
        set_clock(T0);
        assert_eq!(h.run(&g), greylisted("00:05:00"));
        set_clock(T0 + 400.0);
        assert_eq!(h.run(&g), Verdict::Continue);
        // old passed, new is greylisted, and the wait of a partly waited one is the max.
        h.control(
            "sa@x.example\nrold@e2e.test\nR\nN\nrnew@e2e.test\nR\nN\nOTCPREMOTEIP=2001:db8::8\n",
        );
        set_clock(T0 + 500.0);
        assert_eq!(h.run(&g), greylisted("00:05:00"));
        set_clock(T0 + 560.0);
        assert_eq!(h.run(&g), greylisted("00:03:59"));
        // A delivered recipient (S1: "new") does not count.
        h.control("sa@x.example\nrold@e2e.test\nR\nN\nrnew@e2e.test\nR\nN\nS1 250 ok\nOTCPREMOTEIP=2001:db8::8\n");
        assert_eq!(h.run(&g), Verdict::Continue);
        set_clock(T0 + 800.0);
        h.control(
            "sa@x.example\nrold@e2e.test\nR\nN\nrnew@e2e.test\nR\nN\nOTCPREMOTEIP=2001:db8::8\n",
        );
        assert_eq!(h.run(&g), Verdict::Continue);
        let key_new = md5_key(&["a@x.example", "new@e2e.test", "2001:0db8:0000"]);
        assert!(h.dump(PASSED).iter().any(|(k, _)| *k == key_new));
        assert_eq!(h.dump(PASSED).len(), 2);
    }

    /// A first-seen time ahead of this host's clock (another host's clock is ahead) does not
    /// make the wait longer than greylist_time.
    fn first_seen_in_the_future(backend: Backend) {
        let h = Harness::new(backend, ONE);
        let g = greylist(&h);
        let key = md5_key(&["alice@example.org", "bob@e2e.test", "192.0.2"]);
        h.fx.store
            .borrow_mut()
            .transaction(&[&g.passed, &g.not_passed], &[], |tx| {
                tx.set(NOT_PASSED, &key, T0 as i64 + 100)
            })
            .expect("store");
        set_clock(T0);
        assert_eq!(h.run(&g), greylisted("00:05:00"));
        let mut g0 = h
            .section(
                "greylist",
                "[greylist]\ngreylist_time = 0\n",
                Greylist::from_section,
            )
            .expect("builds");
        g0.clock = test_clock_f64;
        assert_eq!(h.run(&g0), Verdict::Continue);
    }

    fn no_decision_without_sender_or_client_ip(backend: Backend) {
        let h = Harness::new(backend, "s\nrb@e2e.test\nR\nN\nOTCPREMOTEIP=192.0.2.1\n");
        let g = greylist(&h);
        set_clock(T0);
        assert_eq!(h.run(&g), Verdict::Continue);
        h.control("rb@e2e.test\nR\nN\nOTCPREMOTEIP=192.0.2.1\n");
        assert_eq!(h.run(&g), Verdict::Continue);
        h.control("sa@x.example\nrb@e2e.test\nR\nN\n");
        assert_eq!(h.run(&g), Verdict::Continue);
        h.control("sa@x.example\nrb@e2e.test\nR\nN\nOTCPREMOTEIP=300.1.1.1\n");
        assert_eq!(h.run(&g), Verdict::Continue);
        assert_eq!(h.dump(NOT_PASSED), vec![]);
    }

    fn old_entries_are_purged(backend: Backend) {
        let h = Harness::new(backend, ONE);
        let mut g = h
            .section(
                "greylist",
                "[greylist]\ngreylist_time = 50\nsenders_not_passed_ttl = 100\nsenders_passed_ttl = 1000\nsenders_purge_interval = 10\n",
                Greylist::from_section,
            )
            .expect("builds");
        g.clock = test_clock_f64;
        set_clock(T0);
        assert_eq!(h.run(&g), greylisted("00:00:50"));
        // Not retried within its ttl: forgotten, so greylisted afresh.
        set_clock(T0 + 150.0);
        assert_eq!(h.run(&g), greylisted("00:00:50"));
        set_clock(T0 + 210.0);
        assert_eq!(h.run(&g), Verdict::Continue);
        // Passed, but unused for longer than its ttl: forgotten too.
        set_clock(T0 + 2000.0);
        assert_eq!(h.run(&g), greylisted("00:00:50"));
        assert_eq!(h.dump(PASSED), vec![]);
    }

    fn store_failure_is_an_error(backend: Backend) {
        let h = Harness::new(backend, ONE);
        let g = greylist(&h);
        h.break_store();
        set_clock(T0);
        assert!(h.run_result(&g).is_err());
    }

    crate::filters::stateful_testutil::on_both_backends!(
        a_triplet_waits_then_passes,
        every_recipient_must_pass,
        first_seen_in_the_future,
        no_decision_without_sender_or_client_ip,
        old_entries_are_purged,
        store_failure_is_an_error,
    );
}
