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
//! * `empty chain`: rustfilter with no modules (request handling, control-file parse, logging).
//! * `light chain`: rustfilter with noduplicates, nosuccessdsn, whitelist_auth, deliveredto.
//! * `greylist-sqlite`, `light+greylist`, `greylist-pg`: the chain `greylist` alone on the
//!   SQLite store, the light chain + greylist on SQLite, and `greylist` on PostgreSQL (a fresh
//!   database in the throwaway cluster of `tests/services/postgres.sh`). The store is filled
//!   first so that every measured message is a passed triplet (`200 Ok`).
//! * `greylist-new-sqlite`, `greylist-new-pg`: every message a first sight (`451`).
//!
//! Options (or environment variables): `--concurrency 8,1` (BENCH_CONCURRENCY), `--messages N`
//! per measured run (BENCH_MESSAGES), `--warmup N` (BENCH_WARMUP), `--rounds N` (BENCH_ROUNDS),
//! `--spool N` distinct messages (BENCH_SPOOL), `--workers N` (BENCH_WORKERS), `--servers
//! LIST` (BENCH_SERVERS), `--store-messages N` per measured run of the greylist servers
//! (BENCH_STORE_MESSAGES), `--strict` (exit 1 when the light chain or greylist on SQLite misses
//! its target). `RUSTFILTER_BIN` runs another binary.

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
/// The light chain's CPU per message may be at most this multiple of the floor's.
const TARGET_RATIO: f64 = 1.5;
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
const LIGHT_CHAIN: &str = "noduplicates\nnosuccessdsn\nwhitelist_auth\ndeliveredto\n";
/// Issue 3: greylist alone on SQLite may cost the daemon at most this much CPU per message.
const GREYLIST_TARGET_US: f64 = 60.0;
const ALL_SERVERS: &str = concat!(
    "floor,empty,light,",
    "greylist-sqlite,light+greylist,greylist-pg,greylist-new-sqlite,greylist-new-pg"
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
  --rounds N          interleaved rounds; the table shows medians (default 5)
  --spool N           distinct spooled messages the traffic cycles through (default 500)
  --workers N         worker processes of each server (default 4)
  --servers LIST      which servers to run (default all): floor, empty, light,
                      greylist-sqlite, light+greylist, greylist-pg, greylist-new-sqlite,
                      greylist-new-pg
  --store-messages N  messages per measured run of the greylist servers (default 4000)
  --strict            exit 1 when the light chain's CPU/msg exceeds 1.5x the floor's, or
                      greylist on SQLite exceeds 60 µs/msg
Each option can also be given as an environment variable: BENCH_CONCURRENCY, BENCH_MESSAGES,
BENCH_WARMUP, BENCH_ROUNDS, BENCH_SPOOL, BENCH_WORKERS, BENCH_SERVERS, BENCH_STORE_MESSAGES,
BENCH_STRICT=1. The PostgreSQL rows use the cluster of tests/services/postgres.sh in
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
    strict: bool,
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
            ("rounds", env("BENCH_ROUNDS").unwrap_or("5".into())),
            ("spool", env("BENCH_SPOOL").unwrap_or("500".into())),
            ("workers", env("BENCH_WORKERS").unwrap_or("4".into())),
            (
                "servers",
                env("BENCH_SERVERS").unwrap_or(ALL_SERVERS.into()),
            ),
            (
                "store-messages",
                env("BENCH_STORE_MESSAGES").unwrap_or("4000".into()),
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
        let servers = get("servers")
            .unwrap_or("")
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
        Ok(Options {
            concurrency,
            servers,
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
    let parsed = (|| -> std::result::Result<(PathBuf, String, usize), lexopt::Error> {
        use lexopt::ValueExt;
        let mut parser = lexopt::Parser::from_args(args);
        let (mut lsd, mut name, mut workers) = (None, "floor".to_string(), 4usize);
        while let Some(arg) = parser.next()? {
            match arg {
                lexopt::Arg::Long("localstatedir") => lsd = Some(parser.value()?.into()),
                lexopt::Arg::Long("name") => name = parser.value()?.string()?,
                lexopt::Arg::Long("workers") => workers = parser.value()?.parse()?,
                other => return Err(other.unexpected()),
            }
        }
        let lsd = lsd.ok_or("--localstatedir is required")?;
        Ok((lsd, name, workers.max(1)))
    })();
    let (lsd, name, workers) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bench floor: {e}");
            return ExitCode::from(64);
        }
    };
    match floor_serve(&lsd, &name, workers) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench floor: {e}");
            ExitCode::from(71)
        }
    }
}

