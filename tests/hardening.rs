//! Hardening (issue 9 item 4), each with a test: file modes of the state, no shell, no
//! untrusted text in argv or a protocol line, bounded reads, every network call with a
//! timeout. The socket's mode is checked in tests/daemon.rs, the quarantine's modes and the
//! privileges under the real Courier in tests/quarantine_e2e.rs and tests/faults_courier.rs;
//! FAULTS.md lists them all.

mod common;
#[path = "common/stateful.rs"]
mod stateful;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Filter;
use stateful::{Backend, control, message, send};

/// Every `.rs` file under `src/`, with its text before the unit tests (`#[cfg(test)]`).
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read src") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    files.sort();
    files
        .into_iter()
        .filter(|p| {
            // Test-only helpers compiled under cfg(test) only.
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !(name.ends_with("testutil.rs") || name == "testing.rs" || name == "tests.rs")
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read source");
            let code = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            (p, code)
        })
        .collect()
}

/// Lines of `code` that contain `needle`, outside `//` comments.
fn code_lines<'a>(code: &'a str, needle: &str) -> Vec<&'a str> {
    code.lines()
        .filter(|l| {
            let l = l.trim_start();
            !l.starts_with("//") && l.contains(needle)
        })
        .collect()
}

/// No shell: every program is run by path with a list of arguments, never `sh -c`, `system`
/// or `popen`, so no argument is ever parsed by a shell.
#[test]
fn no_shell_runs_anything() {
    let mut found = Vec::new();
    for (path, code) in sources() {
        for l in code_lines(&code, "Command::new(") {
            let arg = l.split("Command::new(").nth(1).unwrap_or("");
            if [
                "\"sh\"",
                "\"/bin/sh\"",
                "\"bash\"",
                "\"/bin/bash\"",
                "\"/usr/bin/env\"",
            ]
            .iter()
            .any(|s| arg.starts_with(s))
            {
                found.push(format!("{}: {l}", path.display()));
            }
        }
        for needle in [
            "libc::system(",
            "libc::popen(",
            "libc::execl(",
            "libc::execlp(",
            ".arg(\"-c\")",
        ] {
            for l in code_lines(&code, needle) {
                found.push(format!("{}: {l}", path.display()));
            }
        }
    }
    assert!(found.is_empty(), "shell use:\n{}", found.join("\n"));
}

