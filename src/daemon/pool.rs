//! The master's supervision loop and the pre-forked workers.
//!
//! The master is single-threaded: it creates the socket, forks the workers, closes fd 3 once
//! every worker has said it is ready, and then only supervises — poll() on stdin (courierfilter
//! closes it to stop us), a self-pipe fed by the SIGCHLD/SIGTERM/SIGINT handlers, the workers'
//! ready pipe and a timeout (respawn backoff, readiness deadline, reminder log, watchdog). It
//! never accepts; the workers share the listening socket and each serves one connection at a
//! time.
//!
//! A worker keeps SIGTERM/SIGINT blocked except while it waits in ppoll() for a connection, so a
//! stop request never interrupts the message in hand (no EINTR in module I/O) and can never be
//! lost between checking the stop flag and waiting: ppoll unblocks them atomically. The listener
//! is non-blocking and a worker tries `accept` before it waits, so under load it takes the next
//! connection without waiting at all.
//!
//! The watchdog costs a worker no system call per message: it writes the monotonic time at
//! which `handle` started into its slot of a shared memory page (0 when idle), and the master
//! looks at the slots every few seconds and kills a worker whose message has run longer than
//! [`Handler::time_limit`]. No timer signal ever interrupts a worker.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::socket::ListeningSocket;
use super::wire::{read_request, write_reply};
use super::{DaemonError, Handler, ServeOptions};

/// How long the master waits for every worker to report ready before closing fd 3 anyway
/// (courierfilter start blocks until then).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight messages may take after a shutdown request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A worker that dies sooner than this after its start counts towards the crash-loop backoff.
const QUICK_DEATH: Duration = Duration::from_secs(10);
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The watchdog looks at the workers this often (a quarter of the time limit, within these).
const WATCH_INTERVAL_MIN: Duration = Duration::from_millis(100);
const WATCH_INTERVAL_MAX: Duration = Duration::from_secs(5);

/// Write end of the master's self-pipe; -1 outside the master.
static SELF_PIPE_WR: AtomicI32 = AtomicI32::new(-1);
/// Set in a worker by SIGTERM/SIGINT.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn master_on_signal(sig: libc::c_int) {
    let fd = SELF_PIPE_WR.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) and errno access are async-signal-safe; errno is restored so the
        // interrupted code sees its own.
        unsafe {
            let saved = *libc::__errno_location();
            let byte = sig as u8;
            libc::write(fd, (&raw const byte).cast(), 1);
            *libc::__errno_location() = saved;
        }
    }
}

extern "C" fn worker_on_stop(_sig: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn set_handler(sig: libc::c_int, handler: libc::sighandler_t, flags: libc::c_int) {
    // SAFETY: a zeroed sigaction with an empty mask is valid; the handlers only touch atomics
    // and write(2).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = flags; // no SA_RESTART: poll/ppoll must return EINTR
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn pipe(flags: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), flags) })?;
    // SAFETY: both are fresh descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we hold.
    unsafe {
        let flags = cvt(libc::fcntl(fd, libc::F_GETFL))?;
        cvt(libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    }
    Ok(())
}

/// Read what is available from a non-blocking fd; `Ok(0)` is EOF.
fn read_some(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether fd 0 is something courierfilter can close on us (pipe, FIFO or socket).
fn stdin_is_watchable() -> bool {
    // SAFETY: fstat into a zeroed stat buffer.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(0, &mut st) != 0 {
            return false;
        }
        matches!(st.st_mode & libc::S_IFMT, libc::S_IFIFO | libc::S_IFSOCK)
    }
}

fn describe_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("ended with wait status {status}")
    }
}

/// Delay before the next respawn after `quick_deaths` consecutive quick deaths: the first is
/// replaced at once, then 200 ms, 400 ms, … up to 30 s.
fn backoff(quick_deaths: u32) -> Duration {
    if quick_deaths <= 1 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (quick_deaths - 1).min(16);
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process, read through the vDSO
/// (no system call). Never 0, which marks an idle slot.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
        .max(1)
}

/// One slot per worker in memory shared between the master and the workers: when the worker's
/// current `handle` call started ([`monotonic_ns`]), or 0 while it is not handling a message.
struct BusyBoard {
    slots: *mut BusySlot,
    len: usize,
}

/// A slot has a cache line to itself: workers on different CPUs write theirs several times
/// per message, and slots sharing a line would bounce it between the CPUs.
#[repr(C, align(64))]
struct BusySlot(AtomicU64);

impl BusyBoard {
    fn new(len: usize) -> io::Result<BusyBoard> {
        let len = len.max(1);
        let bytes = len * std::mem::size_of::<BusySlot>();
        // SAFETY: an anonymous shared mapping; the result is checked. Its pages are zeroed,
        // which is a valid AtomicU64 (idle) in every slot.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(BusyBoard {
            slots: ptr.cast(),
            len,
        })
    }

    fn slot(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.len, "busy slot {i} of {}", self.len);
        // SAFETY: i is in bounds of the mapping (page-aligned, so every slot is aligned), which
        // lives as long as self; AtomicU64 may be shared between processes (lock-free on every
        // platform we build for).
        unsafe { &(*self.slots.add(i)).0 }
    }
}

