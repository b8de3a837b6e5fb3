//! Configuration: the chain file (`rustfilter.conf`), the modules file
//! (`rustfilter-modules.conf`, an INI dialect whose values are Python literals, parsed — never
//! evaluated), typed per-module access, and discovery (DECISIONS "Files and names").

pub mod chainfile;
pub mod discovery;
pub mod ini;
pub mod literal;
pub mod section;

use std::fmt;
use std::path::PathBuf;

pub use chainfile::{ChainConfig, ChainEntry};
pub use discovery::{ConfigPaths, find_chain_file, find_modules_file};
pub use ini::ModulesConfig;
pub use literal::{Value, parse_literal};
pub use section::Section;

/// A configuration error: always names the file, and where known the line and the key.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    /// `section` or `section.key` / chain module name.
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
