//! `make bench`: a load driver for rustfilter's courierfilter socket.
//!
//! Writes a spool of Courier-like messages into a temp dir, then, for a few interleaved rounds,
//! starts each server the way courierfilter does (4 workers), drives its socket with C concurrent
//! clients, and measures throughput, latency, the daemon's CPU time per message (master + every
//! worker, from /proc), peak RSS and start-to-ready time. The servers:
//!
//! * `floor`: a do-nothing pre-forked responder built into this program (`bench floor …`): same
//!   socket set-up and worker model, reads the request and the control files, answers `200 Ok`.
//!   Nothing can answer Courier for less, so it is the yardstick.
//! * `floor+io`: the floor plus the system calls the light chain cannot do without (`bench
//!   floor --io`): it also opens, sizes, reads and closes the data file (deliveredto reads the
//!   header), reads the thread CPU clock twice (the accounting line's CPU time, from before the
//!   first module to after the last) and writes a 190-byte accounting line to stderr after the
//!   reply. It shows how much of the light chain's cost over the floor is that required work
//!   and how much is rustfilter's own.
//! * `empty chain`: rustfilter with no modules (request handling, control-file parse, logging).
//! * `light chain`: rustfilter with noduplicates, nosuccessdsn, whitelist_auth, deliveredto.
//! * `greylist-sqlite`, `light+greylist`, `greylist-pg`: the chain `greylist` alone on the
//!   SQLite store, the light chain + greylist on SQLite, and `greylist` on PostgreSQL (a fresh
//!   database in the throwaway cluster of `tests/services/postgres.sh`). The store is filled
//!   first so that every measured message is a passed triplet (`200 Ok`).
//! * `greylist-new-sqlite`, `greylist-new-pg`: every message a first sight (`451`).
//! * `pythonfilter-noop`, `pythonfilter-light`, `pythonfilter-greylist`,
//!   `pythonfilter-light+greylist`: the reference, courier-pythonfilter 3.0.6 from PyPI in a
//!   throwaway venv (tools/pythonfilter-ref.sh), run as a black box with the same chains
//!   (greylist on its dbm TtlDb). The table shows each rustfilter chain's figures divided by
//!   the reference's.
//!
//! Traffic variants: `--sizes 1k,100k,10m` (data file size) × `--recipients 1,50` (`1-3` is
//! the default mix); each variant has a spool of its own.
//!
//! Every option is also an environment variable (see USAGE). `RUSTFILTER_BIN` runs another
//! binary; `BENCH_PYTHONFILTER_VENV` puts the reference's venv elsewhere.

mod common;

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Daemon, OrFail, Result, Scratch, SpoolMessage};
use rustfilter::store::PgConfig;
use rustfilter::store::postgres::PgBackend;

const ME: &str = "mail.bench.example";
/// Issue 8: the light chain's CPU per message may be at most this multiple of the floor's.
const LIGHT_TARGET_RATIO: f64 = 1.3;
/// Issue 8: greylist alone on SQLite, at most this multiple of the floor's.
const GREYLIST_TARGET_RATIO: f64 = 2.0;
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
const LIGHT_CHAIN: &str = "noduplicates\nnosuccessdsn\nwhitelist_auth\ndeliveredto\n";
/// `make bench`'s servers (the reference with light+greylist is left out: it alone would take
/// a minute per round, its dbm store syncs to disk at every message).
const DEFAULT_SERVERS: &str = concat!(
    "floor,floor+io,empty,light,",
    "greylist-sqlite,light+greylist,greylist-pg,greylist-new-sqlite,greylist-new-pg,",
    "pythonfilter-noop,pythonfilter-light,pythonfilter-greylist"
);
const ALL_SERVERS: &str = concat!(
    "floor,floor+io,empty,light,",
    "greylist-sqlite,light+greylist,greylist-pg,greylist-new-sqlite,greylist-new-pg,",
    "pythonfilter-noop,pythonfilter-light,pythonfilter-greylist,pythonfilter-light+greylist,",
    "light+greylist+attachments,pythonfilter-light+greylist+attachments"
);
/// The throwaway PostgreSQL cluster of tests/services/postgres.sh (its defaults; the variables
/// BENCH_PG_DIR and BENCH_PG_PORT choose another).
const PG_DIR: &str = "/tmp/rustfilter-pg";
const PG_PORT: u16 = 55432;
const PG_USER: &str = "filter";
const PG_PASSWORD: &str = "filterpw";
/// The bench's databases are `rfbench_<pid>_<n>`, dropped after each run.
const PG_DB_PREFIX: &str = "rfbench_";

fn pg_dir() -> String {
    std::env::var("BENCH_PG_DIR")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| PG_DIR.into())
}

