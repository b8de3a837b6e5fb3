//! spamassassin — scan the message with SpamAssassin through `spamc` (spec §7.20 with
//! DECISIONS.md): reject spam with `554 Mail rejected - spam detected: <X-Spam-Status>`, or
//! replace the message with SpamAssassin's annotated version.
//!
//! Differences from the reference, on purpose: spamc runs with `-x` and `-t` (a `timeout`
//! setting, default 30 s, also bounded by the message deadline); a spamd that cannot be
//! reached, any spamc error, signal or timeout, and a spamc that cannot be started give
//! `451 4.3.0 Spam scanner unavailable, try again later` (the reference passed the mail, or
//! answered `454 <error text>`); output that is not a message with an `X-Spam-Status` header
//! never replaces the message (logged, the original is kept); the replacement is spamc's output
//! byte for byte. New settings say how spamc reaches spamd (`socket_path`, `spamd_host`,
//! `spamd_port`). Messages larger than `max_msg_size` are skipped, as in the reference.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::courier::message::header_layout;
use crate::filter::{Context, Filter, FilterError, FilterResult, Verdict};
use crate::net::spamc::{Classification, Spamc, SpamcError, Spamd};

pub const UNAVAILABLE: &str = "451 4.3.0 Spam scanner unavailable, try again later";
pub const REJECT_PREFIX: &str = "554 Mail rejected - spam detected: ";

pub struct SpamAssassin {
    pub spamc: Spamc,
    /// Reject only at or above this score (the `Yes, score=` of X-Spam-Status); `None`: reject
    /// whatever spamc calls spam.
    pub reject_score: Option<f64>,
}

pub fn build(sec: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    Ok(Box::new(SpamAssassin::from_section(sec)?))
}

/// A value that goes into spamc's argv: non-empty, no control characters.
fn argument(sec: &Section<'_>, key: &str, value: String) -> Result<String, ConfigError> {
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(sec.error(key, "must be a non-empty string without control characters"));
    }
    Ok(value)
}

impl SpamAssassin {
    pub fn from_section(sec: &Section<'_>) -> Result<SpamAssassin, ConfigError> {
        let program = argument(
            sec,
            "spamc_path",
            sec.string("spamc_path", "/usr/bin/spamc")?,
        )?;
        let max_msg_size = sec.int("max_msg_size", 512_000)?;
        let max_msg_size = u64::try_from(max_msg_size)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| sec.error("max_msg_size", "must be more than 0"))?;
        let username = match sec.opt_string("username")? {
            Some(u) => Some(argument(sec, "username", u)?),
            None => None,
        };
        let reject_score = sec.opt_float("reject_score")?;
        if reject_score.is_some_and(f64::is_nan) {
            return Err(sec.error("reject_score", "must be a number"));
        }
        let timeout = sec.float("timeout", 30.0)?;
        if !(1.0..=3600.0).contains(&timeout) {
            return Err(sec.error("timeout", "must be between 1 and 3600 seconds"));
        }
        let socket = match sec.opt_string("socket_path")? {
            Some(p) => Some(argument(sec, "socket_path", p)?),
            None => None,
        };
        let host = match sec.opt_string("spamd_host")? {
            Some(h) => Some(argument(sec, "spamd_host", h)?),
            None => None,
        };
        let port = match sec.opt_int("spamd_port")? {
            Some(p) => Some(
                u16::try_from(p)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| sec.error("spamd_port", "must be between 1 and 65535"))?,
            ),
            None => None,
        };
        let spamd = match (socket, host, port) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(sec.error(
                    "socket_path",
                    "give either socket_path or spamd_host/spamd_port, not both",
                ));
            }
            (Some(path), None, None) => Spamd::Socket(PathBuf::from(path)),
            (None, Some(host), port) => Spamd::Tcp { host, port },
            (None, None, Some(_)) => {
                return Err(sec.error("spamd_port", "needs spamd_host"));
            }
            (None, None, None) => Spamd::Default,
        };
        super::initialized("spamassassin");
        Ok(SpamAssassin {
            spamc: Spamc {
                program: PathBuf::from(program),
                timeout: Duration::from_secs_f64(timeout),
                max_msg_size,
                username,
                spamd,
            },
            reject_score,
        })
    }
}

/// The first `X-Spam-Status` value of spamc's output, with every line break removed (the
/// blanks of the folding stay), as the reference puts it into its reply; `""` if absent.
pub fn spam_status(output: &[u8]) -> Option<String> {
    let (fields, _) = header_layout(output);
    let field = fields
        .iter()
        .find(|f| output[f.name.clone()].eq_ignore_ascii_case(b"X-Spam-Status"))?;
    let raw = &output[field.whole.clone()];
    let colon = raw.iter().position(|&b| b == b':')?;
    let mut value = &raw[colon + 1..];
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    let text: String = String::from_utf8_lossy(value)
        .chars()
        .filter(|c| *c != '\n' && *c != '\r')
        .collect();
    Some(text)
}

