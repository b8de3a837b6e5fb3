//! attachments — reject a message when an attached file's name, or the name of an entry in an
//! attached archive (nested archives included, to a bounded depth), matches `blocked_pattern`:
//! `554 The extension of the attached file is blacklisted`.
//!
//! Names are taken after RFC 2231/2047 decoding (src/courier/mime.rs); archives are listed by
//! src/archive.rs (ZIP, gzip, tar; limits there). The pattern is matched like Python's
//! `re.match` with IGNORECASE: anchored at the start only, `$` also before one final newline.
//! A message whose MIME structure is cut off, or that cannot be read, is not judged: the check
//! fails and the chain tempfails it (DECISIONS "attachments", §5 — no error text in replies).

use std::time::Instant;

use regex::{Regex, RegexBuilder};

use crate::archive;
use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::courier::mime;
use crate::filter::{Context, Filter, FilterError, FilterResult, Verdict};

pub const BLOCKED_REPLY: &str = "554 The extension of the attached file is blacklisted";

/// The reference's default.
pub const DEFAULT_PATTERN: &str =
    r"^.*\.(scr|exe|com|bat|pif|lnk|sys|mid|vb|js|ws|shs|ceo|cmd|cpl|hta|vbs)$";

pub struct Attachments {
    blocked: Regex,
    limits: archive::Limits,
}

pub fn build(sec: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    let pattern = sec.string("blocked_pattern", DEFAULT_PATTERN)?;
    let blocked = compile(&pattern).map_err(|why| sec.error("blocked_pattern", why))?;
    super::initialized("attachments");
    Ok(Box::new(Attachments {
        blocked,
        limits: archive::Limits::default(),
    }))
}

/// Compile like Python's `re.compile(pattern, re.IGNORECASE)` used with `match`: anchored at
/// the start. The dialect is the `regex` crate's; what it lacks is an error that says so.
pub fn compile(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(&format!("^(?:{pattern})"))
        .case_insensitive(true)
        .build()
        .map_err(|e| {
            format!(
                "cannot compile {pattern:?}: {e}\n(rustfilter uses the Rust regex dialect: \
                 lookaround such as (?=…) or (?<!…) and backreferences such as \\1 are not \
                 supported)"
            )
        })
}

/// Python `re.match`: `$` also matches before one final newline, so a name ending in `\n` is
/// tried without it too.
pub fn matches(re: &Regex, name: &str) -> bool {
    re.is_match(name) || name.strip_suffix('\n').is_some_and(|n| re.is_match(n))
}

impl Attachments {
    /// The first blocked name in one part, if any: its own name, then its archive entries.
    fn blocked_in(&self, part: &mime::Part<'_>, path: &str) -> Option<String> {
        if let Some(name) = &part.name
            && matches(&self.blocked, name)
        {
            return Some(format!("attachment name {name:?}"));
        }
        if mime::is_message_type(&part.content_type) {
            return None; // its parts are walked on their own
        }
        let listing = archive::list(&part.payload, &self.limits);
        let label = part.name.as_deref().unwrap_or("(unnamed part)");
        if let Some(limit) = &listing.limit_hit {
            log::info!(
                "attachments: {path}: {label:?}: stopped looking into the archive: {limit}; \
                 checking the {} names seen",
                listing.names.len()
            );
        }
        for note in &listing.notes {
            log::debug!("attachments: {path}: {label:?}: {note}");
        }
        listing
            .names
            .into_iter()
            .find(|n| matches(&self.blocked, n))
            .map(|n| format!("archive entry {n:?} in {label:?}"))
    }
}

