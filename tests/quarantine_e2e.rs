//! The quarantine round trip under the real Courier MTA, the real clamd of
//! tests/services/clamd.sh and Courier's real sendmail: a message with the test virus is
//! accepted (the filter answers `050 OK`) but delivered to nobody, the recipient gets the
//! notice, a mail to the release address (a .courier alias in Courier's aliasdir that runs
//! `rustfilter quarantine release`) delivers the original to the recipient, a second release
//! gets the failure notice, `rustfilter quarantine purge` removes the item; last,
//! `rustfilter dropmsg` moves a deferred message out of Courier's real queue.
//!
//! Needs root, Debian's courier-mta (courier-up.sh installs it) and the test clamd running
//! (`tests/services/clamd.sh start`, or `make test`). One test function: Courier is one per
//! machine.

#[path = "common/clamd.rs"]
mod clamd;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common/courier.rs"]
mod courier;
use courier::*;

/// A body pattern the test clamd's private database calls Rustfilter.Test.Pattern.
use clamd::{CLAMD_SOCKET, require_clamd};
const VIRUS_PATTERN: &str = "RUSTFILTER-TEST-MALWARE-PATTERN-42";
const SITEID: &str = "e2e";
const BASE: &str = "/tmp/rustfilter-quarantine-e2e";
const ALIAS: &str = "/etc/courier/aliasdir/.courier-quarantine-e2e-default";
/// Where `rustfilter dropmsg` moves messages: Courier's localstatedir/quarantine.
const DROPMSG_TARGET: &str = "/var/lib/courier/quarantine";

/// Removes the alias file and the scratch directory however the test ends.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = fs::remove_file(ALIAS);
        let _ = fs::remove_dir_all(BASE);
        let _ = fs::remove_dir_all(DROPMSG_TARGET);
    }
}

/// One SMTP transaction from `from` to `to`.
fn send_to(from: &str, to: &str, message: &str) -> Reply {
    let mut smtp = Smtp::connect();
    smtp.command_expect("EHLO client.example", 250);
    smtp.command_expect(&format!("MAIL FROM:<{from}>"), 250);
    smtp.command_expect(&format!("RCPT TO:<{to}>"), 250);
    let reply = smtp.data(message);
    smtp.command("QUIT");
    reply
}

