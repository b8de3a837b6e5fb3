//! Spec §8.3 (the reference's `tests/test_control.py`) on the four control fixtures in
//! tests/data/queuefiles, plus §8.8 items 6 and 7. Every test works on a copy in a temp dir.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rustfilter::courier::control::{ControlData, Envelope, Recipient, decode_value};

const S: &str = "root@ascension.private.dragonsdawn.net";
const F: &str = "dns; localhost (localhost [127.0.0.1])";
const A: &str = "testcontrol@ascension.private.dragonsdawn.net";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/queuefiles")
        .join(name)
}

/// A copy of the fixture in a fresh temp dir (kept alive by the returned guard).
fn copy(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    fs::copy(fixture(name), &path).unwrap();
    (dir, path)
}

fn r(addr: &str, orig: &str, dsn: &str) -> Recipient {
    Recipient::new(addr, orig, dsn)
}

struct Case {
    file: &'static str,
    m: &'static str,
    e: &'static str,
    p: &'static str,
    w: &'static str,
    rcpts: Vec<Recipient>,
}

fn cases() -> Vec<Case> {
    let dup = (
        "000AF5DB.46B0E301.0000778F",
        "1186602369",
        "1186026369",
        "1186011969",
    );
    vec![
        Case {
            file: "control-xalias",
            m: "000AF5D6.46A974C9.00002706",
            e: "1186115401",
            p: "1185539401",
            w: "1185525001",
            rcpts: vec![r(
                "\".xalias/testalias@ascension+2eprivate+2edragonsdawn+2enet\"@ascension.private.dragonsdawn.net",
                "rfc822;testalias@ascension.private.dragonsdawn.net",
                "",
            )],
        },
        Case {
            file: "control-duplicate",
            m: dup.0,
            e: dup.1,
            p: dup.2,
            w: dup.3,
            rcpts: vec![
                r("gordon@ascension.private.dragonsdawn.net", "", ""),
                r(
                    "gordon@ascension.private.dragonsdawn.net",
                    "rfc822;postmaster@ascension.private.dragonsdawn.net",
                    "",
                ),
            ],
        },
        Case {
            file: "control-ldapalias",
            m: "000AF5D6.46B75799.00003C4B",
            e: "1187025433",
            p: "1186449433",
            w: "1186435033",
            rcpts: vec![
                r("rob@ascension.private.dragonsdawn.net", "", "N"),
                r("gordon@ascension.private.dragonsdawn.net", "", "N"),
            ],
        },
        Case {
            file: "control-iso-8859-2",
            m: dup.0,
            e: dup.1,
            p: dup.2,
            w: dup.3,
            rcpts: vec![r(
                "(malformed utf8):t%EBst-is%F6-8859@ascension.private.dragonsdawn.net",
                "",
                "",
            )],
        },
    ]
}

fn expected_data(case: &Case, rcpts: Vec<Recipient>) -> ControlData {
    ControlData {
        sender: S.to_string(),
        senders_mta: F.to_string(),
        envid: Some(String::new()),
        message_id: Some(case.m.to_string()),
        auth_user: None,
        dsn_ret: Some(String::new()),
        expires: Some(case.e.to_string()),
        fax_expires: Some(case.p.to_string()),
        warn_time: Some(case.w.to_string()),
        vhost: None,
        cancelled: None,
        security: String::new(),
        source: Some("local".to_string()),
        warned: false,
        eight_bit: false,
        eight_bit_headers: false,
        verp: false,
        suppress_backscatter: false,
        recipients: rcpts,
    }
}

fn plus(rcpts: &[Recipient], extra: Recipient) -> Vec<Recipient> {
    let mut v = rcpts.to_vec();
    v.push(extra);
    v
}

#[test]
fn getters() {
    for case in cases() {
        let (_dir, path) = copy(case.file);
        let env = Envelope::load(std::slice::from_ref(&path)).unwrap();
        // 1. get_lines
        assert_eq!(env.values(b's'), [S], "{}", case.file);
        assert_eq!(env.values(b'f'), [F], "{}", case.file);
        assert_eq!(env.values(b'e'), [""], "{}", case.file);
        // 2.–4.
        assert_eq!(env.senders_mta(), Some(F));
        assert_eq!(
            env.client_ip(),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)))
        );
        assert_eq!(env.client_ip().unwrap().to_string(), "127.0.0.1");
        assert_eq!(env.sender(), Some(S));
        assert_eq!(env.auth_user(), None);
        assert_eq!(env.message_id(), Some(case.m));
        // 5.–6.
        let addrs: Vec<String> = case.rcpts.iter().map(|r| r.addr.clone()).collect();
        let got: Vec<String> = env.recipients().into_iter().map(|r| r.addr).collect();
        assert_eq!(got, addrs, "{}", case.file);
        assert_eq!(env.recipients(), case.rcpts, "{}", case.file);
        // 7. the whole map, exactly
        assert_eq!(
            env.control_data(),
            expected_data(&case, case.rcpts.clone()),
            "{}",
            case.file
        );
    }
}

/// The state after an edit is the same in memory and for a fresh reader of the file.
fn check(env: &Envelope, path: &Path, expect: &[Recipient], what: &str) {
    assert_eq!(env.recipients(), expect, "{what} (in memory)");
    let reread = Envelope::load(&[path.to_path_buf()]).unwrap();
    assert_eq!(reread.recipients(), expect, "{what} (re-read)");
    assert_eq!(
        reread.control_data().recipients,
        expect,
        "{what} (control data)"
    );
}