impl Filter for Attachments {
    fn waits(&self) -> bool {
        false
    }

    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let path = ctx.message.path().display().to_string();
        let raw = ctx
            .message
            .bytes()
            .map_err(|e| FilterError::new(format!("cannot read the message: {e}")))?;
        // Parsed here, borrowing the bytes, rather than with `Message::parsed` (see
        // `mime::Parsed` for why).
        let Some(parsed) = mime::Parsed::new(raw) else {
            // No header at all: there is no MIME structure, so there is no attachment either
            // (a reader shows it as plain text).
            log::info!("attachments: {path}: no MIME structure; nothing to check");
            return Ok(Verdict::Continue);
        };
        let parts = parsed
            .parts()
            .map_err(|e| FilterError::new(format!("{path}: broken MIME structure: {e}")))?;
        for part in &parts {
            if Instant::now() >= ctx.deadline {
                return Err(FilterError::new(format!(
                    "{path}: the message deadline passed while checking attachments"
                )));
            }
            if let Some(what) = self.blocked_in(part, &path) {
                log::info!("attachments: {path}: {what} matches blocked_pattern");
                return Ok(Verdict::reply(BLOCKED_REPLY));
            }
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::{BLOCKED_REPLY, DEFAULT_PATTERN, compile, matches};
    use crate::archive::testdata::{gzip, tar, zip};
    use crate::courier::mime::tests::b64;
    use crate::filter::Verdict;
    use crate::filters::testutil::{Fixture, build};

    const CONTROL: &str = "sa@x.example\nrg@example.com\nR\nN\n";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).expect("read")
    }

    fn run_with(modules: &str, data: &[u8]) -> Result<Verdict, String> {
        let fx = Fixture::new(CONTROL, "", &[]);
        std::fs::write(&fx.data, data).expect("write data");
        let f = build(super::build, "attachments", modules, &fx.courier).expect("builds");
        fx.run(f.as_ref()).map_err(|e| e.to_string())
    }

    fn run(data: &[u8]) -> Result<Verdict, String> {
        run_with("", data)
    }

    fn blocked() -> Result<Verdict, String> {
        Ok(Verdict::reply(BLOCKED_REPLY))
    }

    fn with_attachment(name: &str, data: &[u8]) -> Vec<u8> {
        format!(
            "From: a@example.org\nSubject: t\nMIME-Version: 1.0\n\
             Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\n\
             Content-Type: text/plain\n\nsee attached\n--b1\n\
             Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\
             Content-Disposition: attachment; filename=\"{name}\"\n\n{}\n--b1--\n",
            b64(data)
        )
        .into_bytes()
    }

    #[test]
    fn reference_fixtures() {
        assert_eq!(
            run(&fixture("queuefiles/data-test1")),
            Ok(Verdict::Continue)
        );
        assert_eq!(
            run(&fixture("attachments/data-attachment")),
            Ok(Verdict::Continue)
        );
        // test.zip holds test.bat; we look into archives.
        assert_eq!(run(&fixture("queuefiles/data-attachments")), blocked());
        assert_eq!(
            run(&fixture("queuefiles/data-iso-8859-2")),
            Ok(Verdict::Continue)
        );
    }

    #[test]
    fn names_are_matched_case_insensitively() {
        assert_eq!(run(&with_attachment("Invoice.PDF.EXE", b"MZ")), blocked());
        assert_eq!(
            run(&with_attachment("invoice.pdf", b"%PDF")),
            Ok(Verdict::Continue)
        );
        assert_eq!(run(&with_attachment("notes.js", b"x")), blocked());
        assert_eq!(
            run(&with_attachment("notes.json", b"x")),
            Ok(Verdict::Continue)
        );
    }

    #[test]
    fn archive_entries_at_every_level() {
        let z = zip(&[("readme.txt", b"hi", true), ("setup.cmd", b"x", true)]);
        assert_eq!(run(&with_attachment("files.zip", &z)), blocked());
        let clean = zip(&[("readme.txt", b"hi", true)]);
        assert_eq!(
            run(&with_attachment("files.zip", &clean)),
            Ok(Verdict::Continue)
        );
        let l3 = zip(&[("deep.scr", b"x", true)]);
        let l2 = zip(&[("l3.zip", &l3, true)]);
        let l1 = zip(&[("l2.zip", &l2, true)]);
        assert_eq!(run(&with_attachment("nested.zip", &l1)), blocked());
        // One level more is not opened: the names seen are clean.
        let l0 = zip(&[("l1.zip", &l1, true)]);
        assert_eq!(
            run(&with_attachment("nested.zip", &l0)),
            Ok(Verdict::Continue)
        );
        // A renamed archive is still an archive; so are tar and gzip.
        assert_eq!(run(&with_attachment("photo.jpg", &z)), blocked());
        let tgz = gzip(None, &tar(&[("x/run.vbs", b"")]));
        assert_eq!(run(&with_attachment("src.tgz", &tgz)), blocked());
    }

    #[test]
    fn a_zip_bomb_attachment_finishes_quickly() {
        let mut big = zip(&[("x.txt", b"", false)]);
        big.resize(100 * 1024 * 1024, 0);
        let bomb = zip(&[("bomb.zip", &big, true)]);
        drop(big);
        let t = std::time::Instant::now();
        assert_eq!(
            run(&with_attachment("bomb.zip", &bomb)),
            Ok(Verdict::Continue)
        );
        assert!(
            t.elapsed() < std::time::Duration::from_secs(3),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn corrupt_archives_are_no_hit() {
        let mut z = zip(&[("evil.exe", b"x", false)]);
        z.truncate(10);
        assert_eq!(run(&with_attachment("a.zip", &z)), Ok(Verdict::Continue));
        assert_eq!(
            run(&with_attachment("a.zip", b"PK\x05\x06")),
            Ok(Verdict::Continue)
        );
    }

    #[test]
    fn broken_mime_and_unreadable_messages_fail_the_check() {
        let whole = with_attachment("a.zip", &zip(&[("a.txt", b"", false)]));
        let cut = &whole[..whole.len() - 12];
        let err = run(cut).expect_err("tempfails");
        assert!(err.contains("closing boundary is missing"), "{err}");
        let fx = Fixture::new(CONTROL, "", &[]);
        std::fs::remove_file(&fx.data).expect("rm");
        let f = build(super::build, "attachments", "", &fx.courier).expect("builds");
        let err = fx.run(f.as_ref()).expect_err("tempfails").to_string();
        assert!(err.contains("cannot read the message"), "{err}");
        // No header at all: no MIME structure, nothing to block.
        assert_eq!(run(b""), Ok(Verdict::Continue));
    }

    #[test]
    fn blocked_pattern_setting() {
        let modules = "[attachments]\nblocked_pattern = '.*\\\\.(pdf|doc)$'\n";
        assert_eq!(run_with(modules, &with_attachment("x.PDF", b"")), blocked());
        assert_eq!(
            run_with(modules, &with_attachment("x.exe", b"")),
            Ok(Verdict::Continue)
        );
        let fx = Fixture::new(CONTROL, "", &[]);
        for bad in ["'(?<!x)\\\\.exe$'", "'(a)\\\\1'"] {
            let text = format!("[attachments]\nblocked_pattern = {bad}\n");
            let err = match build(super::build, "attachments", &text, &fx.courier) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{bad} compiled"),
            };
            assert!(err.contains("test-modules.conf"), "{err}");
            assert!(err.contains("blocked_pattern"), "{err}");
            assert!(err.contains("not supported"), "{err}");
        }
    }

    #[test]
    fn python_match_semantics() {
        let re = compile(DEFAULT_PATTERN).expect("default compiles");
        assert!(matches(&re, "a.exe"));
        assert!(matches(&re, "a.exe\n"), "$ before one final newline");
        assert!(!matches(&re, "a.exe\n\n"));
        assert!(!matches(&re, "a.exe.txt"));
        assert!(!matches(&re, "x\na.exe"), ". does not match a newline");
        assert!(matches(&re, "dir/sub/A.ExE"), ".* matches slashes");
        // Anchored at the start only.
        let re = compile(r"evil").expect("compiles");
        assert!(matches(&re, "evil.txt"));
        assert!(!matches(&re, "not-evil"));
        let re = compile(r"a|b").expect("compiles");
        assert!(matches(&re, "b"));
        assert!(!matches(&re, "cb"));
    }
}
