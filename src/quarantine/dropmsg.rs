//! `rustfilter dropmsg` (spec §5.6): walk Courier's queue (`L/msgs`) and move the messages that
//! match any criterion out of it, into `L/quarantine` (not the quarantine of this module).
//!
//! Fixed against the reference: each message is looked at once and dropped at most once, a
//! file that vanished (delivered meanwhile) is skipped instead of ending the walk, a DSN with
//! no recipients is no error, the extra control files `C<n>.1`, … go with their message, the
//! target directory is created (0700) when missing, nothing is overwritten there, `-i` matches
//! the address whatever its spelling (`::ffff:127.0.0.1` is `127.0.0.1`), and `-s` ignores the
//! case of the address.

use std::fs::{self, DirBuilder};
use std::io;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::courier::control::{Envelope, parse_client_ip};

/// How deep below `L/msgs` to look (Courier uses one level of subdirectories).
const MAX_DEPTH: usize = 4;

/// What to drop: messages submitted by one of `auth`, from one of `ips`, or with one of
/// `senders` as envelope sender (or, for a DSN, as its recipient).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Criteria {
    pub auth: Vec<String>,
    pub ips: Vec<String>,
    pub senders: Vec<String>,
}

impl Criteria {
    pub fn is_empty(&self) -> bool {
        self.auth.is_empty() && self.ips.is_empty() && self.senders.is_empty()
    }

    /// Which criterion matches the message, if any.
    pub fn matches(&self, envelope: &Envelope) -> Option<String> {
        if let Some(user) = envelope.auth_user()
            && self.auth.iter().any(|a| a == user)
        {
            return Some(format!("authenticated as {user}"));
        }
        if !self.ips.is_empty()
            && let Some(raw) = envelope
                .values(b'O')
                .into_iter()
                .find_map(|v| v.strip_prefix("TCPREMOTEIP="))
        {
            let ip: Option<IpAddr> = parse_client_ip(raw);
            let hit = self
                .ips
                .iter()
                .any(|given| match (parse_client_ip(given), ip) {
                    (Some(g), Some(ip)) => g == ip,
                    _ => given.trim() == raw.trim(),
                });
            if hit {
                return Some(format!("from {}", raw.trim()));
            }
        }
        if !self.senders.is_empty() {
            let sender = envelope.sender().unwrap_or_default();
            let listed = |addr: &str| self.senders.iter().any(|s| s.eq_ignore_ascii_case(addr));
            if listed(sender) {
                return Some(format!("sender <{sender}>"));
            }
            if sender.is_empty()
                && let Some(first) = envelope.recipients().first()
                && listed(&first.addr)
            {
                return Some(format!("DSN to <{}>", first.addr));
            }
        }
        None
    }
}

/// The usage text (spec §5.6, with this program's name and `L` expanded).
pub fn usage(localstatedir: &Path) -> String {
    format!(
        "Use: rustfilter dropmsg [-a authentication] [-i IP address] [-s email address]\n\
         \x20   The local system's queue will be walked.  Messages matching any given criteria will\n\
         \x20   be moved to a quarantine ({}/quarantine).  At least one argument is required.\n\
         \x20   -a: Messages queued using the given username\n\
         \x20   -i: Messages queued from the given IP address\n\
         \x20   -s: Messages with the given envelope sender's address or DSNs to that address\n",
        localstatedir.display()
    )
}

/// What a walk did.
#[derive(Debug, Default)]
pub struct Report {
    /// The main control file of each dropped message (its queue path) and why.
    pub dropped: Vec<(PathBuf, String)>,
    /// Messages that left the queue while we looked.
    pub vanished: Vec<PathBuf>,
    /// Problems that did not stop the walk.
    pub errors: Vec<String>,
}

/// `C<digits>`: a message's first control file.
fn is_main_control(name: &[u8]) -> bool {
    name.len() > 1 && name[0] == b'C' && name[1..].iter().all(u8::is_ascii_digit)
}

/// Walk `L/msgs` and move the matching messages to `L/quarantine`.
pub fn drop_messages(localstatedir: &Path, criteria: &Criteria) -> io::Result<Report> {
    let msgs = localstatedir.join("msgs");
    let target = localstatedir.join("quarantine");
    let mut controls = Vec::new();
    collect(&msgs, 0, &mut controls)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", msgs.display())))?;
    controls.sort();
    let mut report = Report::default();
    for control in controls {
        let mut files = vec![control.clone()];
        for k in 1.. {
            let extra = PathBuf::from(format!("{}.{k}", control.display()));
            if !extra.exists() {
                break;
            }
            files.push(extra);
        }
        let envelope = match Envelope::load(&files) {
            Ok(e) => e,
            Err(e) if e.error.kind() == io::ErrorKind::NotFound => {
                report.vanished.push(control);
                continue;
            }
            Err(e) => {
                report.errors.push(e.to_string());
                continue;
            }
        };
        let Some(why) = criteria.matches(&envelope) else {
            continue;
        };
        if let Err(e) = ensure_target(&target) {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", target.display()),
            ));
        }
        let name = control
            .file_name()
            .map(|n| n.as_bytes()[1..].to_vec())
            .unwrap_or_default();
        let data = control.with_file_name({
            let mut d = b"D".to_vec();
            d.extend_from_slice(&name);
            std::ffi::OsString::from(String::from_utf8_lossy(&d).into_owned())
        });
        files.push(data);
        let mut moved_any = false;
        for (i, file) in files.iter().enumerate() {
            match move_into(file, &target) {
                Ok(_) => moved_any = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if i == 0 {
                        break;
                    }
                    report
                        .errors
                        .push(format!("{}: vanished while being moved", file.display()));
                }
                Err(e) => report
                    .errors
                    .push(format!("cannot move {}: {e}", file.display())),
            }
        }
        if moved_any {
            report.dropped.push((control, why));
        } else {
            report.vanished.push(control);
        }
    }
    Ok(report)
}

