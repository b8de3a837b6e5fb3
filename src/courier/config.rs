//! Lookups in Courier's configuration: `me`, `defaultdomain`, `dsnfrom`, `esmtphelo`,
//! `locallowercase`, `locals`, and the `.dat` files. Domains compare case-insensitively
//! (DECISIONS §7). Files are re-read when they change (a `stat` per lookup), so an
//! administrator's edit takes effect without a restart.

use std::cell::OnceCell;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::dat::DatFile;
use super::paths::CourierPaths;
use super::watch::WatchedFile;

/// One rule of the `locals` file, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LocalRule {
    /// `!domain`: this exact domain is not local (final).
    Not(String),
    /// `.suffix`: any domain ending with the suffix (dot included) is local.
    Suffix(String),
    /// An exact domain.
    Exact(String),
}

fn parse_locals(data: &[u8]) -> Vec<LocalRule> {
    let text = String::from_utf8_lossy(data);
    let mut rules = Vec::new();
    for line in text.split('\n') {
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim();
        // The reference crashes on a whitespace-only line; such a line means nothing.
        if line.is_empty() {
            continue;
        }
        let line = line.to_ascii_lowercase();
        let rule = if let Some(rest) = line.strip_prefix('!') {
            LocalRule::Not(rest.to_string())
        } else if line.starts_with('.') {
            LocalRule::Suffix(line)
        } else {
            LocalRule::Exact(line)
        };
        rules.push(rule);
    }
    rules
}

/// The stripped first line of a single-line config file; `None` when it is empty.
fn parse_first_line(data: &[u8]) -> Option<String> {
    let first = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(first).trim().to_string();
    if line.is_empty() { None } else { Some(line) }
}

/// The machine's host name, for `me()` without `S/me`.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `len` bytes; gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        log::warn!("gethostname failed: {}", io::Error::last_os_error());
        return "localhost".to_string();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// How an address given to `smtpaccess` is walked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AccessKey {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// Parse a client address for `smtpaccess`: IPv4, IPv6 (a `%zone` suffix is dropped), and an
/// IPv4-mapped IPv6 address as IPv4 (couriertcpd looks those up in IPv4 form).
fn access_key(ip: &str) -> Option<AccessKey> {
    let ip = ip.trim();
    if let Ok(v4) = ip.parse::<Ipv4Addr>() {
        return Some(AccessKey::V4(v4));
    }
    let without_zone = ip.split_once('%').map_or(ip, |(addr, _)| addr);
    match without_zone.parse::<Ipv6Addr>() {
        Ok(v6) => Some(match v6.to_ipv4_mapped() {
            Some(v4) => AccessKey::V4(v4),
            None => AccessKey::V6(v6),
        }),
        Err(_) => None,
    }
}

/// The keys tried for one address, most specific first: `a.b.c.d`, `a.b.c`, `a.b`, `a`, or
/// `:g1:…:g8` down to `:g1` (groups of 4 lower-case hex digits).
fn access_keys(key: &AccessKey) -> Vec<String> {
    let parts: Vec<String> = match key {
        AccessKey::V4(v4) => v4.octets().iter().map(|o| o.to_string()).collect(),
        AccessKey::V6(v6) => v6.segments().iter().map(|g| format!("{g:04x}")).collect(),
    };
    let (lead, sep) = match key {
        AccessKey::V4(_) => ("", "."),
        AccessKey::V6(_) => (":", ":"),
    };
    (1..=parts.len())
        .rev()
        .map(|n| format!("{lead}{}", parts[..n].join(sep)))
        .collect()
}

pub struct Courier {
    paths: CourierPaths,
    me: OnceCell<String>,
    me_file: WatchedFile<Option<String>>,
    defaultdomain_file: WatchedFile<Option<String>>,
    dsnfrom_file: WatchedFile<Option<String>>,
    esmtphelo_file: WatchedFile<Option<String>>,
    locals: WatchedFile<Vec<LocalRule>>,
    hosteddomains: DatFile,
    aliases: DatFile,
    smtpaccess: DatFile,
}

impl Courier {
    pub fn new(paths: CourierPaths) -> Courier {
        let s = paths.sysconfdir.clone();
        let first_line = |name: &str| WatchedFile::new(s.join(name), parse_first_line);
        Courier {
            me: OnceCell::new(),
            me_file: first_line("me"),
            defaultdomain_file: first_line("defaultdomain"),
            dsnfrom_file: first_line("dsnfrom"),
            esmtphelo_file: first_line("esmtphelo"),
            locals: WatchedFile::new(s.join("locals"), parse_locals),
            hosteddomains: DatFile::new(&s.join("hosteddomains.dat")),
            aliases: DatFile::new(&s.join("aliases.dat")),
            smtpaccess: DatFile::new(&s.join("smtpaccess.dat")),
            paths,
        }
    }

