//! ratelimit — refuse a client that sends too many messages (spec §7.17, DECISIONS): every
//! message is counted under the client IP (with `limit_network`, its network as greylist
//! forms it) in the current minute; when the count over the last `interval` minutes exceeds
//! `max_connections`, the reply is `421 Too many messages from <ip>, slow down.` Refused
//! messages count too. The counts live in the store's counter table `ratelimit`, so all
//! workers (and, with PostgreSQL, all hosts) share them and they survive restarts. Mail
//! without a client IP (locally submitted) is not rate-limited.

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterError, FilterResult, Verdict};
use crate::store::{Counter, Store, StoreError};

pub const TABLE: &str = "ratelimit";

pub struct RateLimit {
    limit: Limit,
    limit_network: bool,
}

/// A counter table with its threshold: shared with ratelimitauth.
pub struct Limit {
    pub counter: Counter,
    pub max_connections: i64,
    /// The current unix time; tests replace it.
    pub clock: fn() -> i64,
}

impl Limit {
    /// `max_connections`, `interval` (minutes) and `senders_purge_interval` (seconds).
    pub fn from_section(
        sec: &Section<'_>,
        table: &str,
        max_connections: i64,
        interval: i64,
    ) -> Result<Limit, ConfigError> {
        let max_connections = super::greylist::seconds(sec, "max_connections", max_connections)?;
        let interval = sec.int("interval", interval)?;
        if !(1..=525_600).contains(&interval) {
            return Err(sec.error("interval", "must be between 1 and 525600 minutes"));
        }
        let purge_interval = super::greylist::seconds(sec, "senders_purge_interval", 43200)?;
        Ok(Limit {
            counter: Counter {
                name: table.into(),
                window_minutes: interval,
                purge_interval,
            },
            max_connections,
            clock: crate::store::now,
        })
    }

    /// Count one message for `key` in the current minute, atomically, and say whether the sum
    /// over the window is above the limit.
    pub fn exceeded(&self, store: &mut Store, key: &str) -> Result<bool, StoreError> {
        store.maybe_purge_counters(&self.counter, (self.clock)())?;
        let table = self.counter.name.as_str();
        let sum = store.transaction(&[], &[&self.counter], |tx| {
            // Read per attempt: a retried transaction runs later, maybe in the next minute.
            let minute = (self.clock)().div_euclid(60);
            tx.count(table, key, minute, 1)?;
            tx.count_sum(table, key, minute - self.counter.window_minutes + 1, minute)
        })?;
        Ok(sum > self.max_connections)
    }
}

pub fn build(sec: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    Ok(Box::new(RateLimit::from_section(sec)?))
}

impl RateLimit {
    pub fn from_section(sec: &Section<'_>) -> Result<RateLimit, ConfigError> {
        let limit = Limit::from_section(sec, TABLE, 60, 1)?;
        let limit_network = sec.bool("limit_network", false)?;
        super::initialized("ratelimit");
        Ok(RateLimit {
            limit,
            limit_network,
        })
    }
}

