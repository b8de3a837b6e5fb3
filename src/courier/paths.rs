//! Courier's directories, from `courier-config` on PATH (as the reference), with the built-in
//! defaults when it cannot be run, and `--sysconfdir` / `--localstatedir` overrides.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourierPaths {
    pub prefix: PathBuf,
    pub bindir: PathBuf,
    pub sbindir: PathBuf,
    pub libexecdir: PathBuf,
    pub sysconfdir: PathBuf,
    pub localstatedir: PathBuf,
    pub mailuser: String,
    pub mailgroup: String,
}

#[derive(Debug, Clone, Default)]
pub struct PathOverrides {
    pub sysconfdir: Option<PathBuf>,
    pub localstatedir: Option<PathBuf>,
}

impl CourierPaths {
    /// The reference's built-in defaults (`/etc/courier`, `/var/spool/courier`, …).
    pub fn defaults() -> CourierPaths {
        todo!("courier/paths.rs")
    }

    /// Run `courier-config` (found on PATH), keep the defaults for what it does not say, then
    /// apply the overrides.
    pub fn discover(overrides: &PathOverrides) -> CourierPaths {
        let _ = overrides;
        todo!("courier/paths.rs")
    }

    /// Parse `courier-config` output (`name=value` lines) over the defaults.
    pub fn from_courier_config_output(output: &str) -> CourierPaths {
        let _ = output;
        todo!("courier/paths.rs")
    }
}