    pub fn paths(&self) -> &CourierPaths {
        &self.paths
    }

    pub fn sysconfdir(&self) -> &Path {
        &self.paths.sysconfdir
    }

    pub fn localstatedir(&self) -> &Path {
        &self.paths.localstatedir
    }

    /// The first line of a single-line config file, `None` when absent or empty. An unreadable
    /// file counts as absent, as in the reference, but is logged.
    fn first_line(&self, file: &WatchedFile<Option<String>>) -> Option<String> {
        match file.get() {
            Ok(value) => value.and_then(|v| (*v).clone()),
            Err(e) => {
                log::warn!("cannot read {}: {e}", file.path().display());
                None
            }
        }
    }

    /// First line of `S/me`, else the host name; cached for the life of the process.
    pub fn me(&self) -> String {
        self.me
            .get_or_init(|| self.first_line(&self.me_file).unwrap_or_else(hostname))
            .clone()
    }

    /// First line of `S/defaultdomain`, else `me()`.
    pub fn defaultdomain(&self) -> String {
        self.first_line(&self.defaultdomain_file)
            .unwrap_or_else(|| self.me())
    }

    /// First line of `S/dsnfrom`, else `"Courier mail server at <me>" <@>`.
    pub fn dsnfrom(&self) -> String {
        self.first_line(&self.dsnfrom_file)
            .unwrap_or_else(|| format!("\"Courier mail server at {}\" <@>", self.me()))
    }

    /// First line of `S/esmtphelo`, else `me()` (`*` also gives `me()`; the PTR form needs
    /// the DNS layer and a connection, which callers handle).
    pub fn esmtphelo(&self) -> String {
        match self.first_line(&self.esmtphelo_file) {
            Some(helo) if helo != "*" => helo,
            _ => self.me(),
        }
    }

    /// Whether `S/locallowercase` exists.
    pub fn locallowercase(&self) -> bool {
        fs::metadata(self.paths.sysconfdir.join("locallowercase")).is_ok()
    }

    /// The `locals` rules (`!x` exclusion, `.x` suffix, exact), first match wins; without the
    /// file, `domain == me()`. Case-insensitive.
    pub fn is_local(&self, domain: &str) -> io::Result<bool> {
        let domain = domain.to_ascii_lowercase();
        let Some(rules) = self.locals.get()? else {
            return Ok(domain == self.me().to_ascii_lowercase());
        };
        for rule in rules.iter() {
            match rule {
                LocalRule::Not(d) if *d == domain => return Ok(false),
                LocalRule::Suffix(s) if domain.ends_with(s.as_str()) => return Ok(true),
                LocalRule::Exact(d) if *d == domain => return Ok(true),
                _ => {}
            }
        }
        Ok(false)
    }

    /// Look a domain-ish key up lower-cased, and as given when that differs (an entry an
    /// administrator wrote in capitals still matches).
    fn dat_lookup_domain(dat: &DatFile, key: &str) -> io::Result<Option<Vec<u8>>> {
        let lower = key.to_ascii_lowercase();
        if let Some(v) = dat.get(lower.as_bytes())? {
            return Ok(Some(v));
        }
        if lower != key {
            return dat.get(key.as_bytes());
        }
        Ok(None)
    }