fn floor_serve(lsd: &Path, name: &str, workers: usize) -> Result<()> {
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
                let code = floor_worker(&listener, lsd);
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

fn floor_worker(listener: &UnixListener, lsd: &Path) -> i32 {
    let mut buf = Vec::with_capacity(4096);
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
            Ok(()) => "200 Ok".to_string(),
            Err(e) => format!("451 bench floor: {e}"),
        };
        let _ = stream.write_all(reply.as_bytes());
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

// =============================================================================================
// The driver.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Floor,
    Empty,
    Light,
    GreylistSqlite,
    LightGreylist,
    GreylistPg,
    GreylistNewSqlite,
    GreylistNewPg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Sqlite,
    Postgres,
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
    const ALL: [Server; 8] = [
        Server::Floor,
        Server::Empty,
        Server::Light,
        Server::GreylistSqlite,
        Server::LightGreylist,
        Server::GreylistPg,
        Server::GreylistNewSqlite,
        Server::GreylistNewPg,
    ];

    /// The name in `--servers`.
    fn name(self) -> &'static str {
        match self {
            Server::Floor => "floor",
            Server::Empty => "empty",
            Server::Light => "light",
            Server::GreylistSqlite => "greylist-sqlite",
            Server::LightGreylist => "light+greylist",
            Server::GreylistPg => "greylist-pg",
            Server::GreylistNewSqlite => "greylist-new-sqlite",
            Server::GreylistNewPg => "greylist-new-pg",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Server::Floor => "floor",
            Server::Empty => "empty chain",
            Server::Light => "light chain",
            Server::GreylistSqlite => "greylist sqlite",
            Server::LightGreylist => "light+greylist sqlite",
            Server::GreylistPg => "greylist pg",
            Server::GreylistNewSqlite => "greylist sqlite, new triplets",
            Server::GreylistNewPg => "greylist pg, new triplets",
        }
    }

    /// The chain file it runs (rustfilter servers only).
    fn chain(self) -> &'static str {
        match self {
            Server::Floor | Server::Empty => "",
            Server::Light => LIGHT_CHAIN,
            Server::LightGreylist => LIGHT_GREYLIST_CHAIN,
            Server::GreylistSqlite
            | Server::GreylistPg
            | Server::GreylistNewSqlite
            | Server::GreylistNewPg => "greylist\n",
        }
    }

    fn store(self) -> Option<StoreKind> {
        match self {
            Server::Floor | Server::Empty | Server::Light => None,
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
        if self.new_triplets() {
            opts.store_messages.div_ceil(NEW_TRIPLETS_DIVISOR)
        } else if self.store().is_some() {
            opts.store_messages
        } else {
            opts.messages
        }
    }

    fn warmup(self, opts: &Options) -> usize {
        if self.new_triplets() {
            opts.warmup.div_ceil(NEW_TRIPLETS_DIVISOR)
        } else {
            opts.warmup
        }
    }
}

const NEW_TRIPLETS_DIVISOR: usize = 4;

const LIGHT_GREYLIST_CHAIN: &str =
    "noduplicates\nnosuccessdsn\nwhitelist_auth\ndeliveredto\ngreylist\n";

/// One measured run.
#[derive(Debug, Clone)]
struct Run {
    server: Server,
    concurrency: usize,
    round: usize,
    msgs_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// From schedstat (ns) when available.
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
    ready_ms: f64,
}

struct Setup {
    scratch: Scratch,
    rustfilter: PathBuf,
    this_program: PathBuf,
    requests: Vec<Vec<u8>>,
    /// Distinct triplets for the new-triplets servers (each used once per server start).
    new_requests: Vec<Vec<u8>>,
    messages: Vec<(SpoolMessage, u64)>,
    pg: Option<PgCluster>,
}

