//! add_signature — append a per-domain signature to mail from authenticated senders (spec §7.1
//! with DECISIONS.md §8), by wrapping the message in a new `multipart/mixed`: part 1 is the
//! original content, part 2 the signature as quoted-printable UTF-8 text.
//!
//! The new message is built from the original bytes: the top level gets `Content-Type:
//! multipart/mixed; boundary="…"` and `MIME-Version: 1.0`, then every original header field
//! that is not a MIME field, byte for byte (no refolding, 8-bit values kept); part 1 gets the
//! original MIME fields (`MIME-Version` and every `Content-*` field, names matched
//! case-insensitively) and the original body bytes. The file's line-ending style (CRLF or LF)
//! is used for every new line.
//!
//! Differences from the reference, on purpose: MIME fields are recognized case-insensitively
//! and include every `Content-*` field (e.g. `Content-Language`, `Content-ID`), so no
//! `MIME-Version`/`Content-Type` is duplicated at the top level; raw 8-bit header values work;
//! nothing is refolded; the signature part has no `MIME-Version` field; domains compare
//! case-insensitively (DECISIONS §7); an unreadable signature file is logged and tempfails
//! (the reference's error escaped: no decision); a signature file that is not UTF-8 is
//! converted lossily (logged).

use std::fs::File;
use std::io::Read;

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::courier::message::header_layout;
use crate::filter::{Context, Filter, FilterError, FilterResult, Verdict};

/// The largest signature file read.
const MAX_SIGNATURE_BYTES: u64 = 1024 * 1024;

pub struct AddSignature {
    /// Domain (as configured) → signature file.
    domains: Vec<(String, String)>,
}

pub fn build(sec: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    let domains = sec.string_map("domains")?.unwrap_or_else(|| {
        vec![(
            "example.com".to_string(),
            "/etc/courier/signatures/example.com".to_string(),
        )]
    });
    super::initialized("add_signature");
    Ok(Box::new(AddSignature { domains }))
}

/// The domain part as the reference takes it: `''` without `@`, else the text between the
/// first and the second `@`.
pub fn auth_domain(auth: &str) -> &str {
    auth.split('@').nth(1).unwrap_or("")
}

impl AddSignature {
    /// The signature file for this authenticated user, if any.
    pub fn signature_file(&self, auth: &str) -> Option<&str> {
        let domain = auth_domain(auth);
        self.domains
            .iter()
            .find(|(d, _)| d == domain)
            .or_else(|| {
                self.domains
                    .iter()
                    .find(|(d, _)| d.eq_ignore_ascii_case(domain))
            })
            .map(|(_, f)| f.as_str())
    }
}

/// Whether a header field name is a MIME field that describes the content (RFC 2045 reserves
/// the `Content-` prefix for them), so that it belongs to part 1.
pub fn is_mime_field(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"MIME-Version")
        || (name.len() > 8 && name[..8].eq_ignore_ascii_case(b"Content-"))
}

/// The file's line ending: that of its first line (LF for a file without one).
pub fn line_ending(data: &[u8]) -> &'static [u8] {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && data[i - 1] == b'\r' => b"\r\n",
        _ => b"\n",
    }
}

