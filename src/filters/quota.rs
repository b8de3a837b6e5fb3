//! quota — tempfail a message while a local or hosted recipient's Maildir++ quota is full
//! (`421 User "<u>" is over quota`, spec §7.16). The account is looked up through authdaemond
//! (the local part for a local domain, the whole address for a hosted one); its quota file is
//! `<MAILDIR>/maildirsize`, or `<HOME>/Maildir/maildirsize` without `MAILDIR`. The first line
//! holds the limits (`<n>S` bytes, `<n>C` messages, comma-separated); each further line is
//! `<bytes> <count>`, summed. A limit of 0 is no limit; reaching a limit is over quota.
//!
//! As in the reference, a quota file that cannot be used (missing, unreadable, malformed)
//! means "not over quota"; here it is also logged. Differences: a relative `MAILDIR` is taken
//! relative to `HOME` (where Courier delivers), not to the filter's working directory; an
//! account without `HOME` (and no absolute `MAILDIR`) is logged and passes; an authdaemond
//! failure tempfails instead of giving no decision; the quota file read is bounded.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::courier::authdaemon::{self, AuthdaemonConfig, UserInfo};
use crate::filter::{Context, Filter, FilterError, FilterResult, Verdict};

/// The largest maildirsize read. Maildir++ writers recalculate the file once it passes 5120
/// bytes, so a bigger one is stale or not a quota file.
pub const MAX_MAILDIRSIZE_BYTES: u64 = 1024 * 1024;

pub fn over_quota_reply(user: &str) -> String {
    format!("421 User \"{user}\" is over quota")
}

pub struct Quota {
    authdaemon: AuthdaemonConfig,
}

pub fn build(sec: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    let authdaemon = AuthdaemonConfig::from_section(&sec.library(authdaemon::SECTION))?;
    super::initialized("quota");
    Ok(Box::new(Quota { authdaemon }))
}

/// The limits and the usage of one maildirsize file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub size_limit: i64,
    pub count_limit: i64,
    pub bytes: i64,
    pub count: i64,
}

impl Usage {
    pub fn over_quota(&self) -> bool {
        (self.size_limit != 0 && self.bytes >= self.size_limit)
            || (self.count_limit != 0 && self.count >= self.count_limit)
    }
}

fn int(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

/// Parse a maildirsize file; the error says what is wrong with it.
pub fn parse_maildirsize(text: &str) -> Result<Usage, String> {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    let mut usage = Usage::default();
    for piece in first.split(',').map(str::trim) {
        let (limit, slot) = if let Some(n) = piece.strip_suffix('S') {
            (n, &mut usage.size_limit)
        } else if let Some(n) = piece.strip_suffix('C') {
            (n, &mut usage.count_limit)
        } else {
            return Err(format!("quota definition {first:?} is not <n>S,<n>C"));
        };
        *slot = int(limit).ok_or_else(|| format!("quota definition {first:?}: bad number"))?;
    }
    for (n, line) in lines.enumerate() {
        let mut words = line.split_whitespace();
        let (Some(b), Some(c), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("line {} is not <bytes> <count>: {line:?}", n + 2));
        };
        let (Some(b), Some(c)) = (int(b), int(c)) else {
            return Err(format!("line {} is not <bytes> <count>: {line:?}", n + 2));
        };
        usage.bytes = usage.bytes.saturating_add(b);
        usage.count = usage.count.saturating_add(c);
    }
    Ok(usage)
}

/// Where the account's maildirsize is, or why that cannot be said.
pub fn maildirsize_path(info: &UserInfo) -> Result<PathBuf, String> {
    let home = info.home().filter(|h| !h.is_empty()).map(Path::new);
    let maildir = match info.maildir().filter(|m| !m.is_empty()) {
        Some(m) if Path::new(m).is_absolute() => PathBuf::from(m),
        // Courier delivers to a relative MAILDIR (userdb's usual `./Maildir`) from HOME.
        Some(m) => home.ok_or("relative MAILDIR and no HOME")?.join(m),
        None => home.ok_or("neither MAILDIR nor HOME")?.join("Maildir"),
    };
    Ok(maildir.join("maildirsize"))
}

fn read_bounded(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    File::open(path)?
        .take(MAX_MAILDIRSIZE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_MAILDIRSIZE_BYTES {
        return Err(io::Error::other(format!(
            "larger than {MAX_MAILDIRSIZE_BYTES} bytes"
        )));
    }
    Ok(text)
}

impl Quota {
    /// Whether the account `user` is over quota; every problem short of authdaemond failing
    /// is logged and counts as "not over quota".
    fn over_quota(&self, user: &str, ctx: &Context<'_>) -> Result<bool, FilterError> {
        let info = self
            .authdaemon
            .lookup("smtp", user, ctx.deadline)
            .map_err(|e| FilterError::new(format!("looking up {user:?}: {e}")))?;
        let Some(info) = info else {
            log::info!("quota filter: authdaemon failed to look up \"{user}\"");
            return Ok(false);
        };
        let path = match maildirsize_path(&info) {
            Ok(p) => p,
            Err(why) => {
                log::warn!("quota: no mailbox for \"{user}\" ({why}); not checking its quota");
                return Ok(false);
            }
        };
        let text = match read_bounded(&path) {
            Ok(t) => t,
            // No maildirsize: the mailbox has no quota.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                log::debug!("quota: {} does not exist", path.display());
                return Ok(false);
            }
            Err(e) => {
                log::warn!(
                    "quota: cannot read {} for \"{user}\": {e}; treating as not over quota",
                    path.display()
                );
                return Ok(false);
            }
        };
        match parse_maildirsize(&text) {
            Ok(usage) => Ok(usage.over_quota()),
            Err(why) => {
                log::warn!(
                    "quota: {} for \"{user}\" is malformed ({why}); treating as not over quota",
                    path.display()
                );
                Ok(false)
            }
        }
    }
}

