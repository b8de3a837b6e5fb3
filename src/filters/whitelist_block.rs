//! whitelist_block — accept mail from clients whose `smtpaccess` entry has an empty `BLOCK`
//! (`allow,BLOCK`: explicitly exempt from blocks), e.g. a "no greylisting" list.

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterResult, Verdict};

pub struct WhitelistBlock;

pub fn build(_: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    super::initialized("whitelist_block");
    Ok(Box::new(WhitelistBlock))
}

impl Filter for WhitelistBlock {
    fn waits(&self) -> bool {
        false
    }

    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let Some(ip) = ctx.envelope.client_ip() else {
            return Ok(Verdict::Continue);
        };
        Ok(if ctx.courier.is_whiteblocked(&ip.to_string())? {
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
        let f = build(super::build, "whitelist_block", "", &fx.courier).expect("builds");
        fx.run(f.as_ref()).expect("runs")
    }

    #[test]
    fn empty_block_whitelists() {
        assert_eq!(
            check("OTCPREMOTEIP=192.168.1.7\n"),
            Verdict::reply("200 Ok")
        );
        // BLOCK with a message is a block, not an exemption.
        assert_eq!(check("OTCPREMOTEIP=192.168.2.7\n"), Verdict::Continue);
        assert_eq!(check("OTCPREMOTEIP=127.0.0.1\n"), Verdict::Continue);
        assert_eq!(check(""), Verdict::Continue);
    }
}
