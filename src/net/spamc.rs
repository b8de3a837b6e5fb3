//! SpamAssassin's `spamc`, run as a child process (no shell): the message on stdin straight
//! from the spool file, the processed message read back from stdout with a size bound, the
//! whole run bounded by a wall-clock timeout after which the child is killed and reaped.
//!
//! spamc always gets `-x` (no "safe fallback": without it an unreachable spamd gives exit 0
//! and the unscanned message, which would read as ham) and `-E` (exit 1 = spam, 0 = ham);
//! every other exit status, a signal or a timeout is an error.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// spamc's `-t` and our wall clock, unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of spamc's stderr is kept for the log.
const STDERR_KEEP: usize = 2048;

/// Where spamc finds spamd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spamd {
    /// spamc's own default (its config file, else localhost:783).
    Default,
    /// A UNIX socket (`-U`).
    Socket(PathBuf),
    /// A host (or comma-separated hosts) and optionally a port (`-d`, `-p`).
    Tcp { host: String, port: Option<u16> },
}

#[derive(Debug, Clone)]
pub struct Spamc {
    pub program: PathBuf,
    /// `-t`, and the wall-clock bound of one run (also bounded by the caller's deadline).
    pub timeout: Duration,
    /// `-s`: spamd is not asked about larger messages.
    pub max_msg_size: u64,
    /// `-u`.
    pub username: Option<String>,
    pub spamd: Spamd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// Exit status 0.
    Ham,
    /// Exit status 1 (`-E`).
    Spam,
}

/// A completed scan: the classification and spamc's output (the processed message).
#[derive(Debug, Clone)]
pub struct Scan {
    pub class: Classification,
    pub output: Vec<u8>,
}

#[derive(Debug)]
pub enum SpamcError {
    /// The message file could not be opened.
    Input(PathBuf, io::Error),
    Spawn(PathBuf, io::Error),
    /// Reading spamc's output or waiting for it failed.
    Io(io::Error),
    /// Any exit status but 0 and 1: 69 (spamd unreachable over TCP), 70 (UNIX socket
    /// missing), 74, 75 (timeout talking to spamd), 76 …
    Exit {
        code: i32,
        stderr: String,
    },
    Signal {
        signal: i32,
        stderr: String,
    },
    /// Killed after this long.
    Timeout(Duration),
    /// stdout went past the bound; spamc was killed.
    OutputTooLarge(usize),
}

impl fmt::Display for SpamcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail = |stderr: &str| {
            let s = stderr.trim();
            if s.is_empty() {
                String::new()
            } else {
                format!(": {}", s.replace('\n', " | "))
            }
        };
        match self {
            SpamcError::Input(p, e) => write!(f, "cannot open {}: {e}", p.display()),
            SpamcError::Spawn(p, e) => write!(f, "cannot run {}: {e}", p.display()),
            SpamcError::Io(e) => write!(f, "spamc: {e}"),
            SpamcError::Exit { code, stderr } => {
                write!(f, "spamc exited with status {code}{}", tail(stderr))
            }
            SpamcError::Signal { signal, stderr } => {
                write!(f, "spamc was killed by signal {signal}{}", tail(stderr))
            }
            SpamcError::Timeout(d) => {
                write!(
                    f,
                    "spamc did not finish within {:.1} s; killed",
                    d.as_secs_f64()
                )
            }
            SpamcError::OutputTooLarge(n) => {
                write!(f, "spamc wrote more than {n} bytes; killed")
            }
        }
    }
}

impl std::error::Error for SpamcError {}

impl Spamc {
    pub fn new(program: impl Into<PathBuf>) -> Spamc {
        Spamc {
            program: program.into(),
            timeout: DEFAULT_TIMEOUT,
            max_msg_size: 512_000,
            username: None,
            spamd: Spamd::Default,
        }
    }

    /// The most spamc may write: the processed message can be the original wrapped with a
    /// report (`report_safe`), so twice the largest scanned message plus room for the report.
    pub fn max_output(&self) -> usize {
        let bound = self.max_msg_size.saturating_mul(2).saturating_add(1 << 20);
        usize::try_from(bound).unwrap_or(usize::MAX)
    }