/// Step 4 of §7.20: the reject reply, if any. `status` is the X-Spam-Status value without
/// line breaks (`""` if absent); `spam` is spamc's verdict (exit status 1).
pub fn decide(status: &str, spam: bool, reject_score: Option<f64>) -> Option<String> {
    let reject = match reject_score {
        Some(min) if !status.is_empty() => {
            status.starts_with("Yes,")
                && status
                    .split_whitespace()
                    .filter_map(|w| w.strip_prefix("score="))
                    .any(|v| v.parse::<f64>().is_ok_and(|score| score >= min))
        }
        _ => spam,
    };
    reject.then(|| format!("{REJECT_PREFIX}{status}"))
}

/// Whether spamc's output can replace the message: a header block with an X-Spam-Status
/// field, ended by an empty line (or the end of the output).
pub fn is_processed_message(output: &[u8]) -> bool {
    if output.is_empty() {
        return false;
    }
    let (fields, body_start) = header_layout(output);
    let Some(last) = fields.last() else {
        return false;
    };
    let ended = body_start > last.whole.end || body_start == output.len();
    ended
        && fields
            .iter()
            .any(|f| output[f.name.clone()].eq_ignore_ascii_case(b"X-Spam-Status"))
}

impl Filter for SpamAssassin {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let path = ctx.message.path().to_path_buf();
        let size = std::fs::metadata(&path)
            .map_err(|e| FilterError::new(format!("cannot stat {}: {e}", path.display())))?
            .len();
        if size > self.spamc.max_msg_size {
            log::info!(
                "spamassassin: {} is {size} bytes, more than max_msg_size; not scanned",
                path.display()
            );
            return Ok(Verdict::Continue);
        }
        let scan = match self.spamc.scan(&path, ctx.deadline) {
            Ok(scan) => scan,
            Err(e @ SpamcError::Input(..)) => return Err(FilterError::new(e.to_string())),
            Err(e) => {
                log::error!("spamassassin: {e}");
                return Ok(Verdict::reply(UNAVAILABLE));
            }
        };
        let status = spam_status(&scan.output).unwrap_or_default();
        let spam = scan.class == Classification::Spam;
        if let Some(reply) = decide(&status, spam, self.reject_score) {
            return Ok(Verdict::Reply(reply));
        }
        if !is_processed_message(&scan.output) {
            log::warn!(
                "spamassassin: spamc output for {} ({} bytes) is not a message with an \
                 X-Spam-Status header; the message is kept unchanged",
                path.display(),
                scan.output.len()
            );
            return Ok(Verdict::Continue);
        }
        ctx.message
            .replace(scan.output)
            .map_err(|e| FilterError::new(format!("cannot rewrite the message: {e}")))?;
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::testutil::{Fixture, build as build_module};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn status_header_folded_and_first_only() {
        let out = b"Received: x\nX-Spam-Status: Yes, score=1000.0 required=5.0 tests=GTUBE,\n\tNO_RELAYS autolearn=no\nx-spam-status: No\n\nbody\n";
        assert_eq!(
            spam_status(out).unwrap(),
            "Yes, score=1000.0 required=5.0 tests=GTUBE,\tNO_RELAYS autolearn=no"
        );
        let crlf = b"X-Spam-Status: No, score=0.1\r\n required=5.0\r\n\r\nb\r\n";
        assert_eq!(spam_status(crlf).unwrap(), "No, score=0.1 required=5.0");
        assert_eq!(spam_status(b"Subject: x\n\nX-Spam-Status: Yes\n"), None);
        assert_eq!(spam_status(b""), None);
    }

    #[test]
    fn decision_without_reject_score_follows_spamc() {
        let h = "Yes, score=6.0 required=5.0 tests=X";
        assert_eq!(decide(h, true, None), Some(format!("{REJECT_PREFIX}{h}")));
        assert_eq!(decide("No, score=1.0", false, None), None);
        // an empty header: the reply ends in ": "
        assert_eq!(
            decide("", true, Some(10.0)).as_deref(),
            Some("554 Mail rejected - spam detected: ")
        );
        assert_eq!(decide("", false, Some(10.0)), None);
    }

    #[test]
    fn decision_with_reject_score() {
        let gtube = "Yes, score=1000.0 required=5.0 tests=GTUBE,\tNO_RELAYS";
        assert!(decide(gtube, true, Some(1000.0)).is_some());
        assert!(decide(gtube, true, Some(999.9)).is_some());
        assert_eq!(decide(gtube, true, Some(2000.0)), None);
        // "No" never rejects with a reject_score, whatever spamc said
        assert_eq!(
            decide("No, score=3000.0 required=5.0", true, Some(1.0)),
            None
        );
        // the score word may follow a tab from folding
        assert!(decide("Yes,\tscore=12.5 required=5.0", true, Some(10.0)).is_some());
        // a score that is no number does not reject
        assert_eq!(decide("Yes, score=abc required=5.0", true, Some(1.0)), None);
        assert!(decide("Yes, score=-1.0", false, Some(-2.0)).is_some());
    }

