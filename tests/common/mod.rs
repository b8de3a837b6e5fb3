//! A harness that runs the real binary the way courierfilter does: empty environment (PATH
//! only), stdin a pipe (EOF = stop), fd 3 a pipe (closed = ready), stderr collected, and the
//! Courier directories, chain file and modules file in a private temporary directory.

#![allow(dead_code)] // each test file uses part of the harness

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the daemon may take to close fd 3.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// `tests/data/daemon/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/daemon")
        .join(name)
}

pub struct Options<'a> {
    pub chain: &'a str,
    pub modules: &'a str,
    pub workers: Option<usize>,
    /// Start with fd 3 open (as courierfilter does) and wait for it to be closed.
    pub fd3: bool,
    /// Called with the temporary root before the daemon starts (stale sockets etc.).
    pub prepare: Option<&'a dyn Fn(&Path)>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            chain: "",
            modules: "",
            workers: Some(2),
            fd3: true,
            prepare: None,
        }
    }
}

/// A running (or finished) rustfilter.
pub struct Filter {
    pub dir: tempfile::TempDir,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Filter {
    /// Start with `chain` and `modules` and wait until it is ready.
    pub fn start(chain: &str, modules: &str) -> Filter {
        Filter::start_with(Options {
            chain,
            modules,
            ..Options::default()
        })
    }

    pub fn start_with(opts: Options<'_>) -> Filter {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for d in ["etc", "spool/allfilters", "spool/filters", "spool/tmp"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::write(root.join("etc/locals"), "e2e.test\n").expect("locals");
        std::fs::write(root.join("etc/me"), "mail.e2e.test\n").expect("me");
        std::fs::write(root.join("rustfilter.conf"), opts.chain).expect("chain");
        std::fs::write(root.join("rustfilter-modules.conf"), opts.modules).expect("modules");
        if let Some(prepare) = opts.prepare {
            prepare(root);
        }

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rustfilter"));
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir(root)
            .arg("--config")
            .arg(root.join("rustfilter.conf"))
            .arg("--modules-config")
            .arg(root.join("rustfilter-modules.conf"))
            .arg("--sysconfdir")
            .arg(root.join("etc"))
            .arg("--localstatedir")
            .arg(root.join("spool"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(n) = opts.workers {
            cmd.arg("--workers").arg(n.to_string());
        }
        let ready = opts.fd3.then(|| {
            let mut fds = [0; 2];
            // SAFETY: fds has room for two descriptors.
            let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
            assert_eq!(rc, 0, "pipe: {}", io::Error::last_os_error());
            // SAFETY: fresh descriptors, owned here.
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
        });
        if let Some((_, wr)) = &ready {
            let wr = wr.as_raw_fd();
            // SAFETY: only dup2/fcntl between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if wr == 3 {
                        // dup2(3, 3) would keep FD_CLOEXEC.
                        if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                            return Err(io::Error::last_os_error());
                        }
                    } else if libc::dup2(wr, 3) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("start rustfilter");
        let stdin = child.stdin.take();
        let mut child_stderr = child.stderr.take().expect("stderr pipe");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let stderr_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = child_stderr.read(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().expect("stderr lock").push_str(&text);
            }
        });
        let filter = Filter {
            dir,
            child,
            stdin,
            stderr,
            stderr_thread: Some(stderr_thread),
            status: None,
        };
        if let Some((rd, wr)) = ready {
            drop(wr);
            if !wait_eof(&rd, READY_TIMEOUT) {
                panic!(
                    "fd 3 not closed within {READY_TIMEOUT:?}; stderr:\n{}",
                    filter.stderr()
                );
            }
        }
        filter
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn localstatedir(&self) -> PathBuf {
        self.root().join("spool")
    }

    pub fn socket_path(&self) -> PathBuf {
        self.localstatedir().join("allfilters/rustfilter")
    }

    /// Copy a fixture into `<localstatedir>/tmp/<sub>/<name>` (modules may edit spool files)
    /// and return its absolute path.
    pub fn spool(&self, sub: &str, name: &str) -> PathBuf {
        let dir = self.localstatedir().join("tmp").join(sub);
        std::fs::create_dir_all(&dir).expect("mkdir spool");
        let to = dir.join(name);
        std::fs::copy(fixture(name), &to).expect("copy fixture");
        to
    }

    /// One request as Courier sends it; the reply is everything read up to EOF.
    pub fn send(&self, data: &Path, controls: &[&Path]) -> String {
        let mut req = Vec::new();
        for p in std::iter::once(data).chain(controls.iter().copied()) {
            req.extend_from_slice(p.as_os_str().as_encoded_bytes());
            req.push(b'\n');
        }
        req.push(b'\n');
        self.send_raw(&req, false).expect("request")
    }

    /// Send raw bytes (then, with `half_close`, EOF) and read the reply to EOF. A connection
    /// the daemon closes without reading everything may end in a reset: that reads as "".
    pub fn send_raw(&self, bytes: &[u8], half_close: bool) -> io::Result<String> {
        let mut s = UnixStream::connect(self.socket_path())?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let _ = s.write_all(bytes);
        if half_close {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        read_reply(&mut s)
    }

    /// The worker pids (children of the master).
    pub fn workers(&self) -> Vec<i32> {
        let path = format!("/proc/{0}/task/{0}/children", self.pid());
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Wait until there are `n` workers, none of them in `not`.
    pub fn wait_workers(&self, n: usize, not: &[i32], within: Duration) -> Vec<i32> {
        let deadline = Instant::now() + within;
        loop {
            let w = self.workers();
            if (w.len() == n && !w.iter().any(|p| not.contains(p))) || Instant::now() > deadline {
                return w;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Wait until stderr contains `needle`.
    pub fn wait_stderr(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stderr().contains(needle)
    }

    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// The exit status, if the process ends within `within`; stderr is complete afterwards.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.status = Some(status);
                // The workers may still hold the stderr pipe a moment longer.
                if let Some(t) = self.stderr_thread.take() {
                    let _ = t.join();
                }
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        let workers = self.workers();
        self.close_stdin();
        if self.wait_exit(Duration::from_secs(10)).is_none() {
            for pid in std::iter::once(self.pid()).chain(workers) {
                // SAFETY: our child and its children (the pids were read from /proc).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = self.child.wait();
        }
    }
}

/// Read a reply to EOF; a reset counts as the end.
pub fn read_reply(s: &mut UnixStream) -> io::Result<String> {
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => return Err(e),
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Wait for EOF on a pipe's read end.
fn wait_eof(fd: &OwnedFd, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32 + 1) };
        if rc > 0 {
            let mut b = [0u8; 64];
            // SAFETY: reading into a local buffer.
            let n = unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
            if n == 0 {
                return true;
            }
        }
    }
}
