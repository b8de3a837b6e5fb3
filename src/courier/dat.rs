//! Read-only lookups in Courier's `.dat` files (GDBM, as Debian's makedat writes them).

use std::io;
use std::path::{Path, PathBuf};

/// One `.dat` file, opened on first use and reopened when it changes on disk.
pub struct DatFile {
    path: PathBuf,
}

impl DatFile {
    pub fn new(path: &Path) -> DatFile {
        DatFile {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The value of `key`. A missing file is `Ok(None)`; an unreadable or corrupt file is an
    /// error naming the path.
    pub fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let _ = key;
        todo!("courier/dat.rs")
    }
}
