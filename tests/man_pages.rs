//! The manual pages: each renders without a groff warning, and rustfilter-modules.conf(5)
//! documents every module this build has and every key each of them accepts. The keys come
//! from the code itself (each module is built from an empty section, which records the keys
//! it asks for), so a key added to a module without documentation fails here.

use std::path::{Path, PathBuf};
use std::process::Command;

use rustfilter::config::{ConfigError, ModulesConfig};
use rustfilter::courier::{Courier, CourierPaths};
use rustfilter::filters;

const MODULES_PAGE: &str = "man/rustfilter-modules.conf.5";
/// Keys the chain reads from every module's section (src/chain.rs), documented once.
const COMMON_KEYS: &[&str] = &["dry_run", "on_error"];
const COMMON_KEYS_HEADING: &str = "KEYS OF EVERY MODULE";

/// Reads a library section (`[rustfilter]`, `[ttldb]`) from the modules file.
type FromConfig = fn(&ModulesConfig) -> Result<(), ConfigError>;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn man_pages() -> Vec<PathBuf> {
    let dir = repo().join("man");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| x.len() == 1 && x.as_bytes()[0].is_ascii_digit())
        })
        .collect();
    pages.sort();
    pages
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn every_page_renders_without_warnings() {
    let pages = man_pages();
    for expected in [
        "rustfilter.8",
        "rustfilter.conf.5",
        "rustfilter-modules.conf.5",
    ] {
        assert!(
            pages.iter().any(|p| p.ends_with(expected)),
            "man/{expected} is missing (found {pages:?})"
        );
    }
    for page in &pages {
        // -ww: all warnings; -z: format, discard the output. tests/services/install-deps.sh
        // installs groff when it is missing.
        let out = Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(page)
            .output()
            .unwrap_or_else(|e| panic!("cannot run groff (is it installed?): {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "groff -man -ww -z {} ({}):\n{stderr}",
            page.display(),
            out.status
        );
        // The .TH line names the page as its file does: NAME and SECTION.
        let name = page.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let section = page.extension().and_then(|s| s.to_str()).unwrap_or("");
        let th = plain_lines(&read(page))
            .into_iter()
            .find(|l| l.starts_with(".TH "))
            .unwrap_or_else(|| panic!("{} has no .TH line", page.display()));
        let words: Vec<&str> = th.split_whitespace().collect();
        assert!(
            words.len() >= 3
                && words[1].trim_matches('"').eq_ignore_ascii_case(name)
                && words[2].trim_matches('"') == section,
            "{}: {th:?} does not name the page {name}({section})",
            page.display()
        );
    }
}

/// The page's source with font and character escapes reduced to plain text, as lines.
fn plain_lines(source: &str) -> Vec<String> {
    source
        .lines()
        .map(|line| {
            let mut out = String::with_capacity(line.len());
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    // \fB, \f(CW, \f[B]: font changes vanish.
                    Some('f') => match chars.next() {
                        Some('(') => {
                            chars.next();
                            chars.next();
                        }
                        Some('[') => {
                            for c in chars.by_ref() {
                                if c == ']' {
                                    break;
                                }
                            }
                        }
                        _ => {}
                    },
                    Some('-') => out.push('-'),
                    Some('&') | Some('%') => {}
                    Some('e') => out.push('\\'),
                    // \(xx: a special character, a blank will do.
                    Some('(') => {
                        chars.next();
                        chars.next();
                        out.push(' ');
                    }
                    Some(other) => out.push(other),
                    None => {}
                }
            }
            out
        })
        .collect()
}

fn heading(line: &str, macro_: &str) -> Option<String> {
    let rest = line.strip_prefix(macro_)?.strip_prefix(' ')?;
    Some(rest.trim().trim_matches('"').to_string())
}

/// The lines of a section (`.SH`) or subsection (`.SS`) up to the next heading of its
/// level or above; `None` when there is no such heading.
fn part(lines: &[String], macro_: &str, title: &str) -> Option<String> {
    let start = lines
        .iter()
        .position(|l| heading(l, macro_).as_deref() == Some(title))?;
    let ends: &[&str] = if macro_ == ".SS" {
        &[".SS", ".SH"]
    } else {
        &[".SH"]
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| ends.iter().any(|m| heading(l, m).is_some()))
        .map_or(lines.len(), |i| start + 1 + i);
    Some(lines[start..end].join("\n"))
}

/// Whether `word` occurs in `text` with no identifier character on either side.
fn has_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(ident)
            && !text[i + word.len()..].chars().next().is_some_and(ident)
    })
}

