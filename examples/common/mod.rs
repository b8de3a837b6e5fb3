//! Shared by `make demo` (examples/demo.rs) and `make bench` (examples/bench.rs): a
//! courierfilter-protocol client, a launcher that starts a filter daemon the way courierfilter
//! does, a throwaway Courier spool, and /proc readings (CPU, peak RSS, worker processes).
//!
//! Errors are plain strings that say what failed and where: these programs are run by people
//! trying rustfilter out, so every failure must read clearly.

// Each example uses a different subset of these helpers.
#![allow(dead_code)]

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub type Result<T> = std::result::Result<T, String>;

/// Attach a description of what was being done to an I/O error.
pub trait OrFail<T> {
    fn or_fail(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> OrFail<T> for io::Result<T> {
    fn or_fail(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| format!("{}: {e}", what()))
    }
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C: stop cleanly (temp dir removed, daemon stopped) instead of dying mid-way.

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turn SIGINT/SIGTERM/SIGHUP into a flag the loops poll, so every exit path cleans up.
pub fn install_interrupt_handler() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the
        // sigaction struct is fully initialised before use.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_interrupt as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        Err("interrupted".to_string())
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The binary under test.

/// The rustfilter binary next to this example's own profile directory
/// (`target/release/examples/demo` → `target/release/rustfilter`), brought up to date with
/// `cargo build [--release] --bin rustfilter` first: `cargo run --example` does not build the
/// crate's binaries, and cargo alone knows whether the binary is stale. `RUSTFILTER_BIN`
/// names another binary to use instead (nothing is built then).
pub fn rustfilter_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("RUSTFILTER_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            return Err(format!("RUSTFILTER_BIN={} is not a file", bin.display()));
        }
        return Ok(bin);
    }
    let exe = std::env::current_exe().or_fail(|| "cannot find this program's path".into())?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("unexpected location of this program: {}", exe.display()))?;
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let bin = profile_dir.join("rustfilter");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--quiet", "--bin", "rustfilter"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        cmd.arg("--release");
    }
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => {
            return Err(format!(
                "`cargo build{} --bin rustfilter` failed ({status})",
                if release { " --release" } else { "" }
            ));
        }
        Err(e) if bin.is_file() => {
            eprintln!(
                "note: cannot run cargo ({e}); using {} as it is",
                bin.display()
            );
        }
        Err(e) => return Err(format!("cannot run cargo to build rustfilter: {e}")),
    }
    if !bin.is_file() {
        return Err(format!(
            "rustfilter was built but is not at {}; set RUSTFILTER_BIN to its path",
            bin.display()
        ));
    }
    Ok(bin)
}

// ---------------------------------------------------------------------------------------------
// A throwaway Courier installation: sysconfdir + localstatedir in a temp dir.

pub struct Scratch {
    // Removed on drop, on every exit path that unwinds or returns.
    dir: tempfile::TempDir,
    pub sysconfdir: PathBuf,
    pub localstatedir: PathBuf,
}

impl Scratch {
    pub fn new(prefix: &str) -> Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .or_fail(|| "cannot create a temporary directory".into())?;
        let sysconfdir = dir.path().join("etc");
        let localstatedir = dir.path().join("var");
        for d in [
            sysconfdir.clone(),
            localstatedir.join("allfilters"),
            localstatedir.join("tmp"),
        ] {
            fs::create_dir_all(&d).or_fail(|| format!("cannot create {}", d.display()))?;
        }
        // Courier's own mode for the socket directory.
        let allfilters = localstatedir.join("allfilters");
        fs::set_permissions(&allfilters, fs::Permissions::from_mode(0o750))
            .or_fail(|| format!("cannot chmod {}", allfilters.display()))?;
        Ok(Scratch {
            dir,
            sysconfdir,
            localstatedir,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self, name: &str) -> PathBuf {
        self.localstatedir.join("allfilters").join(name)
    }

    /// Write a file under the scratch dir (parents created).
    pub fn write(&self, path: &Path, contents: &[u8]) -> Result<()> {
        write_file(path, contents)
    }
}

pub fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).or_fail(|| format!("cannot create {}", parent.display()))?;
    }
    fs::write(path, contents).or_fail(|| format!("cannot write {}", path.display()))
}

/// One message as Courier leaves it under `<localstatedir>/tmp/` while the filters run.
#[derive(Debug, Clone)]
pub struct SpoolMessage {
    pub data: PathBuf,
    pub controls: Vec<PathBuf>,
}

