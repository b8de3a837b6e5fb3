//! The real Courier MTA for end-to-end tests: tests/services/courier-up.sh installs the
//! binary under test as Courier's global filter, mail goes in over SMTP on 127.0.0.1:2525.
//! Courier is one per machine, so a test holds [`CourierGuard`] (a lock file) while it runs;
//! dropping the guard runs courier-down.sh. Needs root; without it the tests fail, never skip.

#![allow(dead_code)] // each test file uses part of the harness

#[path = "base64.rs"]
mod base64;
pub use base64::base64;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const PORT: u16 = 2525;
pub const WORK: &str = "/tmp/rustfilter-courier-e2e";
pub const LOCK: &str = "/tmp/rustfilter-courier-e2e.lock";
pub const NAME: &str = "rustfilter";
pub const ACTIVE_LINK: &str = "/etc/courier/filters/active/rustfilter";
pub const INSTALLED_BIN: &str = "/usr/lib/courier/filters/rustfilter";
pub const RCPT: &str = "e2e@e2e.test";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary under test: `RUSTFILTER_E2E_BIN` when set (`make test-static` points it at the
/// static musl build), else this build's.
pub fn filter_bin() -> PathBuf {
    match std::env::var_os("RUSTFILTER_E2E_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_rustfilter")),
    }
}

