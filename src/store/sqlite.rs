//! The SQLite backend (default, embedded): one file `<dir>/ttldb.sqlite`, WAL, a busy timeout,
//! prepared statements, optimistic transactions.
//!
//! A transaction starts deferred (`BEGIN`): most messages only read (a greylist triplet that
//! passed and was refreshed within the same second), and in WAL mode readers take no write
//! lock and never wait for one. A transaction that writes upgrades to the write lock at its
//! first write; SQLite refuses that upgrade at once with `SQLITE_BUSY` (its busy handler is
//! not called) when another connection holds the lock or committed since this transaction
//! read, because the reads might be stale. The attempt is then rolled back and run again at
//! once with `BEGIN IMMEDIATE`, which takes the write lock before the first read (waiting for
//! it in the busy handler), so the second attempt cannot conflict: no lost update, at most
//! one extra attempt.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Statement, params};

use super::{Backend, StoreError, Tx, check_table_name};

/// How long a statement waits for another worker's write lock before failing with "busy"
/// (a transaction holds it for well under a millisecond, so this only runs out when something
/// else keeps the database locked).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The page cache of each connection, in KiB.
pub const CACHE_KIB: i64 = 512;

/// The busy handler: SQLite's own (`busy_timeout`) sleeps up to 100 ms between tries, far
/// longer than a worker holds the write lock, so under load some workers would wait much
/// longer than needed while others take turns. Polling every 0.1–1 ms keeps waits short and
/// fair enough, for at most [`BUSY_TIMEOUT`].
fn busy_handler() -> impl FnMut(i32) -> bool + Send + 'static {
    let mut since = std::time::Instant::now();
    move |polls| {
        if polls == 0 {
            since = std::time::Instant::now();
        } else if since.elapsed() >= BUSY_TIMEOUT {
            return false;
        }
        let micros = if polls < 10 {
            100 * (polls.max(0) as u64 + 1)
        } else {
            1000
        };
        std::thread::sleep(Duration::from_micros(micros));
        true
    }
}

pub struct SqliteBackend {
    /// The per-message statements of each table used on this connection.
    sql: Vec<TableSql>,
    /// The `get_first` statement of each list of tables used on this connection.
    get_first_sql: Vec<(Vec<String>, Held)>,
    /// `BEGIN`, `BEGIN IMMEDIATE`, `COMMIT`.
    control: [Held; 3],
    /// Boxed, so it stays at one address while the held statements borrow it; they are all
    /// finalized before it closes (see `Drop`).
    conn: Box<Connection>,
    path: PathBuf,
    /// The open transaction was begun deferred and has read: a write must upgrade it.
    read_in_deferred: bool,
    /// Whether the open transaction was begun deferred.
    deferred: bool,
    /// The last attempt lost an upgrade race: the next transaction begins `IMMEDIATE`.
    immediate_next: bool,
}

const BEGIN: usize = 0;
const BEGIN_IMMEDIATE: usize = 1;
const COMMIT: usize = 2;

impl Drop for SqliteBackend {
    fn drop(&mut self) {
        // The held statements borrow the connection: finalize them before it closes (the
        // fields are dropped after this).
        self.sql.clear();
        self.get_first_sql.clear();
        for held in &mut self.control {
            held.stmt = None;
        }
    }
}

/// A statement prepared on first use and kept for the connection's life: per message,
/// formatting SQL text and rusqlite's statement cache (a hash lookup and a re-insert per use)
/// cost as much CPU as SQLite running the statement.
struct Held {
    sql: String,
    stmt: Option<Statement<'static>>,
}

impl Held {
    fn new(sql: String) -> Held {
        Held { sql, stmt: None }
    }
}

/// `held`'s statement, prepared on `conn` (the backend's) on first use.
fn prepare<'a>(
    conn: &Connection,
    held: &'a mut Held,
) -> rusqlite::Result<&'a mut Statement<'static>> {
    let stmt = match held.stmt.take() {
        Some(stmt) => stmt,
        None => {
            let stmt = conn.prepare(&held.sql)?;
            // SAFETY: only the lifetime changes. `conn` is the backend's boxed connection: its
            // address does not change while the backend lives, nothing replaces it, and the
            // backend's `Drop` finalizes every held statement before the connection closes.
            unsafe { std::mem::transmute::<Statement<'_>, Statement<'static>>(stmt) }
        }
    };
    Ok(held.stmt.insert(stmt))
}

