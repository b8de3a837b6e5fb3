//! The chain file: one module per line, `name` or `name for a b c` (bypass set).

use std::path::{Path, PathBuf};

use super::ConfigError;

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

impl ChainConfig {
    pub fn parse(path: &Path, text: &str) -> Result<ChainConfig, ConfigError> {
        let _ = (path, text);
        todo!("config/chainfile.rs")
    }

    pub fn load(path: &Path) -> Result<ChainConfig, ConfigError> {
        let _ = path;
        todo!("config/chainfile.rs")
    }
}
