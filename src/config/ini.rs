//! The modules file: pythonfilter's INI dialect (sections, `key = value` / `key: value`,
//! continuation lines, full-line `#`/`;` comments, `[DEFAULT]`), values parsed by
//! [`super::literal`]. `[name.py]` and `[name]` are the same section.
//!
//! Every value is parsed when the file is loaded, so a bad value anywhere is reported before
//! any module starts. Where Python's `RawConfigParser` would accept something surprising
//! (a `[DEFAULT]` key in every section, a comment line inside a multi-line value) we accept it
//! too; where it would fail, we fail with the file, line and key.

use std::path::{Path, PathBuf};

use super::literal::parse_literal_detailed;
use super::{ConfigError, Section, Value, numbered_lines, read_text};

/// One `key = value` as written.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) value: Value,
    /// The line of the key.
    pub(crate) line: usize,
}

/// One section, its name without `.py`.
#[derive(Debug, Clone)]
pub(crate) struct SectionData {
    pub(crate) name: String,
    /// The line of the (first) header.
    pub(crate) line: usize,
    pub(crate) entries: Vec<Entry>,
}

impl SectionData {
    pub(crate) fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

#[derive(Debug, Clone, Default)]
pub struct ModulesConfig {
    /// The file it came from (None: no modules file, all defaults).
    pub path: Option<PathBuf>,
    /// In file order, `[DEFAULT]` among them.
    sections: Vec<SectionData>,
}

const DEFAULT_SECTION: &str = "DEFAULT";

/// `[greylist.py]` and `[greylist]` name the same section.
fn normalise(name: &str) -> &str {
    name.strip_suffix(".py").unwrap_or(name)
}

/// One physical line of a value: its text (stripped) and where that text starts in the file.
struct ValueLine<'t> {
    text: &'t str,
    file_line: usize,
    /// 0-based character column of `text` in its file line.
    column: usize,
}

/// A key whose value may still continue on the following lines.
struct Pending<'t> {
    /// Index into `sections`.
    section: usize,
    key: String,
    line: usize,
    indent: usize,
    lines: Vec<ValueLine<'t>>,
}

impl ModulesConfig {
    /// No file: every module gets its defaults.
    pub fn empty() -> ModulesConfig {
        ModulesConfig::default()
    }

    pub fn parse(path: &Path, text: &str) -> Result<ModulesConfig, ConfigError> {
        let mut cfg = ModulesConfig {
            path: Some(path.to_path_buf()),
            ..ModulesConfig::default()
        };
        let mut current: Option<usize> = None;
        let mut pending: Option<Pending<'_>> = None;
        for (no, raw) in numbered_lines(text) {
            let stripped = raw.trim();
            // A comment line is dropped even inside a multi-line value, which continues.
            if stripped.starts_with('#') || stripped.starts_with(';') {
                continue;
            }
            if stripped.is_empty() {
                if let Some(p) = &mut pending {
                    p.lines.push(ValueLine {
                        text: "",
                        file_line: no,
                        column: 0,
                    });
                }
                continue;
            }
            let indent = raw.chars().take_while(|c| c.is_whitespace()).count();
            if let Some(p) = &mut pending
                && indent > p.indent
            {
                p.lines.push(ValueLine {
                    text: stripped,
                    file_line: no,
                    column: indent,
                });
                continue;
            }
            if let Some(p) = pending.take() {
                cfg.add_entry(path, p)?;
            }
            if stripped.starts_with('[') {
                current = Some(cfg.open_section(path, no, stripped)?);
                continue;
            }
            let Some(target) = current else {
                return Err(ConfigError::at(
                    path,
                    no,
                    format!(
                        "expected a section header such as [module] before {}",
                        quote_line(stripped)
                    ),
                ));
            };
            let Some(delim) = stripped.find(['=', ':']) else {
                return Err(ConfigError::at(
                    path,
                    no,
                    format!(
                        "cannot parse {}: expected 'key = value', a [section] header or a # comment",
                        quote_line(stripped)
                    ),
                ));
            };
            let key = stripped[..delim].trim_end();
            if key.is_empty() {
                return Err(ConfigError::at(
                    path,
                    no,
                    format!("missing key name before '{}'", &stripped[delim..=delim]),
                ));
            }
            let section = &cfg.sections[target];
            if let Some(first) = section.get(key) {
                return Err(ConfigError::at(
                    path,
                    no,
                    format!(
                        "duplicate key '{key}' in section [{}] (first set at line {})",
                        section.name, first.line
                    ),
                )
                .with_key(format!("[{}] {key}", section.name)));
            }
            let after = &stripped[delim + 1..];
            let value = after.trim_start();
            let column = indent
                + stripped[..delim + 1].chars().count()
                + (after.chars().count() - value.chars().count());
            pending = Some(Pending {
                section: target,
                key: key.to_string(),
                line: no,
                indent,
                lines: vec![ValueLine {
                    text: value,
                    file_line: no,
                    column,
                }],
            });
        }
        if let Some(p) = pending.take() {
            cfg.add_entry(path, p)?;
        }
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<ModulesConfig, ConfigError> {
        let text = read_text(path)?;
        ModulesConfig::parse(path, &text)
    }

    /// Typed access to one section (name without `.py`), `[DEFAULT]` keys included. A missing
    /// section is an empty one.
    pub fn section(&self, name: &str) -> Section<'_> {
        let name = normalise(name);
        let defaults = if name == DEFAULT_SECTION {
            None
        } else {
            self.find(DEFAULT_SECTION)
        };
        Section::new(
            self.path.as_deref(),
            name,
            self.find(name),
            defaults,
            Some(self),
        )
    }

