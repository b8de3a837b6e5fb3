//! Spec §8.6 (the reference's `tests/test_xfilter.py`) and §8.8 items 3–4, adapted to
//! DECISIONS §8: rewrites keep every untouched byte, keep the file's line endings, and keep the
//! spool file's inode.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use mail_parser::MimeHeaders;
use rustfilter::courier::message::Message;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/queuefiles")
        .join(name)
}

fn copy(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    fs::copy(fixture(name), &path).unwrap();
    (dir, path)
}

fn with_content(data: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("D4711");
    fs::write(&path, data).unwrap();
    (dir, path)
}

fn ino(path: &Path) -> u64 {
    fs::metadata(path).unwrap().ino()
}

/// §8.6 step 1: reading and writing the message back raises nothing and changes nothing.
#[test]
fn iso_8859_2_round_trip() {
    let (_d, path) = copy("data-iso-8859-2");
    let original = fs::read(&path).unwrap();
    let inode = ino(&path);
    let mut m = Message::new(&path);
    let parsed = m.parsed_headers().unwrap();
    assert_eq!(parsed.subject(), Some("ISO-8859-2 test"));
    let content = m.bytes().unwrap().to_vec();
    m.replace(content).unwrap();
    assert_eq!(fs::read(&path).unwrap(), original);
    assert_eq!(ino(&path), inode);
}

/// §8.6 step 2 (bpo-27321): an 8-bit body without a Content-Transfer-Encoding header can be
/// written; the body bytes stay exactly as they were.
#[test]
fn eight_bit_body_without_cte() {
    let (_d, path) = copy("data-iso-8859-2");
    let original = fs::read(&path).unwrap();
    let body_start = original.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    assert!(
        original[body_start..].iter().any(|&b| b >= 0x80),
        "the fixture body is 8-bit"
    );
    let mut m = Message::new(&path);
    assert_eq!(m.remove_headers("Content-Transfer-Encoding").unwrap(), 1);
    // exactly the header line is gone; the ISO-8859-2 body is untouched
    let after = fs::read(&path).unwrap();
    let cte_line = b"Content-Transfer-Encoding: 8bit\n";
    let cte_at = original
        .windows(cte_line.len())
        .position(|w| w == cte_line)
        .unwrap();
    let mut exact = original[..cte_at].to_vec();
    exact.extend_from_slice(&original[cte_at + cte_line.len()..]);
    assert_eq!(after, exact);
    assert_eq!(after.len(), original.len() - cte_line.len());
    assert!(
        m.header_values("content-transfer-encoding")
            .unwrap()
            .is_empty()
    );
    // and the result still parses
    let bytes = m.bytes().unwrap();
    let reparsed = mail_parser::MessageParser::default().parse(bytes).unwrap();
    assert!(reparsed.body_text(0).is_some());
}

/// §8.8.3: a body without a final newline gets one.
#[test]
fn trailing_newline_added() {
    let (_d, path) = with_content(b"Subject: x\n\nno newline at end");
    let mut m = Message::new(&path);
    let content = m.bytes().unwrap().to_vec();
    m.replace(content).unwrap();
    assert_eq!(
        fs::read(&path).unwrap(),
        b"Subject: x\n\nno newline at end\n"
    );
}

/// §8.8.4 adapted: both `Received` and `received` go, CRLF stays CRLF, nothing else changes.
#[test]
fn crlf_received_removed() {
    let (_d, path) = with_content(
        b"Received: a\r\nSubject: x\r\nreceived: b\r\n\tfolded\r\nX: y\r\n\r\nbody\r\n",
    );
    let inode = ino(&path);
    let mut m = Message::new(&path);
    assert_eq!(m.remove_headers("Received").unwrap(), 2);
    assert_eq!(
        fs::read(&path).unwrap(),
        b"Subject: x\r\nX: y\r\n\r\nbody\r\n"
    );
    assert_eq!(ino(&path), inode);
    assert_eq!(m.header_values("subject").unwrap(), ["x"]);
}

/// Removing headers keeps the inode and every other byte (long Received lines are not
/// refolded, unlike the reference, §8.8.5).
#[test]
fn remove_keeps_inode_and_other_bytes() {
    let (dir, path) = copy("data-test1");
    let original = fs::read(&path).unwrap();
    let inode = ino(&path);
    let mut m = Message::new(&path);
    assert_eq!(m.header_values("Subject").unwrap(), ["test1"]);
    assert_eq!(m.remove_headers("Subject").unwrap(), 1);
    let after = fs::read(&path).unwrap();
    let expect = String::from_utf8(original)
        .unwrap()
        .replace("Subject: test1\n", "");
    assert_eq!(after, expect.as_bytes());
    assert_eq!(ino(&path), inode);
    // the temp file is gone
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// Nothing to remove: the file is not written at all.
#[test]
fn byte_identical_when_nothing_is_removed() {
    for name in ["data-test1", "data-iso-8859-2", "data-attachments"] {
        let (_d, path) = copy(name);
        let before = fs::metadata(&path).unwrap();
        let mut m = Message::new(&path);
        assert_eq!(m.remove_headers("X-Not-There").unwrap(), 0);
        assert_eq!(fs::read(&path).unwrap(), fs::read(fixture(name)).unwrap());
        let after = fs::metadata(&path).unwrap();
        assert_eq!(
            (after.ino(), after.mtime(), after.mtime_nsec()),
            (before.ino(), before.mtime(), before.mtime_nsec())
        );
    }
}

#[test]
fn fixture_headers() {
    let m = Message::new(&fixture("data-test1"));
    let names: Vec<String> = m
        .headers()
        .unwrap()
        .iter()
        .map(|h| h.name.to_string())
        .collect();
    assert_eq!(
        names,
        ["Received", "To", "Subject", "From", "Message-ID", "Date"]
    );
    let received = &m.header_values("received").unwrap()[0];
    assert_eq!(received.lines().count(), 4);
    assert!(received.starts_with("from localhost (localhost [127.0.0.1])\n"));

    let m = Message::new(&fixture("data-attachments"));
    assert_eq!(
        m.header_values("delivered-to").unwrap(),
        ["gordon@dragonsdawn.net"]
    );
    let bytes = m.bytes().unwrap();
    let parsed = mail_parser::MessageParser::default().parse(bytes).unwrap();
    let names: Vec<&str> = parsed
        .attachments()
        .filter_map(|a| a.attachment_name())
        .collect();
    assert_eq!(names, ["test.zip"]);
    let zip = parsed.attachments().next().unwrap().contents();
    assert_eq!(&zip[..4], b"PK\x03\x04");
}