    /// `hosteddomains.dat`: the domain, then each `.parent` suffix. A missing file is `false`;
    /// an unreadable or corrupt one is an error.
    pub fn is_hosteddomain(&self, domain: &str) -> io::Result<bool> {
        if Self::dat_lookup_domain(&self.hosteddomains, domain)?.is_some() {
            return Ok(true);
        }
        for (pos, _) in domain.match_indices('.') {
            if pos == 0 {
                continue; // `.x` itself was tried above
            }
            if Self::dat_lookup_domain(&self.hosteddomains, &domain[pos..])?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `aliases.dat` lookup with the reference's normalisation (local domains → `@me`, no `@`
    /// → `@me`).
    pub fn get_alias(&self, address: &str) -> io::Result<Option<Vec<String>>> {
        // makealiases stores keys with the domain lower-cased and the local part as written.
        let key = match address.split_once('@') {
            Some((local, domain)) => {
                if self.is_local(domain)? {
                    format!("{local}@{}", self.me().to_ascii_lowercase())
                } else {
                    format!("{local}@{}", domain.to_ascii_lowercase())
                }
            }
            None => format!("{address}@{}", self.me().to_ascii_lowercase()),
        };
        let Some(value) = self.aliases.get(key.as_bytes())? else {
            return Ok(None);
        };
        let value = String::from_utf8_lossy(&value);
        Ok(Some(value.trim().split('\n').map(str::to_string).collect()))
    }

    /// Longest-prefix lookup in `smtpaccess.dat` (IPv4 `a.b.c.d` → `a.b.c` → …; IPv6 exploded
    /// with a leading `:`). An IPv4-mapped IPv6 address is looked up as IPv4; an address that
    /// cannot be parsed is logged and gives `None`.
    pub fn smtpaccess(&self, ip: &str) -> io::Result<Option<String>> {
        let Some(key) = access_key(ip) else {
            log::warn!("Couldn't break {ip} into parts");
            return Ok(None);
        };
        for k in access_keys(&key) {
            if let Some(v) = self.smtpaccess.get(k.as_bytes())? {
                return Ok(Some(String::from_utf8_lossy(&v).into_owned()));
            }
        }
        Ok(None)
    }

    /// `KEY` → `Some("")`, `KEY=v` → `Some("v")`, absent → `None`, from the first matching entry.
    pub fn smtpaccess_val(&self, key: &str, ip: &str) -> io::Result<Option<String>> {
        let Some(value) = self.smtpaccess(ip)? else {
            return Ok(None);
        };
        for item in value.split(',') {
            if item == key {
                return Ok(Some(String::new()));
            }
            if let Some(rest) = item.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
                return Ok(Some(rest.to_string()));
            }
        }
        Ok(None)
    }
    pub fn is_relayed(&self, ip: &str) -> io::Result<bool> {
        Ok(self.smtpaccess_val("RELAYCLIENT", ip)?.is_some())
    }

    pub fn is_whiteblocked(&self, ip: &str) -> io::Result<bool> {
        Ok(self.smtpaccess_val("BLOCK", ip)?.as_deref() == Some(""))
    }

    pub fn block_val(&self, ip: &str) -> io::Result<Option<String>> {
        self.smtpaccess_val("BLOCK", ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn courier_in(dir: &Path) -> Courier {
        let mut paths = CourierPaths::defaults();
        paths.sysconfdir = dir.to_path_buf();
        paths.localstatedir = dir.join("spool");
        Courier::new(paths)
    }

    #[test]
    fn single_line_files_and_fallbacks() {
        let dir = tempfile::tempdir().unwrap();
        let c = courier_in(dir.path());
        // no files at all
        let host = hostname();
        assert!(!host.is_empty());
        assert_eq!(c.defaultdomain(), c.me());
        assert_eq!(
            c.dsnfrom(),
            format!("\"Courier mail server at {}\" <@>", c.me())
        );
        assert_eq!(c.esmtphelo(), c.me());
        assert!(!c.locallowercase());

        fs::write(
            dir.path().join("defaultdomain"),
            "  example.org \r\nsecond\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("dsnfrom"),
            "\"Mailer\" <mailer@example.org>\n",
        )
        .unwrap();
        fs::write(dir.path().join("esmtphelo"), "helo.example.org\n").unwrap();
        fs::write(dir.path().join("locallowercase"), "").unwrap();
        assert_eq!(c.defaultdomain(), "example.org");
        assert_eq!(c.dsnfrom(), "\"Mailer\" <mailer@example.org>");
        assert_eq!(c.esmtphelo(), "helo.example.org");
        assert!(c.locallowercase());

        // `*` and an empty file fall back to me()
        fs::write(dir.path().join("esmtphelo"), "*\n").unwrap();
        assert_eq!(c.esmtphelo(), c.me());
        fs::write(dir.path().join("defaultdomain"), "\n").unwrap();
        assert_eq!(c.defaultdomain(), c.me());
    }

    #[test]
    fn me_from_file_is_cached_for_the_process() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("me"), "mx.example.org\n").unwrap();
        let c = courier_in(dir.path());
        assert_eq!(c.me(), "mx.example.org");
        fs::write(dir.path().join("me"), "other.example.org\n").unwrap();
        assert_eq!(c.me(), "mx.example.org");
        assert_eq!(c.dsnfrom(), "\"Courier mail server at mx.example.org\" <@>");
    }

    #[test]
    fn me_without_file_is_the_hostname() {
        let dir = tempfile::tempdir().unwrap();
        let c = courier_in(dir.path());
        assert_eq!(c.me(), hostname());
    }

    #[test]
    fn locals_rules() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("me"), "mx.example.org").unwrap();
        let c = courier_in(dir.path());
        // without the file: only me(), case-insensitively
        assert!(c.is_local("mx.example.org").unwrap());
        assert!(c.is_local("MX.Example.ORG").unwrap());
        assert!(!c.is_local("example.org").unwrap());

