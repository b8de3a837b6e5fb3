//! Where the two config files are (DECISIONS "Files and names"): an explicit path wins;
//! otherwise the first readable `rustfilter.conf` in `/etc`, `/usr/local/etc`, Courier's
//! sysconfdir; failing that the first `pythonfilter.conf` there. Same for the modules file.

use std::path::{Path, PathBuf};

/// The directories searched, in order (tests replace them).
#[derive(Debug, Clone)]
pub struct ConfigPaths {
    pub dirs: Vec<PathBuf>,
}

impl ConfigPaths {
    /// `/etc`, `/usr/local/etc`, then `sysconfdir`.
    pub fn standard(sysconfdir: &Path) -> ConfigPaths {
        ConfigPaths {
            dirs: vec![
                PathBuf::from("/etc"),
                PathBuf::from("/usr/local/etc"),
                sysconfdir.to_path_buf(),
            ],
        }
    }
}

/// The chain file to use, and whether it is a pythonfilter fallback. `None`: nothing found.
pub fn find_chain_file(dirs: &ConfigPaths) -> Option<(PathBuf, bool)> {
    find(dirs, "rustfilter.conf", "pythonfilter.conf")
}

/// The modules file to use, and whether it is a pythonfilter fallback. `None`: nothing found.
pub fn find_modules_file(dirs: &ConfigPaths) -> Option<(PathBuf, bool)> {
    find(dirs, "rustfilter-modules.conf", "pythonfilter-modules.conf")
}

fn find(dirs: &ConfigPaths, name: &str, fallback: &str) -> Option<(PathBuf, bool)> {
    let first_readable = |file: &str| {
        dirs.dirs
            .iter()
            .map(|dir| dir.join(file))
            .find(|path| readable(path))
    };
    first_readable(name)
        .map(|path| (path, false))
        .or_else(|| first_readable(fallback).map(|path| (path, true)))
}

/// Whether the file opens for reading and is a regular file (a directory or FIFO of that
/// name does not count; O_NONBLOCK keeps a FIFO from blocking the open).
fn readable(path: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn dirs(n: usize) -> (Vec<tempfile::TempDir>, ConfigPaths) {
        let tmp: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let paths = ConfigPaths {
            dirs: tmp.iter().map(|d| d.path().to_path_buf()).collect(),
        };
        (tmp, paths)
    }

    #[test]
    fn first_directory_with_the_file_wins() {
        let (tmp, paths) = dirs(3);
        assert_eq!(find_chain_file(&paths), None);
        fs::write(tmp[2].path().join("rustfilter.conf"), "debug\n").unwrap();
        assert_eq!(
            find_chain_file(&paths),
            Some((tmp[2].path().join("rustfilter.conf"), false))
        );
        fs::write(tmp[1].path().join("rustfilter.conf"), "debug\n").unwrap();
        assert_eq!(
            find_chain_file(&paths),
            Some((tmp[1].path().join("rustfilter.conf"), false))
        );
    }

    #[test]
    fn pythonfilter_files_are_the_fallback() {
        let (tmp, paths) = dirs(3);
        fs::write(tmp[0].path().join("pythonfilter.conf"), "").unwrap();
        fs::write(tmp[1].path().join("pythonfilter-modules.conf"), "").unwrap();
        assert_eq!(
            find_chain_file(&paths),
            Some((tmp[0].path().join("pythonfilter.conf"), true))
        );
        assert_eq!(
            find_modules_file(&paths),
            Some((tmp[1].path().join("pythonfilter-modules.conf"), true))
        );
        // A rustfilter file anywhere beats a pythonfilter file earlier in the list.
        fs::write(tmp[2].path().join("rustfilter-modules.conf"), "").unwrap();
        assert_eq!(
            find_modules_file(&paths),
            Some((tmp[2].path().join("rustfilter-modules.conf"), false))
        );
    }

    #[test]
    fn unreadable_entries_are_skipped() {
        let (tmp, paths) = dirs(2);
        // A directory or a FIFO named like the file cannot be read as one.
        fs::create_dir(tmp[0].path().join("rustfilter.conf")).unwrap();
        let fifo = std::ffi::CString::new(
            tmp[1]
                .path()
                .join("rustfilter.conf")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let (tmp2, paths2) = dirs(1);
        let paths = ConfigPaths {
            dirs: paths.dirs.into_iter().chain(paths2.dirs).collect(),
        };
        let tmp = [&tmp[0], &tmp[1], &tmp2[0]];
        fs::write(tmp[2].path().join("rustfilter.conf"), "").unwrap();
        assert_eq!(
            find_chain_file(&paths),
            Some((tmp[2].path().join("rustfilter.conf"), false))
        );
    }

    #[test]
    fn unreadable_permissions_are_skipped() {
        use std::os::unix::fs::PermissionsExt;
        let (tmp, paths) = dirs(2);
        let locked = tmp[0].path().join("rustfilter.conf");
        fs::write(&locked, "").unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        fs::write(tmp[1].path().join("rustfilter.conf"), "").unwrap();
        // root reads anything; then the first file is the right answer.
        let expected = if fs::File::open(&locked).is_ok() {
            0
        } else {
            1
        };
        assert_eq!(
            find_chain_file(&paths),
            Some((tmp[expected].path().join("rustfilter.conf"), false))
        );
    }

    #[test]
    fn standard_order() {
        let p = ConfigPaths::standard(Path::new("/etc/courier"));
        assert_eq!(
            p.dirs,
            vec![
                PathBuf::from("/etc"),
                PathBuf::from("/usr/local/etc"),
                PathBuf::from("/etc/courier")
            ]
        );
    }
}
