//! Typed access to one module's section: each getter checks the value's type and reports a
//! wrong one with file, line and key; `finish` rejects keys the module did not ask for (the
//! per-module schema of DECISIONS §1). Keys inherited from `[DEFAULT]` that a module does not
//! know are not errors.

use super::{ConfigError, Value};

pub struct Section<'a> {
    _cfg: std::marker::PhantomData<&'a ()>,
}

impl<'a> Section<'a> {
    /// The section name, without `.py`.
    pub fn name(&self) -> &str {
        todo!("config/section.rs")
    }

    /// Whether the key is set (explicitly or through `[DEFAULT]`).
    pub fn has(&self, key: &str) -> bool {
        let _ = key;
        todo!("config/section.rs")
    }

    /// The raw value, marking the key as known.
    pub fn value(&self, key: &str) -> Option<&Value> {
        let _ = key;
        todo!("config/section.rs")
    }

    /// A string; `None` in the file is an error.
    pub fn string(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        let _ = (key, default);
        todo!("config/section.rs")
    }

    /// A string or `None`.
    pub fn opt_string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let _ = key;
        todo!("config/section.rs")
    }

    /// An int (a float with an integral value, or a decimal string like `'5432'`, is accepted).
    pub fn int(&self, key: &str, default: i64) -> Result<i64, ConfigError> {
        let _ = (key, default);
        todo!("config/section.rs")
    }

    /// A number (int or float).
    pub fn float(&self, key: &str, default: f64) -> Result<f64, ConfigError> {
        let _ = (key, default);
        todo!("config/section.rs")
    }

    /// `True`/`False`, or an int used as a flag (`1`, `0`).
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        let _ = (key, default);
        todo!("config/section.rs")
    }

    /// A list or tuple of strings; a single string is a one-element list.
    pub fn string_list(&self, key: &str, default: &[&str]) -> Result<Vec<String>, ConfigError> {
        let _ = (key, default);
        todo!("config/section.rs")
    }

    /// A dict of string → string, in file order; `None` if the key is absent.
    pub fn string_map(&self, key: &str) -> Result<Option<Vec<(String, String)>>, ConfigError> {
        let _ = key;
        todo!("config/section.rs")
    }

    /// A dict of string → list (or tuple) of strings, in file order; `None` if absent.
    #[allow(clippy::type_complexity)]
    pub fn string_list_map(
        &self,
        key: &str,
    ) -> Result<Option<Vec<(String, Vec<String>)>>, ConfigError> {
        let _ = key;
        todo!("config/section.rs")
    }

    /// An error about `key` (file and line of the key when it is set).
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let _ = (key, message.into());
        todo!("config/section.rs")
    }

    /// Reject every key written in this section that no getter asked for.
    pub fn finish(&self) -> Result<(), ConfigError> {
        todo!("config/section.rs")
    }
}
