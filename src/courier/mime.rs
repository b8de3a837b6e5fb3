//! The MIME parts of a message, depth-first, for modules that look at attachments: each
//! non-multipart part's file name and transfer-decoded payload. The structure comes from
//! mail-parser (which also decodes RFC 2231 parameters, with charset and continuations, and
//! RFC 2047 encoded-words in them); this module adds what the attachment check needs on top:
//! the walk into `message/rfc822` parts, the raw bytes of text parts (mail-parser turns them
//! into text), lenient transfer decoding, and detection of a cut-off structure.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use mail_parser::{Encoding, HeaderName, HeaderValue, Message, MessagePart, MimeHeaders, PartType};

/// One non-multipart part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The file name (`Content-Disposition` `filename`, else `Content-Type` `name`), decoded,
    /// unquoted and stripped of surrounding whitespace; `None` when absent or empty.
    pub name: Option<String>,
    /// `type/subtype`, lower case (`text/plain` when the part has no `Content-Type`).
    pub content_type: String,
    /// The body with its transfer encoding (base64, quoted-printable) undone. For a
    /// `message/rfc822` part: the enclosed message (its own parts follow this one).
    pub payload: Cow<'a, [u8]>,
}

/// The message's MIME structure is cut off or broken where it matters: the caller cannot tell
/// what the message holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenMime(pub String);

impl fmt::Display for BrokenMime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BrokenMime {}

/// A message parsed by mail-parser, borrowing the bytes. Use this rather than an owned parse:
/// mail-parser's `into_owned` copies the whole message once per nested `message/rfc822` part,
/// and both it and the plain drop of a `Message` recurse once per nesting level, so a few MB of
/// nested `message/rfc822` headers would overflow the stack. This drops level by level.
pub struct Parsed<'a>(Option<Message<'a>>);

impl<'a> Parsed<'a> {
    /// `None` when mail-parser finds no header at all (no MIME structure).
    pub fn new(raw: &'a [u8]) -> Option<Parsed<'a>> {
        mail_parser::MessageParser::default()
            .parse(raw)
            .map(|m| Parsed(Some(m)))
    }

    pub fn message(&self) -> Option<&Message<'a>> {
        self.0.as_ref()
    }

    /// See [`parts`].
    pub fn parts(&self) -> Result<Vec<Part<'_>>, BrokenMime> {
        match &self.0 {
            Some(m) => parts(m),
            None => Ok(Vec::new()),
        }
    }
}

impl Drop for Parsed<'_> {
    fn drop(&mut self) {
        let mut stack: Vec<Message<'_>> = self.0.take().into_iter().collect();
        while let Some(mut msg) = stack.pop() {
            for part in &mut msg.parts {
                if matches!(part.body, PartType::Message(_))
                    && let PartType::Message(inner) = std::mem::take(&mut part.body)
                {
                    stack.push(inner);
                }
            }
            // `msg` has no nested message left: its drop does not recurse.
        }
    }
}