impl SpoolMessage {
    /// Store a message the way Courier names it: `tmp/<dir>/D<inode>` and
    /// `tmp/<dir>/<time>.<pid>.<me>`.
    pub fn write(
        localstatedir: &Path,
        dir: &str,
        seq: u64,
        me: &str,
        data: &[u8],
        control: &[u8],
    ) -> Result<SpoolMessage> {
        let base = localstatedir.join("tmp").join(dir);
        let data_path = base.join(format!("D{}", 700_000 + seq));
        let control_path = base.join(format!("{}.{}.{me}", 1_795_600_000 + seq, 13_000 + seq));
        write_file(&data_path, data)?;
        write_file(&control_path, control)?;
        Ok(SpoolMessage {
            data: data_path,
            controls: vec![control_path],
        })
    }

    /// The request Courier writes: data path, control paths, then an empty line.
    pub fn request(&self) -> Vec<u8> {
        let mut req = Vec::new();
        req.extend_from_slice(self.data.as_os_str().as_encoded_bytes());
        req.push(b'\n');
        for c in &self.controls {
            req.extend_from_slice(c.as_os_str().as_encoded_bytes());
            req.push(b'\n');
        }
        req.push(b'\n');
        req
    }
}

// ---------------------------------------------------------------------------------------------
// The courierfilter protocol, client side.

/// Connect, write the request, read the reply to EOF (the filter closes the connection).
/// `reply` is cleared first so a caller can reuse one buffer.
pub fn exchange(
    socket: &Path,
    request: &[u8],
    timeout: Duration,
    reply: &mut Vec<u8>,
) -> io::Result<()> {
    reply.clear();
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;
    stream.read_to_end(reply)?;
    Ok(())
}

/// Send one message and return the reply text (trailing newlines removed).
pub fn send_message(socket: &Path, msg: &SpoolMessage, timeout: Duration) -> Result<String> {
    let mut reply = Vec::new();
    exchange(socket, &msg.request(), timeout, &mut reply)
        .or_fail(|| format!("request on {} failed", socket.display()))?;
    Ok(String::from_utf8_lossy(&reply)
        .trim_end_matches(['\n', '\r'])
        .to_string())
}

// ---------------------------------------------------------------------------------------------
// Starting and stopping a filter daemon as courierfilter does.

/// A running filter daemon, started with: the environment cleared except PATH, cwd `/`,
/// stdin a pipe (EOF = stop), stdout+stderr appended to a log file, fd 3 a pipe whose EOF
/// means "ready", in a process group of its own (so a Ctrl-C on the terminal reaches only
/// the driver, which then stops the daemon the proper way).
pub struct Daemon {
    child: Child,
    stdin: Option<ChildStdin>,
    /// From just before spawn to EOF on fd 3.
    pub ready_after: Duration,
    pub log: PathBuf,
    /// The processes seen in the daemon's tree, so cleanup can reach workers too.
    seen: Vec<u32>,
    exited: Option<ExitStatus>,
}