fn run(opts: &Options) -> Result<bool> {
    // Only build rustfilter when it is to be measured.
    let rustfilter = if opts.servers.iter().any(|&s| s != Server::Floor) {
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
        if server.store().is_some() {
            common::write_file(
                &etc.join(format!("{}.conf", server.name())),
                server.chain().as_bytes(),
            )?;
        }
    }

    let mut messages = Vec::with_capacity(opts.spool);
    for i in 0..opts.spool as u64 {
        messages.push(spool_message(&scratch, i)?);
    }
    // The new-triplets servers use each of these once per start: warm-up, then every run.
    let new_count = if opts.servers.iter().any(|s| s.new_triplets()) {
        Server::GreylistNewSqlite.warmup(opts)
            + Server::GreylistNewSqlite.messages(opts) * opts.concurrency.len()
    } else {
        0
    };
    for i in 0..new_count as u64 {
        messages.push(spool_message(&scratch, NEW_TRIPLETS_BASE + i)?);
    }
    let requests: Vec<Vec<u8>> = messages.iter().map(|(m, _)| m.request()).collect();
    let new_requests = requests[opts.spool..].to_vec();
    let requests = requests[..opts.spool].to_vec();

    let mut servers = opts.servers.clone();
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
    let opts = &Options {
        servers,
        ..opts.clone()
    };
    let setup = Setup {
        scratch,
        rustfilter,
        this_program,
        requests,
        new_requests,
        messages,
        pg,
    };

    let avg_data: u64 = setup
        .messages
        .iter()
        .map(|(m, _)| fs::metadata(&m.data).map(|md| md.len()).unwrap_or(0))
        .sum::<u64>()
        / setup.messages.len() as u64;
    println!("rustfilter bench");
    println!("================");
    println!(
        "machine: {} CPUs, {}; clock ticks {} Hz",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel(),
        common::clock_ticks_per_second()
    );
    println!(
        "spool: {} messages (data ~{avg_data} bytes, 1-3 recipients) in {}",
        opts.spool,
        setup.scratch.path().display()
    );
    println!(
        "each run: {} workers, {} warm-up messages after start, then {} measured messages at \
         concurrency {}; {} interleaved rounds",
        opts.workers,
        opts.warmup,
        opts.messages,
        opts.concurrency
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" and "),
        opts.rounds
    );
    println!("light chain: {}", LIGHT_CHAIN.trim().replace('\n', ", "));
    if opts.servers.iter().any(|s| s.store().is_some()) {
        println!(
            "greylist servers: greylist_time = 0, a fresh store per start (SQLite in the temp \
             dir{}); {} messages per measured run. Passed traffic: the spool's triplets are sent \
             twice first (451, then promoted). New triplets: {} messages per measured run, from \
             a spool of {} more messages, each sent once per start.",
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
            setup.new_requests.len()
        );
    }
    println!();

    let mut runs = Vec::new();
    let started = Instant::now();
    for round in 0..opts.rounds {
        // Rotate the order so no server always runs first (caches, CPU frequency).
        for k in 0..opts.servers.len() {
            let server = opts.servers[(k + round) % opts.servers.len()];
            common::check_interrupted()?;
            runs.extend(bench_server(&setup, opts, server, round)?);
        }
    }
    println!("\nall runs took {:.1} s", started.elapsed().as_secs_f64());

    // The traffic must be steady-state: no control file may have grown.
    for (msg, len) in &setup.messages {
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

    let met = print_table(opts, &runs);
    if let Some(pg) = &setup.pg
        && pg.started_by_us
    {
        println!("stopping the PostgreSQL cluster the bench started");
    }
    drop(setup);
    Ok(met || !opts.strict)
}

/// The new-triplets spool numbers its messages from here (distinct senders and files).
const NEW_TRIPLETS_BASE: u64 = 1_000_000;