/// One table's per-message statements.
struct TableSql {
    table: String,
    get: Held,
    set: Held,
    delete: Held,
    count: Held,
    count_sum: Held,
}

impl TableSql {
    fn new(table: &str) -> TableSql {
        TableSql {
            table: table.to_string(),
            get: Held::new(format!("SELECT value FROM {table} WHERE id = ?1")),
            set: Held::new(format!(
                "INSERT INTO {table} (id, value) VALUES (?1, ?2) \
                 ON CONFLICT(id) DO UPDATE SET value = excluded.value"
            )),
            delete: Held::new(format!("DELETE FROM {table} WHERE id = ?1")),
            count: Held::new(format!(
                "INSERT INTO {table} (key, bucket, count) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(key, bucket) DO UPDATE SET count = count + excluded.count"
            )),
            count_sum: Held::new(format!(
                "SELECT COALESCE(SUM(count), 0) FROM {table} \
                 WHERE key = ?1 AND bucket BETWEEN ?2 AND ?3"
            )),
        }
    }
}

/// The statements of `table` (a checked name), made on first use.
fn table_sql<'a>(cache: &'a mut Vec<TableSql>, table: &str) -> &'a mut TableSql {
    match cache.iter().position(|t| t.table == table) {
        Some(i) => &mut cache[i],
        None => {
            cache.push(TableSql::new(table));
            let last = cache.len() - 1;
            &mut cache[last]
        }
    }
}

impl SqliteBackend {
    /// Open (creating the file if needed; the directory must exist and be writable).
    pub fn open(path: &Path) -> Result<SqliteBackend, StoreError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let problem = match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some("is not a directory".to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some("does not exist".to_string())
            }
            Err(e) => Some(format!("cannot be accessed: {e}")),
        };
        if let Some(problem) = problem {
            return Err(StoreError::new(format!(
                "cannot open the TtlDb store {}: the directory {} {problem}",
                path.display(),
                dir.display()
            )));
        }
        // Create the file ourselves first: SQLite's "unable to open database file" does not
        // say why, the OS error ("Permission denied") does. Mode 0600 whatever the umask: it
        // holds who mails whom (SQLite gives its -wal and -shm files the same mode).
        if let Err(e) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
        {
            return Err(StoreError::new(format!(
                "cannot open the TtlDb store {}: {e} (the directory {} and the file must be \
                 writable by the filter's user)",
                path.display(),
                dir.display()
            )));
        }
        let open_error = |e: rusqlite::Error| {
            let mut err = sqlite_error(path, "open", e);
            err.message.push_str(&format!(
                " (the directory {} and the file must be writable by the filter's user)",
                dir.display()
            ));
            err
        };
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_error)?;
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(StoreError::new(format!(
                "cannot open the TtlDb store {}: the file is read-only for the filter's user",
                path.display()
            )));
        }
        // Before the pragmas: switching to WAL needs a lock another worker may hold.
        conn.busy_handler(Some(busy_handler()))
            .map_err(open_error)?;
        // WAL: readers never block the writer. synchronous=NORMAL: in WAL mode the database
        // stays consistent after a crash or power loss; only the last transactions before a
        // power loss may be lost, which is acceptable for greylist/rate state and saves an
        // fsync per message.
        // WAL is a property of the file: only the first opener switches it. SQLite may answer
        // SQLITE_BUSY here without calling the busy handler (another worker is switching it or
        // recovering the WAL at the same moment), so retry for a bounded time.
        let started = std::time::Instant::now();
        let mode: String = loop {
            match conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0)) {
                Ok(mode) => break mode,
                Err(e) if is_busy(&e) && started.elapsed() < BUSY_TIMEOUT => {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(e) => return Err(open_error(e)),
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::new(format!(
                "cannot open the TtlDb store {}: journal_mode=WAL was refused (mode is '{mode}')",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_error)?;
        // A page cache of at most 512 KiB per worker instead of SQLite's 2 MB: any other
        // worker's commit empties it (a read transaction that finds the WAL changed drops its
        // cache), so a big one would mostly hold pages read once, in every worker's heap. The
        // interior pages of the tables' b-trees, what every lookup reads, fit many times over;
        // the OS page cache holds the file anyway. (Memory mapping stays off, SQLite's
        // default, so the file's pages do not count in the workers' RSS.)
        conn.pragma_update(None, "cache_size", -CACHE_KIB)
            .map_err(open_error)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(SqliteBackend {
            sql: Vec::new(),
            get_first_sql: Vec::new(),
            control: [
                Held::new("BEGIN".into()),
                Held::new("BEGIN IMMEDIATE".into()),
                Held::new("COMMIT".into()),
            ],
            conn: Box::new(conn),
            path: path.to_path_buf(),
            read_in_deferred: false,
            deferred: false,
            immediate_next: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&mut self) {
        self.read_in_deferred = self.deferred;
    }

    /// A write's result (`what` names it in an error): a busy error when upgrading a
    /// deferred transaction that has read (SQLite did not wait) makes the retry begin
    /// `IMMEDIATE`.
    fn wrote(
        &mut self,
        result: rusqlite::Result<usize>,
        what: impl FnOnce() -> String,
    ) -> Result<(), StoreError> {
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = sqlite_error(&self.path, &what(), e);
                if err.transient && !err.connection_lost && self.read_in_deferred {
                    self.immediate_next = true;
                }
                Err(err)
            }
        }
    }

    fn error(&self, what: &str, e: rusqlite::Error) -> StoreError {
        sqlite_error(&self.path, what, e)
    }

    /// A statement used rarely (purges): rusqlite's statement cache is enough.
    fn execute(
        &self,
        what: &str,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<usize, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| self.error(what, e))?;
        stmt.execute(p).map_err(|e| self.error(what, e))
    }
}

