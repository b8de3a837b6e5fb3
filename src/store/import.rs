//! `rustfilter ttldb import DIR`: pythonfilter's GDBM TtlDb files (keys 32-hex MD5, values
//! ASCII unix seconds) into the configured store, so switching does not re-greylist everyone.
//!
//! Python's `dbm.open` writes GDBM where python3-gdbm is installed, and from Python 3.13 on a
//! SQLite file with one table `Dict(key, value)` by default (spec §6.3); both are read. The
//! files are only read (GDBM without locking, SQLite read-only), so a pythonfilter that is
//! still running is not disturbed.

use std::path::Path;

use super::{Store, StoreError, TtlDb};

/// What was imported from one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub table: String,
    pub entries: u64,
    /// Entries skipped (bad key or value), with the reason logged.
    pub skipped: u64,
}

/// The TtlDb names pythonfilter's modules use (spec §6.5).
pub const TTLDB_NAMES: [&str; 6] = [
    "greylist_Passed",
    "greylist_NotPassed",
    "auto_whitelist",
    "correspondents",
    "goodsenders",
    "badsenders",
];

/// Entries written per transaction: large enough to be fast, small enough not to hold the
/// write lock against running workers for long.
const BATCH: usize = 500;

/// Import every GDBM file in `dir` whose name is a TtlDb name pythonfilter uses
/// (greylist_Passed, greylist_NotPassed, auto_whitelist, correspondents, goodsenders,
/// badsenders). An existing entry keeps the newer of the two values.
///
/// `entries` counts the valid entries read; each is in the store afterwards with its value or
/// a newer one. Files that are missing are not listed in the result.
pub fn import_dir(store: &mut Store, dir: &Path) -> Result<Vec<Imported>, StoreError> {
    if !dir.is_dir() {
        return Err(StoreError::new(format!(
            "import: {} is not a directory",
            dir.display()
        )));
    }
    let mut results = Vec::new();
    for name in TTLDB_NAMES {
        let path = dir.join(name);
        if !path.exists() {
            for ext in ["db", "dir", "pag", "dat"] {
                let other = dir.join(format!("{name}.{ext}"));
                if other.exists() {
                    log::warn!(
                        "import: {}: a Berkeley DB/ndbm/dumb dbm file is not supported; only GDBM \
                         and Python's SQLite dbm files are (convert it with Python to dbm.gnu)",
                        other.display()
                    );
                }
            }
            log::info!("import: {}: not found, nothing to import", path.display());
            continue;
        }
        let (format, raw) = read_dbm(&path)?;
        log::info!(
            "import: {}: read {} entries from a {format} file",
            path.display(),
            raw.len()
        );
        let mut entries = Vec::with_capacity(raw.len());
        let mut skipped = 0u64;
        for (key, value) in raw {
            match parse_entry(&key, &value) {
                Ok(entry) => entries.push(entry),
                Err(why) => {
                    skipped += 1;
                    log::warn!(
                        "import: {}: skipped key {}: {why}",
                        path.display(),
                        String::from_utf8_lossy(&key).escape_debug()
                    );
                }
            }
        }
        let written = write_entries(store, name, &entries)?;
        log::info!(
            "import: {name}: {} entries ({written} written, {} kept a newer existing value), \
             {skipped} skipped",
            entries.len(),
            entries.len() as u64 - written
        );
        results.push(Imported {
            table: name.to_string(),
            entries: entries.len() as u64,
            skipped,
        });
    }
    Ok(results)
}

type RawEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// Every key/value of a dbm file, with the name of its format.
fn read_dbm(path: &Path) -> Result<(&'static str, RawEntries), StoreError> {
    let mut magic = [0u8; 16];
    let is_sqlite = {
        use std::io::Read;
        let mut f = std::fs::File::open(path)
            .map_err(|e| StoreError::new(format!("import: cannot read {}: {e}", path.display())))?;
        f.read_exact(&mut magic).is_ok() && &magic == b"SQLite format 3\0"
    };
    if is_sqlite {
        return read_sqlite_dbm(path).map(|entries| ("Python SQLite dbm (dbm.sqlite3)", entries));
    }
    let db = gdbm_native::OpenOptions::new()
        .lock(false)
        .open(path)
        .map_err(|e| {
            StoreError::new(format!(
                "import: {} is neither a GDBM file nor a Python SQLite dbm file: {e}",
                path.display()
            ))
        })?;
    let entries = db
        .iter::<Vec<u8>, Vec<u8>>()
        .collect::<Result<RawEntries, _>>()
        .map_err(|e| {
            StoreError::new(format!(
                "import: reading the GDBM file {}: {e}",
                path.display()
            ))
        })?;
    Ok(("GDBM", entries))
}

