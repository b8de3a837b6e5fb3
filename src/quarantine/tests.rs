//! Unit tests of the quarantine with a recording stand-in for sendmail (the real one is used
//! by tests/quarantine_e2e.rs under Courier).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::courier::CourierPaths;

struct Setup {
    tmp: tempfile::TempDir,
    courier: Courier,
    data: PathBuf,
    control: PathBuf,
}

const CONTROL: &[u8] = b"ssender@example.org\nfdns; client\ne\nt\nMmsgid\n\
ra@e2e.test\nR\nN\nrb@e2e.test\nRrfc822;alias@e2e.test\nN\nOTCPREMOTEIP=127.0.0.1\n";
const DATA: &[u8] =
    b"Received: by x\nFrom: Bad Guy <bad@example.org>\nSubject: hello\n there\n\nbody\n";

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    fs::create_dir(&etc).unwrap();
    fs::write(etc.join("me"), "mail.example\n").unwrap();
    let mut paths = CourierPaths::defaults();
    paths.sysconfdir = etc;
    paths.localstatedir = tmp.path().join("spool");
    let spool = tmp.path().join("spool/tmp/1");
    fs::create_dir_all(&spool).unwrap();
    let data = spool.join("D1");
    let control = spool.join("C1");
    fs::write(&data, DATA).unwrap();
    fs::write(&control, CONTROL).unwrap();
    Setup {
        courier: Courier::new(paths),
        tmp,
        data,
        control,
    }
}

impl Setup {
    fn out(&self) -> PathBuf {
        self.tmp.path().join("sent")
    }

