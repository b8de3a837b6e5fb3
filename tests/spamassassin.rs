//! The spamassassin module through the real daemon and the real spamc/spamd (the test spamd of
//! tests/services/spamd.sh, on /tmp/rustfilter-spamd/spamd.sock).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Filter;

const SPAMD_SOCKET: &str = "/tmp/rustfilter-spamd/spamd.sock";
const UNAVAILABLE: &str = "451 4.3.0 Spam scanner unavailable, try again later";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/spam")
        .join(name)
}

/// The test spamd must be running; say how to start it otherwise.
fn require_spamd() {
    let out = Command::new("spamc")
        .args(["-x", "-t", "10", "-U", SPAMD_SOCKET, "-K"])
        .output();
    let why = match &out {
        Ok(o) if o.status.success() && o.stdout.starts_with(b"SPAMD/") => return,
        Ok(o) => format!(
            "spamc -K: {}, {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("cannot run spamc: {e}"),
    };
    panic!(
        "the test spamd does not answer on {SPAMD_SOCKET} ({why}): run \
         `tests/services/spamd.sh start` (make test does), after tests/services/install-deps.sh"
    );
}

/// Copy a fixture into the daemon's spool (modules edit spool files).
fn spool(f: &Filter, name: &str) -> PathBuf {
    let dir = f.localstatedir().join("tmp/sa");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let to = dir.join(name);
    std::fs::copy(data(name), &to).expect("copy fixture");
    to
}

fn start(settings: &str) -> Filter {
    Filter::start(
        "spamassassin\n",
        &format!("[spamassassin]\nsocket_path = '{SPAMD_SOCKET}'\n{settings}"),
    )
}

/// The header block of a message, as text.
fn headers(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.split_once("\n\n")
        .map(|(h, _)| h.to_string())
        .unwrap_or_default()
}

/// The first `score=` number in `text` (GTUBE scores 1000, give or take the informational rules).
fn score(text: &str) -> f64 {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("score="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[test]
fn gtube_is_rejected_with_the_spam_status() {
    require_spamd();
    let f = start("");
    let msg = spool(&f, "gtube.eml");
    let control = spool(&f, "control-plain");
    let reply = f.send(&msg, &[&control]);
    assert!(
        reply.starts_with("554 Mail rejected - spam detected: Yes, score=")
            && score(&reply) >= 900.0,
        "{reply}\n{}",
        f.stderr()
    );
    assert!(reply.contains("GTUBE"), "{reply}");
    // the folding's line break is gone, its tab stays
    assert!(!reply.contains('\n'), "{reply:?}");
    assert_eq!(
        std::fs::read(&msg).unwrap(),
        std::fs::read(data("gtube.eml")).unwrap()
    );
}

#[test]
fn gtube_under_reject_score_is_annotated_not_rejected() {
    require_spamd();
    let f = start("reject_score = 2000\n");
    let msg = spool(&f, "gtube.eml");
    let control = spool(&f, "control-plain");
    assert_eq!(f.send(&msg, &[&control]), "200 Ok", "{}", f.stderr());
    let new = std::fs::read(&msg).unwrap();
    let head = headers(&new);
    assert!(head.contains("X-Spam-Flag: YES"), "{head}");
    assert!(head.contains("X-Spam-Status: Yes, score="), "{head}");
    assert!(score(&head) >= 900.0, "{head}");
    // the Debian default (report_safe) attaches the original: its text is there
    assert!(String::from_utf8_lossy(&new).contains("GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL"));

    // a reject_score at or below the score rejects
    drop(f);
    let f = start("reject_score = 500.0\n");
    let msg = spool(&f, "gtube.eml");
    let control = spool(&f, "control-plain");
    let reply = f.send(&msg, &[&control]);
    assert!(
        reply.starts_with("554 Mail rejected - spam detected: Yes,"),
        "{reply}"
    );
}

#[test]
fn ham_passes_and_gets_the_spamassassin_headers_with_the_original_intact() {
    require_spamd();
    let f = start("");
    let msg = spool(&f, "ham.eml");
    let control = spool(&f, "control-plain");
    let original = std::fs::read(&msg).unwrap();
    assert_eq!(f.send(&msg, &[&control]), "200 Ok", "{}", f.stderr());
    let new = std::fs::read(&msg).unwrap();
    let head = headers(&new);
    assert!(head.contains("X-Spam-Status: No, score="), "{head}");
    assert!(head.contains("X-Spam-Level:"), "{head}");
    assert!(!head.contains("X-Spam-Flag: YES"), "{head}");
    // SpamAssassin puts its fields first and keeps the original bytes after them
    assert!(
        new.ends_with(&original),
        "{}",
        String::from_utf8_lossy(&new)
    );
    // CRLF messages stay CRLF
    let msg = spool(&f, "signed.eml");
    let original = std::fs::read(&msg).unwrap();
    assert_eq!(f.send(&msg, &[&control]), "200 Ok", "{}", f.stderr());
    let new = std::fs::read(&msg).unwrap();
    assert!(new.ends_with(&original));
    assert!(!new.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
}

#[test]
fn spamd_unreachable_tempfails_with_the_fixed_text() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("nobody-listens.sock");
    let f = Filter::start(
        "spamassassin\n",
        &format!("[spamassassin]\nsocket_path = '{}'\n", nowhere.display()),
    );
    let msg = spool(&f, "ham.eml");
    let control = spool(&f, "control-plain");
    assert_eq!(f.send(&msg, &[&control]), UNAVAILABLE);
    assert!(
        f.wait_stderr(
            "spamc exited with status",
            std::time::Duration::from_secs(5)
        ),
        "{}",
        f.stderr()
    );
    assert_eq!(
        std::fs::read(&msg).unwrap(),
        std::fs::read(data("ham.eml")).unwrap()
    );
    drop(f);

    // a TCP port where nothing listens
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let f = Filter::start(
        "spamassassin\n",
        &format!("[spamassassin]\nspamd_host = '127.0.0.1'\nspamd_port = {port}\n"),
    );
    let msg = spool(&f, "ham.eml");
    let control = spool(&f, "control-plain");
    assert_eq!(f.send(&msg, &[&control]), UNAVAILABLE);
    drop(f);

    // spamc itself missing
    let f = Filter::start(
        "spamassassin\n",
        "[spamassassin]\nspamc_path = '/nonexistent/spamc'\n",
    );
    let msg = spool(&f, "ham.eml");
    let control = spool(&f, "control-plain");
    assert_eq!(f.send(&msg, &[&control]), UNAVAILABLE);
}

#[test]
fn a_message_over_max_msg_size_is_not_scanned() {
    // Nothing listens on the socket: a scan would tempfail, a skip passes.
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("nobody-listens.sock");
    let f = Filter::start(
        "spamassassin\n",
        &format!(
            "[spamassassin]\nsocket_path = '{}'\nmax_msg_size = 100\n",
            nowhere.display()
        ),
    );
    let msg = spool(&f, "gtube.eml");
    let control = spool(&f, "control-plain");
    assert_eq!(f.send(&msg, &[&control]), "200 Ok", "{}", f.stderr());
    assert_eq!(
        std::fs::read(&msg).unwrap(),
        std::fs::read(data("gtube.eml")).unwrap()
    );
}