        fs::write(
            dir.path().join("locals"),
            "# comment\r\n\r\n   \t\r\n!no.example.com\r\n.Example.com\r\nExact.org\r\n",
        )
        .unwrap();
        assert!(!c.is_local("no.example.com").unwrap());
        assert!(!c.is_local("NO.example.com").unwrap());
        assert!(c.is_local("a.example.com").unwrap());
        assert!(c.is_local("x.A.EXAMPLE.com").unwrap());
        assert!(!c.is_local("example.com").unwrap());
        assert!(c.is_local("exact.org").unwrap());
        assert!(!c.is_local("sub.exact.org").unwrap());
        // with a locals file, me() is not implicitly local
        assert!(!c.is_local("mx.example.org").unwrap());

        // the file is re-read when it changes
        fs::write(dir.path().join("locals"), "mx.example.org\n").unwrap();
        assert!(c.is_local("mx.example.org").unwrap());
        assert!(!c.is_local("exact.org").unwrap());
    }

    #[test]
    fn exclusion_only_helps_before_a_broader_rule() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("locals"), ".example.com\n!no.example.com\n").unwrap();
        let c = courier_in(dir.path());
        assert!(c.is_local("no.example.com").unwrap());
    }

    #[test]
    fn unreadable_locals_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("locals")).unwrap();
        let c = courier_in(dir.path());
        assert!(c.is_local("x").is_err());
    }

    #[test]
    fn hosteddomains_walks_parents() {
        let dir = tempfile::tempdir().unwrap();
        let c = courier_in(dir.path());
        assert!(!c.is_hosteddomain("a.example.net").unwrap());
        crate::courier::dat::tests::make_db(
            &dir.path().join("hosteddomains.dat"),
            &[
                ("hosted.example.net", "1"),
                (".wild.example.org", "1"),
                ("Upper.Example", "1"),
            ],
        );
        assert!(c.is_hosteddomain("hosted.example.net").unwrap());
        assert!(c.is_hosteddomain("HOSTED.example.NET").unwrap());
        assert!(!c.is_hosteddomain("a.hosted.example.net").unwrap());
        assert!(!c.is_hosteddomain("wild.example.org").unwrap());
        assert!(c.is_hosteddomain("a.wild.example.org").unwrap());
        assert!(c.is_hosteddomain("x.y.WILD.example.org").unwrap());
        assert!(c.is_hosteddomain("Upper.Example").unwrap());
        assert!(!c.is_hosteddomain("").unwrap());
        assert!(!c.is_hosteddomain(".").unwrap());
    }

    #[test]
    fn corrupt_dat_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("hosteddomains.dat"),
            "garbage garbage garbage",
        )
        .unwrap();
        let c = courier_in(dir.path());
        assert!(c.is_hosteddomain("x.example").is_err());
    }

    #[test]
    fn aliases_normalisation() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("me"), "MX.example.org").unwrap();
        fs::write(dir.path().join("locals"), "mx.example.org\nlocal.example\n").unwrap();
        crate::courier::dat::tests::make_db(
            &dir.path().join("aliases.dat"),
            &[
                ("postmaster@mx.example.org", "root@mx.example.org\n"),
                ("Sales@example.com", "a@mx.example.org\nb@example.com\n"),
            ],
        );
        let c = courier_in(dir.path());
        let root = Some(vec!["root@mx.example.org".to_string()]);
        assert_eq!(c.get_alias("postmaster").unwrap(), root);
        assert_eq!(c.get_alias("postmaster@local.example").unwrap(), root);
        assert_eq!(c.get_alias("postmaster@LOCAL.example").unwrap(), root);
        assert_eq!(c.get_alias("postmaster@mx.example.org").unwrap(), root);
        assert_eq!(c.get_alias("Postmaster").unwrap(), None);
        assert_eq!(
            c.get_alias("Sales@EXAMPLE.com").unwrap(),
            Some(vec![
                "a@mx.example.org".to_string(),
                "b@example.com".to_string()
            ])
        );
        assert_eq!(c.get_alias("nobody@example.com").unwrap(), None);
    }

    #[test]
    fn access_keys_order() {
        let k = access_key("192.168.1.20").unwrap();
        assert_eq!(
            access_keys(&k),
            ["192.168.1.20", "192.168.1", "192.168", "192"]
        );
        let k = access_key("2001:DB8::1").unwrap();
        assert_eq!(
            access_keys(&k),
            [
                ":2001:0db8:0000:0000:0000:0000:0000:0001",
                ":2001:0db8:0000:0000:0000:0000:0000",
                ":2001:0db8:0000:0000:0000:0000",
                ":2001:0db8:0000:0000:0000",
                ":2001:0db8:0000:0000",
                ":2001:0db8:0000",
                ":2001:0db8",
                ":2001",
            ]
        );
        assert_eq!(
            access_key("::ffff:10.1.2.3"),
            Some(AccessKey::V4(Ipv4Addr::new(10, 1, 2, 3)))
        );
        assert_eq!(access_key("fe80::1%eth0"), access_key("fe80::1"));
        assert_eq!(access_key("nonsense"), None);
        assert_eq!(access_key("1.2.3"), None);
        assert_eq!(access_key(""), None);
    }

    #[test]
    fn smtpaccess_walk_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let c = courier_in(dir.path());
        assert_eq!(c.smtpaccess("127.0.0.1").unwrap(), None);
        crate::courier::dat::tests::make_db(
            &dir.path().join("smtpaccess.dat"),
            &[
                ("127.0.0.1", "allow,RELAYCLIENT"),
                ("10", "allow,BLOCK=go away,X=1"),
                ("10.1", "allow"),
                (":2001:0db8", "deny"),
            ],
        );
        assert_eq!(
            c.smtpaccess("127.0.0.1").unwrap().as_deref(),
            Some("allow,RELAYCLIENT")
        );
        assert_eq!(
            c.smtpaccess("::ffff:127.0.0.1").unwrap().as_deref(),
            Some("allow,RELAYCLIENT")
        );
        assert_eq!(c.smtpaccess("127.0.0.2").unwrap(), None);
        assert_eq!(
            c.smtpaccess("10.2.3.4").unwrap().as_deref(),
            Some("allow,BLOCK=go away,X=1")
        );
        // the first hit wins entirely
        assert_eq!(c.smtpaccess("10.1.3.4").unwrap().as_deref(), Some("allow"));
        assert_eq!(c.smtpaccess_val("BLOCK", "10.1.3.4").unwrap(), None);
        assert_eq!(
            c.smtpaccess("2001:db8:1::5").unwrap().as_deref(),
            Some("deny")
        );
        assert_eq!(c.smtpaccess("not an ip").unwrap(), None);
        assert_eq!(
            c.smtpaccess("2001:db8::9").unwrap().as_deref(),
            Some("deny")
        );

        assert_eq!(
            c.smtpaccess_val("RELAYCLIENT", "127.0.0.1")
                .unwrap()
                .as_deref(),
            Some("")
        );
        assert_eq!(
            c.smtpaccess_val("BLOCK", "10.9.9.9").unwrap().as_deref(),
            Some("go away")
        );
        assert_eq!(
            c.smtpaccess_val("X", "10.9.9.9").unwrap().as_deref(),
            Some("1")
        );
        // matching is exact: no prefix matches, no trimming
        assert_eq!(c.smtpaccess_val("BLOC", "10.9.9.9").unwrap(), None);
        assert_eq!(c.smtpaccess_val("RELAY", "127.0.0.1").unwrap(), None);
        assert!(c.is_relayed("127.0.0.1").unwrap());
        assert!(!c.is_whiteblocked("10.9.9.9").unwrap());
        assert_eq!(c.block_val("10.9.9.9").unwrap().as_deref(), Some("go away"));
    }

    #[test]
    fn paths_accessors() {
        let dir = tempfile::tempdir().unwrap();
        let c = courier_in(dir.path());
        assert_eq!(c.sysconfdir(), dir.path());
        assert_eq!(c.localstatedir(), dir.path().join("spool"));
        assert_eq!(c.paths().sysconfdir, dir.path());
    }
}
