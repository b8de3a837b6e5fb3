//! The attachments module in the real daemon over its socket: clean mail passes, a blocked
//! name or archive entry is rejected, a cut-off MIME structure tempfails without leaking
//! details into the reply.

#[path = "common/base64.rs"]
mod base64;
mod common;

use std::path::PathBuf;
use std::time::Duration;

use base64::base64_lines;
use common::Filter;

const BLOCKED: &str = "554 The extension of the attached file is blacklisted";
const TEMPFAIL: &str = "451 4.3.0 Temporary failure in attachments, try again later";

/// A stored-only ZIP (local headers, central directory, end record); CRCs are not checked.
fn zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut cd = Vec::new();
    for (name, content) in members {
        let offset = out.len() as u32;
        let mut fixed = Vec::new();
        fixed.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, stored, time, date
        fixed.extend_from_slice(&[0; 4]); // crc
        fixed.extend_from_slice(&(content.len() as u32).to_le_bytes());
        fixed.extend_from_slice(&(content.len() as u32).to_le_bytes());
        fixed.extend_from_slice(&(name.len() as u16).to_le_bytes());
        fixed.extend_from_slice(&[0, 0]); // extra
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&fixed);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(content);
        cd.extend_from_slice(b"PK\x01\x02\x14\x00");
        cd.extend_from_slice(&fixed);
        cd.extend_from_slice(&[0; 10]); // comment, disk, attributes
        cd.extend_from_slice(&offset.to_le_bytes());
        cd.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&cd);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

/// A message as Courier spools it (CRLF), with one base64 attachment.
fn message(file_name: &str, content: &[u8]) -> Vec<u8> {
    format!(
        "Received: from client.example ([::ffff:127.0.0.1])\r\n  by mail.e2e.test with ESMTP\r\n\
         From: Alice <alice@example.org>\r\nTo: e2e@e2e.test\r\nSubject: files\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_b0\"\r\n\r\n\
         --=_b0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHere you are.\r\n\
         --=_b0\r\nContent-Type: application/octet-stream; name=\"{file_name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"{file_name}\"\r\n\r\n{}\r\n--=_b0--\r\n",
        base64_lines(content, "\r\n")
    )
    .into_bytes()
}

fn spool_data(f: &Filter, name: &str, data: &[u8]) -> PathBuf {
    let dir = f.localstatedir().join("tmp/att");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write data file");
    path
}

#[test]
fn attachments_in_the_daemon() {
    let f = Filter::start("attachments\n", "[attachments]\n");
    let control = f.spool("m", "control-plain");
    let send = |name: &str, data: &[u8]| f.send(&spool_data(&f, name, data), &[&control]);

    let clean = message("report.pdf", b"%PDF-1.4 not really");
    assert_eq!(send("clean", &clean), "200 Ok", "{}", f.stderr());

    assert_eq!(send("exe", &message("setup.exe", b"MZ\x90\0")), BLOCKED);

    let archive = zip(&[("docs/readme.txt", b"hi"), ("docs/run.bat", b"@echo off")]);
    assert_eq!(send("zip", &message("docs.zip", &archive)), BLOCKED);
    let nested = zip(&[("inner.zip", &zip(&[("tools/x.vbs", b"")]))]);
    assert_eq!(send("zip-in-zip", &message("bundle.zip", &nested)), BLOCKED);
    let clean_zip = zip(&[("docs/readme.txt", b"hi")]);
    assert_eq!(
        send("zip-clean", &message("docs.zip", &clean_zip)),
        "200 Ok"
    );

    // The connection dropped mid-attachment: the closing boundary never came.
    let cut = &clean[..clean.len() - 40];
    let cut_path = spool_data(&f, "cut", cut);
    assert_eq!(f.send(&cut_path, &[&control]), TEMPFAIL);
    // The detail is in the log, not in the reply.
    let needle = format!("{}: broken MIME structure: ", cut_path.display());
    assert!(
        f.wait_stderr(&needle, Duration::from_secs(5)),
        "{}",
        f.stderr()
    );
    assert!(
        f.stderr().contains("closing boundary is missing"),
        "{}",
        f.stderr()
    );
}
