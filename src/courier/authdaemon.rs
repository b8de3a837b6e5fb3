//! A client for Courier's authdaemond (spec §5.3): `PRE . <service> <uid>\n` on its UNIX
//! socket, the reply read up to `\n.\n` or `FAIL\n`. Unlike the reference:
//! - a uid (or service) that could corrupt the request — empty, with whitespace or control
//!   characters, or longer than [`MAX_UID_LEN`] — is never sent: the lookup answers "no such
//!   user" (and logs it). Such an address cannot be an account authdaemond knows, and an error
//!   would tempfail the message forever;
//! - the reply is bounded ([`MAX_REPLY_BYTES`]) and decoded as a whole, not per 1024-byte chunk;
//! - every step is bounded by its own timeout *and* by the message's deadline;
//! - the default socket works on Debian too: without `socket_path`, the first of
//!   [`DEFAULT_SOCKETS`] that exists is used (the reference's `/var/spool/authdaemon/socket`,
//!   then Courier's `authdaemonvar` locations `/run/courier/authdaemon/socket` and
//!   `/var/run/courier/authdaemon/socket`).
//!
//! Connection and I/O failures are errors ([`AuthError`]); modules turn them into a tempfail.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{ConfigError, ModulesConfig, Section};

/// The library section of the modules file (`[authdaemon]`, or `[authdaemon.py]`).
pub const SECTION: &str = "authdaemon";
/// Tried in order when `socket_path` is not set.
pub const DEFAULT_SOCKETS: &[&str] = &[
    "/var/spool/authdaemon/socket",
    "/run/courier/authdaemon/socket",
    "/var/run/courier/authdaemon/socket",
];
/// The largest reply accepted. authdaemond's replies are a few hundred bytes.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
/// The longest uid sent (an address: RFC 5321 paths are at most 256 octets).
pub const MAX_UID_LEN: usize = 320;
/// The reference's timeouts, in seconds.
pub const DEFAULT_TIMEOUT_SOCK: f64 = 10.0;
pub const DEFAULT_TIMEOUT_WRITE: f64 = 10.0;
pub const DEFAULT_TIMEOUT_READ: f64 = 30.0;
/// The longest timeout accepted for any step.
const MAX_TIMEOUT_SECS: f64 = 300.0;

#[derive(Debug)]
pub enum AuthError {
    /// No `socket_path` was set and none of [`DEFAULT_SOCKETS`] exists.
    NoSocket,
    Connect(PathBuf, io::Error),
    Send(io::Error),
    Receive(io::Error),
    /// The peer closed before the reply was complete.
    Closed,
    /// The reply grew past [`MAX_REPLY_BYTES`] without ending.
    TooLong,
    /// The message's deadline passed before the lookup could finish.
    Deadline,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::NoSocket => write!(
                f,
                "no authdaemon socket found (tried {}); set socket_path in [authdaemon]",
                DEFAULT_SOCKETS.join(", ")
            ),
            AuthError::Connect(path, e) => {
                write!(
                    f,
                    "could not connect to authdaemon socket {}: {e}",
                    path.display()
                )
            }
            AuthError::Send(e) => write!(
                f,
                "connection to authdaemon lost while sending request: {e}"
            ),
            AuthError::Receive(e) => write!(f, "error reading authdaemon reply: {e}"),
            AuthError::Closed => f.write_str("connection closed when reading authdaemon reply"),
            AuthError::TooLong => write!(
                f,
                "authdaemon reply longer than {MAX_REPLY_BYTES} bytes without its end marker"
            ),
            AuthError::Deadline => {
                f.write_str("message deadline passed during the authdaemon lookup")
            }
        }
    }
}

impl std::error::Error for AuthError {}

/// What authdaemond knows of an account: `HOME`, `MAILDIR`, `QUOTA`, `ADDRESS`, `UID`, `GID`,
/// `NAME`, `OPTIONS`, … (whatever `KEY=value` lines the reply had, but `PASSWD`/`PASSWD2`; the
/// last of a repeated key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub fields: BTreeMap<String, String>,
}

