//! Helpers for the stateful-module tests: a daemon whose `[ttldb]` points at a private SQLite
//! directory or a fresh PostgreSQL database, messages written as Courier spools them, and the
//! `rustfilter ttldb` sub-commands run against the same configuration.

#![allow(dead_code)] // not every test uses every helper

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rustfilter::store::PgConfig;

use super::common::{Filter, Options, read_reply};

#[derive(Debug, Clone)]
pub enum Backend {
    /// `<root>/db/ttldb.sqlite`
    Sqlite,
    /// `<dir>/ttldb.sqlite`, e.g. shared by two daemons.
    SqliteIn(PathBuf),
    Postgres(PgConfig),
}

impl Backend {
    /// A fresh PostgreSQL database in the test cluster (started if needed).
    pub fn postgres() -> Backend {
        Backend::Postgres(rustfilter::store::testing::postgres_database())
    }

    /// The `[ttldb]` section for a daemon rooted at `root`.
    pub fn section(&self, root: &Path) -> String {
        match self {
            Backend::Sqlite => format!(
                "[ttldb]\ntype = 'sqlite'\ndir = '{}'\n",
                root.join("db").display()
            ),
            Backend::SqliteIn(dir) => {
                format!("[ttldb]\ntype = 'sqlite'\ndir = '{}'\n", dir.display())
            }
            Backend::Postgres(pg) => format!(
                "[ttldb]\ntype = 'postgresql'\nhost = '{}'\nport = {}\ndb = '{}'\nuser = '{}'\npassword = '{}'\n",
                pg.host, pg.port, pg.db, pg.user, pg.password
            ),
        }
    }
}

/// Write the modules file: `[ttldb]` for `backend`, then `modules`.
pub fn write_modules(root: &Path, backend: &Backend, modules: &str) {
    std::fs::create_dir_all(root.join("db")).expect("mkdir db");
    let text = format!("{}\n{modules}", backend.section(root));
    std::fs::write(root.join("rustfilter-modules.conf"), text).expect("modules file");
}

/// Start the daemon with `chain`, `modules` and the store of `backend`.
pub fn start(chain: &str, modules: &str, backend: &Backend, workers: usize) -> Filter {
    let prepare = |root: &Path| write_modules(root, backend, modules);
    Filter::start_with(Options {
        chain,
        modules: "",
        workers: Some(workers),
        fd3: true,
        prepare: Some(&prepare),
    })
}

/// A message in the daemon's spool: data and one control file; returns their paths.
pub fn message(f: &Filter, name: &str, control: &str) -> (PathBuf, PathBuf) {
    let dir = f.localstatedir().join("tmp").join(name);
    std::fs::create_dir_all(&dir).expect("mkdir msg");
    let data = dir.join("D");
    let ctl = dir.join("C");
    std::fs::write(&data, "Subject: test\n\nbody\n").expect("data");
    std::fs::write(&ctl, control).expect("control");
    (data, ctl)
}

/// A control file: sender, recipients, client IP (None: locally submitted).
pub fn control(sender: &str, rcpts: &[&str], ip: Option<&str>) -> String {
    let mut c = format!("s{sender}\nMmsg\n");
    for r in rcpts {
        c.push_str(&format!("r{r}\nR\nN\n"));
    }
    if let Some(ip) = ip {
        c.push_str(&format!("OTCPREMOTEIP={ip}\n"));
    }
    c
}

/// One request to the socket; the reply.
pub fn send(socket: &Path, data: &Path, control: &Path) -> String {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let req = format!("{}\n{}\n\n", data.display(), control.display());
    std::io::Write::write_all(&mut s, req.as_bytes()).expect("write request");
    read_reply(&mut s).expect("reply")
}

/// Run `rustfilter ttldb ARGS` with the daemon's configuration files under `root`.
pub fn ttldb(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rustfilter"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(root)
        .arg("ttldb")
        .args(args)
        .arg("--config")
        .arg(root.join("rustfilter.conf"))
        .arg("--modules-config")
        .arg(root.join("rustfilter-modules.conf"))
        .arg("--sysconfdir")
        .arg(root.join("etc"))
        .output()
        .expect("run rustfilter ttldb")
}

/// `ttldb dump NAME` as (key, value) pairs.
pub fn dump(root: &Path, table: &str) -> Vec<(String, i64)> {
    let out = ttldb(root, &["dump", table]);
    assert!(
        out.status.success(),
        "ttldb dump {table}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').expect("'<key> <value>'");
            (k.to_string(), v.parse().expect("value"))
        })
        .collect()
}

/// Seconds into the current minute.
pub fn second_of_minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() % 60)
        .unwrap_or(0)
}

/// Wait for the start of the next minute when fewer than `need` seconds of this one are left.
pub fn room_in_this_minute(need: u64) {
    let s = second_of_minute();
    if 60 - s < need {
        std::thread::sleep(Duration::from_secs(60 - s));
    }
}

/// Wait until stderr holds `n` lines containing `needle` (the harness reads stderr in a
/// thread, so a line may arrive after the reply); returns the log.
pub fn wait_log_lines(f: &Filter, needle: &str, n: usize, within: Duration) -> String {
    let deadline = std::time::Instant::now() + within;
    loop {
        let log = f.stderr();
        if log.lines().filter(|l| l.contains(needle)).count() >= n
            || std::time::Instant::now() > deadline
        {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
