//! clamav — scan the message with clamd (spec §7.4 as amended by DECISIONS "clamav", §5, §6); on
//! a virus reject it (`554 Virus found - Signature is <name>`) or quarantine it (`050 OK`).
//!
//! Differences from the reference, on purpose: clamd gets the message over its socket
//! (INSTREAM, the default, or FILDES with `scan_mode = 'fildes'`) instead of `nSCAN <path>`, so it
//! needs no read access to Courier's spool; every step has a timeout (`timeout`, bounded by the
//! message's deadline); a scanner that is missing, hung, reports an error or answers garbage
//! gives `451 4.3.0 Virus scanner unavailable, try again later` (details in the log), never the
//! reference's `430 Virus scanner error: <text>` and never an accept; `action` must be `reject`
//! or `quarantine` (the reference quarantines on any other value). Without `local_socket` the
//! `LocalSocket` of clamd.conf is looked up for each message, as the reference does (not
//! finding it is logged and gives the same 451; a warning at start-up says so early).
//!
//! INSTREAM sends at most `stream_max_length` bytes (keep it at or below clamd's
//! StreamMaxLength): the rest of a longer message is not scanned, and that is logged. clamd's
//! own `INSTREAM size limit exceeded` (the setting above clamd's limit) is a scanner error.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterError, FilterResult, Verdict};
use crate::net::clamd::{Clamd, ClamdError, DEFAULT_STREAM_MAX, ScanResult, Timeouts};
use crate::quarantine::{Quarantine, QuarantineConfig};

pub const UNAVAILABLE: &str = "451 4.3.0 Virus scanner unavailable, try again later";
pub const QUARANTINED: &str = "050 OK";
/// Where `local_socket = None` looks for clamd's `LocalSocket`, first existing file wins.
pub const CLAMD_CONFS: &[&str] = &["/etc/clamav/clamd.conf", "/etc/clamd.conf"];
/// The longest clamd.conf read.
const MAX_CONF: u64 = 1 << 20;

pub fn reject_reply(virus: &str) -> String {
    format!("554 Virus found - Signature is {virus}")
}

