//! Persistent state shared by all workers (and, with PostgreSQL, by several Courier hosts):
//! pythonfilter's TtlDb tables (`id CHAR(64) PRIMARY KEY, value BIGINT`: key → unix seconds,
//! expired after a ttl) and rustfilter's rate counters (key, minute bucket → count).
//!
//! Every read-modify-write of one message runs in one transaction ([`Store::transaction`]), so
//! any number of workers never double-count, lose an update or let a triplet pass early. The
//! connection is opened lazily in each worker (after fork) and reopened after a failure, so a
//! database that is down makes the modules tempfail instead of killing workers.

pub mod import;
pub mod postgres;
pub mod sqlite;
#[doc(hidden)]
pub mod testing;

use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::{ConfigError, ModulesConfig};

/// A storage failure. `transient` ones (SQLite busy, a dropped PostgreSQL connection, a
/// serialization conflict) are retried by [`Store::transaction`].
///
/// A backend sets `connection_lost` when its connection is no longer usable (a dead socket, a
/// protocol desync, an I/O error on the database file): [`Store`] then drops that connection
/// and opens a new one, at most once per transaction when the error is also `transient`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    pub message: String,
    pub transient: bool,
    pub connection_lost: bool,
}

impl StoreError {
    pub fn new(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
            transient: false,
            connection_lost: false,
        }
    }

    pub fn transient(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
            transient: true,
            connection_lost: false,
        }
    }

    /// The connection is broken (transient: worth one reconnect and retry).
    pub fn connection_lost(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
            transient: true,
            connection_lost: true,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

/// PostgreSQL connection settings (`[ttldb]` host, port, db, user, password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgConfig {
    /// A host name or address for TCP, or a directory (starting with `/`) holding the server's
    /// UNIX socket `.s.PGSQL.<port>`.
    pub host: String,
    pub port: u16,
    pub db: String,
    pub user: String,
    pub password: String,
}

/// Which backend, from the `[ttldb]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// `type = 'sqlite'` (default; `'dbm'` means the same): `<dir>/ttldb.sqlite`.
    Sqlite { path: PathBuf },
    /// `type = 'postgresql'` (aliases `'psycopg2'`, `'pg'`).
    Postgres(PgConfig),
}

impl StoreConfig {
    pub const SECTION: &'static str = "ttldb";
    pub const DEFAULT_DIR: &'static str = "/var/lib/rustfilter";

    /// Read `[ttldb]`: `type` (default `'sqlite'`), `dir` (default `/var/lib/rustfilter`), and
    /// for PostgreSQL `host` (default `'localhost'`), `port` (5432), `db`, `user`, `password`.
    /// `mysql` is an error saying it is not supported.
    pub fn from_config(modules: &ModulesConfig) -> Result<StoreConfig, ConfigError> {
        let sec = modules.section(Self::SECTION);
        let kind = sec.string("type", "sqlite")?;
        let config = match kind.as_str() {
            "sqlite" | "dbm" => {
                let dir = sec.string("dir", Self::DEFAULT_DIR)?;
                StoreConfig::Sqlite {
                    path: PathBuf::from(dir).join("ttldb.sqlite"),
                }
            }
            "postgresql" | "psycopg2" | "pg" => {
                let port = sec.int("port", 5432)?;
                let port = u16::try_from(port)
                    .map_err(|_| sec.error("port", format!("{port} is not a port number")))?;
                let required = |key: &str| -> Result<String, ConfigError> {
                    match sec.opt_string(key)? {
                        Some(v) => Ok(v),
                        None => Err(sec.error(key, "is required with type = 'postgresql'")),
                    }
                };
                StoreConfig::Postgres(PgConfig {
                    host: sec.string("host", "localhost")?,
                    port,
                    db: required("db")?,
                    user: required("user")?,
                    password: sec.string("password", "")?,
                })
            }
            "mysql" => {
                return Err(sec.error(
                    "type",
                    "MySQL is not supported: use 'sqlite' (one host) or 'postgresql' (several hosts)",
                ));
            }
            other => {
                return Err(sec.error(
                    "type",
                    format!("unknown type '{other}' (use 'sqlite' or 'postgresql')"),
                ));
            }
        };
        // Keys of the other backend are allowed (an administrator switching keeps them).
        for key in ["dir", "host", "port", "db", "user", "password"] {
            let _ = sec.value(key);
        }
        sec.finish()?;
        Ok(config)
    }
}

