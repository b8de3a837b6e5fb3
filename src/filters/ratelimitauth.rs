//! ratelimitauth — ratelimit keyed by the authenticated user (spec §7.18): each message with a
//! non-empty SMTP AUTH `i` record is counted under that user in the counter table
//! `ratelimitauth`; above `max_connections` messages in `interval` minutes the reply is
//! `421 User <user> has exceeded sending limits; wait awhile and try again.` Counts are shared
//! by all workers and hosts and survive restarts (DECISIONS).

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterError, FilterResult, Verdict};
use crate::store::Counter;

use super::ratelimit::Limit;

pub const TABLE: &str = "ratelimitauth";

pub struct RateLimitAuth {
    limit: Limit,
}

pub fn build(sec: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    Ok(Box::new(RateLimitAuth::from_section(sec)?))
}

impl RateLimitAuth {
    pub fn from_section(sec: &Section<'_>) -> Result<RateLimitAuth, ConfigError> {
        let limit = Limit::from_section(sec, TABLE, 50, 120)?;
        super::initialized("ratelimitauth");
        Ok(RateLimitAuth { limit })
    }
}

impl Filter for RateLimitAuth {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let user = match ctx.envelope.auth_user() {
            None | Some("") => return Ok(Verdict::Continue),
            Some(u) => u.to_string(),
        };
        let exceeded = self
            .limit
            .exceeded(ctx.store, &user)
            .map_err(|e| FilterError::new(format!("ratelimitauth counters: {e}")))?;
        Ok(if exceeded {
            Verdict::reply(format!(
                "421 User {user} has exceeded sending limits; wait awhile and try again."
            ))
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

    const T0: f64 = 1_699_999_980.0;

    fn ratelimitauth(h: &Harness, text: &str) -> RateLimitAuth {
        let mut f = h
            .section("ratelimitauth", text, RateLimitAuth::from_section)
            .expect("builds");
        f.limit.clock = test_clock;
        f
    }

    fn exceeded(user: &str) -> Verdict {
        Verdict::reply(format!(
            "421 User {user} has exceeded sending limits; wait awhile and try again."
        ))
    }

    #[test]
    fn settings() {
        let h = Harness::new(Backend::Sqlite, "s\n");
        let f = ratelimitauth(&h, "");
        assert_eq!(f.limit.max_connections, 50);
        assert_eq!(
            f.counters(),
            vec![Counter {
                name: TABLE.into(),
                window_minutes: 120,
                purge_interval: 43200
            }]
        );
        assert!(
            h.section(
                "ratelimitauth",
                "[ratelimitauth]\nlimit_network = True\n",
                RateLimitAuth::from_section
            )
            .is_err()
        );
    }

    fn users_are_limited_over_the_window(backend: Backend) {
        let h = Harness::new(backend, "sa@e2e.test\nrb@x.example\nR\nN\nialice\n");
        let f = ratelimitauth(
            &h,
            "[ratelimitauth.py]\nmax_connections = 2\ninterval = 10\n",
        );
        set_clock(T0);
        assert_eq!(h.run(&f), Verdict::Continue);
        set_clock(T0 + 300.0);
        assert_eq!(h.run(&f), Verdict::Continue);
        assert_eq!(h.run(&f), exceeded("alice"));
        h.control("sa@e2e.test\nrb@x.example\nR\nN\nibob\n");
        assert_eq!(h.run(&f), Verdict::Continue);
        // Ten minutes after the first message it has left the window; the refused one has not.
        h.control("sa@e2e.test\nrb@x.example\nR\nN\nialice\n");
        set_clock(T0 + 600.0);
        assert_eq!(h.run(&f), exceeded("alice"));
        set_clock(T0 + 1200.0);
        assert_eq!(h.run(&f), Verdict::Continue);
    }

    fn unauthenticated_mail_is_not_counted(backend: Backend) {
        let h = Harness::new(backend, "sa@e2e.test\nrb@x.example\nR\nN\n");
        let f = ratelimitauth(&h, "[ratelimitauth]\nmax_connections = 0\n");
        set_clock(T0);
        assert_eq!(h.run(&f), Verdict::Continue);
        h.control("sa@e2e.test\nrb@x.example\nR\nN\ni\n");
        assert_eq!(h.run(&f), Verdict::Continue);
        h.control("sa@e2e.test\nrb@x.example\nR\nN\nicarol\n");
        assert_eq!(h.run(&f), exceeded("carol"));
    }

    fn store_failure_is_an_error(backend: Backend) {
        let h = Harness::new(backend, "sa@e2e.test\nrb@x.example\nR\nN\nialice\n");
        let f = ratelimitauth(&h, "");
        h.break_store();
        assert!(h.run_result(&f).is_err());
    }

    crate::filters::stateful_testutil::on_both_backends!(
        users_are_limited_over_the_window,
        unauthenticated_mail_is_not_counted,
        store_failure_is_an_error,
    );
}
