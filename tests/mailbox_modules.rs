//! The mailbox modules under a real Courier MTA with its real authdaemond: the authdaemon
//! client against Debian's socket, then localsenders, quota and sentfolder over SMTP
//! (tests/data/mailbox/). tests/services/courier-up.sh gives authdaemond the PAM user e2e
//! (local domain e2e.test) and the userdb accounts alice, bob, carol and dave in the hosted
//! domain hosted.test, with Maildirs under $WORK/hosted (bob's MAILDIR is ./Maildir, relative to his home).
//!
//! Courier is one per machine: everything runs in one test function, in order, under the
//! harness's lock file, and courier-down.sh runs at the end. Needs root; never skips.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustfilter::courier::authdaemon::{AuthError, AuthdaemonConfig};

#[path = "common/courier.rs"]
mod courier;
use courier::*;

const SITEID: &str = "rustfilter-test-site-3d9f0c2e";
const PUBLISHED_SITEID: &str = "69f7dc20-7aef-420b-a8d2-85ea229f97ba";
const AUTH_REQUIRED: &str = "517 Policy requires local senders to authenticate.";

fn hosted_home(user: &str) -> PathBuf {
    Path::new(WORK).join("hosted").join(user)
}

/// One SMTP transaction with any sender and recipients; the reply to the end of DATA, or the
/// first refused RCPT.
fn transaction(sender: &str, rcpts: &[&str], message: &str, auth: bool) -> Reply {
    let mut smtp = Smtp::connect();
    smtp.command_expect("EHLO client.example", 250);
    if auth {
        let token = base64(b"\0e2e\0e2epass");
        smtp.command_expect(&format!("AUTH PLAIN {token}"), 235);
    }
    smtp.command_expect(&format!("MAIL FROM:<{sender}>"), 250);
    for rcpt in rcpts {
        let reply = smtp.command(&format!("RCPT TO:<{rcpt}>"));
        assert_eq!(
            reply.code,
            250,
            "RCPT TO:<{rcpt}> refused: {}\n{}",
            reply.wire(),
            smtp.transcript.join("\n")
        );
    }
    let reply = smtp.data(message);
    smtp.command("QUIT");
    reply
}

fn mail(token: &str, to: &str, extra_headers: &str) -> String {
    format!(
        "{extra_headers}From: <sender@example.org>\nTo: <{to}>\nSubject: {token}\n\
         Message-ID: <{token}@client.example>\n\nbody of {token}\n"
    )
}

fn write_maildirsize(user: &str, text: &str) {
    let path = hosted_home(user).join("Maildir/maildirsize");
    fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    // Read by the filter, which runs as user courier.
    let _ = std::process::Command::new("chmod")
        .args(["0644", &path.display().to_string()])
        .status();
}

