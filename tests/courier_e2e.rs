//! End to end under a real Courier MTA: the built binary is installed as Courier's global
//! filter by tests/services/courier-up.sh, mail goes in over SMTP on 127.0.0.1:2525, and we
//! look at what the SMTP client, the mailbox, /proc and syslog show.
//!
//! Needs root and Debian's courier-mta (the up script installs it when missing). Courier is
//! one per machine, so everything runs in one test function, in order, under a lock file,
//! and tests/services/courier-down.sh always runs at the end. Without root, or when Courier
//! cannot be installed or started, the test fails: it never skips.
//!
//! What Courier does with the filter's replies (Debian 12, Courier 1.0.16): the reply
//! reaches the SMTP client unchanged as the answer to DATA, whatever the code — `501 …` and
//! the non-standard `517 …` included. Only `200 Ok` is turned into Courier's own
//! `250 Ok. <queue id>`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PORT: u16 = 2525;
const WORK: &str = "/tmp/rustfilter-courier-e2e";
const LOCK: &str = "/tmp/rustfilter-courier-e2e.lock";
const NAME: &str = "rustfilter";
const ACTIVE_LINK: &str = "/etc/courier/filters/active/rustfilter";
const INSTALLED_BIN: &str = "/usr/lib/courier/filters/rustfilter";
const RCPT: &str = "e2e@e2e.test";

const DELIVEREDTO_REPLY: &str = "501 Mail loop - already have my Delivered-To: header.";
const PRIVATEADDR_REPLY: &str = "517 Sender is not allowed by privacy settings.";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary under test: `RUSTFILTER_E2E_BIN` when set (`make test-static` points it at the
/// static musl build), else this build's.
fn filter_bin() -> PathBuf {
    match std::env::var_os("RUSTFILTER_E2E_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_rustfilter")),
    }
}

