//! Submitting a message through Courier's `sendmail` (quarantine notices and releases,
//! sentfolder copies). Unlike the reference (spec §5.2): recipients follow `--` and are
//! validated first, so no address can be taken for an option; the exit status is checked; the
//! child is bounded by a timeout and always reaped.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::Courier;

/// How long one submission may take before the child is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of sendmail's stderr is kept for the error message.
const STDERR_LIMIT: usize = 4096;
/// An address longer than this is refused (RFC 5321's path limit is 256 octets).
const MAX_ADDRESS_LEN: usize = 320;

#[derive(Debug)]
pub enum SendmailError {
    /// An address that must not reach argv (empty recipient, leading `-`, blanks, controls).
    BadAddress(String),
    Spawn(PathBuf, io::Error),
    Write(io::Error),
    Timeout(Duration),
    /// sendmail exited unsuccessfully; its stderr (bounded) follows.
    Failed(ExitStatus, String),
}

impl fmt::Display for SendmailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendmailError::BadAddress(a) => write!(f, "refusing to pass address {a:?} to sendmail"),
            SendmailError::Spawn(p, e) => write!(f, "cannot run {}: {e}", p.display()),
            SendmailError::Write(e) => write!(f, "writing the message to sendmail failed: {e}"),
            SendmailError::Timeout(t) => {
                write!(
                    f,
                    "sendmail did not finish within {} s; killed",
                    t.as_secs()
                )
            }
            SendmailError::Failed(status, stderr) => {
                write!(f, "sendmail failed ({status})")?;
                let stderr = stderr.trim();
                if !stderr.is_empty() {
                    write!(f, ": {stderr}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for SendmailError {}

/// Whether `addr` may be given to sendmail as an argument: no leading `-`, no whitespace or
/// control characters, bounded length. The empty string is allowed only where `allow_empty`
/// (the null envelope sender).
pub fn valid_address(addr: &str, allow_empty: bool) -> bool {
    if addr.is_empty() {
        return allow_empty;
    }
    addr.len() <= MAX_ADDRESS_LEN
        && !addr.starts_with('-')
        && !addr.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[derive(Debug, Clone)]
pub struct Sendmail {
    program: PathBuf,
    timeout: Duration,
}

impl Sendmail {
    pub fn new(program: impl Into<PathBuf>) -> Sendmail {
        Sendmail {
            program: program.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Courier's sendmail: `<sbindir>/sendmail` (Debian: /usr/sbin/sendmail), else
    /// `<bindir>/sendmail` (where the reference looks).
    pub fn for_courier(courier: &Courier) -> Sendmail {
        let paths = courier.paths();
        let sbin = paths.sbindir.join("sendmail");
        let program = if sbin.exists() {
            sbin
        } else {
            paths.bindir.join("sendmail")
        };
        Sendmail::new(program)
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Sendmail {
        self.timeout = timeout;
        self
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Submit `chunks` (written in order) to `recipients`. `from`: `None` leaves the envelope
    /// sender to sendmail (the invoking user); `Some("")` is the null sender.
    pub fn send(
        &self,
        from: Option<&str>,
        recipients: &[&str],
        chunks: &[&[u8]],
    ) -> Result<(), SendmailError> {
        if let Some(from) = from
            && !valid_address(from, true)
        {
            return Err(SendmailError::BadAddress(from.to_string()));
        }
        if recipients.is_empty() {
            return Err(SendmailError::BadAddress(String::new()));
        }
        if let Some(bad) = recipients.iter().find(|r| !valid_address(r, false)) {
            return Err(SendmailError::BadAddress(bad.to_string()));
        }
        let mut cmd = Command::new(&self.program);
        if let Some(from) = from {
            cmd.arg("-f").arg(from);
        }
        cmd.arg("--").args(recipients);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| SendmailError::Spawn(self.program.clone(), e))?;
        let deadline = Instant::now() + self.timeout;

        // Written from a thread so a sendmail that stops reading cannot block us past the
        // deadline; the thread ends when the child is killed (EPIPE).
        let writer = child.stdin.take().map(|mut stdin| {
            let data: Vec<u8> = chunks.concat();
            thread::spawn(move || stdin.write_all(&data).and_then(|()| stdin.flush()))
        });
        let reader = child.stderr.take().map(|stderr| {
            thread::spawn(move || {
                let mut kept = Vec::new();
                let _ = stderr.take(STDERR_LIMIT as u64).read_to_end(&mut kept);
                String::from_utf8_lossy(&kept).into_owned()
            })
        });

        let status = wait_until(&mut child, deadline);
        let written = writer.map(|w| w.join().unwrap_or(Ok(())));
        let stderr = reader.and_then(|r| r.join().ok()).unwrap_or_default();
        let status = status?.ok_or(SendmailError::Timeout(self.timeout))?;
        if !status.success() {
            return Err(SendmailError::Failed(status, stderr));
        }
        if let Some(Err(e)) = written {
            return Err(SendmailError::Write(e));
        }
        Ok(())
    }
}

/// Wait for the child until the deadline; past it, kill and reap it and return `None`.
fn wait_until(child: &mut Child, deadline: Instant) -> Result<Option<ExitStatus>, SendmailError> {
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Some(status)),
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SendmailError::Write(e));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in `sendmail` script that records its argv and stdin (the real one is
    /// exercised by the Courier end-to-end tests).
    fn script(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("sendmail");
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn addresses_that_could_be_options_or_split_are_refused() {
        assert!(valid_address("a@b.example", false));
        assert!(valid_address("", true));
        assert!(!valid_address("", false));
        assert!(!valid_address("-oQ/tmp", false));
        assert!(!valid_address("a b@c", false));
        assert!(!valid_address("a@b\n", false));
        assert!(!valid_address(&"a".repeat(400), false));
    }

    #[test]
    fn argv_has_recipients_after_double_dash_and_stdin_is_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let prog = script(
            dir.path(),
            &format!(
                "printf '%s\\n' \"$@\" > {0}.argv; cat > {0}.stdin",
                out.display()
            ),
        );
        Sendmail::new(prog)
            .send(
                Some(""),
                &["x@y.example", "z@y.example"],
                &[b"A: b\r\n", b"\nbody\n"],
            )
            .unwrap();
        let argv = fs::read_to_string(dir.path().join("out.argv")).unwrap();
        assert_eq!(argv, "-f\n\n--\nx@y.example\nz@y.example\n");
        let stdin = fs::read(dir.path().join("out.stdin")).unwrap();
        assert_eq!(stdin, b"A: b\r\n\nbody\n");
    }

    #[test]
    fn a_bad_recipient_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let prog = script(dir.path(), &format!("touch {}", marker.display()));
        let err = Sendmail::new(prog)
            .send(None, &["ok@x.example", "-bs"], &[b"x\n"])
            .unwrap_err();
        assert!(matches!(err, SendmailError::BadAddress(ref a) if a == "-bs"));
        assert!(!marker.exists());
    }

    #[test]
    fn failure_exit_status_and_stderr_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let prog = script(
            dir.path(),
            "cat >/dev/null; echo 'no such user' >&2; exit 67",
        );
        let err = Sendmail::new(prog)
            .send(None, &["a@b.example"], &[b"x\n"])
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("67") && text.contains("no such user"),
            "{text}"
        );
    }

    #[test]
    fn a_hanging_sendmail_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let prog = script(dir.path(), "exec sleep 30");
        let started = Instant::now();
        let err = Sendmail::new(prog)
            .with_timeout(Duration::from_millis(300))
            .send(None, &["a@b.example"], &[&vec![b'x'; 1 << 20]])
            .unwrap_err();
        assert!(matches!(err, SendmailError::Timeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = Sendmail::new("/nonexistent/sendmail")
            .send(None, &["a@b.example"], &[b"x\n"])
            .unwrap_err();
        assert!(matches!(err, SendmailError::Spawn(..)), "{err}");
    }
}
