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
//!
//! Options (or environment variables): `--concurrency 8,1` (BENCH_CONCURRENCY), `--messages N`
//! per measured run (BENCH_MESSAGES), `--warmup N` (BENCH_WARMUP), `--rounds N` (BENCH_ROUNDS),
//! `--spool N` distinct messages (BENCH_SPOOL), `--workers N` (BENCH_WORKERS), `--servers
//! floor,empty,light` (BENCH_SERVERS), `--strict` (exit 1 when the light chain misses its
//! target). `RUSTFILTER_BIN` runs another binary.

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

const ME: &str = "mail.bench.example";
/// The light chain's CPU per message may be at most this multiple of the floor's.
const TARGET_RATIO: f64 = 1.5;
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
const LIGHT_CHAIN: &str = "noduplicates\nnosuccessdsn\nwhitelist_auth\ndeliveredto\n";

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
  --servers LIST      which servers to run: floor,empty,light (default all three)
  --strict            exit 1 when the light chain's CPU/msg exceeds 1.5x the floor's
Each option can also be given as an environment variable: BENCH_CONCURRENCY, BENCH_MESSAGES,
BENCH_WARMUP, BENCH_ROUNDS, BENCH_SPOOL, BENCH_WORKERS, BENCH_SERVERS, BENCH_STRICT=1.";

#[derive(Debug, Clone)]
struct Options {
    concurrency: Vec<usize>,
    messages: usize,
    warmup: usize,
    rounds: usize,
    spool: usize,
    workers: usize,
    servers: Vec<Server>,
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
                env("BENCH_SERVERS").unwrap_or("floor,empty,light".into()),
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
            .map(|s| match s.trim() {
                "floor" => Ok(Server::Floor),
                "empty" => Ok(Server::Empty),
                "light" => Ok(Server::Light),
                other => Err(format!(
                    "servers: expected floor, empty or light, got '{other}'"
                )),
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
}

impl Server {
    fn label(self) -> &'static str {
        match self {
            Server::Floor => "floor",
            Server::Empty => "empty chain",
            Server::Light => "light chain",
        }
    }
}

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
    driver_us: f64,
    rss_mib: f64,
    ready_ms: f64,
}

struct Setup {
    scratch: Scratch,
    rustfilter: PathBuf,
    this_program: PathBuf,
    requests: Vec<Vec<u8>>,
    messages: Vec<(SpoolMessage, u64)>,
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

    let mut messages = Vec::with_capacity(opts.spool);
    for i in 0..opts.spool as u64 {
        let (data, control) = bench_message(i);
        let msg = SpoolMessage::write(
            &scratch.localstatedir,
            &format!("{}", 180_000 + i / 100),
            i,
            ME,
            &data,
            &control,
        )?;
        messages.push((msg, control.len() as u64));
    }
    let requests = messages.iter().map(|(m, _)| m.request()).collect();
    let setup = Setup {
        scratch,
        rustfilter,
        this_program,
        requests,
        messages,
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
    println!("light chain: {}\n", LIGHT_CHAIN.trim().replace('\n', ", "));

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
    drop(setup);
    Ok(met || !opts.strict)
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
        Server::Empty | Server::Light => {
            let chain = if server == Server::Empty {
                "empty.conf"
            } else {
                "light.conf"
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
                    s.sysconfdir.join("modules.conf").into(),
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
    if opts.warmup > 0 {
        drive(&socket, &setup.requests, offset, opts.warmup, max_c)
            .map_err(|e| format!("{} warm-up: {e}{}", server.label(), log_hint(&daemon)))?;
        offset += opts.warmup;
    }
    let mut runs = Vec::new();
    for &c in &opts.concurrency {
        let cpu0 = common::tree_cpu(daemon.pid())?;
        let me0 = common::own_cpu();
        let t0 = Instant::now();
        let latencies = drive(&socket, &setup.requests, offset, opts.messages, c)
            .map_err(|e| format!("{} C={c}: {e}{}", server.label(), log_hint(&daemon)))?;
        let wall = t0.elapsed();
        let me1 = common::own_cpu();
        let cpu1 = common::tree_cpu(daemon.pid())?;
        offset += opts.messages;
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
        let n = opts.messages as f64;
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
            "round {}/{}  {:<11}  C={:<3} {:>8.0} msg/s  p50 {:>6.2} ms  p99 {:>6.2} ms  \
             daemon {:>6.1} µs/msg (stat {:>5.1})  driver {:>6.1} µs/msg",
            round + 1,
            opts.rounds,
            server.label(),
            r.concurrency,
            r.msgs_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.cpu_us,
            r.stat_us,
            r.driver_us
        );
    }
    drop(daemon);
    // The rustfilter logs hold a line per message; keep the scratch dir small.
    let _ = fs::remove_file(&log);
    Ok(runs)
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

/// Send `count` requests over `concurrency` client threads; every reply must be `200 Ok`.
/// Returns the sorted latencies in microseconds (connect to EOF).
fn drive(
    socket: &Path,
    requests: &[Vec<u8>],
    offset: usize,
    count: usize,
    concurrency: usize,
) -> Result<Vec<u32>> {
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
                            Ok(()) if trim_reply(&reply) == b"200 Ok" => lat.push(us),
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
    Ok(all)
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

/// Print the medians; returns whether the light chain met its target at every concurrency.
fn print_table(opts: &Options, runs: &[Run]) -> bool {
    println!(
        "\nMedians over {} round(s), {} messages per run:\n",
        opts.rounds, opts.messages
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
                "| {} | {c} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
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