/// The `get_first` statement of `tables` (checked names), made on first use: one row of one
/// column per table, NULL where the key is absent (values are NOT NULL).
fn get_first_sql<'a>(cache: &'a mut Vec<(Vec<String>, Held)>, tables: &[&str]) -> &'a mut Held {
    let i = match cache.iter().position(|(t, _)| t.iter().eq(tables.iter())) {
        Some(i) => i,
        None => {
            let columns: Vec<String> = tables
                .iter()
                .map(|t| format!("(SELECT value FROM {t} WHERE id = ?1)"))
                .collect();
            let sql = format!("SELECT {}", columns.join(", "));
            cache.push((
                tables.iter().map(|t| t.to_string()).collect(),
                Held::new(sql),
            ));
            cache.len() - 1
        }
    };
    &mut cache[i].1
}

/// Run a held statement.
fn execute(
    conn: &Connection,
    held: &mut Held,
    p: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    prepare(conn, held)?.execute(p)
}

/// SQLITE_BUSY or SQLITE_LOCKED.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Busy/locked are transient (retried); an I/O error or a replaced file makes the connection
/// useless, so it is dropped and reopened.
fn sqlite_error(path: &Path, what: &str, e: rusqlite::Error) -> StoreError {
    let message = format!("SQLite {}: {what}: {e}", path.display());
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::transient(message),
        Some(
            ErrorCode::SystemIoFailure
            | ErrorCode::NotADatabase
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::CannotOpen,
        ) => StoreError {
            message,
            transient: false,
            connection_lost: true,
        },
        _ => StoreError::new(message),
    }
}

impl Tx for SqliteBackend {
    fn get(&mut self, table: &str, key: &str) -> Result<Option<i64>, StoreError> {
        check_table_name(table)?;
        self.read();
        let path = &self.path;
        let err = |e: rusqlite::Error| sqlite_error(path, &format!("get from {table}"), e);
        let stmt = prepare(&self.conn, &mut table_sql(&mut self.sql, table).get).map_err(err)?;
        stmt.query_row(params![key], |row| row.get::<_, i64>(0))
            .optional()
            .map_err(err)
    }

