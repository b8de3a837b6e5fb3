//! The quarantine directory: the held copies and their SQLite index.
//!
//! Layout of the directory (created 0700 when missing):
//!
//! * `D<id>` — the message body, as it was in the spool;
//! * `C<id>`, `C<id>.1`, `C<id>.2`, … — the control files, in order, as they were before the
//!   recipients were marked delivered;
//! * `index.sqlite` — tables `items` (one row per held message) and `recipients` (its
//!   undelivered recipients, each with the time it was released, 0 while held).
//!
//! Every file is created with `O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600. `<id>` is 128 random
//! bits in lower-case hex, so ids are neither guessable nor reused (spec §9 defects 6, 10).
//! Crash safety: the files are complete and fsynced (and the directory too) before the index
//! row is committed; an item is whatever the index says. Files without a row (a crash in
//! between) are removed by `purge` once they are old.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::courier::control::Recipient;

/// The index file in the quarantine directory.
pub const INDEX_FILE: &str = "index.sqlite";
/// How long a writer waits for another process's lock on the index.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// The largest held message read back for a release.
pub const MAX_RELEASE_BYTES: u64 = crate::courier::message::MAX_MESSAGE_BYTES;
/// Files of a crashed quarantine run are left alone this long at least, so `purge` never
/// removes the files of an item being written.
pub const ORPHAN_MIN_AGE_SECS: i64 = 3600;

/// 128 random bits as 32 lower-case hex digits.
pub fn new_id() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: the pointer and length describe the unfilled part of `bytes`.
        let n = unsafe {
            libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `id` has the form of an id we issue (also what keeps it out of paths and SQL).
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub fn data_name(id: &str) -> String {
    format!("D{id}")
}

/// `C<id>` for the first control file, `C<id>.<n>` for the others.
pub fn control_name(id: &str, n: usize) -> String {
    if n == 0 {
        format!("C{id}")
    } else {
        format!("C{id}.{n}")
    }
}

/// The id in a file name of the directory (`D<id>`, `C<id>`, `C<id>.<n>`).
fn id_of_file_name(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('D').or_else(|| name.strip_prefix('C'))?;
    let (id, suffix) = rest.split_at(rest.len().min(32));
    let suffix_ok = suffix.is_empty()
        || (name.starts_with('C')
            && suffix
                .strip_prefix('.')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())));
    (is_valid_id(id) && suffix_ok).then_some(id)
}

/// Create the directory (and missing parents) with mode 0700; an existing one is kept as it is.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::other(format!(
            "{} exists and is not a directory",
            dir.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    }
}

/// A new file, exclusively, never through a symbolic link, mode 0600.
pub fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Copy `from` into the new file `to` (exclusive, 0600) and fsync it.
pub fn copy_exclusive(from: &Path, to: &Path) -> io::Result<()> {
    let mut src = File::open(from)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", from.display())))?;
    let mut dst = create_exclusive(to)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", to.display())))?;
    let result = io::copy(&mut src, &mut dst)
        .and_then(|_| dst.flush())
        .and_then(|()| dst.sync_all());
    result.map_err(|e| io::Error::new(e.kind(), format!("copying to {}: {e}", to.display())))
}

/// fsync a directory, so the names of new files survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io::Error::new(e.kind(), format!("fsync {}: {e}", dir.display())))
}

/// Read at most `limit` bytes of a file; a larger one is an error.
pub fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut data = Vec::new();
    file.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(io::Error::other(format!(
            "{} is larger than {limit} bytes",
            path.display()
        )));
    }
    Ok(data)
}

/// Remove the files of an item, ignoring those already gone.
pub fn remove_item_files(dir: &Path, id: &str, controls: usize) {
    let mut names = vec![data_name(id)];
    names.extend((0..controls.max(1)).map(|n| control_name(id, n)));
    for name in names {
        let path = dir.join(&name);
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            log::warn!("quarantine: cannot remove {}: {e}", path.display());
        }
    }
}

/// One held message as the index records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    /// Unix time it was quarantined.
    pub time: i64,
    pub sender: String,
    pub explanation: String,
    /// How many control files were copied.
    pub controls: usize,
    /// The recipients it was held for, each with the unix time it was released to them
    /// (0: still held).
    pub recipients: Vec<(Recipient, i64)>,
}