/// The operations of one transaction. Table names are plain identifiers (`[A-Za-z0-9_]`),
/// used unquoted as the reference does (PostgreSQL folds them to lower case).
pub trait Tx {
    /// A TtlDb value (unix seconds).
    fn get(&mut self, table: &str, key: &str) -> Result<Option<i64>, StoreError>;
    /// The first of `tables` that holds `key`: its index in `tables` and the value. The same
    /// as [`Tx::get`] on each table in turn; a backend may answer in one statement.
    fn get_first(
        &mut self,
        tables: &[&str],
        key: &str,
    ) -> Result<Option<(usize, i64)>, StoreError> {
        for (i, table) in tables.iter().enumerate() {
            if let Some(value) = self.get(table, key)? {
                return Ok(Some((i, value)));
            }
        }
        Ok(None)
    }
    /// Insert or replace a TtlDb value.
    fn set(&mut self, table: &str, key: &str, value: i64) -> Result<(), StoreError>;
    fn delete(&mut self, table: &str, key: &str) -> Result<(), StoreError>;
    /// Add `n` to a rate counter (`key`, `bucket` = unix minute), atomically.
    fn count(&mut self, table: &str, key: &str, bucket: i64, n: i64) -> Result<(), StoreError>;
    /// The sum of a key's counters over buckets `first..=last`.
    fn count_sum(
        &mut self,
        table: &str,
        key: &str,
        first: i64,
        last: i64,
    ) -> Result<i64, StoreError>;
}

/// A backend: a [`Tx`] plus transaction control and maintenance.
pub trait Backend: Tx {
    /// Start a transaction that makes the read-modify-write that follows atomic with respect
    /// to every other worker/host (SQLite: deferred, failing a stale upgrade, then `BEGIN
    /// IMMEDIATE` on the retry; PostgreSQL READ COMMITTED with a per-key advisory lock taken
    /// by `get`).
    fn begin(&mut self) -> Result<(), StoreError>;
    /// Whether the attempt that just failed should be retried without the backoff: the
    /// backend has made sure the retry waits for what it conflicted with.
    fn retry_at_once(&self) -> bool {
        false
    }
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Roll back; errors are ignored (a broken connection is dropped and reopened later).
    fn rollback(&mut self);
    /// Create the TtlDb table if missing (`id CHAR(64) PRIMARY KEY, value BIGINT`).
    fn ensure_ttl_table(&mut self, table: &str) -> Result<(), StoreError>;
    /// Create the counter table if missing.
    fn ensure_counter_table(&mut self, table: &str) -> Result<(), StoreError>;
    /// Delete TtlDb entries whose value is below `cutoff`; returns how many.
    fn purge_ttl(&mut self, table: &str, cutoff: i64) -> Result<u64, StoreError>;
    /// Delete counters of buckets below `first_kept`; returns how many.
    fn purge_counters(&mut self, table: &str, first_kept: i64) -> Result<u64, StoreError>;
    /// Every entry of a TtlDb table (keys without CHAR padding), sorted by key.
    fn dump_ttl(&mut self, table: &str) -> Result<Vec<(String, i64)>, StoreError>;
}

/// A TtlDb as a module declares it (spec §6.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlDb {
    pub name: String,
    pub ttl: i64,
    pub purge_interval: i64,
}

/// A rate-counter table and how many minutes of buckets it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub name: String,
    pub window_minutes: i64,
    pub purge_interval: i64,
}

/// One worker's handle on the store: lazy connection, transactions with retry, purges.
///
/// A process that forks workers should not run a transaction before forking (SQLite keeps
/// per-process lock state that a child must not inherit). Should it have done so anyway, a
/// child never uses (nor closes) the inherited connection: it opens its own.
pub struct Store {
    config: StoreConfig,
    backend: Option<Box<dyn Backend>>,
    /// The [`process_generation`] that opened `backend`: a connection inherited through fork
    /// is never used.
    backend_generation: u64,
    /// Tables created (or found) on the current connection.
    /// (A process uses a handful of tables: a list is cheaper to search than to hash into.)
    ensured: Vec<String>,
    /// When this process last purged each table (pythonfilter purges per process too).
    last_purge: Vec<(String, i64)>,
}