    /// Names of the sections present (without `.py`), in file order, `DEFAULT` excluded.
    pub fn section_names(&self) -> Vec<String> {
        self.sections
            .iter()
            .filter(|s| s.name != DEFAULT_SECTION)
            .map(|s| s.name.clone())
            .collect()
    }

    /// The line of a section's header (name with or without `.py`), if the section is present.
    pub fn section_line(&self, name: &str) -> Option<usize> {
        self.find(normalise(name)).map(|s| s.line)
    }

    fn find(&self, name: &str) -> Option<&SectionData> {
        self.sections.iter().find(|s| s.name == name)
    }

    fn open_section(&mut self, path: &Path, no: usize, header: &str) -> Result<usize, ConfigError> {
        let malformed = || {
            ConfigError::at(
                path,
                no,
                format!(
                    "malformed section header {}: expected '[name]'",
                    quote_line(header)
                ),
            )
        };
        let inner = header
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .ok_or_else(malformed)?;
        if inner.contains(['[', ']']) {
            return Err(malformed());
        }
        let written = inner.trim();
        let name = normalise(written);
        if name.is_empty() {
            return Err(ConfigError::at(path, no, "empty section name"));
        }
        if let Some(i) = self.sections.iter().position(|s| s.name == name) {
            // As in Python, a repeated [DEFAULT] continues the same section.
            if name == DEFAULT_SECTION {
                return Ok(i);
            }
            let first = &self.sections[i];
            return Err(ConfigError::at(
                path,
                no,
                format!(
                    "duplicate section [{written}] (already at line {}; [{name}] and [{name}.py] \
                     are the same section)",
                    first.line
                ),
            ));
        }
        self.sections.push(SectionData {
            name: name.to_string(),
            line: no,
            entries: Vec::new(),
        });
        Ok(self.sections.len() - 1)
    }

    /// Parse a finished value and store it.
    fn add_entry(&mut self, path: &Path, mut p: Pending<'_>) -> Result<(), ConfigError> {
        // Trailing blank lines are not part of the value.
        while p.lines.len() > 1 && p.lines.last().is_some_and(|l| l.text.is_empty()) {
            p.lines.pop();
        }
        let text = p
            .lines
            .iter()
            .map(|l| l.text)
            .collect::<Vec<_>>()
            .join("\n");
        let section_name = self.sections[p.section].name.clone();
        let label = format!("[{section_name}] {}", p.key);
        let value = parse_literal_detailed(&text).map_err(|e| {
            let (line, message) = match e.position.and_then(|(vline, col)| {
                p.lines
                    .get(vline - 1)
                    .map(|l| (l.file_line, l.column + col))
            }) {
                Some((line, col)) => (line, e.render(Some(&format!("column {col}")))),
                None => (p.line, e.render(None)),
            };
            ConfigError::at(path, line, message).with_key(label.clone())
        })?;
        self.sections[p.section].entries.push(Entry {
            key: p.key,
            value,
            line: p.line,
        });
        Ok(())
    }
}