/// Every non-multipart part of `message`, depth-first in document order, descending into
/// multipart and `message/rfc822` parts. Fails when a multipart's closing boundary is missing
/// (a truncated message) or a multipart's boundary never occurs.
pub fn parts<'a>(message: &'a Message<'a>) -> Result<Vec<Part<'a>>, BrokenMime> {
    let mut out = Vec::new();
    let mut closings = Closings::default();
    // (message, part id), popped from the end: children are pushed in reverse.
    let mut stack: Vec<(&'a Message<'a>, usize)> = Vec::new();
    if !message.parts.is_empty() {
        stack.push((message, 0));
    }
    while let Some((msg, id)) = stack.pop() {
        let Some(part) = msg.parts.get(id) else {
            continue;
        };
        closings.check(msg, part)?;
        match &part.body {
            PartType::Multipart(children) => {
                for &child in children.iter().rev() {
                    stack.push((msg, child as usize));
                }
            }
            PartType::Message(nested) => {
                out.push(Part {
                    name: file_name(msg, part),
                    content_type: content_type(part),
                    payload: raw_payload(msg, part),
                });
                if !nested.parts.is_empty() {
                    stack.push((nested, 0));
                }
            }
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                let payload = if part.is_encoding_problem {
                    // mail-parser gave up decoding and kept the raw body: decode leniently.
                    raw_payload(msg, part)
                } else {
                    Cow::Borrowed(bytes.as_ref())
                };
                let content_type = content_type(part);
                if is_message_type(&content_type)
                    && part.is_encoding_problem
                    && mail_parser::MessageParser::default()
                        .parse_headers(payload.as_ref())
                        .is_some_and(|m| !m.headers().is_empty())
                {
                    // mail-parser opens transfer-encoded messages only 3 levels deep; what is
                    // below cannot be checked.
                    return Err(BrokenMime(format!(
                        "{content_type} part at byte {} is nested too deeply to be read",
                        part.offset_header
                    )));
                }
                out.push(Part {
                    name: file_name(msg, part),
                    content_type,
                    payload,
                });
            }
            PartType::Text(_) | PartType::Html(_) => {
                // mail-parser converted the body to text (charset-decoded); the check wants the
                // bytes, as sent, transfer-decoded.
                out.push(Part {
                    name: file_name(msg, part),
                    content_type: content_type(part),
                    payload: raw_payload(msg, part),
                });
            }
        }
    }
    Ok(out)
}

/// Whether a `type/subtype` is an enclosed message.
pub fn is_message_type(content_type: &str) -> bool {
    matches!(content_type, "message/rfc822" | "message/global")
}

fn content_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => "text/plain".to_string(),
    }
}

/// `Content-Disposition` `filename`, else `Content-Type` `name`. RFC 2231 (charset,
/// continuations) is done by mail-parser. Encoded-words are decoded here from the header as
/// written: mail-parser decodes them too, but keeps the whitespace between two adjacent
/// encoded-words, which RFC 2047 says to drop (`=?a?Q?x.e?= =?a?Q?xe?=` is `x.exe`).
fn file_name(msg: &Message<'_>, part: &MessagePart<'_>) -> Option<String> {
    let (header, key, parsed) = match part
        .content_disposition()
        .and_then(|cd| cd.attribute("filename"))
    {
        Some(v) => (HeaderName::ContentDisposition, "filename", v),
        None => (
            HeaderName::ContentType,
            "name",
            part.content_type().and_then(|ct| ct.attribute("name"))?,
        ),
    };
    let written = part
        .headers
        .iter()
        .find(|h| h.name == header)
        .and_then(|h| {
            msg.raw_message
                .get(h.offset_start as usize..h.offset_end as usize)
        })
        .and_then(|raw| raw_param(raw, key))
        .filter(|v| v.contains("=?"));
    let name = match written {
        Some(w) => decode_encoded_words(unquote(w.trim()).trim()),
        None => unquote(parsed.trim()).into_owned(),
    };
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// The value of parameter `key` (not its RFC 2231 `key*` forms) in a raw structured header
/// value, unfolded, with the quotes still on.
fn raw_param(raw: &[u8], key: &str) -> Option<String> {
    let text: String = String::from_utf8_lossy(raw)
        .chars()
        .filter(|&c| c != '\r' && c != '\n')
        .collect();
    let mut params = Vec::new();
    let (mut cur, mut quoted, mut escaped) = (String::new(), false, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                params.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    params.push(cur);
    params.into_iter().skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().to_string())
    })
}

/// Python's `email.utils.unquote`: one pair of surrounding double quotes or angle brackets.
fn unquote(s: &str) -> Cow<'_, str> {
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('<') && s.ends_with('>')))
    {
        let inner = &s[1..s.len() - 1];
        if s.starts_with('"') {
            return Cow::Owned(inner.replace("\\\\", "\\").replace("\\\"", "\""));
        }
        return Cow::Borrowed(inner);
    }
    Cow::Borrowed(s)
}

