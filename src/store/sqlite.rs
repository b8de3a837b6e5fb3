//! The SQLite backend (default, embedded): one file `<dir>/ttldb.sqlite`, WAL, a busy timeout,
//! prepared statements, `BEGIN IMMEDIATE` transactions.

use std::path::Path;

use super::{Backend, StoreError};

pub struct SqliteBackend {
    conn: rusqlite::Connection,
}

impl SqliteBackend {
    /// Open (creating the file if needed; the directory must exist and be writable).
    pub fn open(path: &Path) -> Result<SqliteBackend, StoreError> {
        let _ = path;
        todo!("store/sqlite.rs")
    }
}

#[allow(unused)]
fn _assert_backend(b: SqliteBackend) -> Box<dyn Backend> {
    let _ = b.conn;
    todo!("store/sqlite.rs: impl Tx + Backend for SqliteBackend")
}