impl Daemon {
    pub fn start(
        program: &Path,
        args: &[OsString],
        log: &Path,
        ready_timeout: Duration,
    ) -> Result<Daemon> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into the array we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(format!(
                "cannot create the readiness pipe: {}",
                io::Error::last_os_error()
            ));
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (ready_r, ready_w) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .or_fail(|| format!("cannot open the log file {}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .or_fail(|| "cannot duplicate the log file descriptor".into())?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(log_file)
            .stderr(log_err);
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        let w = ready_w.as_raw_fd();
        // SAFETY: only async-signal-safe calls (setpgid, fcntl, dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::setpgid(0, 0);
                let rc = if w == 3 {
                    // dup2(3, 3) would leave close-on-exec set.
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(w, 3)
                };
                if rc == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let child = cmd
            .spawn()
            .or_fail(|| format!("cannot start {}", program.display()))?;
        drop(ready_w);
        let mut daemon = Daemon {
            stdin: None,
            ready_after: Duration::ZERO,
            log: log.to_path_buf(),
            seen: Vec::new(),
            exited: None,
            child,
        };
        daemon.stdin = daemon.child.stdin.take();
        daemon.wait_ready(ready_r, started, ready_timeout)?;
        daemon.ready_after = started.elapsed();
        daemon.remember_tree();
        Ok(daemon)
    }

    fn wait_ready(&mut self, fd: OwnedFd, started: Instant, timeout: Duration) -> Result<()> {
        let mut pipe = fs::File::from(fd);
        loop {
            check_interrupted()?;
            let elapsed = started.elapsed();
            if elapsed >= timeout {
                return Err(format!(
                    "the daemon did not close fd 3 within {timeout:?}{}",
                    self.log_tail()
                ));
            }
            let mut pfd = libc::pollfd {
                fd: pipe.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let wait_ms = (timeout - elapsed).as_millis().min(100) as libc::c_int;
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, wait_ms) };
            if n == -1 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll on the readiness pipe failed: {e}"));
            }
            if n == 0 {
                continue;
            }
            let mut buf = [0u8; 64];
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue, // courierfilter ignores anything written; so do we
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("reading the readiness pipe failed: {e}")),
            }
        }
        // A daemon that dies also closes fd 3: tell that apart from readiness.
        std::thread::sleep(Duration::from_millis(1));
        if let Some(status) = self
            .child
            .try_wait()
            .or_fail(|| "cannot query the daemon's status".into())?
        {
            self.exited = Some(status);
            return Err(format!(
                "the daemon exited during start-up ({status}){}",
                self.log_tail()
            ));
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's processes besides the master (the workers), as of now.
    pub fn workers(&mut self) -> Vec<u32> {
        let tree = descendants(self.pid());
        for p in &tree {
            if !self.seen.contains(p) {
                self.seen.push(*p);
            }
        }
        tree
    }

    fn remember_tree(&mut self) {
        let _ = self.workers();
    }

    /// The log file's current contents.
    pub fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            return "; its log is empty".to_string();
        }
        let tail = &lines[lines.len().saturating_sub(15)..];
        format!("; its log ends with:\n    {}", tail.join("\n    "))
    }

    /// Stop it as courierfilter does (close stdin) and wait for it to exit.
    pub fn stop(&mut self, timeout: Duration) -> Result<(ExitStatus, Duration)> {
        self.remember_tree();
        let started = Instant::now();
        drop(self.stdin.take());
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .or_fail(|| "cannot query the daemon's status".into())?
            {
                self.exited = Some(status);
                return Ok((status, started.elapsed()));
            }
            if started.elapsed() >= timeout {
                self.kill_all();
                return Err(format!(
                    "the daemon did not exit within {timeout:?} of stdin EOF; killed it{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Workers that outlived the master (still running, not zombies).
    pub fn leftover_workers(&self) -> Vec<u32> {
        self.seen
            .iter()
            .copied()
            .filter(|&p| process_alive(p))
            .collect()
    }

    /// SIGKILL the master and every process seen in its tree; reap the master.
    fn kill_all(&mut self) {
        self.remember_tree();
        let mut pids = self.seen.clone();
        pids.push(self.pid());
        for p in pids {
            if process_alive(p) {
                // SAFETY: plain kill(2) on a pid this program started (or its child).
                unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
            }
        }
        if let Ok(status) = self.child.wait() {
            self.exited = Some(status);
        }
    }
}

impl Drop for Daemon {
    // Every exit path: ask nicely (stdin EOF), then kill what is left.
    fn drop(&mut self) {
        if self.exited.is_none() && self.stop(Duration::from_secs(5)).is_err() {
            self.kill_all();
        }
        for p in self.leftover_workers() {
            // SAFETY: as above; these are the daemon's own workers.
            unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /proc readings.

/// Children of every thread of `pid`, recursively.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(list) = fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for child in list.split_whitespace().filter_map(|c| c.parse().ok()) {
                if !out.contains(&child) {
                    out.push(child);
                    todo.push(child);
                }
            }
        }
    }
    out
}

/// The fields of /proc/<pid>/stat after the command name: index 0 is field 3 (state).
fn stat_fields(pid: u32) -> Result<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .or_fail(|| format!("cannot read /proc/{pid}/stat"))?;
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| format!("unexpected /proc/{pid}/stat: {stat}"))?;
    Ok(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether the process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    stat_fields(pid).is_ok_and(|f| f.first().is_some_and(|s| s != "Z" && s != "X"))
}

/// utime + stime + cutime + cstime of one process, in clock ticks. Counting the reaped
/// children's time too means a worker that exits and is reaped between two readings is not
/// lost: its time moves from its own entry to its parent's.
fn process_ticks(pid: u32) -> Result<u64> {
    let f = stat_fields(pid)?;
    let field = |n: usize| -> Result<u64> {
        f.get(n - 3)
            .and_then(|v| v.parse::<i64>().ok())
            .map(|v| v.max(0) as u64)
            .ok_or_else(|| format!("/proc/{pid}/stat has no field {n}"))
    };
    Ok(field(14)? + field(15)? + field(16)? + field(17)?)
}

pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no side effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// CPU time of a process tree (the master and all its descendants), read two ways.
#[derive(Debug, Clone)]
pub struct TreeCpu {
    /// utime + stime (+ reaped children's) from /proc/<pid>/stat: clock-tick resolution
    /// (10 ms at 100 Hz) per process and reading.
    pub stat: Duration,
    /// The scheduler's on-CPU time (first field of /proc/<pid>/task/<tid>/schedstat, in ns)
    /// summed over every thread: the same quantity at nanosecond resolution. `None` when the
    /// kernel does not provide schedstat.
    pub sched: Option<Duration>,
    /// The descendants seen (the workers).
    pub children: Vec<u32>,
}

impl TreeCpu {
    /// The precise figure when there is one.
    pub fn best(&self) -> Duration {
        self.sched.unwrap_or(self.stat)
    }
}

/// On-CPU nanoseconds of every thread of one process.
fn process_sched_ns(pid: u32) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        let text = fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

pub fn tree_cpu(pid: u32) -> Result<TreeCpu> {
    let children = descendants(pid);
    let mut ticks = process_ticks(pid)?;
    let mut sched = process_sched_ns(pid);
    for c in &children {
        // A worker may vanish between listing and reading: its stat time is then in the
        // master's cutime already (once reaped), so skipping it is right there. The schedstat
        // sum cannot follow it; callers detect a changed worker set and discard the run.
        if let Ok(t) = process_ticks(*c) {
            ticks += t;
        }
        sched = match (sched, process_sched_ns(*c)) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
    }
    let per_sec = clock_ticks_per_second();
    Ok(TreeCpu {
        stat: Duration::from_nanos(ticks * 1_000_000_000 / per_sec),
        sched: sched.map(Duration::from_nanos),
        children,
    })
}

/// Peak resident set size (VmHWM) of one process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    proc_kib(&format!("/proc/{pid}/status"), "VmHWM:")
}