/// Polls the Maildir for a message containing every needle (deliveries are asynchronous).
fn wait_for(maildir: &Path, needles: &[&str], what: &str) -> String {
    let started = Instant::now();
    loop {
        for file in maildir_hits(maildir, needles[0]) {
            let text = fs::read_to_string(&file).unwrap_or_default();
            if needles.iter().all(|n| text.contains(n)) {
                return text;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: no message with {needles:?} in {} after 30 s; syslog:\n{}",
            maildir.display(),
            syslog_lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cli(modules: &Path, args: &[&str]) -> std::process::Output {
    Command::new(filter_bin())
        .arg("--modules-config")
        .arg(modules)
        .args(args)
        .output()
        .expect("run rustfilter")
}

#[test]
fn quarantine_round_trip_under_real_courier() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "the Courier end-to-end test must run as root (uid {euid}); run `make test` as root"
    );
    require_clamd();
    let mut guard = CourierGuard::lock();
    let _cleanup = Cleanup;

    // The filter (user courier) creates the quarantine directory inside BASE.
    let (courier_uid, courier_gid, _) = passwd_entry("courier").expect("user courier");
    let _ = fs::remove_dir_all(BASE);
    fs::create_dir(BASE).expect("create the scratch directory");
    std::os::unix::fs::chown(BASE, Some(courier_uid), Some(courier_gid)).expect("chown");
    fs::set_permissions(BASE, fs::Permissions::from_mode(0o755)).expect("chmod");
    let qdir = PathBuf::from(BASE).join("q");
    let chain = PathBuf::from(BASE).join("rustfilter.conf");
    let modules = PathBuf::from(BASE).join("rustfilter-modules.conf");
    fs::write(&chain, "clamav\n").expect("chain file");
    let modules_text = |days: u32| {
        format!(
            "[clamav]\nlocal_socket = '{CLAMD_SOCKET}'\naction = 'quarantine'\n\
             [quarantine]\nsiteid = '{SITEID}'\ndir = '{}'\ndays = {days}\n",
            qdir.display()
        )
    };
    fs::write(&modules, modules_text(14)).expect("modules file");
    guard.up(&chain, &modules);

    let (_, _, e2e_home) = passwd_entry("e2e").expect("user e2e");
    let maildir = e2e_home.join("Maildir");

    // ---- the virus message: accepted, held, nothing delivered --------------------------
    let token = unique("held");
    let virus = format!(
        "From: Bad Guy <bad@example.org>\nTo: <{RCPT}>\nSubject: invoice {token}\n\
         Message-ID: <{token}@client.example>\n\nbody-{token}\n{VIRUS_PATTERN}\n"
    );
    let reply = send_to("bad@example.org", RCPT, &virus);
    assert_eq!(reply.code, 250, "the quarantined message: {}", reply.wire());

    let notice = wait_for(
        &maildir,
        &["Subject: Quarantine notice", &format!("invoice {token}")],
        "the quarantine notice",
    );
    assert!(
        notice.contains("From: Mail Quarantine System <postmaster@mail.e2e.test>"),
        "{notice}"
    );
    // Courier's submit writes the To: header without the angle brackets.
    assert!(notice.contains(&format!("To: {RCPT}\n")), "{notice}");
    assert!(
        notice.contains("quarantined because:\nThe virus Rustfilter.Test.Pattern"),
        "{notice}"
    );
    assert!(
        notice.contains("come from Bad Guy <bad@example.org>, although"),
        "{notice}"
    );
    let prefix = format!("Quarantine release address:\nquarantine-{SITEID}-");
    let at = notice.find(&prefix).expect("release address") + prefix.len();
    let id: String = notice[at..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    assert_eq!(id.len(), 32, "{notice}");
    let release_address = format!("quarantine-{SITEID}-{id}@mail.e2e.test");
    assert!(notice.contains(&format!("{release_address}\n")), "{notice}");

    // the original was delivered to nobody
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        maildir_hits(&maildir, &format!("body-{token}")).is_empty(),
        "the quarantined message was delivered"
    );
    // the store: made by the filter as courier, 0700 / 0600
    let meta = fs::metadata(&qdir).expect("the quarantine directory");
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (courier_uid, 0o700),
        "quarantine directory owner and mode"
    );
    for name in [
        format!("D{id}"),
        format!("C{id}"),
        "index.sqlite".to_string(),
    ] {
        let m = fs::metadata(qdir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((m.uid(), m.mode() & 0o777), (courier_uid, 0o600), "{name}");
    }
    let held = fs::read_to_string(qdir.join(format!("D{id}"))).expect("held copy");
    assert!(held.contains(VIRUS_PATTERN) && held.contains("by mail.e2e.test with ESMTP"));
    let out = cli(&modules, &["quarantine", "list"]);
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listing.contains(&format!("{id} ")) && listing.contains(&format!("to <{RCPT}> held")),
        "{listing}"
    );

    // ---- release by mail: the .courier alias in aliasdir runs as courier ---------------
    fs::write(
        ALIAS,
        "| /usr/lib/courier/filters/rustfilter quarantine release\n",
    )
    .expect("write the alias file");
    fs::set_permissions(ALIAS, fs::Permissions::from_mode(0o644)).expect("chmod alias");
    let forwarded = format!(
        "From: <{RCPT}>\nTo: <{release_address}>\nSubject: Fwd: Quarantine notice\n\n{notice}"
    );
    let reply = send_to(RCPT, &release_address, &forwarded);
    assert_eq!(reply.code, 250, "the release request: {}", reply.wire());
    let released = wait_for(
        &maildir,
        &[&format!("body-{token}"), VIRUS_PATTERN],
        "the released message",
    );
    assert!(released.contains(&format!("Subject: invoice {token}")));
    let out = cli(&modules, &["quarantine", "list"]);
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listing.contains(&format!("to <{RCPT}> released ")),
        "{listing}"
    );

    // ---- a second release: the failure notice instead -----------------------------------
    let reply = send_to(RCPT, &release_address, &forwarded);
    assert_eq!(
        reply.code,
        250,
        "the second release request: {}",
        reply.wire()
    );
    wait_for(
        &maildir,
        &[
            &format!("with id '{id}' from the quarantine"),
            "was not found",
        ],
        "the failure notice",
    );
    assert_eq!(
        maildir_hits(&maildir, &format!("body-{token}")).len(),
        1,
        "the message was released twice"
    );

    // ---- purge: days = 0 removes the item (run as root: it becomes courier) -----------
    let purge_conf = PathBuf::from(BASE).join("purge-modules.conf");
    fs::write(&purge_conf, modules_text(0)).expect("purge config");
    let out = cli(&purge_conf, &["quarantine", "purge"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1 quarantined messages purged\n"
    );
    assert!(!qdir.join(format!("D{id}")).exists());
    let index = fs::metadata(qdir.join("index.sqlite")).expect("index");
    assert_eq!(
        index.uid(),
        courier_uid,
        "purge left the index owned by root"
    );
    let out = cli(&modules, &["quarantine", "list"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");

    // ---- dropmsg on Courier's real queue ------------------------------------------------
    // Mail to a remote domain stays queued (esmtproutes points at a closed port).
    let _ = fs::remove_dir_all(DROPMSG_TARGET);
    let stuck_sender = format!("{}@example.org", unique("stuck"));
    let reply = send_to(
        &stuck_sender,
        "someone@remote.example",
        "Subject: stuck\n\nstuck\n",
    );
    assert_eq!(reply.code, 250, "{}", reply.wire());
    let queued = |dir: &str| -> Vec<String> {
        let mut names = Vec::new();
        let mut stack = vec![PathBuf::from(dir)];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    names.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        names.sort();
        names
    };
    let started = Instant::now();
    while queued("/var/lib/courier/msgs").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nothing queued"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let in_queue = queued("/var/lib/courier/msgs");
    let out = Command::new(filter_bin())
        .args([
            "dropmsg",
            "-s",
            &stuck_sender.to_uppercase(),
            "-a",
            "nobody",
        ])
        .output()
        .expect("run rustfilter dropmsg");
    assert!(out.status.success(), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("1 messages moved to /var/lib/courier/quarantine"),
        "{stdout}\nqueue was {in_queue:?}"
    );
    let moved = queued(DROPMSG_TARGET);
    assert_eq!(moved.len(), 2, "{moved:?} (queue was {in_queue:?})");
    assert!(
        moved[0].starts_with('C') && moved[1].starts_with('D'),
        "{moved:?}"
    );
    assert!(
        fs::read_to_string(PathBuf::from(DROPMSG_TARGET).join(&moved[0]))
            .expect("moved control file")
            .contains(&format!("s{stuck_sender}")),
    );
    assert!(
        queued("/var/lib/courier/msgs").is_empty(),
        "{:?}",
        queued("/var/lib/courier/msgs")
    );
    let mode = fs::metadata(DROPMSG_TARGET).expect("target").mode() & 0o777;
    assert_eq!(mode, 0o700);

    guard.down().expect("courier-down.sh");
}