impl Drop for BusyBoard {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what new() mapped; no reference outlives self.
        unsafe {
            libc::munmap(
                self.slots.cast(),
                self.len * std::mem::size_of::<BusySlot>(),
            )
        };
    }
}

/// A duration in seconds as people write it: `90`, `30.5`.
fn seconds(d: Duration) -> String {
    format!("{}", (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// Run the daemon: see [`super::serve`].
pub fn run<H: Handler>(opts: &ServeOptions, handler: H) -> Result<(), DaemonError> {
    let socket = ListeningSocket::create(&opts.localstatedir, &opts.name)?;
    let result = Master::new(opts, socket, handler).and_then(|mut m| m.run());
    result.map_err(|e| DaemonError(format!("{}: {e}", opts.name)))
}

struct Master<'a, H: Handler> {
    opts: &'a ServeOptions,
    handler: H,
    socket: Option<ListeningSocket>,
    self_pipe: (OwnedFd, OwnedFd),
    /// Workers write their pid here once `worker_init` succeeded.
    ready_pipe: (OwnedFd, OwnedFd),
    ready_buf: Vec<u8>,
    /// fd 3 while still open.
    ready_fd: Option<RawFd>,
    ready_deadline: Instant,
    /// Every worker reported ready once (or the deadline passed): fd 3 is closed.
    started: bool,
    watch_stdin: bool,
    /// pid → start time.
    workers: HashMap<libc::pid_t, Instant>,
    /// The worker (and whether the watchdog killed it) using each slot of `busy`.
    slots: Vec<Option<(libc::pid_t, bool)>>,
    busy: BusyBoard,
    /// The handler's time limit and the watchdog's next look.
    time_limit: Option<Duration>,
    next_watch: Option<Instant>,
    ready: HashSet<libc::pid_t>,
    to_spawn: usize,
    spawn_at: Instant,
    quick_deaths: u32,
    next_reminder: Option<Instant>,
    stopping: bool,
    master_pid: libc::pid_t,
}

impl<'a, H: Handler> Master<'a, H> {
    fn new(
        opts: &'a ServeOptions,
        socket: ListeningSocket,
        handler: H,
    ) -> io::Result<Master<'a, H>> {
        let self_pipe = pipe(libc::O_CLOEXEC | libc::O_NONBLOCK)?;
        let ready_pipe = pipe(libc::O_CLOEXEC)?;
        set_nonblocking(ready_pipe.0.as_raw_fd())?;
        // Workers try accept before they wait, and must not block in it when another worker
        // took the connection.
        set_nonblocking(socket.fd())?;
        let now = Instant::now();
        let workers = opts.workers.max(1);
        let time_limit = handler.time_limit();
        Ok(Master {
            opts,
            handler,
            socket: Some(socket),
            self_pipe,
            ready_pipe,
            ready_buf: Vec::new(),
            ready_fd: opts.ready_fd,
            ready_deadline: now + READY_TIMEOUT,
            started: false,
            watch_stdin: stdin_is_watchable(),
            workers: HashMap::new(),
            slots: vec![None; workers],
            busy: BusyBoard::new(workers)?,
            time_limit,
            next_watch: time_limit.map(|_| now),
            ready: HashSet::new(),
            to_spawn: opts.workers.max(1),
            spawn_at: now,
            quick_deaths: 0,
            next_reminder: opts.reminder.as_ref().map(|(every, _)| now + *every),
            stopping: false,
            // SAFETY: getpid cannot fail.
            master_pid: unsafe { libc::getpid() },
        })
    }

    fn name(&self) -> &str {
        &self.opts.name
    }

    fn run(&mut self) -> io::Result<()> {
        SELF_PIPE_WR.store(self.self_pipe.1.as_raw_fd(), Ordering::Relaxed);
        let handler = master_on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        set_handler(libc::SIGCHLD, handler, libc::SA_NOCLDSTOP);
        set_handler(libc::SIGTERM, handler, 0);
        set_handler(libc::SIGINT, handler, 0);
        // A dead log reader or peer must give EPIPE, not kill us (workers inherit this).
        set_handler(libc::SIGPIPE, libc::SIG_IGN, 0);

        let result = self.supervise();
        self.shutdown();

        SELF_PIPE_WR.store(-1, Ordering::Relaxed);
        for sig in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT] {
            set_handler(sig, libc::SIG_DFL, 0);
        }
        result
    }

    fn supervise(&mut self) -> io::Result<()> {
        // The initial workers: failing to fork them at all is an OS error for the caller.
        while self.to_spawn > 0 {
            self.spawn_worker()?;
            self.to_spawn -= 1;
        }
        while !self.stopping {
            let mut fds = vec![
                libc::pollfd {
                    fd: self.self_pipe.0.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.ready_pipe.0.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            if self.watch_stdin {
                fds.push(libc::pollfd {
                    fd: 0,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            let timeout = self.poll_timeout();
            // SAFETY: fds is a valid array of pollfd.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(io::Error::new(e.kind(), format!("poll failed: {e}")));
                }
            }
            self.drain_self_pipe();
            self.reap();
            self.read_ready_pipe();
            if self.watch_stdin && fds.len() > 2 && fds[2].revents != 0 {
                self.read_stdin();
            }
            if self.stopping {
                break;
            }
            self.respawn_due();
            self.check_readiness();
            self.remind();
            self.watch();
        }
        Ok(())
    }

    /// Milliseconds until the next timed event, or -1.
    fn poll_timeout(&self) -> libc::c_int {
        let mut next: Option<Instant> = self.next_reminder;
        if let Some(t) = self.next_watch {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if self.to_spawn > 0 {
            consider(self.spawn_at);
        }
        if !self.started {
            consider(self.ready_deadline);
        }
        match next {
            None => -1,
            Some(t) => {
                let ms = t.saturating_duration_since(Instant::now()).as_millis();
                // Round up so we do not wake a little early and spin.
                (ms + 1).min(i32::MAX as u128) as libc::c_int
            }
        }
    }

    fn drain_self_pipe(&mut self) {
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = read_some(self.self_pipe.0.as_raw_fd(), &mut buf) {
            for &sig in &buf[..n] {
                match sig as libc::c_int {
                    libc::SIGTERM => self.stop("SIGTERM"),
                    libc::SIGINT => self.stop("SIGINT"),
                    _ => {} // SIGCHLD: reap() runs after every wakeup anyway
                }
            }
        }
    }

    fn stop(&mut self, why: &'static str) {
        if !self.stopping {
            log::info!("{}: {why}, shutting down", self.name());
            self.stopping = true;
        }
    }

    fn read_stdin(&mut self) {
        let mut buf = [0u8; 512];
        match read_some(0, &mut buf) {
            Ok(0) => self.stop("stdin closed"),
            Ok(_) => {} // courierfilter sends nothing; data is not a stop request
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                log::warn!(
                    "{}: cannot read stdin ({e}); no longer watching it",
                    self.name()
                );
                self.watch_stdin = false;
            }
        }
    }

    /// Collect dead workers; each one is logged and replaced (unless we are stopping).
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let Some(started) = self.workers.remove(&pid) else {
                continue;
            };
            self.ready.remove(&pid);
            self.free_slot(pid);
            if self.stopping {
                if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                    log::warn!("{}: worker {pid} {}", self.name(), describe_status(status));
                }
                continue;
            }
            log::error!("{}: worker {pid} {}", self.name(), describe_status(status));
            if started.elapsed() < QUICK_DEATH {
                self.quick_deaths = self.quick_deaths.saturating_add(1);
            } else {
                self.quick_deaths = 0;
            }
            let delay = backoff(self.quick_deaths);
            if delay > Duration::ZERO {
                log::warn!(
                    "{}: workers keep dying; next start in {:.1} s",
                    self.name(),
                    delay.as_secs_f64()
                );
            }
            self.spawn_at = self.spawn_at.max(Instant::now() + delay);
            self.to_spawn += 1;
        }
    }

    fn respawn_due(&mut self) {
        while self.to_spawn > 0 && Instant::now() >= self.spawn_at {
            match self.spawn_worker() {
                Ok(()) => self.to_spawn -= 1,
                Err(e) => {
                    log::error!("{}: cannot start a worker: {e}", self.name());
                    self.spawn_at = Instant::now() + Duration::from_secs(1);
                    return;
                }
            }
        }
    }

    fn read_ready_pipe(&mut self) {
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = read_some(self.ready_pipe.0.as_raw_fd(), &mut buf) {
            self.ready_buf.extend_from_slice(&buf[..n]);
        }
        let whole = self.ready_buf.len() / 4 * 4;
        for chunk in self.ready_buf[..whole].chunks_exact(4) {
            let pid = libc::pid_t::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            if self.workers.contains_key(&pid) {
                self.ready.insert(pid);
            }
        }
        self.ready_buf.drain(..whole);
    }

    /// Close fd 3 once every worker can accept (or the readiness deadline has passed).
    fn check_readiness(&mut self) {
        if self.started {
            return;
        }
        let wanted = self.opts.workers.max(1);
        let all_ready = self.ready.len() >= wanted;
        if !all_ready && Instant::now() < self.ready_deadline {
            return;
        }
        if all_ready {
            log::info!(
                "{}: ready, {wanted} worker(s) on {}",
                self.name(),
                self.socket_path()
            );
        } else {
            log::warn!(
                "{}: only {} of {wanted} workers ready after {} s; signalling readiness anyway",
                self.name(),
                self.ready.len(),
                READY_TIMEOUT.as_secs()
            );
        }
        if let Some(fd) = self.ready_fd.take() {
            // SAFETY: fd 3 was handed to us for exactly this; nothing else uses it.
            unsafe { libc::close(fd) };
        }
        self.started = true;
    }

    fn socket_path(&self) -> String {
        self.socket
            .as_ref()
            .map(|s| s.path.display().to_string())
            .unwrap_or_default()
    }

    fn free_slot(&mut self, pid: libc::pid_t) {
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| matches!(s, Some((p, _)) if *p == pid))
        {
            self.slots[i] = None;
            // A worker killed mid-message leaves its mark; its successor starts idle.
            self.busy.slot(i).store(0, Ordering::Relaxed);
        }
    }

    /// The watchdog: kill every worker whose current message has run longer than the
    /// handler's time limit. Courier sees the connection close without a reply and tempfails
    /// the message; reap() replaces the worker.
    fn watch(&mut self) {
        let (Some(limit), Some(due)) = (self.time_limit, self.next_watch) else {
            return;
        };
        let now = Instant::now();
        if now < due {
            return;
        }
        let interval = (limit / 4).clamp(WATCH_INTERVAL_MIN, WATCH_INTERVAL_MAX);
        self.next_watch = Some(now + interval);
        let limit_ns = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        let mono = monotonic_ns();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some((pid, killed)) = slot else {
                continue;
            };
            let since = self.busy.slot(i).load(Ordering::Relaxed);
            if *killed || since == 0 || mono.saturating_sub(since) <= limit_ns {
                continue;
            }
            log::error!(
                "{}: worker {pid}: message exceeded {} s, killing it",
                self.opts.name,
                seconds(limit)
            );
            // SAFETY: signalling our own child.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
            *killed = true;
        }
    }

    fn remind(&mut self) {
        let (Some(due), Some((every, text))) = (self.next_reminder, &self.opts.reminder) else {
            return;
        };
        let now = Instant::now();
        if now >= due {
            log::error!("{text}");
            self.next_reminder = Some(now + *every);
        }
    }

    fn spawn_worker(&mut self) -> io::Result<()> {
        let Some(socket) = self.socket.as_ref() else {
            return Ok(());
        };
        let listener_fd = socket.fd();
        let slot = self.slots.iter().position(Option::is_none);
        let blocked = signal_set(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT]);
        // SAFETY: zeroed sigset_t is overwritten by sigprocmask.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // Keep signals away until the child has replaced the master's handlers.
        // SAFETY: valid sigset pointers.
        unsafe { libc::sigprocmask(libc::SIG_BLOCK, &blocked, &mut old) };
        // SAFETY: the master is single-threaded, so the child may run ordinary code.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            self.become_worker(listener_fd, slot);
        }
        // SAFETY: restoring the saved mask.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        self.workers.insert(pid, Instant::now());
        if let Some(i) = slot {
            self.slots[i] = Some((pid, false));
        }
        Ok(())
    }

    /// The child side of fork: set the process up as a worker, serve, and exit.
    fn become_worker(&mut self, listener_fd: RawFd, slot: Option<usize>) -> ! {
        // SAFETY: plain syscalls on our own descriptors and signal dispositions, in the
        // (single-threaded) child.
        unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            );
            if libc::getppid() != self.master_pid {
                libc::_exit(0); // the master died before prctl took effect
            }
            SELF_PIPE_WR.store(-1, Ordering::Relaxed);
            set_handler(libc::SIGCHLD, libc::SIG_DFL, 0);
            let stop = worker_on_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
            set_handler(libc::SIGTERM, stop, 0);
            set_handler(libc::SIGINT, stop, 0);
            // SIGTERM/SIGINT stay blocked (see the module comment); SIGCHLD is unblocked for
            // whatever the modules spawn.
            let chld = signal_set(&[libc::SIGCHLD]);
            libc::sigprocmask(libc::SIG_UNBLOCK, &chld, std::ptr::null_mut());
            // Only the master watches stdin and owns fd 3 (a copy held here would keep
            // courierfilter waiting).
            if let Some(fd) = self.ready_fd {
                libc::close(fd);
            }
            let devnull = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if devnull >= 0 {
                libc::dup2(devnull, 0);
                if devnull != 0 {
                    libc::close(devnull);
                }
            }
        }
        // The master's pipes are not ours; closing them here keeps EOFs meaningful.
        let self_pipe_fds = [self.self_pipe.0.as_raw_fd(), self.self_pipe.1.as_raw_fd()];
        let ready_wr = self.ready_pipe.1.as_raw_fd();
        // SAFETY: as above.
        unsafe {
            for fd in self_pipe_fds {
                libc::close(fd);
            }
            libc::close(self.ready_pipe.0.as_raw_fd());
        }
        super::tuning::request_short_slice();
        let opts = self.opts;
        // Only a worker with a slot and a handler with a limit marks its messages.
        let busy = slot
            .filter(|_| self.time_limit.is_some())
            .map(|i| self.busy.slot(i));
        let handler = &mut self.handler;
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            worker_main(opts, handler, listener_fd, ready_wr, busy)
        })) {
            Ok(code) => code,
            Err(_) => {
                log::error!("{}: worker {} panicked", opts.name, std::process::id());
                70
            }
        };
        log::logger().flush();
        // SAFETY: _exit: the worker must never return into the caller's code (main would carry
        // on as if it were the master).
        unsafe { libc::_exit(code) }
    }

    /// Stop accepting, let the workers finish (≤ 10 s), reap everything.
    fn shutdown(&mut self) {
        if let Some(socket) = self.socket.take() {
            socket.unlink();
            // Dropping it closes the master's copy of the listener.
        }
        self.stopping = true;
        self.to_spawn = 0;
        if let Some(fd) = self.ready_fd.take() {
            // SAFETY: see check_readiness.
            unsafe { libc::close(fd) };
        }
        for &pid in self.workers.keys() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !self.workers.is_empty() {
            self.reap();
            if self.workers.is_empty() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds = [libc::pollfd {
                fd: self.self_pipe.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            let ms = (left.as_millis() + 1).min(i32::MAX as u128) as libc::c_int;
            // SAFETY: a valid pollfd array of length 1.
            unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
            let mut buf = [0u8; 64];
            while let Ok(1..) = read_some(self.self_pipe.0.as_raw_fd(), &mut buf) {}
        }
        for (&pid, _) in self.workers.iter() {
            log::warn!(
                "{}: worker {pid} still busy after {} s; killing it",
                self.name(),
                DRAIN_TIMEOUT.as_secs()
            );
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for (pid, _) in self.workers.drain() {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        }
    }
}

/// A worker's life: init, report ready, serve until told to stop, drain the queue, exit code.
fn worker_main<H: Handler>(
    opts: &ServeOptions,
    handler: &mut H,
    listener_fd: RawFd,
    ready_wr: RawFd,
    busy: Option<&AtomicU64>,
) -> i32 {
    let pid = std::process::id();
    if let Err(e) = handler.worker_init() {
        log::error!("{}: worker {pid} failed to start: {e}", opts.name);
        return 1;
    }
    let waiter = Waiter { listener_fd };
    let bytes = (pid as libc::pid_t).to_ne_bytes();
    // SAFETY: a 4-byte write to our end of the ready pipe (atomic: < PIPE_BUF).
    unsafe {
        libc::write(ready_wr, bytes.as_ptr().cast(), bytes.len());
        libc::close(ready_wr);
    }
    // SAFETY: the listener fd is inherited and stays open for the life of this process;
    // ManuallyDrop because the master's memory image also "owns" it.
    let listener = std::mem::ManuallyDrop::new(unsafe { UnixListener::from_raw_fd(listener_fd) });

    // The signal mask during the wait: the current one minus SIGTERM/SIGINT.
    // SAFETY: reading the current mask into a zeroed set.
    let mut wait_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigprocmask(libc::SIG_BLOCK, std::ptr::null(), &mut wait_mask);
        libc::sigdelset(&mut wait_mask, libc::SIGTERM);
        libc::sigdelset(&mut wait_mask, libc::SIGINT);
    }
    // STOP is only ever set inside wait() (the one place SIGTERM/SIGINT are unblocked), so a
    // stop request that arrives while connections are queued takes effect once the queue is
    // empty; the master has unlinked the socket by then, so the queue does not grow.
    while !STOP.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                serve_connection(opts, handler, stream, busy);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if accept_error_is_transient(&e) => continue,
            Err(e) => {
                // EMFILE, ENOBUFS, …: do not spin on a persistent error.
                log::error!("{}: worker {pid}: accept failed: {e}", opts.name);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if let Err(e) = waiter.wait(&wait_mask) {
            log::error!("{}: worker {pid}: poll failed: {e}", opts.name);
            return 1;
        }
    }
    // Stopping: the socket is unlinked, so nothing new arrives; answer what is queued.
    loop {
        match listener.accept() {
            Ok((stream, _)) => serve_connection(opts, handler, stream, busy),
            Err(e) if accept_error_is_transient(&e) => {}
            Err(_) => break,
        }
    }
    0
}

/// EINTR, and a peer that gave up before we accepted: try the next one.
fn accept_error_is_transient(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted || e.raw_os_error() == Some(libc::ECONNABORTED)
}

/// A worker's wait for the next connection.
struct Waiter {
    listener_fd: RawFd,
}

impl Waiter {
    /// Wait until the listener is readable or a signal arrives, with `mask` (SIGTERM/SIGINT
    /// unblocked) in force during the wait only. EINTR is a normal return.
    ///
    /// Every idle worker wakes for a connection and one wins it. An exclusive wakeup
    /// (epoll's EPOLLEXCLUSIVE) was tried and measured: with one client at a time on the
    /// 2-CPU VM it halved the message rate and cost more CPU per message (probably because
    /// the one worker it wakes often sits on the idle CPU).
    fn wait(&self, mask: &libc::sigset_t) -> io::Result<()> {
        let mut fds = [libc::pollfd {
            fd: self.listener_fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: a valid pollfd array and signal mask; no timeout.
        let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), 1, std::ptr::null(), mask) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }
}

fn serve_connection<H: Handler>(
    opts: &ServeOptions,
    handler: &mut H,
    mut stream: UnixStream,
    busy: Option<&AtomicU64>,
) {
    // The request is read and the reply written with MSG_DONTWAIT, whatever the socket's
    // mode, so the accepted socket needs no set-up.
    match read_request(&mut stream, &opts.localstatedir, &opts.limits) {
        Ok(request) => {
            if let Some(busy) = busy {
                busy.store(monotonic_ns(), Ordering::Relaxed);
            }
            let reply = handler.handle(&request);
            if let Some(busy) = busy {
                busy.store(0, Ordering::Relaxed);
            }
            if let Err(e) = write_reply(stream, &reply, opts.limits.read_timeout) {
                log::warn!("{}: cannot send the reply: {e}", opts.name);
            }
            // Watched again: a log write can block (a full stderr pipe).
            if let Some(busy) = busy {
                busy.store(monotonic_ns(), Ordering::Relaxed);
            }
            handler.after_reply();
            if let Some(busy) = busy {
                busy.store(0, Ordering::Relaxed);
            }
        }
        Err(e) => log::warn!(
            "{}: bad request, closing the connection without a reply: {e}",
            opts.name
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::{Limits, Request, serve};
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(3), Duration::from_millis(400));
        assert_eq!(backoff(9), Duration::from_millis(25_600));
        assert_eq!(backoff(10), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn wait_statuses_are_described() {
        assert_eq!(describe_status(3 << 8), "exited with status 3");
        assert_eq!(describe_status(9), "killed by signal 9");
    }

    /// Answers `200 <worker pid> <data path>`; `…/slow` takes 1.5 s, `…/hang` 60 s; `…/multi` is a
    /// two-line reply; with `fail_init`, worker_init fails and appends a line to that file.
    struct TestHandler {
        pid: u32,
        fail_init: Option<PathBuf>,
        time_limit: Option<Duration>,
    }

    impl Handler for TestHandler {
        fn worker_init(&mut self) -> Result<(), String> {
            self.pid = std::process::id();
            match &self.fail_init {
                None => Ok(()),
                Some(log) => {
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(log)
                        .map_err(|e| e.to_string())?;
                    let _ = writeln!(f, "{}", self.pid);
                    Err("test init failure".into())
                }
            }
        }

        fn handle(&mut self, request: &Request) -> String {
            let data = request.data_path.to_string_lossy().into_owned();
            if data.ends_with("/slow") {
                std::thread::sleep(Duration::from_millis(1500));
            }
            if data.ends_with("/hang") {
                std::thread::sleep(Duration::from_secs(60));
            }
            if data.ends_with("/multi") {
                return "550 first\nsecond".into();
            }
            format!("200 {} {data}", self.pid)
        }

        fn time_limit(&self) -> Option<Duration> {
            self.time_limit
        }
    }

    /// A forked process running `serve`, started the way courierfilter does (stdin a pipe,
    /// a readiness pipe whose write end the daemon closes).
    struct Daemon {
        pid: libc::pid_t,
        dir: tempfile::TempDir,
        stdin: Option<OwnedFd>,
        ready: OwnedFd,
    }

    impl Daemon {
        fn start(workers: usize, fail_init: bool) -> Daemon {
            Daemon::start_with(workers, fail_init, None, None)
        }

        /// stderr goes to `<dir>/log`.
        fn start_with(
            workers: usize,
            fail_init: bool,
            reminder: Option<(Duration, String)>,
            time_limit: Option<Duration>,
        ) -> Daemon {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("allfilters")).unwrap();
            std::fs::create_dir(dir.path().join("filters")).unwrap();
            let opts = ServeOptions {
                name: "rf".into(),
                localstatedir: dir.path().to_path_buf(),
                workers,
                limits: Limits {
                    read_timeout: Duration::from_secs(2),
                    ..Limits::default()
                },
                ready_fd: None,
                reminder,
            };
            let log = std::fs::File::create(dir.path().join("log")).unwrap();
            let fail_init = fail_init.then(|| dir.path().join("inits"));
            let (stdin_rd, stdin_wr) = pipe(libc::O_CLOEXEC).unwrap();
            let (ready_rd, ready_wr) = pipe(libc::O_CLOEXEC).unwrap();
            // Everything the child needs is allocated before fork (the test harness has
            // other threads).
            let opts = ServeOptions {
                ready_fd: Some(ready_wr.as_raw_fd()),
                ..opts
            };
            let handler = TestHandler {
                pid: 0,
                fail_init,
                time_limit,
            };
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                unsafe {
                    libc::dup2(stdin_rd.as_raw_fd(), 0);
                    libc::dup2(log.as_raw_fd(), 2);
                    libc::close(stdin_wr.as_raw_fd());
                    libc::close(ready_rd.as_raw_fd());
                }
                crate::logging::init_stderr("rf", log::LevelFilter::Info);
                let code = match serve(&opts, handler) {
                    Ok(()) => 0,
                    Err(e) => {
                        log::error!("{e}");
                        71
                    }
                };
                unsafe { libc::_exit(code) };
            }
            drop((stdin_rd, ready_wr, log));
            Daemon {
                pid,
                dir,
                stdin: Some(stdin_wr),
                ready: ready_rd,
            }
        }

        fn socket(&self) -> PathBuf {
            self.dir.path().join("allfilters/rf")
        }

        fn log(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        }

        fn wait_log(&self, needle: &str, within: Duration) -> bool {
            let deadline = Instant::now() + within;
            while !self.log().contains(needle) {
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            true
        }

        /// Wait for EOF on the readiness pipe.
        fn wait_ready(&self, within: Duration) -> bool {
            let deadline = Instant::now() + within;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                let mut fds = [libc::pollfd {
                    fd: self.ready.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                }];
                unsafe { libc::poll(fds.as_mut_ptr(), 1, left.as_millis() as i32 + 1) };
                let mut b = [0u8; 16];
                if fds[0].revents != 0 && read_some(self.ready.as_raw_fd(), &mut b).ok() == Some(0)
                {
                    return true;
                }
            }
        }

        fn workers(&self) -> Vec<libc::pid_t> {
            let p = format!("/proc/{0}/task/{0}/children", self.pid);
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect()
        }

        /// Exit status, if the process ends within `within`.
        fn wait_exit(&mut self, within: Duration) -> Option<libc::c_int> {
            let deadline = Instant::now() + within;
            while Instant::now() < deadline {
                let mut status = 0;
                let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
                if rc == self.pid {
                    self.pid = 0;
                    return Some(status);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            if self.pid > 0 {
                unsafe {
                    libc::kill(self.pid, libc::SIGKILL);
                    libc::waitpid(self.pid, std::ptr::null_mut(), 0);
                }
            }
        }
    }

    /// Send `request`, then (with `half_close`) signal EOF; the reply is what comes back.
    fn send_raw(socket: &Path, request: &[u8], half_close: bool) -> String {
        let mut s = UnixStream::connect(socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // The daemon may close (even reset) a connection before reading all of a bad request.
        let _ = s.write_all(request);
        if half_close {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        let mut reply = String::new();
        match s.read_to_string(&mut reply) {
            Ok(_) => reply,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => reply,
            Err(e) => panic!("reading the reply: {e}"),
        }
    }

    fn send(socket: &Path, data: &str) -> String {
        send_raw(socket, format!("{data}\n/x/C1\n\n").as_bytes(), false)
    }

    fn pid_of(reply: &str) -> libc::pid_t {
        reply
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn serves_respawns_and_stops_on_stdin_eof() {
        let mut d = Daemon::start(2, false);
        assert!(d.wait_ready(Duration::from_secs(10)), "fd 3 never closed");
        let sock = d.socket();
        let mode = std::fs::symlink_metadata(&sock)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o660);
        let workers = d.workers();
        assert_eq!(workers.len(), 2, "{workers:?}");

        let reply = send(&sock, "/x/D1");
        assert!(
            reply.starts_with("200 ") && reply.ends_with(" /x/D1"),
            "{reply:?}"
        );
        assert!(workers.contains(&pid_of(&reply)), "{reply:?} {workers:?}");
        assert_eq!(send(&sock, "/x/multi"), "550-first\n550 second");
        // Relative paths resolve under <localstatedir>/tmp.
        let reply = send(&sock, "sub/D1");
        let want = format!(" {}/tmp/sub/D1", d.dir.path().display());
        assert!(reply.ends_with(&want), "{reply:?}");

        // Malformed requests: no reply, connection closed, the workers live on.
        assert_eq!(send_raw(&sock, b"\n", false), "");
        assert_eq!(send_raw(&sock, b"/x/D1\n\n", false), "");
        assert_eq!(send_raw(&sock, b"/x/D1\n/x/C1\n", true), "");
        assert_eq!(send_raw(&sock, &[b'a'; 10_000], false), "");
        // A silent client times out (2 s here).
        let start = Instant::now();
        assert_eq!(send_raw(&sock, b"", false), "");
        assert!(start.elapsed() >= Duration::from_millis(1900));
        assert_eq!(d.workers(), workers);
        assert!(send(&sock, "/x/D2").starts_with("200 "));
        let log = d.log();
        for why in [
            "empty data file path",
            "request names no control file",
            "connection closed after 12 bytes",
            "request line longer than 4096 bytes",
            "request not complete after 2 s (0 bytes received)",
        ] {
            assert!(log.contains(why), "{why:?} not in {log}");
        }

        // A killed worker is replaced.
        unsafe { libc::kill(workers[0], libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut now = d.workers();
        while (now.len() != 2 || now.contains(&workers[0])) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            now = d.workers();
        }
        assert_eq!(now.len(), 2, "{now:?}");
        assert!(!now.contains(&workers[0]));
        let died = format!("rf: worker {} killed by signal 9\n", workers[0]);
        assert!(d.wait_log(&died, Duration::from_secs(5)), "{}", d.log());
        for _ in 0..4 {
            assert!(send(&sock, "/x/D3").starts_with("200 "));
        }

        // stdin EOF: socket gone, exit 0.
        drop(d.stdin.take());
        let status = d.wait_exit(Duration::from_secs(10)).expect("did not exit");
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert!(!sock.exists());
        for w in now {
            assert!(!Path::new(&format!("/proc/{w}")).exists() || is_zombie_or_gone(w));
        }
    }

    fn is_zombie_or_gone(pid: libc::pid_t) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(s) => s
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z')),
        }
    }

    #[test]
    fn sigterm_finishes_the_message_in_hand_and_the_queue() {
        let mut d = Daemon::start(1, false);
        assert!(d.wait_ready(Duration::from_secs(10)));
        let sock = d.socket();
        let s1 = sock.clone();
        let slow = std::thread::spawn(move || send(&s1, "/x/slow"));
        std::thread::sleep(Duration::from_millis(300));
        // Queued behind the slow one (one worker).
        let mut queued = UnixStream::connect(&sock).unwrap();
        queued.write_all(b"/x/queued\n/x/C1\n\n").unwrap();
        unsafe { libc::kill(d.pid, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(200));
        assert!(!sock.exists(), "socket not unlinked at once");
        assert!(slow.join().unwrap().ends_with(" /x/slow"));
        queued
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reply = String::new();
        queued.read_to_string(&mut reply).unwrap();
        assert!(reply.ends_with(" /x/queued"), "{reply:?}");
        let status = d.wait_exit(Duration::from_secs(10)).expect("did not exit");
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }

    #[test]
    fn a_worker_still_busy_after_10_s_is_killed() {
        let mut d = Daemon::start(1, false);
        assert!(d.wait_ready(Duration::from_secs(10)));
        let sock = d.socket();
        let hung = std::thread::spawn(move || send(&sock, "/x/hang"));
        std::thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        unsafe { libc::kill(d.pid, libc::SIGTERM) };
        let status = d.wait_exit(Duration::from_secs(15)).expect("did not exit");
        let took = start.elapsed();
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert!(
            took >= Duration::from_millis(9900) && took < Duration::from_secs(12),
            "{took:?}"
        );
        assert_eq!(hung.join().unwrap(), "");
        assert!(
            d.log().contains("still busy after 10 s; killing it"),
            "{}",
            d.log()
        );
    }

    #[test]
    fn the_watchdog_kills_a_worker_whose_message_runs_too_long() {
        let limit = Duration::from_millis(800);
        let mut d = Daemon::start_with(1, false, None, Some(limit));
        assert!(d.wait_ready(Duration::from_secs(10)));
        let sock = d.socket();
        let workers = d.workers();
        assert_eq!(workers.len(), 1);
        // An idle worker, and one whose messages end in time, are left alone.
        assert!(send(&sock, "/x/D1").starts_with("200 "));
        std::thread::sleep(Duration::from_millis(1200));
        assert!(send(&sock, "/x/D2").starts_with("200 "));
        assert_eq!(d.workers(), workers);

        let start = Instant::now();
        assert_eq!(send(&sock, "/x/hang"), "", "a killed message gets no reply");
        let took = start.elapsed();
        // Noticed within a quarter of the limit (at least 100 ms) after it ran out.
        assert!(
            took >= limit && took < Duration::from_millis(2000),
            "{took:?}"
        );
        let line = format!(
            "rf: worker {}: message exceeded 0.8 s, killing it\n",
            workers[0]
        );
        assert!(d.wait_log(&line, Duration::from_secs(5)), "{}", d.log());
        let died = format!("rf: worker {} killed by signal 9\n", workers[0]);
        assert!(d.wait_log(&died, Duration::from_secs(5)), "{}", d.log());
        // Replaced, and the new worker's slot starts idle (not killed at once).
        let reply = send(&sock, "/x/D3");
        assert!(reply.starts_with("200 "), "{reply:?}");
        assert_ne!(pid_of(&reply), workers[0]);
        std::thread::sleep(Duration::from_millis(1200));
        assert!(send(&sock, "/x/D4").starts_with("200 "));
        assert_eq!(
            d.log().matches("message exceeded").count(),
            1,
            "{}",
            d.log()
        );

        drop(d.stdin.take());
        let status = d.wait_exit(Duration::from_secs(10)).expect("did not exit");
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }

    #[test]
    fn many_queued_connections_are_all_answered_by_few_workers() {
        // The accept-before-wait loop and the exclusive wakeups must never strand a connection.
        let mut d = Daemon::start(2, false);
        assert!(d.wait_ready(Duration::from_secs(10)));
        let sock = d.socket();
        let clients: Vec<_> = (0..8)
            .map(|t| {
                let sock = sock.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let data = format!("/x/D{t}-{i}");
                        let reply = send(&sock, &data);
                        assert!(reply.ends_with(&format!(" {data}")), "{reply:?}");
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        drop(d.stdin.take());
        let status = d.wait_exit(Duration::from_secs(10)).expect("did not exit");
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }

    #[test]
    fn a_crash_loop_backs_off() {
        let mut d = Daemon::start(1, true);
        std::thread::sleep(Duration::from_millis(2000));
        unsafe { libc::kill(d.pid, libc::SIGTERM) };
        let status = d.wait_exit(Duration::from_secs(10)).expect("did not exit");
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        let inits = std::fs::read_to_string(d.dir.path().join("inits")).unwrap();
        // 0, 0, 0.2, 0.6, 1.4 s: five starts in two seconds, not thousands.
        let n = inits.lines().count();
        assert!((3..=7).contains(&n), "{n} starts");
        // Never ready, but a stop request still works (and closes the readiness pipe).
        assert!(d.wait_ready(Duration::from_secs(1)));
        assert!(
            d.log()
                .contains("rf: workers keep dying; next start in 0.4 s")
        );
    }

    #[test]
    fn the_reminder_is_logged_periodically() {
        let reminder = (Duration::from_millis(300), "rf: still broken".to_string());
        let mut d = Daemon::start_with(1, false, Some(reminder), None);
        assert!(d.wait_ready(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(1100));
        drop(d.stdin.take());
        assert!(d.wait_exit(Duration::from_secs(10)).is_some());
        let n = d.log().matches("rf: still broken\n").count();
        assert!((2..=4).contains(&n), "{n} reminders:\n{}", d.log());
    }
}