/// Retries of transient errors stop when the next one would start later than this after the
/// first attempt began on an open connection (opening, e.g. SCRAM authentication, does not
/// count). An attempt that waited out SQLite's busy timeout has used it all, so it is not
/// repeated; a PostgreSQL deadlock between two messages locking keys in opposite orders takes
/// a quick retry.
const RETRY_BUDGET: Duration = Duration::from_millis(500);
const MAX_ATTEMPTS: u32 = 30;

/// What a table holds, so the right schema is created.
#[derive(Clone, Copy)]
enum TableKind {
    Ttl,
    Counter,
}

/// Why an attempt failed: opening the connection, or using it.
enum AttemptError {
    Open(StoreError),
    Use(StoreError),
}

impl Store {
    /// No connection is made until the first transaction.
    pub fn new(config: StoreConfig) -> Store {
        Store {
            config,
            backend: None,
            backend_generation: 0,
            ensured: Vec::new(),
            last_purge: Vec::new(),
        }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Whether a connection is open (it is opened by the first transaction).
    pub fn is_connected(&self) -> bool {
        self.backend.is_some() && self.backend_generation == process_generation()
    }

    /// Run `f` in one transaction on the given tables (created when missing). Transient errors
    /// (busy, conflict, dropped connection: reconnect) are retried a few times, then returned;
    /// `f` may therefore run more than once and must only act through the `Tx`.
    pub fn transaction<T>(
        &mut self,
        ttl_tables: &[&TtlDb],
        counters: &[&Counter],
        mut f: impl FnMut(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tables: Vec<(&str, TableKind)> = ttl_tables
            .iter()
            .map(|t| (t.name.as_str(), TableKind::Ttl))
            .chain(
                counters
                    .iter()
                    .map(|c| (c.name.as_str(), TableKind::Counter)),
            )
            .collect();
        self.run(&tables, |backend| f(backend))
    }

    /// Purge the table if this process has not done so for `purge_interval` seconds (the
    /// first call always purges), deleting entries older than `now - ttl`.
    pub fn maybe_purge(&mut self, db: &TtlDb, now: i64) -> Result<(), StoreError> {
        if self.purge_due(&db.name, db.purge_interval, now) {
            self.purge_now(db, now)?;
        }
        Ok(())
    }

    /// The same for a counter table (buckets older than the window are deleted).
    pub fn maybe_purge_counters(&mut self, counter: &Counter, now: i64) -> Result<(), StoreError> {
        if self.purge_due(&counter.name, counter.purge_interval, now) {
            self.purge_counters_now(counter, now)?;
        }
        Ok(())
    }

    /// Purge now, whatever the interval (`rustfilter ttldb purge`).
    pub fn purge_now(&mut self, db: &TtlDb, now: i64) -> Result<u64, StoreError> {
        let cutoff = now.saturating_sub(db.ttl);
        let n = self.run(&[(db.name.as_str(), TableKind::Ttl)], |b| {
            b.purge_ttl(&db.name, cutoff)
        })?;
        self.purged(&db.name, now);
        Ok(n)
    }

    pub fn purge_counters_now(&mut self, counter: &Counter, now: i64) -> Result<u64, StoreError> {
        let first_kept = now.div_euclid(60).saturating_sub(counter.window_minutes);
        let n = self.run(&[(counter.name.as_str(), TableKind::Counter)], |b| {
            b.purge_counters(&counter.name, first_kept)
        })?;
        self.purged(&counter.name, now);
        Ok(n)
    }

    /// Every entry of a TtlDb table (`rustfilter ttldb dump`). The table is not created: a
    /// table that does not exist is an error from the backend.
    pub fn dump(&mut self, table: &str) -> Result<Vec<(String, i64)>, StoreError> {
        check_table_name(table)?;
        self.run(&[], |b| b.dump_ttl(table))
    }

    /// Drop the connection (the next transaction opens a new one).
    pub fn disconnect(&mut self) {
        if let Some(backend) = self.backend.take() {
            if self.backend_generation == process_generation() {
                drop(backend);
            } else {
                // Inherited through fork: closing it here could end the parent's session
                // (PostgreSQL Terminate) or disturb its SQLite locks, so it is left alone.
                std::mem::forget(backend);
            }
        }
        self.ensured.clear();
    }

    fn purged(&mut self, table: &str, now: i64) {
        match self.last_purge.iter_mut().find(|(t, _)| t == table) {
            Some((_, last)) => *last = now,
            None => self.last_purge.push((table.to_string(), now)),
        }
    }

    /// `now > last + interval`, the reference's rule; never purged in this process → due.
    fn purge_due(&self, table: &str, interval: i64, now: i64) -> bool {
        match self
            .last_purge
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, last)| last)
        {
            None => true,
            Some(&last) => now > last.saturating_add(interval),
        }
    }

