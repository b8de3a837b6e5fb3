//! Faults under the real Courier MTA (issue 9 items 1 and 4): a worker SIGKILLed mid-message
//! (Courier tempfails it with `432`, the master has a new worker within 100 ms); Courier and
//! the filter restarted while mail streams in over SMTP: every message that got `250` is
//! delivered exactly once, none is lost, and nothing that was refused is delivered. Also what
//! the filter runs as: user and group courier, no supplementary root group, no capabilities,
//! its socket 0660 courier:courier.
//!
//! Courier is one per machine: one test function, under the harness's lock file; Courier is
//! brought down at the end. Needs root.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "common/courier.rs"]
mod courier;
use courier::*;

const SOCKET: &str = "/var/lib/courier/allfilters/rustfilter";

/// How one SMTP transaction ended.
#[derive(Debug, Clone)]
enum Outcome {
    /// 250 to the end of DATA.
    Accepted,
    /// A reply other than the expected one at some step: nothing was accepted.
    Refused(String),
    /// The connection failed before the final reply: the outcome is unknown to the client.
    Broken(String),
}

/// One SMTP transaction that never panics: the harness's client asserts every step.
fn try_send(token: &str, extra_headers: &str) -> Outcome {
    try_send_from("friend@example.org", token, extra_headers)
}

fn try_send_from(sender: &str, token: &str, extra_headers: &str) -> Outcome {
    let result = (|| -> Result<Outcome, String> {
        let stream = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], PORT)),
            Duration::from_secs(10),
        )
        .map_err(|e| format!("connect: {e}"))?;
        let timeout = Some(Duration::from_secs(90));
        stream
            .set_read_timeout(timeout)
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(timeout)
            .map_err(|e| e.to_string())?;
        let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(stream);
        let mut reply = |what: &str| -> Result<(u16, String), String> {
            let mut text = String::new();
            loop {
                let mut line = String::new();
                let n = reader
                    .read_line(&mut line)
                    .map_err(|e| format!("{what}: {e}"))?;
                if n == 0 {
                    return Err(format!("{what}: connection closed"));
                }
                text.push_str(&line);
                if line.as_bytes().get(3) != Some(&b'-') {
                    let code = line
                        .get(..3)
                        .and_then(|c| c.parse().ok())
                        .ok_or(format!("{what}: not a reply: {line:?}"))?;
                    return Ok((code, text.trim_end().to_string()));
                }
            }
        };
        let steps: [(Option<String>, u16); 5] = [
            (None, 220),
            (Some("EHLO client.example".into()), 250),
            (Some(format!("MAIL FROM:<{sender}>")), 250),
            (Some(format!("RCPT TO:<{RCPT}>")), 250),
            (Some("DATA".into()), 354),
        ];
        for (cmd, want) in steps {
            if let Some(cmd) = &cmd {
                writer
                    .write_all(format!("{cmd}\r\n").as_bytes())
                    .map_err(|e| format!("{cmd}: {e}"))?;
            }
            let (code, text) = reply(cmd.as_deref().unwrap_or("greeting"))?;
            if code != want {
                return Ok(Outcome::Refused(text));
            }
        }
        let body = message(token, extra_headers).replace('\n', "\r\n");
        writer
            .write_all(format!("{body}.\r\n").as_bytes())
            .map_err(|e| format!("message: {e}"))?;
        let (code, text) = reply("end of DATA")?;
        let _ = writer.write_all(b"QUIT\r\n");
        Ok(if code == 250 {
            Outcome::Accepted
        } else {
            Outcome::Refused(text)
        })
    })();
    result.unwrap_or_else(Outcome::Broken)
}

