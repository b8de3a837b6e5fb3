//! deliveredto — reject mail loops: a message that already carries a `Delivered-To:` header for
//! a local or hosted domain gets `501 Mail loop - already have my Delivered-To: header.` Every
//! such header is checked (the reference looks at the first only); the address may be in angle
//! brackets; domains compare case-insensitively (DECISIONS §7).

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterResult, Verdict};

pub const LOOP_REPLY: &str = "501 Mail loop - already have my Delivered-To: header.";
pub const PARSE_FAILURE_REPLY: &str = "451 Internal failure parsing message data file";

pub struct DeliveredTo;

pub fn build(_: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    super::initialized("deliveredto");
    Ok(Box::new(DeliveredTo))
}

/// The domain of a `Delivered-To` value: `user@dom`, `<user@dom>`, surrounding blanks ignored.
/// `None` unless there is exactly one `@`.
pub fn delivered_domain(value: &str) -> Option<String> {
    let mut addr = value.trim();
    if let (Some(open), Some(close)) = (addr.find('<'), addr.rfind('>'))
        && open < close
    {
        addr = addr[open + 1..close].trim();
    }
    let mut parts = addr.split('@');
    let (_, domain) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || domain.is_empty() {
        return None;
    }
    Some(domain.to_ascii_lowercase())
}

impl Filter for DeliveredTo {
    fn waits(&self) -> bool {
        false
    }

    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let values = match ctx.message.header_values("Delivered-To") {
            Ok(v) => v,
            Err(e) => {
                log::error!(
                    "deliveredto: cannot read {}: {e}",
                    ctx.message.path().display()
                );
                return Ok(Verdict::reply(PARSE_FAILURE_REPLY));
            }
        };
        for value in values {
            let Some(domain) = delivered_domain(&value) else {
                continue;
            };
            if ctx.courier.is_local(&domain)? || ctx.courier.is_hosteddomain(&domain)? {
                return Ok(Verdict::reply(LOOP_REPLY));
            }
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::delivered_domain;

    #[test]
    fn domain_forms() {
        assert_eq!(
            delivered_domain("gordon@Dragonsdawn.NET"),
            Some("dragonsdawn.net".into())
        );
        assert_eq!(
            delivered_domain("  <gordon@x.example>  "),
            Some("x.example".into())
        );
        assert_eq!(
            delivered_domain("Gordon <g@x.example>\r"),
            Some("x.example".into())
        );
        assert_eq!(delivered_domain("no-at-sign"), None);
        assert_eq!(delivered_domain("a@b@c"), None);
        assert_eq!(delivered_domain("a@"), None);
    }
}

#[cfg(test)]
mod module_tests {
    use super::LOOP_REPLY;
    use crate::filter::Verdict;
    use crate::filters::testutil::{Fixture, build};

    const CONTROL: &str = "sa@x.example\nrg@dragonsdawn.net\nR\nN\n";

    fn check(data: &str) -> Verdict {
        let fx = Fixture::new(
            CONTROL,
            data,
            &[("locals", "Dragonsdawn.net\n"), ("me", "mx.example\n")],
        );
        let f = build(super::build, "deliveredto", "", &fx.courier).expect("builds");
        fx.run(f.as_ref()).expect("runs")
    }

    #[test]
    fn loop_to_a_local_domain_is_rejected() {
        assert_eq!(
            check("Delivered-To: gordon@dragonsdawn.net\nSubject: x\n\nb\n"),
            Verdict::reply(LOOP_REPLY)
        );
        assert_eq!(
            check("delivered-to: <Gordon@DRAGONSDAWN.NET>\r\n\r\nb\r\n"),
            Verdict::reply(LOOP_REPLY)
        );
        // Every header counts, not only the first.
        assert_eq!(
            check("Delivered-To: a@elsewhere.example\nDelivered-To: g@dragonsdawn.net\n\nb\n"),
            Verdict::reply(LOOP_REPLY)
        );
    }

    #[test]
    fn other_domains_and_no_header_pass() {
        assert_eq!(
            check("Delivered-To: a@elsewhere.example\n\nb\n"),
            Verdict::Continue
        );
        assert_eq!(
            check("Subject: x\n\nDelivered-To: g@dragonsdawn.net\n"),
            Verdict::Continue
        );
    }

    #[test]
    fn unreadable_message_tempfails() {
        let fx = Fixture::new(CONTROL, "", &[]);
        std::fs::remove_file(&fx.data).expect("rm");
        let f = build(super::build, "deliveredto", "", &fx.courier).expect("builds");
        assert_eq!(
            fx.run(f.as_ref()).expect("runs"),
            Verdict::reply(super::PARSE_FAILURE_REPLY)
        );
    }
}