    #[test]
    fn processed_message_check() {
        assert!(is_processed_message(
            b"X-Spam-Status: No, score=0.0\nSubject: s\n\nbody\n"
        ));
        assert!(is_processed_message(b"X-Spam-Status: No\n"));
        assert!(!is_processed_message(b""));
        assert!(!is_processed_message(b"\n"));
        assert!(!is_processed_message(b"Subject: s\n\nbody\n"));
        assert!(!is_processed_message(b"garbage without header\n"));
        assert!(!is_processed_message(
            b"X-Spam-Status: No\nno header line\n"
        ));
    }

    #[test]
    fn settings() {
        let c = Courier::new(crate::courier::CourierPaths::defaults());
        let f = |text: &str| build_module(build, "spamassassin", text, &c).map(|_| ());
        assert!(f("").is_ok());
        assert!(
            f("[spamassassin]\nspamc_path='/x/spamc'\nmax_msg_size=100\nusername='bob'\nreject_score=10\ntimeout=5\nsocket_path='/run/s'\n")
                .is_ok()
        );
        assert!(f("[spamassassin.py]\nspamd_host='127.0.0.1'\nspamd_port=783\n").is_ok());
        for bad in [
            "max_msg_size=0",
            "timeout=0",
            "reject_score='x'",
            "spamd_port=70000",
            "spamd_port=783",
            "socket_path='/s'\nspamd_host='h'",
            "username=''",
            "spamc_path='a\\nb'",
            "unknown=1",
        ] {
            assert!(f(&format!("[spamassassin]\n{bad}\n")).is_err(), "{bad}");
        }
    }

    fn fake_spamc(dir: &std::path::Path, body: &str) -> String {
        let p = dir.join("spamc");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.display().to_string()
    }

    fn run(spamc_body: &str, extra: &str, data: &str) -> (Fixture, FilterResult) {
        let fx = Fixture::new("sa@x.example\nrb@y.example\n", data, &[]);
        let tmp = tempfile::tempdir().unwrap();
        let spamc = fake_spamc(tmp.path(), spamc_body);
        let filter = build_module(
            build,
            "spamassassin",
            &format!("[spamassassin]\nspamc_path='{spamc}'\n{extra}"),
            &fx.courier,
        )
        .unwrap();
        let r = fx.run(filter.as_ref());
        (fx, r)
    }

    #[test]
    fn outcomes_through_a_stand_in_spamc() {
        // ham: the output replaces the message byte for byte
        let (fx, r) = run(
            "printf 'X-Spam-Status: No, score=0.0\\r\\n'; cat",
            "",
            "Subject: s\r\n\r\nbody\r\n",
        );
        assert_eq!(r.unwrap(), Verdict::Continue);
        assert_eq!(
            fx.data_text(),
            "X-Spam-Status: No, score=0.0\r\nSubject: s\r\n\r\nbody\r\n"
        );
        // spam
        let (fx, r) = run(
            "printf 'X-Spam-Status: Yes, score=9.0\\n\\tr=5\\n'; cat; exit 1",
            "",
            "Subject: s\n\nbody\n",
        );
        assert_eq!(
            r.unwrap(),
            Verdict::reply("554 Mail rejected - spam detected: Yes, score=9.0\tr=5")
        );
        assert_eq!(fx.data_text(), "Subject: s\n\nbody\n");
        // empty or garbage output on exit 0 never replaces the message
        for out in ["true", "echo garbage", "printf '\\n'"] {
            let (fx, r) = run(out, "", "Subject: s\n\nbody\n");
            assert_eq!(r.unwrap(), Verdict::Continue, "{out}");
            assert_eq!(fx.data_text(), "Subject: s\n\nbody\n", "{out}");
        }
        // errors: the fixed reply, the message untouched
        for out in ["exit 70", "exit 69", "cat; exit 75", "kill -9 $$"] {
            let (fx, r) = run(out, "", "Subject: s\n\nbody\n");
            assert_eq!(r.unwrap(), Verdict::reply(UNAVAILABLE), "{out}");
            assert_eq!(fx.data_text(), "Subject: s\n\nbody\n", "{out}");
        }
        let (_, r) = run("exec sleep 30", "timeout=1\n", "Subject: s\n\nbody\n");
        assert_eq!(r.unwrap(), Verdict::reply(UNAVAILABLE));
        // larger than max_msg_size: not scanned at all
        let (fx, r) = run("exit 70", "max_msg_size=5\n", "Subject: s\n\nbody\n");
        assert_eq!(r.unwrap(), Verdict::Continue);
        assert_eq!(fx.data_text(), "Subject: s\n\nbody\n");
    }

    #[test]
    fn a_missing_spamc_is_scanner_unavailable() {
        let fx = Fixture::new("sa@x.example\nrb@y.example\n", "Subject: s\n\nb\n", &[]);
        let filter = build_module(
            build,
            "spamassassin",
            "[spamassassin]\nspamc_path='/nonexistent/spamc'\n",
            &fx.courier,
        )
        .unwrap();
        assert_eq!(
            fx.run(filter.as_ref()).unwrap(),
            Verdict::reply(UNAVAILABLE)
        );
    }
}
