//! noreceivedheaders — hide the submission path of authenticated senders: when the message has
//! an `i` (SMTP AUTH) record, every `Received:` header is removed (as pythonfilter does). The
//! rest of the message is kept byte for byte (DECISIONS §8). No decision.

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterResult, Verdict};

pub struct NoReceivedHeaders;

pub fn build(_: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    super::initialized("noreceivedheaders");
    Ok(Box::new(NoReceivedHeaders))
}

impl Filter for NoReceivedHeaders {
    fn waits(&self) -> bool {
        false
    }

    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        if ctx.envelope.auth_user().is_some() {
            ctx.message.remove_headers("Received")?;
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use crate::filter::Verdict;
    use crate::filters::testutil::{Fixture, build};

    const DATA: &str = "Received: from a\r\n  by b\r\nSubject: x\r\nreceived: from c\r\nX-Long: keep this exactly  \r\n\r\nReceived: in body\r\n";

    #[test]
    fn authenticated_mail_loses_every_received_header() {
        let fx = Fixture::new("sa@x.example\nra@y.example\nR\nN\nie2e\n", DATA, &[]);
        let f = build(super::build, "noreceivedheaders", "", &fx.courier).expect("builds");
        assert_eq!(fx.run(f.as_ref()).expect("runs"), Verdict::Continue);
        assert_eq!(
            fx.data_text(),
            "Subject: x\r\nX-Long: keep this exactly  \r\n\r\nReceived: in body\r\n"
        );
    }

    #[test]
    fn other_mail_is_untouched() {
        let fx = Fixture::new("sa@x.example\nra@y.example\nR\nN\n", DATA, &[]);
        let f = build(super::build, "noreceivedheaders", "", &fx.courier).expect("builds");
        assert_eq!(fx.run(f.as_ref()).expect("runs"), Verdict::Continue);
        assert_eq!(fx.data_text(), DATA);
    }
}