/// Quoted-printable (RFC 2045 §6.7) of `text`, lines ending with `eol`, at most 76
/// characters each.
pub fn quoted_printable(text: &[u8], eol: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(text.len() * 3 / 2 + 16);
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    for (n, line) in lines.iter().enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut col = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let literal = matches!(b, 33..=60 | 62..=126) || (matches!(b, b' ' | b'\t') && !last);
            let width = if literal { 1 } else { 3 };
            // A soft break ("=" + eol) keeps every line within 76 characters.
            if col + width > 75 && !(last && col + width <= 76) {
                out.push(b'=');
                out.extend_from_slice(eol);
                col = 0;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
            col += width;
        }
        if n + 1 < lines.len() {
            out.extend_from_slice(eol);
        }
    }
    out
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// 64 random bits (the kernel's generator; time and pid if that fails).
fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
    {
        return u64::from_ne_bytes(buf);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// A boundary of the reference's form (`===============<digits>==`) that occurs nowhere in
/// `parts` (so no line of the content can be taken for a delimiter).
pub fn boundary_for(parts: &[&[u8]], mut random: impl FnMut() -> u64) -> String {
    loop {
        let b = format!("==============={:020}==", random());
        if !parts.iter().any(|p| contains_ignore_case(p, b.as_bytes())) {
            return b;
        }
    }
}

/// The signed message: `data` wrapped in a multipart/mixed with `signature` as part 2.
pub fn wrap(data: &[u8], signature: &str, boundary_random: impl FnMut() -> u64) -> Vec<u8> {
    let eol = line_ending(data);
    let qp = quoted_printable(signature.as_bytes(), eol);
    let boundary = boundary_for(&[data, &qp], boundary_random);
    let (fields, body_start) = header_layout(data);

    let mut out = Vec::with_capacity(data.len() + qp.len() + 512);
    let line = |out: &mut Vec<u8>, text: &[u8]| {
        out.extend_from_slice(text);
        out.extend_from_slice(eol);
    };
    let field = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(bytes);
        // The last field may end the file without a line ending.
        if !bytes.ends_with(b"\n") {
            out.extend_from_slice(eol);
        }
    };
    line(
        &mut out,
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"").as_bytes(),
    );
    line(&mut out, b"MIME-Version: 1.0");
    for f in fields
        .iter()
        .filter(|f| !is_mime_field(&data[f.name.clone()]))
    {
        field(&mut out, &data[f.whole.clone()]);
    }
    out.extend_from_slice(eol);
    // Part 1: the original MIME fields and body. The line ending before each delimiter
    // belongs to the delimiter, so the body keeps its exact bytes.
    line(&mut out, format!("--{boundary}").as_bytes());
    for f in fields
        .iter()
        .filter(|f| is_mime_field(&data[f.name.clone()]))
    {
        field(&mut out, &data[f.whole.clone()]);
    }
    out.extend_from_slice(eol);
    out.extend_from_slice(&data[body_start..]);
    out.extend_from_slice(eol);
    // Part 2: the signature.
    line(&mut out, format!("--{boundary}").as_bytes());
    line(&mut out, b"Content-Type: text/plain; charset=\"utf-8\"");
    line(&mut out, b"Content-Transfer-Encoding: quoted-printable");
    out.extend_from_slice(eol);
    out.extend_from_slice(&qp);
    out.extend_from_slice(eol);
    line(&mut out, format!("--{boundary}--").as_bytes());
    out
}

/// The signature file's text (bounded; not UTF-8 → converted lossily, logged).
fn read_signature(path: &str) -> Result<String, FilterError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_SIGNATURE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| FilterError::new(format!("cannot read the signature file {path}: {e}")))?;
    if bytes.len() as u64 > MAX_SIGNATURE_BYTES {
        return Err(FilterError::new(format!(
            "the signature file {path} is larger than {MAX_SIGNATURE_BYTES} bytes"
        )));
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            log::warn!("add_signature: {path} is not UTF-8; invalid bytes replaced");
            Ok(String::from_utf8_lossy(e.as_bytes()).into_owned())
        }
    }
}

impl Filter for AddSignature {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let Some(auth) = ctx.envelope.auth_user().filter(|a| !a.is_empty()) else {
            return Ok(Verdict::Continue);
        };
        let Some(path) = self.signature_file(auth) else {
            return Ok(Verdict::Continue);
        };
        let signature = read_signature(path).inspect_err(|e| log::error!("add_signature: {e}"))?;
        if signature.is_empty() {
            return Ok(Verdict::Continue);
        }
        let new = wrap(ctx.message.bytes()?, &signature, random_u64);
        ctx.message
            .replace(new)
            .map_err(|e| FilterError::new(format!("cannot rewrite the message: {e}")))?;
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::testutil::{Fixture, build as build_module};

    const B: &str = "===============00000000000000000007==";

    fn seven() -> u64 {
        7
    }

    #[test]
    fn domain_selection() {
        let f = AddSignature {
            domains: vec![
                ("example.com".into(), "/sig/example".into()),
                ("".into(), "/sig/bare".into()),
            ],
        };
        assert_eq!(f.signature_file("bob@example.com"), Some("/sig/example"));
        assert_eq!(f.signature_file("bob@EXAMPLE.com"), Some("/sig/example"));
        assert_eq!(f.signature_file("bob"), Some("/sig/bare"));
        assert_eq!(f.signature_file("bob@other.example"), None);
        // the text between the first and second '@'
        assert_eq!(auth_domain("a@example.com@x"), "example.com");
        assert_eq!(auth_domain("a@"), "");
        assert_eq!(f.signature_file("a@"), Some("/sig/bare"));
    }

