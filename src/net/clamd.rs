//! A small blocking clamd client over its UNIX socket: `zPING`, `zINSTREAM` (the message sent in
//! length-prefixed chunks, so clamd needs no access to the spool) and `zFILDES` (the open file
//! passed with SCM_RIGHTS; clamd reads it itself, StreamMaxLength does not apply).
//!
//! Every step is bounded: connecting by [`Timeouts::connect`], each send and receive by
//! [`Timeouts::io`], the whole request by [`Timeouts::total`] and by the caller's deadline. A
//! reply is read up to its terminator and at most [`MAX_REPLY`] bytes.
//!
//! clamd refuses an INSTREAM longer than its `StreamMaxLength` (default 25 MiB): it answers
//! `INSTREAM size limit exceeded. ERROR` and closes the connection while the client is still
//! writing. The client therefore sends at most `max_len` bytes of the message (the caller keeps
//! this at or below clamd's limit) and reports the rest as not scanned; and when clamd closes
//! early anyway (EPIPE / ECONNRESET on send) it stops sending and still reads the reply.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// clamd's default `StreamMaxLength`.
pub const DEFAULT_STREAM_MAX: u64 = 25 * 1024 * 1024;
/// The longest reply accepted (a verdict line is well under 200 bytes).
pub const MAX_REPLY: usize = 4096;
/// Bytes of message data per INSTREAM chunk.
const CHUNK: usize = 64 * 1024;

/// What clamd found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanResult {
    Clean,
    /// The signature name, as clamd gives it (e.g. `Eicar-Test-Signature.UNOFFICIAL`).
    Found(String),
}

/// An INSTREAM scan: the result, and how much of the message clamd saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamScan {
    pub result: ScanResult,
    /// Bytes sent to clamd.
    pub sent: u64,
    /// The message was longer than the limit; the rest was not scanned.
    pub truncated: bool,
}

#[derive(Debug)]
pub enum ClamdError {
    /// No connection: no socket, refused, no permission, backlog full past the timeout.
    Connect(String),
    /// The connect, a send or a receive did not complete in time.
    Timeout(String),
    /// A send or receive failed, or clamd closed the connection without a reply.
    Io(String),
    /// clamd answered with an error (`… ERROR`, `COMMAND READ TIMED OUT`).
    Scanner(String),
    /// A reply that is none of the known forms.
    Protocol(String),
    /// Reading the message to send failed (not clamd's fault).
    Source(io::Error),
}

impl PartialEq for ClamdError {
    fn eq(&self, other: &ClamdError) -> bool {
        use ClamdError::*;
        match (self, other) {
            (Connect(a), Connect(b))
            | (Timeout(a), Timeout(b))
            | (Io(a), Io(b))
            | (Scanner(a), Scanner(b))
            | (Protocol(a), Protocol(b)) => a == b,
            (Source(a), Source(b)) => a.kind() == b.kind(),
            _ => false,
        }
    }
}

impl fmt::Display for ClamdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClamdError::Connect(m) => write!(f, "cannot connect to clamd: {m}"),
            ClamdError::Timeout(m) => write!(f, "clamd timed out: {m}"),
            ClamdError::Io(m) => write!(f, "clamd connection failed: {m}"),
            ClamdError::Scanner(m) => write!(f, "clamd reported an error: {m}"),
            ClamdError::Protocol(m) => write!(f, "unexpected reply from clamd: {m}"),
            ClamdError::Source(e) => write!(f, "cannot read the message: {e}"),
        }
    }
}

impl std::error::Error for ClamdError {}

/// Time limits of one request. The caller's deadline bounds all three as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// One send or one receive (waiting for the verdict while clamd scans included).
    pub io: Duration,
    /// The whole request: connect, send, scan, reply.
    pub total: Duration,
}

impl Timeouts {
    /// connect at most 5 s (and never more than `total`), every step and the whole request
    /// `total`.
    pub fn from_total(total: Duration) -> Timeouts {
        Timeouts {
            connect: total.min(Duration::from_secs(5)),
            io: total,
            total,
        }
    }
}