#[test]
fn mailbox_modules_under_real_courier() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test must run as root (it installs and starts Courier with authdaemond); \
         running as uid {euid}. Run `make test` as root (CI does)."
    );
    let mut guard = CourierGuard::lock();
    let data = repo().join("tests/data/mailbox");
    let up_time = guard.up(
        &data.join("rustfilter.conf"),
        &data.join("rustfilter-modules.conf"),
    );
    eprintln!("courier-up.sh took {up_time:?}");
    let (_, _, e2e_home) = passwd_entry("e2e").expect("user e2e (the up script creates it)");
    let e2e_maildir = e2e_home.join("Maildir");

    // ---- the authdaemon client against the real authdaemond ------------------------------
    let client = AuthdaemonConfig::default();
    let socket = client
        .socket()
        .expect("the default socket search finds authdaemond");
    eprintln!("authdaemond socket: {}", socket.display());
    let soon = || Instant::now() + Duration::from_secs(20);

    let t = Instant::now();
    let e2e = client
        .lookup("smtp", "e2e", soon())
        .expect("lookup e2e")
        .expect("e2e is a PAM account authdaemond knows");
    eprintln!(
        "lookup e2e took {:?}: HOME={:?} MAILDIR={:?}",
        t.elapsed(),
        e2e.home(),
        e2e.maildir()
    );
    assert!(e2e.get("PASSWD").is_none(), "password hashes are not kept");
    assert_eq!(e2e.home(), Some(e2e_home.to_str().unwrap_or("")));

    let alice = client
        .lookup("smtp", "alice@hosted.test", soon())
        .expect("lookup alice")
        .expect("alice@hosted.test is a userdb account");
    eprintln!(
        "alice: HOME={:?} MAILDIR={:?}",
        alice.home(),
        alice.maildir()
    );
    let alice_home = hosted_home("alice");
    assert_eq!(alice.home(), alice_home.to_str());
    assert_eq!(
        alice.maildir(),
        alice_home.join("Maildir").to_str(),
        "{:?}",
        alice.fields
    );
    let bob = client
        .lookup("smtp", "bob@hosted.test", soon())
        .expect("lookup bob")
        .expect("bob@hosted.test is a userdb account");
    assert_eq!(bob.maildir(), Some("./Maildir"), "{:?}", bob.fields);

    for unknown in ["nobody-at-all", "nobody@hosted.test", "alice"] {
        assert_eq!(
            client.lookup("smtp", unknown, soon()).expect("lookup"),
            None,
            "{unknown} should be unknown"
        );
    }
    // A uid with a blank or a newline is never sent (it would be `PRE . smtp e2e x` or a
    // second request line); it is "no such user", and authdaemond still answers normally.
    for bad in ["e2e x", "e2e\nPRE . smtp e2e", "e2e\t"] {
        assert_eq!(
            client.lookup("smtp", bad, soon()).expect("lookup"),
            None,
            "{bad:?}"
        );
    }
    assert!(
        client
            .lookup("smtp", "e2e", soon())
            .expect("lookup")
            .is_some()
    );
    // The message's deadline bounds the lookup.
    assert!(matches!(
        client.lookup("smtp", "e2e", Instant::now()),
        Err(AuthError::Deadline)
    ));

    // ---- localsenders (require_auth = True) ------------------------------------------------
    let cases: &[(&str, bool, &str)] = &[
        (
            "nosuch@e2e.test",
            false,
            "517 Sender does not exist: nosuch@e2e.test",
        ),
        (
            "nosuch@hosted.test",
            false,
            "517 Sender does not exist: nosuch@hosted.test",
        ),
        ("e2e@e2e.test", false, AUTH_REQUIRED),
        ("alice@hosted.test", false, AUTH_REQUIRED),
    ];
    for (sender, auth, expected) in cases {
        let token = unique("localsenders");
        let reply = transaction(sender, &[RCPT], &mail(&token, RCPT, ""), *auth);
        eprintln!("localsenders {sender} auth={auth}: {}", reply.wire());
        assert_eq!(reply.wire(), *expected, "sender {sender}");
    }
    // Known and authenticated, or not local at all: accepted.
    for (sender, auth) in [("e2e@e2e.test", true), ("friend@example.org", false)] {
        let token = unique("localsenders-ok");
        let reply = transaction(sender, &[RCPT], &mail(&token, RCPT, ""), auth);
        eprintln!("localsenders {sender} auth={auth}: {}", reply.wire());
        assert_eq!(reply.code, 250, "{sender}: {}", reply.wire());
        wait_for_delivery(&e2e_maildir, &token);
    }

    // ---- quota: real maildirsize files -------------------------------------------------------
    write_maildirsize("carol", "1000S\n600 1\n500 1\n"); // over size
    write_maildirsize("dave", "0S,3C\n100 2\n10 1\n"); // over count
    write_maildirsize("bob", "1000S,100C\n2000 1\n"); // over; MAILDIR relative to HOME
    write_maildirsize("alice", "lots of room\n"); // malformed
    let sender = "friend@example.org";
    for (rcpts, expected) in [
        (
            &["carol@hosted.test"][..],
            r#"421 User "carol@hosted.test" is over quota"#,
        ),
        (
            &["dave@hosted.test"][..],
            r#"421 User "dave@hosted.test" is over quota"#,
        ),
        (
            &["bob@hosted.test"][..],
            r#"421 User "bob@hosted.test" is over quota"#,
        ),
        (
            &["alice@hosted.test", "carol@hosted.test"][..],
            r#"421 User "carol@hosted.test" is over quota"#,
        ),
    ] {
        let token = unique("quota");
        let reply = transaction(sender, rcpts, &mail(&token, rcpts[0], ""), false);
        eprintln!("quota {rcpts:?}: {}", reply.wire());
        assert_eq!(reply.wire(), expected, "{rcpts:?}");
    }
    write_maildirsize("bob", "100000S,100C\n2000 1\n"); // under
    for rcpt in ["bob@hosted.test", "alice@hosted.test", RCPT] {
        let token = unique("quota-ok");
        let reply = transaction(sender, &[rcpt], &mail(&token, rcpt, ""), false);
        eprintln!("quota {rcpt}: {}", reply.wire());
        assert_eq!(reply.code, 250, "{rcpt}: {}", reply.wire());
    }
    let malformed = wait_for_log("about alice's malformed maildirsize", |l| {
        l.contains("courierfilter") && l.contains("alice@hosted.test") && l.contains("malformed")
    });
    eprintln!("syslog: {malformed}");
    for user in ["alice", "bob", "carol", "dave"] {
        let _ = fs::remove_file(hosted_home(user).join("Maildir/maildirsize"));
    }

    // ---- sentfolder: the copy through Courier's sendmail --------------------------------------
    let token = unique("sentfolder");
    let forged = format!("X-Deliver-To-Sent-Folder: {PUBLISHED_SITEID}\n");
    let reply = transaction(
        "e2e@e2e.test",
        &["alice@hosted.test", "bob@hosted.test"],
        &mail(&token, "alice@hosted.test", &forged),
        true,
    );
    eprintln!("sentfolder: {}", reply.wire());
    assert_eq!(reply.code, 250, "{}", reply.wire());
    let (copy, copy_time) = wait_for_delivery(&e2e_maildir, &token);
    eprintln!(
        "the Sent-folder copy reached {} after {copy_time:?}",
        copy.display()
    );
    let copy = fs::read_to_string(&copy).unwrap_or_default();
    let marker = format!("X-Deliver-To-Sent-Folder: {SITEID}\n");
    assert_eq!(
        copy.matches("X-Deliver-To-Sent-Folder").count(),
        1,
        "{copy}"
    );
    assert!(copy.contains(&marker), "no marker in the copy:\n{copy}");
    assert!(
        copy.contains("Bcc: bob@hosted.test\n"),
        "no Bcc in the copy:\n{copy}"
    );
    assert!(!copy.contains(PUBLISHED_SITEID), "{copy}");
    // The recipients get the message without the forged header (and without our marker).
    for user in ["alice", "bob"] {
        let (file, _) = wait_for_delivery(&hosted_home(user).join("Maildir"), &token);
        let text = fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !text.contains("X-Deliver-To-Sent-Folder"),
            "{user} got a marker header:\n{text}"
        );
        assert!(
            !text.starts_with("Bcc:") && !text.contains("\nBcc:"),
            "{text}"
        );
    }

    // An outsider's forged marker is removed, and no copy is made of unauthenticated mail.
    let token = unique("forged");
    let forged =
        format!("X-Deliver-To-Sent-Folder: {PUBLISHED_SITEID}\nX-Deliver-To-Sent-Folder: guess\n");
    let reply = transaction(
        "friend@example.org",
        &[RCPT],
        &mail(&token, RCPT, &forged),
        false,
    );
    assert_eq!(reply.code, 250, "{}", reply.wire());
    let (file, _) = wait_for_delivery(&e2e_maildir, &token);
    let text = fs::read_to_string(&file).unwrap_or_default();
    assert!(
        !text.contains("X-Deliver-To-Sent-Folder"),
        "the forged header was delivered:\n{text}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        maildir_hits(&e2e_maildir, &token).len(),
        1,
        "unauthenticated mail was copied"
    );

    // ---- down: the hosted domain and userdb accounts are gone again ---------------------------
    match guard.down() {
        Ok(t) => eprintln!("courier-down.sh took {t:?}"),
        Err(e) => panic!("{e}"),
    }
    let rc = fs::read_to_string("/etc/courier/authdaemonrc").unwrap_or_default();
    assert!(
        rc.lines().any(|l| l == "authmodulelist=\"authpam\""),
        "authdaemonrc was not restored"
    );
    assert!(!hosted_home("alice").exists());
    assert!(!Path::new("/etc/courier/hosteddomains/rustfilter-test").exists());
}