pub fn output_text(out: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Holds the machine-wide lock and runs the down script when dropped, so Courier is stopped
/// however the test ends.
pub struct CourierGuard {
    pub lock: fs::File,
    pub down_done: bool,
}

impl CourierGuard {
    /// Waits (at most 10 minutes) for any other run of this test on the machine to finish.
    pub fn lock() -> CourierGuard {
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK)
            .unwrap_or_else(|e| panic!("cannot open the lock file {LOCK}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            // SAFETY: flock on a descriptor we own.
            let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "another Courier end-to-end run has held {LOCK} for 10 minutes"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        CourierGuard {
            lock,
            down_done: false,
        }
    }

    /// Run tests/services/courier-up.sh with this chain and modules file (paths) and the binary
    /// under test; panics with the script's output when Courier cannot be brought up.
    pub fn up(&self, chain: &Path, modules: &Path) -> Duration {
        let started = Instant::now();
        let up = Command::new(repo().join("tests/services/courier-up.sh"))
            .arg(chain)
            .arg(modules)
            .env("FILTER_BIN", filter_bin())
            .env("PORT", PORT.to_string())
            .env("WORK", WORK)
            .output()
            .unwrap_or_else(|e| panic!("cannot run courier-up.sh: {e}"));
        assert!(
            up.status.success(),
            "Courier could not be installed or started with rustfilter\n{}",
            output_text(&up)
        );
        started.elapsed()
    }

    pub fn down(&mut self) -> Result<Duration, String> {
        self.down_done = true;
        let started = Instant::now();
        let out = Command::new(repo().join("tests/services/courier-down.sh"))
            .env("WORK", WORK)
            .output()
            .map_err(|e| format!("cannot run courier-down.sh: {e}"))?;
        if out.status.success() {
            Ok(started.elapsed())
        } else {
            Err(format!("courier-down.sh failed\n{}", output_text(&out)))
        }
    }
}

impl Drop for CourierGuard {
    fn drop(&mut self) {
        if !self.down_done
            && let Err(e) = self.down()
        {
            eprintln!("{e}");
        }
        // SAFETY: unlocking a descriptor we own.
        unsafe { libc::flock(self.lock.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// One SMTP reply: its code and its lines without the `NNN-`/`NNN ` prefix.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The reply as it came over the wire, lines joined with `\n`, without CRLF.
    pub fn wire(&self) -> String {
        let last = self.lines.len().saturating_sub(1);
        self.lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{}{}{l}", self.code, if i == last { ' ' } else { '-' }))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A minimal SMTP client, enough for Courier's esmtpd.
pub struct Smtp {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
    pub transcript: Vec<String>,
}

impl Smtp {
    pub fn connect() -> Smtp {
        let stream = TcpStream::connect(("127.0.0.1", PORT))
            .unwrap_or_else(|e| panic!("cannot connect to Courier on 127.0.0.1:{PORT}: {e}"));
        // The DATA reply waits for the filter, whose own deadline is 60 s.
        let timeout = Some(Duration::from_secs(90));
        stream.set_read_timeout(timeout).expect("set_read_timeout");
        stream
            .set_write_timeout(timeout)
            .expect("set_write_timeout");
        let writer = stream.try_clone().expect("clone the SMTP stream");
        let mut smtp = Smtp {
            reader: BufReader::new(stream),
            writer,
            transcript: Vec::new(),
        };
        smtp.expect(220, "greeting");
        smtp
    }

    pub fn read_reply(&mut self) -> Reply {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => panic!(
                    "Courier closed the SMTP connection\n{}",
                    self.transcript.join("\n")
                ),
                Ok(_) => {}
                Err(e) => panic!("reading an SMTP reply: {e}\n{}", self.transcript.join("\n")),
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            self.transcript.push(format!("S: {line}"));
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .unwrap_or_else(|| panic!("not an SMTP reply line: {line:?}"));
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Reply { code, lines };
            }
        }
    }

    pub fn command(&mut self, cmd: &str) -> Reply {
        self.transcript.push(format!("C: {cmd}"));
        self.writer
            .write_all(format!("{cmd}\r\n").as_bytes())
            .unwrap_or_else(|e| panic!("sending {cmd:?}: {e}"));
        self.read_reply()
    }

    pub fn expect(&mut self, code: u16, what: &str) -> Reply {
        let reply = self.read_reply();
        self.check(reply, code, what)
    }

    pub fn command_expect(&mut self, cmd: &str, code: u16) -> Reply {
        let reply = self.command(cmd);
        self.check(reply, code, cmd)
    }

    pub fn check(&self, reply: Reply, code: u16, what: &str) -> Reply {
        assert_eq!(
            reply.code,
            code,
            "{what}: expected {code}, got {}\n{}",
            reply.wire(),
            self.transcript.join("\n")
        );
        reply
    }

    /// Sends the message (CRLF line ends, dot-stuffed) after DATA; returns the final reply.
    pub fn data(&mut self, message: &str) -> Reply {
        self.command_expect("DATA", 354);
        let mut wire = String::new();
        for line in message.lines() {
            if line.starts_with('.') {
                wire.push('.');
            }
            wire.push_str(line);
            wire.push_str("\r\n");
        }
        wire.push_str(".\r\n");
        self.transcript.push("C: <message>".to_string());
        self.writer
            .write_all(wire.as_bytes())
            .unwrap_or_else(|e| panic!("sending the message: {e}"));
        self.read_reply()
    }
}

/// One SMTP transaction to e2e@e2e.test; returns the reply to the end of DATA.
pub fn send(sender: &str, message: &str, auth: bool) -> Reply {
    let mut smtp = Smtp::connect();
    // Courier refuses MAIL before EHLO ("502 Polite people say HELO first").
    let ehlo = smtp.command_expect("EHLO client.example", 250);
    if auth {
        assert!(
            ehlo.lines
                .iter()
                .any(|l| l.starts_with("AUTH") && l.contains("PLAIN")),
            "esmtpd does not offer AUTH PLAIN: {}",
            ehlo.wire()
        );
        let token = base64(b"\0e2e\0e2epass");
        smtp.command_expect(&format!("AUTH PLAIN {token}"), 235);
    }
    smtp.command_expect(&format!("MAIL FROM:<{sender}>"), 250);
    smtp.command_expect(&format!("RCPT TO:<{RCPT}>"), 250);
    let reply = smtp.data(message);
    smtp.command("QUIT");
    reply
}

pub fn message(token: &str, extra_headers: &str) -> String {
    format!(
        "{extra_headers}From: <sender@example.org>\nTo: <{RCPT}>\nSubject: {token}\n\
         Message-ID: <{token}@client.example>\n\nbody of {token}\n.line that needs dot-stuffing\n"
    )
}

/// uid, gid and home directory of `user`, from /etc/passwd.
pub fn passwd_entry(user: &str) -> Option<(u32, u32, PathBuf)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[0] == user)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?, PathBuf::from(f[5]))))?
    })
}

