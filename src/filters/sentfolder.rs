//! sentfolder — send a copy of each message from an authenticated sender back to that sender,
//! marked with `X-Deliver-To-Sent-Folder: <siteid>` so a maildrop rule can file it into the
//! Sent folder (spec §7.19). The copy is the marker line, a `Bcc:` line naming the envelope
//! recipients that no `To`/`Cc`/`Resent-To`/`Resent-Cc` header shows, then the message as
//! received; it goes through Courier's sendmail to the AUTH name (`<name>@<me>` when the name
//! has no `@`). Always "no decision".
//!
//! Differences from the reference (DECISIONS): the module refuses to start while `siteid` is
//! the published default; on *every* message, an incoming `X-Deliver-To-Sent-Folder` header is
//! removed unless it carries this site's id (so nobody can file mail into a user's Sent folder);
//! a sendmail failure tempfails the message (the reference ignored the exit status); the added
//! lines use the message's own line ending, a long `Bcc:` is folded, and an ORCPT's `rfc822;`
//! prefix is dropped; an AUTH name that cannot be an address (blanks, a leading `-`) gets no
//! copy (logged) rather than tempfailing every message. As in the reference, the copy is sent
//! even if a later module rejects the message.

use std::time::Instant;

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::courier::sendmail::{self, Sendmail};
use crate::filter::{Context, Filter, FilterError, FilterResult, Verdict};

pub const HEADER: &str = "X-Deliver-To-Sent-Folder";
/// pythonfilter's default siteid, published in its source: not a secret.
pub const PUBLISHED_SITEID: &str = "69f7dc20-7aef-420b-a8d2-85ea229f97ba";
/// Headers whose addresses the recipients already see.
const VISIBLE_HEADERS: &[&str] = &["To", "Cc", "Resent-To", "Resent-Cc"];

pub struct SentFolder {
    siteid: String,
    sendmail: Sendmail,
}

pub fn build(sec: &Section<'_>, courier: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    let siteid = sec.string("siteid", PUBLISHED_SITEID)?;
    if siteid == PUBLISHED_SITEID {
        return Err(sec.error(
            "siteid",
            format!(
                "siteid must be set to a secret of this site (e.g. the output of `uuidgen`): \
                 the default {PUBLISHED_SITEID} is public, so anyone could file mail into \
                 users' Sent folders"
            ),
        ));
    }
    if siteid.trim().is_empty() || siteid.trim() != siteid || siteid.chars().any(|c| c.is_control())
    {
        return Err(sec.error(
            "siteid",
            "must be a non-empty single-line value without surrounding blanks",
        ));
    }
    super::initialized("sentfolder");
    Ok(Box::new(SentFolder {
        siteid,
        sendmail: Sendmail::for_courier(courier),
    }))
}

/// The `Bcc` list: each recipient (its ORCPT when it has one, without an `rfc822;` prefix)
/// that is neither among the header addresses nor already listed. Exact comparison.
pub fn bcc_list(recipients: &[(String, String)], header_addresses: &[String]) -> Vec<String> {
    let mut bcc: Vec<String> = Vec::new();
    for (addr, orig) in recipients {
        let orig = match orig.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("rfc822;") => &orig[7..],
            _ => orig.as_str(),
        };
        let chosen = if orig.is_empty() { addr } else { orig };
        if chosen.is_empty()
            || header_addresses.iter().any(|h| h == chosen)
            || bcc.iter().any(|b| b == chosen)
        {
            continue;
        }
        bcc.push(chosen.to_string());
    }
    bcc
}

/// `Bcc: a,<eol> b<eol>`: one address per line, so no line grows past the length limit.
pub fn bcc_line(bcc: &[String], eol: &str) -> String {
    format!("Bcc: {}{eol}", bcc.join(&format!(",{eol} ")))
}

/// The file's line ending: CRLF when its first line ends so, else LF.
fn line_ending(data: &[u8]) -> &'static str {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && data[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

impl SentFolder {
    /// Remove incoming marker headers unless every one carries this site's id (one that does
    /// can only come from this module's own copy, when local mail is filtered too).
    fn strip_forged(&self, ctx: &mut Context<'_>) -> Result<(), FilterError> {
        let values = ctx.message.header_values(HEADER)?;
        if values.iter().all(|v| v.trim() == self.siteid) {
            return Ok(());
        }
        let removed = ctx.message.remove_headers(HEADER)?;
        log::info!(
            "sentfolder: removed {removed} {HEADER} header(s) not carrying this site's id \
             (sender {:?})",
            ctx.envelope.sender().unwrap_or("")
        );
        Ok(())
    }