    /// The full argv (program first) for a run whose spamc timeout is `timeout_secs`.
    pub fn argv(&self, timeout_secs: u64) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![
            self.program.clone().into(),
            "-x".into(),
            "-t".into(),
            timeout_secs.to_string().into(),
            "-s".into(),
            self.max_msg_size.to_string().into(),
            "-E".into(),
        ];
        if let Some(user) = &self.username {
            argv.push("-u".into());
            argv.push(user.into());
        }
        match &self.spamd {
            Spamd::Default => {}
            Spamd::Socket(path) => {
                argv.push("-U".into());
                argv.push(path.clone().into());
            }
            Spamd::Tcp { host, port } => {
                argv.push("-d".into());
                argv.push(host.into());
                if let Some(port) = port {
                    argv.push("-p".into());
                    argv.push(port.to_string().into());
                }
            }
        }
        argv
    }

    /// Scan the message in `input`. The run ends by `deadline` at the latest.
    pub fn scan(&self, input: &Path, deadline: Instant) -> Result<Scan, SpamcError> {
        let start = Instant::now();
        let limit = self.timeout.min(deadline.saturating_duration_since(start));
        if limit.is_zero() {
            return Err(SpamcError::Timeout(limit));
        }
        let stop_at = start + limit;
        let timeout_secs = limit.as_secs_f64().ceil().max(1.0) as u64;
        let stdin = File::open(input).map_err(|e| SpamcError::Input(input.to_path_buf(), e))?;
        let argv = self.argv(timeout_secs);
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| SpamcError::Spawn(self.program.clone(), e))?;
        let result = collect(&mut child, stop_at, self.max_output());
        let (output, stderr) = match result {
            Ok(out) => out,
            Err(e) => {
                kill_and_reap(&mut child);
                return Err(match e {
                    Collect::Timeout => SpamcError::Timeout(limit),
                    Collect::TooLarge(n) => SpamcError::OutputTooLarge(n),
                    Collect::Io(e) => SpamcError::Io(e),
                });
            }
        };
        let status = match wait_until(&mut child, stop_at) {
            Ok(Some(status)) => status,
            Ok(None) => return Err(SpamcError::Timeout(limit)),
            Err(e) => return Err(SpamcError::Io(e)),
        };
        classify(status, output, stderr)
    }
}

fn classify(status: ExitStatus, output: Vec<u8>, stderr: Vec<u8>) -> Result<Scan, SpamcError> {
    use std::os::unix::process::ExitStatusExt;
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(Scan {
            class: Classification::Ham,
            output,
        }),
        (Some(1), _) => Ok(Scan {
            class: Classification::Spam,
            output,
        }),
        (Some(code), _) => Err(SpamcError::Exit { code, stderr }),
        (None, signal) => Err(SpamcError::Signal {
            signal: signal.unwrap_or(0),
            stderr,
        }),
    }
}

enum Collect {
    Timeout,
    TooLarge(usize),
    Io(io::Error),
}