fn sbin(cmd: &str, arg: &str) {
    let t = Instant::now();
    let out = Command::new("timeout")
        .args(["60", cmd, arg])
        .output()
        .unwrap_or_else(|e| panic!("{cmd} {arg}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {arg} failed\n{}",
        output_text(&out)
    );
    eprintln!("{cmd} {arg}: {:?}", t.elapsed());
}

/// A line of /proc/<pid>/status.
fn status_field(pid: u32, field: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Every process of the filter (master and workers) runs as courier:courier with no
/// supplementary root group and no capabilities; the socket is 0660 courier:courier.
fn check_privileges(uid: u32, gid: u32) {
    let pids = filter_pids();
    assert!(
        pids.len() >= 2,
        "the filter's master and workers are not running: {pids:?}"
    );
    for pid in pids {
        assert_eq!(proc_ids(pid, "Uid:"), [uid; 4], "pid {pid} uids");
        assert_eq!(proc_ids(pid, "Gid:"), [gid; 4], "pid {pid} gids");
        let groups = proc_ids(pid, "Groups:");
        assert!(
            !groups.contains(&0),
            "pid {pid} is in the root group: {groups:?}"
        );
        for cap in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
            assert_eq!(
                status_field(pid, cap),
                "0000000000000000",
                "pid {pid} {cap}"
            );
        }
    }
    let meta = fs::symlink_metadata(SOCKET).expect("the filter's socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o660, uid, gid),
        "socket mode and owner"
    );
}

/// The name server the filter's spfcheck asks: NXDOMAIN for every name (SPF `none`: no
/// decision), except that a question about `hang.example` is never answered; its source port
/// goes to `hung`, so the test can find the worker that waits.
fn start_name_server() -> (std::net::SocketAddr, std::sync::mpsc::Receiver<u16>) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let addr = sock.local_addr().expect("addr");
    let (tx, hung) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                return;
            };
            if n < 12 {
                continue;
            }
            let q = &buf[..n];
            if q.windows(5).any(|w| w.eq_ignore_ascii_case(b"\x04hang")) {
                let _ = tx.send(from.port());
                continue;
            }
            let mut r = q.to_vec();
            r[2] |= 0x80;
            r[3] = (r[3] & 0xf0) | 3;
            let _ = sock.send_to(&r, from);
        }
    });
    (addr, hung)
}

/// The filter process that owns the UDP socket bound to 127.0.0.1:`port`.
fn pid_of_udp_port(port: u16) -> Option<u32> {
    let table = fs::read_to_string("/proc/net/udp").ok()?;
    let inode = table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let local_port = f.get(1)?.split(':').nth(1)?;
        (u16::from_str_radix(local_port, 16).ok()? == port)
            .then(|| f.get(9).map(|s| s.to_string()))?
    })?;
    let link = format!("socket:[{inode}]");
    filter_pids().into_iter().find(|pid| {
        fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten()
                .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == link.as_str()))
        })
    })
}