    fn header_addresses(ctx: &Context<'_>) -> Vec<String> {
        let parsed = match ctx.message.parsed_headers() {
            Ok(p) => p,
            Err(e) => {
                log::warn!("sentfolder: {e}; the Bcc line lists every recipient");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for name in VISIBLE_HEADERS {
            for value in parsed.header_values(*name) {
                if let Some(list) = value.as_address() {
                    out.extend(list.iter().filter_map(|a| a.address()).map(str::to_string));
                }
            }
        }
        out
    }
}

impl Filter for SentFolder {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        self.strip_forged(ctx)?;

        let auth = match ctx.envelope.auth_user() {
            Some(a) if !a.is_empty() => a.to_string(),
            _ => return Ok(Verdict::Continue),
        };
        let to = if auth.contains('@') {
            auth
        } else {
            format!("{auth}@{}", ctx.courier.me())
        };
        if !sendmail::valid_address(&to, false) {
            log::warn!("sentfolder: AUTH name {to:?} is not a usable address; no copy sent");
            return Ok(Verdict::Continue);
        }

        let recipients: Vec<(String, String)> = ctx
            .envelope
            .recipients()
            .into_iter()
            .map(|r| (r.addr, r.orig))
            .collect();
        let bcc = bcc_list(&recipients, &Self::header_addresses(ctx));
        let data = ctx.message.bytes()?;
        let eol = line_ending(data);
        let marker = format!("{HEADER}: {}{eol}", self.siteid);
        let bcc = if bcc.is_empty() {
            String::new()
        } else {
            bcc_line(&bcc, eol)
        };

        let left = ctx.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FilterError::new("message deadline passed before the copy"));
        }
        let timeout = left.min(sendmail::DEFAULT_TIMEOUT);
        self.sendmail
            .clone()
            .with_timeout(timeout)
            .send(
                None,
                &[to.as_str()],
                &[marker.as_bytes(), bcc.as_bytes(), data],
            )
            .map_err(|e| FilterError::new(format!("sending the Sent-folder copy to {to}: {e}")))?;
        log::debug!("sentfolder: copy sent to {to}");
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::testutil::{Fixture, build as build_module};

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn bcc_lists_recipients_the_headers_do_not_show() {
        let rcpts = vec![
            ("a@x.test".to_string(), String::new()),
            ("b@x.test".to_string(), "rfc822;orig@x.test".to_string()),
            ("c@x.test".to_string(), String::new()),
            ("c@x.test".to_string(), String::new()),
            ("d@x.test".to_string(), "RFC822;d@x.test".to_string()),
        ];
        assert_eq!(
            bcc_list(&rcpts, &s(&["a@x.test", "d@x.test"])),
            s(&["orig@x.test", "c@x.test"])
        );
        assert_eq!(bcc_line(&s(&["a@x", "b@x"]), "\n"), "Bcc: a@x,\n b@x\n");
        assert_eq!(bcc_line(&s(&["a@x"]), "\r\n"), "Bcc: a@x\r\n");
        assert_eq!(line_ending(b"A: b\r\n\r\n"), "\r\n");
        assert_eq!(line_ending(b"A: b\n\n"), "\n");
    }

    /// A stand-in sendmail that records argv and stdin, exiting with `status` (the real
    /// Courier sendmail is exercised by tests/mailbox_modules.rs).
    fn fake_sendmail(dir: &std::path::Path, status: i32) -> Sendmail {
        use std::os::unix::fs::PermissionsExt;
        let prog = dir.join("sendmail");
        let out = dir.join("out");
        std::fs::write(
            &prog,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" > {0}.argv; cat > {0}.stdin; exit {status}\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        Sendmail::new(prog)
    }

    #[test]
    fn the_copy_and_a_failing_sendmail() {
        let dir = tempfile::tempdir().unwrap();
        let data = "X-Deliver-To-Sent-Folder: forged\r\nTo: a@x.test\r\nSubject: s\r\n\r\nbody\r\n";
        let control = "se2e@local.test\nra@x.test\nR\nN\nrb@x.test\nR\nN\nie2e\n";
        let fx = Fixture::new(control, data, &[("me", "mail.local.test\n")]);
        let f = SentFolder {
            siteid: "secret-2".to_string(),
            sendmail: fake_sendmail(dir.path(), 0),
        };
        assert_eq!(fx.run(&f).expect("runs"), Verdict::Continue);
        let argv = std::fs::read_to_string(dir.path().join("out.argv")).unwrap();
        assert_eq!(argv, "--\ne2e@mail.local.test\n");
        let stdin = std::fs::read_to_string(dir.path().join("out.stdin")).unwrap();
        assert_eq!(
            stdin,
            "X-Deliver-To-Sent-Folder: secret-2\r\nBcc: b@x.test\r\n\
             To: a@x.test\r\nSubject: s\r\n\r\nbody\r\n"
        );

        let failing = SentFolder {
            siteid: "secret-2".to_string(),
            sendmail: fake_sendmail(dir.path(), 75),
        };
        assert!(fx.run(&failing).is_err());
    }

    #[test]
    fn the_published_siteid_is_refused() {
        let fx = Fixture::new("s\n", "\n", &[]);
        for text in [
            "",
            "[sentfolder]\n",
            &format!("[sentfolder]\nsiteid = '{PUBLISHED_SITEID}'\n"),
            "[sentfolder]\nsiteid = ''\n",
            "[sentfolder]\nsiteid = 'a\\nb'\n",
            "[sentfolder]\nsiteid = 5\n",
        ] {
            assert!(
                build_module(super::build, "sentfolder", text, &fx.courier).is_err(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn forged_markers_are_stripped_from_unauthenticated_mail() {
        let data = "Received: x\nX-Deliver-To-Sent-Folder: 69f7dc20-7aef-420b-a8d2-85ea229f97ba\n\
                    Subject: s\nx-deliver-to-sent-folder: secret-1\n\nbody\n";
        let fx = Fixture::new("sa@remote.test\nre@local.test\nR\nN\n", data, &[]);
        let f = build_module(
            super::build,
            "sentfolder",
            "[sentfolder]\nsiteid = 'secret-1'\n",
            &fx.courier,
        )
        .expect("builds");
        assert_eq!(fx.run(f.as_ref()).expect("runs"), Verdict::Continue);
        assert_eq!(fx.data_text(), "Received: x\nSubject: s\n\nbody\n");

        // This site's own marker stays.
        let data = "X-Deliver-To-Sent-Folder: secret-1\nSubject: s\n\nbody\n";
        let fx = Fixture::new("sa@remote.test\nre@local.test\nR\nN\n", data, &[]);
        assert_eq!(fx.run(f.as_ref()).expect("runs"), Verdict::Continue);
        assert_eq!(fx.data_text(), data);
    }
}
