//! Lookups in Courier's configuration: `me`, `defaultdomain`, `dsnfrom`, `esmtphelo`,
//! `locallowercase`, `locals`, and the `.dat` files. Domains compare case-insensitively
//! (DECISIONS §7). Files are re-read when they change (a `stat` per lookup), so an
//! administrator's edit takes effect without a restart.

use std::io;
use std::path::Path;

use super::paths::CourierPaths;

pub struct Courier {
    paths: CourierPaths,
}

impl Courier {
    pub fn new(paths: CourierPaths) -> Courier {
        Courier { paths }
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

    /// First line of `S/me`, else the host name; cached for the life of the process.
    pub fn me(&self) -> String {
        todo!("courier/config.rs")
    }

    /// First line of `S/defaultdomain`, else `me()`.
    pub fn defaultdomain(&self) -> String {
        todo!("courier/config.rs")
    }

    /// First line of `S/dsnfrom`, else `"Courier mail server at <me>" <@>`.
    pub fn dsnfrom(&self) -> String {
        todo!("courier/config.rs")
    }

    /// First line of `S/esmtphelo`, else `me()` (`*` also gives `me()`; the PTR form needs
    /// the DNS layer and a connection, which callers handle).
    pub fn esmtphelo(&self) -> String {
        todo!("courier/config.rs")
    }

    /// Whether `S/locallowercase` exists.
    pub fn locallowercase(&self) -> bool {
        todo!("courier/config.rs")
    }

    /// The `locals` rules (`!x` exclusion, `.x` suffix, exact), first match wins; without the
    /// file, `domain == me()`. Case-insensitive.
    pub fn is_local(&self, domain: &str) -> io::Result<bool> {
        let _ = domain;
        todo!("courier/config.rs")
    }

    /// `hosteddomains.dat`: the domain, then each `.parent` suffix. A missing file is `false`;
    /// an unreadable or corrupt one is an error.
    pub fn is_hosteddomain(&self, domain: &str) -> io::Result<bool> {
        let _ = domain;
        todo!("courier/config.rs")
    }

    /// `aliases.dat` lookup with the reference's normalisation (local domains → `@me`, no `@`
    /// → `@me`).
    pub fn get_alias(&self, address: &str) -> io::Result<Option<Vec<String>>> {
        let _ = address;
        todo!("courier/config.rs")
    }

    /// Longest-prefix lookup in `smtpaccess.dat` (IPv4 `a.b.c.d` → `a.b.c` → …; IPv6 exploded
    /// with a leading `:`).
    pub fn smtpaccess(&self, ip: &str) -> io::Result<Option<String>> {
        let _ = ip;
        todo!("courier/config.rs")
    }

    /// `KEY` → `Some("")`, `KEY=v` → `Some("v")`, absent → `None`, from the first matching entry.
    pub fn smtpaccess_val(&self, key: &str, ip: &str) -> io::Result<Option<String>> {
        let _ = (key, ip);
        todo!("courier/config.rs")
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