impl UserInfo {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
    pub fn home(&self) -> Option<&str> {
        self.get("HOME")
    }
    pub fn maildir(&self) -> Option<&str> {
        self.get("MAILDIR")
    }
    pub fn quota(&self) -> Option<&str> {
        self.get("QUOTA")
    }
    pub fn address(&self) -> Option<&str> {
        self.get("ADDRESS")
    }
    pub fn uid(&self) -> Option<&str> {
        self.get("UID")
    }
    pub fn gid(&self) -> Option<&str> {
        self.get("GID")
    }
}

/// Parse a complete reply: `None` when a line is exactly `FAIL` (no such user), else the
/// `KEY=value` lines (split at the first `=`; other lines, the final `.` among them, ignored).
pub fn parse_reply(text: &str) -> Option<UserInfo> {
    let mut info = UserInfo::default();
    for line in text.split('\n') {
        if line == "FAIL" {
            return None;
        }
        if let Some((key, value)) = line.split_once('=') {
            // Password hashes (authpam, userdb) are of no use to a filter: not kept, so they
            // cannot reach a log line.
            if key == "PASSWD" || key == "PASSWD2" {
                continue;
            }
            info.fields.insert(key.to_string(), value.to_string());
        }
    }
    Some(info)
}

/// Whether the reply so far is complete: its last line is `.` or `FAIL`.
fn reply_complete(buf: &[u8]) -> bool {
    buf == b".\n" || buf == b"FAIL\n" || buf.ends_with(b"\n.\n") || buf.ends_with(b"\nFAIL\n")
}

