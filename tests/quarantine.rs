//! The command line of the quarantine and of dropmsg, driving the built binary:
//! `rustfilter quarantine list|purge|release` on a temporary configuration and store, and
//! `rustfilter dropmsg` on a fake Courier queue. (Release by mail under the real Courier is in
//! tests/quarantine_e2e.rs.)

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rustfilter::courier::control::Recipient;
use rustfilter::quarantine::store::{self, Index, Item};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rustfilter"))
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Setup {
    tmp: tempfile::TempDir,
}

impl Setup {
    fn new(days: u32) -> Setup {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::create_dir(tmp.path().join("etc")).expect("etc");
        fs::write(tmp.path().join("etc/me"), "mail.example\n").expect("me");
        fs::write(
            tmp.path().join("modules.conf"),
            format!(
                "[quarantine]\nsiteid = 'cli'\ndir = '{}'\ndays = {days}\n",
                tmp.path().join("q").display()
            ),
        )
        .expect("modules file");
        Setup { tmp }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("q")
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(bin());
        cmd.arg("--modules-config")
            .arg(self.tmp.path().join("modules.conf"))
            .arg("--sysconfdir")
            .arg(self.tmp.path().join("etc"))
            .args(args)
            .env_remove("DEFAULT")
            .env_remove("SENDER")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run rustfilter")
    }