fn pg_port() -> u16 {
    std::env::var("BENCH_PG_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(PG_PORT)
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "floor") {
        args.next();
        return floor_main(args.collect());
    }
    common::install_interrupt_handler();
    let opts = match Options::parse(args.collect()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}\n\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    match run(&opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(_) if common::interrupted() => {
            eprintln!("\nbench interrupted; temp files removed, servers stopped");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("\nbench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "\
Usage: cargo run --release --example bench -- [OPTIONS]
  --concurrency LIST  client threads per measured run, comma-separated (default 8,1)
  --messages N        messages per measured run (default 20000)
  --warmup N          messages sent after each start before measuring (default 1000)
  --rounds N          interleaved rounds; the table shows medians (default 3)
  --spool N           distinct spooled messages the traffic cycles through (default 500)
  --workers N         worker processes of each server (default 4)
  --servers LIST      which servers to run, or `all`: floor, empty, light,
                      greylist-sqlite, light+greylist, greylist-pg, greylist-new-sqlite,
                      greylist-new-pg, pythonfilter-noop, pythonfilter-light,
                      pythonfilter-greylist, pythonfilter-light+greylist,
                      light+greylist+attachments, pythonfilter-light+greylist+attachments
                      (default: all but the last three; the attachments rows only run when
                      rustfilter has the attachments module)
  --store-messages N  messages per measured run of the greylist servers (default 4000)
  --reference-messages N  messages per measured run of pythonfilter (default 2000; a fifth
                      of that with greylist)
  --sizes LIST        data file sizes, e.g. 1k,100k,10m (default 1k)
  --recipients LIST   recipients per message: numbers, or 1-3 for the mix (default 1-3)
  --strict            exit 1 when a target of issue 8 that the run checks is not met
Each option can also be given as an environment variable: BENCH_CONCURRENCY, BENCH_MESSAGES,
BENCH_WARMUP, BENCH_ROUNDS, BENCH_SPOOL, BENCH_WORKERS, BENCH_SERVERS, BENCH_STORE_MESSAGES,
BENCH_REFERENCE_MESSAGES, BENCH_SIZES, BENCH_RECIPIENTS, BENCH_STRICT=1. The PostgreSQL rows use the cluster of tests/services/postgres.sh in
BENCH_PG_DIR (default /tmp/rustfilter-pg) on BENCH_PG_PORT (default 55432), started (and
stopped at the end) when it is not running; without PostgreSQL they are skipped.";

#[derive(Debug, Clone)]
struct Options {
    concurrency: Vec<usize>,
    messages: usize,
    warmup: usize,
    rounds: usize,
    spool: usize,
    workers: usize,
    servers: Vec<Server>,
    store_messages: usize,
    /// Messages per measured run of the pythonfilter servers.
    reference_messages: usize,
    /// Data file sizes, in bytes (one spool per size and recipient count).
    sizes: Vec<usize>,
    recipients: Vec<Recipients>,
    strict: bool,
}

/// How many recipients each message of a spool has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recipients {
    /// 1, 2 or 3 (by message number): the default traffic.
    Mixed,
    Fixed(usize),
}

impl Recipients {
    fn parse(s: &str) -> Option<Recipients> {
        if s == "1-3" {
            return Some(Recipients::Mixed);
        }
        match s.parse::<usize>() {
            Ok(n) if (1..=500).contains(&n) => Some(Recipients::Fixed(n)),
            _ => None,
        }
    }

    fn of_message(self, i: u64) -> usize {
        match self {
            Recipients::Mixed => 1 + (i % 3) as usize,
            Recipients::Fixed(n) => n,
        }
    }

    fn label(self) -> String {
        match self {
            Recipients::Mixed => "1-3".into(),
            Recipients::Fixed(n) => n.to_string(),
        }
    }
}

/// `1k`, `100k`, `10m`, `2500`: bytes (k and m are 1024 and 1024²).
fn parse_size(s: &str) -> Option<usize> {
    let lower = s.to_ascii_lowercase();
    let (digits, unit) = match lower.as_bytes().last()? {
        b'k' => (&lower[..lower.len() - 1], 1024),
        b'm' => (&lower[..lower.len() - 1], 1024 * 1024),
        _ => (lower.as_str(), 1),
    };
    let n = digits.parse::<usize>().ok()?.checked_mul(unit)?;
    (200..=(256 << 20)).contains(&n).then_some(n)
}

fn size_label(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{}m", bytes >> 20)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{}k", bytes >> 10)
    } else {
        bytes.to_string()
    }
}

impl Options {
    fn parse(args: Vec<OsString>) -> std::result::Result<Options, String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut raw = [
            (
                "concurrency",
                env("BENCH_CONCURRENCY").unwrap_or("8,1".into()),
            ),
            ("messages", env("BENCH_MESSAGES").unwrap_or("20000".into())),
            ("warmup", env("BENCH_WARMUP").unwrap_or("1000".into())),
            ("rounds", env("BENCH_ROUNDS").unwrap_or("3".into())),
            ("spool", env("BENCH_SPOOL").unwrap_or("500".into())),
            ("workers", env("BENCH_WORKERS").unwrap_or("4".into())),
            (
                "servers",
                env("BENCH_SERVERS").unwrap_or(DEFAULT_SERVERS.into()),
            ),
            (
                "store-messages",
                env("BENCH_STORE_MESSAGES").unwrap_or("4000".into()),
            ),
            (
                "reference-messages",
                env("BENCH_REFERENCE_MESSAGES").unwrap_or("2000".into()),
            ),
            ("sizes", env("BENCH_SIZES").unwrap_or("1k".into())),
            (
                "recipients",
                env("BENCH_RECIPIENTS").unwrap_or("1-3".into()),
            ),
        ];
        let mut strict = env("BENCH_STRICT").is_some_and(|v| v != "0");
        let mut parser = lexopt::Parser::from_args(args);
        while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
            match arg {
                lexopt::Arg::Long("strict") => strict = true,
                lexopt::Arg::Long(name) => {
                    let name = name.to_string();
                    let slot = raw
                        .iter_mut()
                        .find(|(k, _)| *k == name)
                        .ok_or_else(|| format!("unknown option --{name}"))?;
                    slot.1 = parser
                        .value()
                        .map_err(|e| e.to_string())?
                        .into_string()
                        .map_err(|_| format!("--{name}: not UTF-8"))?;
                }
                other => return Err(other.unexpected().to_string()),
            }
        }
        let get = |k: &str| raw.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        let number = |k: &str, min: usize| -> std::result::Result<usize, String> {
            let v = get(k).unwrap_or("");
            match v.trim().parse::<usize>() {
                Ok(n) if n >= min => Ok(n),
                _ => Err(format!("{k}: expected a number >= {min}, got '{v}'")),
            }
        };
        let concurrency = get("concurrency")
            .unwrap_or("")
            .split(',')
            .map(|c| match c.trim().parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => Ok(n),
                _ => Err(format!("concurrency: expected numbers 1..1024, got '{c}'")),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let servers = match get("servers").unwrap_or("") {
            "all" => ALL_SERVERS,
            list => list,
        }
        .split(',')
        .map(|s| {
            let s = s.trim();
            Server::ALL
                .iter()
                .copied()
                .find(|k| k.name() == s)
                .ok_or_else(|| format!("servers: expected some of {ALL_SERVERS}, got '{s}'"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
        let sizes = get("sizes")
            .unwrap_or("")
            .split(',')
            .map(|v| {
                parse_size(v.trim()).ok_or_else(|| {
                    format!(
                        "sizes: expected sizes like 1k,100k,10m (at least 200 bytes), got '{v}'"
                    )
                })
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let recipients = get("recipients")
            .unwrap_or("")
            .split(',')
            .map(|v| {
                Recipients::parse(v.trim())
                    .ok_or_else(|| format!("recipients: expected 1-3 or numbers 1..500, got '{v}'"))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Options {
            concurrency,
            servers,
            sizes,
            recipients,
            reference_messages: number("reference-messages", 1)?,
            messages: number("messages", 1)?,
            warmup: number("warmup", 0)?,
            rounds: number("rounds", 1)?,
            spool: number("spool", 1)?,
            workers: number("workers", 1)?,
            store_messages: number("store-messages", 1)?,
            strict,
        })
    }
}

// =============================================================================================
// The floor: a do-nothing pre-forked responder (`bench floor --localstatedir DIR --name NAME
// --workers N`), started by the driver exactly like rustfilter.

fn floor_main(args: Vec<OsString>) -> ExitCode {
    let parsed = (|| -> std::result::Result<(PathBuf, String, usize, bool), lexopt::Error> {
        use lexopt::ValueExt;
        let mut parser = lexopt::Parser::from_args(args);
        let (mut lsd, mut name, mut workers) = (None, "floor".to_string(), 4usize);
        let mut io = false;
        while let Some(arg) = parser.next()? {
            match arg {
                lexopt::Arg::Long("io") => io = true,
                lexopt::Arg::Long("localstatedir") => lsd = Some(parser.value()?.into()),
                lexopt::Arg::Long("name") => name = parser.value()?.string()?,
                lexopt::Arg::Long("workers") => workers = parser.value()?.parse()?,
                other => return Err(other.unexpected()),
            }
        }
        let lsd = lsd.ok_or("--localstatedir is required")?;
        Ok((lsd, name, workers.max(1), io))
    })();
    let (lsd, name, workers, io) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bench floor: {e}");
            return ExitCode::from(64);
        }
    };
    match floor_serve(&lsd, &name, workers, io) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench floor: {e}");
            ExitCode::from(71)
        }
    }
}

fn floor_serve(lsd: &Path, name: &str, workers: usize, io: bool) -> Result<()> {
    let dir = lsd.join("allfilters");
    let dot = dir.join(format!(".{name}"));
    let socket = dir.join(name);
    for stale in [&dot, &socket] {
        match fs::remove_file(stale) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", stale.display())),
        }
    }
    // Same life cycle as rustfilter's: bind a dot-name, set the mode, rename into place.
    let listener = UnixListener::bind(&dot).or_fail(|| format!("cannot bind {}", dot.display()))?;
    fs::set_permissions(&dot, fs::Permissions::from_mode(0o660))
        .or_fail(|| format!("cannot chmod {}", dot.display()))?;
    fs::rename(&dot, &socket).or_fail(|| format!("cannot rename to {}", socket.display()))?;

    let mut pids = Vec::new();
    for _ in 0..workers {
        // SAFETY: this process is single-threaded here (fresh exec, no threads started), so
        // the child may keep running Rust code after fork.
        match unsafe { libc::fork() } {
            -1 => {
                let e = io::Error::last_os_error();
                stop_floor_workers(&pids);
                return Err(format!("fork failed: {e}"));
            }
            0 => {
                // SAFETY: closing our copy of the readiness pipe, and asking to die with the
                // master, are plain syscalls on this process.
                unsafe {
                    libc::close(3);
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                }
                let code = floor_worker(&listener, lsd, io);
                // SAFETY: leave the child without running the parent's exit handlers.
                unsafe { libc::_exit(code) }
            }
            pid => pids.push(pid),
        }
    }
    // SAFETY: fd 3 is the readiness pipe; closing it says "ready" (EBADF when run by hand).
    unsafe { libc::close(3) };

    let mut stdin = io::stdin();
    let mut buf = [0u8; 256];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = fs::remove_file(&socket);
    stop_floor_workers(&pids);
    Ok(())
}

fn stop_floor_workers(pids: &[libc::pid_t]) {
    for &pid in pids {
        // SAFETY: our own children.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    for &pid in pids {
        let mut status = 0;
        // SAFETY: reaping our own children.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
}

fn floor_worker(listener: &UnixListener, lsd: &Path, io: bool) -> i32 {
    let mut buf = Vec::with_capacity(4096);
    // The size of the light chain's accounting line.
    let mut line = [b'x'; 190];
    line[189] = b'\n';
    loop {
        let mut stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("bench floor worker: accept failed: {e}");
                return 1;
            }
        };
        let reply = match floor_handle(&mut stream, lsd, &mut buf) {
            Ok(()) if io => match floor_io(&buf, lsd) {
                Ok(()) => "200 Ok".to_string(),
                Err(e) => format!("451 bench floor: {e}"),
            },
            Ok(()) => "200 Ok".to_string(),
            Err(e) => format!("451 bench floor: {e}"),
        };
        let _ = stream.write_all(reply.as_bytes());
        drop(stream);
        if io {
            // SAFETY: one write(2) of a buffer we own to stderr.
            unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
        }
    }
}

/// Read the request and every control file; nothing else.
fn floor_handle(stream: &mut UnixStream, lsd: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.starts_with(b"\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if buf.len() > 1 << 20 {
            return Err(io::Error::other("request too long"));
        }
    }
    let text = std::str::from_utf8(buf).map_err(io::Error::other)?;
    for line in text.split('\n').skip(1).take_while(|l| !l.is_empty()) {
        let path = if line.starts_with('/') {
            PathBuf::from(line)
        } else {
            lsd.join("tmp").join(line)
        };
        fs::read(&path)?;
    }
    Ok(())
}

/// `--io`: what the light chain must do besides the floor's work (see the module comment).
fn floor_io(request: &[u8], lsd: &Path) -> io::Result<()> {
    let first = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let text = std::str::from_utf8(first).map_err(io::Error::other)?;
    let path = if text.starts_with('/') {
        PathBuf::from(text)
    } else {
        lsd.join("tmp").join(text)
    };
    let mut file = fs::File::open(&path)?;
    let size = file.metadata()?.len();
    let mut data = Vec::with_capacity(size as usize);
    (&mut file).take(size).read_to_end(&mut data)?;
    for _ in 0..2 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        std::hint::black_box(ts.tv_nsec);
    }
    Ok(())
}

// =============================================================================================
// The driver.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Floor,
    /// The floor plus the light chain's required system calls.
    FloorIo,
    Empty,
    Light,
    GreylistSqlite,
    LightGreylist,
    GreylistPg,
    GreylistNewSqlite,
    GreylistNewPg,
    /// The reference, courier-pythonfilter 3.0.6, with the same chains.
    PyNoop,
    PyLight,
    PyGreylist,
    PyLightGreylist,
    /// light + greylist (SQLite) + attachments, when rustfilter has the attachments module.
    LightGreylistAttach,
    PyLightGreylistAttach,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Sqlite,
    Postgres,
    /// pythonfilter's dbm TtlDb (GDBM with Debian's python3).
    Dbm,
}

/// What every reply of a run must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    /// greylist's reply to a triplet it has to wait for (a store failure is a different 451).
    Greylisted,
    OkOrGreylisted,
}

impl Expect {
    fn matches(self, reply: &[u8]) -> bool {
        match self {
            Expect::Ok => trim_reply(reply) == b"200 Ok",
            Expect::Greylisted => reply.starts_with(b"451 4.7.1 Greylisting in action"),
            Expect::OkOrGreylisted => {
                Expect::Ok.matches(reply) || Expect::Greylisted.matches(reply)
            }
        }
    }