impl Item {
    /// Released to every recipient.
    pub fn released(&self) -> bool {
        !self.recipients.is_empty() && self.recipients.iter().all(|(_, t)| *t != 0)
    }
}

/// The index, opened for one operation (the filter's workers and the command line share it;
/// SQLite's locking serializes the writers).
pub struct Index {
    conn: Connection,
}

fn sql_error(e: rusqlite::Error) -> io::Error {
    io::Error::other(format!("quarantine index: {e}"))
}

impl Index {
    /// Open the index of `dir`, creating the file (0600, exclusively) and the tables when
    /// missing. The directory must exist.
    pub fn open(dir: &Path) -> io::Result<Index> {
        let path = dir.join(INDEX_FILE);
        // Created here rather than by SQLite, which would use the umask's mode; SQLite then
        // gives its journal the database file's mode.
        match create_exclusive(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot create {}: {e}", path.display()),
                ));
            }
        }
        let conn = Connection::open(&path)
            .map_err(|e| io::Error::other(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_error)?;
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS items (
                 id TEXT PRIMARY KEY,
                 time INTEGER NOT NULL,
                 sender TEXT NOT NULL,
                 explanation TEXT NOT NULL,
                 controls INTEGER NOT NULL,
                 released INTEGER NOT NULL DEFAULT 0
             );
             CREATE TABLE IF NOT EXISTS recipients (
                 id TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,
                 n INTEGER NOT NULL,
                 addr TEXT NOT NULL,
                 orig TEXT NOT NULL,
                 dsn TEXT NOT NULL,
                 released INTEGER NOT NULL DEFAULT 0,
                 PRIMARY KEY (id, n)
             );
             CREATE INDEX IF NOT EXISTS items_time ON items(time);",
        )
        .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        Ok(Index { conn })
    }

    /// Record an item (its files must be complete and synced).
    pub fn insert(&mut self, item: &Item) -> io::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_error)?;
        tx.execute(
            "INSERT INTO items (id, time, sender, explanation, controls) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                item.id,
                item.time,
                item.sender,
                item.explanation,
                item.controls as i64
            ],
        )
        .map_err(sql_error)?;
        for (n, (r, released)) in item.recipients.iter().enumerate() {
            tx.execute(
                "INSERT INTO recipients (id, n, addr, orig, dsn, released) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![item.id, n as i64, r.addr, r.orig, r.dsn, released],
            )
            .map_err(sql_error)?;
        }
        tx.commit().map_err(sql_error)
    }

    /// Forget an item (its files are the caller's business).
    pub fn delete(&mut self, id: &str) -> io::Result<()> {
        self.conn
            .execute("DELETE FROM items WHERE id = ?1", params![id])
            .map(drop)
            .map_err(sql_error)
    }

    pub fn get(&self, id: &str) -> io::Result<Option<Item>> {
        let row = self
            .conn
            .query_row(
                "SELECT time, sender, explanation, controls FROM items WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(sql_error)?;
        let Some((time, sender, explanation, controls)) = row else {
            return Ok(None);
        };
        Ok(Some(Item {
            id: id.to_string(),
            time,
            sender,
            explanation,
            controls: usize::try_from(controls).unwrap_or(0),
            recipients: self.recipients(id)?,
        }))
    }

    fn recipients(&self, id: &str) -> io::Result<Vec<(Recipient, i64)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT addr, orig, dsn, released FROM recipients WHERE id = ?1 ORDER BY n",
            )
            .map_err(sql_error)?;
        let rows = stmt
            .query_map(params![id], |r| {
                Ok((
                    Recipient {
                        addr: r.get(0)?,
                        orig: r.get(1)?,
                        dsn: r.get(2)?,
                    },
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(sql_error)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql_error)
    }

    /// Every item, oldest first.
    pub fn list(&self) -> io::Result<Vec<Item>> {
        let ids: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id FROM items ORDER BY time, id")
                .map_err(sql_error)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(sql_error)?;
            rows.collect::<Result<_, _>>().map_err(sql_error)?
        };
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(item) = self.get(&id)? {
                items.push(item);
            }
        }
        Ok(items)
    }

    /// Claim the first recipient of `id` that `matches` and is not released yet: mark it
    /// released at `now` and return its number and the recipient. `Ok(None)` when the item
    /// is unknown or no unreleased recipient matches. The claim is one transaction, so two
    /// concurrent requests cannot both win.
    pub fn claim_release(
        &mut self,
        id: &str,
        now: i64,
        matches: impl Fn(&Recipient) -> bool,
    ) -> io::Result<Option<(i64, Recipient)>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_error)?;
        let candidates: Vec<(i64, Recipient)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT n, addr, orig, dsn FROM recipients WHERE id = ?1 AND released = 0 ORDER BY n",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        Recipient {
                            addr: r.get(1)?,
                            orig: r.get(2)?,
                            dsn: r.get(3)?,
                        },
                    ))
                })
                .map_err(sql_error)?;
            rows.collect::<Result<_, _>>().map_err(sql_error)?
        };
        let Some((n, rcpt)) = candidates.into_iter().find(|(_, r)| matches(r)) else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE recipients SET released = ?3 WHERE id = ?1 AND n = ?2",
            params![id, n, now],
        )
        .map_err(sql_error)?;
        tx.execute(
            "UPDATE items SET released = ?2 WHERE id = ?1",
            params![id, now],
        )
        .map_err(sql_error)?;
        tx.commit().map_err(sql_error)?;
        Ok(Some((n, rcpt)))
    }

    /// Undo a claim whose delivery failed.
    pub fn unclaim_release(&mut self, id: &str, n: i64) -> io::Result<()> {
        self.conn
            .execute(
                "UPDATE recipients SET released = 0 WHERE id = ?1 AND n = ?2",
                params![id, n],
            )
            .map(drop)
            .map_err(sql_error)
    }

    /// Remove the rows of items quarantined at or before `cutoff`; returns their ids and
    /// control file counts (the caller removes the files after the commit).
    pub fn purge_rows(&mut self, cutoff: i64) -> io::Result<Vec<(String, usize)>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_error)?;
        let old: Vec<(String, usize)> = {
            let mut stmt = tx
                .prepare("SELECT id, controls FROM items WHERE time <= ?1")
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![cutoff], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        usize::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    ))
                })
                .map_err(sql_error)?;
            rows.collect::<Result<_, _>>().map_err(sql_error)?
        };
        tx.execute("DELETE FROM items WHERE time <= ?1", params![cutoff])
            .map_err(sql_error)?;
        tx.commit().map_err(sql_error)?;
        Ok(old)
    }

    pub fn contains(&self, id: &str) -> io::Result<bool> {
        self.conn
            .query_row("SELECT 1 FROM items WHERE id = ?1", params![id], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(sql_error)
    }
}

