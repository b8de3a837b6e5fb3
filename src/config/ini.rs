//! The modules file: pythonfilter's INI dialect (sections, `key = value` / `key: value`,
//! continuation lines, full-line `#`/`;` comments, `[DEFAULT]`), values parsed by
//! [`super::literal`]. `[name.py]` and `[name]` are the same section.

use std::path::{Path, PathBuf};

use super::{ConfigError, Section};

#[derive(Debug, Clone, Default)]
pub struct ModulesConfig {
    /// The file it came from (None: no modules file, all defaults).
    pub path: Option<PathBuf>,
}

impl ModulesConfig {
    /// No file: every module gets its defaults.
    pub fn empty() -> ModulesConfig {
        ModulesConfig::default()
    }

    pub fn parse(path: &Path, text: &str) -> Result<ModulesConfig, ConfigError> {
        let _ = (path, text);
        todo!("config/ini.rs")
    }

    pub fn load(path: &Path) -> Result<ModulesConfig, ConfigError> {
        let _ = path;
        todo!("config/ini.rs")
    }

    /// Typed access to one section (name without `.py`), `[DEFAULT]` keys included. A missing
    /// section is an empty one.
    pub fn section(&self, name: &str) -> Section<'_> {
        let _ = name;
        todo!("config/ini.rs")
    }

    /// Names of the sections present (without `.py`), in file order, `DEFAULT` excluded.
    pub fn section_names(&self) -> Vec<String> {
        todo!("config/ini.rs")
    }
}