fn spool_message(scratch: &Scratch, i: u64) -> Result<(SpoolMessage, u64)> {
    let (data, control) = bench_message(i);
    let msg = SpoolMessage::write(
        &scratch.localstatedir,
        &format!("{}", 180_000 + i / 100),
        i,
        ME,
        &data,
        &control,
    )?;
    Ok((msg, control.len() as u64))
}

fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!("Linux {}", k.trim()))
        .unwrap_or_else(|_| "Linux".into())
}

/// A ~1 KB message and its control file, as Courier writes them for ESMTP mail.
fn bench_message(i: u64) -> (Vec<u8>, Vec<u8>) {
    let ip = format!("192.0.{}.{}", 2 + (i / 250) % 50, 1 + i % 250);
    let sender = format!("sender{i}@example{}.org", i % 37);
    let nrcpt = 1 + (i % 3) as usize;
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
            .join(", "),
        i % 37
    ));
    let line = "The quick brown fox jumps over the lazy dog, again and again.\n";
    while data.len() < 1000 + (i % 7) as usize * 20 {
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
fn bench_server(setup: &Setup, opts: &Options, server: Server, round: usize) -> Result<Vec<Run>> {
    let s = &setup.scratch;
    let log = s
        .path()
        .join(format!("{}-{round}.log", server.label().replace(' ', "-")));
    let workers = opts.workers.to_string();
    // A fresh store for each start: SQLite in a directory of its own, PostgreSQL a new
    // database (dropped when `store` goes).
    let mut modules_conf = s.sysconfdir.join("modules.conf");
    let mut store: Option<FreshStore> = None;
    if let Some(kind) = server.store() {
        let fresh = FreshStore::new(setup, kind, &format!("{}-{round}", server.name()))?;
        modules_conf = s
            .sysconfdir
            .join(format!("modules-{}-{round}.conf", server.name()));
        common::write_file(
            &modules_conf,
            format!("{}[greylist]\ngreylist_time = 0\n", fresh.ttldb_section()).as_bytes(),
        )?;
        store = Some(fresh);
    }
    let (program, name, args): (&Path, &str, Vec<OsString>) = match server {
        Server::Floor => (
            &setup.this_program,
            "floor",
            vec![
                "floor".into(),
                "--localstatedir".into(),
                s.localstatedir.clone().into(),
                "--name".into(),
                "floor".into(),
                "--workers".into(),
                workers.into(),
            ],
        ),
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
    let mut daemon = Daemon::start(program, &args, &log, Duration::from_secs(10))?;
    let ready_ms = daemon.ready_after.as_secs_f64() * 1000.0;
    let initial_workers = daemon.workers();
    if initial_workers.len() < opts.workers {
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
        &setup.new_requests
    } else {
        &setup.requests
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
    let warmup = server.warmup(opts);
    if warmup > 0 {
        drive(&socket, requests, offset, warmup, max_c, expect, tolerate)
            .map_err(|e| format!("{} warm-up: {e}{}", server.label(), log_hint(&daemon)))?;
        offset += warmup;
    }
    let messages = server.messages(opts);
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
        let run = Run {
            server,
            concurrency: c,
            round,
            msgs_per_sec: n / wall.as_secs_f64(),
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            max_ms: latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
            cpu_us: cpu1.best().saturating_sub(cpu0.best()).as_secs_f64() * 1e6 / n,
            stat_us: cpu1.stat.saturating_sub(cpu0.stat).as_secs_f64() * 1e6 / n,
            store_us,
            tempfails,
            driver_us: me1.saturating_sub(me0).as_secs_f64() * 1e6 / n,
            rss_mib: 0.0,
            ready_ms,
        };
        runs.push(run);
    }
    let mut rss_kib = common::peak_rss_kib(daemon.pid())?;
    for w in daemon.workers() {
        rss_kib += common::peak_rss_kib(w).unwrap_or(0);
    }
    for r in &mut runs {
        r.rss_mib = rss_kib as f64 / 1024.0;
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
            "round {}/{}  {:<29}  C={:<3} {:>8.0} msg/s  p50 {:>6.2} ms  p99 {:>6.2} ms  \
             daemon {:>6.1} µs/msg (stat {:>5.1})  driver {:>6.1} µs/msg{}{}",
            round + 1,
            opts.rounds,
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
    // The rustfilter logs hold a line per message; keep the scratch dir small.
    let _ = fs::remove_file(&log);
    Ok(runs)
}

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
    Postgres { su: Box<PgBackend>, db: String },
}

impl FreshStore {
    fn new(setup: &Setup, kind: StoreKind, tag: &str) -> Result<FreshStore> {
        match kind {
            StoreKind::Sqlite => {
                let dir = setup.scratch.path().join(format!("db-{tag}"));
                fs::create_dir_all(&dir).or_fail(|| format!("cannot create {}", dir.display()))?;
                Ok(FreshStore::Sqlite(dir))
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
            FreshStore::Sqlite(dir) => {
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

/// Print the medians; returns whether the light chain and greylist on SQLite met their targets
/// at every concurrency.
fn print_table(opts: &Options, runs: &[Run]) -> bool {
    println!(
        "\nMedians over {} round(s), {} messages per run ({} for the greylist servers, {} with \
         new triplets):\n",
        opts.rounds,
        opts.messages,
        opts.store_messages,
        Server::GreylistNewSqlite.messages(opts)
    );
    let header = [
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
        "ready ms",
        "driver µs/msg",
    ];
    println!("| {} |", header.join(" | "));
    println!(
        "|{}|",
        header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { " --- " } else { " ---: " })
            .collect::<Vec<_>>()
            .join("|")
    );
    let mut met = true;
    let mut verdicts = Vec::new();
    for &c in &opts.concurrency {
        for &server in &opts.servers {
            let mine: Vec<&Run> = runs
                .iter()
                .filter(|r| r.server == server && r.concurrency == c)
                .collect();
            let col = |f: fn(&Run) -> f64| median(mine.iter().map(|r| f(r)).collect());
            // Ratio per round against the floor run of the same round, then the median: the
            // pairs ran back to back, so they share the machine's mood.
            let ratio = median(
                mine.iter()
                    .filter_map(|r| {
                        runs.iter()
                            .find(|f| {
                                f.server == Server::Floor
                                    && f.concurrency == c
                                    && f.round == r.round
                            })
                            .map(|f| r.cpu_us / f.cpu_us)
                    })
                    .collect(),
            );
            println!(
                "| {} | {c} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {:.1} | {} | {} | {:.1} | {:.1} | {:.1} |",
                server.label(),
                col(|r| r.msgs_per_sec),
                col(|r| r.p50_ms),
                col(|r| r.p99_ms),
                col(|r| r.max_ms),
                col(|r| r.cpu_us),
                if ratio.is_nan() {
                    "-".to_string()
                } else {
                    format!("{ratio:.2}")
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
                col(|r| r.ready_ms),
                col(|r| r.driver_us),
            );
            if server == Server::Light && !ratio.is_nan() {
                let ok = ratio <= TARGET_RATIO;
                met &= ok;
                verdicts.push(format!(
                    "light chain at C={c}: {ratio:.2}× the floor's CPU per message (target ≤ \
                     {TARGET_RATIO}×): {}",
                    if ok { "met" } else { "NOT met" }
                ));
            }
            let cpu = col(|r| r.cpu_us);
            if server == Server::GreylistSqlite && !cpu.is_nan() {
                let ok = cpu <= GREYLIST_TARGET_US;
                met &= ok;
                verdicts.push(format!(
                    "greylist on SQLite at C={c}: {cpu:.1} µs of daemon CPU per message (target \
                     ≤ {GREYLIST_TARGET_US} µs): {}",
                    if ok { "met" } else { "NOT met" }
                ));
            }
            if server == Server::GreylistPg && !cpu.is_nan() {
                let pg = col(|r| r.store_us);
                verdicts.push(format!(
                    "greylist on PostgreSQL at C={c}: {cpu:.1} µs of daemon CPU per message, \
                     plus {pg:.1} µs in the PostgreSQL server processes ({:.1} µs in all)",
                    cpu + pg
                ));
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
            let (data, control) = bench_message(i);
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
