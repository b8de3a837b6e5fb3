//! The manual pages: each renders without a groff warning, and rustfilter-modules.conf(5)
//! documents every module this build has and every key each of them accepts. The keys come
//! from the code itself (each module is built from an empty section, which records the keys
//! it asks for), so a key added to a module without documentation fails here.

use std::path::{Path, PathBuf};
use std::process::Command;

use rustfilter::chain::Chain;
use rustfilter::config::{ChainConfig, ConfigError, ModulesConfig};
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
        "rustfilter-quarantine.8",
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

/// Sections that pythonfilter's libraries read (src/filters/mod.rs), whether or not this
/// version reads them yet.
const LIBRARY_CANDIDATES: &[&str] = &["rustfilter", "ttldb", "dns", "quarantine", "authdaemon"];

/// The keys of every library section that building a chain reads, by the same "known keys"
/// error: sections read there later ([dns], [quarantine], …) are checked without a change
/// here. Sections nobody reads yet are not in the result.
fn chain_library_keys() -> Vec<(String, Vec<String>)> {
    const PROBE: &str = "man_pages_test_probe";
    let mut text = String::new();
    for name in LIBRARY_CANDIDATES {
        assert!(
            filters::is_library_section(name),
            "{name} is not a library section"
        );
        text.push_str(&format!("[{name}]\n{PROBE} = 1\n"));
    }
    let config = ModulesConfig::parse(Path::new("probe.conf"), &text)
        .unwrap_or_else(|e| panic!("probe config: {e}"));
    let chain = ChainConfig::parse(Path::new("probe-chain.conf"), "")
        .unwrap_or_else(|e| panic!("empty chain: {e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut paths = CourierPaths::defaults();
    paths.sysconfdir = dir.path().join("etc");
    paths.localstatedir = dir.path().join("spool");
    let errors = match Chain::build("rustfilter", &chain, &config, &Courier::new(paths)) {
        Ok(_) => return Vec::new(),
        Err(errors) => errors,
    };
    let mut found = Vec::new();
    for name in LIBRARY_CANDIDATES {
        let label = format!("[{name}] {PROBE}");
        if let Some(e) = errors
            .iter()
            .find(|e| e.key.as_deref() == Some(label.as_str()))
        {
            let list = e
                .message
                .split_once("known keys: ")
                .map(|(_, rest)| rest.trim_end_matches(')'))
                .unwrap_or_else(|| panic!("[{name}]: no key list in the error {:?}", e.message));
            found.push((
                name.to_string(),
                list.split(", ").map(str::to_string).collect(),
            ));
        }
    }
    found
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

    // Read directly, so they are checked whoever reads them; then whatever else building a
    // chain reads. (Add a section read elsewhere, such as [dns] by the resolver, here.)
    let direct: [(&str, FromConfig); 4] = [
        ("rustfilter", |c| {
            rustfilter::chain::Settings::from_config(c).map(drop)
        }),
        ("ttldb", |c| {
            rustfilter::store::StoreConfig::from_config(c).map(drop)
        }),
        ("dns", |c| {
            rustfilter::net::dns::ResolverConfig::from_config(c).map(drop)
        }),
        ("quarantine", |c| {
            rustfilter::quarantine::QuarantineConfig::from_config(c).map(drop)
        }),
    ];
    let mut libraries: Vec<(String, Vec<String>)> = direct
        .iter()
        .map(|(name, from_config)| (name.to_string(), library_keys(name, *from_config)))
        .collect();
    for (name, keys) in chain_library_keys() {
        if let Some((_, known)) = libraries.iter_mut().find(|(n, _)| *n == name) {
            for key in keys {
                if !known.contains(&key) {
                    known.push(key);
                }
            }
        } else {
            libraries.push((name, keys));
        }
    }
    for (name, keys) in libraries {
        let title = format!("THE [{name}] SECTION");
        let Some(text) = part(&lines, ".SH", &title) else {
            missing.push(format!("section [{name}] (no `.SH \"{title}\"`)"));
            continue;
        };
        for key in keys {
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
    let via_chain = chain_library_keys();
    for name in ["rustfilter", "ttldb"] {
        assert!(
            via_chain
                .iter()
                .any(|(n, keys)| n == name && !keys.is_empty()),
            "building a chain should read [{name}]: {via_chain:?}"
        );
    }
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