/// Read stdout (bounded) and stderr (first bytes kept) until both are closed, by `stop_at`.
fn collect(
    child: &mut Child,
    stop_at: Instant,
    max_output: usize,
) -> Result<(Vec<u8>, Vec<u8>), Collect> {
    let mut stdout: Option<ChildStdout> = child.stdout.take();
    let mut stderr: Option<ChildStderr> = child.stderr.take();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while stdout.is_some() || stderr.is_some() {
        let left = stop_at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Collect::Timeout);
        }
        let mut fds = Vec::with_capacity(2);
        for fd in [
            stdout.as_ref().map(|s| s.as_raw_fd()),
            stderr.as_ref().map(|s| s.as_raw_fd()),
        ]
        .into_iter()
        .flatten()
        {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
        // SAFETY: fds is a valid array of fds.len() pollfd structs for the call's duration.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Collect::Io(e));
        }
        for pfd in &fds {
            if pfd.revents == 0 {
                continue;
            }
            // Readable or hung up: a read does not block now.
            if let Some(s) = stdout.as_mut().filter(|s| s.as_raw_fd() == pfd.fd) {
                match s.read(&mut buf) {
                    Ok(0) => stdout = None,
                    Ok(n) => {
                        if out.len() + n > max_output {
                            return Err(Collect::TooLarge(max_output));
                        }
                        out.extend_from_slice(&buf[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Collect::Io(e)),
                }
            } else if let Some(s) = stderr.as_mut().filter(|s| s.as_raw_fd() == pfd.fd) {
                match s.read(&mut buf) {
                    Ok(0) => stderr = None,
                    Ok(n) => {
                        let room = STDERR_KEEP.saturating_sub(err.len());
                        err.extend_from_slice(&buf[..n.min(room)]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Collect::Io(e)),
                }
            }
        }
    }
    Ok((out, err))
}

/// Wait for the child until `stop_at`; past it, kill and reap it and return `None`.
fn wait_until(child: &mut Child, stop_at: Instant) -> io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= stop_at {
            kill_and_reap(child);
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("fake-spamc");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn strings(argv: &[OsString]) -> Vec<String> {
        argv.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn argv_is_a_list_with_x_t_s_e_and_the_optional_parts() {
        let mut s = Spamc::new("/usr/bin/spamc");
        assert_eq!(
            strings(&s.argv(30)),
            ["/usr/bin/spamc", "-x", "-t", "30", "-s", "512000", "-E"]
        );
        s.username = Some("bob smith".into());
        s.spamd = Spamd::Socket("/run/spamd.sock".into());
        s.max_msg_size = 100;
        assert_eq!(
            strings(&s.argv(7)),
            [
                "/usr/bin/spamc",
                "-x",
                "-t",
                "7",
                "-s",
                "100",
                "-E",
                "-u",
                "bob smith",
                "-U",
                "/run/spamd.sock"
            ]
        );
        s.username = None;
        s.spamd = Spamd::Tcp {
            host: "127.0.0.1".into(),
            port: Some(17830),
        };
        assert_eq!(strings(&s.argv(1))[7..], ["-d", "127.0.0.1", "-p", "17830"]);
        s.spamd = Spamd::Tcp {
            host: "a,b".into(),
            port: None,
        };
        assert_eq!(strings(&s.argv(1))[7..], ["-d", "a,b"]);
    }

    #[test]
    fn exit_status_and_output() {
        let dir = tempfile::tempdir().unwrap();
        let msg = dir.path().join("D1");
        std::fs::write(&msg, b"Subject: x\n\nbody\n").unwrap();
        let far = Instant::now() + Duration::from_secs(30);

        // stdin is the message, argv as built; exit 1 = spam
        let s = Spamc::new(script(
            dir.path(),
            "echo \"X-Args: $*\"; cat; echo oops >&2; exit 1",
        ));
        let scan = s.scan(&msg, far).unwrap();
        assert_eq!(scan.class, Classification::Spam);
        assert_eq!(
            scan.output,
            b"X-Args: -x -t 30 -s 512000 -E\nSubject: x\n\nbody\n"
        );

        let s = Spamc::new(script(dir.path(), "cat"));
        assert_eq!(s.scan(&msg, far).unwrap().class, Classification::Ham);

        let s = Spamc::new(script(dir.path(), "echo 'connect failed' >&2; exit 70"));
        match s.scan(&msg, far) {
            Err(e @ SpamcError::Exit { code: 70, .. }) => {
                assert!(e.to_string().contains("connect failed"), "{e}")
            }
            other => panic!("{other:?}"),
        }

        let s = Spamc::new(script(dir.path(), "kill -9 $$"));
        assert!(matches!(
            s.scan(&msg, far),
            Err(SpamcError::Signal { signal: 9, .. })
        ));

        let s = Spamc::new(dir.path().join("no-such-spamc"));
        assert!(matches!(s.scan(&msg, far), Err(SpamcError::Spawn(..))));

        let s = Spamc::new(script(dir.path(), "cat"));
        assert!(matches!(
            s.scan(&dir.path().join("nope"), far),
            Err(SpamcError::Input(..))
        ));
    }

    #[test]
    fn a_hanging_spamc_is_killed_at_the_timeout_or_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let msg = dir.path().join("D1");
        std::fs::write(&msg, b"Subject: x\n\nbody\n").unwrap();
        let mut s = Spamc::new(script(dir.path(), "exec sleep 30"));
        s.timeout = Duration::from_millis(300);
        let t = Instant::now();
        assert!(matches!(
            s.scan(&msg, Instant::now() + Duration::from_secs(60)),
            Err(SpamcError::Timeout(_))
        ));
        assert!(t.elapsed() < Duration::from_secs(5));

        // the message deadline is nearer than the timeout
        s.timeout = Duration::from_secs(30);
        let t = Instant::now();
        assert!(matches!(
            s.scan(&msg, Instant::now() + Duration::from_millis(300)),
            Err(SpamcError::Timeout(_))
        ));
        assert!(t.elapsed() < Duration::from_secs(5));
        // already past it: nothing runs
        assert!(matches!(
            s.scan(&msg, Instant::now()),
            Err(SpamcError::Timeout(_))
        ));
    }

    #[test]
    fn output_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let msg = dir.path().join("D1");
        std::fs::write(&msg, b"Subject: x\n\nbody\n").unwrap();
        let mut s = Spamc::new(script(dir.path(), "exec yes"));
        s.max_msg_size = 10;
        assert!(matches!(
            s.scan(&msg, Instant::now() + Duration::from_secs(30)),
            Err(SpamcError::OutputTooLarge(n)) if n == (1 << 20) + 20
        ));
    }
}
