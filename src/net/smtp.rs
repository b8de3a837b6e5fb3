//! A tiny blocking SMTP client for sender call-outs (the dialback module): connect, read
//! (multi-line) replies, HELO, MAIL FROM, RCPT TO, QUIT. Every step is bounded by a per-command
//! timeout and by an overall deadline. Addresses and names are checked before anything is sent:
//! a value that could inject a command or break the `<…>` framing is refused, never sent.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The longest reply line accepted (RFC 5321 allows 512 octets; be lenient).
const MAX_LINE: usize = 4096;
/// The most lines one multi-line reply may have.
const MAX_LINES: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpError(pub String);

impl std::fmt::Display for SmtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SmtpError {}

/// One server reply: its code and the text of each line (without code and separator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// Whether `addr` can be sent inside `<…>`: printable ASCII (spaces allowed, for quoted local
/// parts) without `<` or `>`; so no CR, LF, NUL or other controls, and no 8-bit bytes (HELO
/// cannot negotiate SMTPUTF8). An empty address (the null path) is allowed.
pub fn valid_address(addr: &str) -> bool {
    addr.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'<' && b != b'>')
}

/// Whether `name` can be sent as the HELO argument.
pub fn valid_helo(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x21..0x7f).contains(&b))
}

pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
    deadline: Instant,
    peer: SocketAddr,
}

impl Client {
    /// Connect to `addr:port` and read the greeting (whatever its code; the caller decides).
    pub fn connect(
        addr: IpAddr,
        port: u16,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<(Client, Reply), SmtpError> {
        let peer = SocketAddr::new(addr, port);
        let limit = step_time(timeout, deadline, peer)?;
        let stream = TcpStream::connect_timeout(&peer, limit)
            .map_err(|e| SmtpError(format!("cannot connect to {peer}: {e}")))?;
        let mut client = Client {
            stream,
            buf: Vec::new(),
            timeout,
            deadline,
            peer,
        };
        let greeting = client.read_reply()?;
        Ok((client, greeting))
    }

    /// Connect to the first address that answers; the error of the last one otherwise.
    pub fn connect_any(
        addrs: &[IpAddr],
        port: u16,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<(Client, Reply), SmtpError> {
        let mut last = SmtpError("no addresses".into());
        for &addr in addrs {
            match Client::connect(addr, port, timeout, deadline) {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn helo(&mut self, name: &str) -> Result<Reply, SmtpError> {
        if !valid_helo(name) {
            return Err(SmtpError(format!("refusing to send HELO name {name:?}")));
        }
        self.command(&format!("HELO {name}"))
    }

    pub fn mail_from(&mut self, addr: &str) -> Result<Reply, SmtpError> {
        if !valid_address(addr) {
            return Err(SmtpError(format!("refusing to send MAIL FROM {addr:?}")));
        }
        self.command(&format!("MAIL FROM:<{addr}>"))
    }

    pub fn rcpt_to(&mut self, addr: &str) -> Result<Reply, SmtpError> {
        if addr.is_empty() || !valid_address(addr) {
            return Err(SmtpError(format!("refusing to send RCPT TO {addr:?}")));
        }
        self.command(&format!("RCPT TO:<{addr}>"))
    }

    /// Send QUIT and read its reply; the connection closes when the client is dropped.
    pub fn quit(mut self) -> Result<Reply, SmtpError> {
        self.command("QUIT")
    }

    fn command(&mut self, line: &str) -> Result<Reply, SmtpError> {
        let limit = step_time(self.timeout, self.deadline, self.peer)?;
        self.stream
            .set_write_timeout(Some(limit))
            .map_err(|e| self.io_error(e))?;
        self.stream
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| self.io_error(e))?;
        self.read_reply()
    }

    fn io_error(&self, e: std::io::Error) -> SmtpError {
        SmtpError(format!("{}: {e}", self.peer))
    }

    /// One reply, all its lines; the whole of it within one step's time.
    fn read_reply(&mut self) -> Result<Reply, SmtpError> {
        let until = Instant::now() + step_time(self.timeout, self.deadline, self.peer)?;
        let mut lines = Vec::new();
        let mut code = 0u16;
        loop {
            let line = self.read_line(until)?;
            let bytes = line.as_bytes();
            let parsed = line.get(..3).and_then(|c| c.parse::<u16>().ok());
            let (c, last) = match (parsed, bytes.get(3)) {
                (Some(c), None | Some(b' ')) => (c, true),
                (Some(c), Some(b'-')) => (c, false),
                _ => {
                    return Err(SmtpError(format!(
                        "{}: malformed reply line {line:?}",
                        self.peer
                    )));
                }
            };
            if !(100..600).contains(&c) || (!lines.is_empty() && c != code) {
                return Err(SmtpError(format!(
                    "{}: malformed reply line {line:?}",
                    self.peer
                )));
            }
            code = c;
            lines.push(line.get(4..).unwrap_or("").to_string());
            if last {
                return Ok(Reply { code, lines });
            }
            if lines.len() >= MAX_LINES {
                return Err(SmtpError(format!(
                    "{}: reply longer than {MAX_LINES} lines",
                    self.peer
                )));
            }
        }
    }

    fn read_line(&mut self, until: Instant) -> Result<String, SmtpError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buf.len() > MAX_LINE {
                return Err(SmtpError(format!(
                    "{}: reply line longer than {MAX_LINE} bytes",
                    self.peer
                )));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SmtpError(format!("{}: timed out", self.peer)));
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| self.io_error(e))?;
            let mut chunk = [0u8; 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(SmtpError(format!(
                        "{}: connection closed by the server",
                        self.peer
                    )));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(SmtpError(format!("{}: timed out", self.peer)));
                }
                Err(e) => return Err(self.io_error(e)),
            }
        }
    }
}

