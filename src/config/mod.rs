//! Configuration: the chain file (`rustfilter.conf`), the modules file
//! (`rustfilter-modules.conf`, an INI dialect whose values are Python literals, parsed — never
//! evaluated), typed per-module access, and discovery (DECISIONS "Files and names").

pub mod chainfile;
pub mod discovery;
pub mod ini;
pub mod literal;
pub mod section;

use std::fmt;
use std::path::{Path, PathBuf};

pub use chainfile::{ChainConfig, ChainEntry};
pub use discovery::{ConfigPaths, find_chain_file, find_modules_file};
pub use ini::ModulesConfig;
pub use literal::{LiteralError, Value, parse_literal, parse_literal_detailed};
pub use section::Section;

/// A configuration error: always names the file, and where known the line and the key.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    /// `[section] key`, or the module name for a chain-file error.
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: None,
            line: None,
            key: None,
            message: message.into(),
        }
    }

    pub fn at(file: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: Some(file.into()),
            line: Some(line),
            key: None,
            message: message.into(),
        }
    }

    pub fn with_key(mut self, key: impl Into<String>) -> ConfigError {
        self.key = Some(key.into());
        self
    }
}

impl fmt::Display for ConfigError {
    /// `FILE:LINE: KEY: MESSAGE`, leaving out the parts that are unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            f.write_str(": ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The whole file as text. Errors name the file; bad UTF-8 also gets its line.
pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError {
        file: Some(path.to_path_buf()),
        line: None,
        key: None,
        message: format!("cannot read the file: {e}"),
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = 1 + good.iter().filter(|&&b| b == b'\n').count();
        ConfigError::at(path, line, "the file is not valid UTF-8")
    })
}

/// The lines of a config file, numbered from 1, with universal newlines (`\n`, `\r\n` or a
/// lone `\r` ends a line, as Python reads text) and a leading byte-order mark dropped.
pub(crate) fn numbered_lines(text: &str) -> Vec<(usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (line, next) = match rest.find(['\n', '\r']) {
            Some(i) => {
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                (&rest[..i], &rest[i + skip..])
            }
            None => (rest, ""),
        };
        lines.push((lines.len() + 1, line));
        rest = next;
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_any_newline() {
        let lines = numbered_lines("\u{feff}a\r\nb\rc\n\nd");
        assert_eq!(lines, vec![(1, "a"), (2, "b"), (3, "c"), (4, ""), (5, "d")]);
        assert_eq!(numbered_lines("x\n"), vec![(1, "x")]);
        assert!(numbered_lines("").is_empty());
    }

    #[test]
    fn read_text_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.conf");
        let e = read_text(&missing).unwrap_err();
        assert_eq!(e.file.as_deref(), Some(missing.as_path()));
        assert!(
            e.to_string().contains("missing.conf: cannot read the file"),
            "{e}"
        );

        let bad = dir.path().join("bad.conf");
        std::fs::write(&bad, b"ok\nok\n\xff\n").unwrap();
        let e = read_text(&bad).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("UTF-8"));
    }

    #[test]
    fn display_leaves_out_unknown_parts() {
        let e = ConfigError::at("/etc/x.conf", 4, "bad").with_key("[greylist] greylist_time");
        assert_eq!(
            e.to_string(),
            "/etc/x.conf:4: [greylist] greylist_time: bad"
        );
        assert_eq!(ConfigError::new("plain").to_string(), "plain");
    }
}
