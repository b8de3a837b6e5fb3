//! Courier's directories, from `courier-config` on PATH (as the reference), with the built-in
//! defaults when it cannot be run, and `--sysconfdir` / `--localstatedir` overrides.

use std::path::PathBuf;
use std::process::{Command, Stdio};

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
        CourierPaths {
            prefix: PathBuf::from("/usr/lib/courier"),
            bindir: PathBuf::from("/usr/lib/courier/bin"),
            sbindir: PathBuf::from("/usr/lib/courier/sbin"),
            libexecdir: PathBuf::from("/usr/lib/courier/libexec"),
            sysconfdir: PathBuf::from("/etc/courier"),
            localstatedir: PathBuf::from("/var/spool/courier"),
            mailuser: "daemon".to_string(),
            mailgroup: "daemon".to_string(),
        }
    }

    /// Run `courier-config` (found on PATH), keep the defaults for what it does not say, then
    /// apply the overrides.
    pub fn discover(overrides: &PathOverrides) -> CourierPaths {
        let mut paths = match run_courier_config() {
            Ok(output) => CourierPaths::from_courier_config_output(&output),
            Err(e) => {
                log::warn!("cannot run courier-config ({e}); using the built-in Courier paths");
                CourierPaths::defaults()
            }
        };
        paths.apply(overrides);
        paths
    }

    /// Parse `courier-config` output (`name=value` lines) over the defaults.
    pub fn from_courier_config_output(output: &str) -> CourierPaths {
        let mut paths = CourierPaths::defaults();
        for line in output.lines() {
            // Split at the first `=`; the name is taken as written, the value is stripped.
            let Some((name, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match name {
                "prefix" => paths.prefix = PathBuf::from(value),
                "bindir" => paths.bindir = PathBuf::from(value),
                "sbindir" => paths.sbindir = PathBuf::from(value),
                "libexecdir" => paths.libexecdir = PathBuf::from(value),
                "sysconfdir" => paths.sysconfdir = PathBuf::from(value),
                "localstatedir" => paths.localstatedir = PathBuf::from(value),
                "mailuser" => paths.mailuser = value.to_string(),
                "mailgroup" => paths.mailgroup = value.to_string(),
                _ => {}
            }
        }
        paths
    }

    /// Apply `--sysconfdir` / `--localstatedir`.
    pub fn apply(&mut self, overrides: &PathOverrides) {
        if let Some(dir) = &overrides.sysconfdir {
            self.sysconfdir = dir.clone();
        }
        if let Some(dir) = &overrides.localstatedir {
            self.localstatedir = dir.clone();
        }
    }
}

/// `courier-config`'s standard output. A failed exit status still yields what it printed,
/// since each line stands on its own.
fn run_courier_config() -> std::io::Result<String> {
    let output = Command::new("courier-config")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()?;
    if !output.status.success() {
        log::warn!("courier-config exited with {}", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_reference_table() {
        let d = CourierPaths::defaults();
        assert_eq!(d.prefix, PathBuf::from("/usr/lib/courier"));
        assert_eq!(d.bindir, PathBuf::from("/usr/lib/courier/bin"));
        assert_eq!(d.sbindir, PathBuf::from("/usr/lib/courier/sbin"));
        assert_eq!(d.libexecdir, PathBuf::from("/usr/lib/courier/libexec"));
        assert_eq!(d.sysconfdir, PathBuf::from("/etc/courier"));
        assert_eq!(d.localstatedir, PathBuf::from("/var/spool/courier"));
        assert_eq!(d.mailuser, "daemon");
        assert_eq!(d.mailgroup, "daemon");
    }

    #[test]
    fn parses_debian_output() {
        let out = "prefix=/usr\nexec_prefix=/usr\nbindir=/usr/bin\nsbindir=/usr/sbin\n\
                   libexecdir=/usr/lib/courier\nsysconfdir=/etc/courier\ndatadir=/usr/lib/courier\n\
                   localstatedir=/var/lib/courier\nmailuser=courier\nmailgroup=courier\n\
                   mailuid=0\nmailgid=0\nconfigure_args=\"'--prefix=/usr' 'x=y'\"\n";
        let p = CourierPaths::from_courier_config_output(out);
        assert_eq!(p.prefix, PathBuf::from("/usr"));
        assert_eq!(p.bindir, PathBuf::from("/usr/bin"));
        assert_eq!(p.sbindir, PathBuf::from("/usr/sbin"));
        assert_eq!(p.libexecdir, PathBuf::from("/usr/lib/courier"));
        assert_eq!(p.sysconfdir, PathBuf::from("/etc/courier"));
        assert_eq!(p.localstatedir, PathBuf::from("/var/lib/courier"));
        assert_eq!(p.mailuser, "courier");
        assert_eq!(p.mailgroup, "courier");
    }

    #[test]
    fn value_is_stripped_name_is_not_and_junk_is_skipped() {
        let out = "sysconfdir= /x/etc \r\n localstatedir=/ignored\nno equals sign\n\
                   mailuser=a=b\nunknown=1\n";
        let p = CourierPaths::from_courier_config_output(out);
        assert_eq!(p.sysconfdir, PathBuf::from("/x/etc"));
        // " localstatedir" is not a known name: the default stays
        assert_eq!(p.localstatedir, PathBuf::from("/var/spool/courier"));
        // split at the first `=` only
        assert_eq!(p.mailuser, "a=b");
    }

    #[test]
    fn overrides_win() {
        let mut p = CourierPaths::from_courier_config_output("sysconfdir=/etc/courier\n");
        p.apply(&PathOverrides {
            sysconfdir: Some(PathBuf::from("/tmp/s")),
            localstatedir: Some(PathBuf::from("/tmp/l")),
        });
        assert_eq!(p.sysconfdir, PathBuf::from("/tmp/s"));
        assert_eq!(p.localstatedir, PathBuf::from("/tmp/l"));
    }

    #[test]
    fn discover_runs_the_installed_courier_config_or_falls_back() {
        // Whatever courier-config says (or the defaults without it), the overrides apply and
        // nothing panics.
        let o = PathOverrides {
            sysconfdir: Some(PathBuf::from("/over")),
            localstatedir: None,
        };
        let p = CourierPaths::discover(&o);
        assert_eq!(p.sysconfdir, PathBuf::from("/over"));
        match run_courier_config() {
            Ok(out) => assert_eq!(
                p.localstatedir,
                CourierPaths::from_courier_config_output(&out).localstatedir
            ),
            Err(_) => assert_eq!(p.localstatedir, CourierPaths::defaults().localstatedir),
        }
    }
}