/// Decode RFC 2047 encoded-words (`=?charset?B|Q?text?=`) in `s`; whitespace between two
/// adjacent encoded-words is dropped. Anything that does not decode is kept as written.
pub fn decode_encoded_words(s: &str) -> String {
    if !s.contains("=?") {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    // Whitespace seen since the last encoded-word, held back in case another one follows.
    let mut pending_ws: Option<&str> = None;
    let mut last_was_word = false;
    while !rest.is_empty() {
        if let Some((decoded, used)) = encoded_word(rest) {
            if !last_was_word && let Some(ws) = pending_ws {
                out.push_str(ws);
            }
            pending_ws = None;
            out.push_str(&decoded);
            rest = &rest[used..];
            last_was_word = true;
            continue;
        }
        let ws_len = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        if ws_len > 0 {
            if let Some(ws) = pending_ws {
                out.push_str(ws);
            }
            pending_ws = Some(&rest[..ws_len]);
            rest = &rest[ws_len..];
            continue;
        }
        if let Some(ws) = pending_ws.take() {
            out.push_str(ws);
        }
        last_was_word = false;
        // Past the first character (it may be several bytes), up to where a word may start.
        let first = rest.chars().next().map_or(1, char::len_utf8);
        let next = rest[first..]
            .find(['=', ' ', '\t', '\r', '\n'])
            .map_or(rest.len(), |p| p + first);
        out.push_str(&rest[..next]);
        rest = &rest[next..];
    }
    if let Some(ws) = pending_ws {
        out.push_str(ws);
    }
    out
}

/// One encoded-word at the start of `s`: its text and how many bytes it took.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let body = s.strip_prefix("=?")?;
    let q1 = body.find('?')?;
    let charset = &body[..q1];
    // RFC 2231 language suffix: `charset*lang`.
    let charset = charset.split('*').next().unwrap_or(charset);
    let after = &body[q1 + 1..];
    let (enc, tail) = after.split_once('?')?;
    let end = tail.find("?=")?;
    let text = &tail[..end];
    if text.contains([' ', '\t', '\r', '\n']) {
        return None;
    }
    let bytes = match enc {
        "B" | "b" => base64_lenient(text.as_bytes()),
        "Q" | "q" => q_decode(text.as_bytes()),
        _ => return None,
    };
    let decoded = decode_charset(charset, &bytes)?;
    Some((decoded, 2 + q1 + 1 + enc.len() + 1 + end + 2))
}

/// Bytes in a named charset as text, via mail-parser's decoders (UTF-8/ASCII directly).
fn decode_charset(charset: &str, bytes: &[u8]) -> Option<String> {
    let lower = charset.to_ascii_lowercase();
    if matches!(lower.as_str(), "utf-8" | "utf8" | "us-ascii" | "ascii") {
        return Some(String::from_utf8_lossy(bytes).into_owned());
    }
    let decoder = mail_parser::decoders::charsets::map::charset_decoder(charset.as_bytes())?;
    Some(decoder(bytes))
}