impl Filter for RateLimit {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let Some(ip) = ctx.envelope.client_ip() else {
            return Ok(Verdict::Continue);
        };
        let key = if self.limit_network {
            super::greylist::network(&ip)
        } else {
            ip.to_string()
        };
        let exceeded = self
            .limit
            .exceeded(ctx.store, &key)
            .map_err(|e| FilterError::new(format!("ratelimit counters: {e}")))?;
        Ok(if exceeded {
            Verdict::reply(format!("421 Too many messages from {ip}, slow down."))
        } else {
            Verdict::Continue
        })
    }

    fn counters(&self) -> Vec<Counter> {
        vec![self.limit.counter.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::stateful_testutil::{Backend, Harness, set_clock, test_clock};

    /// The start of a minute.
    const T0: f64 = 1_699_999_980.0;

    fn ratelimit(h: &Harness, text: &str) -> RateLimit {
        let mut f = h
            .section("ratelimit", text, RateLimit::from_section)
            .expect("builds");
        f.limit.clock = test_clock;
        f
    }

    fn too_many(ip: &str) -> Verdict {
        Verdict::reply(format!("421 Too many messages from {ip}, slow down."))
    }

    #[test]
    fn settings() {
        let h = Harness::new(Backend::Sqlite, "s\n");
        let f = ratelimit(&h, "");
        assert_eq!((f.limit.max_connections, f.limit_network), (60, false));
        assert_eq!(
            f.counters(),
            vec![Counter {
                name: TABLE.into(),
                window_minutes: 1,
                purge_interval: 43200
            }]
        );
        let f = ratelimit(
            &h,
            "[ratelimit.py]\nmax_connections = 3\ninterval = 5\nsenders_purge_interval = 60\nlimit_network = True\n",
        );
        assert_eq!((f.limit.max_connections, f.limit_network), (3, true));
        assert_eq!(
            (
                f.limit.counter.window_minutes,
                f.limit.counter.purge_interval
            ),
            (5, 60)
        );
        for bad in [
            "interval = 0",
            "interval = 1.5",
            "max_connections = -1",
            "limit_network = 'x'",
            "bogus = 1",
        ] {
            assert!(
                h.section(
                    "ratelimit",
                    &format!("[ratelimit]\n{bad}\n"),
                    RateLimit::from_section
                )
                .is_err(),
                "{bad}"
            );
        }
    }

    fn limit_per_minute(backend: Backend) {
        let h = Harness::new(
            backend,
            "sa@x.example\nrb@e2e.test\nR\nN\nOTCPREMOTEIP=192.0.2.9\n",
        );
        let f = ratelimit(&h, "[ratelimit]\nmax_connections = 3\n");
        set_clock(T0 + 1.0);
        for _ in 0..3 {
            assert_eq!(h.run(&f), Verdict::Continue);
        }
        set_clock(T0 + 59.0);
        assert_eq!(h.run(&f), too_many("192.0.2.9"));
        // Another address of the same network is counted apart.
        h.control("sa@x.example\nrb@e2e.test\nR\nN\nOTCPREMOTEIP=192.0.2.10\n");
        assert_eq!(h.run(&f), Verdict::Continue);
        // The next minute starts afresh (interval = 1: the calendar minute).
        h.control("sa@x.example\nrb@e2e.test\nR\nN\nOTCPREMOTEIP=192.0.2.9\n");
        set_clock(T0 + 60.0);
        assert_eq!(h.run(&f), Verdict::Continue);
    }

    fn window_of_several_minutes_counts_refusals(backend: Backend) {
        let h = Harness::new(
            backend,
            "sa@x.example\nrb@e2e.test\nR\nN\nOTCPREMOTEIP=::ffff:192.0.2.9\n",
        );
        let f = ratelimit(&h, "[ratelimit]\nmax_connections = 2\ninterval = 3\n");
        set_clock(T0);
        assert_eq!(h.run(&f), Verdict::Continue);
        set_clock(T0 + 60.0);
        assert_eq!(h.run(&f), Verdict::Continue);
        set_clock(T0 + 120.0);
        assert_eq!(h.run(&f), too_many("192.0.2.9"));
        // Minute 0 leaves the window; minutes 1 and 2 (one refused) still hold 2, plus this one.
        set_clock(T0 + 180.0);
        assert_eq!(h.run(&f), too_many("192.0.2.9"));
        set_clock(T0 + 360.0);
        assert_eq!(h.run(&f), Verdict::Continue);
    }

    fn networks_share_a_count(backend: Backend) {
        let h = Harness::new(
            backend,
            "sa@x.example\nrb@e2e.test\nR\nN\nOTCPREMOTEIP=2001:db8::1\n",
        );
        let f = ratelimit(
            &h,
            "[ratelimit]\nmax_connections = 1\nlimit_network = True\n",
        );
        set_clock(T0);
        assert_eq!(h.run(&f), Verdict::Continue);
        h.control("sa@x.example\nrb@e2e.test\nR\nN\nOTCPREMOTEIP=2001:db8:0:ffff::2\n");
        assert_eq!(h.run(&f), too_many("2001:db8:0:ffff::2"));
    }

    fn no_client_ip_is_not_limited(backend: Backend) {
        let h = Harness::new(backend, "sa@x.example\nrb@e2e.test\nR\nN\n");
        let f = ratelimit(
            &h,
            "[ratelimit]\nmax_connections = 0\nlimit_network = True\n",
        );
        set_clock(T0);
        assert_eq!(h.run(&f), Verdict::Continue);
        h.control("sa@x.example\nrb@e2e.test\nR\nN\nOTCPREMOTEIP=192.0.2.1\n");
        assert_eq!(h.run(&f), too_many("192.0.2.1"));
    }

    fn old_minutes_are_purged(backend: Backend) {
        let h = Harness::new(
            backend,
            "sa@x.example\nrb@e2e.test\nR\nN\nOTCPREMOTEIP=192.0.2.1\n",
        );
        let f = ratelimit(
            &h,
            "[ratelimit]\nmax_connections = 1\nsenders_purge_interval = 60\n",
        );
        set_clock(T0);
        assert_eq!(h.run(&f), Verdict::Continue);
        assert_eq!(h.run(&f), too_many("192.0.2.1"));
        set_clock(T0 + 600.0);
        assert_eq!(h.run(&f), Verdict::Continue);
        let now = T0 as i64 + 600;
        let mut store = h.fx.store.borrow_mut();
        assert_eq!(
            store
                .purge_counters_now(&f.limit.counter, now)
                .expect("purge"),
            0
        );
    }

    fn store_failure_is_an_error(backend: Backend) {
        let h = Harness::new(
            backend,
            "sa@x.example\nrb@e2e.test\nR\nN\nOTCPREMOTEIP=192.0.2.1\n",
        );
        let f = ratelimit(&h, "");
        h.break_store();
        assert!(h.run_result(&f).is_err());
    }

    crate::filters::stateful_testutil::on_both_backends!(
        limit_per_minute,
        window_of_several_minutes_counts_refusals,
        networks_share_a_count,
        no_client_ip_is_not_limited,
        old_minutes_are_purged,
        store_failure_is_an_error,
    );
}