    /// greylist's reply when the store failed (after the store's own retries).
    fn is_tempfail(reply: &[u8]) -> bool {
        reply.starts_with(b"451 4.3.0 Temporary failure in greylist")
    }
}

impl Server {
    const ALL: [Server; 15] = [
        Server::Floor,
        Server::FloorIo,
        Server::Empty,
        Server::Light,
        Server::GreylistSqlite,
        Server::LightGreylist,
        Server::GreylistPg,
        Server::GreylistNewSqlite,
        Server::GreylistNewPg,
        Server::PyNoop,
        Server::PyLight,
        Server::PyGreylist,
        Server::PyLightGreylist,
        Server::LightGreylistAttach,
        Server::PyLightGreylistAttach,
    ];

    /// The name in `--servers`.
    fn name(self) -> &'static str {
        match self {
            Server::Floor => "floor",
            Server::FloorIo => "floor+io",
            Server::Empty => "empty",
            Server::Light => "light",
            Server::GreylistSqlite => "greylist-sqlite",
            Server::LightGreylist => "light+greylist",
            Server::GreylistPg => "greylist-pg",
            Server::GreylistNewSqlite => "greylist-new-sqlite",
            Server::GreylistNewPg => "greylist-new-pg",
            Server::PyNoop => "pythonfilter-noop",
            Server::PyLight => "pythonfilter-light",
            Server::PyGreylist => "pythonfilter-greylist",
            Server::PyLightGreylist => "pythonfilter-light+greylist",
            Server::LightGreylistAttach => "light+greylist+attachments",
            Server::PyLightGreylistAttach => "pythonfilter-light+greylist+attachments",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Server::Floor => "floor",
            Server::FloorIo => "floor + required I/O",
            Server::Empty => "empty chain",
            Server::Light => "light chain",
            Server::GreylistSqlite => "greylist sqlite",
            Server::LightGreylist => "light+greylist sqlite",
            Server::GreylistPg => "greylist pg",
            Server::GreylistNewSqlite => "greylist sqlite, new triplets",
            Server::GreylistNewPg => "greylist pg, new triplets",
            Server::PyNoop => "pythonfilter noop",
            Server::PyLight => "pythonfilter light",
            Server::PyGreylist => "pythonfilter greylist dbm",
            Server::PyLightGreylist => "pythonfilter light+greylist dbm",
            Server::LightGreylistAttach => "light+greylist+attachments sqlite",
            Server::PyLightGreylistAttach => "pythonfilter light+greylist+attachm. dbm",
        }
    }

    /// One of the bench's own responders.
    fn is_floor(self) -> bool {
        matches!(self, Server::Floor | Server::FloorIo)
    }

    /// courier-pythonfilter 3.0.6 rather than rustfilter or the floor.
    fn is_reference(self) -> bool {
        matches!(
            self,
            Server::PyNoop
                | Server::PyLight
                | Server::PyGreylist
                | Server::PyLightGreylist
                | Server::PyLightGreylistAttach
        )
    }

    /// The reference server running the same chain.
    fn reference(self) -> Option<Server> {
        match self {
            Server::Empty => Some(Server::PyNoop),
            Server::Light => Some(Server::PyLight),
            Server::GreylistSqlite => Some(Server::PyGreylist),
            Server::LightGreylist => Some(Server::PyLightGreylist),
            Server::LightGreylistAttach => Some(Server::PyLightGreylistAttach),
            _ => None,
        }
    }

    /// The chain file it runs (not the floor).
    fn chain(self) -> &'static str {
        match self {
            Server::Floor | Server::FloorIo | Server::Empty | Server::PyNoop => "",
            Server::Light | Server::PyLight => LIGHT_CHAIN,
            Server::LightGreylist | Server::PyLightGreylist => LIGHT_GREYLIST_CHAIN,
            Server::LightGreylistAttach | Server::PyLightGreylistAttach => {
                LIGHT_GREYLIST_ATTACH_CHAIN
            }
            Server::GreylistSqlite
            | Server::GreylistPg
            | Server::GreylistNewSqlite
            | Server::GreylistNewPg
            | Server::PyGreylist => "greylist\n",
        }
    }

    fn store(self) -> Option<StoreKind> {
        match self {
            Server::Floor
            | Server::FloorIo
            | Server::Empty
            | Server::Light
            | Server::PyNoop
            | Server::PyLight => None,
            Server::PyGreylist | Server::PyLightGreylist | Server::PyLightGreylistAttach => {
                Some(StoreKind::Dbm)
            }
            Server::LightGreylistAttach => Some(StoreKind::Sqlite),
            Server::GreylistSqlite | Server::LightGreylist | Server::GreylistNewSqlite => {
                Some(StoreKind::Sqlite)
            }
            Server::GreylistPg | Server::GreylistNewPg => Some(StoreKind::Postgres),
        }
    }

    /// Every measured message is a triplet greylist has never seen.
    fn new_triplets(self) -> bool {
        matches!(self, Server::GreylistNewSqlite | Server::GreylistNewPg)
    }

    fn expect(self) -> Expect {
        if self.new_triplets() {
            Expect::Greylisted
        } else {
            Expect::Ok
        }
    }

    /// Messages per measured run. The new-triplets servers need a spool file pair per
    /// message, and creating and removing many files is slow on some file systems: a quarter.
    fn messages(self, opts: &Options) -> usize {
        if self.is_reference() && self.store().is_some() {
            // pythonfilter's dbm TtlDb syncs to disk at every unlock: tens of messages a
            // second.
            opts.reference_messages.div_ceil(REFERENCE_STORE_DIVISOR)
        } else if self.is_reference() {
            opts.reference_messages
        } else if self.new_triplets() {
            opts.store_messages.div_ceil(NEW_TRIPLETS_DIVISOR)
        } else if self.store().is_some() {
            opts.store_messages
        } else {
            opts.messages
        }
    }

    fn warmup(self, opts: &Options) -> usize {
        if self.is_reference() {
            opts.warmup.min(opts.reference_messages / 4)
        } else if self.new_triplets() {
            opts.warmup.div_ceil(NEW_TRIPLETS_DIVISOR)
        } else {
            opts.warmup
        }
    }
}

const NEW_TRIPLETS_DIVISOR: usize = 4;
const REFERENCE_STORE_DIVISOR: usize = 5;

const LIGHT_GREYLIST_CHAIN: &str =
    "noduplicates\nnosuccessdsn\nwhitelist_auth\ndeliveredto\ngreylist\n";
const LIGHT_GREYLIST_ATTACH_CHAIN: &str =
    "noduplicates\nnosuccessdsn\nwhitelist_auth\ndeliveredto\ngreylist\nattachments\n";

/// One measured run.
#[derive(Debug, Clone)]
struct Run {
    server: Server,
    /// Index into the variants (message size × recipients).
    variant: usize,
    concurrency: usize,
    round: usize,
    msgs_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// From schedstat (ns) when available; for the reference, from /proc/<pid>/stat (see
    /// `bench_server`).
    cpu_us: f64,
    /// From /proc/<pid>/stat utime+stime (clock ticks), for comparison.
    stat_us: f64,
    /// CPU of the PostgreSQL server processes serving the bench's database (NaN: SQLite or
    /// none); not part of `cpu_us`.
    store_us: f64,
    /// Replies `451 4.3.0 Temporary failure in greylist` (the store failed).
    tempfails: usize,
    driver_us: f64,
    rss_mib: f64,
    /// Pss summed over master + workers just before the stop (shared pages counted once).
    pss_mib: f64,
    ready_ms: f64,
}

/// One kind of traffic: data file size and recipients per message.
#[derive(Debug, Clone, Copy)]
struct Variant {
    size: usize,
    recipients: Recipients,
}

impl Variant {
    fn label(self) -> String {
        format!(
            "{} B × {} rcpt",
            size_label(self.size),
            self.recipients.label()
        )
    }

    /// Distinct messages in the spool: fewer when they are big (disk space, set-up time).
    fn spool_len(self, opts: &Options) -> usize {
        opts.spool
            .min((SPOOL_BYTES / self.size).max(10))
            .min((MAX_SPOOL_TRIPLETS / self.many_recipients()).max(10))
    }

    /// The recipient count when it is more than the default mix's 1-3, else 1: the greylist
    /// servers do a store lookup per recipient, so their runs are that much shorter.
    fn many_recipients(self) -> usize {
        match self.recipients {
            Recipients::Fixed(n) if n > 3 => n,
            _ => 1,
        }
    }

    /// Messages per measured run: fewer when they are big, so a run of 10 MB messages takes
    /// seconds, not minutes.
    fn messages(self, opts: &Options, server: Server) -> usize {
        let budget = if server.is_reference() {
            REFERENCE_RUN_BYTES
        } else {
            RUN_BYTES
        };
        let n = if server.store().is_some() {
            (server.messages(opts) * 2 / self.many_recipients()).max(20)
        } else {
            server.messages(opts)
        };
        n.min((budget / self.size).max(50))
    }

    fn warmup(self, opts: &Options, server: Server) -> usize {
        server.warmup(opts).min(self.messages(opts, server))
    }
}

/// With many recipients per message, the spool is cut to about this many triplets (each is
/// stored twice by the greylist servers before the measured runs).
const MAX_SPOOL_TRIPLETS: usize = 1000;
/// Spool size cap (bytes of data files) per variant.
const SPOOL_BYTES: usize = 256 << 20;
/// Data read per measured run, at most (rustfilter and the floor; the reference).
const RUN_BYTES: usize = 2 << 30;
const REFERENCE_RUN_BYTES: usize = 512 << 20;
/// The new-triplets servers need a spool file pair per message: only for small messages.
const NEW_TRIPLETS_MAX_SIZE: usize = 128 << 10;

struct Setup {
    scratch: Scratch,
    rustfilter: PathBuf,
    this_program: PathBuf,
    pg: Option<PgCluster>,
    /// The venv holding courier-pythonfilter 3.0.6, when reference servers run.
    venv: Option<PathBuf>,
}