/// A clamd instance on a UNIX socket. Holds no connection: each request opens its own, as
/// clamd closes it after one command.
#[derive(Debug, Clone)]
pub struct Clamd {
    socket: PathBuf,
    timeouts: Timeouts,
}

impl Clamd {
    pub fn new(socket: impl Into<PathBuf>, timeouts: Timeouts) -> Clamd {
        Clamd {
            socket: socket.into(),
            timeouts,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `zPING` → `PONG`.
    pub fn ping(&self, deadline: Instant) -> Result<(), ClamdError> {
        let mut conn = self.connect(deadline)?;
        conn.send_all(b"zPING\0")
            .map_err(|e| e.into_error("sending PING"))?;
        let reply = conn.read_reply()?;
        let text = strip_reply(&reply);
        if text == "PONG" {
            Ok(())
        } else {
            Err(ClamdError::Protocol(format!(
                "{} to PING",
                printable(text.as_bytes())
            )))
        }
    }

    /// Scan at most `max_len` bytes read from `data` with `zINSTREAM`.
    pub fn instream(
        &self,
        data: &mut dyn Read,
        max_len: u64,
        deadline: Instant,
    ) -> Result<StreamScan, ClamdError> {
        let mut conn = self.connect(deadline)?;
        let mut sent = 0u64;
        let mut truncated = false;
        // clamd may close early (its size limit): stop sending then and read its reply.
        let sending = (|| -> Result<(), SendError> {
            conn.send_all(b"zINSTREAM\0")?;
            let mut buf = vec![0u8; 4 + CHUNK];
            loop {
                let room = (max_len - sent).min(CHUNK as u64) as usize;
                if room == 0 {
                    // Is there more than the limit? One byte tells.
                    truncated = read_some(data, &mut [0u8; 1]).map_err(SendError::Source)? > 0;
                    break;
                }
                let n = read_some(data, &mut buf[4..4 + room]).map_err(SendError::Source)?;
                if n == 0 {
                    break;
                }
                buf[..4].copy_from_slice(&(n as u32).to_be_bytes());
                conn.send_all(&buf[..4 + n])?;
                sent += n as u64;
            }
            conn.send_all(&[0, 0, 0, 0])
        })();
        match sending {
            Ok(()) => {}
            Err(SendError::Closed(e)) => {
                log::debug!("clamd closed the stream after {sent} bytes ({e}); reading its reply")
            }
            Err(e) => return Err(e.into_error("sending INSTREAM")),
        }
        let result = parse_reply(&conn.read_reply()?)?;
        Ok(StreamScan {
            result,
            sent,
            truncated,
        })
    }

    /// Scan an open file with `zFILDES`: clamd reads the descriptor itself.
    pub fn fildes(&self, file: &File, deadline: Instant) -> Result<ScanResult, ClamdError> {
        let mut conn = self.connect(deadline)?;
        // The command first, then one byte that carries the descriptor: clamd refuses a
        // descriptor that arrives with the command itself ("ancillary data sent without FILDES").
        let sending = conn
            .send_all(b"zFILDES\0")
            .and_then(|()| conn.send_fd(file.as_raw_fd()));
        match sending {
            Ok(()) => {}
            Err(SendError::Closed(e)) => log::debug!("clamd closed during FILDES ({e})"),
            Err(e) => return Err(e.into_error("sending FILDES")),
        }
        parse_reply(&conn.read_reply()?)
    }

    fn connect(&self, deadline: Instant) -> Result<Conn, ClamdError> {
        let deadline = deadline.min(Instant::now() + self.timeouts.total);
        let limit = step(self.timeouts.connect, deadline)
            .ok_or_else(|| ClamdError::Timeout("no time left to connect".into()))?;
        let stream = connect_unix(&self.socket, limit).map_err(|e| {
            let what = format!("{}: {e}", self.socket.display());
            if is_timeout(&e) {
                ClamdError::Timeout(format!("connecting to {what}"))
            } else {
                ClamdError::Connect(what)
            }
        })?;
        Ok(Conn {
            stream,
            io: self.timeouts.io,
            deadline,
        })
    }
}

/// The time one step may take: `limit`, cut to what is left before `deadline` (at least 1 ms,
/// as a zero socket timeout means "none"); `None` when the deadline has passed.
fn step(limit: Duration, deadline: Instant) -> Option<Duration> {
    let left = deadline.checked_duration_since(Instant::now())?;
    if left.is_zero() {
        return None;
    }
    Some(limit.min(left).max(Duration::from_millis(1)))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Read into `buf`, retrying on EINTR.
fn read_some(data: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match data.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Connect to a UNIX socket, waiting at most `timeout`. On Linux a connect to a socket whose
/// backlog is full blocks, bounded by SO_SNDTIMEO, which is set before connecting. (Also the
/// PostgreSQL store's connect to a UNIX socket.)
pub(crate) fn connect_unix(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a usable UNIX socket path (empty, too long or with a NUL byte)",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (to, from) in addr.sun_path.iter_mut().zip(bytes) {
        *to = *from as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    // SAFETY: plain socket(2) call; the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let stream = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    stream.set_write_timeout(Some(timeout))?;
    loop {
        // SAFETY: addr is a valid sockaddr_un and len is within it.
        let rc = unsafe {
            libc::connect(
                stream.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                len as libc::socklen_t,
            )
        };
        if rc == 0 {
            return Ok(stream);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            // EAGAIN: the backlog stayed full for the whole timeout.
            io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the listen queue stayed full for {} ms",
                        timeout.as_millis()
                    ),
                ));
            }
            _ => return Err(e),
        }
    }
}