fn collect(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && depth < MAX_DEPTH {
            match collect(&entry.path(), depth + 1, out) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        } else if kind.is_file() && is_main_control(entry.file_name().as_bytes()) {
            out.push(entry.path());
        }
    }
    Ok(())
}

fn ensure_target(target: &Path) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).create(target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && target.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Rename `file` into `dir` under its own name, or `<name>-<n>` when that is taken.
fn move_into(file: &Path, dir: &Path) -> io::Result<PathBuf> {
    let name = file
        .file_name()
        .ok_or_else(|| io::Error::other("no file name"))?
        .to_string_lossy()
        .into_owned();
    for n in 0..1000 {
        let to = if n == 0 {
            dir.join(&name)
        } else {
            dir.join(format!("{name}-{n}"))
        };
        match rename_noreplace(file, &to) {
            Ok(()) => return Ok(to),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "too many files named {name}* in {}",
        dir.display()
    )))
}

/// rename(2) that never replaces an existing file (renameat2 RENAME_NOREPLACE; where the file
/// system cannot do that, a check then rename).
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::other("NUL in a path"))
    };
    let (cf, ct) = (c(from)?, c(to)?);
    // The raw system call: Debian 12's musl (the static build) has no renameat2 wrapper.
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them as given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            cf.as_ptr(),
            libc::AT_FDCWD,
            ct.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::ENOSYS) {
        if fs::symlink_metadata(to).is_ok() {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        return fs::rename(from, to);
    }
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn queue(l: &Path, sub: &str, n: u32, control: &str) {
        let d = l.join("msgs").join(sub);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("C{n}")), control).unwrap();
        fs::write(d.join(format!("D{n}")), format!("body {n}\n")).unwrap();
    }

    fn crit(auth: &[&str], ips: &[&str], senders: &[&str]) -> Criteria {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        Criteria {
            auth: v(auth),
            ips: v(ips),
            senders: v(senders),
        }
    }

    #[test]
    fn drops_each_match_once_and_keeps_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let l = tmp.path();
        queue(
            l,
            "0",
            1,
            "sspam@x.example\nra@y\nR\nN\nOTCPREMOTEIP=::ffff:192.0.2.9\n",
        );
        queue(
            l,
            "0",
            2,
            "sok@x.example\nra@y\nR\nN\nOTCPREMOTEIP=192.0.2.1\nibob\n",
        );
        queue(l, "1", 3, "s\nrSPAM@x.example\nR\nN\n");
        queue(l, "1", 4, "s\n");
        fs::write(l.join("msgs/1/C3.1"), "rb@y\nR\nN\n").unwrap();
        let report = drop_messages(
            l,
            &crit(&["alice"], &["192.0.2.9"], &["spam@x.example", ""]),
        )
        .unwrap();
        let dropped: Vec<String> = report
            .dropped
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        // 1 by IP (and sender: once), 3 as a DSN to the sender, 4 by the empty sender
        assert_eq!(dropped, ["C1", "C3", "C4"]);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let q = l.join("quarantine");
        assert_eq!(
            fs::metadata(&q).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for f in ["C1", "D1", "C3", "C3.1", "D3", "C4", "D4"] {
            assert!(q.join(f).exists(), "{f}");
        }
        assert!(l.join("msgs/0/C2").exists() && l.join("msgs/0/D2").exists());
        assert!(!l.join("msgs/0/C1").exists());

        // a second message with a name already in the target does not overwrite it
        queue(l, "5", 1, "sspam@x.example\n");
        let report = drop_messages(l, &crit(&[], &[], &["spam@x.example"])).unwrap();
        assert_eq!(report.dropped.len(), 1);
        assert!(q.join("C1-1").exists() && q.join("D1-1").exists());
        assert_eq!(fs::read_to_string(q.join("D1")).unwrap(), "body 1\n");
    }

    #[test]
    fn auth_and_no_match() {
        let tmp = tempfile::tempdir().unwrap();
        let l = tmp.path();
        queue(l, "0", 7, "sok@x\nibob\nra@y\nR\nN\n");
        let report = drop_messages(l, &crit(&["alice"], &["10.0.0.1"], &["no@x"])).unwrap();
        assert!(report.dropped.is_empty());
        assert!(!l.join("quarantine").exists());
        let report = drop_messages(l, &crit(&["bob"], &[], &[])).unwrap();
        assert_eq!(report.dropped.len(), 1);
        assert!(report.dropped[0].1.contains("bob"));
    }

    #[test]
    fn missing_queue_is_an_error_and_usage_names_the_target() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(drop_messages(tmp.path(), &crit(&["a"], &[], &[])).is_err());
        let u = usage(Path::new("/var/lib/courier"));
        assert!(u.starts_with("Use: rustfilter dropmsg [-a authentication]"));
        assert!(u.contains("(/var/lib/courier/quarantine)"));
        assert!(u.ends_with("DSNs to that address\n"));
    }
}
