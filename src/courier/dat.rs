//! Read-only lookups in Courier's `.dat` files (GDBM, as Debian's makedat writes them).
//!
//! makedat builds a new file under a temporary name and renames it over the old one, so a
//! handle stays valid (it keeps the old inode) and we only need to notice the change: one `stat`
//! per lookup, and a reopen when the identity differs. The file is opened without locking, so a
//! rebuild never waits for us and we never wait for it.

use std::cell::RefCell;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::watch::{FileId, with_path};

struct OpenDat {
    db: gdbm_native::Gdbm,
    id: FileId,
    /// A handle opened before a fork shares its file offset with the other processes; a
    /// worker therefore never uses a handle it did not open itself.
    pid: u32,
}

/// One `.dat` file, opened on first use and reopened when it changes on disk.
pub struct DatFile {
    path: PathBuf,
    open: RefCell<Option<OpenDat>>,
}

impl DatFile {
    pub fn new(path: &Path) -> DatFile {
        DatFile {
            path: path.to_path_buf(),
            open: RefCell::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The value of `key`. A missing file is `Ok(None)`; an unreadable or corrupt file is an
    /// error naming the path.
    pub fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let meta = match fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.open.replace(None);
                return Ok(None);
            }
            Err(e) => return Err(with_path(&self.path, e)),
        };
        let id = FileId::of(&meta);
        let pid = std::process::id();
        let mut open = self.open.borrow_mut();
        let current = matches!(&*open, Some(o) if o.id == id && o.pid == pid);
        if !current {
            *open = None;
            let db = match gdbm_native::OpenOptions::new().lock(false).open(&self.path) {
                Ok(db) => db,
                Err(gdbm_native::Error::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(None);
                }
                Err(e) => return Err(self.error(e)),
            };
            // The identity was taken before opening: if the file was replaced in between, the
            // next lookup sees a different identity and opens the new one.
            *open = Some(OpenDat { db, id, pid });
        }
        let Some(o) = open.as_ref() else {
            return Ok(None);
        };
        match o.db.get::<[u8], Vec<u8>>(key) {
            Ok(value) => Ok(value),
            Err(e) => {
                // Drop the handle so the next lookup starts afresh.
                *open = None;
                Err(self.error(e))
            }
        }
    }

    fn error(&self, e: gdbm_native::Error) -> io::Error {
        let kind = match &e {
            gdbm_native::Error::Io(io) => io.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, format!("{}: {}", self.path.display(), e))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build a GDBM file the way makedat does: under another name, then renamed over.
    pub(crate) fn make_db(path: &Path, pairs: &[(&str, &str)]) {
        let tmp = path.with_extension("tmp");
        let _ = fs::remove_file(&tmp);
        let mut db = gdbm_native::OpenOptions::new()
            .create(true)
            .open(&tmp)
            .unwrap();
        for (k, v) in pairs {
            db.insert(*k, *v).unwrap();
        }
        db.close().unwrap();
        // like makedat: build under another name, then rename over
        fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let dat = DatFile::new(&dir.path().join("x.dat"));
        assert_eq!(dat.get(b"k").unwrap(), None);
    }

    #[test]
    fn lookups_and_rebuild_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.dat");
        make_db(&path, &[("a", "1"), ("b", "two")]);
        let dat = DatFile::new(&path);
        assert_eq!(dat.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(dat.get(b"b").unwrap(), Some(b"two".to_vec()));
        assert_eq!(dat.get(b"c").unwrap(), None);

        make_db(&path, &[("c", "3")]);
        assert_eq!(dat.get(b"a").unwrap(), None);
        assert_eq!(dat.get(b"c").unwrap(), Some(b"3".to_vec()));

        fs::remove_file(&path).unwrap();
        assert_eq!(dat.get(b"c").unwrap(), None);
    }

    #[test]
    fn a_writer_holding_the_lock_does_not_block_us() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.dat");
        make_db(&path, &[("a", "1")]);
        let _writer = gdbm_native::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap();
        let dat = DatFile::new(&path);
        assert_eq!(dat.get(b"a").unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn corrupt_file_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.dat");
        fs::write(&path, b"this is not a gdbm file at all, just text\n").unwrap();
        let dat = DatFile::new(&path);
        let err = dat.get(b"a").unwrap_err();
        assert!(err.to_string().contains("bad.dat"), "{err}");
        // still an error the second time, no panic
        assert!(dat.get(b"a").is_err());
    }

    #[test]
    fn empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.dat");
        fs::write(&path, b"").unwrap();
        assert!(DatFile::new(&path).get(b"a").is_err());
    }
}