/// Python 3.13's `dbm.sqlite3`: `Dict(key BLOB UNIQUE NOT NULL, value BLOB NOT NULL)`.
fn read_sqlite_dbm(path: &Path) -> Result<RawEntries, StoreError> {
    use rusqlite::types::ValueRef;
    let err = |e: rusqlite::Error| {
        StoreError::new(format!(
            "import: reading the Python SQLite dbm file {}: {e}",
            path.display()
        ))
    };
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    let mut stmt = conn.prepare("SELECT key, value FROM Dict").map_err(err)?;
    let bytes = |v: ValueRef<'_>| -> Vec<u8> {
        match v {
            ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
            ValueRef::Integer(i) => i.to_string().into_bytes(),
            ValueRef::Real(r) => r.to_string().into_bytes(),
            ValueRef::Null => Vec::new(),
        }
    };
    let rows = stmt
        .query_map([], |row| {
            Ok((bytes(row.get_ref(0)?), bytes(row.get_ref(1)?)))
        })
        .map_err(err)?;
    rows.collect::<Result<RawEntries, _>>().map_err(err)
}

/// A reference-format entry: a 32-digit lower-case hex key and a decimal unix time.
fn parse_entry(key: &[u8], value: &[u8]) -> Result<(String, i64), String> {
    if key.len() != 32 || !key.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("the key is not 32 lower-case hex digits (an MD5 digest)".to_string());
    }
    let text = std::str::from_utf8(value)
        .ok()
        .filter(|t| !t.is_empty() && t.len() <= 18 && t.bytes().all(|b| b.is_ascii_digit()));
    let Some(seconds) = text.and_then(|t| t.parse::<i64>().ok()) else {
        return Err(format!(
            "the value {} is not a decimal unix time",
            String::from_utf8_lossy(value).escape_debug()
        ));
    };
    // The key bytes are ASCII hex, checked above.
    Ok((String::from_utf8_lossy(key).into_owned(), seconds))
}

/// Write in batches, keeping an existing newer value; returns how many were written.
fn write_entries(
    store: &mut Store,
    table: &str,
    entries: &[(String, i64)],
) -> Result<u64, StoreError> {
    let db = TtlDb {
        name: table.to_string(),
        ttl: 0,
        purge_interval: 0,
    };
    let mut written = 0u64;
    for batch in entries.chunks(BATCH) {
        written += store
            .transaction(&[&db], &[], |tx| {
                let mut n = 0u64;
                for (key, value) in batch {
                    match tx.get(table, key)? {
                        Some(existing) if existing >= *value => {}
                        _ => {
                            tx.set(table, key, *value)?;
                            n += 1;
                        }
                    }
                }
                Ok(n)
            })
            .map_err(|e| StoreError {
                message: format!("import into {table}: {}", e.message),
                ..e
            })?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StoreConfig, md5_key};

    fn store_in(dir: &Path) -> Store {
        Store::new(StoreConfig::Sqlite {
            path: dir.join("ttldb.sqlite"),
        })
    }

    fn write_gdbm(path: &Path, entries: &[(&[u8], &[u8])]) {
        let mut db = gdbm_native::OpenOptions::new()
            .create(true)
            .open(path)
            .expect("create gdbm");
        for (k, v) in entries {
            db.insert(*k, *v).expect("insert");
        }
        db.close().expect("close");
    }

    fn value(store: &mut Store, table: &str, key: &str) -> Option<i64> {
        let db = TtlDb {
            name: table.into(),
            ttl: 0,
            purge_interval: 0,
        };
        store
            .transaction(&[&db], &[], |tx| tx.get(table, key))
            .expect("get")
    }

    #[test]
    fn imports_gdbm_files_keeping_the_newer_value() {
        let old = tempfile::tempdir().expect("tempdir");
        let new = tempfile::tempdir().expect("tempdir");
        let triplet = md5_key(&["192.0.2.1", "sender@example.com", "rcpt@example.org"]);
        let newer_here = md5_key(&["newer"]);
        let older_here = md5_key(&["older"]);
        write_gdbm(
            &old.path().join("greylist_Passed"),
            &[
                (triplet.as_bytes(), b"1719835200"),
                (newer_here.as_bytes(), b"1000"),
                (older_here.as_bytes(), b"1500"),
                (b"not-a-digest", b"1719835200"),
                (b"0123456789ABCDEF0123456789ABCDEF", b"1719835200"),
                (md5_key(&["bad value"]).as_bytes(), b"17198.5"),
                (md5_key(&["empty"]).as_bytes(), b""),
            ],
        );
        write_gdbm(
            &old.path().join("correspondents"),
            &[(md5_key(&["a", "b"]).as_bytes(), b"42")],
        );
        // Not a TtlDb name: ignored.
        write_gdbm(&old.path().join("other"), &[(triplet.as_bytes(), b"1")]);

        let mut store = store_in(new.path());
        let db = TtlDb {
            name: "greylist_Passed".into(),
            ttl: 0,
            purge_interval: 0,
        };
        store
            .transaction(&[&db], &[], |tx| {
                tx.set("greylist_Passed", &newer_here, 2000)?;
                tx.set("greylist_Passed", &older_here, 500)
            })
            .expect("existing entries");

        let result = import_dir(&mut store, old.path()).expect("import");
        assert_eq!(
            result,
            vec![
                Imported {
                    table: "greylist_Passed".into(),
                    entries: 3,
                    skipped: 4
                },
                Imported {
                    table: "correspondents".into(),
                    entries: 1,
                    skipped: 0
                },
            ]
        );
        assert_eq!(
            value(&mut store, "greylist_Passed", &triplet),
            Some(1719835200)
        );
        assert_eq!(
            value(&mut store, "greylist_Passed", &newer_here),
            Some(2000)
        );
        assert_eq!(
            value(&mut store, "greylist_Passed", &older_here),
            Some(1500)
        );
        assert_eq!(store.dump("greylist_Passed").expect("dump").len(), 3);
        assert_eq!(
            value(&mut store, "correspondents", &md5_key(&["ab"])),
            Some(42)
        );

        // Importing again changes nothing.
        import_dir(&mut store, old.path()).expect("again");
        assert_eq!(
            value(&mut store, "greylist_Passed", &newer_here),
            Some(2000)
        );
    }

    /// Files written by pythonfilter's own library: Python's dbm.gnu (Debian python3-gdbm).
    #[test]
    fn imports_files_written_by_python_dbm_gnu() {
        let python = "/usr/bin/python3";
        let probe = std::process::Command::new(python)
            .args(["-c", "import dbm.gnu"])
            .output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "{python} cannot import dbm.gnu: install Debian's python3-gdbm package \
                 (tests/services/install-deps.sh does): {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!(
                "cannot run {python} ({e}): install python3 and python3-gdbm \
                 (tests/services/install-deps.sh does)"
            ),
        }
        let old = tempfile::tempdir().expect("tempdir");
        let triplet = md5_key(&["192.0.2.1", "sender@example.com", "rcpt@example.org"]);
        let sender = md5_key(&["sender@example.com"]);
        // As pythonfilter's TtlDb does: str keys, the decimal string of int(time) as value.
        let script = r#"