    #[test]
    fn plain_lf_message_exactly() {
        let data = b"Received: from x\n  by y\nFrom: a@example.com\nSubject: hi\n\ntest\n";
        let out = wrap(data, "-- \nBob\n", seven);
        let expect = format!(
            "Content-Type: multipart/mixed; boundary=\"{B}\"\nMIME-Version: 1.0\n\
             Received: from x\n  by y\nFrom: a@example.com\nSubject: hi\n\n\
             --{B}\n\ntest\n\n\
             --{B}\nContent-Type: text/plain; charset=\"utf-8\"\n\
             Content-Transfer-Encoding: quoted-printable\n\n--=20\nBob\n\n--{B}--\n"
        );
        assert_eq!(String::from_utf8_lossy(&out), expect);
        let parsed = mail_parser::MessageParser::default()
            .parse(&out[..])
            .unwrap();
        assert_eq!(parsed.body_text(0).as_deref(), Some("test\n"));
        assert_eq!(parsed.attachment_count() + parsed.text_body.len(), 2);
    }

    #[test]
    fn crlf_8bit_and_mime_fields_case_insensitive() {
        let data = "Received: from x\r\n\tby y\r\nSubject: Grüße aus Köln\r\nMime-Version: 1.0\r\nContent-type: text/plain; charset=utf-8\r\nContent-Language: de\r\nContent-Transfer-Encoding: 8bit\r\nTo: b@example.org\r\n\r\nHallo Grüße\r\n"
            .as_bytes();
        let out = wrap(data, "Grüße, Bob\n", seven);
        // CRLF everywhere: no bare LF
        assert!(!out.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        let text = String::from_utf8(out.clone()).unwrap();
        let (top, rest) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            top,
            format!(
                "Content-Type: multipart/mixed; boundary=\"{B}\"\r\nMIME-Version: 1.0\r\n\
                 Received: from x\r\n\tby y\r\nSubject: Grüße aus Köln\r\nTo: b@example.org"
            )
        );
        // one MIME-Version and one Content-Type at the top level
        assert_eq!(top.to_ascii_lowercase().matches("mime-version").count(), 1);
        assert_eq!(top.to_ascii_lowercase().matches("content-type").count(), 1);
        assert!(rest.starts_with(&format!(
            "--{B}\r\nMime-Version: 1.0\r\nContent-type: text/plain; charset=utf-8\r\n\
             Content-Language: de\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHallo Grüße\r\n\r\n--{B}\r\n"
        )));
        assert!(rest.ends_with(&format!(
            "quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe, Bob\r\n\r\n--{B}--\r\n"
        )));
    }

    #[test]
    fn original_multipart_is_nested() {
        let data = b"From: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"inner\"\n\n--inner\nContent-Type: text/plain\n\nplain\n--inner\nContent-Type: text/html\n\n<p>html</p>\n--inner--\n";
        let out = wrap(data, "sig\n", seven);
        let parsed = mail_parser::MessageParser::default()
            .parse(&out[..])
            .unwrap();
        use mail_parser::{MimeHeaders, PartType};
        assert_eq!(
            parsed
                .content_type()
                .map(|c| c.subtype().unwrap_or_default().to_string()),
            Some("mixed".into())
        );
        // root, the nested multipart/alternative with its two parts, the signature
        assert_eq!(parsed.parts.len(), 5);
        assert!(matches!(parsed.parts[1].body, PartType::Multipart(_)));
        assert_eq!(
            parsed.parts[1].content_type().and_then(|c| c.subtype()),
            Some("alternative")
        );
        // the original body bytes are there unchanged
        let start = data.iter().position(|&b| b == b'-').unwrap();
        assert!(out.windows(data.len() - start).any(|w| w == &data[start..]));
    }

    #[test]
    fn boundary_avoids_the_content() {
        let data = format!("Subject: x\n\n--{B}\n");
        let mut n = 6;
        let out = wrap(data.as_bytes(), "s", || {
            n += 1;
            n
        });
        assert!(
            String::from_utf8_lossy(&out)
                .contains("boundary=\"===============00000000000000000008==\"")
        );
    }