    /// An item as the filter stores it, quarantined `age` seconds ago.
    fn add_item(&self, age: i64, rcpt: &str) -> String {
        store::ensure_dir(&self.dir()).expect("quarantine dir");
        let id = store::new_id().expect("id");
        for name in [store::data_name(&id), store::control_name(&id, 0)] {
            let mut f = store::create_exclusive(&self.dir().join(name)).expect("item file");
            std::io::Write::write_all(&mut f, b"x\n").expect("write");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        Index::open(&self.dir())
            .expect("index")
            .insert(&Item {
                id: id.clone(),
                time: now - age,
                sender: "bad@example.org".into(),
                explanation: "The virus X was found in the message".into(),
                controls: 1,
                recipients: vec![(Recipient::new(rcpt, "", ""), 0)],
            })
            .expect("insert");
        id
    }
}

#[test]
fn list_and_purge() {
    let s = Setup::new(14);
    // nothing yet, no directory: both succeed quietly and create nothing
    let out = s.run(&["quarantine", "list"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0, "");
    let out = s.run(&["quarantine", "purge"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(!s.dir().exists());

    let old = s.add_item(15 * 86_400, "a@e2e.test");
    let young = s.add_item(60, "b@e2e.test");
    let out = s.run(&["quarantine", "list"], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with(&format!("{old} ")),
        "oldest first:\n{stdout}"
    );
    assert!(stdout.contains(&format!(
        "from <bad@example.org>: The virus X was found in the message\n    to <a@e2e.test> held\n{young} "
    )), "{stdout}");

    // the reference's spelling
    let out = s.run(&["quarantine", "-purge"], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "1 quarantined messages purged\n");
    let out = s.run(&["quarantine", "list"], &[]);
    let stdout = text(&out).0;
    assert!(
        !stdout.contains(&old) && stdout.contains(&young),
        "{stdout}"
    );
    assert!(!s.dir().join(store::data_name(&old)).exists());
    assert!(s.dir().join(store::data_name(&young)).exists());

    // days = 0: everything goes
    let s0 = Setup::new(0);
    s0.add_item(0, "c@e2e.test");
    let out = s0.run(&["quarantine", "purge"], &[]);
    assert_eq!(text(&out).0, "1 quarantined messages purged\n");
}

#[test]
fn release_needs_default_and_sender() {
    let s = Setup::new(14);
    for (env, missing) in [(&[][..], "DEFAULT"), (&[("DEFAULT", "abc")][..], "SENDER")] {
        for spelling in ["release", "-release"] {
            let out = s.run(&["quarantine", spelling], env);
            let (stdout, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(78), "{stdout}{stderr}");
            assert_eq!(
                stderr,
                format!(
                    "Could not find the {missing} environment variable.\n\
                     See rustfilter-quarantine(8) for the proper setup.\n"
                )
            );
        }
    }
    // a request from the null sender (a bounce) is dropped without a reply
    let out = s.run(
        &["quarantine", "release"],
        &[("DEFAULT", "abc"), ("SENDER", "")],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    // an address that could be an option is refused before sendmail: permanent failure
    let out = s.run(&["quarantine", "release", "abc", "--", "-bs"], &[]);
    assert_eq!(out.status.code(), Some(65), "{:?}", text(&out));
    // usage errors
    for args in [
        &["quarantine"][..],
        &["quarantine", "release", "x"],
        &["quarantine", "x"],
    ] {
        let out = s.run(args, &[]);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
    }
}

#[test]
fn bad_quarantine_config_is_reported() {
    let s = Setup::new(14);
    fs::write(
        s.tmp.path().join("modules.conf"),
        "[quarantine]\nsiteid = 'a.b'\n",
    )
    .expect("write");
    let out = s.run(&["quarantine", "list"], &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out).1.contains("[quarantine] siteid"),
        "{:?}",
        text(&out)
    );
}

fn queue(l: &Path, sub: &str, n: u32, control: &str) {
    let d = l.join("msgs").join(sub);
    fs::create_dir_all(&d).expect("msgs");
    fs::write(d.join(format!("C{n}")), control).expect("C");
    fs::write(d.join(format!("D{n}")), format!("body {n}\n")).expect("D");
}

fn dropmsg(l: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("dropmsg")
        .args(args)
        .arg("--localstatedir")
        .arg(l)
        .stdin(Stdio::null())
        .output()
        .expect("run rustfilter dropmsg")
}

#[test]
fn dropmsg_usage_and_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path();
    let usage = format!(
        "Use: rustfilter dropmsg [-a authentication] [-i IP address] [-s email address]\n\
         \x20   The local system's queue will be walked.  Messages matching any given criteria will\n\
         \x20   be moved to a quarantine ({}/quarantine).  At least one argument is required.\n\
         \x20   -a: Messages queued using the given username\n\
         \x20   -i: Messages queued from the given IP address\n\
         \x20   -s: Messages with the given envelope sender's address or DSNs to that address\n",
        l.display()
    );
    for args in [&[][..], &["-x", "1"], &["positional"], &["-a"]] {
        let out = dropmsg(l, args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}{stderr}");
        assert!(stdout.ends_with(&usage), "{args:?}:\n{stdout}");
        assert_eq!(stderr, "", "{args:?}");
    }
    // no queue
    let out = dropmsg(l, &["-a", "bob"]);
    assert_eq!(out.status.code(), Some(66), "{:?}", text(&out));
}

#[test]
fn dropmsg_moves_matching_messages_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path();
    queue(
        l,
        "17",
        1001,
        "sspam@x.example\nfdns; c\nra@e2e.test\nR\nN\nOTCPREMOTEIP=::ffff:192.0.2.9\n",
    );
    queue(
        l,
        "17",
        1002,
        "sfriend@x.example\nra@e2e.test\nR\nN\nOTCPREMOTEIP=192.0.2.1\nibob\n",
    );
    queue(l, "18", 1003, "s\nrspam@x.example\nR\nN\n");
    // a DSN without recipients: no match, no crash
    queue(l, "18", 1004, "s\n");
    fs::write(l.join("msgs/18/C1003.1"), "rb@e2e.test\nR\nN\n").expect("C.1");
    // an unreadable file name pattern that is not a message
    fs::write(l.join("msgs/18/README"), "x").expect("other");

    let out = dropmsg(
        l,
        &[
            "-i",
            "192.0.2.9",
            "-s",
            "spam@x.example",
            "-s",
            "SPAM@X.EXAMPLE",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("/msgs/17/C1001 (from ::ffff:192.0.2.9)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("/msgs/18/C1003 (DSN to <spam@x.example>)"),
        "{stdout}"
    );
    assert!(stdout.contains("2 messages moved to "), "{stdout}");
    let q = l.join("quarantine");
    assert_eq!(
        fs::metadata(&q).expect("quarantine").permissions().mode() & 0o777,
        0o700
    );
    let mut moved: Vec<String> = fs::read_dir(&q)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    moved.sort();
    assert_eq!(moved, ["C1001", "C1003", "C1003.1", "D1001", "D1003"]);
    for kept in ["17/C1002", "17/D1002", "18/C1004", "18/D1004", "18/README"] {
        assert!(l.join("msgs").join(kept).exists(), "{kept}");
    }

    // by SMTP AUTH user
    let out = dropmsg(l, &["-a", "bob"]);
    assert!(text(&out).0.contains("C1002 (authenticated as bob)"));
    assert!(!l.join("msgs/17/C1002").exists());
    assert!(q.join("D1002").exists());
}