import dbm.gnu, sys
d = sys.argv[1]
db = dbm.gnu.open(d + '/greylist_Passed', 'c')
db[sys.argv[2]] = str(int(1719835200.75))
db['garbage key'] = '1'
db.close()
db = dbm.gnu.open(d + '/auto_whitelist', 'c')
db[sys.argv[3]] = '1719000000'
db.close()
"#;
        let out = std::process::Command::new(python)
            .args(["-c", script])
            .arg(old.path())
            .arg(&triplet)
            .arg(&sender)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "python3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let new = tempfile::tempdir().expect("tempdir");
        let mut store = store_in(new.path());
        let result = import_dir(&mut store, old.path()).expect("import");
        assert_eq!(
            result,
            vec![
                Imported {
                    table: "greylist_Passed".into(),
                    entries: 1,
                    skipped: 1
                },
                Imported {
                    table: "auto_whitelist".into(),
                    entries: 1,
                    skipped: 0
                },
            ]
        );
        assert_eq!(
            value(&mut store, "greylist_Passed", &triplet),
            Some(1719835200)
        );
        assert_eq!(
            value(&mut store, "auto_whitelist", &sender),
            Some(1719000000)
        );
    }

    /// Python 3.13's default dbm format (spec §6.3).
    #[test]
    fn imports_python_sqlite_dbm_files() {
        let old = tempfile::tempdir().expect("tempdir");
        let key = md5_key(&["x"]);
        {
            let conn = rusqlite::Connection::open(old.path().join("goodsenders")).expect("create");
            conn.execute_batch(
                "PRAGMA journal_mode = wal; \
                 CREATE TABLE Dict (key BLOB UNIQUE NOT NULL, value BLOB NOT NULL)",
            )
            .expect("schema");
            conn.execute(
                "INSERT INTO Dict VALUES (?1, ?2)",
                rusqlite::params![key.as_bytes(), b"1719835200".as_slice()],
            )
            .expect("insert");
            conn.execute(
                "INSERT INTO Dict VALUES (?1, ?2)",
                rusqlite::params![b"short".as_slice(), b"1".as_slice()],
            )
            .expect("insert");
        }
        let new = tempfile::tempdir().expect("tempdir");
        let mut store = store_in(new.path());
        let result = import_dir(&mut store, old.path()).expect("import");
        assert_eq!(
            result,
            vec![Imported {
                table: "goodsenders".into(),
                entries: 1,
                skipped: 1
            }]
        );
        assert_eq!(value(&mut store, "goodsenders", &key), Some(1719835200));
    }

    #[test]
    fn unreadable_input_is_a_clear_error() {
        let old = tempfile::tempdir().expect("tempdir");
        let new = tempfile::tempdir().expect("tempdir");
        let mut store = store_in(new.path());
        let missing = old.path().join("missing");
        let err = import_dir(&mut store, &missing).expect_err("no dir");
        assert!(err.message.contains("not a directory"), "{err}");

        std::fs::write(
            old.path().join("badsenders"),
            b"plain text, not a database\n",
        )
        .expect("write");
        let err = import_dir(&mut store, old.path()).expect_err("not gdbm");
        assert!(err.message.contains("badsenders"), "{err}");
        assert!(err.message.contains("neither a GDBM file"), "{err}");

        // An empty directory imports nothing.
        let empty = tempfile::tempdir().expect("tempdir");
        assert_eq!(import_dir(&mut store, empty.path()).expect("empty"), vec![]);
    }
}
