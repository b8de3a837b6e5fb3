//! Test support (not part of the API): the project's test name server, nsd on
//! 127.0.0.1:15353 serving the zones of tests/data/dns/, started by `tests/services/nsd.sh`.
//!
//! [`nameserver`] panics with the script's message when nsd cannot be started: a test that
//! needs it fails rather than skips.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::{Resolver, ResolverConfig};

/// The script's defaults.
pub const NSD_DIR: &str = "/tmp/rustfilter-nsd";
pub const NSD_PORT: u16 = 15353;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/services/nsd.sh")
}

/// Start nsd if it is not running (once per process; the script itself is idempotent and
/// serializes concurrent starts) and return its address.
pub fn nameserver() -> SocketAddr {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    let started = STARTED.get_or_init(|| {
        let script = script();
        let out = Command::new(&script)
            .arg("start")
            .arg(NSD_DIR)
            .arg(NSD_PORT.to_string())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} start failed ({}): {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    });
    if let Err(e) = started {
        panic!("nsd for the tests: {e}");
    }
    SocketAddr::from(([127, 0, 0, 1], NSD_PORT))
}

/// A resolver asking only the test name server: 1 s per try, 2 attempts.
pub fn resolver() -> Resolver {
    Resolver::new(ResolverConfig {
        nameservers: vec![nameserver()],
        timeout: Duration::from_secs(1),
        attempts: 2,
    })
}