fn output_text(out: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Holds the machine-wide lock and runs the down script when dropped, so Courier is stopped
/// however the test ends.
struct CourierGuard {
    lock: fs::File,
    down_done: bool,
}

impl CourierGuard {
    /// Waits (at most 10 minutes) for any other run of this test on the machine to finish.
    fn lock() -> CourierGuard {
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

    fn down(&mut self) -> Result<Duration, String> {
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
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// The reply as it came over the wire, lines joined with `\n`, without CRLF.
    fn wire(&self) -> String {
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
struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    transcript: Vec<String>,
}

impl Smtp {
    fn connect() -> Smtp {
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

    fn read_reply(&mut self) -> Reply {
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

    fn command(&mut self, cmd: &str) -> Reply {
        self.transcript.push(format!("C: {cmd}"));
        self.writer
            .write_all(format!("{cmd}\r\n").as_bytes())
            .unwrap_or_else(|e| panic!("sending {cmd:?}: {e}"));
        self.read_reply()
    }

    fn expect(&mut self, code: u16, what: &str) -> Reply {
        let reply = self.read_reply();
        self.check(reply, code, what)
    }

    fn command_expect(&mut self, cmd: &str, code: u16) -> Reply {
        let reply = self.command(cmd);
        self.check(reply, code, cmd)
    }

    fn check(&self, reply: Reply, code: u16, what: &str) -> Reply {
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
    fn data(&mut self, message: &str) -> Reply {
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

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One SMTP transaction to e2e@e2e.test; returns the reply to the end of DATA.
fn send(sender: &str, message: &str, auth: bool) -> Reply {
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

fn message(token: &str, extra_headers: &str) -> String {
    format!(
        "{extra_headers}From: <sender@example.org>\nTo: <{RCPT}>\nSubject: {token}\n\
         Message-ID: <{token}@client.example>\n\nbody of {token}\n.line that needs dot-stuffing\n"
    )
}

/// uid, gid and home directory of `user`, from /etc/passwd.
fn passwd_entry(user: &str) -> Option<(u32, u32, PathBuf)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[0] == user)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?, PathBuf::from(f[5]))))?
    })
}

/// Files in the Maildir (new/ and cur/) that contain `needle`.
fn maildir_hits(maildir: &Path, needle: &str) -> Vec<PathBuf> {
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
fn wait_for_delivery(maildir: &Path, token: &str) -> (PathBuf, Duration) {
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
fn filter_pids() -> Vec<u32> {
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
fn proc_ids(pid: u32, field: &str) -> Vec<u32> {
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

fn parse_environ(raw: &[u8]) -> BTreeMap<String, String> {
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
fn courierd_environment() -> BTreeMap<String, String> {
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
fn syslog_lines() -> Vec<String> {
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
fn wait_for_log(what: &str, pred: impl Fn(&str) -> bool) -> String {
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
fn accounting_line_for(accepted: &Reply) -> String {
    let qid = accepted.lines[0]
        .strip_prefix("Ok. ")
        .unwrap_or_else(|| panic!("unexpected 250 text: {}", accepted.wire()))
        .trim()
        .to_string();
    wait_for_log(&format!("with CPU TIME ACCOUNTING for {qid}"), |l| {
        l.contains("CPU TIME ACCOUNTING: ") && l.contains(&format!("{qid} processed with "))
    })
}

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("e2e-{tag}-{}-{nanos}", std::process::id())
}

#[test]
fn rustfilter_under_real_courier() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "the Courier end-to-end test must run as root (it installs and starts Courier, \
         and installs the filter in /usr/lib/courier/filters); running as uid {euid}. \
         Run `make test` as root (CI does)."
    );

    let mut guard = CourierGuard::lock();
    eprintln!("filter binary: {}", filter_bin().display());
    let test_started = Instant::now();

    // ---- up ----------------------------------------------------------------------------
    let data = repo().join("tests/data/e2e");
    let up_started = Instant::now();
    let up = Command::new(repo().join("tests/services/courier-up.sh"))
        .arg(data.join("rustfilter.conf"))
        .arg(data.join("rustfilter-modules.conf"))
        .env("FILTER_BIN", filter_bin())
        .env("PORT", PORT.to_string())
        .env("WORK", WORK)
        .output()
        .unwrap_or_else(|e| panic!("cannot run courier-up.sh: {e}"));
    let up_time = up_started.elapsed();
    assert!(
        up.status.success(),
        "Courier could not be installed or started with rustfilter\n{}",
        output_text(&up)
    );
    eprintln!("courier-up.sh took {up_time:?}");

    let (courier_uid, courier_gid, _) =
        passwd_entry("courier").expect("user courier in /etc/passwd (courier-mta creates it)");
    let (_, _, e2e_home) =
        passwd_entry("e2e").expect("user e2e in /etc/passwd (the up script creates it)");
    let maildir = e2e_home.join("Maildir");

    // ---- (a) accepted message is delivered --------------------------------------------
    let accepted_token = unique("accepted");
    let t = Instant::now();
    let accepted = send("friend@example.org", &message(&accepted_token, ""), false);
    let smtp_time = t.elapsed();
    assert_eq!(
        accepted.code,
        250,
        "friend@ should be accepted: {}",
        accepted.wire()
    );
    assert!(accepted.lines[0].starts_with("Ok. "), "{}", accepted.wire());
    eprintln!("accepted: {:?} in {smtp_time:?}", accepted.wire());
    let (file, delivery_time) = wait_for_delivery(&maildir, &accepted_token);
    eprintln!("delivered to {} after {delivery_time:?}", file.display());
    let delivered = fs::read_to_string(&file).unwrap_or_default();
    assert!(
        delivered.contains("by mail.e2e.test with ESMTP"),
        "the delivered copy lacks Courier's Received header:\n{delivered}"
    );
    assert!(
        delivered.contains("\n.line that needs dot-stuffing\n"),
        "dot-stuffing was not undone:\n{delivered}"
    );

    // ---- (b) rejects reach the SMTP client exactly ---------------------------------------
    let loop_token = unique("loop");
    let looped = send(
        "friend@example.org",
        &message(&loop_token, "Delivered-To: someone@e2e.test\n"),
        false,
    );
    eprintln!("deliveredto: {:?}", looped.wire());
    assert_eq!(looped.wire(), DELIVEREDTO_REPLY);

    let private_token = unique("private");
    let private = send("stranger@example.org", &message(&private_token, ""), false);
    eprintln!("privateaddr: {:?}", private.wire());
    assert_eq!(private.wire(), PRIVATEADDR_REPLY);

    // ---- (c) an authenticated sender bypasses privateaddr, not deliveredto -------------
    let auth_token = unique("auth");
    let authed = send("stranger@example.org", &message(&auth_token, ""), true);
    eprintln!("authenticated stranger: {:?}", authed.wire());
    assert_eq!(
        authed.code,
        250,
        "AUTH'd stranger@ should pass: {}",
        authed.wire()
    );
    wait_for_delivery(&maildir, &auth_token);

    let auth_loop_token = unique("authloop");
    let auth_looped = send(
        "stranger@example.org",
        &message(&auth_loop_token, "Delivered-To: someone@e2e.test\n"),
        true,
    );
    eprintln!("authenticated, looping: {:?}", auth_looped.wire());
    assert_eq!(auth_looped.wire(), DELIVEREDTO_REPLY);

    // The accounting lines show which modules ran: all four for the plain message,
    // everything but privateaddr for the authenticated one.
    let plain_acct = accounting_line_for(&accepted);
    for module in ["debug(", "whitelist_auth(", "privateaddr(", "deliveredto("] {
        assert!(
            plain_acct.contains(module),
            "{module} missing in: {plain_acct}"
        );
    }
    let auth_acct = accounting_line_for(&authed);
    for module in ["debug(", "whitelist_auth(", "deliveredto("] {
        assert!(
            auth_acct.contains(module),
            "{module} missing in: {auth_acct}"
        );
    }
    assert!(
        !auth_acct.contains("privateaddr("),
        "privateaddr ran for an authenticated sender: {auth_acct}"
    );

    // ---- (d) the filter runs as courier, in courierfilter's environment ------------------
    let pids = filter_pids();
    assert!(
        !pids.is_empty(),
        "no process with argv[0] {ACTIVE_LINK} or executable {INSTALLED_BIN}"
    );
    let expected_env = courierd_environment();
    assert!(
        !expected_env.contains_key("HOME"),
        "courierd itself sets HOME: {expected_env:?}"
    );
    for &pid in &pids {
        let uids = proc_ids(pid, "Uid:");
        let gids = proc_ids(pid, "Gid:");
        assert!(
            uids.len() == 4 && uids.iter().all(|&u| u == courier_uid),
            "pid {pid} runs with uids {uids:?}, not courier's {courier_uid}"
        );
        assert!(
            gids.len() == 4 && gids.iter().all(|&g| g == courier_gid),
            "pid {pid} runs with gids {gids:?}, not courier's {courier_gid}"
        );
        let raw = fs::read(format!("/proc/{pid}/environ"))
            .unwrap_or_else(|e| panic!("reading /proc/{pid}/environ: {e}"));
        let env = parse_environ(&raw);
        assert!(!env.contains_key("HOME"), "pid {pid} has HOME: {env:?}");
        assert!(env.contains_key("PATH"), "pid {pid} has no PATH: {env:?}");
        for (k, v) in &env {
            assert_eq!(
                expected_env.get(k),
                Some(v),
                "pid {pid} has {k}={v}, which sourcing /etc/courier/courierd does not give"
            );
        }
    }
    eprintln!(
        "filter processes {pids:?}: uid/gid {courier_uid}/{courier_gid}, environment = courierd's"
    );

    // ---- (e) the rejects are in syslog as the reject log lines ---------------------------
    for (module, sender, reply) in [
        ("privateaddr", "stranger@example.org", PRIVATEADDR_REPLY),
        ("deliveredto", "friend@example.org", DELIVEREDTO_REPLY),
        ("deliveredto", "stranger@example.org", DELIVEREDTO_REPLY),
    ] {
        let expected = format!("{NAME} {module} reject,from=<{sender}>,addr=<{RCPT}>: {reply}");
        let line = wait_for_log(&format!("from courierfilter with {expected:?}"), |l| {
            l.contains("courierfilter") && l.ends_with(&expected)
        });
        eprintln!("syslog: {line}");
    }

    // Only the accepted messages were delivered, each once.
    for token in [&accepted_token, &auth_token] {
        assert_eq!(
            maildir_hits(&maildir, token).len(),
            1,
            "{token} delivered more than once"
        );
    }
    for token in [&loop_token, &private_token, &auth_loop_token] {
        assert!(
            maildir_hits(&maildir, token).is_empty(),
            "the rejected message {token} was delivered"
        );
    }

    // ---- down ----------------------------------------------------------------------------
    match guard.down() {
        Ok(t) => eprintln!("courier-down.sh took {t:?}"),
        Err(e) => panic!("{e}"),
    }
    assert!(
        filter_pids().is_empty(),
        "rustfilter still runs after courier-down.sh: {:?}",
        filter_pids()
    );
    assert!(
        !Path::new("/var/lib/courier/allfilters/rustfilter").exists(),
        "the filter socket is still there after courier-down.sh"
    );
    eprintln!("whole end-to-end test took {:?}", test_started.elapsed());
}