/// Files in the Maildir (new/ and cur/) that contain `needle`.
pub fn maildir_hits(maildir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            if fs::read_to_string(e.path()).is_ok_and(|t| t.contains(needle)) {
                hits.push(e.path());
            }
        }
    }
    hits
}

/// Delivery is asynchronous: poll for up to 20 s.
pub fn wait_for_delivery(maildir: &Path, token: &str) -> (PathBuf, Duration) {
    let started = Instant::now();
    loop {
        if let Some(p) = maildir_hits(maildir, token).into_iter().next() {
            return (p, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the message {token} did not reach {}/new within 20 s",
            maildir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pids of our filter's processes: courierfilter runs it by the link path, which is
/// argv[0] (argv[1] for a script run by its interpreter); the executable is the installed
/// binary.
pub fn filter_pids() -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return pids;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let by_link = cmdline
            .split(|&b| b == 0)
            .take(2)
            .any(|arg| arg == ACTIVE_LINK.as_bytes());
        let exe = fs::read_link(e.path().join("exe")).unwrap_or_default();
        if by_link || exe == Path::new(INSTALLED_BIN) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// `Uid:` / `Gid:` of /proc/<pid>/status: real, effective, saved, filesystem.
pub fn proc_ids(pid: u32, field: &str) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub fn parse_environ(raw: &[u8]) -> BTreeMap<String, String> {
    raw.split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| {
            let v = String::from_utf8_lossy(v);
            match v.split_once('=') {
                Some((k, val)) => (k.to_string(), val.to_string()),
                None => (v.to_string(), String::new()),
            }
        })
        .collect()
}

/// The environment courierfilter gives its filters: /usr/sbin/courierfilter runs
/// `env -i /bin/sh -c "set -a; . $sysconfdir/courierd; …"` from /usr, and the courierfilter
/// program then adds `sysconfdir` (seen in its strings and in a filter's environment).
pub fn courierd_environment() -> BTreeMap<String, String> {
    let out = Command::new("/usr/bin/env")
        .args([
            "-i",
            "/bin/sh",
            "-c",
            "set -a; . /etc/courier/courierd; exec /usr/bin/env -0",
        ])
        .current_dir("/usr")
        .output()
        .unwrap_or_else(|e| panic!("sourcing /etc/courier/courierd: {e}"));
    assert!(
        out.status.success(),
        "sourcing /etc/courier/courierd failed\n{}",
        output_text(&out)
    );
    let mut env = parse_environ(&out.stdout);
    env.insert("sysconfdir".to_string(), "/etc/courier".to_string());
    env
}

/// The syslog lines written since the up script ran (it leaves the command that prints them).
pub fn syslog_lines() -> Vec<String> {
    let cmd_file = Path::new(WORK).join("syslog-cmd");
    let cmd = fs::read_to_string(&cmd_file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", cmd_file.display()));
    let out = Command::new("/bin/sh")
        .args(["-c", cmd.trim()])
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits up to 10 s for a syslog line that satisfies `pred` (courierlogger is asynchronous).
pub fn wait_for_log(what: &str, pred: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let lines = syslog_lines();
        if let Some(l) = lines.iter().find(|l| pred(l)) {
            return l.clone();
        }
        if started.elapsed() > Duration::from_secs(10) {
            let tail: Vec<&String> = lines.iter().rev().take(40).rev().collect();
            panic!(
                "no syslog line {what} within 10 s; the last lines:\n{}",
                tail.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The accounting line of the message Courier accepted with `250 Ok. <queue id>`: the control
/// file's message id ends with that queue id.
pub fn accounting_line_for(accepted: &Reply) -> String {
    let qid = accepted.lines[0]
        .strip_prefix("Ok. ")
        .unwrap_or_else(|| panic!("unexpected 250 text: {}", accepted.wire()))
        .trim()
        .to_string();
    wait_for_log(&format!("with CPU TIME ACCOUNTING for {qid}"), |l| {
        l.contains("CPU TIME ACCOUNTING: ") && l.contains(&format!("{qid} processed with "))
    })
}

pub fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("e2e-{tag}-{}-{nanos}", std::process::id())
}