enum SendError {
    /// clamd closed the connection (EPIPE, ECONNRESET): its reply may still be there.
    Closed(io::Error),
    Timeout(String),
    Other(io::Error),
    /// Reading the message failed.
    Source(io::Error),
}

impl SendError {
    fn into_error(self, what: &str) -> ClamdError {
        match self {
            SendError::Closed(e) | SendError::Other(e) => ClamdError::Io(format!("{what}: {e}")),
            SendError::Timeout(m) => ClamdError::Timeout(format!("{what}: {m}")),
            SendError::Source(e) => ClamdError::Source(e),
        }
    }
}

struct Conn {
    stream: UnixStream,
    io: Duration,
    deadline: Instant,
}

impl Conn {
    fn send_limit(&self) -> Result<(), SendError> {
        let limit = step(self.io, self.deadline)
            .ok_or_else(|| SendError::Timeout("the time for the scan ran out".into()))?;
        self.stream
            .set_write_timeout(Some(limit))
            .map_err(SendError::Other)
    }

    fn send_error(&self, e: io::Error) -> SendError {
        match e.raw_os_error() {
            Some(libc::EPIPE) | Some(libc::ECONNRESET) => SendError::Closed(e),
            _ if is_timeout(&e) => SendError::Timeout("clamd took no data in time".into()),
            _ => SendError::Other(e),
        }
    }

    fn send_all(&mut self, mut buf: &[u8]) -> Result<(), SendError> {
        while !buf.is_empty() {
            self.send_limit()?;
            // SAFETY: buf is a valid slice; MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE.
            let n = unsafe {
                libc::send(
                    self.stream.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.send_error(e));
            }
            if n == 0 {
                return Err(SendError::Other(io::ErrorKind::WriteZero.into()));
            }
            buf = &buf[n as usize..];
        }
        Ok(())
    }

