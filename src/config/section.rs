//! Typed access to one module's section: each getter checks the value's type and reports a
//! wrong one with file, line and key; `finish` rejects keys the module did not ask for (the
//! per-module schema of DECISIONS §1). Keys inherited from `[DEFAULT]` that a module does not
//! know are not errors.

use std::cell::RefCell;
use std::path::Path;

use super::ini::{Entry, SectionData};
use super::{ConfigError, ModulesConfig, Value};

/// One module's section of a [`super::ModulesConfig`]. Getters remember which keys were asked
/// for, so [`Section::finish`] can reject the rest.
#[derive(Debug)]
pub struct Section<'a> {
    file: Option<&'a Path>,
    name: String,
    /// The section as written; `None` when it is not in the file.
    own: Option<&'a SectionData>,
    /// `[DEFAULT]`, whose keys every section sees.
    defaults: Option<&'a SectionData>,
    /// Keys asked for, in the order asked.
    known: RefCell<Vec<String>>,
    /// The whole file, for the library sections a module uses (`[quarantine]`, `[authdaemon]`).
    config: Option<&'a ModulesConfig>,
}

impl<'a> Section<'a> {
    pub(crate) fn new(
        file: Option<&'a Path>,
        name: &str,
        own: Option<&'a SectionData>,
        defaults: Option<&'a SectionData>,
        config: Option<&'a ModulesConfig>,
    ) -> Section<'a> {
        Section {
            file,
            name: name.to_string(),
            own,
            defaults,
            known: RefCell::new(Vec::new()),
            config,
        }
    }

    /// Another section of the same file: a library section a module relies on, such as
    /// `[quarantine]` (clamav) or `[authdaemon]` (localsenders, quota). Empty when absent.
    pub fn library(&self, name: &str) -> Section<'a> {
        match self.config {
            Some(config) => config.section(name),
            None => Section::new(None, name, None, None, None),
        }
    }

    /// The section name, without `.py`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the section itself appears in the file.
    pub fn is_present(&self) -> bool {
        self.own.is_some()
    }

    /// The keys written in this section (not those from `[DEFAULT]`), in file order.
    pub fn keys(&self) -> Vec<&'a str> {
        self.own
            .map(|s| s.entries.iter().map(|e| e.key.as_str()).collect())
            .unwrap_or_default()
    }

    /// The keys asked for so far, in the order asked: after a module is built from this
    /// section, the keys it accepts (tests/man_pages.rs checks each is documented).
    pub fn requested_keys(&self) -> Vec<String> {
        self.known.borrow().clone()
    }

    /// The line of the key (explicit or from `[DEFAULT]`), if it is set.
    pub fn line(&self, key: &str) -> Option<usize> {
        self.entry(key).map(|e| e.line)
    }

    fn entry(&self, key: &str) -> Option<&'a Entry> {
        self.own
            .and_then(|s| s.get(key))
            .or_else(|| self.defaults.and_then(|d| d.get(key)))
    }

    fn mark(&self, key: &str) {
        let mut known = self.known.borrow_mut();
        if !known.iter().any(|k| k == key) {
            known.push(key.to_string());
        }
    }

    /// Whether the key is set (explicitly or through `[DEFAULT]`).
    pub fn has(&self, key: &str) -> bool {
        self.entry(key).is_some()
    }

    /// The raw value, marking the key as known.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.mark(key);
        self.entry(key).map(|e| &e.value)
    }

    fn type_error(&self, key: &str, expected: &str, got: &Value) -> ConfigError {
        self.error(key, format!("expected {expected}, got {}", describe(got)))
    }

    /// A string; `None` in the file is an error.
    pub fn string(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        match self.value(key) {
            None => Ok(default.to_string()),
            Some(Value::Str(s)) => Ok(s.clone()),
            Some(v) => Err(self.type_error(key, "a string", v)),
        }
    }

    /// A string or `None`.
    pub fn opt_string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.value(key) {
            None | Some(Value::None) => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.type_error(key, "a string or None", v)),
        }
    }

    fn to_int(v: &Value) -> Option<i64> {
        match v {
            Value::Int(i) => Some(*i),
            // i64::MAX as f64 is 2^63, itself out of range.
            Value::Float(x)
                if x.fract() == 0.0 && *x >= i64::MIN as f64 && *x < i64::MAX as f64 =>
            {
                Some(*x as i64)
            }
            // The shipped example writes `port = '5432'`.
            Value::Str(s) => {
                let t = s.trim();
                if t.trim_start_matches(['+', '-'])
                    .chars()
                    .all(|c| c.is_ascii_digit())
                {
                    t.parse().ok()
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// An int (a float with an integral value, or a decimal string like `'5432'`, is accepted).
    pub fn int(&self, key: &str, default: i64) -> Result<i64, ConfigError> {
        Ok(self.opt_int_inner(key, "an int")?.unwrap_or(default))
    }

    /// Like [`Section::int`], but `None` (or an absent key) gives `None`.
    pub fn opt_int(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        match self.value(key) {
            Some(Value::None) => Ok(None),
            _ => self.opt_int_inner(key, "an int or None"),
        }
    }

    fn opt_int_inner(&self, key: &str, expected: &str) -> Result<Option<i64>, ConfigError> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => match Section::to_int(v) {
                Some(i) => Ok(Some(i)),
                None => Err(self.type_error(key, expected, v)),
            },
        }
    }

    /// A number (int or float).
    pub fn float(&self, key: &str, default: f64) -> Result<f64, ConfigError> {
        match self.value(key) {
            None => Ok(default),
            Some(Value::Int(i)) => Ok(*i as f64),
            Some(Value::Float(x)) => Ok(*x),
            Some(v) => Err(self.type_error(key, "a number", v)),
        }
    }

    /// A number, or `None` (also when the key is absent).
    pub fn opt_float(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        match self.value(key) {
            None | Some(Value::None) => Ok(None),
            Some(Value::Int(i)) => Ok(Some(*i as f64)),
            Some(Value::Float(x)) => Ok(Some(*x)),
            Some(v) => Err(self.type_error(key, "a number or None", v)),
        }
    }

    /// `True`/`False`, or an int used as a flag (`1`, `0`).
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.value(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Int(i)) => Ok(*i != 0),
            Some(v) => Err(self.type_error(key, "True or False", v)),
        }
    }

    fn strings(&self, key: &str, v: &Value) -> Result<Vec<String>, ConfigError> {
        string_items(v).map_err(|bad| match bad {
            NotStrings::NotAList(v) => self.type_error(key, "a list of strings", v),
            NotStrings::Item(other) => self.error(
                key,
                format!(
                    "expected a list of strings, but it holds {}",
                    describe(other)
                ),
            ),
        })
    }

    /// A list or tuple of strings; a single string is a one-element list.
    pub fn string_list(&self, key: &str, default: &[&str]) -> Result<Vec<String>, ConfigError> {
        match self.value(key) {
            None => Ok(default.iter().map(|s| s.to_string()).collect()),
            Some(v) => self.strings(key, v),
        }
    }

    fn dict(&self, key: &str, what: &str) -> Result<Option<&'a [(Value, Value)]>, ConfigError> {
        self.mark(key);
        match self.entry(key).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Dict(pairs)) => Ok(Some(pairs)),
            Some(v) => Err(self.type_error(key, what, v)),
        }
    }

    fn dict_key(&self, key: &str, k: &Value, what: &str) -> Result<String, ConfigError> {
        match k {
            Value::Str(s) => Ok(s.clone()),
            other => Err(self.error(
                key,
                format!("expected {what}, but a key is {}", describe(other)),
            )),
        }
    }

    /// A dict of string → string, in file order; `None` if the key is absent.
    pub fn string_map(&self, key: &str) -> Result<Option<Vec<(String, String)>>, ConfigError> {
        const WHAT: &str = "a dict of strings to strings";
        let Some(pairs) = self.dict(key, WHAT)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let name = self.dict_key(key, k, WHAT)?;
            match v {
                Value::Str(s) => out.push((name, s.clone())),
                other => {
                    return Err(self.error(
                        key,
                        format!(
                            "expected {WHAT}, but {} maps to {}",
                            k.repr(),
                            describe(other)
                        ),
                    ));
                }
            }
        }
        Ok(Some(out))
    }

    /// A dict of string → list (or tuple) of strings, in file order; `None` if absent.
    #[allow(clippy::type_complexity)]
    pub fn string_list_map(
        &self,
        key: &str,
    ) -> Result<Option<Vec<(String, Vec<String>)>>, ConfigError> {
        const WHAT: &str = "a dict of strings to lists of strings";
        let Some(pairs) = self.dict(key, WHAT)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let name = self.dict_key(key, k, WHAT)?;
            let list = match string_items(v) {
                Ok(list) => list,
                Err(NotStrings::Item(other)) => {
                    return Err(self.error(
                        key,
                        format!(
                            "expected {WHAT}, but {} holds {}",
                            k.repr(),
                            describe(other)
                        ),
                    ));
                }
                Err(NotStrings::NotAList(other)) => {
                    return Err(self.error(
                        key,
                        format!(
                            "expected {WHAT}, but {} maps to {}",
                            k.repr(),
                            describe(other)
                        ),
                    ));
                }
            };
            out.push((name, list));
        }
        Ok(Some(out))
    }

    /// An error about `key` (file and line of the key when it is set).
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let label = format!("[{}] {key}", self.name);
        let Some(file) = self.file else {
            return ConfigError::new(message).with_key(label);
        };
        let line = self.line(key).or(self.own.map(|s| s.line));
        ConfigError {
            file: Some(file.to_path_buf()),
            line,
            key: Some(label),
            message: message.into(),
        }
    }

    /// Reject every key written in this section that no getter asked for.
    pub fn finish(&self) -> Result<(), ConfigError> {
        let Some(own) = self.own else {
            return Ok(());
        };
        let known = self.known.borrow();
        let Some(unknown) = own.entries.iter().find(|e| !known.contains(&e.key)) else {
            return Ok(());
        };
        let hint = if known.is_empty() {
            "this module has no settings".to_string()
        } else {
            format!("known keys: {}", known.join(", "))
        };
        Err(self.error(
            &unknown.key,
            format!(
                "unknown key '{}' for module '{}' ({hint})",
                unknown.key, self.name
            ),
        ))
    }
}