#[test]
fn courier_and_the_filter_restarted_under_load_lose_no_mail() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the Courier fault test must run as root (it starts and restarts Courier)"
    );
    let mut guard = CourierGuard::lock();
    let conf = tempfile::tempdir().expect("tempdir");
    let chain = conf.path().join("rustfilter.conf");
    let modules = conf.path().join("rustfilter-modules.conf");
    let (dns, hung) = start_name_server();
    fs::write(&chain, "spfcheck\ndeliveredto\n").expect("chain");
    fs::write(
        &modules,
        format!("[dns]\nnameservers = ['{dns}']\ntimeout = 20\nattempts = 1\n"),
    )
    .expect("modules");
    for (p, mode) in [(conf.path(), 0o755), (&chain, 0o644), (&modules, 0o644)] {
        // courier must be able to read them.
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    guard.up(&chain, &modules);
    let (uid, gid, _) = passwd_entry("courier").expect("user courier");
    let (_, _, home) = passwd_entry("e2e").expect("user e2e");
    let maildir = home.join("Maildir");

    check_privileges(uid, gid);
    // One message through before the load: the set-up works.
    let first = unique("restart-first");
    assert!(matches!(try_send(&first, ""), Outcome::Accepted));
    wait_for_delivery(&maildir, &first);

    // ---- a worker SIGKILLed mid-message ----------------------------------------------------
    // The message's SPF lookup never gets an answer: its worker is busy with it when killed.
    let killed_token = unique("killed");
    let client = {
        let token = killed_token.clone();
        std::thread::spawn(move || try_send_from("someone@hang.example", &token, ""))
    };
    let port = hung
        .recv_timeout(Duration::from_secs(30))
        .expect("the filter never asked about hang.example");
    let busy = pid_of_udp_port(port).expect("the worker that asked");
    let pool = filter_pids();
    let killed = Instant::now();
    // SAFETY: a worker of the filter under test.
    unsafe { libc::kill(busy as i32, libc::SIGKILL) };
    let replaced = loop {
        let now = filter_pids();
        if now.len() == pool.len() && !now.contains(&busy) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "not replaced: {now:?}"
        );
        std::thread::sleep(Duration::from_micros(500));
    };
    let outcome = client.join().expect("client");
    eprintln!("worker {busy} killed: the SMTP client got {outcome:?}; replaced after {replaced:?}");
    match &outcome {
        // Courier's own tempfail for a filter that answered nothing.
        Outcome::Refused(r) if r == "432 Mail filters temporarily unavailable." => {}
        other => panic!("a message whose worker was killed: {other:?}"),
    }
    assert!(replaced < Duration::from_millis(100), "{replaced:?}");
    let after = unique("after-kill");
    assert!(matches!(try_send(&after, ""), Outcome::Accepted));
    wait_for_delivery(&maildir, &after);
    assert!(maildir_hits(&maildir, &killed_token).is_empty());

    // ---- restarts under load ----------------------------------------------------------------
    // The load: 4 clients sending one message after another.
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<Vec<(String, Outcome)>>> = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, outcomes) = (Arc::clone(&stop), Arc::clone(&outcomes));
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let token = unique(&format!("restart-{i}-{n}"));
                    let outcome = try_send(&token, "");
                    if !matches!(outcome, Outcome::Accepted) {
                        // Do not spin while a part of Courier is down.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    outcomes.lock().expect("outcomes").push((token, outcome));
                }
            })
        })
        .collect();

    let pause = || std::thread::sleep(Duration::from_millis(400));
    pause();
    for _ in 0..3 {
        // The filter: courierfilter closes its stdin, then starts it again.
        let before = filter_pids();
        sbin("/usr/sbin/courierfilter", "stop");
        pause();
        sbin("/usr/sbin/courierfilter", "start");
        let after = filter_pids();
        assert!(
            !after.is_empty() && after.iter().all(|p| !before.contains(p)),
            "the filter was not restarted: {before:?} then {after:?}"
        );
        pause();
        // courierd and its delivery modules.
        sbin("/usr/sbin/courier", "stop");
        pause();
        sbin("/usr/sbin/courier", "start");
        pause();
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("a client thread failed");
    }
    check_privileges(uid, gid);

    let outcomes = outcomes.lock().expect("outcomes").clone();
    let accepted: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Accepted))
        .map(|(t, _)| t)
        .collect();
    let refused: Vec<(&String, &String)> = outcomes
        .iter()
        .filter_map(|(t, o)| match o {
            Outcome::Refused(r) => Some((t, r)),
            _ => None,
        })
        .collect();
    let broken: Vec<(&String, &String)> = outcomes
        .iter()
        .filter_map(|(t, o)| match o {
            Outcome::Broken(r) => Some((t, r)),
            _ => None,
        })
        .collect();
    let mut kinds: Vec<String> = refused
        .iter()
        .map(|(_, r)| r.lines().last().unwrap_or("").to_string())
        .chain(broken.iter().map(|(_, r)| (*r).clone()))
        .collect();
    kinds.sort();
    kinds.dedup();
    eprintln!(
        "{} transactions: {} accepted, {} refused, {} broken; not accepted: {kinds:#?}",
        outcomes.len(),
        accepted.len(),
        refused.len(),
        broken.len()
    );
    assert!(accepted.len() >= 20, "too little got through the load");

    // Every accepted message arrives, exactly once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut missing: Vec<&String> = accepted.clone();
    while !missing.is_empty() && Instant::now() < deadline {
        missing.retain(|t| maildir_hits(&maildir, t).is_empty());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        missing.is_empty(),
        "{} of {} accepted messages were lost: {missing:?}",
        missing.len(),
        accepted.len()
    );
    for t in &accepted {
        let hits = maildir_hits(&maildir, t);
        assert_eq!(hits.len(), 1, "{t} delivered {} times", hits.len());
    }
    // Nothing refused is delivered (the client would send it again: a duplicate), and a
    // transaction cut short is delivered at most once.
    std::thread::sleep(Duration::from_secs(2));
    for (t, r) in &refused {
        assert!(
            maildir_hits(&maildir, t).is_empty(),
            "{t} was refused ({r}) but delivered"
        );
    }
    for (t, _) in &broken {
        assert!(maildir_hits(&maildir, t).len() <= 1, "{t} delivered twice");
    }
    // The filter still decides after the restarts.
    let loop_token = unique("restart-loop");
    match try_send(&loop_token, &format!("Delivered-To: {RCPT}\n")) {
        Outcome::Refused(r) if r.starts_with("501 Mail loop") => {}
        other => panic!("after the restarts: {other:?}"),
    }
    guard.down().expect("courier-down.sh");
    assert!(!Path::new(SOCKET).exists());
}
