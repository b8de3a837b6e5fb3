//! whitelist_auth — accept mail from authenticated senders: a non-empty `i` (SMTP AUTH) record
//! gives `200 Ok`, so later modules are skipped (or only those in its `for` list).

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterResult, Verdict};

pub struct WhitelistAuth;

pub fn build(_: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    super::initialized("whitelist_auth");
    Ok(Box::new(WhitelistAuth))
}

impl Filter for WhitelistAuth {
    fn waits(&self) -> bool {
        false
    }

    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        Ok(match ctx.envelope.auth_user() {
            Some(user) if !user.is_empty() => Verdict::reply("200 Ok"),
            _ => Verdict::Continue,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::filter::Verdict;
    use crate::filters::testutil::{Fixture, build};

    #[test]
    fn authenticated_senders_are_accepted() {
        let fx = Fixture::new("sa@x.example\nre@y.example\nR\nN\nie2e\n", "\n", &[]);
        let f = build(super::build, "whitelist_auth", "", &fx.courier).expect("builds");
        assert_eq!(fx.run(f.as_ref()).expect("runs"), Verdict::reply("200 Ok"));
        let fx = Fixture::new("sa@x.example\nre@y.example\nR\nN\ni\n", "\n", &[]);
        assert_eq!(fx.run(f.as_ref()).expect("runs"), Verdict::Continue);
        let fx = Fixture::new("sa@x.example\nre@y.example\nR\nN\n", "\n", &[]);
        assert_eq!(fx.run(f.as_ref()).expect("runs"), Verdict::Continue);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let fx = Fixture::new("s\n", "\n", &[]);
        let e = build(
            super::build,
            "whitelist_auth",
            "[whitelist_auth]\nfoo = 1\n",
            &fx.courier,
        );
        assert!(e.is_err());
    }
}