impl Filter for Quota {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        for rcpt in ctx.envelope.recipients() {
            // Courier qualifies every recipient; one without `@` has no mailbox to check.
            let Some((local, domain)) = rcpt.addr.split_once('@') else {
                continue;
            };
            let user = if ctx.courier.is_local(domain)? {
                local
            } else if ctx.courier.is_hosteddomain(domain)? {
                rcpt.addr.as_str()
            } else {
                continue;
            };
            if self.over_quota(user, ctx)? {
                return Ok(Verdict::reply(over_quota_reply(user)));
            }
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn maildirsize_files() {
        let u = parse_maildirsize("1000S,10C\n400 2\n600 1\n").unwrap();
        assert_eq!(
            u,
            Usage {
                size_limit: 1000,
                count_limit: 10,
                bytes: 1000,
                count: 3
            }
        );
        assert!(u.over_quota());
        assert!(
            !parse_maildirsize("1000S,10C\n999 9\n")
                .unwrap()
                .over_quota()
        );
        assert!(
            parse_maildirsize("1000S, 10C\n10 10\n")
                .unwrap()
                .over_quota()
        );
        // Negative lines (removals) count; 0 is no limit.
        assert!(
            !parse_maildirsize("1000S\n1500 2\n-600 -1\n")
                .unwrap()
                .over_quota()
        );
        assert!(
            !parse_maildirsize("0S,0C\n99999 999\n")
                .unwrap()
                .over_quota()
        );
        assert!(parse_maildirsize("5C\n1 5\n").unwrap().over_quota());
        for bad in [
            "",
            "\n",
            "1000\n",
            "1000S,x\n",
            "1000S\n1 2 3\n",
            "1000S\n1\n",
            "1000S\na b\n",
        ] {
            assert!(parse_maildirsize(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn recipients_over_quota() {
        use crate::filters::localsenders::tests::fake_authdaemond;
        use crate::filters::testutil::{Fixture, build};
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("full");
        std::fs::create_dir_all(home.join("Maildir")).unwrap();
        std::fs::write(home.join("Maildir/maildirsize"), "100S\n100 1\n").unwrap();
        let reply = format!("HOME={}\nMAILDIR=./Maildir\n.\n", home.display());
        let sock = fake_authdaemond(
            dir.path(),
            &[
                ("full", reply.as_str()),
                ("nomaildir", "HOME=/nonexistent\n.\n"),
            ],
        );
        let modules = format!("[authdaemon]\nsocket_path = '{sock}'\n");
        let run = |control: &str| {
            let fx = Fixture::new(control, "\n", &[("locals", "local.test\n")]);
            let f = build(super::build, "quota", &modules, &fx.courier).expect("builds");
            fx.run(f.as_ref())
        };
        let over = Verdict::reply("421 User \"full\" is over quota");
        assert_eq!(run("s\nrfull@local.test\nR\nN\n").unwrap(), over);
        assert_eq!(
            run("s\nrnomaildir@local.test\nR\nN\nrunknown@local.test\nR\nN\nrfull@remote.test\nR\nN\nrnoat\nR\nN\n")
                .unwrap(),
            Verdict::Continue
        );
        assert_eq!(
            run("s\nrnomaildir@local.test\nR\nN\nrfull@LOCAL.test\nR\nN\n").unwrap(),
            over
        );

        let fx = Fixture::new(
            "s\nrfull@local.test\nR\nN\n",
            "\n",
            &[("locals", "local.test\n")],
        );
        let f = build(
            super::build,
            "quota",
            "[authdaemon]\nsocket_path = '/nonexistent/socket'\n",
            &fx.courier,
        )
        .expect("builds");
        assert!(
            fx.run(f.as_ref()).is_err(),
            "authdaemond down must be an error"
        );
    }

    fn info(pairs: &[(&str, &str)]) -> UserInfo {
        UserInfo {
            fields: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn where_the_quota_file_is() {
        let p = |pairs: &[(&str, &str)]| maildirsize_path(&info(pairs));
        assert_eq!(
            p(&[("HOME", "/h"), ("MAILDIR", "/m/Maildir")]),
            Ok(PathBuf::from("/m/Maildir/maildirsize"))
        );
        assert_eq!(
            p(&[("HOME", "/h"), ("MAILDIR", "./Maildir")]),
            Ok(PathBuf::from("/h/./Maildir/maildirsize"))
        );
        assert_eq!(
            p(&[("HOME", "/h")]),
            Ok(PathBuf::from("/h/Maildir/maildirsize"))
        );
        assert!(p(&[("MAILDIR", "Maildir")]).is_err());
        assert!(p(&[]).is_err());
        assert!(p(&[("MAILDIR", "/abs")]).is_ok());
    }
}
