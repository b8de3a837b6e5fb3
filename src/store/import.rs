//! `rustfilter ttldb import DIR`: pythonfilter's GDBM TtlDb files (keys 32-hex MD5, values
//! ASCII unix seconds) into the configured store, so switching does not re-greylist everyone.

use std::path::Path;

use super::{Store, StoreError};

/// What was imported from one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub table: String,
    pub entries: u64,
    /// Entries skipped (bad key or value), with the reason logged.
    pub skipped: u64,
}

/// Import every GDBM file in `dir` whose name is a TtlDb name pythonfilter uses
/// (greylist_Passed, greylist_NotPassed, auto_whitelist, correspondents, goodsenders,
/// badsenders). An existing entry keeps the newer of the two values.
pub fn import_dir(store: &mut Store, dir: &Path) -> Result<Vec<Imported>, StoreError> {
    let _ = (store, dir);
    todo!("store/import.rs")
}