    /// One NUL byte carrying `fd` (SCM_RIGHTS).
    fn send_fd(&mut self, fd: libc::c_int) -> Result<(), SendError> {
        self.send_limit()?;
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        // Room for one descriptor, aligned for cmsghdr.
        let mut control = [0u64; 8];
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
        if space > std::mem::size_of_val(&control) {
            return Err(SendError::Other(io::Error::other(
                "control buffer too small",
            )));
        }
        // SAFETY: msghdr is plain old data; all zeroes is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg points at a control buffer of `space` bytes, enough for one cmsghdr with
        // one int; CMSG_FIRSTHDR therefore returns a valid, aligned header inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            if cmsg.is_null() {
                return Err(SendError::Other(io::Error::other("no room for SCM_RIGHTS")));
            }
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
        }
        loop {
            // SAFETY: msg and everything it points to live until the call returns.
            let n = unsafe {
                libc::sendmsg(self.stream.as_raw_fd(), &raw const msg, libc::MSG_NOSIGNAL)
            };
            if n == 1 {
                return Ok(());
            }
            let e = if n < 0 {
                io::Error::last_os_error()
            } else {
                io::ErrorKind::WriteZero.into()
            };
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(self.send_error(e));
        }
    }

    /// Read up to the first terminator (`\0`, or `\n`: clamd ends `COMMAND READ TIMED OUT`
    /// with a newline even after a z-command), EOF, or [`MAX_REPLY`] bytes.
    fn read_reply(&mut self) -> Result<Vec<u8>, ClamdError> {
        let mut reply = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let limit = step(self.io, self.deadline).ok_or_else(|| {
                ClamdError::Timeout("no reply before the time for the scan ran out".into())
            })?;
            self.stream
                .set_read_timeout(Some(limit))
                .map_err(|e| ClamdError::Io(e.to_string()))?;
            let n = match self.stream.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => {
                    return Err(ClamdError::Timeout(format!(
                        "no reply within {} ms",
                        limit.as_millis()
                    )));
                }
                // A reset after a complete reply still leaves the reply.
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) && !reply.is_empty() => 0,
                Err(e) => return Err(ClamdError::Io(format!("reading the reply: {e}"))),
            };
            if n == 0 {
                if reply.is_empty() {
                    return Err(ClamdError::Io(
                        "clamd closed the connection without a reply".into(),
                    ));
                }
                return Ok(reply);
            }
            let chunk = &buf[..n];
            if let Some(end) = chunk.iter().position(|&b| b == 0 || b == b'\n') {
                reply.extend_from_slice(&chunk[..=end]);
                if reply.len() > MAX_REPLY {
                    break;
                }
                return Ok(reply);
            }
            reply.extend_from_slice(chunk);
            if reply.len() > MAX_REPLY {
                break;
            }
        }
        Err(ClamdError::Protocol(format!(
            "a reply longer than {MAX_REPLY} bytes: {}…",
            printable(&reply[..80])
        )))
    }
}

/// The reply without its terminator (`\0` or `\n`) and without a request-number prefix
/// (`12: `, from IDSESSION mode).
fn strip_reply(raw: &[u8]) -> String {
    let raw = raw
        .strip_suffix(b"\0")
        .or_else(|| raw.strip_suffix(b"\n"))
        .unwrap_or(raw);
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches(['\r', '\n', '\0']);
    match text.split_once(": ") {
        Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            rest.to_string()
        }
        _ => text.to_string(),
    }
}

/// A short, log-safe rendering of reply bytes.
fn printable(raw: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(raw)
        .chars()
        .take(200)
        .flat_map(char::escape_debug)
        .collect();
    format!("\"{text}\"")
}