/// Whether `word` can go into the request line as one word.
pub fn safe_word(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= MAX_UID_LEN
        && !word.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The `[authdaemon]` settings, read once when the chain is built.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthdaemonConfig {
    /// `None`: the first of [`DEFAULT_SOCKETS`] that exists, at each lookup.
    pub socket_path: Option<PathBuf>,
    pub timeout_sock: Duration,
    pub timeout_write: Duration,
    pub timeout_read: Duration,
}

impl Default for AuthdaemonConfig {
    fn default() -> AuthdaemonConfig {
        AuthdaemonConfig {
            socket_path: None,
            timeout_sock: Duration::from_secs_f64(DEFAULT_TIMEOUT_SOCK),
            timeout_write: Duration::from_secs_f64(DEFAULT_TIMEOUT_WRITE),
            timeout_read: Duration::from_secs_f64(DEFAULT_TIMEOUT_READ),
        }
    }
}

impl AuthdaemonConfig {
    /// From the `[authdaemon]` section (a module gets it with `sec.library("authdaemon")`).
    /// Rejects unknown keys. A timeout of 0 means "no timeout of its own": the message's
    /// deadline still applies.
    pub fn from_section(sec: &Section<'_>) -> Result<AuthdaemonConfig, ConfigError> {
        let mut config = AuthdaemonConfig::default();
        if let Some(path) = sec.opt_string("socket_path")? {
            if path.is_empty() {
                return Err(sec.error("socket_path", "must not be empty"));
            }
            config.socket_path = Some(PathBuf::from(path));
        }
        let timeout = |key: &str, default: f64| -> Result<Duration, ConfigError> {
            let secs = sec.float(key, default)?;
            if !(0.0..=MAX_TIMEOUT_SECS).contains(&secs) {
                return Err(sec.error(
                    key,
                    format!("must be between 0 and {MAX_TIMEOUT_SECS} seconds"),
                ));
            }
            Ok(Duration::from_secs_f64(secs))
        };
        config.timeout_sock = timeout("TIMEOUT_SOCK", DEFAULT_TIMEOUT_SOCK)?;
        config.timeout_write = timeout("TIMEOUT_WRITE", DEFAULT_TIMEOUT_WRITE)?;
        config.timeout_read = timeout("TIMEOUT_READ", DEFAULT_TIMEOUT_READ)?;
        sec.finish()?;
        Ok(config)
    }

    /// The section of a whole modules file (for `check-config`).
    pub fn from_config(modules: &ModulesConfig) -> Result<AuthdaemonConfig, ConfigError> {
        AuthdaemonConfig::from_section(&modules.section(SECTION))
    }

    /// The socket a lookup connects to.
    pub fn socket(&self) -> Result<PathBuf, AuthError> {
        if let Some(path) = &self.socket_path {
            return Ok(path.clone());
        }
        DEFAULT_SOCKETS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or(AuthError::NoSocket)
    }

    /// Look `uid` up for `service` (`PRE . <service> <uid>`). `Ok(None)`: no such user — also
    /// for a uid or service that cannot be sent safely (see the module comment).
    pub fn lookup(
        &self,
        service: &str,
        uid: &str,
        deadline: Instant,
    ) -> Result<Option<UserInfo>, AuthError> {
        if !safe_word(service) || !safe_word(uid) {
            log::info!(
                "authdaemon: not looking up {uid:?} (service {service:?}): it cannot be sent \
                 safely; treated as no such user"
            );
            return Ok(None);
        }
        let path = self.socket()?;
        let stream =
            connect(&path, step_timeout(self.timeout_sock, deadline)?).map_err(|e| {
                match e.kind() {
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock if past(deadline) => {
                        AuthError::Deadline
                    }
                    _ => AuthError::Connect(path.clone(), e),
                }
            })?;
        let request = format!("PRE . {service} {uid}\n");
        self.send(&stream, request.as_bytes(), deadline)?;
        let reply = self.receive(&stream, deadline)?;
        Ok(parse_reply(&String::from_utf8_lossy(&reply)))
    }

    fn send(
        &self,
        mut stream: &UnixStream,
        data: &[u8],
        deadline: Instant,
    ) -> Result<(), AuthError> {
        let mut rest = data;
        while !rest.is_empty() {
            let timeout = step_timeout(self.timeout_write, deadline)?;
            stream
                .set_write_timeout(Some(timeout))
                .map_err(AuthError::Send)?;
            match stream.write(rest) {
                Ok(0) => return Err(AuthError::Send(io::ErrorKind::WriteZero.into())),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) && past(deadline) => return Err(AuthError::Deadline),
                Err(e) => return Err(AuthError::Send(e)),
            }
        }
        Ok(())
    }

    fn receive(&self, mut stream: &UnixStream, deadline: Instant) -> Result<Vec<u8>, AuthError> {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            let timeout = step_timeout(self.timeout_read, deadline)?;
            stream
                .set_read_timeout(Some(timeout))
                .map_err(AuthError::Receive)?;
            let room = MAX_REPLY_BYTES - buf.len();
            let want = chunk.len().min(room.max(1));
            match stream.read(&mut chunk[..want]) {
                Ok(0) => return Err(AuthError::Closed),
                Ok(n) => {
                    if n > room {
                        return Err(AuthError::TooLong);
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if reply_complete(&buf) {
                        return Ok(buf);
                    }
                    if buf.len() >= MAX_REPLY_BYTES {
                        return Err(AuthError::TooLong);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) && past(deadline) => return Err(AuthError::Deadline),
                Err(e) if is_timeout(&e) => {
                    return Err(AuthError::Receive(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "timeout when reading authdaemon reply",
                    )));
                }
                Err(e) => return Err(AuthError::Receive(e)),
            }
        }
    }
}

fn past(deadline: Instant) -> bool {
    Instant::now() >= deadline
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The timeout for one step: its own (0 = none), but never past the deadline.
fn step_timeout(own: Duration, deadline: Instant) -> Result<Duration, AuthError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(AuthError::Deadline);
    }
    Ok(if own.is_zero() { left } else { own.min(left) })
}