/// A line quoted for an error message, shortened if long.
fn quote_line(line: &str) -> String {
    const MAX: usize = 60;
    if line.chars().count() > MAX {
        format!("'{}…'", line.chars().take(MAX).collect::<String>())
    } else {
        format!("'{line}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ModulesConfig {
        match ModulesConfig::parse(Path::new("/etc/rustfilter-modules.conf"), text) {
            Ok(c) => c,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    fn parse_err(text: &str) -> ConfigError {
        match ModulesConfig::parse(Path::new("/etc/rustfilter-modules.conf"), text) {
            Ok(c) => panic!("parsed: {c:?}"),
            Err(e) => e,
        }
    }

    fn s(x: &str) -> Value {
        Value::Str(x.to_string())
    }

    fn ints(v: &[i64]) -> Vec<Value> {
        v.iter().map(|i| Value::Int(*i)).collect()
    }

    /// The fixture of the reference's tests/test_moduleconfig.py (spec §8.1, §8.4).
    const FIXTURE: &str = "\
[test1]
name1='value1'
name2='value2'

[test2]
name3='value3'
name4='value4'

[test3]
atuple=(1,2,3)
alist=[1,2,3]
adict={'dict1': 'dictval1',
    'dict2': 'dictval2'}

[ttldb]
type = 'dbm'
dir = 'tests/tmp/pythonfilter'
#type = 'psycopg2'
#host = 'localhost'
#port = '5432'
";

    #[test]
    fn reference_fixture_sections() {
        let cfg = parse(FIXTURE);
        assert_eq!(
            cfg.section_names(),
            vec!["test1", "test2", "test3", "ttldb"]
        );

        let t1 = cfg.section("test1");
        assert_eq!(t1.value("name1"), Some(&s("value1")));
        assert_eq!(t1.value("name2"), Some(&s("value2")));
        for absent in ["name3", "name4", "atuple", "alist", "adict"] {
            assert!(!t1.has(absent), "{absent}");
        }
        assert_eq!(t1.keys(), vec!["name1", "name2"]);

        let t2 = cfg.section("test2");
        assert_eq!(t2.keys(), vec!["name3", "name4"]);
        assert_eq!(t2.value("name3"), Some(&s("value3")));
        assert_eq!(t2.value("name4"), Some(&s("value4")));

        let t3 = cfg.section("test3");
        assert_eq!(t3.value("atuple"), Some(&Value::Tuple(ints(&[1, 2, 3]))));
        assert_eq!(t3.value("alist"), Some(&Value::List(ints(&[1, 2, 3]))));
        assert_eq!(
            t3.value("adict"),
            Some(&Value::Dict(vec![
                (s("dict1"), s("dictval1")),
                (s("dict2"), s("dictval2"))
            ]))
        );
        for absent in ["name1", "name2", "name3", "name4"] {
            assert!(!t3.has(absent));
        }

        let ttldb = cfg.section("ttldb");
        assert_eq!(ttldb.keys(), vec!["type", "dir"]);
        assert_eq!(ttldb.line("dir"), Some(17));
    }

    #[test]
    fn edge_cases_observed_in_the_reference() {
        // §8.8 item 12.
        let cfg = parse(
            "[DEFAULT]\n\
             shared = 7\n\
             [a]\n\
             k1: 'colon'\n\
             k2 = 5 # trailing comment\n\
             k3 = {'x': 1,\n\
             # a comment inside the dict\n\
             \x20  'y': 2}\n\
             [b.py]\n",
        );
        for name in ["a", "b", "missing"] {
            assert_eq!(
                cfg.section(name).value("shared"),
                Some(&Value::Int(7)),
                "{name}"
            );
        }
        let a = cfg.section("a");
        assert_eq!(a.value("k1"), Some(&s("colon")));
        assert_eq!(a.value("k2"), Some(&Value::Int(5)));
        assert_eq!(
            a.value("k3"),
            Some(&Value::Dict(vec![
                (s("x"), Value::Int(1)),
                (s("y"), Value::Int(2))
            ]))
        );
        assert_eq!(cfg.section_names(), vec!["a", "b"]);
        assert_eq!(cfg.section_line("DEFAULT"), Some(1));

        let e = parse_err("[a]\nkey =\n");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.key.as_deref(), Some("[a] key"));
        assert!(e.message.starts_with("empty value"), "{e}");
    }

    #[test]
    fn section_values_override_defaults() {
        let cfg = parse("[a]\nx = 2\n[DEFAULT]\nx = 1\ny = 3\n");
        let a = cfg.section("a");
        assert_eq!(a.value("x"), Some(&Value::Int(2)));
        assert_eq!(a.value("y"), Some(&Value::Int(3)));
        assert_eq!(a.line("y"), Some(5));
    }

    #[test]
    fn first_delimiter_wins() {
        let e = parse_err("[s]\na = b = 'x'\n");
        // "b = 'x'" is the value, which is not a literal.
        assert_eq!(e.key.as_deref(), Some("[s] a"));
        assert_eq!(
            e.message,
            "unexpected 'b' at column 5: only literals are allowed"
        );
        let cfg = parse("[s]\na: 'x=y'\nb = 'p:q'\n");
        assert_eq!(cfg.section("s").value("a"), Some(&s("x=y")));
        assert_eq!(cfg.section("s").value("b"), Some(&s("p:q")));
    }

    #[test]
    fn keys_are_case_sensitive_and_stripped() {
        let cfg = parse("[s]\n  CaseKey   =   1  \ncasekey=2\nspaced key = 3\n");
        let sec = cfg.section("s");
        assert_eq!(sec.value("CaseKey"), Some(&Value::Int(1)));
        assert_eq!(sec.value("casekey"), Some(&Value::Int(2)));
        assert_eq!(sec.value("spaced key"), Some(&Value::Int(3)));
        assert_eq!(sec.keys(), vec!["CaseKey", "casekey", "spaced key"]);
    }

    #[test]
    fn section_names_are_case_sensitive_and_py_is_dropped() {
        let cfg = parse("[Greylist]\na = 1\n[greylist.py]\nb = 2\n[ spaced ]\n");
        assert_eq!(cfg.section_names(), vec!["Greylist", "greylist", "spaced"]);
        assert!(cfg.section("greylist").has("b"));
        assert!(cfg.section("greylist.py").has("b"));
        assert!(!cfg.section("greylist").has("a"));
        assert_eq!(cfg.section("greylist.py").name(), "greylist");
        assert_eq!(cfg.section_line("greylist"), Some(3));
        assert_eq!(cfg.section_line("nothere"), None);
    }

    #[test]
    fn continuation_lines() {
        let cfg = parse(
            "[privateaddr]\n\
             private_rcpts = { 'help@ee.washington.edu': ['[^@]*@.*washington.edu'],\n\
             \x20   'staff@ee.washington.edu': ['[^@]*@.*washington.edu',\n\
             \n\
             \x20                              'someone@example.com'],\n\
             \x20   }\n\
             \n\
             \n\
             next = [\n\
             \t1,\n\
             \t2]\n\
             third =\n\
             \x20 60 * 60\n",
        );
        let sec = cfg.section("privateaddr");
        assert_eq!(
            sec.value("private_rcpts"),
            Some(&Value::Dict(vec![
                (
                    s("help@ee.washington.edu"),
                    Value::List(vec![s("[^@]*@.*washington.edu")])
                ),
                (
                    s("staff@ee.washington.edu"),
                    Value::List(vec![s("[^@]*@.*washington.edu"), s("someone@example.com")])
                ),
            ]))
        );
        assert_eq!(sec.value("next"), Some(&Value::List(ints(&[1, 2]))));
        assert_eq!(sec.value("third"), Some(&Value::Int(3600)));
        assert_eq!(sec.line("next"), Some(9));
    }

    #[test]
    fn blank_lines_inside_values_are_kept() {
        // A triple-quoted string keeps the blank line; trailing blank lines are dropped.
        let cfg = parse("[s]\nt = '''a\n\n  b'''\n\n\n[u]\n");
        assert_eq!(cfg.section("s").value("t"), Some(&s("a\n\nb")));
    }

    #[test]
    fn crlf_is_tolerated() {
        let cfg = parse("[s]\r\na = {'x': 1,\r\n  'y': 2}\r\nb = 'v'\r\n");
        let sec = cfg.section("s");
        assert_eq!(
            sec.value("a"),
            Some(&Value::Dict(vec![
                (s("x"), Value::Int(1)),
                (s("y"), Value::Int(2))
            ]))
        );
        assert_eq!(sec.value("b"), Some(&s("v")));
    }

    #[test]
    fn indented_line_after_header_is_a_key() {
        let cfg = parse("[s]\n   a = 1\n   b = 2\n");
        assert_eq!(cfg.section("s").keys(), vec!["a", "b"]);
    }

    #[test]
    fn shipped_example_values() {
        // The active and commented-out values of the shipped file (spec §2.4, §2.5).
        let cfg = parse(
            "[ttldb]\ntype = 'dbm'\ndir = '/var/lib/pythonfilter'\n\
             host = 'localhost'\nport = '5432'\ndb = 'pythonfilter'\nuser = 'pythonfilter'\n\
             password = 'password'\n\
             [quarantine]\nsiteid = '7d35f0b0-4a07-40a6-b513-f28bd50476d3'\n\
             dir = '/var/lib/pythonfilter/quarantine'\ndays = 14\nnotify_recipient = 1\n\
             also_notify = 'postmaster@example.com'\nuser_release = 1\n\
             [attachments.py]\n\
             blocked_pattern = r'^.*\\.(scr|exe|com|bat|pif|lnk|sys|mid|vb|js|ws|shs|ceo|cmd|cpl|hta|vbs)$'\n\
             [auto_whitelist.py]\nwhitelist_ttl = 60 * 60 * 24 * 30\nwhitelist_purge_interval = 60 * 60 * 12\n\
             [dialback.py]\nsenders_ttl = 60 * 60 * 24 * 7\npostmaster_addr = 'postmaster@example.com'\n\
             [greylist.py]\nsenders_purge_interval = 60 * 60 * 2\nsenders_passed_ttl = 60 * 60 * 24 * 36\n\
             senders_not_passed_ttl = 60 * 60 * 24\ngreylist_time = 300\n\
             [localsenders.py]\nrequire_auth = True\n\
             [ratelimit.py]\nmax_connections = 60\ninterval = 1\nlimit_network = False\n\
             [spamassassin.py]\nspamc_path = '/usr/local/bin/spamc'\nmax_msg_size = 512000\n\
             username = 'spamuser'\nreject_score = 10\n\
             [clamav.py]\nlocal_socket = '/tmp/clamd'\naction = 'quarantine'\n\
             [whitelist_dnswl.py]\ndnswl_zone = ['list.dnswl.org']\n\
             [add_signature.py]\ndomains = {'': '/etc/courier/signatures/default'}\n",
        );
        assert_eq!(cfg.section("ttldb").value("port"), Some(&s("5432")));
        assert_eq!(
            cfg.section("quarantine").value("days"),
            Some(&Value::Int(14))
        );
        assert_eq!(
            cfg.section("auto_whitelist").value("whitelist_ttl"),
            Some(&Value::Int(2592000))
        );
        assert_eq!(
            cfg.section("greylist").value("senders_passed_ttl"),
            Some(&Value::Int(3110400))
        );
        assert_eq!(
            cfg.section("localsenders").value("require_auth"),
            Some(&Value::Bool(true))
        );
        assert_eq!(
            cfg.section("whitelist_dnswl").value("dnswl_zone"),
            Some(&Value::List(vec![s("list.dnswl.org")]))
        );
        assert_eq!(
            cfg.section("attachments").value("blocked_pattern"),
            Some(&s(
                r"^.*\.(scr|exe|com|bat|pif|lnk|sys|mid|vb|js|ws|shs|ceo|cmd|cpl|hta|vbs)$"
            ))
        );
        assert_eq!(cfg.section_names().len(), 12);
    }

    #[test]
    fn structural_errors_name_file_and_line() {
        let e = parse_err("# comment\nkey = 1\n[s]\n");
        assert_eq!(
            e.file.as_deref(),
            Some(Path::new("/etc/rustfilter-modules.conf"))
        );
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("expected a section header"), "{e}");

        let e = parse_err("[s]\na = 1\njust some words\n");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("cannot parse 'just some words'"), "{e}");
        assert_eq!(
            e.to_string(),
            "/etc/rustfilter-modules.conf:3: cannot parse 'just some words': expected \
             'key = value', a [section] header or a # comment"
        );

        let e = parse_err("[s]\n= 1\n");
        assert!(e.message.contains("missing key name"), "{e}");

        let e = parse_err("[greylist]\na = 1\n\n[greylist.py]\n");
        assert_eq!(e.line, Some(4));
        assert!(
            e.message
                .contains("duplicate section [greylist.py] (already at line 1"),
            "{e}"
        );

        let e = parse_err("[s]\na = 1\n[t]\n[s]\n");
        assert_eq!(e.line, Some(4));

        let e = parse_err("[s]\na = 1\nb = 2\na = 3\n");
        assert_eq!(e.line, Some(4));
        assert_eq!(e.key.as_deref(), Some("[s] a"));
        assert!(
            e.message
                .contains("duplicate key 'a' in section [s] (first set at line 2)")
        );

        for bad in ["[s", "[a]b]", "[]", "[.py]", "[s] x"] {
            let e = parse_err(&format!("{bad}\n"));
            assert_eq!(e.line, Some(1), "{bad}");
        }
    }

    #[test]
    fn repeated_default_section_continues() {
        let cfg = parse("[DEFAULT]\na = 1\n[s]\n[DEFAULT]\nb = 2\n");
        let sec = cfg.section("s");
        assert!(sec.has("a") && sec.has("b"));
        let e = parse_err("[DEFAULT]\na = 1\n[DEFAULT]\na = 2\n");
        assert_eq!(e.line, Some(4));
    }

    #[test]
    fn value_errors_point_into_the_file() {
        let e = parse_err("[s]\nfine = 1\nbad = __import__('os')\n");
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key.as_deref(), Some("[s] bad"));
        assert_eq!(
            e.message,
            "unexpected '__import__' at column 7: only literals are allowed"
        );
        assert_eq!(
            e.to_string(),
            "/etc/rustfilter-modules.conf:3: [s] bad: unexpected '__import__' at column 7: \
             only literals are allowed"
        );

        // An error on a continuation line names that line, and its column in the file.
        let e = parse_err("[s]\nd = {'a': 1,\n# comment\n\n     'b': os}\n");
        assert_eq!(e.line, Some(5));
        assert_eq!(
            e.message,
            "unexpected 'os' at column 11: only literals are allowed"
        );

        let e = parse_err("[s]\nd = [1,\n  2\n");
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("'[' is never closed at column 5"), "{e}");

        let e = parse_err("[DEFAULT]\nx = 1 / 0\n");
        assert_eq!(e.key.as_deref(), Some("[DEFAULT] x"));
        assert!(e.message.contains("division by zero"));

        let e = parse_err("[s]\nk = # nothing\n");
        assert!(e.message.starts_with("empty value"));
    }

    #[test]
    fn load_reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rustfilter-modules.conf");
        std::fs::write(&path, FIXTURE).unwrap();
        let cfg = ModulesConfig::load(&path).unwrap();
        assert_eq!(cfg.path.as_deref(), Some(path.as_path()));
        assert!(cfg.section("test3").has("adict"));

        let e = ModulesConfig::load(&dir.path().join("nope.conf")).unwrap_err();
        assert!(
            e.to_string().contains("nope.conf: cannot read the file"),
            "{e}"
        );
    }

    #[test]
    fn empty_config_has_empty_sections() {
        let cfg = ModulesConfig::empty();
        assert!(cfg.section_names().is_empty());
        assert!(!cfg.section("greylist").has("x"));
        assert!(cfg.path.is_none());
        let cfg = parse("");
        assert!(cfg.section_names().is_empty());
        let cfg = parse("# only comments\n\n; here\n");
        assert!(cfg.section_names().is_empty());
    }
}
