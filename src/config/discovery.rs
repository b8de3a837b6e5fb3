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
    let _ = (dirs, name, fallback);
    todo!("config/discovery.rs")
}