#[test]
fn add_recipient() {
    for case in cases() {
        // 8.
        let (_dir, path) = copy(case.file);
        let mut env = Envelope::load(std::slice::from_ref(&path)).unwrap();
        env.add_recipient(&r(A, "", "")).unwrap();
        check(&env, &path, &plus(&case.rcpts, r(A, "", "")), case.file);
        // 9.
        let (_dir, path) = copy(case.file);
        let mut env = Envelope::load(std::slice::from_ref(&path)).unwrap();
        let t = r(A, "testcontrol@dragonsdawn.net", "N");
        env.add_recipient(&t).unwrap();
        check(&env, &path, &plus(&case.rcpts, t), case.file);
    }
}

#[test]
fn add_and_remove_by_address_twice() {
    // 10.
    for case in cases() {
        let (_dir, path) = copy(case.file);
        let mut env = Envelope::load(std::slice::from_ref(&path)).unwrap();
        for round in 1..=2 {
            let what = format!("{} round {round}", case.file);
            env.add_recipient(&r(A, "", "")).unwrap();
            check(&env, &path, &plus(&case.rcpts, r(A, "", "")), &what);
            assert!(env.remove_recipient_addr(A).unwrap(), "{what}");
            check(&env, &path, &case.rcpts, &what);
        }
        // the I/S records accumulated, one pair per removal, with increasing indexes
        let reread = Envelope::load(std::slice::from_ref(&path)).unwrap();
        let removed: Vec<&str> = reread
            .values(b'I')
            .into_iter()
            .filter(|v| v.ends_with("R 250 Ok - Removed by rustfilter"))
            .collect();
        assert_eq!(removed.len(), 2, "{}", case.file);
        assert_ne!(removed[0], removed[1]);
        assert!(!env.remove_recipient_addr(A).unwrap());
    }
}

#[test]
fn add_and_remove_triple_twice() {
    // 11.
    let t = r(A, "testcontrol@dragonsdawn.net", "N");
    for case in cases() {
        let (_dir, path) = copy(case.file);
        let mut env = Envelope::load(std::slice::from_ref(&path)).unwrap();
        for round in 1..=2 {
            let what = format!("{} round {round}", case.file);
            env.add_recipient(&t).unwrap();
            check(&env, &path, &plus(&case.rcpts, t.clone()), &what);
            assert!(env.remove_recipient(&t).unwrap(), "{what}");
            check(&env, &path, &case.rcpts, &what);
        }
    }
}

#[test]
fn removal_records_use_courier_numbering() {
    let (_dir, path) = copy("control-duplicate");
    let mut env = Envelope::load(std::slice::from_ref(&path)).unwrap();
    // the second gordon (with the postmaster ORCPT) is recipient #1
    let second = r(
        "gordon@ascension.private.dragonsdawn.net",
        "rfc822;postmaster@ascension.private.dragonsdawn.net",
        "",
    );
    assert!(env.remove_recipient(&second).unwrap());
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("\nI1 R 250 Ok - Removed by rustfilter\nS1 "),
        "{text}"
    );
    assert!(text.ends_with('\n'));
    // removing by address takes the first undelivered one: #0
    assert!(
        env.remove_recipient_addr("gordon@ascension.private.dragonsdawn.net")
            .unwrap()
    );
    assert!(
        fs::read_to_string(&path)
            .unwrap()
            .contains("\nI0 R 250 Ok - Removed by rustfilter\nS0 ")
    );
    assert!(env.recipients().is_empty());
    assert!(Envelope::load(&[path]).unwrap().recipients().is_empty());
}

#[test]
fn ldapalias_new_recipient_continues_numbering() {
    // three groups (0..2) exist; the added one is #3
    let (_dir, path) = copy("control-ldapalias");
    let mut env = Envelope::load(std::slice::from_ref(&path)).unwrap();
    env.add_recipient(&r(A, "", "")).unwrap();
    assert!(env.remove_recipient_addr(A).unwrap());
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("\nI3 R 250 Ok - Removed by rustfilter\nS3 "),
        "{text}"
    );
}

/// §8.8.6: with two control files each holding an `s` record, all values are returned (the
/// reference's `max` bug is moot: `first` is what callers use).
#[test]
fn values_across_files() {
    let (_d1, a) = copy("control-duplicate");
    let (_d2, b) = copy("control-xalias");
    fs::write(
        &b,
        fs::read_to_string(&b).unwrap().replace("sroot@", "sother@"),
    )
    .unwrap();
    let env = Envelope::load(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(
        env.values(b's'),
        [S, "other@ascension.private.dragonsdawn.net"]
    );
    assert_eq!(env.sender(), Some(S));
    // recipients of both files; control data scalars from the first file only
    let data = env.control_data();
    assert_eq!(data.sender, S);
    assert_eq!(
        data.message_id.as_deref(),
        Some("000AF5DB.46B0E301.0000778F")
    );
    assert_eq!(data.recipients.len(), 3);
    // an added recipient goes to the last file
    let mut env = env;
    env.add_recipient(&r(A, "", "")).unwrap();
    assert!(
        fs::read_to_string(&b)
            .unwrap()
            .ends_with(&format!("r{A}\nR\nN\n"))
    );
    assert!(!fs::read_to_string(&a).unwrap().contains(A));
}

/// §8.8.7: an `r` value of ` \xff@x ` decodes to `(malformed utf8):%FF@x`.
#[test]
fn malformed_bytes() {
    assert_eq!(decode_value(b" \xff@x "), "(malformed utf8):%FF@x");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("C1");
    fs::write(&path, b"s\nr \xff@x \nR\nN\n").unwrap();
    let env = Envelope::load(&[path]).unwrap();
    assert_eq!(env.recipients(), [r("(malformed utf8):%FF@x", "", "")]);
}
