//! The test clamd of tests/services/clamd.sh, for the test files that scan with it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

pub const CLAMD_SOCKET: &str = "/tmp/rustfilter-clamd/clamd.sock";

/// The test clamd must be up: tests never pass for want of it.
pub fn require_clamd() {
    let ping = || -> std::io::Result<Vec<u8>> {
        let mut s = UnixStream::connect(CLAMD_SOCKET)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"zPING\0")?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        Ok(buf)
    };
    match ping() {
        Ok(r) if r == b"PONG\0" => {}
        other => panic!(
            "the test clamd does not answer on {CLAMD_SOCKET} ({other:?}): \
             run `tests/services/clamd.sh start` (or `make test`)"
        ),
    }
}
