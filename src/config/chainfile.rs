//! The chain file: one module per line, `name` or `name for a b c` (bypass set).
//!
//! Unlike the reference, blank and whitespace-only lines are skipped, a `#` after leading
//! whitespace still starts a comment, and extra words without `for` are an error instead of
//! being ignored.

use std::path::{Path, PathBuf};

use super::{ConfigError, numbered_lines, read_text};

/// One line of the chain file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    /// The module name exactly as written (bypass sets match these names).
    pub name: String,
    /// `Some` when the line had `for`; the set may be empty.
    pub bypass: Option<Vec<String>>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainConfig {
    pub path: PathBuf,
    pub entries: Vec<ChainEntry>,
}

/// A module name as written, with a trailing `.py` dropped (`greylist.py` is `greylist`).
fn module_name(path: &Path, line: usize, word: &str) -> Result<String, ConfigError> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    };
    if !valid(word) {
        return Err(ConfigError::at(
            path,
            line,
            format!(
                "invalid module name '{word}': only letters, digits, '_', '.' and '-' are allowed"
            ),
        ));
    }
    let name = word.strip_suffix(".py").unwrap_or(word);
    if name.is_empty() {
        return Err(ConfigError::at(
            path,
            line,
            format!("invalid module name '{word}'"),
        ));
    }
    Ok(name.to_string())
}

impl ChainConfig {
    pub fn parse(path: &Path, text: &str) -> Result<ChainConfig, ConfigError> {
        let mut entries = Vec::new();
        for (no, raw) in numbered_lines(text) {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let name = module_name(path, no, words[0])?;
            let bypass = match words.get(1) {
                None => None,
                Some(&"for") => Some(
                    words[2..]
                        .iter()
                        .map(|w| module_name(path, no, w).map_err(|e| e.with_key(name.clone())))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                Some(_) => {
                    let rest = words[1..].join(" ");
                    return Err(ConfigError::at(
                        path,
                        no,
                        format!(
                            "unexpected '{rest}' after the module name (did you mean \
                             '{name} for {rest}'?)"
                        ),
                    )
                    .with_key(name));
                }
            };
            entries.push(ChainEntry {
                name,
                bypass,
                line: no,
            });
        }
        Ok(ChainConfig {
            path: path.to_path_buf(),
            entries,
        })
    }

    pub fn load(path: &Path) -> Result<ChainConfig, ConfigError> {
        let text = read_text(path)?;
        ChainConfig::parse(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ChainConfig, ConfigError> {
        ChainConfig::parse(Path::new("/etc/rustfilter.conf"), text)
    }

    fn entry(name: &str, bypass: Option<&[&str]>, line: usize) -> ChainEntry {
        ChainEntry {
            name: name.to_string(),
            bypass: bypass.map(|b| b.iter().map(|s| s.to_string()).collect()),
            line,
        }
    }

    #[test]
    fn names_and_bypass_sets() {
        let c = parse(
            "# the chain\n\
             debug\n\
             \n\
             whitelist_relayclients for debug\n\
             \x20 # indented comment\n\
             \t \n\
             greylist for whitelist_relayclients whitelist_auth\n\
             deliveredto for\n\
             \x20 spaced\tfor  a\t b  \n\
             noduplicates.py for debug.py\n\
             fixed_reply",
        )
        .unwrap();
        assert_eq!(c.path, PathBuf::from("/etc/rustfilter.conf"));
        assert_eq!(
            c.entries,
            vec![
                entry("debug", None, 2),
                entry("whitelist_relayclients", Some(&["debug"]), 4),
                entry(
                    "greylist",
                    Some(&["whitelist_relayclients", "whitelist_auth"]),
                    7
                ),
                entry("deliveredto", Some(&[]), 8),
                entry("spaced", Some(&["a", "b"]), 9),
                entry("noduplicates", Some(&["debug"]), 10),
                entry("fixed_reply", None, 11),
            ]
        );
    }

    #[test]
    fn crlf_and_empty_files() {
        let c = parse("debug\r\n\r\nwhitelist_auth for debug\r\n").unwrap();
        assert_eq!(
            c.entries,
            vec![
                entry("debug", None, 1),
                entry("whitelist_auth", Some(&["debug"]), 3)
            ]
        );
        assert!(parse("").unwrap().entries.is_empty());
        // The shipped pythonfilter.conf: everything commented out.
        assert!(
            parse("#debug\n#greylist\n#spamassassin")
                .unwrap()
                .entries
                .is_empty()
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("debug\ngreylist whitelist_auth\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(e.key.as_deref(), Some("greylist"));
        assert_eq!(
            e.to_string(),
            "/etc/rustfilter.conf:2: greylist: unexpected 'whitelist_auth' after the module name \
             (did you mean 'greylist for whitelist_auth'?)"
        );

        let e = parse("\n\ngrey/list\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("invalid module name 'grey/list'"), "{e}");

        let e = parse("greylist for good bad!name\n").unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains("'bad!name'"), "{e}");

        let e = parse(".py\n").unwrap_err();
        assert!(e.message.contains("invalid module name '.py'"), "{e}");
    }

    #[test]
    fn load_reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rustfilter.conf");
        std::fs::write(&path, "debug\n").unwrap();
        let c = ChainConfig::load(&path).unwrap();
        assert_eq!(c.entries, vec![entry("debug", None, 1)]);
        assert_eq!(c.path, path);

        let missing = dir.path().join("missing.conf");
        let e = ChainConfig::load(&missing).unwrap_err();
        assert_eq!(e.file.as_deref(), Some(missing.as_path()));
        assert!(e.message.starts_with("cannot read the file"), "{e}");
    }
}