/// Remove the item files in `dir` that no index row claims and that were last modified at or
/// before `cutoff` (the leftovers of a crash). Returns how many were removed.
pub fn remove_orphans(dir: &Path, index: &Index, cutoff: i64) -> io::Result<usize> {
    let mut removed = 0;
    let entries = fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(id) = id_of_file_name(name) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || meta.mtime() > cutoff || index.contains(id)? {
            continue;
        }
        let path: PathBuf = entry.path();
        match fs::remove_file(&path) {
            Ok(()) => {
                log::info!("quarantine: removed {}, which no item owns", path.display());
                removed += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("quarantine: cannot remove {}: {e}", path.display()),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ids_are_random_hex_128_bits() {
        let ids: HashSet<String> = (0..1000).map(|_| new_id().unwrap()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert!(is_valid_id(id), "{id}");
        }
        // Every hex digit turns up in every position across 1000 draws (a counter or a
        // timestamp would not).
        for pos in [0, 15, 31] {
            let digits: HashSet<u8> = ids.iter().map(|i| i.as_bytes()[pos]).collect();
            assert_eq!(digits.len(), 16, "position {pos}");
        }
        assert!(!is_valid_id("ABCDEF0123456789abcdef0123456789"));
        assert!(!is_valid_id("../../etc/passwd"));
        assert!(!is_valid_id(""));
    }

    #[test]
    fn file_names_and_their_ids() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(id_of_file_name(&data_name(id)), Some(id));
        assert_eq!(id_of_file_name(&control_name(id, 0)), Some(id));
        assert_eq!(id_of_file_name(&control_name(id, 2)), Some(id));
        assert_eq!(id_of_file_name(&format!("D{id}.1")), None);
        assert_eq!(id_of_file_name(&format!("C{id}.")), None);
        assert_eq!(id_of_file_name(INDEX_FILE), None);
        assert_eq!(id_of_file_name("D123"), None);
    }

    #[test]
    fn directory_is_0700_and_files_0600_created_exclusively() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/quarantine");
        ensure_dir(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let src = tmp.path().join("src");
        fs::write(&src, b"hello").unwrap();
        let dst = dir.join("Dx");
        copy_exclusive(&src, &dst).unwrap();
        assert_eq!(fs::read(&dst).unwrap(), b"hello");
        assert_eq!(
            fs::metadata(&dst).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // never over an existing file, never through a link
        assert_eq!(
            copy_exclusive(&src, &dst).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        let link = dir.join("Dlink");
        std::os::unix::fs::symlink(tmp.path().join("target"), &link).unwrap();
        assert!(copy_exclusive(&src, &link).is_err());
        assert!(!tmp.path().join("target").exists());
        // the index too
        drop(Index::open(&dir).unwrap());
        let index_mode = fs::metadata(dir.join(INDEX_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(index_mode & 0o777, 0o600);
        // a file in the way of the directory
        assert!(ensure_dir(&src).is_err());
    }

    fn item(id: &str, time: i64, rcpts: &[&str]) -> Item {
        Item {
            id: id.to_string(),
            time,
            sender: "s@x.example".into(),
            explanation: "why".into(),
            controls: 1,
            recipients: rcpts
                .iter()
                .map(|a| (Recipient::new(a, "", ""), 0))
                .collect(),
        }
    }

    #[test]
    fn index_roundtrip_claims_and_purge() {
        let tmp = tempfile::tempdir().unwrap();
        let mut index = Index::open(tmp.path()).unwrap();
        let a = "a".repeat(32);
        let b = "b".repeat(32);
        index.insert(&item(&a, 100, &["x@y", "z@y"])).unwrap();
        index.insert(&item(&b, 200, &["x@y"])).unwrap();
        assert!(index.insert(&item(&b, 200, &["x@y"])).is_err());
        assert_eq!(index.get(&a).unwrap().unwrap().recipients.len(), 2);
        assert_eq!(index.list().unwrap().len(), 2);

        let claim = index.claim_release(&a, 150, |r| r.addr == "z@y").unwrap();
        assert_eq!(claim.map(|c| c.0), Some(1));
        // the same recipient twice: refused; the other still can
        assert!(
            index
                .claim_release(&a, 151, |r| r.addr == "z@y")
                .unwrap()
                .is_none()
        );
        assert!(!index.get(&a).unwrap().unwrap().released());
        let (n, _) = index
            .claim_release(&a, 152, |r| r.addr == "x@y")
            .unwrap()
            .unwrap();
        assert!(index.get(&a).unwrap().unwrap().released());
        index.unclaim_release(&a, n).unwrap();
        assert!(
            index
                .claim_release(&a, 153, |r| r.addr == "x@y")
                .unwrap()
                .is_some()
        );
        assert!(
            index
                .claim_release(&"c".repeat(32), 1, |_| true)
                .unwrap()
                .is_none()
        );

        // a second connection sees the same (another process)
        let other = Index::open(tmp.path()).unwrap();
        assert_eq!(other.get(&a).unwrap().unwrap().recipients[0].1, 153);

        assert_eq!(index.purge_rows(99).unwrap(), []);
        assert_eq!(index.purge_rows(100).unwrap(), [(a.clone(), 1)]);
        assert!(index.get(&a).unwrap().is_none());
        assert!(index.get(&b).unwrap().is_some());
    }

    #[test]
    fn orphans_are_removed_only_when_old_and_unowned() {
        let tmp = tempfile::tempdir().unwrap();
        let mut index = Index::open(tmp.path()).unwrap();
        let owned = "a".repeat(32);
        let orphan = "b".repeat(32);
        index.insert(&item(&owned, 1, &["x@y"])).unwrap();
        for name in [
            data_name(&owned),
            control_name(&owned, 0),
            data_name(&orphan),
            control_name(&orphan, 0),
            control_name(&orphan, 1),
            "unrelated".to_string(),
        ] {
            fs::write(tmp.path().join(name), b"x").unwrap();
        }
        // too young
        assert_eq!(remove_orphans(tmp.path(), &index, 0).unwrap(), 0);
        let removed = remove_orphans(tmp.path(), &index, i64::MAX).unwrap();
        assert_eq!(removed, 3);
        assert!(tmp.path().join(data_name(&owned)).exists());
        assert!(tmp.path().join("unrelated").exists());
        assert!(tmp.path().join(INDEX_FILE).exists());
    }
}
