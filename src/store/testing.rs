//! Test support (not part of the API): a real PostgreSQL for unit and integration tests,
//! from the throwaway cluster of `tests/services/postgres.sh`.
//!
//! These functions panic with the script's message when PostgreSQL cannot be started: a test
//! that needs it fails rather than skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use super::PgConfig;
use super::postgres::PgBackend;

/// The default cluster (the script's defaults).
pub const PG_DIR: &str = "/tmp/rustfilter-pg";
pub const PG_PORT: u16 = 55432;
/// The unprivileged role every test connects as (SCRAM over TCP), and its database.
pub const PG_USER: &str = "filter";
pub const PG_PASSWORD: &str = "filterpw";
pub const PG_DB: &str = "filterdb";
/// Prefix of the databases made by [`postgres_database`]: `rft_<pid>_<n>`.
const DB_PREFIX: &str = "rft_";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/services/postgres.sh")
}

fn run_script(cmd: &str, dir: &Path, port: u16) -> Result<(), String> {
    let script = script();
    let out = Command::new(&script)
        .arg(cmd)
        .arg(dir)
        .arg(port.to_string())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {cmd} {} {port} failed ({}): {}",
            script.display(),
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The superuser `postgres` over the cluster's UNIX socket (trust), database `postgres`.
pub fn postgres_superuser(dir: &Path, port: u16) -> PgConfig {
    PgConfig {
        host: dir.to_string_lossy().into_owned(),
        port,
        db: "postgres".into(),
        user: "postgres".into(),
        password: String::new(),
    }
}

/// The role `filter` over TCP to `127.0.0.1:port`, database `db`.
pub fn filter_config(port: u16, db: &str) -> PgConfig {
    PgConfig {
        host: "127.0.0.1".into(),
        port,
        db: db.into(),
        user: PG_USER.into(),
        password: PG_PASSWORD.into(),
    }
}

fn superuser_connection(dir: &Path, port: u16) -> PgBackend {
    match PgBackend::connect(&postgres_superuser(dir, port)) {
        Ok(b) => b,
        Err(e) => panic!("cannot connect to the test cluster as postgres: {e}"),
    }
}

/// A process's own databases are `rft_<pid>_*`: drop those of processes that are gone (and
/// any under this process's pid, left by an earlier process that had it).
fn drop_stale_databases(su: &mut PgBackend) {
    let rows = match su.simple_query(
        "SELECT datname FROM pg_database WHERE datname LIKE 'rft\\_%' ORDER BY datname",
    ) {
        Ok(rows) => rows,
        Err(e) => panic!("cannot list the test databases: {e}"),
    };
    let me = std::process::id();
    for name in rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
    {
        let pid: Option<u32> = name
            .strip_prefix(DB_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|p| p.parse().ok());
        let Some(pid) = pid else { continue };
        // SAFETY: kill with signal 0 only checks that the process exists.
        let alive = pid != me && unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
        if !alive {
            // Another test process may be dropping it at the same time: ignore failures.
            let _ = su.simple_query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// Start the default cluster if needed (once per process; the script serializes concurrent
/// starts with a lock file) and create a fresh database owned by `filter`. Returns the TCP
/// configuration for `filter` (127.0.0.1:55432, password `filterpw`).
pub fn postgres_database() -> PgConfig {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let dir = Path::new(PG_DIR);
    let started = STARTED.get_or_init(|| {
        run_script("start", dir, PG_PORT)?;
        drop_stale_databases(&mut superuser_connection(dir, PG_PORT));
        Ok(())
    });
    if let Err(e) = started {
        panic!("PostgreSQL for the tests: {e}");
    }
    let name = format!(
        "{DB_PREFIX}{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut su = superuser_connection(dir, PG_PORT);
    if let Err(e) = su.simple_query(&format!("CREATE DATABASE {name} OWNER {PG_USER}")) {
        panic!("cannot create the test database {name}: {e}");
    }
    filter_config(PG_PORT, &name)
}

/// A dedicated cluster that a test may stop and restart (fault tests). Dropping it stops it,
/// and removes its directory if [`postgres_cluster`] created it.
pub struct PgCluster {
    dir: PathBuf,
    port: u16,
    created: bool,
}

/// Start a cluster in `dir` (short: the UNIX socket path must fit in 108 bytes) on
/// 127.0.0.1:`port`, with the same roles and database `filterdb` as the default one.
pub fn postgres_cluster(dir: &Path, port: u16) -> PgCluster {
    let cluster = PgCluster {
        dir: dir.to_path_buf(),
        port,
        created: !dir.exists(),
    };
    cluster.start();
    cluster
}

/// A free TCP port on 127.0.0.1 (for a dedicated cluster).
pub fn free_port() -> u16 {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("cannot find a free port: {e}"),
    }
}

/// A dedicated cluster in a fresh short directory on a free port.
pub fn temp_cluster() -> PgCluster {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let dir = PathBuf::from(format!(
        "/tmp/rfpg-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    // Left over from an earlier process with this pid.
    let _ = std::fs::remove_dir_all(&dir);
    postgres_cluster(&dir, free_port())
}

impl PgCluster {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `filter` over TCP, database `filterdb`.
    pub fn config(&self) -> PgConfig {
        filter_config(self.port, PG_DB)
    }

    /// `postgres` over the UNIX socket, database `postgres`.
    pub fn superuser(&self) -> PgConfig {
        postgres_superuser(&self.dir, self.port)
    }

    /// Start (again); returns when the server accepts connections.
    pub fn start(&self) {
        if let Err(e) = run_script("start", &self.dir, self.port) {
            panic!("PostgreSQL for the tests: {e}");
        }
    }

    /// Immediate shutdown: every connection is cut.
    pub fn stop(&self) {
        if let Err(e) = run_script("stop", &self.dir, self.port) {
            panic!("PostgreSQL for the tests: {e}");
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let stopped = run_script("stop", &self.dir, self.port);
        if let Err(e) = &stopped {
            eprintln!("PostgreSQL test cluster: {e}");
        }
        if self.created && stopped.is_ok() {
            let _ = std::fs::remove_dir_all(&self.dir);
            let mut lock = self.dir.clone().into_os_string();
            lock.push(".lock");
            let _ = std::fs::remove_file(lock);
        }
    }
}