    /// One statement for all the tables (greylist looks a key up in two tables per recipient).
    fn get_first(
        &mut self,
        tables: &[&str],
        key: &str,
    ) -> Result<Option<(usize, i64)>, StoreError> {
        for table in tables {
            check_table_name(table)?;
        }
        if tables.is_empty() {
            return Ok(None);
        }
        self.read();
        let path = &self.path;
        let err =
            |e: rusqlite::Error| sqlite_error(path, &format!("get from {}", tables.join(", ")), e);
        let held = get_first_sql(&mut self.get_first_sql, tables);
        let stmt = prepare(&self.conn, held).map_err(err)?;
        let mut rows = stmt.query(params![key]).map_err(err)?;
        let Some(row) = rows.next().map_err(err)? else {
            return Ok(None);
        };
        for i in 0..tables.len() {
            if let Some(value) = row.get::<_, Option<i64>>(i).map_err(err)? {
                return Ok(Some((i, value)));
            }
        }
        Ok(None)
    }

    fn set(&mut self, table: &str, key: &str, value: i64) -> Result<(), StoreError> {
        check_table_name(table)?;
        let held = &mut table_sql(&mut self.sql, table).set;
        let result = execute(&self.conn, held, params![key, value]);
        self.wrote(result, || format!("set in {table}"))
    }

    fn delete(&mut self, table: &str, key: &str) -> Result<(), StoreError> {
        check_table_name(table)?;
        let held = &mut table_sql(&mut self.sql, table).delete;
        let result = execute(&self.conn, held, params![key]);
        self.wrote(result, || format!("delete from {table}"))
    }

    fn count(&mut self, table: &str, key: &str, bucket: i64, n: i64) -> Result<(), StoreError> {
        check_table_name(table)?;
        let held = &mut table_sql(&mut self.sql, table).count;
        let result = execute(&self.conn, held, params![key, bucket, n]);
        self.wrote(result, || format!("count in {table}"))
    }

    fn count_sum(
        &mut self,
        table: &str,
        key: &str,
        first: i64,
        last: i64,
    ) -> Result<i64, StoreError> {
        check_table_name(table)?;
        self.read();
        let path = &self.path;
        let err = |e: rusqlite::Error| sqlite_error(path, &format!("sum of counts in {table}"), e);
        let held = &mut table_sql(&mut self.sql, table).count_sum;
        let stmt = prepare(&self.conn, held).map_err(err)?;
        stmt.query_row(params![key, first, last], |row| row.get::<_, i64>(0))
            .map_err(err)
    }
}

impl Backend for SqliteBackend {
    fn begin(&mut self) -> Result<(), StoreError> {
        let immediate = std::mem::take(&mut self.immediate_next);
        self.deferred = false;
        self.read_in_deferred = false;
        let which = if immediate { BEGIN_IMMEDIATE } else { BEGIN };
        execute(&self.conn, &mut self.control[which], [])
            .map_err(|e| sqlite_error(&self.path, "begin", e))?;
        self.deferred = !immediate;
        Ok(())
    }

    fn retry_at_once(&self) -> bool {
        self.immediate_next
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        execute(&self.conn, &mut self.control[COMMIT], [])
            .map(|_| ())
            .map_err(|e| sqlite_error(&self.path, "commit", e))
    }

    fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    fn ensure_ttl_table(&mut self, table: &str) -> Result<(), StoreError> {
        check_table_name(table)?;
        // The reference's columns and key, so the schema is the same in every backend.
        // WITHOUT ROWID: the rows live in the primary key's b-tree, so a lookup is one b-tree
        // search instead of two (the key's index, then the rowid table). Tables made before
        // (with a rowid) work the same.
        self.conn
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {table} \
                 (id CHAR(64) NOT NULL, value BIGINT NOT NULL, PRIMARY KEY(id)) WITHOUT ROWID"
            ))
            .map_err(|e| self.error(&format!("create table {table}"), e))
    }

    fn ensure_counter_table(&mut self, table: &str) -> Result<(), StoreError> {
        check_table_name(table)?;
        self.conn
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (key TEXT NOT NULL, bucket BIGINT NOT NULL, \
                 count BIGINT NOT NULL, PRIMARY KEY (key, bucket)) WITHOUT ROWID"
            ))
            .map_err(|e| self.error(&format!("create table {table}"), e))
    }

    fn purge_ttl(&mut self, table: &str, cutoff: i64) -> Result<u64, StoreError> {
        check_table_name(table)?;
        self.execute(
            &format!("purge {table}"),
            &format!("DELETE FROM {table} WHERE value < ?1"),
            params![cutoff],
        )
        .map(|n| n as u64)
    }

    fn purge_counters(&mut self, table: &str, first_kept: i64) -> Result<u64, StoreError> {
        check_table_name(table)?;
        self.execute(
            &format!("purge {table}"),
            &format!("DELETE FROM {table} WHERE bucket < ?1"),
            params![first_kept],
        )
        .map(|n| n as u64)
    }

    fn dump_ttl(&mut self, table: &str) -> Result<Vec<(String, i64)>, StoreError> {
        check_table_name(table)?;
        let what = format!("dump {table}");
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT id, value FROM {table} ORDER BY id"))
            .map_err(|e| self.error(&what, e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(|e| self.error(&what, e))?;
        // SQLite does not pad CHAR(64): keys come back exactly as stored.
        rows.map(|r| r.map_err(|e| self.error(&what, e))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Run `f` in a thread whose file-system uid is `nobody`, so permissions apply even when
    /// the tests run as root (setfsuid is per thread on Linux and drops the file-system
    /// capabilities; as another user it fails harmlessly and the modes apply anyway).
    fn as_nobody<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setfsuid only changes this thread's file-system credentials.
                unsafe { libc::setfsuid(65534) };
                f()
            })
            .join()
            .expect("thread")
        })
    }

    #[test]
    fn opens_with_wal_and_the_reference_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ttldb.sqlite");
        let mut b = SqliteBackend::open(&path).expect("open");
        assert!(path.is_file());
        b.ensure_ttl_table("greylist_Passed").expect("ttl table");
        b.ensure_ttl_table("greylist_Passed").expect("again");
        b.ensure_counter_table("ratelimit").expect("counter table");
        let check = Connection::open(&path).expect("open");
        let mode: String = check
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        let sync: i64 = b
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("sync");
        assert_eq!(sync, 1, "NORMAL");
        let cache: i64 = b
            .conn
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .expect("cache_size");
        assert_eq!(cache, -CACHE_KIB);
        let mmap: i64 = b
            .conn
            .query_row("PRAGMA mmap_size", [], |r| r.get(0))
            .expect("mmap_size");
        assert_eq!(mmap, 0);
        let sql = |name: &str| -> String {
            check
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .expect("schema")
        };
        assert_eq!(
            sql("greylist_Passed"),
            "CREATE TABLE greylist_Passed (id CHAR(64) NOT NULL, value BIGINT NOT NULL, PRIMARY KEY(id)) WITHOUT ROWID"
        );
        assert!(sql("ratelimit").contains("PRIMARY KEY (key, bucket)"));
    }

    #[test]
    fn keys_are_bound_not_spliced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = SqliteBackend::open(&dir.path().join("ttldb.sqlite")).expect("open");
        b.ensure_ttl_table("t").expect("table");
        for key in ["name2' -- ", "x'); DROP TABLE t; --", "\"\"", ""] {
            b.set("t", key, 7).expect("set");
            assert_eq!(b.get("t", key).expect("get"), Some(7), "{key}");
        }
        assert_eq!(b.dump_ttl("t").expect("dump").len(), 4);
        assert!(
            b.get("t; x", "k")
                .is_err_and(|e| e.message.contains("invalid table name"))
        );
    }

    #[test]
    fn get_first_is_the_first_table_holding_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = SqliteBackend::open(&dir.path().join("ttldb.sqlite")).expect("open");
        b.ensure_ttl_table("a").expect("table");
        b.ensure_ttl_table("b").expect("table");
        b.set("a", "both", 1).expect("set");
        b.set("b", "both", 2).expect("set");
        b.set("b", "second", 3).expect("set");
        b.set("a", "first", 0).expect("set");
        let mut get_first = |tables: &[&str], key: &str| b.get_first(tables, key).expect("get");
        assert_eq!(get_first(&["a", "b"], "both"), Some((0, 1)));
        assert_eq!(get_first(&["b", "a"], "both"), Some((0, 2)));
        assert_eq!(get_first(&["a", "b"], "second"), Some((1, 3)));
        assert_eq!(get_first(&["a", "b"], "first"), Some((0, 0)));
        assert_eq!(get_first(&["a", "b"], "none"), None);
        assert_eq!(get_first(&["b"], "second"), Some((0, 3)));
        assert_eq!(get_first(&[], "both"), None);
        assert!(
            b.get_first(&["a", "b;"], "k")
                .is_err_and(|e| e.message.contains("invalid table name"))
        );
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope").join("ttldb.sqlite");
        let err = SqliteBackend::open(&path).err().expect("fails");
        assert!(!err.transient);
        assert!(err.message.contains(&path.display().to_string()), "{err}");
        assert!(err.message.contains("does not exist"), "{err}");
    }

    #[test]
    fn unwritable_directory_and_file_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).expect("mkdir");
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        let path = ro.join("ttldb.sqlite");
        let err = as_nobody(|| SqliteBackend::open(&path).err().expect("fails"));
        assert!(!err.transient);
        assert!(err.message.contains(&path.display().to_string()), "{err}");
        assert!(err.message.contains("Permission denied"), "{err}");
        assert!(err.message.contains("writable"), "{err}");

        // An existing database the filter's user cannot write.
        let path = dir.path().join("ttldb.sqlite");
        SqliteBackend::open(&path).expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = as_nobody(|| SqliteBackend::open(&path).err().expect("fails"));
        assert!(err.message.contains("Permission denied"), "{err}");

        // A writable file in a directory where the WAL files cannot be created.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let err = as_nobody(|| SqliteBackend::open(&path).err().expect("fails"));
        assert!(err.message.contains(&path.display().to_string()), "{err}");
        assert!(err.message.contains("writable"), "{err}");
    }

    #[test]
    fn busy_is_transient() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ttldb.sqlite");
        let mut b = SqliteBackend::open(&path).expect("open");
        b.ensure_ttl_table("t").expect("table");
        b.conn
            .busy_timeout(Duration::from_millis(10))
            .expect("timeout");
        let holder = Connection::open(&path).expect("open");
        holder.execute_batch("BEGIN IMMEDIATE").expect("lock");
        b.begin().expect("a deferred BEGIN takes no lock");
        let err = b.set("t", "k", 1).expect_err("busy");
        assert!(err.transient && !err.connection_lost, "{err:?}");
        assert!(
            err.message.contains("set in t") && err.message.contains("locked"),
            "{err}"
        );
        assert!(!b.retry_at_once(), "the busy handler has waited already");
        b.rollback();
        holder.execute_batch("COMMIT").expect("unlock");
        b.begin().expect("begin");
        b.set("t", "k", 1).expect("free again");
        b.commit().expect("commit");
        assert!(b.conn.is_autocommit());
    }

    /// A deferred transaction that read cannot write after another connection committed: it
    /// fails at once, and the retry holds the write lock from its BEGIN.
    #[test]
    fn a_stale_upgrade_is_retried_at_once_with_the_write_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ttldb.sqlite");
        let mut b = SqliteBackend::open(&path).expect("open");
        b.ensure_ttl_table("t").expect("table");
        b.set("t", "k", 1).expect("set");
        let other = Connection::open(&path).expect("open");

        b.begin().expect("begin");
        assert_eq!(b.get("t", "k").expect("get"), Some(1));
        other
            .execute_batch("UPDATE t SET value = 2 WHERE id = 'k'")
            .expect("other writes");
        let started = std::time::Instant::now();
        let err = b.set("t", "k", 10).expect_err("stale snapshot");
        assert!(started.elapsed() < Duration::from_secs(1), "did not wait");
        assert!(err.transient && !err.connection_lost, "{err:?}");
        assert!(b.retry_at_once());
        b.rollback();

        b.begin().expect("begin immediate");
        assert!(!b.retry_at_once());
        other
            .busy_timeout(Duration::from_millis(10))
            .expect("timeout");
        assert!(
            other.execute_batch("BEGIN IMMEDIATE").is_err(),
            "the retry holds the write lock"
        );
        let v = b.get("t", "k").expect("get").expect("value");
        b.set("t", "k", v + 10).expect("set");
        b.commit().expect("commit");
        assert_eq!(b.get("t", "k").expect("get"), Some(12));

        // The next transaction is optimistic again: it takes no lock until it writes.
        b.begin().expect("begin");
        b.get("t", "k").expect("get");
        other.execute_batch("BEGIN IMMEDIATE").expect("lock free");
        other.execute_batch("COMMIT").expect("commit");
        b.commit().expect("commit");
    }
}
