//! whitelist_relayclients — accept mail from clients that `smtpaccess` lets relay: the entry
//! matching the client's address (longest prefix) carries `RELAYCLIENT`. Mail without a client
//! address (local submission) gets no decision (DECISIONS §4).

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterResult, Verdict};

pub struct WhitelistRelayclients;

pub fn build(_: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    super::initialized("whitelist_relayclients");
    Ok(Box::new(WhitelistRelayclients))
}

impl Filter for WhitelistRelayclients {
    fn waits(&self) -> bool {
        false
    }

    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let Some(ip) = ctx.envelope.client_ip() else {
            return Ok(Verdict::Continue);
        };
        Ok(if ctx.courier.is_relayed(&ip.to_string())? {
            Verdict::reply("200 Ok")
        } else {
            Verdict::Continue
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::filter::Verdict;
    use crate::filters::testutil::{Fixture, build};

    fn check(ip_record: &str) -> Verdict {
        let control = format!("sa@x.example\nra@y.example\nR\nN\n{ip_record}");
        let fx = Fixture::new(&control, "\n", &[]);
        let dat = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/courier/smtpaccess.dat");
        std::fs::copy(dat, fx.courier.sysconfdir().join("smtpaccess.dat"))
            .expect("copy smtpaccess.dat");
        let f = build(super::build, "whitelist_relayclients", "", &fx.courier).expect("builds");
        fx.run(f.as_ref()).expect("runs")
    }

    #[test]
    fn relay_clients_are_accepted() {
        assert_eq!(check("OTCPREMOTEIP=127.0.0.1\n"), Verdict::reply("200 Ok"));
        assert_eq!(
            check("OTCPREMOTEIP=::ffff:127.0.0.1\n"),
            Verdict::reply("200 Ok")
        );
        assert_eq!(check("OTCPREMOTEIP=192.168.1.7\n"), Verdict::Continue);
        assert_eq!(check("OTCPREMOTEIP=192.168.3.1\n"), Verdict::Continue);
        // No client address, or a malformed one: no decision (DECISIONS §4).
        assert_eq!(check(""), Verdict::Continue);
        assert_eq!(check("OTCPREMOTEIP=not-an-ip\n"), Verdict::Continue);
    }
}