    /// `op` in one transaction on a connection where `tables` exist, with the retry policy:
    /// non-transient errors at once; a lost connection is reopened once per call; other
    /// transient errors (busy, deadlocks, dropped connections) are retried with a short backoff for
    /// at most [`RETRY_BUDGET`] / [`MAX_ATTEMPTS`].
    fn run<T>(
        &mut self,
        tables: &[(&str, TableKind)],
        mut op: impl FnMut(&mut dyn Backend) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        for (name, _) in tables {
            check_table_name(name)?;
        }
        let mut work_start = None;
        let mut reconnected = false;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let had_connection = self.is_connected();
            let err = match self.attempt(tables, &mut op, &mut work_start) {
                Ok(value) => return Ok(value),
                // Opening failed (server down, bad directory): retrying in a loop would only
                // delay the tempfail (SQLite's busy handler already waited while opening).
                Err(AttemptError::Open(err)) => return Err(err),
                Err(AttemptError::Use(err)) => err,
            };
            if err.connection_lost {
                self.disconnect();
                if !err.transient || reconnected {
                    return Err(err);
                }
                if had_connection {
                    reconnected = true;
                    log::debug!("store: connection lost ({err}), reconnecting");
                    continue;
                }
                return Err(err);
            }
            if !err.transient {
                return Err(err);
            }
            // Exponential up to 32 ms, times a random 0.5–1.5 so that workers that collided
            // do not retry in step.
            let base_us = 1000u64 << (attempts - 1).min(5);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let backoff = if self.backend.as_ref().is_some_and(|b| b.retry_at_once()) {
                Duration::ZERO
            } else {
                Duration::from_micros(base_us / 2 + u64::from(nanos) % (base_us + 1))
            };
            let elapsed = work_start.map_or(Duration::ZERO, |t: Instant| t.elapsed());
            if attempts >= MAX_ATTEMPTS || elapsed + backoff > RETRY_BUDGET {
                // A fresh connection next time, in case this one is stuck in a bad state.
                self.disconnect();
                return Err(StoreError {
                    message: format!(
                        "{} (gave up after {attempts} attempts in {} ms)",
                        err.message,
                        elapsed.as_millis()
                    ),
                    ..err
                });
            }
            if !backoff.is_zero() {
                std::thread::sleep(backoff);
            }
        }
    }

    fn attempt<T>(
        &mut self,
        tables: &[(&str, TableKind)],
        op: &mut impl FnMut(&mut dyn Backend) -> Result<T, StoreError>,
        work_start: &mut Option<Instant>,
    ) -> Result<T, AttemptError> {
        if !self.is_connected() {
            self.disconnect();
            // Before opening: the fork counter must be registered before any fork that could
            // pass this connection on.
            let generation = process_generation();
            let backend = open_backend(&self.config).map_err(AttemptError::Open)?;
            self.backend = Some(backend);
            self.backend_generation = generation;
        }
        let Some(backend) = self.backend.as_deref_mut() else {
            return Err(AttemptError::Open(StoreError::new("store: no connection")));
        };
        work_start.get_or_insert_with(Instant::now);
        for &(name, kind) in tables {
            if self.ensured.iter().any(|t| t == name) {
                continue;
            }
            let ensure = |backend: &mut dyn Backend| match kind {
                TableKind::Ttl => backend.ensure_ttl_table(name),
                TableKind::Counter => backend.ensure_counter_table(name),
            };
            if let Err(err) = ensure(backend) {
                if err.transient || err.connection_lost {
                    return Err(AttemptError::Use(err));
                }
                // Two workers creating the same table at once: PostgreSQL can report a unique
                // violation to one of them although the table now exists. Asking again
                // settles it; a real problem fails again.
                ensure(backend).map_err(AttemptError::Use)?;
            }
            self.ensured.push(name.to_string());
        }
        backend.begin().map_err(AttemptError::Use)?;
        match op(backend).and_then(|value| backend.commit().map(|()| value)) {
            Ok(value) => Ok(value),
            Err(err) => {
                backend.rollback();
                Err(AttemptError::Use(err))
            }
        }
    }
}

