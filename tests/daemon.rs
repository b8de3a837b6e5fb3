//! The daemon as courierfilter runs it: readiness, the socket, replies, logging, malformed
//! requests, worker crashes, shutdown and the deferring mode.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Filter, Options};
use std::io::Write;

const LOOP_REPLY: &str = "501 Mail loop - already have my Delivered-To: header.";
const DEFER_REPLY: &str = "451 4.3.5 rustfilter configuration error, mail deferred";

#[test]
fn readiness_socket_mode_and_stale_sockets() {
    // Stale sockets of the same name (a crashed predecessor), and one of another filter.
    let stale = |root: &Path| {
        for p in [
            "spool/filters/rustfilter",
            "spool/allfilters/rustfilter",
            "spool/allfilters/.rustfilter",
            "spool/allfilters/other",
        ] {
            drop(UnixListener::bind(root.join(p)).expect("stale socket"));
        }
    };
    let f = Filter::start_with(Options {
        workers: Some(3),
        prepare: Some(&stale),
        ..Options::default()
    });
    // start_with returned: fd 3 was closed. By then every worker is up.
    assert_eq!(f.workers().len(), 3, "{}", f.stderr());
    let spool = f.localstatedir();
    let meta = std::fs::symlink_metadata(f.socket_path()).expect("socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
    assert!(!spool.join("filters/rustfilter").exists());
    assert!(!spool.join("allfilters/.rustfilter").exists());
    assert!(spool.join("allfilters/other").exists());
    // The socket at the final name is ours and answers.
    let data = f.spool("m", "data-plain");
    let control = f.spool("m", "control-plain");
    assert_eq!(f.send(&data, &[&control]), "200 Ok");
}

#[test]
fn an_empty_chain_accepts_with_exactly_200_ok() {
    let f = Filter::start("", "");
    let data = f.spool("m", "data-plain");
    let control = f.spool("m", "control-plain");
    assert_eq!(f.send(&data, &[&control]), "200 Ok");
    assert!(
        f.wait_stderr(
            "CPU TIME ACCOUNTING: 00000000000BA1FE.000000006B0736B7.00003819 processed with ",
            Duration::from_secs(5)
        ),
        "{}",
        f.stderr()
    );
}

#[test]
fn a_reject_is_logged_per_recipient_with_cpu_accounting() {
    let f = Filter::start("deliveredto\n", "");
    let data = f.spool("m", "data-loop");
    let control = f.spool("m", "control-plain");
    assert_eq!(f.send(&data, &[&control]), LOOP_REPLY);
    let cpu = "CPU TIME ACCOUNTING: 00000000000BA1FE.000000006B0736B7.00003819 processed with ";
    assert!(f.wait_stderr(cpu, Duration::from_secs(5)), "{}", f.stderr());
    let log = f.stderr();
    for rcpt in ["e2e@e2e.test", "e2e2@e2e.test"] {
        let line = format!(
            "rustfilter deliveredto reject,from=<alice@example.org>,addr=<{rcpt}>: {LOOP_REPLY}\n"
        );
        assert_eq!(log.matches(&line).count(), 1, "{line} in:\n{log}");
    }
    // One record per line, each whole: the accounting line lists the module.
    let cpu_line = log.lines().find(|l| l.starts_with(cpu)).unwrap_or_default();
    assert!(cpu_line.contains(" seconds: (deliveredto("), "{cpu_line}");
}

#[test]
fn an_authenticated_sender_bypasses_deliveredto() {
    let f = Filter::start("whitelist_auth for deliveredto\ndeliveredto\n", "");
    let data = f.spool("m", "data-loop");
    let auth = f.spool("m", "control-auth");
    let plain = f.spool("m", "control-plain");
    assert_eq!(f.send(&data, &[&auth]), "200 Ok");
    assert_eq!(f.send(&data, &[&plain]), LOOP_REPLY);
}

#[test]
fn zero_xx_and_multi_line_replies() {
    let f = Filter::start("fixed_reply\n", "[fixed_reply]\nreply = '050 OK'\n");
    let data = f.spool("m", "data-plain");
    let control = f.spool("m", "control-plain");
    assert_eq!(f.send(&data, &[&control]), "050 OK");
    drop(f);

    // Lines written with a space after the code go out as a proper multi-line reply.
    let f = Filter::start(
        "fixed_reply\n",
        "[fixed_reply]\nreply = '550 5.7.1 line one\\n550 5.7.1 line two\\n551 5.7.1 line three'\n",
    );
    let data = f.spool("m", "data-plain");
    let control = f.spool("m", "control-plain");
    assert_eq!(
        f.send(&data, &[&control]),
        "550-5.7.1 line one\n550-5.7.1 line two\n551 5.7.1 line three"
    );
    drop(f);

    let f = Filter::start(
        "fixed_reply\n",
        "[fixed_reply]\nreply = '550-5.7.1 line one\\n550 5.7.1 line two'\n",
    );
    let data = f.spool("m", "data-plain");
    let control = f.spool("m", "control-plain");
    assert_eq!(
        f.send(&data, &[&control]),
        "550-5.7.1 line one\n550 5.7.1 line two"
    );
}

#[test]
fn relative_paths_resolve_under_localstatedir_tmp() {
    // §8.8.1: `sub/D1\nsub/C1\n\n` means <localstatedir>/tmp/sub/D1 and …/C1.
    let f = Filter::start("deliveredto\n", "");
    f.spool("sub", "data-loop");
    f.spool("sub", "control-plain");
    let reply = f
        .send_raw(b"sub/data-loop\nsub/control-plain\n\n", false)
        .expect("request");
    assert_eq!(reply, LOOP_REPLY);
    // The absolute form of the same files gives the same answer.
    let data = f.localstatedir().join("tmp/sub/data-loop");
    let control = f.localstatedir().join("tmp/sub/control-plain");
    assert_eq!(f.send(&data, &[&control]), LOOP_REPLY);
}

#[test]
fn malformed_requests_are_closed_without_a_reply_and_the_workers_live_on() {
    let f = Filter::start_with(Options {
        chain: "deliveredto\n",
        ..Options::default()
    });
    let workers = f.workers();
    let data = f.spool("m", "data-loop");
    let control = f.spool("m", "control-plain");
    let good = |f: &Filter| assert_eq!(f.send(&data, &[&control]), LOOP_REPLY);
    good(&f);

    let cases: [(&[u8], bool, &str); 6] = [
        (b"\n", false, "empty data file path"),
        (
            b"GET / HTTP/1.0\r\n\r\n",
            false,
            "request names no control file",
        ),
        (
            b"\x00\xff\xfe garbage",
            true,
            "connection closed after 11 bytes",
        ),
        (b"/x/D1\n/x/C1\n", true, "before the blank line"),
        (b"", true, "connection closed before any request"),
        (&[b'/'; 5000], false, "request line longer than 4096 bytes"),
    ];
    for (request, half_close, logged) in cases {
        let reply = f.send_raw(request, half_close).expect("connect");
        assert_eq!(reply, "", "for {request:?}");
        assert!(
            f.wait_stderr(logged, Duration::from_secs(5)),
            "{logged:?} not logged:\n{}",
            f.stderr()
        );
        good(&f);
    }
    // A missing control file is a well-formed request: it is answered.
    let missing = f.localstatedir().join("tmp/m/no-such-control");
    assert_eq!(
        f.send(&data, &[&missing]),
        "451 Internal failure locating control files"
    );
    good(&f);
    assert_eq!(f.workers(), workers, "a worker died:\n{}", f.stderr());
}

#[test]
fn a_silent_client_times_out_while_others_are_served() {
    let f = Filter::start("", "");
    let data = f.spool("m", "data-plain");
    let control = f.spool("m", "control-plain");
    let start = Instant::now();
    let mut silent = UnixStream::connect(f.socket_path()).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    // The other worker serves meanwhile.
    for _ in 0..3 {
        assert_eq!(f.send(&data, &[&control]), "200 Ok");
    }
    let reply = common::read_reply(&mut silent).expect("read");
    let waited = start.elapsed();
    assert_eq!(reply, "");
    // The default read timeout is 30 s.
    assert!(
        waited >= Duration::from_secs(29) && waited < Duration::from_secs(45),
        "closed after {waited:?}"
    );
    assert!(f.wait_stderr("request not complete after 30 s", Duration::from_secs(5)));
    assert_eq!(f.send(&data, &[&control]), "200 Ok");
}

#[test]
fn a_worker_killed_mid_request_is_replaced() {
    let f = Filter::start_with(Options {
        workers: Some(1),
        ..Options::default()
    });
    let data = f.spool("m", "data-plain");
    let control = f.spool("m", "control-plain");
    assert_eq!(f.send(&data, &[&control]), "200 Ok");
    let before = f.workers();
    assert_eq!(before.len(), 1);

    // The only worker is busy with a half-sent request when it is killed.
    let mut pending = UnixStream::connect(f.socket_path()).expect("connect");
    pending.write_all(b"/x/D1\n").expect("write");
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: signalling the daemon's worker.
    unsafe { libc::kill(before[0], libc::SIGKILL) };
    assert_eq!(common::read_reply(&mut pending).expect("read"), "");

    let after = f.wait_workers(1, &before, Duration::from_secs(5));
    assert_eq!(after.len(), 1);
    assert_ne!(after, before);
    let logged = format!("worker {} killed by signal 9", before[0]);
    assert!(
        f.wait_stderr(&logged, Duration::from_secs(5)),
        "{}",
        f.stderr()
    );
    for _ in 0..3 {
        assert_eq!(f.send(&data, &[&control]), "200 Ok");
    }

    // Again, soon after: still replaced (the backoff starts small).
    // SAFETY: as above.
    unsafe { libc::kill(after[0], libc::SIGKILL) };
    let again = f.wait_workers(1, &after, Duration::from_secs(5));
    assert_eq!(again.len(), 1);
    assert!(!again.contains(&after[0]));
    assert_eq!(f.send(&data, &[&control]), "200 Ok");
}

#[test]
fn stdin_eof_removes_the_socket_and_exits_0() {
    let mut f = Filter::start("", "");
    let socket = f.socket_path();
    let workers = f.workers();
    let start = Instant::now();
    f.close_stdin();
    let status = f.wait_exit(Duration::from_secs(10)).expect("still running");
    assert_eq!(status.code(), Some(0), "{}", f.stderr());
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(!socket.exists());
    for w in workers {
        assert!(
            !Path::new(&format!("/proc/{w}")).exists(),
            "worker {w} left"
        );
    }
}

#[test]
fn sigterm_removes_the_socket_and_exits_0() {
    let mut f = Filter::start("", "");
    let socket = f.socket_path();
    f.signal(libc::SIGTERM);
    let status = f.wait_exit(Duration::from_secs(10)).expect("still running");
    assert_eq!(status.code(), Some(0), "{}", f.stderr());
    assert!(!socket.exists());
}

#[test]
fn a_config_error_with_fd_3_defers_all_mail() {
    let mut f = Filter::start("no_such_module\n", "");
    let data = f.spool("m", "data-plain");
    let control = f.spool("m", "control-plain");
    for _ in 0..3 {
        assert_eq!(f.send(&data, &[&control]), DEFER_REPLY);
    }
    assert!(f.stderr().contains("no_such_module"), "{}", f.stderr());
    f.close_stdin();
    let status = f.wait_exit(Duration::from_secs(10)).expect("still running");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_config_error_without_fd_3_exits_78() {
    let mut f = Filter::start_with(Options {
        chain: "no_such_module\n",
        fd3: false,
        ..Options::default()
    });
    let status = f.wait_exit(Duration::from_secs(10)).expect("still running");
    assert_eq!(status.code(), Some(78), "{}", f.stderr());
    assert!(!f.socket_path().exists());
    assert!(f.stderr().contains("no_such_module"));
}