/// Proportional set size (Pss of /proc/<pid>/smaps_rollup) of one process now, in KiB: its
/// resident pages, each shared page divided among the processes that map it. Summed over a
/// master and its forked workers, shared pages count once, unlike VmHWM.
pub fn pss_kib(pid: u32) -> Result<u64> {
    proc_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// The `<key> <n> kB` line of a /proc file, in KiB.
fn proc_kib(path: &str, key: &str) -> Result<u64> {
    let text = fs::read_to_string(path).or_fail(|| format!("cannot read {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {} in {path}", key.trim_end_matches(':')))
}

/// This process's CPU time (all threads).
pub fn own_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The permission bits of a file, or None if it does not exist.
pub fn mode_of(path: &Path) -> Option<u32> {
    fs::symlink_metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_paths_then_an_empty_line() {
        let m = SpoolMessage {
            data: "/q/tmp/1/D1".into(),
            controls: vec!["/q/tmp/1/C1".into(), "/q/tmp/1/C2".into()],
        };
        assert_eq!(m.request(), b"/q/tmp/1/D1\n/q/tmp/1/C1\n/q/tmp/1/C2\n\n");
    }

    #[test]
    fn proc_readings_of_this_process() {
        let me = std::process::id();
        assert!(process_alive(me));
        assert!(peak_rss_kib(me).expect("VmHWM") > 0);
        assert!(pss_kib(me).expect("Pss") > 0);
        let cpu = tree_cpu(me).expect("stat");
        assert!(cpu.best() <= Duration::from_secs(3600));
    }

    #[test]
    fn launcher_waits_for_fd3_and_stops_on_stdin_eof() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        // A stand-in daemon: says hello, closes fd 3 (ready), exits at stdin EOF.
        let script = "echo started; exec 3>&-; cat >/dev/null; echo bye";
        let args: Vec<OsString> = vec!["-c".into(), script.into()];
        let mut d = Daemon::start(Path::new("/bin/sh"), &args, &log, Duration::from_secs(10))
            .expect("ready");
        let (status, _) = d.stop(Duration::from_secs(10)).expect("stops");
        assert!(status.success());
        assert_eq!(d.log_text(), "started\nbye\n");
    }

    #[test]
    fn launcher_reports_a_daemon_that_dies_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let args: Vec<OsString> = vec!["-c".into(), "echo broken config >&2; exit 78".into()];
        let e = Daemon::start(Path::new("/bin/sh"), &args, &log, Duration::from_secs(10))
            .err()
            .expect("start fails");
        assert!(e.contains("exited during start-up"), "{e}");
        assert!(e.contains("broken config"), "{e}");
    }
}
