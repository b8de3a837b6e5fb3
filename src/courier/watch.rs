//! Files that are re-read only when they change on disk: one `stat` per lookup, and the cached
//! value is kept while the file's identity (device, inode, size, mtime, ctime) stays the same.
//! Administrators edit `locals`, `defaultdomain`, … in place or replace them; both change the
//! identity, so an edit takes effect without a restart.

use std::cell::RefCell;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// What identifies one version of a file. Both an in-place edit (size/mtime/ctime) and a
/// replacement by rename (inode) change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    pub(crate) fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// Attach the path to an I/O error, keeping its kind.
pub(crate) fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {}", path.display(), e))
}

/// Read at most `limit` bytes of `path`; a longer file is an error.
///
/// A regular file is read with the size `fstat` reports: one buffer of that size, filled by as
/// few `read`s as the kernel needs (one for spool and config files), and no extra `read` to
/// find EOF. Spool files do not change while a filter runs; a config file that grows while it
/// is read changes its identity, so [`WatchedFile`] reads it again on the next lookup. Anything
/// else (pipes, `/proc` files reporting size 0, directories) is read to EOF, bounded.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = super::spool::open(path)?;
    let size = match regular_file_size(&file)? {
        Some(size) if size > 0 => size,
        _ => return read_to_eof_bounded(file, limit),
    };
    if size > limit {
        return Err(too_large(limit, Some(size)));
    }
    let capacity = usize::try_from(size).map_err(|_| too_large(limit, Some(size)))?;
    // Exactly `size` bytes of room, not zeroed; the read ends there without another system
    // call (a file that shrank since fstat ends it at its EOF).
    let mut data = Vec::with_capacity(capacity);
    read_more(&file, &mut data, capacity)?;
    Ok(data)
}

/// The size of `file` when it is a regular file, else `None`. Plain `fstat`: std's
/// `metadata` asks `statx` for every field, and this runs twice per message.
pub(crate) fn regular_file_size(file: &File) -> io::Result<Option<u64>> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills the stat buffer on success; it is read only then.
    let st = unsafe {
        if libc::fstat(file.as_raw_fd(), st.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        st.assume_init()
    };
    Ok(((st.st_mode & libc::S_IFMT) == libc::S_IFREG).then_some(st.st_size as u64))
}

/// Append up to `max` bytes from `file` to `buf` (reading until `max` bytes or EOF; EINTR is
/// retried) and return how many were appended. Reads straight into `buf`'s spare room.
pub(crate) fn read_more(file: &File, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let start = buf.len();
    let end = start + max;
    while buf.len() < end {
        let want = end - buf.len();
        let room = &mut buf.spare_capacity_mut()[..want];
        // SAFETY: read writes at most room.len() bytes into the spare capacity.
        let n = unsafe { libc::read(file.as_raw_fd(), room.as_mut_ptr().cast(), room.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        // SAFETY: read initialised n more bytes right after the current length.
        unsafe { buf.set_len(buf.len() + n as usize) };
    }
    Ok(buf.len() - start)
}

/// The first `byte` in `haystack` (glibc's vectorised memchr: spool files are scanned line by
/// line for every message).
pub(crate) fn find_byte(haystack: &[u8], byte: u8) -> Option<usize> {
    // SAFETY: memchr reads at most haystack.len() bytes from its start.
    let found = unsafe {
        libc::memchr(
            haystack.as_ptr().cast(),
            libc::c_int::from(byte),
            haystack.len(),
        )
    };
    (!found.is_null()).then(|| found as usize - haystack.as_ptr() as usize)
}

fn read_to_eof_bounded(file: File, limit: u64) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(too_large(limit, None));
    }
    Ok(data)
}

fn too_large(limit: u64, size: Option<u64>) -> io::Error {
    let text = match size {
        Some(size) => format!("larger than {limit} bytes ({size} bytes)"),
        None => format!("larger than {limit} bytes"),
    };
    io::Error::new(io::ErrorKind::InvalidData, text)
}

/// Small configuration files (`locals`, `me`, …) are never near this.
const CONFIG_FILE_LIMIT: u64 = 4 * 1024 * 1024;

/// A configuration file parsed into `T`, re-parsed when it changes. A missing file is `None`.
pub(crate) struct WatchedFile<T> {
    path: PathBuf,
    parse: fn(&[u8]) -> T,
    cache: RefCell<Option<(FileId, Rc<T>)>>,
}