/// `str 'abc'`, `int 5`, `None`: the type and a short repr of a value, for messages.
fn describe(v: &Value) -> String {
    const MAX: usize = 60;
    if *v == Value::None {
        return "None".to_string();
    }
    let repr = v.repr();
    let repr = if repr.chars().count() > MAX {
        format!("{}…", repr.chars().take(MAX).collect::<String>())
    } else {
        repr
    };
    format!("{} {repr}", v.type_name())
}

/// Why a value is not a list of strings: not a list at all, or an item that is not a string.
enum NotStrings<'v> {
    NotAList(&'v Value),
    Item(&'v Value),
}

/// A single string, or a list / tuple / set of strings, as strings.
fn string_items(v: &Value) -> Result<Vec<String>, NotStrings<'_>> {
    let items = match v {
        Value::Str(s) => return Ok(vec![s.clone()]),
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => items,
        other => return Err(NotStrings::NotAList(other)),
    };
    items
        .iter()
        .map(|item| match item {
            Value::Str(s) => Ok(s.clone()),
            other => Err(NotStrings::Item(other)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::ModulesConfig;

    fn cfg(text: &str) -> ModulesConfig {
        match ModulesConfig::parse(&PathBuf::from("/etc/rustfilter-modules.conf"), text) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn strings() {
        let c = cfg("[m]\na = 'x'\nb = None\nc = 5\n");
        let m = c.section("m");
        assert_eq!(m.string("a", "d").unwrap(), "x");
        assert_eq!(m.string("zz", "d").unwrap(), "d");
        let e = m.string("b", "d").unwrap_err();
        assert_eq!(e.message, "expected a string, got None");
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key.as_deref(), Some("[m] b"));
        assert_eq!(m.opt_string("a").unwrap().as_deref(), Some("x"));
        assert_eq!(m.opt_string("b").unwrap(), None);
        assert_eq!(m.opt_string("zz").unwrap(), None);
        assert_eq!(
            m.opt_string("c").unwrap_err().message,
            "expected a string or None, got int 5"
        );
    }

    #[test]
    fn ints() {
        let c = cfg(
            "[greylist]\na = 300\nb = 60 * 60 * 2\nc = 5.0\nd = '5432'\ngreylist_time = 'abc'\n\
             f = 1.5\ng = True\nh = None\ni = ' -12 '\nj = 1e300\n",
        );
        let m = c.section("greylist");
        assert_eq!(m.int("a", 0).unwrap(), 300);
        assert_eq!(m.int("b", 0).unwrap(), 7200);
        assert_eq!(m.int("c", 0).unwrap(), 5);
        assert_eq!(m.int("d", 0).unwrap(), 5432);
        assert_eq!(m.int("i", 0).unwrap(), -12);
        assert_eq!(m.int("absent", 42).unwrap(), 42);
        let e = m.int("greylist_time", 300).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/rustfilter-modules.conf:6: [greylist] greylist_time: expected an int, got str 'abc'"
        );
        assert_eq!(e.key.as_deref(), Some("[greylist] greylist_time"));
        assert_eq!(
            m.int("f", 0).unwrap_err().message,
            "expected an int, got float 1.5"
        );
        assert_eq!(
            m.int("g", 0).unwrap_err().message,
            "expected an int, got bool True"
        );
        assert_eq!(
            m.int("h", 0).unwrap_err().message,
            "expected an int, got None"
        );
        assert!(m.int("j", 0).is_err());
        assert_eq!(m.opt_int("h").unwrap(), None);
        assert_eq!(m.opt_int("absent").unwrap(), None);
        assert_eq!(m.opt_int("a").unwrap(), Some(300));
        assert_eq!(
            m.opt_int("f").unwrap_err().message,
            "expected an int or None, got float 1.5"
        );
    }

    #[test]
    fn floats() {
        let c = cfg("[m]\na = 5\nb = 5.5\nc = '5'\nd = None\n");
        let m = c.section("m");
        assert_eq!(m.float("a", 0.0).unwrap(), 5.0);
        assert_eq!(m.float("b", 0.0).unwrap(), 5.5);
        assert_eq!(m.float("zz", 1.25).unwrap(), 1.25);
        assert_eq!(
            m.float("c", 0.0).unwrap_err().message,
            "expected a number, got str '5'"
        );
        assert_eq!(m.opt_float("d").unwrap(), None);
        assert_eq!(m.opt_float("zz").unwrap(), None);
        assert_eq!(m.opt_float("a").unwrap(), Some(5.0));
    }

    #[test]
    fn bools() {
        let c = cfg("[m]\nt = True\nf = False\none = 1\nzero = 0\ntwo = 2\ns = 'yes'\n");
        let m = c.section("m");
        assert!(m.bool("t", false).unwrap());
        assert!(!m.bool("f", true).unwrap());
        assert!(m.bool("one", false).unwrap());
        assert!(!m.bool("zero", true).unwrap());
        assert!(m.bool("two", false).unwrap());
        assert!(m.bool("absent", true).unwrap());
        assert_eq!(
            m.bool("s", false).unwrap_err().message,
            "expected True or False, got str 'yes'"
        );
    }

    #[test]
    fn string_lists() {
        let c = cfg("[m]\nl = ['a', 'b']\nt = ('a',)\ns = 'one'\ne = []\nbad = ['a', 1]\nn = 5\n");
        let m = c.section("m");
        assert_eq!(m.string_list("l", &[]).unwrap(), vec!["a", "b"]);
        assert_eq!(m.string_list("t", &[]).unwrap(), vec!["a"]);
        assert_eq!(m.string_list("s", &[]).unwrap(), vec!["one"]);
        assert!(m.string_list("e", &["x"]).unwrap().is_empty());
        assert_eq!(
            m.string_list("absent", &["x", "y"]).unwrap(),
            vec!["x", "y"]
        );
        assert_eq!(
            m.string_list("bad", &[]).unwrap_err().message,
            "expected a list of strings, but it holds int 1"
        );
        assert_eq!(
            m.string_list("n", &[]).unwrap_err().message,
            "expected a list of strings, got int 5"
        );
    }

    #[test]
    fn maps() {
        let c = cfg("[m]\n\
             sig = {'': '/etc/courier/signatures/default', 'example.com': '/x'}\n\
             rcpts = {'help@ee.washington.edu': ['[^@]*@.*washington.edu'],\n\
             \x20        'b@x': ('r1', 'r2'), 'c@x': 'single'}\n\
             badkey = {1: 'x'}\n\
             badval = {'a': 1}\n\
             badlist = {'a': [1]}\n\
             notdict = ['a']\n");
        let m = c.section("m");
        assert_eq!(
            m.string_map("sig").unwrap(),
            Some(vec![
                (String::new(), "/etc/courier/signatures/default".to_string()),
                ("example.com".to_string(), "/x".to_string())
            ])
        );
        assert_eq!(m.string_map("absent").unwrap(), None);
        assert_eq!(
            m.string_list_map("rcpts").unwrap(),
            Some(vec![
                (
                    "help@ee.washington.edu".to_string(),
                    vec!["[^@]*@.*washington.edu".to_string()]
                ),
                ("b@x".to_string(), vec!["r1".to_string(), "r2".to_string()]),
                ("c@x".to_string(), vec!["single".to_string()]),
            ])
        );
        assert_eq!(m.string_list_map("absent").unwrap(), None);
        assert!(
            m.string_map("badkey")
                .unwrap_err()
                .message
                .contains("a key is int 1")
        );
        assert!(
            m.string_map("badval")
                .unwrap_err()
                .message
                .contains("'a' maps to int 1")
        );
        assert!(
            m.string_list_map("badlist")
                .unwrap_err()
                .message
                .contains("'a' holds int 1")
        );
        assert_eq!(
            m.string_map("notdict").unwrap_err().message,
            "expected a dict of strings to strings, got list ['a']"
        );
        assert!(
            m.string_list_map("badval")
                .unwrap_err()
                .message
                .contains("'a' maps to int 1")
        );
    }

    #[test]
    fn finish_rejects_unknown_keys() {
        let c = cfg("[DEFAULT]\ninherited = 1\n[bar]\na = 1\nfoo = 2\nb = 3\nc = 4\n");
        let m = c.section("bar");
        m.int("a", 0).unwrap();
        m.int("b", 0).unwrap();
        m.int("c", 0).unwrap();
        let e = m.finish().unwrap_err();
        assert_eq!(e.line, Some(5));
        assert_eq!(e.key.as_deref(), Some("[bar] foo"));
        assert_eq!(
            e.message,
            "unknown key 'foo' for module 'bar' (known keys: a, b, c)"
        );

        // Inherited keys nobody asked for are fine; asked-for keys, even absent ones, are known.
        let m = c.section("bar");
        for k in ["a", "foo", "b", "c", "never_set"] {
            let _ = m.value(k);
        }
        assert!(m.finish().is_ok());

        let m = c.section("bar");
        let e = m.finish().unwrap_err();
        assert_eq!(
            e.message,
            "unknown key 'a' for module 'bar' (this module has no settings)"
        );

        // A missing section, or one with only DEFAULT keys, has nothing to reject.
        assert!(c.section("other").finish().is_ok());
        assert!(ModulesConfig::empty().section("x").finish().is_ok());
    }

    #[test]
    fn default_keys_are_typed_too() {
        let c = cfg("[DEFAULT]\ndry_run = 'yes'\n[m]\n");
        let m = c.section("m");
        let e = m.bool("dry_run", false).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(e.key.as_deref(), Some("[m] dry_run"));
    }

    #[test]
    fn errors_for_unset_keys_and_without_a_file() {
        let c = cfg("[m]\na = 1\n");
        let m = c.section("m.py");
        assert_eq!(m.name(), "m");
        assert!(m.is_present());
        let e = m.error("required", "missing required key");
        assert_eq!(e.line, Some(1));
        assert_eq!(
            e.to_string(),
            "/etc/rustfilter-modules.conf:1: [m] required: missing required key"
        );

        let empty = ModulesConfig::empty();
        let m = empty.section("ttldb");
        assert!(!m.is_present());
        assert!(m.keys().is_empty());
        let e = m.error("type", "missing required key");
        assert_eq!(e.to_string(), "[ttldb] type: missing required key");
        assert_eq!(m.int("x", 3).unwrap(), 3);
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let c = cfg(&format!("[m]\na = '{}'\n", "x".repeat(200)));
        let e = c.section("m").int("a", 0).unwrap_err();
        assert!(e.message.len() < 120, "{}", e.message);
        assert!(e.message.ends_with('…'));
    }
}