/// Parse the reply to INSTREAM or FILDES: `<object>: OK`, `<object>: <name> FOUND` (the object
/// is `stream` or `fd[N]`), or an error (`… ERROR`, `COMMAND READ TIMED OUT`, anything else).
/// The signature name is opaque; an `(md5:size)` suffix (ExtendedDetectionInfo) is dropped.
pub fn parse_reply(raw: &[u8]) -> Result<ScanResult, ClamdError> {
    let text = strip_reply(raw);
    let garbage = || ClamdError::Protocol(printable(raw));
    if text.is_empty() || text.chars().any(|c| c.is_control() || c == '\u{fffd}') {
        return Err(garbage());
    }
    if text == "ERROR" || text.ends_with(" ERROR") {
        let reason = text.trim_end_matches("ERROR").trim_end();
        return Err(ClamdError::Scanner(reason.to_string()));
    }
    if text == "COMMAND READ TIMED OUT" {
        return Err(ClamdError::Scanner(text));
    }
    let Some((object, verdict)) = text.split_once(": ") else {
        return Err(garbage());
    };
    let known_object = object == "stream"
        || object
            .strip_prefix("fd[")
            .and_then(|s| s.strip_suffix(']'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !known_object {
        return Err(garbage());
    }
    if verdict == "OK" {
        return Ok(ScanResult::Clean);
    }
    let Some(name) = verdict.strip_suffix(" FOUND") else {
        return Err(garbage());
    };
    let name = match name.strip_suffix(')').and_then(|s| s.rsplit_once('(')) {
        Some((base, info)) if !base.is_empty() && is_detection_info(info) => base,
        _ => name,
    };
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_graphic()) {
        return Err(garbage());
    }
    Ok(ScanResult::Found(name.to_string()))
}

/// `<hex digest>:<size>` as clamd's ExtendedDetectionInfo appends it.
fn is_detection_info(info: &str) -> bool {
    info.split_once(':').is_some_and(|(hash, size)| {
        !hash.is_empty()
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
            && !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    fn found(name: &str) -> Result<ScanResult, ClamdError> {
        Ok(ScanResult::Found(name.to_string()))
    }

    #[test]
    fn replies() {
        assert_eq!(parse_reply(b"stream: OK\0"), Ok(ScanResult::Clean));
        assert_eq!(parse_reply(b"stream: OK\n"), Ok(ScanResult::Clean));
        assert_eq!(parse_reply(b"stream: OK"), Ok(ScanResult::Clean));
        assert_eq!(parse_reply(b"1: stream: OK\0"), Ok(ScanResult::Clean));
        assert_eq!(parse_reply(b"fd[11]: OK\0"), Ok(ScanResult::Clean));
        assert_eq!(
            parse_reply(b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\0"),
            found("Eicar-Test-Signature.UNOFFICIAL")
        );
        assert_eq!(
            parse_reply(b"12: stream: Win.Test.EICAR_HDB-1 FOUND\0"),
            found("Win.Test.EICAR_HDB-1")
        );
        assert_eq!(
            parse_reply(b"fd[7]: Rustfilter.Test.Pattern.UNOFFICIAL FOUND\0"),
            found("Rustfilter.Test.Pattern.UNOFFICIAL")
        );
        assert_eq!(
            parse_reply(b"stream: Eicar-Signature(44d88612fea8a8f36de82e1278abb02f:68) FOUND\0"),
            found("Eicar-Signature")
        );
        // Parentheses that are not detection info belong to the name.
        assert_eq!(
            parse_reply(b"stream: Odd(name) FOUND\0"),
            found("Odd(name)")
        );
        assert_eq!(
            parse_reply(b"INSTREAM size limit exceeded. ERROR\0"),
            Err(ClamdError::Scanner("INSTREAM size limit exceeded.".into()))
        );
        assert_eq!(
            parse_reply(b"stream: Can't allocate memory ERROR\0"),
            Err(ClamdError::Scanner("stream: Can't allocate memory".into()))
        );
        assert!(matches!(
            parse_reply(b"COMMAND READ TIMED OUT\n"),
            Err(ClamdError::Scanner(_))
        ));
    }

    #[test]
    fn garbage_is_an_error() {
        for raw in [
            &b""[..],
            b"\0",
            b"UNKNOWN COMMAND\0",
            b"PONG\0",
            b"stream: \0",
            b"stream: FOUND\0",
            b"stream:  FOUND\0",
            b"stream: OKAY\0",
            b"file: OK\0",
            b"fd[x]: OK\0",
            b"stream: Bad\rName FOUND\0",
            b"stream: Bad\xffName FOUND\0",
            b"stream: Bad\x01Name FOUND\0",
            b"stream: two words FOUND\0",
            b"HTTP/1.0 200 OK\r\n",
        ] {
            assert!(
                matches!(parse_reply(raw), Err(ClamdError::Protocol(_))),
                "{raw:?} → {:?}",
                parse_reply(raw)
            );
        }
    }

    /// A listener in a temporary directory; `serve` runs on each accepted connection.
    fn listener(
        serve: impl Fn(UnixStream) + Send + 'static,
    ) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<()>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("clamd.sock");
        let l = UnixListener::bind(&path).expect("bind");
        let t = std::thread::spawn(move || {
            if let Ok((s, _)) = l.accept() {
                serve(s);
            }
        });
        (dir, path, t)
    }

    fn client(path: &Path, total_ms: u64) -> Clamd {
        Clamd::new(path, Timeouts::from_total(Duration::from_millis(total_ms)))
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// Read one INSTREAM request; returns the stream's bytes.
    fn read_instream(s: &mut UnixStream) -> Vec<u8> {
        let mut cmd = [0u8; 10];
        s.read_exact(&mut cmd).expect("command");
        assert_eq!(&cmd, b"zINSTREAM\0");
        let mut data = Vec::new();
        loop {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).expect("length");
            let len = u32::from_be_bytes(len) as usize;
            if len == 0 {
                return data;
            }
            let start = data.len();
            data.resize(start + len, 0);
            s.read_exact(&mut data[start..]).expect("chunk");
        }
    }

    #[test]
    fn instream_framing_and_limit() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (_dir, path, t) = listener(move |mut s| {
            let data = read_instream(&mut s);
            tx.send(data).expect("send");
            s.write_all(b"stream: OK\0").expect("reply");
        });
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let scan = client(&path, 5000)
            .instream(&mut &body[..], 150_000, far())
            .expect("scan");
        t.join().expect("join");
        assert_eq!(
            scan,
            StreamScan {
                result: ScanResult::Clean,
                sent: 150_000,
                truncated: true
            }
        );
        assert_eq!(rx.recv().expect("data"), &body[..150_000]);

        // Exactly the limit is not truncated; nor is an empty message.
        for (len, max) in [(1000usize, 1000u64), (0, 10)] {
            let (_dir, path, t) = listener(|mut s| {
                read_instream(&mut s);
                s.write_all(b"stream: X FOUND\0").expect("reply");
            });
            let body = vec![b'a'; len];
            let scan = client(&path, 5000)
                .instream(&mut &body[..], max, far())
                .expect("scan");
            t.join().expect("join");
            assert_eq!(scan.result, ScanResult::Found("X".into()));
            assert_eq!((scan.sent, scan.truncated), (len as u64, false));
        }
    }

    #[test]
    fn a_reply_after_an_early_close_is_read() {
        // clamd's size limit: it answers and closes while the client is still sending.
        let (_dir, path, t) = listener(|mut s| {
            let mut head = [0u8; 64];
            s.read_exact(&mut head).expect("head");
            s.write_all(b"INSTREAM size limit exceeded. ERROR\0")
                .expect("reply");
        });
        let body = vec![b'x'; 8 << 20];
        let r = client(&path, 5000).instream(&mut &body[..], u64::MAX, far());
        t.join().expect("join");
        assert_eq!(
            r,
            Err(ClamdError::Scanner("INSTREAM size limit exceeded.".into()))
        );
    }

    #[test]
    fn a_silent_server_times_out() {
        let (_dir, path, t) = listener(|mut s| {
            read_instream(&mut s);
            std::thread::sleep(Duration::from_millis(4000));
        });
        let start = Instant::now();
        let r = client(&path, 300).instream(&mut &b"hello"[..], 100, far());
        let took = start.elapsed();
        assert!(matches!(r, Err(ClamdError::Timeout(_))), "{r:?}");
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(3000),
            "{took:?}"
        );
        drop(t); // still sleeping: not joined

        // The caller's deadline wins over a longer timeout.
        let (_dir, path, t) = listener(|_s| std::thread::sleep(Duration::from_millis(4000)));
        let start = Instant::now();
        let r = client(&path, 10_000).ping(Instant::now() + Duration::from_millis(200));
        assert!(matches!(r, Err(ClamdError::Timeout(_))), "{r:?}");
        assert!(start.elapsed() < Duration::from_millis(2000));
        drop(t); // still sleeping: not joined
    }

    #[test]
    fn a_server_that_closes_without_reply_or_sends_garbage() {
        let (_dir, path, t) = listener(drop);
        let r = client(&path, 2000).instream(&mut &b"hello"[..], 100, far());
        assert!(matches!(r, Err(ClamdError::Io(_))), "{r:?}");
        t.join().expect("join");

        let (_dir, path, t) = listener(|mut s| {
            read_instream(&mut s);
            s.write_all(b"220 smtp.example ESMTP\r\n").expect("reply");
        });
        let r = client(&path, 2000).instream(&mut &b"hello"[..], 100, far());
        assert!(matches!(r, Err(ClamdError::Protocol(_))), "{r:?}");
        t.join().expect("join");

        // An endless reply without a terminator stops at MAX_REPLY.
        let (_dir, path, t) = listener(|mut s| {
            read_instream(&mut s);
            let _ = s.write_all(&[b'A'; 3 * MAX_REPLY]);
        });
        let r = client(&path, 2000).instream(&mut &b"hello"[..], 100, far());
        assert!(matches!(r, Err(ClamdError::Protocol(_))), "{r:?}");
        t.join().expect("join");
    }

    #[test]
    fn a_message_read_error_is_not_a_scanner_error() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let (_dir, path, t) = listener(|mut s| {
            let _ = s.read(&mut [0u8; 64]);
        });
        let r = client(&path, 2000).instream(&mut Failing, 100, far());
        assert!(matches!(r, Err(ClamdError::Source(_))), "{r:?}");
        t.join().expect("join");
    }

    #[test]
    fn connect_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = client(&dir.path().join("none"), 1000).ping(far());
        assert!(matches!(r, Err(ClamdError::Connect(_))), "{r:?}");
        let long = dir.path().join("x".repeat(200));
        let r = client(&long, 1000).ping(far());
        assert!(matches!(r, Err(ClamdError::Connect(_))), "{r:?}");
    }

    #[test]
    fn a_full_backlog_times_out_the_connect() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("full.sock");
        let l = UnixListener::bind(&path).expect("bind");
        // SAFETY: listen(2) on our own socket: backlog 0, and nobody accepts.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
        let mut held = Vec::new();
        let start = Instant::now();
        let err = loop {
            match connect_unix(&path, Duration::from_millis(200)) {
                Ok(s) => held.push(s),
                Err(e) => break e,
            }
            assert!(held.len() < 10, "the backlog never filled");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    /// Receive one byte and the descriptor that comes with it.
    fn recv_fd(s: &UnixStream) -> OwnedFd {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut control = [0u64; 8];
        // SAFETY: test code; msghdr zeroed then pointed at live buffers.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &raw mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            let n = libc::recvmsg(s.as_raw_fd(), &raw mut msg, 0);
            assert_eq!(n, 1, "recvmsg: {}", io::Error::last_os_error());
            let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            assert!(!cmsg.is_null(), "no control message");
            assert_eq!((*cmsg).cmsg_type, libc::SCM_RIGHTS);
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
            OwnedFd::from_raw_fd(fd)
        }
    }

    #[test]
    fn fildes_passes_the_descriptor_after_the_command() {
        let (_dir, path, t) = listener(|mut s| {
            let mut cmd = [0u8; 8];
            s.read_exact(&mut cmd).expect("command");
            assert_eq!(&cmd, b"zFILDES\0");
            let mut file = File::from(recv_fd(&s));
            let mut text = String::new();
            file.read_to_string(&mut text).expect("read passed fd");
            let reply = if text.contains("PATTERN") {
                "fd[9]: Test.Pattern FOUND\0"
            } else {
                "fd[9]: OK\0"
            };
            s.write_all(reply.as_bytes()).expect("reply");
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let msg = dir.path().join("msg");
        std::fs::write(&msg, "Subject: x\n\nsome PATTERN here\n").expect("write");
        let file = File::open(&msg).expect("open");
        let r = client(&path, 2000).fildes(&file, far());
        t.join().expect("join");
        assert_eq!(r, found("Test.Pattern"));
    }
}