    /// A sendmail that records each call in sent/<n>/{argv,stdin}, then exits with `status`.
    fn sendmail(&self, status: i32) -> Sendmail {
        let out = self.out();
        fs::create_dir_all(&out).unwrap();
        let prog = self.tmp.path().join(format!("sendmail{status}"));
        fs::write(
            &prog,
            format!(
                "#!/bin/sh\nd={out}/$(ls {out} | wc -l)\nmkdir $d\nprintf '%s\\n' \"$@\" > $d/argv\n\
                 cat > $d/stdin\nexit {status}\n",
                out = out.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&prog, fs::Permissions::from_mode(0o755)).unwrap();
        Sendmail::new(prog)
    }

    fn config(&self) -> QuarantineConfig {
        QuarantineConfig {
            dir: self.tmp.path().join("q"),
            ..QuarantineConfig::default()
        }
    }

    fn quarantine(&self, config: QuarantineConfig, status: i32) -> Quarantine {
        Quarantine::new(config).with_sendmail(self.sendmail(status))
    }

    /// The calls made so far: (argv lines, stdin).
    fn sent(&self) -> Vec<(Vec<String>, String)> {
        let mut calls = Vec::new();
        for n in 0.. {
            let d = self.out().join(n.to_string());
            if !d.exists() {
                break;
            }
            let argv = fs::read_to_string(d.join("argv")).unwrap();
            let stdin = fs::read_to_string(d.join("stdin")).unwrap();
            calls.push((argv.lines().map(str::to_string).collect(), stdin));
        }
        calls
    }

    fn envelope(&self) -> Envelope {
        Envelope::load(std::slice::from_ref(&self.control)).unwrap()
    }

    fn hold(&self, q: &Quarantine) -> Result<String, QuarantineError> {
        let mut env = self.envelope();
        let message = Message::new(&self.data);
        q.quarantine(&self.courier, &mut env, &message, "Virus found: Eicar")
    }
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn section_config(text: &str) -> Result<QuarantineConfig, ConfigError> {
    let config = ModulesConfig::parse(Path::new("m.conf"), text).unwrap();
    QuarantineConfig::from_config(&config)
}

#[test]
fn config_defaults_and_keys() {
    assert_eq!(section_config("").unwrap(), QuarantineConfig::default());
    assert_eq!(
        section_config("[quarantine]\nsiteid = 'x-1'\n")
            .unwrap()
            .dir,
        PathBuf::from(DEFAULT_DIR),
        "a section with only siteid keeps the other defaults (the reference loses them)"
    );
    let c = section_config(
        "[quarantine]\nsiteid = 'secret_9'\ndir = '/q'\ndays = 3\nnotify_recipient = 0\n\
         also_notify = 'admin@example.org'\nuser_release = False\n",
    )
    .unwrap();
    assert_eq!(
        c,
        QuarantineConfig {
            siteid: "secret_9".into(),
            dir: "/q".into(),
            days: 3,
            notify_recipient: false,
            also_notify: Some("admin@example.org".into()),
            user_release: false,
        }
    );
    assert_eq!(
        section_config("[quarantine]\nalso_notify = ''\n")
            .unwrap()
            .also_notify,
        None
    );
    for bad in [
        "siteid = 'a.b'",
        "siteid = ''",
        "siteid = 'a b'",
        "dir = 'relative'",
        "days = -1",
        "days = 'many'",
        "also_notify = '-oQ'",
        "frobnicate = 1",
    ] {
        let err = section_config(&format!("[quarantine]\n{bad}\n")).unwrap_err();
        assert!(err.to_string().contains("[quarantine]"), "{bad}: {err}");
    }
}

#[test]
fn matching_of_the_requester() {
    let plain = Recipient::new("a@e2e.test", "", "");
    assert!(requester_matches(&plain, "a@e2e.test"));
    assert!(requester_matches(&plain, "a@E2E.Test"));
    assert!(!requester_matches(&plain, "A@e2e.test"));
    assert!(!requester_matches(&plain, "b@e2e.test"));
    assert!(!requester_matches(&plain, ""));
    let orcpt = Recipient::new("a@e2e.test", "rfc822;alias@e2e.test", "");
    assert!(requester_matches(&orcpt, "alias@e2e.test"));
    assert!(requester_matches(&orcpt, "a@e2e.test"));
    let bare = Recipient::new("a@e2e.test", "alias@e2e.test", "");
    assert!(requester_matches(&bare, "alias@e2e.test"));
}

#[test]
fn quarantine_stores_notifies_then_marks_delivered() {
    let s = setup();
    let q = s.quarantine(s.config(), 0);
    let id = s.hold(&q).unwrap();
    assert!(store::is_valid_id(&id), "{id}");

    // the store: 0700 directory, 0600 copies of the files as they were, the index row
    let dir = s.tmp.path().join("q");
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        dir_names(&dir),
        [
            format!("C{id}"),
            format!("D{id}"),
            "index.sqlite".to_string()
        ]
    );
    for name in [format!("C{id}"), format!("D{id}"), "index.sqlite".into()] {
        let mode = fs::metadata(dir.join(&name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    assert_eq!(fs::read(dir.join(format!("D{id}"))).unwrap(), DATA);
    assert_eq!(fs::read(dir.join(format!("C{id}"))).unwrap(), CONTROL);
    let items = q.list().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].id, id);
    assert_eq!(items[0].sender, "sender@example.org");
    assert_eq!(items[0].explanation, "Virus found: Eicar");
    let addrs: Vec<&str> = items[0]
        .recipients
        .iter()
        .map(|(r, _)| r.addr.as_str())
        .collect();
    assert_eq!(addrs, ["a@e2e.test", "b@e2e.test"]);

    // the spool: every recipient delivered
    assert!(s.envelope().recipients().is_empty());

    // the notices: one per recipient, null sender, argv after --
    let sent = s.sent();
    assert_eq!(sent.len(), 2);
    for ((argv, msg), to) in sent.iter().zip(["a@e2e.test", "b@e2e.test"]) {
        assert_eq!(argv, &["-f", "", "--", to]);
        assert!(msg.starts_with(&format!(
            "From: Mail Quarantine System <postmaster@mail.example>\nTo: <{to}>\n\
             Subject: Quarantine notice\n"
        )));
        assert!(msg.contains("quarantined because:\nVirus found: Eicar\n"));
        assert!(msg.contains("come from Bad Guy <bad@example.org>, although"));
        assert!(msg.contains("subject was \"hello\n there\"."));
        assert!(msg.ends_with(&format!(
            "Quarantine release address:\nquarantine-local-{id}@mail.example\n"
        )));
        let expires = notice::expiration_date(items[0].time + 14 * 86_400);
        assert!(msg.contains(&format!("held in the quarantine until {expires}.\n")));
    }
}

#[test]
fn also_notify_gets_one_notice_and_may_be_the_release_address() {
    let s = setup();
    let config = QuarantineConfig {
        also_notify: Some("admin@example.org".into()),
        user_release: false,
        notify_recipient: false,
        ..s.config()
    };
    let q = s.quarantine(config, 0);
    s.hold(&q).unwrap();
    let sent = s.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, ["-f", "", "--", "admin@example.org"]);
    assert!(
        sent[0]
            .1
            .ends_with("Quarantine release address:\nadmin@example.org\n")
    );

    let s = setup();
    let config = QuarantineConfig {
        also_notify: Some("admin@example.org".into()),
        ..s.config()
    };
    s.hold(&s.quarantine(config, 0)).unwrap();
    let to: Vec<String> = s.sent().into_iter().map(|(a, _)| a[3].clone()).collect();
    assert_eq!(to, ["a@e2e.test", "b@e2e.test", "admin@example.org"]);
}

#[test]
fn on_failure_nothing_is_marked_delivered_and_nothing_is_kept() {
    // sendmail fails: the item is undone, the spool untouched
    let s = setup();
    let q = s.quarantine(s.config(), 75);
    let err = s.hold(&q).unwrap_err();
    assert!(err.to_string().contains("notice"), "{err}");
    assert_eq!(fs::read(&s.control).unwrap(), CONTROL);
    assert_eq!(s.envelope().recipients().len(), 2);
    assert_eq!(dir_names(&s.tmp.path().join("q")), ["index.sqlite"]);
    assert!(q.list().unwrap().is_empty());

    // the directory cannot be created: nothing sent, nothing marked
    let s = setup();
    fs::write(s.tmp.path().join("blocker"), b"").unwrap();
    let config = QuarantineConfig {
        dir: s.tmp.path().join("blocker/q"),
        ..s.config()
    };
    assert!(s.hold(&s.quarantine(config, 0)).is_err());
    assert!(s.sent().is_empty());
    assert_eq!(fs::read(&s.control).unwrap(), CONTROL);

    // a control file that vanished: the body copy is removed again
    let s = setup();
    let q = s.quarantine(s.config(), 0);
    let mut env = s.envelope();
    fs::remove_file(&s.control).unwrap();
    let message = Message::new(&s.data);
    assert!(q.quarantine(&s.courier, &mut env, &message, "x").is_err());
    assert_eq!(dir_names(&s.tmp.path().join("q")), Vec::<String>::new());
    assert!(s.sent().is_empty());
}

#[test]
fn release_once_per_recipient_and_failure_notices() {
    let s = setup();
    let q = s.quarantine(s.config(), 0);
    let id = s.hold(&q).unwrap();
    let notices = s.sent().len();

    // by the original recipient (ORCPT) of b
    assert_eq!(
        q.release(&s.courier, &id, "alias@e2e.test").unwrap(),
        ReleaseOutcome::Released
    );
    let sent = s.sent();
    assert_eq!(sent.len(), notices + 1);
    assert_eq!(sent[notices].0, ["-f", "", "--", "alias@e2e.test"]);
    assert_eq!(sent[notices].1.as_bytes(), DATA);

    // again: refused, with the failure notice to the requester
    let again = q.release(&s.courier, &id, "alias@e2e.test").unwrap();
    assert!(matches!(again, ReleaseOutcome::Refused(_)), "{again:?}");
    let sent = s.sent();
    assert_eq!(sent[notices + 1].0, ["-f", "", "--", "alias@e2e.test"]);
    assert!(
        sent[notices + 1]
            .1
            .contains(&format!("with id '{id}' from the quarantine"))
    );

    // a stranger, a bad id, an unknown id: refused
    for (req_id, who) in [
        (id.as_str(), "stranger@example.org"),
        ("../../etc/passwd", "a@e2e.test"),
        ("00000000000000000000000000000000", "a@e2e.test"),
    ] {
        let out = q.release(&s.courier, req_id, who).unwrap();
        assert!(matches!(out, ReleaseOutcome::Refused(_)), "{req_id} {who}");
    }
    // the other recipient still can, with the id in upper case as a mail client may write it
    assert_eq!(
        q.release(&s.courier, &id.to_uppercase(), "a@E2E.TEST")
            .unwrap(),
        ReleaseOutcome::Released
    );
    assert!(q.list().unwrap()[0].released());
    // a bounce to the release address
    assert_eq!(
        q.release(&s.courier, &id, "").unwrap(),
        ReleaseOutcome::Ignored
    );
    // an address that could be an option never reaches sendmail
    let before = s.sent().len();
    assert!(q.release(&s.courier, &id, "-oi").is_err());
    assert_eq!(s.sent().len(), before);
}

#[test]
fn a_failed_release_can_be_retried() {
    let s = setup();
    let id = s.hold(&s.quarantine(s.config(), 0)).unwrap();
    let failing = s.quarantine(s.config(), 75);
    assert!(failing.release(&s.courier, &id, "a@e2e.test").is_err());
    let q = s.quarantine(s.config(), 0);
    assert_eq!(
        q.release(&s.courier, &id, "a@e2e.test").unwrap(),
        ReleaseOutcome::Released
    );
}

#[test]
fn purge_by_age() {
    let s = setup();
    let q = s.quarantine(s.config(), 0);
    let id = s.hold(&q).unwrap();
    let time = q.list().unwrap()[0].time;
    let dir = s.tmp.path().join("q");
    assert_eq!(q.purge_at(time + 14 * 86_400 - 1).unwrap(), 0);
    assert_eq!(q.list().unwrap().len(), 1);
    assert_eq!(q.purge_at(time + 14 * 86_400).unwrap(), 1);
    assert!(q.list().unwrap().is_empty());
    assert_eq!(dir_names(&dir), ["index.sqlite"]);
    // then a release finds nothing
    let out = q.release(&s.courier, &id, "a@e2e.test").unwrap();
    assert!(matches!(out, ReleaseOutcome::Refused(_)));
    // days = 0: everything up to now
    let s = setup();
    let q = s.quarantine(
        QuarantineConfig {
            days: 0,
            ..s.config()
        },
        0,
    );
    s.hold(&q).unwrap();
    assert_eq!(q.purge().unwrap(), 1);
    // no directory: nothing to do
    let q = Quarantine::new(QuarantineConfig {
        dir: s.tmp.path().join("none"),
        ..s.config()
    });
    assert_eq!(q.purge().unwrap(), 0);
    assert!(q.list().unwrap().is_empty());
    assert!(!s.tmp.path().join("none").exists());
}

#[test]
fn the_copy_is_stored_before_notices_and_recipients_are_marked_last() {
    // A sendmail that records, at the time of each notice, the spool control file and the
    // quarantine directory: the item must be complete and indexed, the spool not yet marked.
    let s = setup();
    let seen = s.tmp.path().join("seen");
    fs::create_dir(&seen).unwrap();
    let prog = s.tmp.path().join("sendmail-observer");
    fs::write(
        &prog,
        format!(
            "#!/bin/sh\ncat >/dev/null\nn=$(ls {seen} | grep -c control)\ncp {control} {seen}/control.$n\n\
             ls {q} > {seen}/dir.$n\n",
            seen = seen.display(),
            control = s.control.display(),
            q = s.tmp.path().join("q").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&prog, fs::Permissions::from_mode(0o755)).unwrap();
    let q = Quarantine::new(s.config()).with_sendmail(Sendmail::new(prog));
    let id = s.hold(&q).unwrap();
    for n in 0..2 {
        assert_eq!(
            fs::read(seen.join(format!("control.{n}"))).unwrap(),
            CONTROL,
            "recipients were marked before notice {n}"
        );
        let dir = fs::read_to_string(seen.join(format!("dir.{n}"))).unwrap();
        assert_eq!(dir, format!("C{id}\nD{id}\nindex.sqlite\n"));
    }
    // and the index row was committed by then: a second connection sees it
    assert_eq!(q.list().unwrap()[0].id, id);
    // afterwards every recipient is marked, with one S record each
    let after = String::from_utf8(fs::read(&s.control).unwrap()).unwrap();
    assert_eq!(after.lines().filter(|l| l.starts_with('S')).count(), 2);
}
