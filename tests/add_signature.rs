//! The add_signature module through the real daemon: an authenticated sender's message is
//! wrapped in a multipart/mixed with the signature; everything else stays byte for byte.

mod common;

use std::path::{Path, PathBuf};

use common::Filter;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/spam")
        .join(name)
}

fn spool(f: &Filter, name: &str) -> PathBuf {
    let dir = f.localstatedir().join("tmp/sig");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let to = dir.join(name);
    std::fs::copy(data(name), &to).expect("copy fixture");
    to
}

fn start(domains: &str) -> Filter {
    Filter::start(
        "add_signature\n",
        &format!("[add_signature]\ndomains = {domains}\n"),
    )
}

#[test]
fn an_authenticated_sender_gets_the_signature_byte_preservingly() {
    let sig = data("signature.txt");
    let f = start(&format!("{{'example.com': '{}'}}", sig.display()));
    let msg = spool(&f, "signed.eml");
    // control-auth: i record bob@example.com
    let control = spool(&f, "control-auth");
    let original = std::fs::read(&msg).unwrap();
    assert_eq!(f.send(&msg, &[&control]), "200 Ok", "{}", f.stderr());
    let new = std::fs::read(&msg).unwrap();
    let text = String::from_utf8(new.clone()).expect("UTF-8 stays UTF-8");

    // CRLF file: CRLF throughout
    assert!(
        !new.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
        "{text:?}"
    );
    let (top, rest) = text.split_once("\r\n\r\n").unwrap();
    let boundary = top
        .strip_prefix("Content-Type: multipart/mixed; boundary=\"")
        .and_then(|t| t.split_once('"'))
        .map(|(b, _)| b.to_string())
        .unwrap_or_else(|| panic!("{top}"));
    assert!(boundary.starts_with("===============") && boundary.ends_with("=="));
    // The non-MIME fields, byte for byte (the 8-bit Subject too), in order.
    assert_eq!(
        top.split_once("\r\n").unwrap().1,
        "MIME-Version: 1.0\r\n\
         Received: from client.example ([::ffff:127.0.0.1])\r\n  by mail.e2e.test with ESMTP\r\n\
         From: Bob <bob@example.com>\r\n\
         To: e2e@e2e.test\r\n\
         Subject: Grüße aus Köln\r\n\
         Date: Wed, 25 Nov 2026 10:00:00 +0000"
    );
    // Part 1: the original MIME fields (Mime-Version not duplicated) and body.
    let part1 = format!(
        "--{boundary}\r\nMime-Version: 1.0\r\nContent-type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\nHallo, schöne Grüße!\r\n\r\n--{boundary}\r\n"
    );
    assert!(rest.starts_with(&part1), "{rest}");
    // Part 2: the signature, quoted-printable UTF-8.
    assert_eq!(
        &rest[part1.len()..],
        format!(
            "Content-Type: text/plain; charset=\"utf-8\"\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n\
             --=20\r\nBob Example\r\nExample GmbH, K=C3=B6ln\r\n\r\n--{boundary}--\r\n"
        )
    );
    assert!(new.len() > original.len());

    // Not authenticated: untouched.
    let msg = spool(&f, "signed.eml");
    let control = spool(&f, "control-plain");
    assert_eq!(f.send(&msg, &[&control]), "200 Ok", "{}", f.stderr());
    assert_eq!(std::fs::read(&msg).unwrap(), original);
}

#[test]
fn other_domains_are_untouched_and_an_unreadable_signature_tempfails() {
    let f = start("{'other.example': '/nonexistent/sig'}");
    let msg = spool(&f, "signed.eml");
    let control = spool(&f, "control-auth");
    assert_eq!(f.send(&msg, &[&control]), "200 Ok", "{}", f.stderr());
    assert_eq!(
        std::fs::read(&msg).unwrap(),
        std::fs::read(data("signed.eml")).unwrap()
    );
    drop(f);

    let f = start("{'example.com': '/nonexistent/sig'}");
    let msg = spool(&f, "signed.eml");
    let control = spool(&f, "control-auth");
    assert_eq!(
        f.send(&msg, &[&control]),
        "451 4.3.0 Temporary failure in add_signature, try again later"
    );
    assert!(
        f.wait_stderr("/nonexistent/sig", std::time::Duration::from_secs(5)),
        "{}",
        f.stderr()
    );
    assert_eq!(
        std::fs::read(&msg).unwrap(),
        std::fs::read(data("signed.eml")).unwrap()
    );
}