/// The time one step may take: the timeout, cut short by the deadline.
fn step_time(
    timeout: Duration,
    deadline: Instant,
    peer: SocketAddr,
) -> Result<Duration, SmtpError> {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .min(timeout);
    if left.is_zero() {
        return Err(SmtpError(format!("{peer}: no time left")));
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    /// A server that sends `script[i]` after the i-th line it reads (the greeting first) and
    /// returns the lines it read.
    fn server(
        script: &'static [&'static str],
    ) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut r = BufReader::new(s.try_clone().expect("clone"));
            let mut got = Vec::new();
            for (i, out) in script.iter().enumerate() {
                if i > 0 {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    got.push(line);
                }
                if s.write_all(out.as_bytes()).is_err() {
                    break;
                }
            }
            got
        });
        (addr, handle)
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn dialogue_with_multi_line_replies() {
        let (addr, h) = server(&[
            "220-hello\r\n220 there\r\n",
            "250 ok\r\n",
            "250 sender ok\r\n",
            "550-no\r\n550 such user\r\n",
            "221 bye\r\n",
        ]);
        let (mut c, greeting) =
            Client::connect(addr.ip(), addr.port(), Duration::from_secs(5), later()).expect("c");
        assert_eq!(greeting.code, 220);
        assert_eq!(greeting.lines, vec!["hello", "there"]);
        assert!(c.helo("me.example").expect("helo").is_positive());
        assert_eq!(c.mail_from("").expect("mail").code, 250);
        let r = c.rcpt_to("a@b.example").expect("rcpt");
        assert_eq!((r.code, r.lines.len()), (550, 2));
        assert_eq!(c.quit().expect("quit").code, 221);
        assert_eq!(
            h.join().expect("join"),
            vec![
                "HELO me.example\r\n",
                "MAIL FROM:<>\r\n",
                "RCPT TO:<a@b.example>\r\n",
                "QUIT\r\n"
            ]
        );
    }

    #[test]
    fn injection_is_refused_before_sending() {
        for bad in ["a@b\r\nDATA", "a>@b", "<a@b", "a\0@b", "ä@b"] {
            assert!(!valid_address(bad), "{bad:?}");
        }
        assert!(valid_address("\"x y\"@b"));
        assert!(valid_address("postmaster@example.test"));
        assert!(!valid_helo("a b"));
        let (addr, _h) = server(&["220 hi\r\n", "250 ok\r\n"]);
        let (mut c, _) =
            Client::connect(addr.ip(), addr.port(), Duration::from_secs(5), later()).expect("c");
        assert!(c.rcpt_to("a@b\r\nQUIT").is_err());
        assert!(c.mail_from("a>b").is_err());
        assert!(c.helo("x\ny").is_err());
        assert!(c.rcpt_to("").is_err());
    }

    #[test]
    fn timeouts_and_early_close_and_garbage() {
        // Silent server: the greeting times out after the step time.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let t = Instant::now();
        let err = Client::connect(addr.ip(), addr.port(), Duration::from_millis(300), later());
        assert!(err.is_err());
        assert!(t.elapsed() < Duration::from_secs(3));
        // The deadline cuts the timeout short.
        let t = Instant::now();
        let err = Client::connect(
            addr.ip(),
            addr.port(),
            Duration::from_secs(30),
            Instant::now() + Duration::from_millis(300),
        );
        assert!(err.is_err());
        assert!(t.elapsed() < Duration::from_secs(3));
        drop(listener);
        // Closed before a greeting.
        let (addr, _h) = server(&[""]);
        assert!(Client::connect(addr.ip(), addr.port(), Duration::from_secs(5), later()).is_err());
        // Not a reply.
        let (addr, _h) = server(&["hello\r\n"]);
        assert!(Client::connect(addr.ip(), addr.port(), Duration::from_secs(5), later()).is_err());
        // Endless line.
        let long: &'static str = Box::leak("2".repeat(10_000).into_boxed_str());
        let script: &'static [&'static str] = Box::leak(vec![long].into_boxed_slice());
        let (addr, _h) = server(script);
        assert!(Client::connect(addr.ip(), addr.port(), Duration::from_secs(5), later()).is_err());
    }
}
