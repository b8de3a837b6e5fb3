//! The listening socket's life cycle.
//!
//! The socket is bound under a dot-name, given mode 0660, put in the listening state and only
//! then renamed to its final name, so courierfilter never sees it half made (the reference
//! renamed before chmod and listen, §1.4). Stale sockets of the same name are removed first:
//! courierfilter does not, and a stale one makes every message fail with 432.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use super::DaemonError;

/// Generous: the kernel caps it at somaxconn.
const BACKLOG: libc::c_int = 128;

/// The bound, listening socket at `<localstatedir>/allfilters/<name>`.
#[derive(Debug)]
pub struct ListeningSocket {
    pub listener: UnixListener,
    pub path: PathBuf,
    /// (device, inode) of the socket file we created: shutdown unlinks the path only while it
    /// is still ours, not a successor's that a restart put in its place.
    identity: (u64, u64),
}

impl ListeningSocket {
    /// Remove stale sockets, bind `allfilters/.NAME`, chmod 0660, listen, rename to
    /// `allfilters/NAME`. The error text is what the caller logs before exiting 71.
    pub fn create(localstatedir: &Path, name: &str) -> Result<ListeningSocket, DaemonError> {
        let dir = localstatedir.join("allfilters");
        let temp = dir.join(format!(".{name}"));
        let path = dir.join(name);
        for stale in [
            localstatedir.join("filters").join(name),
            path.clone(),
            temp.clone(),
        ] {
            remove_file(&stale);
        }
        match bind_listen_rename(&temp, &path) {
            Ok((listener, identity)) => Ok(ListeningSocket {
                listener,
                path,
                identity,
            }),
            Err(e) => {
                remove_file(&temp);
                remove_file(&path);
                Err(DaemonError(format!(
                    "{name} failed to create socket in {}: {e}",
                    dir.display()
                )))
            }
        }
    }

    pub fn fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.listener.as_raw_fd()
    }

    /// Unlink the socket path if it is still the socket we created (ENOENT ignored).
    pub fn unlink(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.identity => remove_file(&self.path),
            Ok(_) => log::warn!(
                "{} was replaced by another socket; leaving it in place",
                self.path.display()
            ),
            Err(_) => {}
        }
    }
}

fn remove_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        log::warn!("cannot remove {}: {e}", path.display());
    }
}

fn bind_listen_rename(temp: &Path, path: &Path) -> io::Result<(UnixListener, (u64, u64))> {
    let addr = sockaddr_un(temp)?;
    // SAFETY: plain socket(2); the result is checked and owned at once.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    use std::os::fd::AsRawFd;
    // SAFETY: addr is a fully initialised sockaddr_un and its size is passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let c_temp = CString::new(temp.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in socket path"))?;
    // SAFETY: c_temp is a valid C string.
    if unsafe { libc::chmod(c_temp.as_ptr(), 0o660) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a bound socket.
    if unsafe { libc::listen(fd.as_raw_fd(), BACKLOG) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let meta = std::fs::symlink_metadata(temp)?;
    std::fs::rename(temp, path)?;
    Ok((UnixListener::from(fd), (meta.dev(), meta.ino())))
}

fn sockaddr_un(path: &Path) -> io::Result<libc::sockaddr_un> {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    // Keep a terminating NUL.
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket path too long ({} bytes, at most {})",
                bytes.len(),
                addr.sun_path.len() - 1
            ),
        ));
    }
    if bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NUL byte in socket path",
        ));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::os::unix::net::UnixStream;

    fn spool() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("allfilters")).unwrap();
        std::fs::create_dir(dir.path().join("filters")).unwrap();
        dir
    }

    #[test]
    fn creates_a_listening_socket_with_mode_0660() {
        let dir = spool();
        let s = ListeningSocket::create(dir.path(), "rf").unwrap();
        let path = dir.path().join("allfilters/rf");
        assert_eq!(s.path, path);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
        assert!(!dir.path().join("allfilters/.rf").exists());
        // Listening already: a connection is queued without accept.
        UnixStream::connect(&path).unwrap();
        s.unlink();
        assert!(!path.exists());
        // Twice is harmless.
        s.unlink();
    }

    #[test]
    fn removes_stale_sockets_of_the_same_name() {
        let dir = spool();
        for p in ["filters/rf", "allfilters/rf", "allfilters/.rf"] {
            std::fs::write(dir.path().join(p), b"stale").unwrap();
        }
        std::fs::write(dir.path().join("allfilters/other"), b"keep").unwrap();
        let s = ListeningSocket::create(dir.path(), "rf").unwrap();
        assert!(!dir.path().join("filters/rf").exists());
        assert!(!dir.path().join("allfilters/.rf").exists());
        assert!(dir.path().join("allfilters/other").exists());
        assert!(
            std::fs::symlink_metadata(&s.path)
                .unwrap()
                .file_type()
                .is_socket()
        );
    }

    #[test]
    fn does_not_unlink_a_successors_socket() {
        let dir = spool();
        let old = ListeningSocket::create(dir.path(), "rf").unwrap();
        let new = ListeningSocket::create(dir.path(), "rf").unwrap();
        old.unlink();
        assert!(new.path.exists());
        new.unlink();
        assert!(!new.path.exists());
    }

    #[test]
    fn failure_names_the_directory_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let err = ListeningSocket::create(dir.path(), "rf").unwrap_err();
        let want = format!(
            "rf failed to create socket in {}/allfilters: ",
            dir.path().display()
        );
        assert!(err.0.starts_with(&want), "{err}");
        assert!(err.0.contains("No such file or directory"), "{err}");

        let dir = spool();
        let long = "x".repeat(120);
        let err = ListeningSocket::create(dir.path(), &long).unwrap_err();
        assert!(err.0.contains("socket path too long"), "{err}");
        assert!(!dir.path().join("allfilters").join(&long).exists());
    }
}
