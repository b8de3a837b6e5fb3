//! debug — log the process's identity and the request's files (spec §7.6). No decision. The
//! whole block is one log record, so it stays together in the mail log.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterResult, Verdict};

pub struct Debug;

pub fn build(_: &Section<'_>, _: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    super::initialized("debug");
    Ok(Box::new(Debug))
}

fn stat_line(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => format!(
            "stat_result(st_mode={}, st_ino={}, st_dev={}, st_nlink={}, st_uid={}, st_gid={}, st_size={}, st_atime={}, st_mtime={}, st_ctime={})",
            m.mode(),
            m.ino(),
            m.dev(),
            m.nlink(),
            m.uid(),
            m.gid(),
            m.size(),
            m.atime(),
            m.mtime(),
            m.ctime()
        ),
        Err(e) => format!("cannot stat: {e}"),
    }
}

fn groups() -> Vec<libc::gid_t> {
    // SAFETY: getgroups with a zero size only returns the count; the second call writes at
    // most `n` entries into a buffer of that size.
    unsafe {
        let n = libc::getgroups(0, std::ptr::null_mut());
        if n <= 0 {
            return Vec::new();
        }
        let mut buf = vec![0 as libc::gid_t; n as usize];
        let got = libc::getgroups(n, buf.as_mut_ptr());
        buf.truncate(got.max(0) as usize);
        buf
    }
}

impl Filter for Debug {
    fn waits(&self) -> bool {
        false
    }

    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let mut out = String::from("Debugging filter invoked:\n");
        let cwd = std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|e| e.to_string());
        // SAFETY: these id getters cannot fail and touch no memory of ours.
        let (euid, egid, uid, gid) = unsafe {
            (
                libc::geteuid(),
                libc::getegid(),
                libc::getuid(),
                libc::getgid(),
            )
        };
        let _ = writeln!(out, "  PID: {}", std::process::id());
        let _ = writeln!(out, "  CWD: {cwd}");
        let _ = writeln!(
            out,
            "  EUID: {euid}\n  EGID: {egid}\n  UID: {uid}\n  GID: {gid}"
        );
        let _ = writeln!(out, "  Additional groups: {:?}", groups());
        let _ = writeln!(out, "  Body: {}", ctx.message.path().display());
        let _ = write!(out, "    Raw stat: {}", stat_line(ctx.message.path()));
        for path in ctx.envelope.paths() {
            let _ = write!(
                out,
                "\n  Control file: {}\n    Raw stat: {}",
                path.display(),
                stat_line(path)
            );
        }
        log::info!("{out}");
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use crate::filter::Verdict;
    use crate::filters::testutil::{Fixture, build};

    #[test]
    fn never_decides_even_when_files_vanish() {
        let fx = Fixture::new("sa@x.example\nra@y.example\nR\nN\n", "\n", &[]);
        let f = build(super::build, "debug", "", &fx.courier).expect("builds");
        assert_eq!(fx.run(f.as_ref()).expect("runs"), Verdict::Continue);
        std::fs::remove_file(&fx.data).expect("rm");
        assert_eq!(fx.run(f.as_ref()).expect("runs"), Verdict::Continue);
    }
}