/// The spooled messages of one variant; their directories are removed when dropped.
struct Spool {
    requests: Vec<Vec<u8>>,
    /// Distinct triplets for the new-triplets servers (each used once per server start).
    new_requests: Vec<Vec<u8>>,
    messages: Vec<(SpoolMessage, u64)>,
    dirs: Vec<PathBuf>,
}

impl Spool {
    fn build(setup: &Setup, opts: &Options, index: usize, variant: Variant) -> Result<Spool> {
        let mut spool = Spool {
            requests: Vec::new(),
            new_requests: Vec::new(),
            messages: Vec::new(),
            dirs: Vec::new(),
        };
        let n = variant.spool_len(opts);
        for i in 0..n as u64 {
            spool.add(setup, index, variant, i)?;
        }
        // The new-triplets servers use each of these once per start: warm-up, then every run.
        let new_count = if variant.size <= NEW_TRIPLETS_MAX_SIZE
            && opts.servers.iter().any(|s| s.new_triplets())
        {
            variant.warmup(opts, Server::GreylistNewSqlite)
                + variant.messages(opts, Server::GreylistNewSqlite) * opts.concurrency.len()
        } else {
            0
        };
        for i in 0..new_count as u64 {
            spool.add(setup, index, variant, NEW_TRIPLETS_BASE + i)?;
        }
        let requests: Vec<Vec<u8>> = spool.messages.iter().map(|(m, _)| m.request()).collect();
        spool.new_requests = requests[n..].to_vec();
        spool.requests = requests[..n].to_vec();
        Ok(spool)
    }

    fn add(&mut self, setup: &Setup, index: usize, variant: Variant, i: u64) -> Result<()> {
        let (data, control) = bench_message(i, variant.size, variant.recipients);
        let dir = format!("{}", 180_000 + index as u64 * 100_000 + i / 100);
        let msg = SpoolMessage::write(&setup.scratch.localstatedir, &dir, i, ME, &data, &control)?;
        let dir = setup.scratch.localstatedir.join("tmp").join(dir);
        if self.dirs.last() != Some(&dir) {
            self.dirs.push(dir);
        }
        self.messages.push((msg, control.len() as u64));
        Ok(())
    }

    /// The traffic must be steady-state: no control file may have changed.
    fn check_unchanged(&self) -> Result<()> {
        for (msg, len) in &self.messages {
            let now = fs::metadata(&msg.controls[0])
                .or_fail(|| format!("cannot stat {}", msg.controls[0].display()))?
                .len();
            if now != *len {
                return Err(format!(
                    "{} changed during the bench ({len} -> {now} bytes)",
                    msg.controls[0].display()
                ));
            }
        }
        Ok(())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = fs::remove_dir_all(d);
        }
    }
}

fn run(opts: &Options) -> Result<bool> {
    // Only build rustfilter when it is to be measured.
    let rustfilter = if opts
        .servers
        .iter()
        .any(|&s| !s.is_floor() && !s.is_reference())
    {
        common::rustfilter_binary()?
    } else {
        PathBuf::new()
    };
    let this_program =
        std::env::current_exe().or_fail(|| "cannot find this program's path".into())?;
    let scratch = Scratch::new("rustfilter-bench-")?;
    let etc = &scratch.sysconfdir;
    common::write_file(&etc.join("me"), format!("{ME}\n").as_bytes())?;
    common::write_file(&etc.join("locals"), b"localhost\nbench.example\n")?;
    common::write_file(&etc.join("defaultdomain"), b"bench.example\n")?;
    common::write_file(
        &etc.join("empty.conf"),
        b"# no modules: every message gets 200 Ok\n",
    )?;
    common::write_file(&etc.join("light.conf"), LIGHT_CHAIN.as_bytes())?;
    common::write_file(&etc.join("modules.conf"), b"")?;
    for &server in &opts.servers {
        if server.store().is_some() && !server.is_reference() {
            common::write_file(
                &etc.join(format!("{}.conf", server.name())),
                server.chain().as_bytes(),
            )?;
        }
    }

    let mut servers = opts.servers.clone();
    if servers.contains(&Server::LightGreylistAttach)
        && let Err(why) = chain_accepted(&rustfilter, &scratch, LIGHT_GREYLIST_ATTACH_CHAIN)
    {
        println!("attachments rows skipped: {why}\n");
        servers.retain(|s| s.chain() != LIGHT_GREYLIST_ATTACH_CHAIN);
    }
    let mut pg = None;
    if servers
        .iter()
        .any(|s| s.store() == Some(StoreKind::Postgres))
    {
        match PgCluster::prepare() {
            Ok(cluster) => pg = Some(cluster),
            Err(why) => {
                println!("PostgreSQL rows skipped: {why}\n");
                servers.retain(|s| s.store() != Some(StoreKind::Postgres));
            }
        }
    }
    let mut venv = None;
    if servers.iter().any(|s| s.is_reference()) {
        match reference_venv() {
            Ok(v) => venv = Some(v),
            Err(why) => {
                println!("pythonfilter rows skipped: {why}\n");
                servers.retain(|s| !s.is_reference());
            }
        }
    }
    let opts = &Options {
        servers,
        ..opts.clone()
    };
    let setup = Setup {
        scratch,
        rustfilter,
        this_program,
        pg,
        venv,
    };
    let variants: Vec<Variant> = opts
        .sizes
        .iter()
        .flat_map(|&size| {
            opts.recipients
                .iter()
                .map(move |&recipients| Variant { size, recipients })
        })
        .collect();

    println!("rustfilter bench");
    println!("================");
    println!(
        "machine: {} CPUs, {}; clock ticks {} Hz",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel(),
        common::clock_ticks_per_second()
    );
    println!(
        "traffic: {} (data file size × recipients per message); spool of up to {} distinct \
         messages per variant in {}",
        variants
            .iter()
            .map(|v| v.label())
            .collect::<Vec<_>>()
            .join(", "),
        opts.spool,
        setup.scratch.path().display()
    );
    println!(
        "each run: {} workers (rustfilter, floor), {} warm-up messages after start, then {} \
         measured messages ({} for pythonfilter; fewer for big messages) at concurrency {}; {} \
         interleaved rounds",
        opts.workers,
        opts.warmup,
        opts.messages,
        opts.reference_messages,
        opts.concurrency
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" and "),
        opts.rounds
    );
    println!("light chain: {}", LIGHT_CHAIN.trim().replace('\n', ", "));
    if let Some(v) = &setup.venv {
        println!(
            "reference: courier-pythonfilter 3.0.6 from {} (one thread per connection; greylist \
             on its dbm TtlDb, GDBM)",
            v.display()
        );
    }
    if opts.servers.iter().any(|s| s.store().is_some()) {
        println!(
            "greylist servers: greylist_time = 0, a fresh store per start (SQLite in the temp \
             dir{}); {} messages per measured run. Passed traffic: the spool's triplets are sent \
             twice first (451, then promoted). New triplets: {} messages per measured run, each \
             sent once per start.",
            match &setup.pg {
                Some(pg) => format!(
                    ", PostgreSQL a new database on 127.0.0.1:{}{}",
                    pg_port(),
                    if pg.started_by_us {
                        ", cluster started by the bench"
                    } else {
                        ""
                    }
                ),
                None => String::new(),
            },
            opts.store_messages,
            Server::GreylistNewSqlite.messages(opts),
        );
    }
    println!();

    let mut runs = Vec::new();
    let started = Instant::now();
    for (index, &variant) in variants.iter().enumerate() {
        let spool = Spool::build(&setup, opts, index, variant)?;
        let servers: Vec<Server> = opts
            .servers
            .iter()
            .copied()
            .filter(|s| !s.new_triplets() || !spool.new_requests.is_empty())
            .collect();
        for round in 0..opts.rounds {
            // Rotate the order so no server always runs first (caches, CPU frequency).
            for k in 0..servers.len() {
                let server = servers[(k + round) % servers.len()];
                common::check_interrupted()?;
                runs.extend(bench_server(
                    &setup, &spool, opts, server, index, variant, round,
                )?);
            }
        }
        spool.check_unchanged()?;
    }
    println!("\nall runs took {:.1} s", started.elapsed().as_secs_f64());

    let met = print_table(opts, &variants, &runs);
    if let Some(pg) = &setup.pg
        && pg.started_by_us
    {
        println!("stopping the PostgreSQL cluster the bench started");
    }
    drop(setup);
    Ok(met || !opts.strict)
}

/// Whether rustfilter accepts a chain (`rustfilter check-config`): a module may not exist
/// yet in the binary measured.
fn chain_accepted(
    rustfilter: &Path,
    scratch: &Scratch,
    chain: &str,
) -> std::result::Result<(), String> {
    let dir = scratch.path().join("check-config");
    let db = dir.join("db");
    fs::create_dir_all(&db).map_err(|e| format!("cannot create {}: {e}", db.display()))?;
    common::write_file(&dir.join("chain.conf"), chain.as_bytes())?;
    common::write_file(
        &dir.join("modules.conf"),
        format!(
            "[ttldb]\ntype = 'sqlite'\ndir = '{}'\n\n[greylist]\ngreylist_time = 0\n",
            db.display()
        )
        .as_bytes(),
    )?;
    let out = std::process::Command::new(rustfilter)
        .arg("check-config")
        .arg("--config")
        .arg(dir.join("chain.conf"))
        .arg("--modules-config")
        .arg(dir.join("modules.conf"))
        .arg("--sysconfdir")
        .arg(&scratch.sysconfdir)
        .arg("--localstatedir")
        .arg(&scratch.localstatedir)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rustfilter.display()))?;
    let _ = fs::remove_dir_all(&dir);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "rustfilter check-config refuses the chain ({}): {}",
            chain.trim().replace('\n', ", "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The venv with courier-pythonfilter 3.0.6, made (once) by tools/pythonfilter-ref.sh.
fn reference_venv() -> std::result::Result<PathBuf, String> {
    let script = reference_script();
    let mut cmd = std::process::Command::new(&script);
    cmd.arg("install");
    if let Some(dir) = std::env::var_os("BENCH_PYTHONFILTER_VENV").filter(|d| !d.is_empty()) {
        cmd.arg(dir);
    }
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} install failed ({})",
            script.display(),
            out.status
        ));
    }
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let venv = PathBuf::from(path);
    if !venv.join("bin/pythonfilter").is_file() {
        return Err(format!(
            "{} install printed '{}', which has no bin/pythonfilter",
            script.display(),
            venv.display()
        ));
    }
    Ok(venv)
}

