//! localsenders — a sender address in a local or hosted domain must be an account authdaemond
//! knows (`517 Sender does not exist: <sender>`); with `require_auth`, such a sender must also
//! have authenticated (`517 Policy requires local senders to authenticate.`). The local part is
//! looked up for a local domain, the whole address for a hosted one (spec §7.10).
//!
//! Differences from the reference: an authdaemond failure tempfails (the reference gave no
//! decision, letting forged local senders through while authdaemond was down); an address that
//! cannot be sent to authdaemond safely (blanks, control characters) counts as not existing.
//! The reference's `451 Internal failure locating control files` comes from the chain here,
//! which reads the control files once before any module runs.

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::courier::authdaemon::{self, AuthdaemonConfig};
use crate::filter::{Context, Filter, FilterError, FilterResult, Verdict};

pub const AUTH_REQUIRED_REPLY: &str = "517 Policy requires local senders to authenticate.";

pub fn no_such_sender_reply(sender: &str) -> String {
    format!("517 Sender does not exist: {sender}")
}

pub struct LocalSenders {
    require_auth: bool,
    authdaemon: AuthdaemonConfig,
}

pub fn build(sec: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    let require_auth = sec.bool("require_auth", false)?;
    let authdaemon = AuthdaemonConfig::from_section(&sec.library(authdaemon::SECTION))?;
    super::initialized("localsenders");
    Ok(Box::new(LocalSenders {
        require_auth,
        authdaemon,
    }))
}

impl Filter for LocalSenders {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        // No `s` record, a null sender, or not exactly one `@`: nothing to look up.
        let Some(sender) = ctx.envelope.sender() else {
            return Ok(Verdict::Continue);
        };
        let sender = sender.to_string();
        let mut parts = sender.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Ok(Verdict::Continue);
        };
        let uid = if ctx.courier.is_local(domain)? {
            local
        } else if ctx.courier.is_hosteddomain(domain)? {
            sender.as_str()
        } else {
            return Ok(Verdict::Continue);
        };
        let info = self
            .authdaemon
            .lookup("smtp", uid, ctx.deadline)
            .map_err(|e| FilterError::new(format!("looking up {uid:?}: {e}")))?;
        if info.is_none() {
            return Ok(Verdict::reply(no_such_sender_reply(&sender)));
        }
        // An empty `i` record counts as authenticated, as in the reference.
        if self.require_auth && ctx.envelope.auth_user().is_none() {
            return Ok(Verdict::reply(AUTH_REQUIRED_REPLY));
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;
    use std::path::Path;

    use crate::filter::Verdict;
    use crate::filters::testutil::{Fixture, build};

    /// A stand-in authdaemond answering every request from `users` (uid → reply); the real
    /// one is exercised by tests/mailbox_modules.rs. Returns the socket path.
    pub(crate) fn fake_authdaemond(dir: &Path, users: &[(&str, &str)]) -> String {
        let users: Vec<(String, String)> = users
            .iter()
            .map(|(u, r)| (u.to_string(), r.to_string()))
            .collect();
        let path = dir.join("authsock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut req = Vec::new();
                let mut b = [0u8; 1];
                while conn.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
                    req.push(b[0]);
                }
                let req = String::from_utf8_lossy(&req).into_owned();
                let uid = req.strip_prefix("PRE . smtp ").unwrap_or("");
                let reply = users
                    .iter()
                    .find(|(u, _)| u == uid)
                    .map_or("FAIL\n", |(_, r)| r.as_str());
                let _ = conn.write_all(reply.as_bytes());
            }
        });
        path.display().to_string()
    }

    const USERS: &[(&str, &str)] = &[
        ("alice", "HOME=/home/alice\n.\n"),
        ("bob@hosted.test", "HOME=/h/bob\n.\n"),
    ];

    fn etc() -> Vec<(&'static str, &'static str)> {
        vec![("locals", "local.test\n")]
    }

    fn run(control: &str, require_auth: bool, sock: &str) -> Verdict {
        let fx = Fixture::new(control, "\n", &etc());
        let text = format!(
            "[localsenders]\nrequire_auth = {}\n[authdaemon]\nsocket_path = '{sock}'\n",
            if require_auth { "True" } else { "False" }
        );
        let f = build(super::build, "localsenders", &text, &fx.courier).expect("builds");
        fx.run(f.as_ref()).expect("runs")
    }

    #[test]
    fn local_senders_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let sock = fake_authdaemond(dir.path(), USERS);
        assert_eq!(run("salice@local.test\n", false, &sock), Verdict::Continue);
        assert_eq!(run("salice@LOCAL.test\n", false, &sock), Verdict::Continue);
        assert_eq!(
            run("smallory@local.test\n", false, &sock),
            Verdict::reply("517 Sender does not exist: mallory@local.test")
        );
        // Remote, null and odd senders are not looked up.
        assert_eq!(
            run("smallory@remote.test\n", false, &sock),
            Verdict::Continue
        );
        assert_eq!(run("s\n", false, &sock), Verdict::Continue);
        assert_eq!(run("sa@b@local.test\n", false, &sock), Verdict::Continue);
        // A local part that would corrupt the request counts as no such user.
        assert_eq!(
            run("s\"al ice\"@local.test\n", false, &sock),
            Verdict::reply("517 Sender does not exist: \"al ice\"@local.test")
        );
    }

    #[test]
    fn require_auth() {
        let dir = tempfile::tempdir().unwrap();
        let sock = fake_authdaemond(dir.path(), USERS);
        assert_eq!(
            run("salice@local.test\n", true, &sock),
            Verdict::reply(super::AUTH_REQUIRED_REPLY)
        );
        assert_eq!(
            run("salice@local.test\nialice\n", true, &sock),
            Verdict::Continue
        );
        assert_eq!(
            run("salice@local.test\ni\n", true, &sock),
            Verdict::Continue
        );
        // Existence is checked first.
        assert_eq!(
            run("sx@local.test\n", true, &sock),
            Verdict::reply("517 Sender does not exist: x@local.test")
        );
    }

    #[test]
    fn authdaemon_down_is_an_error() {
        let fx = Fixture::new("salice@local.test\n", "\n", &etc());
        let f = build(
            super::build,
            "localsenders",
            "[authdaemon]\nsocket_path = '/nonexistent/socket'\n",
            &fx.courier,
        )
        .expect("builds");
        assert!(fx.run(f.as_ref()).is_err());
    }

    #[test]
    fn bad_settings_are_config_errors() {
        let fx = Fixture::new("s\n", "\n", &[]);
        for text in [
            "[localsenders]\nrequire_auth = 'yes'\n",
            "[localsenders]\nfoo = 1\n",
            "[authdaemon]\nTIMEOUT_READ = 'x'\n",
        ] {
            assert!(
                build(super::build, "localsenders", text, &fx.courier).is_err(),
                "{text}"
            );
        }
    }
}