pub fn explanation(virus: &str) -> String {
    format!("The virus {virus} was found in the message")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanMode {
    Instream,
    Fildes,
}

pub struct Clamav {
    /// `local_socket`; `None`: look in `clamd_confs` for each message.
    socket: Option<PathBuf>,
    clamd_confs: Vec<String>,
    timeouts: Timeouts,
    mode: ScanMode,
    stream_max_length: u64,
    /// Set when `action = 'quarantine'`.
    quarantine: Option<Quarantine>,
}

pub fn build(sec: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    Ok(Box::new(Clamav::from_section(sec, CLAMD_CONFS)?))
}

impl Clamav {
    /// `clamd_confs`: where to look for `LocalSocket` when `local_socket` is None.
    pub fn from_section(sec: &Section<'_>, clamd_confs: &[&str]) -> Result<Clamav, ConfigError> {
        // Every key is read before anything can fail (the manual-page test learns them so).
        let local_socket = sec.opt_string("local_socket")?;
        let action = sec.string("action", "reject")?;
        let mode = sec.string("scan_mode", "instream")?;
        let timeout = sec.float("timeout", 30.0)?;
        let max = sec.int("stream_max_length", DEFAULT_STREAM_MAX as i64)?;

        let quarantine = match action.as_str() {
            "reject" => None,
            "quarantine" => {
                let qsec = sec.library("quarantine");
                let config = QuarantineConfig::from_section(&qsec)?;
                qsec.finish()?;
                Some(Quarantine::new(config))
            }
            other => {
                return Err(sec.error(
                    "action",
                    format!("must be 'reject' or 'quarantine', not '{other}'"),
                ));
            }
        };
        let mode = match mode.as_str() {
            "instream" => ScanMode::Instream,
            "fildes" => ScanMode::Fildes,
            other => {
                return Err(sec.error(
                    "scan_mode",
                    format!("must be 'instream' or 'fildes', not '{other}'"),
                ));
            }
        };
        if !(timeout > 0.0 && timeout <= 3600.0) {
            return Err(sec.error("timeout", "must be more than 0 and at most 3600 seconds"));
        }
        // clamd's StreamMaxLength cannot exceed 4 GB (a 32-bit count).
        let stream_max_length = u64::try_from(max)
            .ok()
            .filter(|m| (1..=u64::from(u32::MAX)).contains(m))
            .ok_or_else(|| {
                sec.error(
                    "stream_max_length",
                    "must be between 1 and 4294967295 bytes",
                )
            })?;
        let socket = match local_socket {
            Some(s) if s.is_empty() => {
                return Err(sec.error("local_socket", "must not be empty"));
            }
            Some(s) => Some(PathBuf::from(s)),
            None => {
                // Not an error yet: clamd may be installed later, or the module unused.
                if let Err(m) = find_local_socket(clamd_confs) {
                    log::warn!(
                        "clamav: local_socket {m}; messages are deferred until there is one"
                    );
                }
                None
            }
        };
        super::initialized("clamav");
        Ok(Clamav {
            socket,
            clamd_confs: clamd_confs.iter().map(|c| c.to_string()).collect(),
            timeouts: Timeouts::from_total(Duration::from_secs_f64(timeout)),
            mode,
            stream_max_length,
            quarantine,
        })
    }

    /// The socket: `local_socket`, else clamd.conf's `LocalSocket` (read now).
    fn clamd(&self) -> Result<Clamd, String> {
        let socket = match &self.socket {
            Some(s) => s.clone(),
            None => {
                let confs: Vec<&str> = self.clamd_confs.iter().map(String::as_str).collect();
                find_local_socket(&confs).map_err(|m| format!("local_socket {m}"))?
            }
        };
        Ok(Clamd::new(socket, self.timeouts))
    }

    /// A message that cannot be opened or read is [`ClamdError::Source`].
    fn scan(&self, clamd: &Clamd, ctx: &Context<'_>) -> Result<ScanResult, ClamdError> {
        let path = ctx.message.path();
        let mut file = File::open(path).map_err(ClamdError::Source)?;
        match self.mode {
            ScanMode::Fildes => clamd.fildes(&file, ctx.deadline),
            ScanMode::Instream => clamd
                .instream(&mut file, self.stream_max_length, ctx.deadline)
                .map(|scan| {
                    if scan.truncated {
                        log::warn!(
                            "clamav: {}: only the first {} bytes were scanned (stream_max_length)",
                            path.display(),
                            scan.sent
                        );
                    }
                    scan.result
                }),
        }
    }
}

impl Filter for Clamav {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let clamd = match self.clamd() {
            Ok(c) => c,
            Err(e) => {
                log::error!("clamav: {e}");
                return Ok(Verdict::reply(UNAVAILABLE));
            }
        };
        let virus = match self.scan(&clamd, ctx) {
            Ok(ScanResult::Clean) => return Ok(Verdict::Continue),
            Ok(ScanResult::Found(virus)) => virus,
            // Not the scanner's fault: a module failure (DECISIONS §3).
            Err(ClamdError::Source(e)) => {
                return Err(FilterError::new(format!(
                    "cannot read {}: {e}",
                    ctx.message.path().display()
                )));
            }
            Err(e) => {
                log::error!(
                    "clamav: {} (socket {}, message {})",
                    e,
                    clamd.socket().display(),
                    ctx.message.path().display()
                );
                return Ok(Verdict::reply(UNAVAILABLE));
            }
        };
        let Some(quarantine) = &self.quarantine else {
            return Ok(Verdict::reply(reject_reply(&virus)));
        };
        let id = quarantine
            .quarantine(ctx.courier, ctx.envelope, ctx.message, &explanation(&virus))
            .map_err(|e| FilterError::new(format!("cannot quarantine ({virus}): {e}")))?;
        log::info!("clamav: virus {virus} found, message quarantined as {id}");
        Ok(Verdict::reply(QUARANTINED))
    }
}