impl<T> WatchedFile<T> {
    pub(crate) fn new(path: PathBuf, parse: fn(&[u8]) -> T) -> WatchedFile<T> {
        WatchedFile {
            path,
            parse,
            cache: RefCell::new(None),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed content, `Ok(None)` when the file does not exist; other errors name the path.
    pub(crate) fn get(&self) -> io::Result<Option<Rc<T>>> {
        let meta = match fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.cache.replace(None);
                return Ok(None);
            }
            Err(e) => return Err(with_path(&self.path, e)),
        };
        let id = FileId::of(&meta);
        if let Some((cached_id, value)) = &*self.cache.borrow()
            && *cached_id == id
        {
            return Ok(Some(Rc::clone(value)));
        }
        // The identity is taken before reading: if the file changes while we read, the next
        // lookup sees a different identity and reads it again.
        let data = match read_bounded(&self.path, CONFIG_FILE_LIMIT) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.cache.replace(None);
                return Ok(None);
            }
            Err(e) => return Err(with_path(&self.path, e)),
        };
        let value = Rc::new((self.parse)(&data));
        self.cache.replace(Some((id, Rc::clone(&value))));
        Ok(Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn parse_len(data: &[u8]) -> usize {
        data.len()
    }

    #[test]
    fn missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let w = WatchedFile::new(dir.path().join("nope"), parse_len);
        assert!(w.get().unwrap().is_none());
    }

    #[test]
    fn reread_after_in_place_edit_and_after_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"abc").unwrap();
        let w = WatchedFile::new(path.clone(), parse_len);
        assert_eq!(*w.get().unwrap().unwrap(), 3);
        // unchanged: the cached value is returned
        assert_eq!(*w.get().unwrap().unwrap(), 3);

        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"de").unwrap();
        drop(f);
        assert_eq!(*w.get().unwrap().unwrap(), 5);

        let tmp = dir.path().join("f.tmp");
        fs::write(&tmp, b"x").unwrap();
        fs::rename(&tmp, &path).unwrap();
        assert_eq!(*w.get().unwrap().unwrap(), 1);

        fs::remove_file(&path).unwrap();
        assert!(w.get().unwrap().is_none());
    }

    #[test]
    fn read_bounded_rejects_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        fs::write(&path, vec![b'a'; 11]).unwrap();
        let err = read_bounded(&path, 10).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "larger than 10 bytes (11 bytes)");
        assert_eq!(read_bounded(&path, 11).unwrap(), vec![b'a'; 11]);
    }

    #[test]
    fn find_byte_finds_the_first() {
        assert_eq!(find_byte(b"", b'\n'), None);
        assert_eq!(find_byte(b"abc", b'\n'), None);
        assert_eq!(find_byte(b"a\nb\n", b'\n'), Some(1));
        assert_eq!(find_byte(&b"ab\n"[2..], b'\n'), Some(0));
    }

    #[test]
    fn read_bounded_reads_whole_files_and_empty_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&path, &content).unwrap();
        assert_eq!(read_bounded(&path, 1 << 20).unwrap(), content);
        fs::write(&path, b"").unwrap();
        assert_eq!(read_bounded(&path, 10).unwrap(), b"");
        let err = read_bounded(&dir.path().join("nope"), 10).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn read_bounded_reads_files_without_a_size_to_eof_and_bounded() {
        // /proc files report size 0; a pipe has no size at all.
        let limits = read_bounded(Path::new("/proc/self/limits"), 1 << 20).unwrap();
        assert!(limits.starts_with(b"Limit"), "{limits:?}");
        let err = read_bounded(Path::new("/proc/self/limits"), 10).unwrap_err();
        assert_eq!(err.to_string(), "larger than 10 bytes");

        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::write(fifo, b"through a pipe").unwrap())
        };
        assert_eq!(read_bounded(&fifo, 100).unwrap(), b"through a pipe");
        writer.join().unwrap();
    }

    #[test]
    fn directory_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let w = WatchedFile::new(dir.path().to_path_buf(), parse_len);
        let err = w.get().unwrap_err();
        assert!(err.to_string().contains(&dir.path().display().to_string()));
    }
}