/// Every connection is made with a timeout: no `TcpStream::connect(` (it waits for the
/// kernel's SYN retries, minutes) and no `UnixStream::connect(` (it blocks while a
/// listener's backlog is full) outside the unit tests; every socket read/write is bounded by
/// `set_read_timeout`/`set_write_timeout` or poll (checked per module in their unit tests).
#[test]
fn every_connect_has_a_timeout() {
    let mut found = Vec::new();
    for (path, code) in sources() {
        for needle in ["TcpStream::connect(", "UnixStream::connect("] {
            for l in code_lines(&code, needle) {
                found.push(format!("{}: {l}", path.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "connects without a timeout:\n{}",
        found.join("\n")
    );
}

/// The PostgreSQL store over a UNIX socket whose listen queue is full (a server overwhelmed
/// or stopped mid-accept): the connect gives up after its timeout instead of blocking the
/// worker for good. (It used `UnixStream::connect`, which has no timeout.)
#[test]
fn a_postgres_unix_socket_with_a_full_backlog_times_out() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = 5999;
    let path = dir.path().join(format!(".s.PGSQL.{port}"));
    let l = UnixListener::bind(&path).expect("bind");
    // SAFETY: listen(2) on our own socket: backlog 0, and nobody accepts.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let mut held = Vec::new();
    loop {
        // A non-blocking connect fills the queue without waiting.
        let s = socket2_nonblocking_connect(&path);
        match s {
            Some(s) => held.push(s),
            None => break,
        }
        assert!(held.len() < 16, "the backlog never filled");
    }
    let mut config = rustfilter::store::testing::filter_config(port, "filterdb");
    config.host = dir.path().display().to_string();
    let t = Instant::now();
    let err = rustfilter::store::postgres::PgBackend::connect(&config)
        .err()
        .expect("no connection");
    let took = t.elapsed();
    assert!(err.transient, "{err}");
    assert!(err.message.contains(&path.display().to_string()), "{err}");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "{took:?}: {err}"
    );
    drop(held);
}

/// A non-blocking connect to `path`: the stream, or None once the listen queue is full.
fn socket2_nonblocking_connect(path: &Path) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    assert!(fd >= 0);
    // SAFETY: a fresh descriptor nothing else owns.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_un is plain data.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (to, from) in addr
        .sun_path
        .iter_mut()
        .zip(path.as_os_str().as_encoded_bytes())
    {
        *to = *from as libc::c_char;
    }
    // SAFETY: addr is a valid sockaddr_un.
    let rc = unsafe {
        libc::connect(
            fd,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    (rc == 0).then_some(owned)
}

/// The TtlDb file and SQLite's -wal and -shm files are 0600 even when the filter starts with
/// umask 0: they record who mails whom.
#[test]
fn the_ttldb_files_are_0600_whatever_the_umask() {
    // The daemon inherits the umask at spawn; restored right after.
    // SAFETY: umask has no preconditions.
    let old = unsafe { libc::umask(0) };
    let f = stateful::start("greylist\n", "", &Backend::Sqlite, 2);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let (d, c) = message(
        &f,
        "m",
        &control("a@remote.example", &["u@e2e.test"], Some("192.0.2.1")),
    );
    assert_eq!(
        send(&f.socket_path(), &d, &c),
        "451 4.7.1 Greylisting in action, please come back in 00:05:00"
    );
    for name in ["ttldb.sqlite", "ttldb.sqlite-wal", "ttldb.sqlite-shm"] {
        let p = f.root().join("db").join(name);
        let mode = std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}: {:o}", mode & 0o777);
    }
}

/// A control file over the limit (16 MiB) is refused with Courier's tempfail text, not read
/// into memory; a message file over its limit (256 MiB) is refused with the tempfail for a data
/// file that cannot be parsed. Both are sparse files: no disk is used.
#[test]
fn oversized_spool_files_are_refused_cleanly() {
    let f = Filter::start("deliveredto\n", "");
    let data = f.spool("big", "data-plain");
    let control = f.spool("big", "control-plain");
    let huge_control = f.localstatedir().join("tmp/big/huge-control");
    std::fs::File::create(&huge_control)
        .and_then(|file| file.set_len(16 * 1024 * 1024 + 1))
        .expect("sparse control file");
    let t = Instant::now();
    assert_eq!(
        f.send(&data, &[&huge_control]),
        "451 Internal failure locating control files"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    let huge_data = f.localstatedir().join("tmp/big/huge-data");
    std::fs::File::create(&huge_data)
        .and_then(|file| file.set_len(256 * 1024 * 1024 + 1))
        .expect("sparse data file");
    let t = Instant::now();
    assert_eq!(
        f.send(&huge_data, &[&control]),
        "451 Internal failure parsing message data file"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(
        f.wait_stderr("huge-data", Duration::from_secs(5)),
        "{}",
        f.stderr()
    );
    // The worker lives on.
    assert_eq!(f.send(&data, &[&control]), "200 Ok", "{}", f.stderr());
}

/// Untrusted text never reaches an argv: AUTH names that would be options (`-oQ…`) or split
/// into several arguments (blanks, control characters) get no Sent-folder copy (logged), so
/// Courier's sendmail is not run with them. (The argv itself — recipients after `--`, `-f`
/// only for a valid sender — is checked in src/courier/sendmail.rs's unit tests; SMTP and
/// authdaemon lines refuse CR/LF in theirs.)
#[test]
fn untrusted_auth_names_reach_no_sendmail_argv() {
    let f = Filter::start("sentfolder\n", "[sentfolder]\nsiteid = 'hardening-site'\n");
    for (i, auth) in ["-oQ/tmp/evil", "-bd", "a b", "x\tRCPT", "x\rDATA"]
        .iter()
        .enumerate()
    {
        let ctl = format!(
            "{}i{auth}\n",
            control("a@remote.example", &["u@e2e.test"], Some("192.0.2.1"))
        );
        let (d, c) = message(&f, &format!("m{i}"), &ctl);
        assert_eq!(send(&f.socket_path(), &d, &c), "200 Ok", "{auth:?}");
        assert!(
            f.wait_stderr(
                &format!(
                    "{:?} is not a usable address",
                    format!("{auth}@mail.e2e.test")
                ),
                Duration::from_secs(5)
            ),
            "{auth:?}:\n{}",
            f.stderr()
        );
    }
}

/// Something that is not a sane PostgreSQL server (a wrong port, a server gone wrong) sends a
/// message header announcing 1 GiB and then streams: the store refuses it at the header,
/// after reading a few KiB, instead of buffering it. (Every other reply is bounded the same
/// way: clamd, spamc, authdaemon, SMTP and DNS in their unit tests.)
#[test]
fn a_postgres_message_over_the_limit_is_refused_at_its_header() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || -> usize {
        let Ok((mut s, _)) = listener.accept() else {
            return 0;
        };
        let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
        let mut startup = [0u8; 512];
        let _ = s.read(&mut startup);
        // 'R' (authentication) of 1 GiB, then data until the client hangs up.
        let mut sent = 0;
        let mut header = vec![b'R'];
        header.extend_from_slice(&(1u32 << 30).to_be_bytes());
        if s.write_all(&header).is_err() {
            return sent;
        }
        let block = [0u8; 8192];
        while sent < 1 << 30 {
            match s.write(&block) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    });
    let config = rustfilter::store::testing::filter_config(port, "filterdb");
    let t = Instant::now();
    let err = rustfilter::store::postgres::PgBackend::connect(&config)
        .err()
        .expect("refused");
    assert!(err.message.contains("protocol error"), "{err}");
    assert!(err.message.contains("1073741824 bytes announced"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let sent = server.join().expect("server");
    // What the kernel buffers, not the announced size.
    assert!(sent < 16 << 20, "{sent} bytes were taken in");
}

/// A sender that would break an SMTP dialogue (CR, `>`, control characters, a command of its
/// own) never reaches a call-out: dialback answers `501 Envelope sender is invalid`
/// before it even asks the DNS for the domain's mail servers (the name server here counts
/// the questions).
#[test]
fn untrusted_senders_reach_no_smtp_callout() {
    let dns = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    dns.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let modules = format!(
        "[dns]\nnameservers = ['{}']\ntimeout = 0.2\nattempts = 1\n",
        dns.local_addr().expect("addr")
    );
    let f = stateful::start("dialback\n", &modules, &Backend::Sqlite, 2);
    for (i, sender) in [
        "a\r@evil.example",
        "a>@evil.example",
        "a\t@evil.example",
        "a\u{7f}@evil.example",
        "a@evil.example>\rRCPT TO:<victim@evil.example",
    ]
    .iter()
    .enumerate()
    {
        let (d, c) = message(
            &f,
            &format!("s{i}"),
            &control(sender, &["u@e2e.test"], Some("192.0.2.1")),
        );
        assert_eq!(
            send(&f.socket_path(), &d, &c),
            "501 Envelope sender is invalid",
            "{sender:?}"
        );
    }
    let mut buf = [0u8; 512];
    assert!(
        dns.recv_from(&mut buf).is_err(),
        "a DNS question was asked for an invalid sender"
    );
}

/// A local sender with blanks or control characters is never put into an authdaemon request
/// line: localsenders counts it as not existing without a connection to authdaemond, while a
/// clean one is asked (the listener here answers `FAIL`).
#[test]
fn untrusted_senders_reach_no_authdaemon_line() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("authdaemon.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let f = Filter::start(
        "localsenders\n",
        &format!("[authdaemon]\nsocket_path = '{}'\n", path.display()),
    );
    for (i, sender) in [
        "a b@e2e.test",
        "a\tPRE@e2e.test",
        "a\u{1}@e2e.test",
        "a\r@e2e.test",
    ]
    .iter()
    .enumerate()
    {
        let (d, c) = message(
            &f,
            &format!("s{i}"),
            &control(sender, &["u@e2e.test"], Some("192.0.2.1")),
        );
        assert_eq!(
            send(&f.socket_path(), &d, &c),
            format!("517 Sender does not exist: {sender}"),
            "{sender:?}"
        );
        assert!(
            listener.accept().is_err(),
            "{sender:?} was sent to authdaemond"
        );
    }

    // A clean sender is looked up: one request line, answered FAIL.
    let answer = std::thread::spawn(move || {
        listener.set_nonblocking(false).expect("blocking");
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        let _ = s.write_all(b"FAIL\n");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let (d, c) = message(
        &f,
        "clean",
        &control("clean@e2e.test", &["u@e2e.test"], Some("192.0.2.1")),
    );
    assert_eq!(
        send(&f.socket_path(), &d, &c),
        "517 Sender does not exist: clean@e2e.test"
    );
    assert_eq!(answer.join().expect("listener"), "PRE . smtp clean\n");
}