/// The `LocalSocket` of the first of `confs` that exists: the second word of the first line
/// whose first word is `LocalSocket` (spec §7.4).
pub fn find_local_socket(confs: &[&str]) -> Result<PathBuf, String> {
    let not_found = || {
        format!(
            "is not set, and no LocalSocket line was found in {}",
            confs.join(" or ")
        )
    };
    for conf in confs {
        let path = Path::new(conf);
        let text = match read_conf(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("is not set, and {conf} cannot be read: {e}")),
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() == Some("LocalSocket") {
                return match words.next() {
                    Some(s) => Ok(PathBuf::from(s)),
                    None => Err(format!(
                        "is not set, and {conf} has an empty LocalSocket line"
                    )),
                };
            }
        }
        return Err(not_found());
    }
    Err(not_found())
}

fn read_conf(path: &Path) -> io::Result<String> {
    let mut data = Vec::new();
    File::open(path)?.take(MAX_CONF).read_to_end(&mut data)?;
    Ok(String::from_utf8_lossy(&data).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModulesConfig;
    use crate::filters::testutil::Fixture;
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    const CONTROL: &str = "sbob@example.org\0rcarol@example.com\n";

    fn from_text(text: &str, confs: &[&str]) -> Result<Clamav, ConfigError> {
        let cfg = ModulesConfig::parse(Path::new("test-modules.conf"), text)?;
        let sec = cfg.section("clamav");
        let c = Clamav::from_section(&sec, confs)?;
        sec.finish()?;
        Ok(c)
    }

    #[test]
    fn keys_and_defaults() {
        let c = from_text("[clamav]\nlocal_socket = '/run/c.sock'\n", &[]).expect("builds");
        assert_eq!(c.socket.as_deref(), Some(Path::new("/run/c.sock")));
        assert_eq!(c.mode, ScanMode::Instream);
        assert_eq!(c.stream_max_length, 25 * 1024 * 1024);
        assert!(c.quarantine.is_none());
        let c = from_text(
            "[clamav]\nlocal_socket = '/s'\naction = 'reject'\nscan_mode = 'fildes'\n\
             timeout = 2.5\nstream_max_length = 1024\n",
            &[],
        )
        .expect("builds");
        assert_eq!(c.mode, ScanMode::Fildes);
        assert_eq!(c.stream_max_length, 1024);
        for bad in [
            "action = 'delete'",
            "action = 'Reject'",
            "scan_mode = 'scan'",
            "timeout = 0",
            "timeout = -1",
            "stream_max_length = 0",
            "stream_max_length = 5000000000",
            "local_socket = ''",
            "local_socket = 5",
            "socket = '/x'",
        ] {
            let text = format!("[clamav]\nlocal_socket = '/s'\n{bad}\n")
                .replace("local_socket = '/s'\nlocal_socket", "local_socket");
            let e = from_text(&text, &[]).err();
            assert!(e.is_some(), "{bad} accepted");
        }
    }

    #[test]
    fn local_socket_from_clamd_conf() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.conf");
        let b = dir.path().join("b.conf");
        let (a_s, b_s) = (a.to_str().expect("utf8"), b.to_str().expect("utf8"));
        // Neither exists.
        let e = find_local_socket(&[a_s, b_s]).expect_err("none");
        assert!(e.contains("no LocalSocket"), "{e}");
        std::fs::write(&b, "LocalSocket /run/b.ctl\n").expect("write");
        assert_eq!(
            find_local_socket(&[a_s, b_s]),
            Ok(PathBuf::from("/run/b.ctl"))
        );
        // The first existing file wins, even without the line.
        std::fs::write(&a, "# LocalSocket /no\nLocalSocketMode 666\n").expect("write");
        assert!(find_local_socket(&[a_s, b_s]).is_err());
        std::fs::write(
            &a,
            "Foo bar\n  LocalSocket   /run/a.ctl  extra\nLocalSocket /second\n",
        )
        .expect("write");
        assert_eq!(
            find_local_socket(&[a_s, b_s]),
            Ok(PathBuf::from("/run/a.ctl"))
        );
        let c = from_text("[clamav]\n", &[a_s]).expect("builds");
        assert_eq!(c.clamd().expect("found").socket(), Path::new("/run/a.ctl"));
        // Looked up for each message: a change counts at once.
        std::fs::write(&a, "LocalSocket /run/changed.ctl\n").expect("write");
        assert_eq!(
            c.clamd().expect("found").socket(),
            Path::new("/run/changed.ctl")
        );
        // No clamd.conf: the module builds, and each message is deferred.
        let none = dir.path().join("none");
        let c = from_text("[clamav]\n", &[none.to_str().expect("utf8")]).expect("builds");
        let fx = Fixture::new(CONTROL, "Subject: hi\n\nbody\n", &[]);
        assert_eq!(fx.run(&c).expect("runs"), Verdict::reply(UNAVAILABLE));
    }

    /// A fake clamd answering one request with `reply`.
    fn fake_clamd(
        reply: &'static [u8],
    ) -> (tempfile::TempDir, String, std::thread::JoinHandle<()>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.sock");
        let l = UnixListener::bind(&path).expect("bind");
        let t = std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                // Take the request (ends with the zero-length chunk), then answer.
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.ends_with(&[0, 0, 0, 0]) {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(reply);
            }
        });
        (dir, path.to_str().expect("utf8").to_string(), t)
    }

    fn run(reply: &'static [u8]) -> FilterResult {
        let (_d, sock, t) = fake_clamd(reply);
        let c = from_text(
            &format!("[clamav]\nlocal_socket = '{sock}'\ntimeout = 2\n"),
            &[],
        )
        .expect("builds");
        let fx = Fixture::new(CONTROL, "Subject: hi\n\nbody\n", &[]);
        let r = fx.run(&c);
        let _ = t.join();
        r
    }

    #[test]
    fn replies() {
        assert_eq!(run(b"stream: OK\0").expect("runs"), Verdict::Continue);
        assert_eq!(
            run(b"stream: Some.Virus-1 FOUND\0").expect("runs"),
            Verdict::reply("554 Virus found - Signature is Some.Virus-1")
        );
        for bad in [
            &b"INSTREAM size limit exceeded. ERROR\0"[..],
            b"COMMAND READ TIMED OUT\n",
            b"UNKNOWN COMMAND\0",
            b"",
        ] {
            assert_eq!(
                run(bad).expect("runs"),
                Verdict::reply(UNAVAILABLE),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn no_scanner_is_451() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("none.sock");
        let c = from_text(
            &format!("[clamav]\nlocal_socket = '{}'\n", sock.display()),
            &[],
        )
        .expect("builds");
        let fx = Fixture::new(CONTROL, "Subject: hi\n\nbody\n", &[]);
        assert_eq!(fx.run(&c).expect("runs"), Verdict::reply(UNAVAILABLE));
    }

    #[test]
    fn an_unreadable_message_is_a_module_failure() {
        let (_d, sock, _t) = fake_clamd(b"stream: OK\0");
        for mode in ["instream", "fildes"] {
            let c = from_text(
                &format!("[clamav]\nlocal_socket = '{sock}'\nscan_mode = '{mode}'\n"),
                &[],
            )
            .expect("builds");
            let fx = Fixture::new(CONTROL, "Subject: hi\n\nbody\n", &[]);
            std::fs::remove_file(&fx.data).expect("rm");
            let e = fx.run(&c).expect_err("fails");
            assert!(e.0.contains("cannot read"), "{e}");
        }
    }
}