fn reference_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/pythonfilter-ref.sh")
}

/// The new-triplets spool numbers its messages from here (distinct senders and files).
const NEW_TRIPLETS_BASE: u64 = 1_000_000;

fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!("Linux {}", k.trim()))
        .unwrap_or_else(|_| "Linux".into())
}

/// A message of about `size` bytes and its control file, as Courier writes them for ESMTP
/// mail.
fn bench_message(i: u64, size: usize, recipients: Recipients) -> (Vec<u8>, Vec<u8>) {
    let ip = format!("192.0.{}.{}", 2 + (i / 250) % 50, 1 + i % 250);
    let sender = format!("sender{i}@example{}.org", i % 37);
    let nrcpt = recipients.of_message(i);
    let rcpts: Vec<String> = (0..nrcpt)
        .map(|k| format!("user{}@bench.example", (i * 7 + k as u64) % 1000))
        .collect();
    let id = format!("00000000000{:05X}.000000006B0736B7.{:08X}", i, 0x3819 + i);
    let mut data = format!(
        "Received: from mx{0}.example{1}.org (mx{0}.example{1}.org [::ffff:{ip}])\n  \
         by {ME} with ESMTP; Tue, 25 Nov 2025 10:00:00 +0100\n  id {id}\n\
         Received: from [10.1.2.3] (workstation.example{1}.org [10.1.2.3])\n  \
         by mx{0}.example{1}.org with ESMTPSA id {i}; Tue, 25 Nov 2025 09:59:58 +0100\n",
        i % 5,
        i % 37
    );
    if i % 10 == 3 {
        // Mailing-list traffic carries someone else's Delivered-To (not a local domain).
        data.push_str("Delivered-To: list-owner@lists.example.net\n");
    }
    data.push_str(&format!(
        "From: \"Sender {i}\" <{sender}>\nTo: {}\nSubject: Quarterly report, part {i}\n\
         Date: Tue, 25 Nov 2025 09:59:58 +0100\nMessage-ID: <bench-{i}@example{}.org>\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: 8bit\n\n",
        rcpts
            .iter()
            .map(|r| format!("<{r}>"))
            .collect::<Vec<_>>()
            .join(",\n "),
        i % 37
    ));
    let line = "The quick brown fox jumps over the lazy dog, again and again.\n";
    let target = size.saturating_sub(24) + (i % 7) as usize * 20;
    data.reserve(target.saturating_sub(data.len()) + line.len());
    while data.len() < target {
        data.push_str(line);
    }
    let mut control = format!(
        "s{sender}\nfdns; mx{}.example{}.org ([::ffff:{ip}])\ne\nt\nM{id}\n",
        i % 5,
        i % 37
    );
    for r in &rcpts {
        control.push_str(&format!("r{r}\nR\nN\n"));
    }
    control.push_str(&format!(
        "OTCPREMOTEIP=::ffff:{ip}\nuauthsmtp\nE1796239671\np1795663671\nW1795649271\n"
    ));
    (data.into_bytes(), control.into_bytes())
}

/// Start one server, warm it up, measure each concurrency, stop it.
#[allow(clippy::too_many_arguments)]
fn bench_server(
    setup: &Setup,
    spool: &Spool,
    opts: &Options,
    server: Server,
    variant_index: usize,
    variant: Variant,
    round: usize,
) -> Result<Vec<Run>> {
    let s = &setup.scratch;
    let tag = format!("{}-{variant_index}-{round}", server.name());
    let log = s.path().join(format!("{tag}.log"));
    let workers = opts.workers.to_string();
    // A fresh store for each start: SQLite or dbm in a directory of its own, PostgreSQL a new
    // database (dropped when `store` goes).
    let mut modules_conf = s.sysconfdir.join("modules.conf");
    let mut store: Option<FreshStore> = None;
    if let Some(kind) = server.store() {
        let fresh = FreshStore::new(setup, kind, &tag)?;
        if !server.is_reference() {
            modules_conf = s.sysconfdir.join(format!("modules-{tag}.conf"));
            common::write_file(
                &modules_conf,
                format!("{}[greylist]\ngreylist_time = 0\n", fresh.ttldb_section()).as_bytes(),
            )?;
        }
        store = Some(fresh);
    }
    let (program, name, args): (&Path, &str, Vec<OsString>) = match server {
        Server::Floor | Server::FloorIo => {
            let mut args: Vec<OsString> = vec![
                "floor".into(),
                "--localstatedir".into(),
                s.localstatedir.clone().into(),
                "--name".into(),
                "floor".into(),
                "--workers".into(),
                workers.into(),
            ];
            if server == Server::FloorIo {
                args.push("--io".into());
            }
            (&setup.this_program, "floor", args)
        }
        _ if server.is_reference() => {
            let venv = setup
                .venv
                .as_ref()
                .ok_or_else(|| "no pythonfilter venv".to_string())?;
            // Its two config files, which the launcher mounts where pythonfilter looks.
            let confdir = s.path().join(format!("pythonfilter-{tag}"));
            common::write_file(
                &confdir.join("pythonfilter.conf"),
                server.chain().as_bytes(),
            )?;
            let modules = match &store {
                Some(st) => format!("{}[greylist.py]\ngreylist_time = 0\n", st.ttldb_section()),
                None => String::new(),
            };
            common::write_file(
                &confdir.join("pythonfilter-modules.conf"),
                modules.as_bytes(),
            )?;
            (
                REFERENCE_SCRIPT.get_or_init(reference_script),
                "pythonfilter",
                vec![
                    "run".into(),
                    venv.clone().into(),
                    s.sysconfdir.clone().into(),
                    s.localstatedir.clone().into(),
                    confdir.into(),
                ],
            )
        }
        _ => {
            let chain = match server {
                Server::Empty => "empty.conf".to_string(),
                Server::Light => "light.conf".to_string(),
                other => format!("{}.conf", other.name()),
            };
            (
                &setup.rustfilter,
                "rustfilter",
                vec![
                    "--name".into(),
                    "rustfilter".into(),
                    "--config".into(),
                    s.sysconfdir.join(chain).into(),
                    "--modules-config".into(),
                    modules_conf.clone().into(),
                    "--sysconfdir".into(),
                    s.sysconfdir.clone().into(),
                    "--localstatedir".into(),
                    s.localstatedir.clone().into(),
                    "--workers".into(),
                    workers.into(),
                ],
            )
        }
    };
    let socket = s.socket(name);
    let mut daemon = Daemon::start(program, &args, &log, Duration::from_secs(30))?;
    let ready_ms = daemon.ready_after.as_secs_f64() * 1000.0;
    let initial_workers = daemon.workers();
    if !server.is_reference() && initial_workers.len() < opts.workers {
        return Err(format!(
            "{}: expected {} workers after readiness, found {:?}",
            server.label(),
            opts.workers,
            initial_workers
        ));
    }
    let max_c = opts.concurrency.iter().copied().max().unwrap_or(1);
    let mut offset = 0usize;
    let expect = server.expect();
    let requests = if server.new_triplets() {
        &spool.new_requests
    } else {
        &spool.requests
    };
    if server.store().is_some() && !server.new_triplets() {
        // The steady state of a greylisting host: every triplet is known and has passed.
        // greylist_time = 0, so the first sight is greylisted and the second promotes it. A
        // triplet whose first sight met a store failure is only stored by the second pass;
        // the warm-up then promotes it.
        for (pass, expect) in [
            ("first sight", Expect::Greylisted),
            ("promotion", Expect::OkOrGreylisted),
        ] {
            drive(&socket, requests, 0, requests.len(), max_c, expect, true).map_err(|e| {
                format!(
                    "{} pre-population ({pass}): {e}{}",
                    server.label(),
                    log_hint(&daemon)
                )
            })?;
        }
    }
    // A store failure is a possible outcome under load (PostgreSQL serialization conflicts):
    // counted and reported, not a bench failure, once the store is filled.
    let tolerate = server.store().is_some();
    let warmup = variant.warmup(opts, server);
    if warmup > 0 {
        drive(&socket, requests, offset, warmup, max_c, expect, tolerate)
            .map_err(|e| format!("{} warm-up: {e}{}", server.label(), log_hint(&daemon)))?;
        offset += warmup;
    }
    let messages = variant.messages(opts, server);
    let mut runs = Vec::new();
    for &c in &opts.concurrency {
        let store0 = match &mut store {
            Some(st) => st.backend_cpu()?,
            None => None,
        };
        let cpu0 = common::tree_cpu(daemon.pid())?;
        let me0 = common::own_cpu();
        let t0 = Instant::now();
        let (latencies, tempfails) =
            drive(&socket, requests, offset, messages, c, expect, tolerate)
                .map_err(|e| format!("{} C={c}: {e}{}", server.label(), log_hint(&daemon)))?;
        let wall = t0.elapsed();
        let me1 = common::own_cpu();
        let cpu1 = common::tree_cpu(daemon.pid())?;
        let store1 = match &mut store {
            Some(st) => st.backend_cpu()?,
            None => None,
        };
        offset += messages;
        if sorted(cpu0.children.clone()) != sorted(cpu1.children.clone()) {
            return Err(format!(
                "{} C={c}: the worker set changed during the run ({:?} -> {:?}); a worker \
                 exited or was respawned{}",
                server.label(),
                cpu0.children,
                cpu1.children,
                log_hint(&daemon)
            ));
        }
        let n = messages as f64;
        let store_us = match (store0, store1) {
            (Some(before), Some(after)) => {
                // A worker that gave up on a transaction reconnects: the old server process's
                // last CPU time is then lost, and only the new one's counts.
                let mut ns = 0u64;
                for (pid, t1) in &after {
                    let t0 = before.iter().find(|(p, _)| p == pid).map_or(0, |(_, t)| *t);
                    ns += t1.saturating_sub(t0);
                }
                ns as f64 / 1000.0 / n
            }
            _ => f64::NAN,
        };
        let pct = |p: f64| {
            let idx = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len());
            latencies[idx - 1] as f64 / 1000.0
        };
        let stat_us = cpu1.stat.saturating_sub(cpu0.stat).as_secs_f64() * 1e6 / n;
        // pythonfilter runs a thread per connection: the per-thread schedstat of a finished
        // thread is gone, while /proc/<pid>/stat keeps the time of the process's dead threads.
        let cpu_us = if server.is_reference() {
            stat_us
        } else {
            cpu1.best().saturating_sub(cpu0.best()).as_secs_f64() * 1e6 / n
        };
        let run = Run {
            server,
            variant: variant_index,
            concurrency: c,
            round,
            msgs_per_sec: n / wall.as_secs_f64(),
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            max_ms: latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
            cpu_us,
            stat_us,
            store_us,
            tempfails,
            driver_us: me1.saturating_sub(me0).as_secs_f64() * 1e6 / n,
            rss_mib: 0.0,
            pss_mib: 0.0,
            ready_ms,
        };
        runs.push(run);
    }
    let mut rss_kib = common::peak_rss_kib(daemon.pid())?;
    let mut pss_kib = common::pss_kib(daemon.pid())?;
    for w in daemon.workers() {
        rss_kib += common::peak_rss_kib(w).unwrap_or(0);
        pss_kib += common::pss_kib(w).unwrap_or(0);
    }
    for r in &mut runs {
        r.rss_mib = rss_kib as f64 / 1024.0;
        r.pss_mib = pss_kib as f64 / 1024.0;
    }
    let (status, _) = daemon.stop(Duration::from_secs(15))?;
    if !status.success() {
        return Err(format!(
            "{} exited with {status} on stdin EOF{}",
            server.label(),
            log_hint(&daemon)
        ));
    }
    if socket.exists() {
        return Err(format!(
            "{} left its socket {} behind",
            server.label(),
            socket.display()
        ));
    }
    for r in &runs {
        println!(
            "round {}/{}  {:<14} {:<31}  C={:<3} {:>8.0} msg/s  p50 {:>7.2} ms  p99 {:>7.2} ms  \
             daemon {:>7.1} µs/msg (stat {:>7.1})  driver {:>6.1} µs/msg{}{}",
            round + 1,
            opts.rounds,
            variant.label(),
            server.label(),
            r.concurrency,
            r.msgs_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.cpu_us,
            r.stat_us,
            r.driver_us,
            if r.store_us.is_nan() {
                String::new()
            } else {
                format!("  postgres {:>6.1} µs/msg", r.store_us)
            },
            if r.tempfails > 0 {
                format!("  {} store failures (451 4.3.0)", r.tempfails)
            } else {
                String::new()
            }
        );
    }
    drop(daemon);
    // The logs hold a line per message; keep the scratch dir small.
    let _ = fs::remove_file(&log);
    Ok(runs)
}