/// Forks since the first [`process_generation`] call, counted in each child.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_fork_in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// A number that differs in a child process after `fork` from its value in the parent: the
/// forks counted by a `pthread_atfork` child handler, registered at the first call. Checked
/// twice per transaction, it spares the `getpid` system calls a process id comparison costs
/// (glibc does not cache the pid). Should the registration fail, it is the process id.
fn process_generation() -> u64 {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        // SAFETY: the handler only increments an atomic, which is async-signal-safe.
        unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) == 0 }
    });
    if registered {
        FORKS.load(Ordering::Relaxed)
    } else {
        (1 << 63) | u64::from(std::process::id())
    }
}

/// Table names are used unquoted in SQL (as the reference does), so only `[A-Za-z0-9_]+`.
pub fn check_table_name(name: &str) -> Result<(), StoreError> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(())
    } else {
        Err(StoreError::new(format!(
            "invalid table name '{}': only letters, digits and '_' are allowed",
            name.escape_debug()
        )))
    }
}

fn open_backend(config: &StoreConfig) -> Result<Box<dyn Backend>, StoreError> {
    match config {
        StoreConfig::Sqlite { path } => Ok(Box::new(sqlite::SqliteBackend::open(path)?)),
        StoreConfig::Postgres(pg) => Ok(Box::new(postgres::PgBackend::connect(pg)?)),
    }
}