/// The keys a module accepts: built from an empty section, it asks for each of them.
fn module_keys(name: &str) -> Vec<String> {
    let ctor = filters::constructor(name).unwrap_or_else(|| panic!("no constructor for {name}"));
    let config = ModulesConfig::empty();
    let section = config.section(name);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut paths = CourierPaths::defaults();
    paths.sysconfdir = dir.path().join("etc");
    paths.localstatedir = dir.path().join("spool");
    let courier = Courier::new(paths);
    // A module with a required key (fixed_reply's reply) fails here, after asking for it.
    let _ = ctor(&section, &courier);
    section.requested_keys()
}

/// The keys a library section accepts, from the "known keys: …" list of the error about an
/// unknown key (the section is read inside `from_config`, out of the test's reach).
fn library_keys(name: &str, from_config: FromConfig) -> Vec<String> {
    const PROBE: &str = "man_pages_test_probe";
    let text = format!("[{name}]\n{PROBE} = 1\n");
    let config = ModulesConfig::parse(Path::new("probe.conf"), &text)
        .unwrap_or_else(|e| panic!("probe config: {e}"));
    let err = match from_config(&config) {
        Ok(()) => panic!("[{name}] accepted the unknown key {PROBE}"),
        Err(e) => e.message,
    };
    let list = err
        .split_once("known keys: ")
        .map(|(_, rest)| rest.trim_end_matches(')'))
        .unwrap_or_else(|| panic!("[{name}]: no key list in the error {err:?}"));
    list.split(", ").map(str::to_string).collect()
}

#[test]
fn modules_page_documents_every_module_and_key() {
    let source = read(&repo().join(MODULES_PAGE));
    let lines = plain_lines(&source);
    let mut missing = Vec::new();

    let common = part(&lines, ".SH", COMMON_KEYS_HEADING)
        .unwrap_or_else(|| panic!("{MODULES_PAGE} has no section {COMMON_KEYS_HEADING:?}"));
    for key in COMMON_KEYS {
        if !has_word(&common, key) {
            missing.push(format!(
                "key {key} (every module) in {COMMON_KEYS_HEADING:?}"
            ));
        }
    }

    let names: Vec<&str> = filters::available().collect();
    assert!(!names.is_empty(), "the build registers no module");
    for name in names {
        let Some(text) = part(&lines, ".SS", name) else {
            missing.push(format!("module {name} (no `.SS {name}` subsection)"));
            continue;
        };
        for key in module_keys(name) {
            if !has_word(&text, &key) {
                missing.push(format!("key {key} of module {name}"));
            }
        }
    }

    let libraries: [(&str, FromConfig); 2] = [
        ("rustfilter", |c| {
            rustfilter::chain::Settings::from_config(c).map(drop)
        }),
        ("ttldb", |c| {
            rustfilter::store::StoreConfig::from_config(c).map(drop)
        }),
    ];
    for (name, from_config) in libraries {
        let title = format!("THE [{name}] SECTION");
        let Some(text) = part(&lines, ".SH", &title) else {
            missing.push(format!("section [{name}] (no `.SH \"{title}\"`)"));
            continue;
        };
        for key in library_keys(name, from_config) {
            if !has_word(&text, &key) {
                missing.push(format!("key {key} of [{name}]"));
            }
        }
    }

    assert!(
        missing.is_empty(),
        "{MODULES_PAGE} does not document:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn key_discovery_sees_real_keys() {
    // Guards the method above: if modules stopped recording their keys, the test would
    // pass on an empty list.
    let keys = module_keys("greylist");
    for key in [
        "greylist_time",
        "senders_not_passed_ttl",
        "senders_passed_ttl",
        "senders_purge_interval",
    ] {
        assert!(keys.iter().any(|k| k == key), "greylist keys: {keys:?}");
    }
    assert_eq!(module_keys("fixed_reply"), ["reply"]);
    let ttldb = library_keys("ttldb", |c| {
        rustfilter::store::StoreConfig::from_config(c).map(drop)
    });
    assert!(ttldb.iter().any(|k| k == "password"), "{ttldb:?}");
    assert!(has_word("a greylist_time b", "greylist_time"));
    assert!(!has_word(
        "senders_purge_interval_x",
        "senders_purge_interval"
    ));
    assert_eq!(
        plain_lines(r".BI max\-x \fBkey\fP \(bv")[0],
        ".BI max-x key  "
    );
}