static REFERENCE_SCRIPT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

// =============================================================================================
// The stores of the greylist servers.

/// The throwaway PostgreSQL cluster: found running, or started by the bench (and then stopped
/// when this is dropped).
struct PgCluster {
    started_by_us: bool,
    script: PathBuf,
}

static NEXT_PG_DB: AtomicUsize = AtomicUsize::new(1);

impl PgCluster {
    /// Connect to the cluster, starting it when it is not running. `Err` says why the
    /// PostgreSQL rows cannot be measured.
    fn prepare() -> std::result::Result<PgCluster, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/services/postgres.sh");
        let mut cluster = PgCluster {
            started_by_us: false,
            script,
        };
        if PgBackend::connect(&superuser()).is_err() {
            let pgbin = std::env::var_os("PGBIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
            if !pgbin.join("postgres").exists() {
                return Err(format!(
                    "PostgreSQL 15 is not installed ({} is missing; tests/services/install-deps.sh \
                     installs it)",
                    pgbin.join("postgres").display()
                ));
            }
            let out = std::process::Command::new(&cluster.script)
                .args(["start", &pg_dir(), &pg_port().to_string()])
                .output()
                .map_err(|e| format!("cannot run {}: {e}", cluster.script.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "{} start failed: {}",
                    cluster.script.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            cluster.started_by_us = true;
        }
        let mut su = PgBackend::connect(&superuser()).map_err(|e| {
            format!(
                "cannot connect to the cluster in {} as postgres: {e}",
                pg_dir()
            )
        })?;
        // Databases left by a bench that was killed (its pid is gone).
        let rows = su
            .simple_query(&format!(
                "SELECT datname FROM pg_database WHERE datname LIKE '{PG_DB_PREFIX}%'"
            ))
            .map_err(|e| format!("cannot list databases: {e}"))?;
        for name in rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
        {
            let pid = name
                .strip_prefix(PG_DB_PREFIX)
                .and_then(|rest| rest.split('_').next())
                .and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !common::process_alive(p)) {
                let _ = su.simple_query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
        Ok(cluster)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.started_by_us {
            match std::process::Command::new(&self.script)
                .args(["stop", &pg_dir(), &pg_port().to_string()])
                .output()
            {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "bench: {} stop failed: {}",
                    self.script.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Err(e) => eprintln!("bench: cannot run {}: {e}", self.script.display()),
            }
        }
    }
}

/// The superuser over the cluster's UNIX socket (trust): creates and drops the databases.
fn superuser() -> PgConfig {
    PgConfig {
        host: pg_dir(),
        port: pg_port(),
        db: "postgres".into(),
        user: "postgres".into(),
        password: String::new(),
    }
}

/// An empty store for one server start, removed when dropped.
enum FreshStore {
    Sqlite(PathBuf),
    /// pythonfilter's dbm TtlDb directory.
    Dbm(PathBuf),
    Postgres {
        su: Box<PgBackend>,
        db: String,
    },
}

impl FreshStore {
    fn new(setup: &Setup, kind: StoreKind, tag: &str) -> Result<FreshStore> {
        match kind {
            StoreKind::Sqlite | StoreKind::Dbm => {
                let dir = setup.scratch.path().join(format!("db-{tag}"));
                fs::create_dir_all(&dir).or_fail(|| format!("cannot create {}", dir.display()))?;
                Ok(if kind == StoreKind::Dbm {
                    FreshStore::Dbm(dir)
                } else {
                    FreshStore::Sqlite(dir)
                })
            }
            StoreKind::Postgres => {
                if setup.pg.is_none() {
                    return Err("no PostgreSQL cluster".into());
                }
                let mut su = PgBackend::connect(&superuser())
                    .map_err(|e| format!("cannot connect to PostgreSQL as postgres: {e}"))?;
                let db = format!(
                    "{PG_DB_PREFIX}{}_{}",
                    std::process::id(),
                    NEXT_PG_DB.fetch_add(1, Ordering::Relaxed)
                );
                su.simple_query(&format!("CREATE DATABASE {db} OWNER {PG_USER}"))
                    .map_err(|e| format!("cannot create the database {db}: {e}"))?;
                Ok(FreshStore::Postgres {
                    su: Box::new(su),
                    db,
                })
            }
        }
    }

    fn ttldb_section(&self) -> String {
        match self {
            FreshStore::Sqlite(dir) => {
                format!("[ttldb]\ntype = 'sqlite'\ndir = '{}'\n\n", dir.display())
            }
            FreshStore::Dbm(dir) => {
                format!("[ttldb]\ntype = 'dbm'\ndir = '{}'\n\n", dir.display())
            }
            // TCP, as from a mail host to a shared database server.
            FreshStore::Postgres { db, .. } => format!(
                "[ttldb]\ntype = 'postgresql'\nhost = '127.0.0.1'\nport = {}\n\
                 db = '{db}'\nuser = '{PG_USER}'\npassword = '{PG_PASSWORD}'\n\n",
                pg_port()
            ),
        }
    }

    /// PostgreSQL: the server processes connected to this database, each with its CPU time
    /// (ns).
    fn backend_cpu(&mut self) -> Result<Option<Vec<(u32, u64)>>> {
        let FreshStore::Postgres { su, db } = self else {
            return Ok(None);
        };
        let rows = su
            .simple_query(&format!(
                "SELECT pid FROM pg_stat_activity WHERE datname = '{db}' ORDER BY pid"
            ))
            .map_err(|e| format!("cannot list the connections to {db}: {e}"))?;
        let pids: Vec<u32> = rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .filter_map(|p| p.parse().ok())
            .collect();
        let mut cpu = Vec::new();
        for pid in pids {
            // A connection may close between the query and the reading.
            if let Ok(t) = common::tree_cpu(pid) {
                cpu.push((pid, t.best().as_nanos() as u64));
            }
        }
        Ok(Some(cpu))
    }
}

impl Drop for FreshStore {
    fn drop(&mut self) {
        match self {
            FreshStore::Sqlite(dir) | FreshStore::Dbm(dir) => {
                let _ = fs::remove_dir_all(dir);
            }
            FreshStore::Postgres { su, db } => {
                if let Err(e) =
                    su.simple_query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                {
                    eprintln!("bench: cannot drop the database {db}: {e}");
                }
            }
        }
    }
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v
}

fn log_hint(daemon: &Daemon) -> String {
    if common::interrupted() {
        return String::new();
    }
    let text = daemon.log_text();
    // The per-message accounting lines say nothing about a failure.
    let tail: Vec<&str> = text
        .lines()
        .rev()
        .filter(|l| !l.starts_with("CPU TIME ACCOUNTING"))
        .take(8)
        .collect();
    if tail.is_empty() {
        String::new()
    } else {
        let lines: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "; the daemon's log ends with:\n    {}",
            lines.join("\n    ")
        )
    }
}

/// Send `count` requests over `concurrency` client threads; every reply must be `expect`.
/// A greylist store failure (`tempfail`, see `Expect::is_tempfail`) is counted instead when
/// `tolerate_tempfail`. Returns the sorted latencies in microseconds (connect to EOF), and the
/// count of tempfails.
fn drive(
    socket: &Path,
    requests: &[Vec<u8>],
    offset: usize,
    count: usize,
    concurrency: usize,
    expect: Expect,
    tolerate_tempfail: bool,
) -> Result<(Vec<u32>, usize)> {
    let tempfails = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    let mut all: Vec<u32> = Vec::with_capacity(count);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..concurrency)
            .map(|_| {
                scope.spawn(|| {
                    let mut lat = Vec::with_capacity(count / concurrency + 1);
                    let mut reply = Vec::with_capacity(64);
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= count || failed.load(Ordering::Relaxed) {
                            break;
                        }
                        if common::interrupted() {
                            fail(&failed, &first_error, "interrupted".into());
                            break;
                        }
                        let req = &requests[(offset + k) % requests.len()];
                        let t = Instant::now();
                        let result = common::exchange(socket, req, REPLY_TIMEOUT, &mut reply);
                        let us = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
                        match result {
                            Ok(()) if expect.matches(&reply) => lat.push(us),
                            Ok(()) if tolerate_tempfail && Expect::is_tempfail(&reply) => {
                                tempfails.fetch_add(1, Ordering::Relaxed);
                                lat.push(us);
                            }
                            Ok(()) => {
                                let text = String::from_utf8_lossy(&reply).into_owned();
                                fail(&failed, &first_error, format!("unexpected reply {text:?}"));
                                break;
                            }
                            Err(e) => {
                                fail(&failed, &first_error, format!("request failed: {e}"));
                                break;
                            }
                        }
                    }
                    lat
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(lat) => all.extend(lat),
                Err(_) => fail(&failed, &first_error, "a client thread panicked".into()),
            }
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    all.sort_unstable();
    Ok((all, tempfails.into_inner()))
}

fn fail(flag: &AtomicBool, slot: &Mutex<Option<String>>, e: String) {
    flag.store(true, Ordering::Relaxed);
    let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
    guard.get_or_insert(e);
}

fn trim_reply(reply: &[u8]) -> &[u8] {
    let mut end = reply.len();
    while end > 0 && (reply[end - 1] == b'\n' || reply[end - 1] == b'\r') {
        end -= 1;
    }
    &reply[..end]
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The median over the rounds of `f(run of a) / f(run of b)`, pairing runs of the same round,
/// variant and concurrency: they ran minutes apart at most, so they share the machine's mood.
fn paired_ratio(
    runs: &[Run],
    a: Server,
    b: Server,
    variant: usize,
    c: usize,
    f: fn(&Run) -> f64,
) -> f64 {
    let find = |s: Server, round: usize| {
        runs.iter().find(|r| {
            r.server == s && r.variant == variant && r.concurrency == c && r.round == round
        })
    };
    median(
        runs.iter()
            .filter(|r| r.server == a && r.variant == variant && r.concurrency == c)
            .filter_map(|r| find(b, r.round).map(|o| f(r) / f(o)))
            .filter(|x| x.is_finite())
            .collect(),
    )
}

/// A ratio to the reference: 3 significant digits, so 0.0213× and 47.2× both read well.
fn fmt_ratio(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x >= 100.0 {
        format!("{x:.0}×")
    } else if x >= 10.0 {
        format!("{x:.1}×")
    } else if x >= 1.0 {
        format!("{x:.2}×")
    } else {
        let digits = (2.0 - x.log10().floor()).clamp(2.0, 6.0) as usize;
        format!("{x:.digits$}×")
    }
}

/// Print the medians, with the ratio of each rustfilter chain to the reference running the
/// same chain, then the verdicts on issue 8's targets; returns whether every target checked
/// was met.
fn print_table(opts: &Options, variants: &[Variant], runs: &[Run]) -> bool {
    println!(
        "\nMedians over {} round(s), {} messages per run ({} for the greylist servers, {} with \
         new triplets, {} for pythonfilter; fewer for big messages). \"÷ reference\" rows: \
         rustfilter's figure divided by pythonfilter's, per round, median.\n",
        opts.rounds,
        opts.messages,
        opts.store_messages,
        Server::GreylistNewSqlite.messages(opts),
        opts.reference_messages,
    );
    let header = [
        "size",
        "rcpt",
        "server",
        "C",
        "msgs/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "CPU µs/msg",
        "× floor",
        "stat µs/msg",
        "PG µs/msg",
        "451 4.3.0",
        "peak RSS MiB",
        "PSS MiB",
        "ready ms",
        "driver µs/msg",
        "driver CPUs",
    ];
    println!("| {} |", header.join(" | "));
    println!(
        "|{}|",
        header
            .iter()
            .enumerate()
            .map(|(i, _)| if i <= 2 { " --- " } else { " ---: " })
            .collect::<Vec<_>>()
            .join("|")
    );
    // Each rustfilter chain, then the reference with the same chain, then their ratios.
    let mut order: Vec<Server> = Vec::new();
    for &s in opts.servers.iter().filter(|s| !s.is_reference()) {
        order.push(s);
        if let Some(r) = s.reference().filter(|r| opts.servers.contains(r)) {
            order.push(r);
        }
    }
    for &s in opts.servers.iter().filter(|s| s.is_reference()) {
        if !order.contains(&s) {
            order.push(s);
        }
    }
    let mut met = true;
    let mut verdicts = Vec::new();
    for (vi, variant) in variants.iter().enumerate() {
        let vlabel = format!(
            "| {} | {} ",
            size_label(variant.size),
            variant.recipients.label()
        );
        for &c in &opts.concurrency {
            for &server in &order {
                let mine: Vec<&Run> = runs
                    .iter()
                    .filter(|r| r.server == server && r.variant == vi && r.concurrency == c)
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let col = |f: fn(&Run) -> f64| median(mine.iter().map(|r| f(r)).collect());
                let floor_ratio = paired_ratio(runs, server, Server::Floor, vi, c, |r| r.cpu_us);
                println!(
                    "{vlabel}| {} | {c} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {:.1} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
                    server.label(),
                    col(|r| r.msgs_per_sec),
                    col(|r| r.p50_ms),
                    col(|r| r.p99_ms),
                    col(|r| r.max_ms),
                    col(|r| r.cpu_us),
                    if floor_ratio.is_nan() {
                        "-".to_string()
                    } else {
                        format!("{floor_ratio:.2}")
                    },
                    col(|r| r.stat_us),
                    {
                        let pg = col(|r| r.store_us);
                        if pg.is_nan() {
                            "-".to_string()
                        } else {
                            format!("{pg:.1}")
                        }
                    },
                    if server.store().is_some() {
                        mine.iter().map(|r| r.tempfails).sum::<usize>().to_string()
                    } else {
                        "-".to_string()
                    },
                    col(|r| r.rss_mib),
                    col(|r| r.pss_mib),
                    col(|r| r.ready_ms),
                    col(|r| r.driver_us),
                    col(|r| r.driver_us * r.msgs_per_sec / 1e6),
                );
                if server.is_reference() {
                    // Its ratio row follows the rustfilter chain with the same modules.
                    let Some(&ours) = order.iter().find(|s| s.reference() == Some(server)) else {
                        continue;
                    };
                    let ratio =
                        |f: fn(&Run) -> f64| fmt_ratio(paired_ratio(runs, ours, server, vi, c, f));
                    println!(
                        "{vlabel}| ÷ reference | {c} | {} | {} | {} | {} | {} | - | - | - | - | {} | {} | {} | - | - |",
                        ratio(|r| r.msgs_per_sec),
                        ratio(|r| r.p50_ms),
                        ratio(|r| r.p99_ms),
                        ratio(|r| r.max_ms),
                        ratio(|r| r.cpu_us),
                        ratio(|r| r.rss_mib),
                        ratio(|r| r.pss_mib),
                        ratio(|r| r.ready_ms),
                    );
                }
                if server == Server::Light {
                    let io_ratio = paired_ratio(runs, server, Server::FloorIo, vi, c, |r| r.cpu_us);
                    if !io_ratio.is_nan() {
                        verdicts.push(format!(
                            "{} C={c} light chain: {io_ratio:.2}× the floor + required I/O's CPU \
                             per message (for reading the above; no target)",
                            variant.label()
                        ));
                    }
                }
                let mut verdict = |ok: bool, text: String| {
                    met &= ok;
                    verdicts.push(format!(
                        "{} C={c} {text}: {}",
                        variant.label(),
                        if ok { "met" } else { "NOT met" }
                    ));
                };
                // Issue 8's targets.
                if server == Server::Light && !floor_ratio.is_nan() {
                    verdict(
                        floor_ratio <= LIGHT_TARGET_RATIO,
                        format!(
                            "light chain: {floor_ratio:.2}× the floor's CPU per message (target \
                             ≤ {LIGHT_TARGET_RATIO}×)"
                        ),
                    );
                }
                if server == Server::GreylistSqlite && !floor_ratio.is_nan() {
                    verdict(
                        floor_ratio <= GREYLIST_TARGET_RATIO,
                        format!(
                            "greylist on SQLite: {floor_ratio:.2}× the floor's CPU per message \
                             (target ≤ {GREYLIST_TARGET_RATIO}×)"
                        ),
                    );
                }
                if server == Server::Light && c == 8 {
                    let p99 = col(|r| r.p99_ms);
                    verdict(
                        p99 <= 1.0,
                        format!("light chain: p99 {p99:.2} ms (target ≤ 1 ms)"),
                    );
                }
                if !server.is_reference() && !server.is_floor() {
                    let ready = col(|r| r.ready_ms);
                    if c == opts.concurrency[0] && server == Server::Light {
                        verdict(
                            ready <= 10.0,
                            format!("light chain: ready after {ready:.1} ms (target ≤ 10 ms)"),
                        );
                    }
                }
                if let Some(reference) = server.reference().filter(|r| opts.servers.contains(r)) {
                    let cpu = paired_ratio(runs, server, reference, vi, c, |r| r.cpu_us);
                    let tput = paired_ratio(runs, server, reference, vi, c, |r| r.msgs_per_sec);
                    let rss = paired_ratio(runs, server, reference, vi, c, |r| r.rss_mib);
                    let pss = paired_ratio(runs, server, reference, vi, c, |r| r.pss_mib);
                    let chain_target = matches!(server, Server::Light | Server::GreylistSqlite);
                    let lower = match c {
                        1 => Some(10.0),
                        8 => Some(30.0),
                        _ => None,
                    };
                    if let (true, Some(lower), false) = (chain_target, lower, cpu.is_nan()) {
                        verdict(
                            cpu <= 1.0 / lower,
                            format!(
                                "{}: CPU per message {:.0}× lower than pythonfilter's (target ≥ \
                                 {lower}×)",
                                server.label(),
                                1.0 / cpu
                            ),
                        );
                    }
                    if chain_target && c == 8 && !tput.is_nan() {
                        verdict(
                            tput >= 10.0,
                            format!(
                                "{}: {tput:.1}× pythonfilter's throughput (target ≥ 10×)",
                                server.label()
                            ),
                        );
                    }
                    if chain_target && c == opts.concurrency[0] && !rss.is_nan() {
                        verdict(
                            rss <= 1.0,
                            format!(
                                "{}: peak RSS of master + {} workers {rss:.2}× pythonfilter's \
                                 (target ≤ 1×; PSS, shared pages once: {pss:.2}×)",
                                server.label(),
                                opts.workers
                            ),
                        );
                    }
                }
                if c == 64
                    && opts.concurrency.contains(&8)
                    && matches!(server, Server::Light | Server::GreylistSqlite)
                {
                    let at64 = col(|r| r.msgs_per_sec);
                    let at8 = median(
                        runs.iter()
                            .filter(|r| r.server == server && r.variant == vi && r.concurrency == 8)
                            .map(|r| r.msgs_per_sec)
                            .collect(),
                    );
                    verdict(
                        at64 >= 0.8 * at8,
                        format!(
                            "{}: throughput at C=64 {:.2}× that at C=8 (no collapse: ≥ 0.8×)",
                            server.label(),
                            at64 / at8
                        ),
                    );
                }
            }
        }
    }
    // Cost against message size, per chain (the first concurrency).
    if opts.sizes.len() > 1
        && let Some(&c) = opts.concurrency.first()
    {
        println!("\nCPU µs/msg by message size at C={c}:");
        for &server in &order {
            for &rcpt in &opts.recipients {
                let figures: Vec<String> = variants
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.recipients == rcpt)
                    .map(|(vi, v)| {
                        let cpu = median(
                            runs.iter()
                                .filter(|r| {
                                    r.server == server && r.variant == vi && r.concurrency == c
                                })
                                .map(|r| r.cpu_us)
                                .collect(),
                        );
                        format!("{} {cpu:.1}", size_label(v.size))
                    })
                    .collect();
                println!(
                    "  {:<32} {} rcpt: {}",
                    server.label(),
                    rcpt.label(),
                    figures.join(", ")
                );
            }
        }
    }
    println!();
    for v in verdicts {
        println!("{v}");
    }
    met
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> std::result::Result<Options, String> {
        Options::parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn options_parse_lists_and_reject_nonsense() {
        let o = opts(&[
            "--concurrency",
            "4,2",
            "--messages",
            "10",
            "--servers",
            "floor,light",
        ])
        .expect("valid options");
        assert_eq!(o.concurrency, vec![4, 2]);
        assert_eq!(o.messages, 10);
        assert_eq!(o.servers, vec![Server::Floor, Server::Light]);
        assert!(opts(&["--messages", "0"]).is_err());
        assert!(opts(&["--concurrency", "8,x"]).is_err());
        assert!(opts(&["--servers", "nginx"]).is_err());
        let o = opts(&[
            "--servers",
            "greylist-sqlite,light+greylist,greylist-new-pg",
        ])
        .expect("greylist servers");
        assert_eq!(
            o.servers,
            vec![
                Server::GreylistSqlite,
                Server::LightGreylist,
                Server::GreylistNewPg
            ]
        );
        assert_eq!(o.servers[1].chain(), LIGHT_GREYLIST_CHAIN);
        assert_eq!(o.servers[2].store(), Some(StoreKind::Postgres));
        assert!(o.servers[2].new_triplets());
        assert!(opts(&["--store-messages", "0"]).is_err());
        // Every server has a distinct name that --servers accepts.
        for s in Server::ALL {
            assert_eq!(
                opts(&["--servers", s.name()]).expect("name").servers,
                vec![s]
            );
        }
        assert!(opts(&["--frobnicate", "1"]).is_err());
    }

    #[test]
    fn bench_messages_look_like_courier_spool_files() {
        for i in [0, 3, 7, 499] {
            let (data, control) = bench_message(i, 1024, Recipients::Mixed);
            let data = String::from_utf8(data).expect("utf-8");
            let control = String::from_utf8(control).expect("utf-8");
            assert!(data.starts_with("Received: from "));
            assert!((1000..1300).contains(&data.len()), "{}", data.len());
            assert!(data.contains("\n\n"));
            let letters: String = control.lines().map(|l| &l[..1]).collect();
            assert!(letters.starts_with("sfetMrRN"), "{letters}");
            assert!(letters.ends_with("OuEpW"), "{letters}");
            // Steady-state traffic: nothing for noduplicates or nosuccessdsn to change.
            let rcpts: Vec<&str> = control.lines().filter(|l| l.starts_with('r')).collect();
            let mut unique = rcpts.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(rcpts.len(), unique.len());
            assert!(
                !control
                    .lines()
                    .any(|l| l.starts_with('N') && l.contains('S'))
            );
        }
    }

    #[test]
    fn variants_sizes_and_recipients() {
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("100K"), Some(100 * 1024));
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("2500"), Some(2500));
        assert_eq!(parse_size("10"), None);
        assert_eq!(parse_size("1g"), None);
        assert_eq!(parse_size("x"), None);
        assert_eq!(size_label(10 << 20), "10m");
        assert_eq!(size_label(1024), "1k");
        assert_eq!(Recipients::parse("1-3"), Some(Recipients::Mixed));
        assert_eq!(Recipients::parse("50"), Some(Recipients::Fixed(50)));
        assert_eq!(Recipients::parse("0"), None);
        let o = opts(&[
            "--sizes",
            "1k,10m",
            "--recipients",
            "1,50",
            "--servers",
            "all",
        ])
        .expect("variants");
        assert_eq!(o.sizes, vec![1024, 10 << 20]);
        assert_eq!(o.servers.len(), Server::ALL.len());
        assert!(opts(&["--sizes", "1k,"]).is_err());
        assert!(opts(&["--recipients", "1,9999"]).is_err());
        // Big messages and many recipients: shorter spools and runs.
        let big = Variant {
            size: 10 << 20,
            recipients: Recipients::Fixed(50),
        };
        assert_eq!(big.spool_len(&o), 20);
        assert!(big.messages(&o, Server::Light) <= 300);
        assert!(big.messages(&o, Server::PyLight) >= 50);
        for (size, rcpt) in [(100 * 1024, 50), (1024, 1)] {
            let (data, control) = bench_message(7, size, Recipients::Fixed(rcpt));
            assert!(
                (size - 100..size + 200).contains(&data.len()),
                "{}",
                data.len()
            );
            let control = String::from_utf8(control).expect("utf-8");
            assert_eq!(control.lines().filter(|l| l.starts_with('r')).count(), rcpt);
        }
        // Each reference server runs the chain of the rustfilter server it is compared to.
        for s in Server::ALL {
            if let Some(r) = s.reference() {
                assert!(r.is_reference());
                assert_eq!(s.chain().trim(), r.chain().trim());
            }
        }
        assert_eq!(fmt_ratio(0.0213), "0.0213×");
        assert_eq!(fmt_ratio(47.24), "47.2×");
        assert_eq!(fmt_ratio(f64::NAN), "-");
    }

    #[test]
    fn medians_and_replies() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
        assert_eq!(trim_reply(b"200 Ok\n"), b"200 Ok");
        assert_eq!(trim_reply(b"200 Ok"), b"200 Ok");
        assert!(Expect::Ok.matches(b"200 Ok\n"));
        assert!(
            !Expect::Ok.matches(b"451 4.7.1 Greylisting in action, please come back in 00:00:00")
        );
        assert!(
            Expect::Greylisted
                .matches(b"451 4.7.1 Greylisting in action, please come back in 00:00:00\n")
        );
        // A store failure is also a 451, but not greylisting.
        assert!(!Expect::Greylisted.matches(b"451 greylist TtlDb: database is locked\n"));
    }

    #[test]
    fn floor_answers_like_a_filter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lsd = dir.path();
        fs::create_dir_all(lsd.join("tmp/1")).expect("mkdir");
        fs::write(lsd.join("tmp/1/C"), b"sa@b\n").expect("write");
        let (mut client, mut server) = UnixStream::pair().expect("pair");
        client
            .write_all(b"/nonexistent/D\n1/C\n\n")
            .expect("write request");
        let mut buf = Vec::new();
        floor_handle(&mut server, lsd, &mut buf).expect("relative control path resolved");
        client.write_all(b"D\n/nonexistent/C\n\n").expect("write");
        assert!(floor_handle(&mut server, lsd, &mut buf).is_err());
    }
}