/// `hex(MD5(parts concatenated))`, lower case: the reference's key derivation (no separator).
pub fn md5_key(parts: &[&str]) -> String {
    use md5::{Digest, Md5};
    let mut hasher = Md5::new();
    for p in parts {
        hasher.update(p.as_bytes());
    }
    // A table lookup: formatting each byte with `format!` was a fifth of greylist's CPU time.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(32);
    for b in hasher.finalize() {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    hex
}

/// Current unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StoreConfig, ConfigError> {
        StoreConfig::from_config(&ModulesConfig::parse(std::path::Path::new("m.conf"), text)?)
    }

    #[test]
    fn backends_from_the_ttldb_section() {
        assert_eq!(
            parse("").expect("default"),
            StoreConfig::Sqlite {
                path: "/var/lib/rustfilter/ttldb.sqlite".into()
            }
        );
        assert_eq!(
            parse("[ttldb]\ntype = 'dbm'\ndir = '/var/lib/pythonfilter'\n").expect("dbm"),
            StoreConfig::Sqlite {
                path: "/var/lib/pythonfilter/ttldb.sqlite".into()
            }
        );
        let pg = "[ttldb]\ntype = 'psycopg2'\nhost = '/tmp/pg'\nport = '5432'\ndb = 'pf'\nuser = 'u'\npassword = 'p'\ndir = '/x'\n";
        assert_eq!(
            parse(pg).expect("pg"),
            StoreConfig::Postgres(PgConfig {
                host: "/tmp/pg".into(),
                port: 5432,
                db: "pf".into(),
                user: "u".into(),
                password: "p".into()
            })
        );
    }

    #[test]
    fn bad_ttldb_sections() {
        assert!(parse("[ttldb]\ntype = 'mysql'\n").is_err_and(|e| e.message.contains("MySQL")));
        assert!(
            parse("[ttldb]\ntype = 'pg'\nuser = 'u'\n")
                .is_err_and(|e| e.to_string().contains("db"))
        );
        assert!(parse("[ttldb]\ntype = 'pg'\ndb = 'd'\nuser = 'u'\nport = 70000\n").is_err());
        assert!(parse("[ttldb]\ntypo = 1\n").is_err());
    }

    #[test]
    fn reference_key_derivation() {
        // hex(MD5("a" "b")) == hex(MD5("ab")): no separator, as pythonfilter.
        assert_eq!(md5_key(&["a", "b"]), md5_key(&["ab"]));
        assert_eq!(md5_key(&[""]), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_key(&["a", "bc"]), "900150983cd24fb0d6963f7d28e17f72");
    }

    fn sqlite_store(dir: &std::path::Path) -> Store {
        Store::new(StoreConfig::Sqlite {
            path: dir.join("ttldb.sqlite"),
        })
    }

    fn ttl_db(name: &str, ttl: i64, purge_interval: i64) -> TtlDb {
        TtlDb {
            name: name.into(),
            ttl,
            purge_interval,
        }
    }

    fn get(store: &mut Store, db: &TtlDb, key: &str) -> Option<i64> {
        store
            .transaction(&[db], &[], |tx| tx.get(&db.name, key))
            .expect("get")
    }

    fn set(store: &mut Store, db: &TtlDb, key: &str, value: i64) {
        store
            .transaction(&[db], &[], |tx| tx.set(&db.name, key, value))
            .expect("set");
    }

    /// Spec §8.5 (tests/test_ttldb.py) with the clock injected instead of sleeps.
    #[test]
    fn reference_ttldb_test() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = sqlite_store(dir.path());
        let db = ttl_db("testTtlDb", 1, 1);
        let t0 = 1_700_000_000;
        store.maybe_purge(&db, t0).expect("first purge");

        let t1 = t0;
        set(&mut store, &db, "name1", t1);
        assert_eq!(get(&mut store, &db, "name1"), Some(t1));

        let t2 = t1 + 2;
        set(&mut store, &db, "name2", t2);
        set(&mut store, &db, "name2' -- ", t2);
        let t2b = t2 + 1;
        set(&mut store, &db, "name2", t2b);
        set(&mut store, &db, "name2' -- ", t2b);

        store.maybe_purge(&db, t2b).expect("purge");
        assert_eq!(get(&mut store, &db, "name1"), None);
        assert_eq!(get(&mut store, &db, "name2"), Some(t2b));
        assert_eq!(get(&mut store, &db, "name2' -- "), Some(t2b));
        assert_eq!(
            store.dump("testTtlDb").expect("dump"),
            vec![("name2".to_string(), t2b), ("name2' -- ".to_string(), t2b)]
        );

        store
            .transaction(&[&db], &[], |tx| tx.delete("testTtlDb", "name2"))
            .expect("delete");
        assert_eq!(get(&mut store, &db, "name2"), None);
    }

    #[test]
    fn purges_are_rate_limited_per_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = sqlite_store(dir.path());
        let db = ttl_db("greylist_NotPassed", 100, 60);
        let now = 1_000_000;
        set(&mut store, &db, "old1", now - 101);
        set(&mut store, &db, "edge", now - 100);
        // The first call always purges; value < now - ttl goes, value == now - ttl stays.
        store.maybe_purge(&db, now).expect("purge");
        assert_eq!(get(&mut store, &db, "old1"), None);
        assert_eq!(get(&mut store, &db, "edge"), Some(now - 100));

        set(&mut store, &db, "old2", 0);
        // now == last + interval: not yet (the reference purges when now > last + interval).
        store.maybe_purge(&db, now + 60).expect("no purge");
        assert_eq!(get(&mut store, &db, "old2"), Some(0));
        store.maybe_purge(&db, now + 61).expect("purge");
        assert_eq!(get(&mut store, &db, "old2"), None);

        // Another process (another Store) keeps its own clock: its first call purges.
        set(&mut store, &db, "old3", 0);
        let mut other = sqlite_store(dir.path());
        other.maybe_purge(&db, now + 62).expect("other purges");
        assert_eq!(get(&mut store, &db, "old3"), None);

        // purge_now ignores the interval and reports the count.
        set(&mut store, &db, "old4", 0);
        set(&mut store, &db, "old5", 0);
        assert_eq!(store.purge_now(&db, now + 63).expect("purge_now"), 2);
    }

    #[test]
    fn counters_count_sum_and_purge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = sqlite_store(dir.path());
        let c = Counter {
            name: "ratelimit_test".into(),
            window_minutes: 5,
            purge_interval: 60,
        };
        let now = 6_000_000; // minute 100_000
        let minute = now / 60;
        store
            .transaction(&[], &[&c], |tx| {
                tx.count(&c.name, "k", minute - 10, 7)?;
                tx.count(&c.name, "k", minute - 5, 1)?;
                tx.count(&c.name, "k", minute - 1, 2)?;
                tx.count(&c.name, "k", minute, 3)?;
                tx.count(&c.name, "k", minute, 4)?;
                tx.count(&c.name, "other", minute, 100)
            })
            .expect("count");
        let sum = |store: &mut Store, first: i64, last: i64| {
            store
                .transaction(&[], &[&c], |tx| tx.count_sum(&c.name, "k", first, last))
                .expect("sum")
        };
        assert_eq!(sum(&mut store, minute, minute), 7);
        assert_eq!(sum(&mut store, minute - 4, minute), 9);
        assert_eq!(sum(&mut store, minute - 5, minute), 10);
        assert_eq!(sum(&mut store, minute - 20, minute), 17);
        assert_eq!(sum(&mut store, minute + 1, minute + 9), 0);

        // Buckets before minute - window go: here only minute - 10 (1 row).
        store.maybe_purge_counters(&c, now).expect("purge");
        assert_eq!(sum(&mut store, minute - 20, minute), 10);
        // Rate limited: 61 s later nothing is purged, even though minute - 5 is out now.
        store.maybe_purge_counters(&c, now + 60).expect("no purge");
        assert_eq!(sum(&mut store, minute - 20, minute), 10);
        store.maybe_purge_counters(&c, now + 61).expect("purge");
        assert_eq!(sum(&mut store, minute - 20, minute), 9);
        assert_eq!(store.purge_counters_now(&c, now + 600).expect("purge"), 3);
    }

    #[test]
    fn concurrent_counter_increments_are_exact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Counter {
            name: "hammer".into(),
            window_minutes: 60,
            purge_interval: 60,
        };
        std::thread::scope(|s| {
            for _ in 0..8 {
                let c = &c;
                let path = dir.path();
                s.spawn(move || {
                    let mut store = sqlite_store(path);
                    for _ in 0..200 {
                        store
                            .transaction(&[], &[c], |tx| tx.count(&c.name, "key", 42, 1))
                            .expect("count");
                    }
                });
            }
        });
        let mut store = sqlite_store(dir.path());
        let total = store
            .transaction(&[], &[&c], |tx| tx.count_sum(&c.name, "key", 0, 100))
            .expect("sum");
        assert_eq!(total, 1600);
    }

    /// Pre-forked workers: the parent's connection is inherited but never used by the children
    /// (each opens its own), and the parent's keeps working.
    #[test]
    fn forked_workers_open_their_own_connections() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Counter {
            name: "forked".into(),
            window_minutes: 60,
            purge_interval: 60,
        };
        let mut store = sqlite_store(dir.path());
        store
            .transaction(&[], &[&c], |tx| tx.count(&c.name, "key", 42, 1))
            .expect("parent count");
        assert!(store.is_connected());
        let mut children = Vec::new();
        for _ in 0..8 {
            // SAFETY: the child only uses the store and leaves with _exit.
            match unsafe { libc::fork() } {
                -1 => panic!("fork: {}", std::io::Error::last_os_error()),
                0 => {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        if store.is_connected() {
                            return 3;
                        }
                        for _ in 0..200 {
                            if store
                                .transaction(&[], &[&c], |tx| tx.count(&c.name, "key", 42, 1))
                                .is_err()
                            {
                                return 1;
                            }
                        }
                        0
                    }));
                    // SAFETY: ends the child without running the parent's destructors.
                    unsafe { libc::_exit(result.unwrap_or(2)) }
                }
                pid => children.push(pid),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(&pid) = children.first() {
            let mut status = 0;
            // SAFETY: waitpid on our own child.
            let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if done == pid {
                assert!(
                    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                    "child {pid} failed: status {status:#x}"
                );
                children.remove(0);
            } else if Instant::now() > deadline {
                for &pid in &children {
                    // SAFETY: killing our own children.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                panic!("forked workers did not finish within 60 s");
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let total = store
            .transaction(&[], &[&c], |tx| tx.count_sum(&c.name, "key", 0, 100))
            .expect("parent still connected");
        assert_eq!(total, 1 + 1600);
    }

    #[test]
    fn concurrent_read_modify_write_loses_no_update() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = ttl_db("greylist_Passed", 3600, 60);
        std::thread::scope(|s| {
            for _ in 0..8 {
                let db = &db;
                let path = dir.path();
                s.spawn(move || {
                    let mut store = sqlite_store(path);
                    for _ in 0..100 {
                        store
                            .transaction(&[db], &[], |tx| {
                                let v = tx.get(&db.name, "k")?.unwrap_or(0);
                                tx.set(&db.name, "k", v + 1)
                            })
                            .expect("no busy error");
                    }
                });
            }
        });
        let mut store = sqlite_store(dir.path());
        assert_eq!(get(&mut store, &db, "k"), Some(800));
    }

    #[test]
    fn a_transaction_waits_for_another_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = ttl_db("auto_whitelist", 60, 60);
        let mut store = sqlite_store(dir.path());
        set(&mut store, &db, "k", 1);
        let holder = rusqlite::Connection::open(dir.path().join("ttldb.sqlite")).expect("open");
        holder.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                holder.execute_batch("COMMIT").expect("unlock");
            });
            set(&mut store, &db, "k", 2);
        });
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert_eq!(get(&mut store, &db, "k"), Some(2));
    }

    #[test]
    fn errors_roll_back_and_only_transient_ones_are_retried() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = sqlite_store(dir.path());
        let db = ttl_db("correspondents", 60, 60);

        let mut runs = 0;
        let err = store
            .transaction(&[&db], &[], |tx| -> Result<(), StoreError> {
                runs += 1;
                tx.set("correspondents", "k", 5)?;
                Err(StoreError::new("boom"))
            })
            .expect_err("fails");
        assert_eq!(
            (runs, err.message.as_str(), err.transient),
            (1, "boom", false)
        );
        assert_eq!(get(&mut store, &db, "k"), None, "rolled back");

        let mut runs = 0;
        let started = Instant::now();
        let err = store
            .transaction(&[&db], &[], |_| -> Result<(), StoreError> {
                runs += 1;
                Err(StoreError::transient("busy"))
            })
            .expect_err("gives up");
        assert!(runs > 1 && runs <= MAX_ATTEMPTS, "{runs} runs");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(err.transient && err.message.contains("gave up"), "{err}");

        // A transient error, then success.
        let mut runs = 0;
        let v = store
            .transaction(&[&db], &[], |tx| {
                runs += 1;
                if runs == 1 {
                    return Err(StoreError::transient("conflict"));
                }
                tx.set("correspondents", "k", 9)?;
                tx.get("correspondents", "k")
            })
            .expect("retried");
        assert_eq!(v, Some(9));
    }

    #[test]
    fn a_lost_connection_is_reopened_once_per_transaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = sqlite_store(dir.path());
        let db = ttl_db("goodsenders", 60, 60);
        set(&mut store, &db, "k", 1);
        assert!(store.is_connected());

        let mut runs = 0;
        store
            .transaction(&[&db], &[], |tx| {
                runs += 1;
                if runs == 1 {
                    return Err(StoreError::connection_lost("socket closed"));
                }
                tx.set("goodsenders", "k", 2)
            })
            .expect("reconnected");
        assert_eq!(runs, 2);
        assert_eq!(get(&mut store, &db, "k"), Some(2));

        let mut runs = 0;
        let err = store
            .transaction(&[&db], &[], |_| -> Result<(), StoreError> {
                runs += 1;
                Err(StoreError::connection_lost("socket closed"))
            })
            .expect_err("one reconnect only");
        assert_eq!(runs, 2);
        assert!(err.connection_lost);
        assert!(!store.is_connected());
        // The next transaction connects again.
        assert_eq!(get(&mut store, &db, "k"), Some(2));
    }

    #[test]
    fn table_names_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = sqlite_store(dir.path());
        for bad in ["", "a b", "x;drop", "t'", "ü"] {
            let db = ttl_db(bad, 1, 1);
            let err = store
                .transaction(&[&db], &[], |_| Ok(()))
                .expect_err("bad name");
            assert!(err.message.contains("invalid table name"), "{err}");
            assert!(store.dump(bad).is_err());
        }
        assert!(!store.is_connected(), "no connection for a bad name");
        let err = store.dump("no_such_table").expect_err("missing table");
        assert!(err.message.contains("no_such_table"), "{err}");
    }
}
