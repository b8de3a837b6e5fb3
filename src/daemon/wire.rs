//! The courierfilter request (`<data path>\n<control path>\n…\n\n`) and reply formats.
//!
//! Differences from the reference (which trusted its peer): every request is read under hard
//! limits (line length, number of control files, total bytes, one overall deadline), a
//! malformed request is an error the caller logs before closing the connection without a reply,
//! and both the data line and the control lines are stripped before the relative-path test
//! (the reference tested control lines unstripped, §1.6). Paths are bytes: no UTF-8 needed.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::courier::control::resolve_spool_path_bytes;
use crate::courier::find_byte;

/// Hard limits on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_line: usize,
    pub max_control_files: usize,
    pub max_request_bytes: usize,
    pub read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: 4096,
            max_control_files: 10_000,
            max_request_bytes: 1 << 20,
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// One parsed request; relative paths already resolved under `<localstatedir>/tmp/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub data_path: PathBuf,
    pub control_paths: Vec<PathBuf>,
}

/// Why a request could not be read. The connection is then closed without a reply.
#[derive(Debug)]
pub enum RequestError {
    /// The peer closed the connection before the blank line that ends a request.
    Eof {
        bytes: usize,
    },
    /// The whole request did not arrive within `read_timeout`.
    Timeout {
        bytes: usize,
        timeout: Duration,
    },
    LineTooLong {
        max: usize,
    },
    TooManyControlFiles {
        max: usize,
    },
    TooLarge {
        max: usize,
    },
    EmptyDataPath,
    NoControlFiles,
    Io(io::Error),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Eof { bytes: 0 } => f.write_str("connection closed before any request"),
            RequestError::Eof { bytes } => write!(
                f,
                "connection closed after {bytes} bytes, before the blank line ending the request"
            ),
            RequestError::Timeout { bytes, timeout } => write!(
                f,
                "request not complete after {} s ({bytes} bytes received)",
                timeout.as_secs_f64()
            ),
            RequestError::LineTooLong { max } => {
                write!(f, "request line longer than {max} bytes")
            }
            RequestError::TooManyControlFiles { max } => {
                write!(f, "more than {max} control files in the request")
            }
            RequestError::TooLarge { max } => write!(f, "request larger than {max} bytes"),
            RequestError::EmptyDataPath => f.write_str("empty data file path in the request"),
            RequestError::NoControlFiles => f.write_str("request names no control file"),
            RequestError::Io(e) => write!(f, "error reading the request: {e}"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Format a reply for the wire: each line of a multi-line reply gets the code with `-`, the
/// last with a space. No trailing newline (as the reference; Courier reads to EOF).
///
/// A line that starts with its own 3-digit code keeps that code; any other line takes the first
/// line's code. A single line, or a reply whose first line has no code, is sent as given (minus
/// trailing line breaks).
pub fn format_reply(reply: &str) -> Cow<'_, str> {
    let reply = reply.trim_end_matches(['\r', '\n']);
    if !reply.contains('\n') {
        // The usual case, one line (`200 Ok`): sent as it is.
        return Cow::Borrowed(reply);
    }
    let lines: Vec<&str> = reply
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let Some((first_code, _)) = split_code(lines[0]) else {
        return Cow::Owned(lines.join("\n"));
    };
    let last = lines.len() - 1;
    let mut out = String::with_capacity(reply.len() + 4 * lines.len());
    for (i, line) in lines.iter().enumerate() {
        let (code, text) = split_code(line).unwrap_or((first_code, line));
        out.push_str(code);
        out.push(if i == last { ' ' } else { '-' });
        out.push_str(text);
        if i != last {
            out.push('\n');
        }
    }
    Cow::Owned(out)
}

/// `("550", "text")` for `550 text`, `550-text` or a bare `550`; `None` if the line does not
/// start with a 3-digit code.
fn split_code(line: &str) -> Option<(&str, &str)> {
    let b = line.as_bytes();
    if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    match b.get(3) {
        None => Some((&line[..3], "")),
        Some(b' ' | b'-') => Some((&line[..3], &line[4..])),
        Some(_) => None,
    }
}

/// Parse a complete request buffer (used by the reader and by tests).
pub fn parse_request(buf: &[u8], localstatedir: &Path, limits: &Limits) -> Result<Request, String> {
    let mut parser = Parser::new(localstatedir, limits);
    match parser.feed(buf) {
        Ok(Some(request)) => Ok(request),
        Ok(None) => Err(RequestError::Eof { bytes: buf.len() }.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Read one request from `stream`, enforcing `limits` (the timeout is one deadline for the whole
/// request, not per read). Bytes after the terminating blank line are ignored.
///
/// Courier writes the request at once, so it is read directly (`MSG_DONTWAIT`, whatever the
/// socket's mode); only when nothing is there yet does the reader `poll` for the rest of the
/// deadline.
pub fn read_request(
    stream: &mut UnixStream,
    localstatedir: &Path,
    limits: &Limits,
) -> Result<Request, RequestError> {
    let fd = stream.as_raw_fd();
    let deadline = Instant::now() + limits.read_timeout;
    let mut parser = Parser::new(localstatedir, limits);
    // Not zeroed: recv writes what it returns, and only that is looked at.
    let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    loop {
        // Never read past the byte limit (+1 so that going over it is noticed).
        let room = (limits.max_request_bytes + 1)
            .saturating_sub(parser.consumed)
            .min(chunk.len());
        let n = match recv_now(fd, &mut chunk[..room]) {
            Ok(0) => {
                return Err(RequestError::Eof {
                    bytes: parser.consumed,
                });
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !wait_for(fd, libc::POLLIN, deadline).map_err(RequestError::Io)? {
                    return Err(RequestError::Timeout {
                        bytes: parser.consumed,
                        timeout: limits.read_timeout,
                    });
                }
                continue;
            }
            Err(e) => return Err(RequestError::Io(e)),
        };
        // SAFETY: recv initialised the first n bytes (n <= room <= chunk.len()).
        let received = unsafe { std::slice::from_raw_parts(chunk.as_ptr().cast::<u8>(), n) };
        if let Some(request) = parser.feed(received)? {
            return Ok(request);
        }
    }
}

/// Send the whole reply (formatted by [`format_reply`]) within `timeout`, then close the
/// connection. The reply is written directly; only a full socket buffer makes it `poll`.
pub fn write_reply(stream: UnixStream, reply: &str, timeout: Duration) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    let text = format_reply(reply);
    let mut rest = text.as_bytes();
    let mut deadline: Option<Instant> = None;
    while !rest.is_empty() {
        // SAFETY: rest is a valid slice; MSG_NOSIGNAL: a vanished peer is EPIPE, not SIGPIPE.
        let n = unsafe {
            libc::send(
                fd,
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n > 0 {
            rest = &rest[n as usize..];
            continue;
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => {
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeout);
                if !wait_for(fd, libc::POLLOUT, deadline)? {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the client did not take the reply within {} s",
                            timeout.as_secs_f64()
                        ),
                    ));
                }
            }
            _ => return Err(e),
        }
    }
    // Courier reads to EOF: the close (on drop) ends the reply.
    Ok(())
}

/// One `recv` that never blocks; on success the first `n` bytes of `buf` are initialised.
fn recv_now(fd: RawFd, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of its length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Wait until `fd` is ready for `events` (or has an error or hang-up, which the next call
/// reports); `Ok(false)` once `deadline` has passed. EINTR only shortens a wait.
fn wait_for(fd: RawFd, events: libc::c_short, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // Round up so a wait never ends a little early and spins.
        let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc > 0 {
            return Ok(true);
        }
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Incremental request parser: fed bytes as they arrive, it answers once the blank line is seen.
struct Parser<'a> {
    localstatedir: &'a Path,
    limits: &'a Limits,
    /// The current, incomplete line.
    line: Vec<u8>,
    consumed: usize,
    data_path: Option<PathBuf>,
    control_paths: Vec<PathBuf>,
}

impl<'a> Parser<'a> {
    fn new(localstatedir: &'a Path, limits: &'a Limits) -> Parser<'a> {
        Parser {
            localstatedir,
            limits,
            line: Vec::new(),
            consumed: 0,
            data_path: None,
            control_paths: Vec::new(),
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) -> Result<Option<Request>, RequestError> {
        while !bytes.is_empty() {
            let (part, rest, complete) = match find_byte(bytes, b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            self.consumed += part.len() + usize::from(complete);
            if self.consumed > self.limits.max_request_bytes {
                return Err(RequestError::TooLarge {
                    max: self.limits.max_request_bytes,
                });
            }
            // A line that arrived whole is used in place; only pieces are collected.
            let whole = complete && self.line.is_empty();
            if !whole {
                self.line.extend_from_slice(part);
            }
            let line: &[u8] = if whole { part } else { &self.line };
            // `\r` of a `\r\n` ending does not count against the line length.
            let len = line.len() - usize::from(line.last() == Some(&b'\r'));
            if len > self.limits.max_line {
                return Err(RequestError::LineTooLong {
                    max: self.limits.max_line,
                });
            }
            bytes = rest;
            if complete {
                let request = if whole {
                    self.end_line(part)?
                } else {
                    let line = std::mem::take(&mut self.line);
                    self.end_line(&line)?
                };
                if request.is_some() {
                    return Ok(request);
                }
            }
        }
        Ok(None)
    }

    fn end_line(&mut self, line: &[u8]) -> Result<Option<Request>, RequestError> {
        let path = line.trim_ascii();
        if self.data_path.is_none() {
            if path.is_empty() {
                return Err(RequestError::EmptyDataPath);
            }
            self.data_path = Some(self.resolve(path));
            return Ok(None);
        }
        if path.is_empty() {
            if self.control_paths.is_empty() {
                return Err(RequestError::NoControlFiles);
            }
            return Ok(Some(Request {
                data_path: self.data_path.take().unwrap_or_default(),
                control_paths: std::mem::take(&mut self.control_paths),
            }));
        }
        if self.control_paths.len() >= self.limits.max_control_files {
            return Err(RequestError::TooManyControlFiles {
                max: self.limits.max_control_files,
            });
        }
        let resolved = self.resolve(path);
        self.control_paths.push(resolved);
        Ok(None)
    }

    fn resolve(&self, path: &[u8]) -> PathBuf {
        resolve_spool_path_bytes(self.localstatedir, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::ffi::OsStrExt;
    use std::thread;

    fn lsd() -> &'static Path {
        Path::new("/var/lib/courier")
    }

    fn parse(buf: &[u8]) -> Result<Request, String> {
        parse_request(buf, lsd(), &Limits::default())
    }

    #[test]
    fn single_line_replies_are_sent_unchanged() {
        assert_eq!(format_reply("200 Ok"), "200 Ok");
        assert_eq!(format_reply("050 OK"), "050 OK");
        assert_eq!(format_reply("go away"), "go away");
        assert_eq!(format_reply("550 5.7.1 no\n"), "550 5.7.1 no");
        assert_eq!(format_reply(""), "");
    }

    #[test]
    fn multi_line_replies_get_continuation_codes() {
        assert_eq!(
            format_reply("550-5.7.1 line one\n550 5.7.1 line two"),
            "550-5.7.1 line one\n550 5.7.1 line two"
        );
        assert_eq!(
            format_reply("550 first\nsecond\nthird"),
            "550-first\n550-second\n550 third"
        );
        assert_eq!(
            format_reply("550 first\n551 second\r\nthird\n"),
            "550-first\n551-second\n550 third"
        );
        // A trailing `-` on the last line is corrected to a space.
        assert_eq!(format_reply("450-a\n450-b"), "450-a\n450 b");
        // 4 digits is not a code.
        assert_eq!(format_reply("550 a\n5501 b"), "550-a\n550 5501 b");
        assert_eq!(format_reply("550 a\n551"), "550-a\n551 ");
    }

    #[test]
    fn multi_line_reply_without_a_first_code_is_left_alone() {
        assert_eq!(format_reply("go\naway\n"), "go\naway");
    }

    #[test]
    fn parses_absolute_and_relative_paths() {
        let r = parse(b"/x/D1\n/x/C1\nsub/C2\n\n").unwrap();
        assert_eq!(r.data_path, PathBuf::from("/x/D1"));
        assert_eq!(
            r.control_paths,
            vec![
                PathBuf::from("/x/C1"),
                PathBuf::from("/var/lib/courier/tmp/sub/C2")
            ]
        );
        // §8.8.1
        let r = parse(b"sub/D1\nsub/C1\n\n").unwrap();
        assert_eq!(r.data_path, PathBuf::from("/var/lib/courier/tmp/sub/D1"));
        assert_eq!(
            r.control_paths,
            vec![PathBuf::from("/var/lib/courier/tmp/sub/C1")]
        );
    }

    #[test]
    fn strips_whitespace_and_accepts_crlf() {
        let r = parse(b" /x/D1 \r\n /x/C1\t\r\n\r\n").unwrap();
        assert_eq!(r.data_path, PathBuf::from("/x/D1"));
        assert_eq!(r.control_paths, vec![PathBuf::from("/x/C1")]);
    }

    #[test]
    fn ignores_bytes_after_the_blank_line() {
        let r = parse(b"/x/D1\n/x/C1\n\ngarbage\n").unwrap();
        assert_eq!(r.control_paths, vec![PathBuf::from("/x/C1")]);
    }

    #[test]
    fn paths_need_not_be_utf8() {
        let r = parse(b"/x/D\xff\nsub/C\xfe\n\n").unwrap();
        assert_eq!(r.data_path.as_os_str().as_bytes(), b"/x/D\xff");
        assert_eq!(
            r.control_paths[0].as_os_str().as_bytes(),
            b"/var/lib/courier/tmp/sub/C\xfe"
        );
    }

    #[test]
    fn rejects_malformed_requests() {
        assert!(parse(b"\n").unwrap_err().contains("empty data file path"));
        assert!(parse(b"  \n/x/C1\n\n").unwrap_err().contains("empty data"));
        assert!(parse(b"/x/D1\n\n").unwrap_err().contains("no control file"));
        assert!(parse(b"/x/D1\n/x/C1\n").unwrap_err().contains("closed"));
        assert!(parse(b"").unwrap_err().contains("before any request"));
    }

    #[test]
    fn enforces_limits() {
        let limits = Limits {
            max_line: 10,
            max_control_files: 2,
            max_request_bytes: 40,
            read_timeout: Duration::from_secs(1),
        };
        let p = |b: &[u8]| parse_request(b, lsd(), &limits);
        assert!(
            p(b"/0123456789\n/x\n\n")
                .unwrap_err()
                .contains("longer than 10")
        );
        // Exactly max_line is fine, also with a CR.
        assert!(p(b"/012345678\r\n/x\n\n").is_ok());
        // An over-long line is caught before its newline arrives.
        assert!(p(b"/0123456789").unwrap_err().contains("longer than 10"));
        assert!(
            p(b"/d\n/a\n/b\n/c\n\n")
                .unwrap_err()
                .contains("more than 2")
        );
        assert!(p(b"/d\n/a\n/b\n\n\n/aaaaaaaa\n/aaaaaaaa\n/aaaaaaa\n").is_ok());
        let many = Limits {
            max_control_files: 100,
            ..limits.clone()
        };
        let err = parse_request(
            b"/d\n/aaaaaaaa\n/aaaaaaaa\n/aaaaaaaa\n/aaaaaaaa\n",
            lsd(),
            &many,
        )
        .unwrap_err();
        assert!(err.contains("larger than 40"), "{err}");
    }

    fn limits_with_timeout(ms: u64) -> Limits {
        Limits {
            read_timeout: Duration::from_millis(ms),
            ..Limits::default()
        }
    }

    #[test]
    fn reads_a_request_in_pieces() {
        let (mut server, mut client) = UnixStream::pair().unwrap();
        let writer = thread::spawn(move || {
            for piece in [&b"/x/D"[..], b"1\r\n/x/C1\n", b"rel/C2\n", b"\n"] {
                client.write_all(piece).unwrap();
                thread::sleep(Duration::from_millis(20));
            }
            client
        });
        let r = read_request(&mut server, lsd(), &limits_with_timeout(5000)).unwrap();
        assert_eq!(r.data_path, PathBuf::from("/x/D1"));
        assert_eq!(
            r.control_paths,
            vec![
                PathBuf::from("/x/C1"),
                PathBuf::from("/var/lib/courier/tmp/rel/C2")
            ]
        );
        let mut client = writer.join().unwrap();
        write_reply(server, "550 a\nb", Duration::from_secs(1)).unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "550-a\n550 b");
    }

    #[test]
    fn the_timeout_is_one_deadline_for_the_whole_request() {
        let (mut server, mut client) = UnixStream::pair().unwrap();
        // A byte every 50 ms would defeat a per-read timeout of 200 ms.
        let writer = thread::spawn(move || {
            for _ in 0..20 {
                if client.write_all(b"a").is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        let start = Instant::now();
        let err = read_request(&mut server, lsd(), &limits_with_timeout(200)).unwrap_err();
        assert!(matches!(err, RequestError::Timeout { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_millis(600));
        drop(server);
        writer.join().unwrap();
    }

    #[test]
    fn a_silent_client_times_out() {
        let (mut server, _client) = UnixStream::pair().unwrap();
        let err = read_request(&mut server, lsd(), &limits_with_timeout(100)).unwrap_err();
        assert!(
            err.to_string().contains("not complete after 0.1 s"),
            "{err}"
        );
    }

    #[test]
    fn eof_before_the_blank_line_is_an_error() {
        let (mut server, mut client) = UnixStream::pair().unwrap();
        client.write_all(b"/x/D1\n/x/C1\n").unwrap();
        drop(client);
        let err = read_request(&mut server, lsd(), &limits_with_timeout(1000)).unwrap_err();
        assert!(matches!(err, RequestError::Eof { bytes: 12 }), "{err}");
    }

    #[test]
    fn a_reply_the_client_does_not_take_times_out() {
        let (server, client) = UnixStream::pair().unwrap();
        // More than the socket buffers hold, and a client that never reads.
        let reply = format!("550 {}", "x".repeat(4 << 20));
        let start = Instant::now();
        let err = write_reply(server, &reply, Duration::from_millis(200)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("within 0.2 s"), "{err}");
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        drop(client);
    }

    #[test]
    fn a_large_reply_is_sent_whole_to_a_slow_reader() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let reply = format!("550 {}", "y".repeat(1 << 20));
        let want = reply.clone();
        let reader = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            let mut got = String::new();
            client.read_to_string(&mut got).unwrap();
            got
        });
        write_reply(server, &reply, Duration::from_secs(5)).unwrap();
        assert_eq!(reader.join().unwrap(), want);
    }

    #[test]
    fn the_reader_stops_at_the_byte_limit() {
        let (mut server, mut client) = UnixStream::pair().unwrap();
        let limits = Limits {
            max_line: 1 << 20,
            max_request_bytes: 100,
            ..limits_with_timeout(1000)
        };
        // The peer keeps sending; the reader must give up at the limit, not block or grow.
        let writer = thread::spawn(move || {
            let _ = client.write_all(&[b'a'; 100_000]);
        });
        let err = read_request(&mut server, lsd(), &limits).unwrap_err();
        assert!(matches!(err, RequestError::TooLarge { max: 100 }), "{err}");
        drop(server);
        writer.join().unwrap();
    }
}