    #[test]
    fn odd_header_blocks() {
        // last field without a line ending, no body
        let out = wrap(b"Subject: x", "s", seven);
        assert!(
            String::from_utf8_lossy(&out)
                .starts_with(&format!("Content-Type: multipart/mixed; boundary=\"{B}\"\nMIME-Version: 1.0\nSubject: x\n\n--{B}\n\n\n--{B}\n"))
        );
        // no header at all
        let out = wrap(b"just text\n", "s", seven);
        assert!(
            String::from_utf8_lossy(&out).contains(&format!("\n\n--{B}\n\njust text\n\n--{B}\n"))
        );
    }

    #[test]
    fn quoted_printable_rules() {
        assert_eq!(quoted_printable(b"a=b \nc\t\n", b"\n"), b"a=3Db=20\nc=09\n");
        assert_eq!(quoted_printable(b"x\r\ny", b"\r\n"), b"x\r\ny");
        let long = "a".repeat(100);
        let qp = quoted_printable(long.as_bytes(), b"\n");
        let lines: Vec<&[u8]> = qp.split(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), 76);
        assert!(lines[0].ends_with(b"="));
        assert_eq!(lines[1], "a".repeat(25).as_bytes());
        // exactly 76 fits on one line
        assert_eq!(quoted_printable("b".repeat(76).as_bytes(), b"\n").len(), 76);
        // an encoded triple is never split: every line decodes on its own
        let text = "é".repeat(30) + " x\n";
        let qp = quoted_printable(text.as_bytes(), b"\n");
        let mut decoded = Vec::new();
        for l in qp.split(|&b| b == b'\n') {
            assert!(l.len() <= 76);
            let (l, soft) = match l.strip_suffix(b"=") {
                Some(l) => (l, true),
                None => (l, false),
            };
            let mut i = 0;
            while i < l.len() {
                if l[i] == b'=' {
                    let hex = std::str::from_utf8(&l[i + 1..i + 3]).unwrap();
                    decoded.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                } else {
                    decoded.push(l[i]);
                    i += 1;
                }
            }
            if !soft {
                decoded.push(b'\n');
            }
        }
        assert_eq!(decoded, [text.as_bytes(), b"\n"].concat());
    }

    fn fixture(auth: Option<&str>, data: &str) -> Fixture {
        let mut control = String::from("sbob@example.com\nrb@y.example\n");
        if let Some(a) = auth {
            control.push_str(&format!("i{a}\n"));
        }
        Fixture::new(&control, data, &[])
    }

    #[test]
    fn through_the_module() {
        let sigdir = tempfile::tempdir().unwrap();
        let sig = sigdir.path().join("sig");
        std::fs::write(&sig, "Bob\n").unwrap();
        let empty = sigdir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        let conf = format!(
            "[add_signature]\ndomains = {{'example.com': '{}', '': '{}', 'broken.example': '{}'}}\n",
            sig.display(),
            empty.display(),
            sigdir.path().join("missing").display()
        );
        let data = "Subject: s\n\nbody\n";
        for (auth, signed) in [
            (None, false),
            (Some(""), false),
            (Some("bob@example.com"), true),
            (Some("bob@other.example"), false),
            (Some("bob"), false), // '' maps to an empty signature
        ] {
            let fx = fixture(auth, data);
            let f = build_module(build, "add_signature", &conf, &fx.courier).unwrap();
            assert_eq!(fx.run(f.as_ref()).unwrap(), Verdict::Continue, "{auth:?}");
            let text = fx.data_text();
            assert_eq!(text != data, signed, "{auth:?}: {text}");
            if signed {
                assert!(text.contains("multipart/mixed"));
                assert!(text.contains("\n\nBob\n\n--"));
            }
        }
        let fx = fixture(Some("bob@broken.example"), data);
        let f = build_module(build, "add_signature", &conf, &fx.courier).unwrap();
        assert!(fx.run(f.as_ref()).is_err());
        assert_eq!(fx.data_text(), data);
    }

    #[test]
    fn settings() {
        let c = Courier::new(crate::courier::CourierPaths::defaults());
        let f = |t: &str| build_module(build, "add_signature", t, &c).map(|_| ());
        assert!(f("").is_ok());
        assert!(f("[add_signature.py]\ndomains = {}\n").is_ok());
        assert!(f("[add_signature]\ndomains = ['x']\n").is_err());
        assert!(f("[add_signature]\nother = 1\n").is_err());
    }
}