/// RFC 2047 `Q`: quoted-printable with `_` for space.
fn q_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'_' => out.push(b' '),
            b'=' if i + 2 < text.len() => match (hex(text[i + 1]), hex(text[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'='),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Base64 as mail readers decode it: characters outside the alphabet are skipped, decoding
/// stops at padding, a trailing partial group is dropped.
pub fn base64_lenient(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut n = 0;
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = acc << 6 | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    out
}

/// Quoted-printable body decoding: soft line breaks removed, `=XX` decoded, a malformed `=`
/// kept as written.
pub fn quoted_printable_lenient(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'=' {
            let rest = &text[i + 1..];
            if rest.starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if rest.starts_with(b"\n") {
                i += 2;
                continue;
            }
            if let (Some(&h), Some(&l)) = (rest.first(), rest.get(1))
                && let (Some(h), Some(l)) = (hex(h), hex(l))
            {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// The part's body as it is in the message, transfer-decoded.
fn raw_payload<'a>(msg: &'a Message<'a>, part: &MessagePart<'_>) -> Cow<'a, [u8]> {
    let raw = msg.raw_message.as_ref();
    let start = (part.offset_body as usize).min(raw.len());
    let end = (part.offset_end as usize).clamp(start, raw.len());
    let body = &raw[start..end];
    match transfer_encoding(part) {
        Encoding::Base64 => Cow::Owned(base64_lenient(body)),
        Encoding::QuotedPrintable => Cow::Owned(quoted_printable_lenient(body)),
        Encoding::None => Cow::Borrowed(body),
    }
}

/// The `Content-Transfer-Encoding` as written (mail-parser resets its own record of it when
/// decoding failed).
fn transfer_encoding(part: &MessagePart<'_>) -> Encoding {
    let Some(HeaderValue::Text(cte)) = part
        .headers
        .iter()
        .find(|h| h.name == HeaderName::ContentTransferEncoding)
        .map(|h| &h.value)
    else {
        return Encoding::None;
    };
    let cte = cte.trim();
    if cte.eq_ignore_ascii_case("base64") {
        Encoding::Base64
    } else if cte.eq_ignore_ascii_case("quoted-printable") {
        Encoding::QuotedPrintable
    } else {
        Encoding::None
    }
}

/// The closing delimiters (`--boundary--` at a line start, transport padding allowed) of one
/// raw message: boundary → the last position it closes at. Built once per raw message, so that
/// checking every multipart stays linear in the message size.
#[derive(Default)]
struct Closings {
    by_raw: HashMap<(usize, usize), HashMap<Vec<u8>, usize>>,
}

impl Closings {
    fn of(&mut self, raw: &[u8]) -> &HashMap<Vec<u8>, usize> {
        self.by_raw
            .entry((raw.as_ptr() as usize, raw.len()))
            .or_insert_with(|| {
                let mut map = HashMap::new();
                let mut pos = 0;
                for line in raw.split(|&b| b == b'\n') {
                    let trimmed = line.trim_ascii_end();
                    if trimmed.len() >= 4
                        && let Some(inner) = trimmed
                            .strip_prefix(b"--")
                            .and_then(|t| t.strip_suffix(b"--"))
                    {
                        map.insert(inner.to_vec(), pos);
                    }
                    pos += line.len() + 1;
                }
                map
            })
    }

    /// A multipart part must have its closing delimiter after its body starts; without it the
    /// message was cut off (or the boundary never occurs).
    fn check(&mut self, msg: &Message<'_>, part: &MessagePart<'_>) -> Result<(), BrokenMime> {
        let Some(ct) = part.content_type() else {
            return Ok(());
        };
        if !ct.ctype().eq_ignore_ascii_case("multipart") {
            return Ok(());
        }
        let Some(boundary) = ct.attribute("boundary") else {
            // No boundary: readers take the body as text; nothing is hidden in it.
            return Ok(());
        };
        let closed_at = self
            .of(msg.raw_message.as_ref())
            .get(boundary.as_bytes())
            .copied();
        if closed_at.is_some_and(|at| at >= part.offset_body as usize) {
            return Ok(());
        }
        let what = if matches!(part.body, PartType::Multipart(_)) {
            "its closing boundary is missing (truncated message?)"
        } else {
            "its boundary never occurs"
        };
        Err(BrokenMime(format!(
            "multipart/{} part at byte {} with boundary {boundary:?}: {what}",
            ct.subtype().unwrap_or("?"),
            part.offset_header
        )))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::{BrokenMime, Part, base64_lenient, decode_encoded_words, parts};

    /// (name, content type, payload) of each part.
    type Walked = Vec<(Option<String>, String, Vec<u8>)>;

    fn walk(raw: &str) -> Result<Walked, BrokenMime> {
        let msg = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .expect("parses");
        Ok(parts(&msg)?
            .into_iter()
            .map(
                |Part {
                     name,
                     content_type,
                     payload,
                 }| (name, content_type, payload.into_owned()),
            )
            .collect())
    }

    fn names(raw: &str) -> Vec<Option<String>> {
        walk(raw).expect("walks").into_iter().map(|p| p.0).collect()
    }

    fn mixed(parts: &[&str]) -> String {
        let mut m = String::from(
            "From: a@example.org\nSubject: t\nMIME-Version: 1.0\n\
             Content-Type: multipart/mixed; boundary=\"XX\"\n\npreamble\n",
        );
        for p in parts {
            m.push_str("--XX\n");
            m.push_str(p);
            m.push('\n');
        }
        m.push_str("--XX--\n");
        m
    }

    const TEXT: &str = "Content-Type: text/plain\n\nhello\n";

    #[test]
    fn plain_name_and_payload() {
        let got = walk(&mixed(&[
            TEXT,
            "Content-Type: application/octet-stream\n\
             Content-Disposition: attachment; filename=\" run.exe \"\n\nMZ raw\n",
        ]))
        .expect("walks");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, None);
        assert_eq!(got[0].1, "text/plain");
        assert_eq!(got[1].0.as_deref(), Some("run.exe"));
        assert_eq!(got[1].1, "application/octet-stream");
        assert!(got[1].2.starts_with(b"MZ raw"));
    }

    #[test]
    fn base64_and_quoted_printable_payloads() {
        let got = walk(&mixed(&[
            "Content-Type: application/zip; name=a.zip\nContent-Transfer-Encoding: base64\n\n\
             UEsDBAoAAAAAAP//\nAAEC\n",
            "Content-Type: text/plain; name=b.txt\nContent-Transfer-Encoding: quoted-printable\n\n\
             caf=C3=A9 =\nsoft=3D\n",
            // A text part whose bytes are not UTF-8: the payload keeps them.
            "Content-Type: text/plain; charset=utf-8; name=c.bin\n\
             Content-Transfer-Encoding: base64\n\n//79AA==\n",
        ]))
        .expect("walks");
        assert_eq!(got[0].2, b"PK\x03\x04\x0a\0\0\0\0\0\xff\xff\0\x01\x02");
        assert_eq!(got[1].0.as_deref(), Some("b.txt"));
        assert!(
            got[1].2.starts_with("café soft=".as_bytes()),
            "{:?}",
            got[1].2
        );
        assert_eq!(got[2].2, b"\xff\xfe\xfd\0");
        // Junk in base64 (which mail-parser refuses) is skipped, as mail readers do.
        let got = walk(&mixed(&[
            "Content-Type: application/zip; name=a.zip\nContent-Transfer-Encoding: base64\n\n\
             UEsD!BAoA\n.AAAAAP//\n",
        ]))
        .expect("walks");
        assert_eq!(got[0].2, b"PK\x03\x04\x0a\0\0\0\0\0\xff\xff");
    }

    #[test]
    fn rfc2231_continuations_with_charset() {
        let got = names(&mixed(&[
            "Content-Type: application/octet-stream\n\
             Content-Disposition: attachment;\n filename*0*=utf-8''%E2%82%AC%20rechnung;\n \
             filename*1*=%2Epdf%2E;\n filename*2=\"exe\"\n\nx\n",
            "Content-Type: application/octet-stream\n\
             Content-Disposition: attachment; filename*=iso-8859-1'de'r%E9sum%E9.scr\n\nx\n",
        ]));
        assert_eq!(
            names_of(&got),
            ["€ rechnung.pdf.exe", "résumé.scr"],
            "{got:?}"
        );
    }

    fn names_of(got: &[Option<String>]) -> Vec<&str> {
        got.iter()
            .map(|n| n.as_deref().unwrap_or("<none>"))
            .collect()
    }

    #[test]
    fn encoded_word_names() {
        let got = names(&mixed(&[
            "Content-Type: image/jpeg;\n name=\"=?UTF-8?B?TmV3IHdpcmVsZXNzIHN5c3RlbS0yLkpQRw==?=\"\n\
             Content-Disposition: attachment;\n filename=\"=?UTF-8?B?TmV3IHdpcmVsZXNzIHN5c3RlbS0yLkpQRw==?=\"\n\nx\n",
            "Content-Type: application/octet-stream; name=\"=?iso-8859-1?Q?f=E4ll?= =?us-ascii?Q?ig.exe?=\"\n\nx\n",
        ]));
        assert_eq!(names_of(&got), ["New wireless system-2.JPG", "fällig.exe"]);
        // Whitespace between encoded-words goes, even when it splits the extension; inside a
        // quoted value with other text, it stays.
        let got = names(&mixed(&[
            "Content-Type: application/octet-stream\n\
             Content-Disposition: attachment;\n filename=\"=?utf-8?Q?x.e?=\n =?us-ascii?Q?xe?=\"\n\nx\n",
            "Content-Type: application/octet-stream; name=\"a =?utf-8?B?w6k=?= b.txt\"\n\nx\n",
        ]));
        assert_eq!(names_of(&got), ["x.exe", "a é b.txt"]);
        assert_eq!(
            decode_encoded_words("a =?x-unknown?Q?b?= c"),
            "a =?x-unknown?Q?b?= c"
        );
        assert_eq!(decode_encoded_words("=?utf-8?q?a_b?=  x"), "a b  x");
    }

    #[test]
    fn multibyte_character_before_an_encoded_word_start() {
        // Found by fuzzing (fuzz/fuzz_targets/attachments.rs): a name whose text starts with a
        // multi-byte character (here U+FFFD from a raw 0x97 byte) panicked on a char boundary.
        assert_eq!(decode_encoded_words("\u{fffd}=?.zip"), "\u{fffd}=?.zip");
        assert_eq!(
            decode_encoded_words("é=?utf-8?q?x?=ü =?utf-8?q?y?="),
            "éxü y"
        );
        let got = names(&mixed(&[
            "Content-Type: application/octet-stream; name=\"é=?.zip\"\n\nx\n",
        ]));
        assert_eq!(names_of(&got), ["é=?.zip"]);
    }

    #[test]
    fn content_type_name_only_and_disposition_first() {
        let got = names(&mixed(&[
            "Content-Type: application/x-msdownload; name=\"setup.exe\"\n\nx\n",
            "Content-Type: application/octet-stream; name=\"ct.bat\"\n\
             Content-Disposition: attachment; filename=\"cd.txt\"\n\nx\n",
            "Content-Type: application/octet-stream; name=\"  \"\n\nx\n",
        ]));
        assert_eq!(got[0].as_deref(), Some("setup.exe"));
        assert_eq!(got[1].as_deref(), Some("cd.txt"));
        assert_eq!(got[2], None);
    }

    #[test]
    fn message_rfc822_parts_are_walked_into() {
        let inner = mixed(&[
            TEXT,
            "Content-Type: application/octet-stream; name=inner.pif\n\nx\n",
        ])
        .replace("XX", "YY");
        let raw = mixed(&[
            TEXT,
            &format!("Content-Type: message/rfc822\n\n{inner}"),
            "Content-Type: application/octet-stream; name=after.txt\n\nx\n",
        ]);
        assert_eq!(
            names_of(&names(&raw)),
            ["<none>", "<none>", "<none>", "inner.pif", "after.txt"]
        );
        // Base64-encoded and named, too.
        let forwarded = {
            let inner = "Subject: i\nContent-Type: application/octet-stream; name=deep.vbs\n\nx\n";
            let enc = b64(inner.as_bytes());
            assert_eq!(base64_lenient(enc.as_bytes()), inner.as_bytes());
            mixed(&[&format!(
                "Content-Type: message/rfc822; name=fwd.eml\nContent-Transfer-Encoding: base64\n\n{enc}\n"
            )])
        };
        assert_eq!(names_of(&names(&forwarded)), ["fwd.eml", "deep.vbs"]);
    }

    #[test]
    fn truncated_multipart_is_an_error() {
        let whole = mixed(&[
            TEXT,
            "Content-Type: application/zip; name=a.zip\nContent-Transfer-Encoding: base64\n\nUEsDBAoAAAAAAP//\n",
        ]);
        assert!(walk(&whole).is_ok());
        let cut = &whole[..whole.len() - 20];
        let err = walk(cut).expect_err("cut off");
        assert!(err.0.contains("closing boundary is missing"), "{err}");
        // Cut in a nested multipart: the outer closing delimiter is there, the inner one not.
        let nested = mixed(&[
            "Content-Type: multipart/alternative; boundary=\"in\"\n\n--in\n\
             Content-Type: text/plain\n\nplain\n--in\nContent-Type: text/html\n\n<p>cut",
        ]);
        assert!(walk(&nested).is_err());
        // A boundary that never occurs.
        let never = "Content-Type: multipart/mixed; boundary=zz\n\nno parts here\n";
        let err = walk(never).expect_err("no boundary");
        assert!(err.0.contains("never occurs"), "{err}");
    }

    #[test]
    fn ordinary_mail_is_not_broken() {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
        for f in [
            "queuefiles/data-test1",
            "queuefiles/data-attachments",
            "queuefiles/data-iso-8859-2",
            "attachments/data-attachment",
        ] {
            let raw = std::fs::read(format!("{fixtures}/{f}")).expect("fixture");
            let msg = mail_parser::MessageParser::default()
                .parse(&raw)
                .expect("parses");
            assert!(parts(&msg).is_ok(), "{f}");
        }
        // CRLF line ends, transport padding after the closing delimiter, no preamble,
        // a multipart without a boundary parameter, an epilogue.
        let crlf = mixed(&[TEXT])
            .replace('\n', "\r\n")
            .replace("--XX--", "--XX--  \t");
        assert_eq!(names(&crlf), [None]);
        let no_boundary = "Content-Type: multipart/mixed\n\njust text\n";
        assert_eq!(names(no_boundary), [None]);
        let epilogue = format!("{}epilogue\n", mixed(&[TEXT]));
        assert_eq!(names(&epilogue), [None]);
        let single = "Subject: x\nContent-Type: application/octet-stream; name=\"one.exe\"\n\nMZ";
        assert_eq!(names_of(&names(single)), ["one.exe"]);
    }

    #[test]
    fn deeply_nested_messages_do_not_overflow_the_stack() {
        let mut m = String::from("Subject: x\n");
        for _ in 0..100_000 {
            m.push_str("Content-Type: message/rfc822\n\n");
        }
        m.push_str("Subject: y\nContent-Type: text/plain; name=deep.exe\n\nbody\n");
        // Run on a thread with a small stack, as a worker's would be.
        let names = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || {
                let parsed = super::Parsed::new(m.as_bytes()).expect("parses");
                let parts = parsed.parts().expect("walks");
                let last = parts.last().and_then(|p| p.name.clone());
                (parts.len(), last)
            })
            .expect("spawn")
            .join()
            .expect("no stack overflow");
        assert_eq!(names, (100_001, Some("deep.exe".to_string())));
    }

    #[test]
    fn encoded_messages_nested_beyond_what_can_be_read_are_an_error() {
        fn wrap(inner: &str, level: usize) -> String {
            let enc = crate::courier::mime::tests::b64(inner.as_bytes());
            format!(
                "Subject: level {level}\nContent-Type: message/rfc822\n\
                 Content-Transfer-Encoding: base64\n\n{enc}\n"
            )
        }
        let mut m = "Subject: bottom\nContent-Type: text/plain; name=x.exe\n\nMZ\n".to_string();
        for level in 0..3 {
            m = wrap(&m, level);
        }
        assert_eq!(
            names(&m).last().cloned().flatten().as_deref(),
            Some("x.exe")
        );
        let deeper = wrap(&m, 3);
        let err = walk(&deeper).expect_err("too deep");
        assert!(err.0.contains("nested too deeply"), "{err}");
    }

    pub fn b64(data: &[u8]) -> String {
        let abc = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for (i, chunk) in data.chunks(3).enumerate() {
            if i > 0 && i % 19 == 0 {
                out.push('\n');
            }
            let mut buf = [0u8; 3];
            buf[..chunk.len()].copy_from_slice(chunk);
            let n = u32::from(buf[0]) << 16 | u32::from(buf[1]) << 8 | u32::from(buf[2]);
            for k in 0..4 {
                out.push(if k <= chunk.len() {
                    abc[(n >> (18 - 6 * k) & 63) as usize] as char
                } else {
                    '='
                });
            }
        }
        out
    }

    /// Messages written by Python's `email` package, and the file names its own walk finds
    /// (`get_filename`, then encoded-words decoded): ours must agree.
    #[test]
    fn agrees_with_python_email_on_messages_it_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = r#"
import json, sys
from email import policy, message_from_bytes
from email.header import decode_header, make_header
from email.message import EmailMessage
out = sys.argv[1]
def msg(subject):
    m = EmailMessage()
    m["Subject"] = subject; m["From"] = "a@example.org"; m["To"] = "b@example.org"
    return m
m1 = msg("alternative and attachments")
m1.set_content("plain")
m1.add_alternative("<p>html</p>", subtype="html")
m1.add_attachment(b"MZ", maintype="application", subtype="octet-stream",
    filename="\u00dcberweisungsbest\u00e4tigung f\u00fcr den Monat Dezember 2026 \u2013 bitte pr\u00fcfen.pdf.exe")
m1.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename="report.pdf")
inner = msg("inner")
inner.set_content("x")
inner.add_attachment(b"x", maintype="application", subtype="octet-stream", filename="inner.vbs")
m1.add_attachment(inner)
m2 = msg("quoted-printable text attachment")
m2.set_content("caf\u00e9 " * 50, cte="quoted-printable")
m2.add_attachment("text " * 100, filename="notes.txt", cte="quoted-printable")
m2.add_attachment(b"x" * 5000, maintype="image", subtype="png", filename="\u56fe\u7247.png")
simple = msg("simple")
simple.set_content("only text")
for i, m in enumerate([m1, m2, simple]):
    raw = m.as_bytes(policy=policy.SMTP)
    open(f"{out}/m{i}", "wb").write(raw)
    names = []
    for part in message_from_bytes(raw).walk():
        if part.get_content_maintype() == "multipart":
            continue
        n = part.get_filename()
        n = str(make_header(decode_header(n.strip()))) if n and n.strip() else None
        names.append(n)
    open(f"{out}/m{i}.json", "w").write(json.dumps(names))
"#;
        let status = std::process::Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .arg(dir.path())
            .status()
            .expect("run /usr/bin/python3");
        assert!(status.success());
        for i in 0..3 {
            let raw = std::fs::read(dir.path().join(format!("m{i}"))).expect("message");
            let expected =
                std::fs::read_to_string(dir.path().join(format!("m{i}.json"))).expect("names");
            let parsed = super::Parsed::new(&raw).expect("parses");
            let ours: Vec<Option<String>> = parsed
                .parts()
                .expect("walks")
                .into_iter()
                .map(|p| p.name)
                .collect();
            let ours_json = format!(
                "[{}]",
                ours.iter()
                    .map(|n| match n {
                        None => "null".to_string(),
                        Some(n) => format!("\"{}\"", json_escape(n)),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            assert_eq!(ours_json, expected, "message m{i}");
        }
    }

    /// Python's `json.dumps` escaping (ASCII only).
    fn json_escape(s: &str) -> String {
        s.chars()
            .map(|c| match c {
                '"' => "\\\"".to_string(),
                '\\' => "\\\\".to_string(),
                c if c.is_ascii() && !c.is_ascii_control() => c.to_string(),
                c => c
                    .encode_utf16(&mut [0; 2])
                    .iter()
                    .map(|u| format!("\\u{u:04x}"))
                    .collect(),
            })
            .collect()
    }
}