/// Connect to a UNIX stream socket within `timeout`. Linux bounds a blocking AF_UNIX connect
/// (which waits while the listener's backlog is full) by the socket's send timeout, so that is
/// set before connecting; std's `UnixStream::connect` offers no timeout.
fn connect(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let stream = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    stream.set_write_timeout(Some(timeout))?;

    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    // One byte stays zero: the terminating NUL.
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path is empty or too long",
        ));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    loop {
        // SAFETY: addr is a valid sockaddr_un of `len` bytes; the fd is open.
        let rc = unsafe {
            libc::connect(
                stream.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                len,
            )
        };
        if rc == 0 {
            return Ok(stream);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) | Some(libc::EINPROGRESS) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ));
            }
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::thread;

    fn config_for(path: &Path) -> AuthdaemonConfig {
        AuthdaemonConfig {
            socket_path: Some(path.to_path_buf()),
            ..AuthdaemonConfig::default()
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    /// A one-shot authdaemond stand-in for protocol edge cases: records the request, then
    /// runs `reply` on the connection (the real authdaemond is in tests/mailbox_modules.rs).
    fn serve(
        dir: &Path,
        reply: impl FnOnce(&mut UnixStream) + Send + 'static,
    ) -> (PathBuf, thread::JoinHandle<Vec<u8>>) {
        let path = dir.join("socket");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while conn.read(&mut byte).unwrap_or(0) == 1 {
                request.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            reply(&mut conn);
            request
        });
        (path, handle)
    }

    #[test]
    fn replies_are_parsed() {
        let info = parse_reply(
            "ADDRESS=e2e@e2e.test\nUID=1000\nGID=1000\nHOME=/home/e2e\nMAILDIR=./Maildir\n\
             QUOTA=100S\nOPTIONS=a=b\nPASSWD=$y$hash\n.\n",
        )
        .unwrap();
        assert_eq!(info.home(), Some("/home/e2e"));
        assert_eq!(info.maildir(), Some("./Maildir"));
        assert_eq!(info.quota(), Some("100S"));
        assert_eq!(info.get("OPTIONS"), Some("a=b"));
        assert_eq!(info.uid(), Some("1000"));
        assert_eq!(info.get("PASSWD"), None);
        assert_eq!(parse_reply("FAIL\n"), None);
        assert!(reply_complete(b"FAIL\n"));
        assert!(reply_complete(b"HOME=/x\n.\n"));
        // A value that merely ends in FAIL is not the end of the reply.
        assert!(!reply_complete(b"NAME=EPIC FAIL\n"));
        assert!(!reply_complete(b"HOME=/x\n"));
    }

    #[test]
    fn unsafe_uids_are_not_sent() {
        for bad in ["", "a b", "a\nb", "a\tb", "x\u{7f}", &"a".repeat(400)] {
            assert!(!safe_word(bad), "{bad:?}");
        }
        assert!(safe_word("e2e"));
        assert!(safe_word("user@hosted.test"));
        // No socket at this path: a refused uid never gets as far as connecting.
        let config = config_for(Path::new("/nonexistent/authdaemon/socket"));
        assert_eq!(config.lookup("smtp", "a b", soon()).unwrap(), None);
        assert!(matches!(
            config.lookup("smtp", "ab", soon()),
            Err(AuthError::Connect(..))
        ));
    }

    #[test]
    fn request_line_and_user_info() {
        let dir = tempfile::tempdir().unwrap();
        let (path, server) = serve(dir.path(), |c| {
            // Split over writes, as a real server may.
            c.write_all(b"HOME=/home/u\nMAIL").unwrap();
            c.write_all(b"DIR=/home/u/Maildir\n.\n").unwrap();
        });
        let info = config_for(&path)
            .lookup("smtp", "u@x.test", soon())
            .unwrap()
            .unwrap();
        assert_eq!(info.maildir(), Some("/home/u/Maildir"));
        assert_eq!(server.join().unwrap(), b"PRE . smtp u@x.test\n");
    }

    #[test]
    fn fail_is_no_such_user() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _server) = serve(dir.path(), |c| c.write_all(b"FAIL\n").unwrap());
        assert_eq!(
            config_for(&path).lookup("smtp", "nobody", soon()).unwrap(),
            None
        );
    }

    #[test]
    fn an_oversized_reply_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _server) = serve(dir.path(), |c| {
            let line = format!("X={}\n", "y".repeat(1000));
            for _ in 0..100 {
                if c.write_all(line.as_bytes()).is_err() {
                    break;
                }
            }
        });
        let err = config_for(&path).lookup("smtp", "u", soon()).unwrap_err();
        assert!(matches!(err, AuthError::TooLong), "{err}");
    }

    #[test]
    fn a_close_before_the_end_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _server) = serve(dir.path(), |c| c.write_all(b"HOME=/x\n").unwrap());
        let err = config_for(&path).lookup("smtp", "u", soon()).unwrap_err();
        assert!(matches!(err, AuthError::Closed), "{err}");
    }

    #[test]
    fn a_silent_server_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _server) = serve(dir.path(), |_| thread::sleep(Duration::from_secs(3)));
        let mut config = config_for(&path);
        config.timeout_read = Duration::from_millis(200);
        let started = Instant::now();
        let err = config.lookup("smtp", "u", soon()).unwrap_err();
        assert!(
            matches!(err, AuthError::Receive(ref e) if e.kind() == io::ErrorKind::TimedOut),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));

        // The message's deadline bounds the read too, whatever TIMEOUT_READ says.
        let dir = tempfile::tempdir().unwrap();
        let (path, _server) = serve(dir.path(), |_| thread::sleep(Duration::from_secs(3)));
        let started = Instant::now();
        let err = config_for(&path)
            .lookup("smtp", "u", Instant::now() + Duration::from_millis(200))
            .unwrap_err();
        assert!(matches!(err, AuthError::Deadline), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn check_config_reports_a_bad_section_once() {
        let modules = ModulesConfig::parse(Path::new("m.conf"), "[authdaemon]\nfoo = 1\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut paths = crate::courier::CourierPaths::defaults();
        paths.sysconfdir = dir.path().join("etc");
        paths.localstatedir = dir.path().join("spool");
        let courier = crate::courier::Courier::new(paths);
        for chain in ["", "localsenders\nquota\n"] {
            let chain = crate::config::ChainConfig::parse(Path::new("c.conf"), chain).unwrap();
            let errors = match crate::chain::Chain::build("t", &chain, &modules, &courier) {
                Ok(_) => panic!("a bad [authdaemon] was accepted"),
                Err(errors) => errors,
            };
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].to_string().contains("foo"), "{}", errors[0]);
        }
    }

    #[test]
    fn settings() {
        let cfg = ModulesConfig::parse(
            Path::new("m.conf"),
            "[authdaemon.py]\nsocket_path = '/s'\nTIMEOUT_SOCK = 1\nTIMEOUT_READ = 2.5\n",
        )
        .unwrap();
        let c = AuthdaemonConfig::from_config(&cfg).unwrap();
        assert_eq!(c.socket_path, Some(PathBuf::from("/s")));
        assert_eq!(c.timeout_sock, Duration::from_secs(1));
        assert_eq!(c.timeout_write, Duration::from_secs(10));
        assert_eq!(c.timeout_read, Duration::from_millis(2500));
        let empty = AuthdaemonConfig::from_config(&ModulesConfig::empty()).unwrap();
        assert_eq!(empty, AuthdaemonConfig::default());
        for bad in ["socket_path = 3", "TIMEOUT_READ = -1", "timeout = 1"] {
            let cfg = ModulesConfig::parse(Path::new("m.conf"), &format!("[authdaemon]\n{bad}\n"))
                .unwrap();
            assert!(AuthdaemonConfig::from_config(&cfg).is_err(), "{bad}");
        }
    }
}
