//! `make soak`: a long run through the light chain + greylist on SQLite, watching for leaks.
//!
//! Starts rustfilter the way courierfilter does (4 workers; chain noduplicates, nosuccessdsn,
//! whitelist_auth, deliveredto, greylist; `[greylist] greylist_time = 0`; the SQLite store in a
//! temp dir), fills the store so that the spool's triplets have passed greylisting, then sends
//! 1,000,000 messages with 8 concurrent clients: the spool's messages (`200 Ok`), and every
//! 100th a triplet greylist has never seen (`451 4.7.1 Greylisting in action…`), so the store
//! keeps growing a little as on a real host. Every few seconds it reads the resident set size
//! (`VmRSS`) and the number of open file descriptors (`/proc/<pid>/fd`) of the master and of
//! every worker.
//!
//! It fails (exit 1) if any reply is not the expected one, a worker dies or is replaced, the
//! daemon logs anything but its start, stop, reject and accounting lines, `rustfilter stats`
//! shows an error or counts that differ from the replies received, or a process grows: in the
//! second half of the run its RSS may grow by at most `--max-rss-growth` KiB (default 2048:
//! SQLite's page cache, up to 2000 KiB per connection, fills as the store grows with the new
//! triplets; the first half is the warm-up), and its descriptor count may not exceed the first
//! half's highest by more than 2 (the connection and the message's files in flight). It prints
//! the figures as Markdown (SOAK.md holds a real run's).
//!
//! Options (or environment variables): `--messages N` (SOAK_MESSAGES, default 1000000),
//! `--concurrency N` (SOAK_CONCURRENCY, 8), `--workers N` (SOAK_WORKERS, 4), `--interval S`
//! seconds between samples (SOAK_INTERVAL, 2), `--new-every N` (SOAK_NEW_EVERY, 100; 0: no
//! new triplets), `--max-rss-growth KIB` (SOAK_MAX_RSS_GROWTH, 2048). `RUSTFILTER_BIN` runs
//! another binary.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Daemon, OrFail, Result, Scratch, SpoolMessage};

const ME: &str = "mail.soak.example";
const CHAIN: &str = "noduplicates\nnosuccessdsn\nwhitelist_auth\ndeliveredto\ngreylist\n";
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
const GREYLISTED: &[u8] = b"451 4.7.1 Greylisting in action";
/// Distinct messages of the steady-state traffic.
const SPOOL: usize = 500;
/// The descriptors a worker may hold in flight (connection, data and control file).
const FD_SLACK: usize = 2;

const USAGE: &str = "\
Usage: cargo run --release --example soak -- [OPTIONS]
  --messages N          messages to send after filling the store (default 1000000)
  --concurrency N       client threads (default 8)
  --workers N           rustfilter workers (default 4)
  --interval S          seconds between RSS / fd samples (default 2)
  --new-every N         every Nth message is a new triplet, greylisted (default 100; 0: none)
  --max-rss-growth KIB  allowed RSS growth per process in the second half (default 2048)
Environment: SOAK_MESSAGES, SOAK_CONCURRENCY, SOAK_WORKERS, SOAK_INTERVAL, SOAK_NEW_EVERY,
SOAK_MAX_RSS_GROWTH; RUSTFILTER_BIN runs that binary instead of building target/release's.
";

#[derive(Debug, Clone)]
struct Options {
    messages: usize,
    concurrency: usize,
    workers: usize,
    interval: Duration,
    new_every: usize,
    max_rss_growth_kib: u64,
}

impl Options {
    fn parse(args: Vec<OsString>) -> Result<Options> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut values: BTreeMap<&str, String> = BTreeMap::new();
        for (key, var) in [
            ("messages", "SOAK_MESSAGES"),
            ("concurrency", "SOAK_CONCURRENCY"),
            ("workers", "SOAK_WORKERS"),
            ("interval", "SOAK_INTERVAL"),
            ("new-every", "SOAK_NEW_EVERY"),
            ("max-rss-growth", "SOAK_MAX_RSS_GROWTH"),
        ] {
            if let Some(v) = env(var) {
                values.insert(key, v);
            }
        }
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let arg = arg.into_string().map_err(|a| format!("not UTF-8: {a:?}"))?;
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            let key = match name.as_str() {
                "--messages" => "messages",
                "--concurrency" => "concurrency",
                "--workers" => "workers",
                "--interval" => "interval",
                "--new-every" => "new-every",
                "--max-rss-growth" => "max-rss-growth",
                "--help" | "-h" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                _ => return Err(format!("unknown option {arg}")),
            };
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| format!("{name} needs a value"))?,
            };
            values.insert(key, value);
        }
        let num = |key: &str, default: u64, min: u64| -> Result<u64> {
            match values.get(key) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= min)
                    .ok_or_else(|| format!("--{key}: '{v}' is not a number ≥ {min}")),
            }
        };
        let interval: f64 = match values.get("interval") {
            None => 2.0,
            Some(v) => v
                .parse()
                .ok()
                .filter(|s: &f64| *s >= 0.1 && *s <= 3600.0)
                .ok_or_else(|| format!("--interval: '{v}' is not 0.1 to 3600 seconds"))?,
        };
        Ok(Options {
            messages: num("messages", 1_000_000, 1)? as usize,
            concurrency: num("concurrency", 8, 1)? as usize,
            workers: num("workers", 4, 1)?.min(256) as usize,
            interval: Duration::from_secs_f64(interval),
            new_every: num("new-every", 100, 0)? as usize,
            max_rss_growth_kib: num("max-rss-growth", 2048, 0)?,
        })
    }

    fn new_triplets(&self) -> usize {
        self.messages.checked_div(self.new_every).unwrap_or(0)
    }

    /// Message `k` of the run: a new triplet (Some(index)) or one of the spool's.
    fn new_triplet(&self, k: usize) -> Option<usize> {
        (self.new_every > 0 && k % self.new_every == self.new_every - 1).then(|| k / self.new_every)
    }
}

fn main() -> ExitCode {
    common::install_interrupt_handler();
    let opts = match Options::parse(std::env::args_os().skip(1).collect()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("soak: {e}\n\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    match run(&opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(_) if common::interrupted() => {
            eprintln!("\nsoak interrupted; temp files removed, daemon stopped");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("\nsoak failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One reading of one process.
#[derive(Debug, Clone, Copy)]
struct Reading {
    rss_kib: u64,
    /// The anonymous part of the RSS (heap, stacks: where a leak shows); the rest is the
    /// binary's and libraries' pages and shared mappings.
    anon_kib: u64,
    fds: usize,
}

/// All processes at one moment.
#[derive(Debug, Clone)]
struct Sample {
    elapsed: Duration,
    sent: usize,
    /// pid → reading (master first in `pids`).
    readings: BTreeMap<u32, Reading>,
}

fn read_process(pid: u32) -> Result<Reading> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .or_fail(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    let rss_kib = field("VmRSS:")?;
    let anon_kib = field("RssAnon:")?;
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .or_fail(|| format!("cannot list /proc/{pid}/fd"))?
        .count();
    Ok(Reading {
        rss_kib,
        anon_kib,
        fds,
    })
}

fn sample(pids: &[u32], elapsed: Duration, sent: usize) -> Result<Sample> {
    let mut readings = BTreeMap::new();
    for &p in pids {
        readings.insert(p, read_process(p)?);
    }
    Ok(Sample {
        elapsed,
        sent,
        readings,
    })
}

/// A ~1 KB message and its control file as Courier leaves them for the filters: `n` picks the
/// client, sender, 1 to 3 recipients; `tag` makes the sender unique to one set of messages.
fn soak_message(n: usize, tag: &str) -> (Vec<u8>, Vec<u8>) {
    let ip = format!("198.51.{}.{}", n / 200 % 100, 1 + n % 200);
    let sender = format!("{tag}{n}@sender{}.example", n % 41);
    let rcpts: Vec<String> = (0..1 + n % 3)
        .map(|k| format!("rcpt{}@soak.example", (n * 3 + k) % 700))
        .collect();
    let id = format!("0000000000{n:06X}.000000006B0736B7.{:08X}", 0x4000 + n);
    let mut data = format!(
        "Received: from relay.sender{0}.example (relay.sender{0}.example [::ffff:{ip}])\n  \
         by {ME} with ESMTP; Wed, 26 Nov 2025 10:00:00 +0000\n  id {id}\n",
        n % 41
    );
    if n % 9 == 4 {
        // A list's copy: someone else's Delivered-To (not a local domain), so deliveredto looks.
        data.push_str("Delivered-To: owner@lists.elsewhere.example\n");
    }
    data.push_str(&format!(
        "From: Sender {n} <{sender}>\nTo: {}\nSubject: soak message {n}\n\
         Date: Wed, 26 Nov 2025 09:59:59 +0000\nMessage-ID: <soak-{tag}{n}@sender{}.example>\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n",
        rcpts.join(", "),
        n % 41
    ));
    while data.len() < 1000 + n % 5 * 30 {
        data.push_str("All work and no play makes a mail filter a dull program.\n");
    }
    let mut control = format!(
        "s{sender}\nfdns; relay.sender{}.example ([::ffff:{ip}])\ne\nt\nM{id}\n",
        n % 41
    );
    for r in &rcpts {
        control.push_str(&format!("r{r}\nR\nN\n"));
    }
    control.push_str(&format!(
        "OTCPREMOTEIP=::ffff:{ip}\nuauthsmtp\nE1796239671\np1795663671\nW1795649271\n"
    ));
    (data.into_bytes(), control.into_bytes())
}

fn write_spool(scratch: &Scratch, n: usize, tag: &str, dir: &str) -> Result<Vec<u8>> {
    let (data, control) = soak_message(n, tag);
    let seq = if tag == "k" { n } else { 1_000_000 + n } as u64;
    let msg = SpoolMessage::write(
        &scratch.localstatedir,
        &format!("{dir}{}", n / 1000),
        seq,
        ME,
        &data,
        &control,
    )?;
    Ok(msg.request())
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    greylisted: AtomicUsize,
    failed: AtomicBool,
    first_error: Mutex<Option<String>>,
    other: AtomicUsize,
}

impl Tally {
    fn fail(&self, e: String) {
        self.failed.store(true, Ordering::Relaxed);
        self.other.fetch_add(1, Ordering::Relaxed);
        let mut g = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        g.get_or_insert(e);
    }

    fn error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Send `count` messages with `c` clients: `pick(k)` gives the k-th request and whether it is a
/// new triplet (greylisted) rather than a passed one (`200 Ok`).
fn send_all<'a>(
    socket: &Path,
    count: usize,
    c: usize,
    pick: &(dyn Fn(usize) -> (&'a [u8], bool) + Sync),
    sent: &AtomicUsize,
    tally: &Tally,
) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..c {
            scope.spawn(|| {
                let mut reply = Vec::with_capacity(128);
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= count || tally.failed.load(Ordering::Relaxed) {
                        break;
                    }
                    if common::interrupted() {
                        tally.fail("interrupted".into());
                        break;
                    }
                    let (req, new_triplet) = pick(k);
                    match common::exchange(socket, req, REPLY_TIMEOUT, &mut reply) {
                        Ok(()) if !new_triplet && reply.as_slice() == b"200 Ok" => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(()) if new_triplet && reply.starts_with(GREYLISTED) => {
                            tally.greylisted.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(()) => tally.fail(format!(
                            "message {k}: unexpected reply {:?}",
                            String::from_utf8_lossy(&reply)
                        )),
                        Err(e) => tally.fail(format!("message {k}: request failed: {e}")),
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
}

fn run(opts: &Options) -> Result<bool> {
    let rustfilter = common::rustfilter_binary()?;
    let scratch = Scratch::new("rustfilter-soak-")?;
    let etc = &scratch.sysconfdir;
    common::write_file(&etc.join("me"), format!("{ME}\n").as_bytes())?;
    common::write_file(&etc.join("locals"), b"localhost\nsoak.example\n")?;
    common::write_file(&etc.join("defaultdomain"), b"soak.example\n")?;
    common::write_file(&etc.join("rustfilter.conf"), CHAIN.as_bytes())?;
    let state = scratch.path().join("state");
    fs::create_dir_all(&state).or_fail(|| format!("cannot create {}", state.display()))?;
    let modules = etc.join("rustfilter-modules.conf");
    common::write_file(
        &modules,
        format!(
            "[ttldb]\ndir = '{}'\n\n[greylist]\ngreylist_time = 0\n",
            state.display()
        )
        .as_bytes(),
    )?;

    println!("rustfilter soak");
    println!("===============");
    let prep = Instant::now();
    let known: Vec<Vec<u8>> = (0..SPOOL)
        .map(|n| write_spool(&scratch, n, "k", "k"))
        .collect::<Result<_>>()?;
    let fresh: Vec<Vec<u8>> = (0..opts.new_triplets())
        .map(|n| write_spool(&scratch, n, "new", "n"))
        .collect::<Result<_>>()?;
    println!(
        "spool: {} messages, plus {} with new triplets, written in {:.1} s to {}",
        known.len(),
        fresh.len(),
        prep.elapsed().as_secs_f64(),
        scratch.path().display()
    );

    let log = scratch.path().join("rustfilter.log");
    let args: Vec<OsString> = vec![
        "--name".into(),
        "rustfilter".into(),
        "--config".into(),
        etc.join("rustfilter.conf").into(),
        "--modules-config".into(),
        modules.clone().into(),
        "--sysconfdir".into(),
        etc.clone().into(),
        "--localstatedir".into(),
        scratch.localstatedir.clone().into(),
        "--workers".into(),
        opts.workers.to_string().into(),
    ];
    let mut daemon = Daemon::start(&rustfilter, &args, &log, Duration::from_secs(20))?;
    let socket = scratch.socket("rustfilter");
    let master = daemon.pid();
    let workers = daemon.workers();
    if workers.len() != opts.workers {
        return Err(format!(
            "expected {} workers, found {workers:?}",
            opts.workers
        ));
    }
    let mut pids = vec![master];
    pids.extend(&workers);

    // The steady state of a greylisting host: every spool triplet first greylisted, then
    // passed (greylist_time = 0).
    let fill = Tally::default();
    let fill_sent = AtomicUsize::new(0);
    send_all(
        &socket,
        known.len(),
        opts.concurrency,
        &|k| (known[k].as_slice(), true),
        &fill_sent,
        &fill,
    );
    send_all(
        &socket,
        known.len(),
        opts.concurrency,
        &|k| (known[k].as_slice(), false),
        &fill_sent,
        &fill,
    );
    if let Some(e) = fill.error() {
        return Err(format!("filling the store: {e}"));
    }
    println!(
        "store filled: {} triplet sets greylisted, then passed",
        known.len()
    );
    println!(
        "daemon: master {master}, workers {workers:?}; chain {}; {} messages at C={}, \
         every {} a new triplet; a sample every {:.1} s\n",
        CHAIN.trim().replace('\n', ", "),
        opts.messages,
        opts.concurrency,
        if opts.new_every == 0 {
            "never".to_string()
        } else {
            format!("{}th", opts.new_every)
        },
        opts.interval.as_secs_f64()
    );

    let tally = Tally::default();
    let sent = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let mut samples = vec![sample(&pids, Duration::ZERO, 0)?];
    let pick = |k: usize| match opts.new_triplet(k) {
        Some(i) => (fresh[i].as_slice(), true),
        None => (known[k % known.len()].as_slice(), false),
    };
    let sampler_result: Result<()> = std::thread::scope(|scope| {
        let clients = scope.spawn(|| {
            send_all(
                &socket,
                opts.messages,
                opts.concurrency,
                &pick,
                &sent,
                &tally,
            );
            done.store(true, Ordering::Relaxed);
        });
        let mut next = start + opts.interval;
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            if Instant::now() < next {
                continue;
            }
            next += opts.interval;
            let s = sample(&pids, start.elapsed(), sent.load(Ordering::Relaxed))?;
            let rss: u64 = s.readings.values().map(|r| r.rss_kib).sum();
            let fds: usize = s.readings.values().map(|r| r.fds).sum();
            println!(
                "{:>7.1} s  {:>8} msgs  {:>7.0} msg/s  RSS {:>6} KiB  fds {:>3}  (all {} processes)",
                s.elapsed.as_secs_f64(),
                s.sent,
                s.sent as f64 / s.elapsed.as_secs_f64(),
                rss,
                fds,
                pids.len()
            );
            samples.push(s);
        }
        clients
            .join()
            .map_err(|_| "a client thread panicked".to_string())?;
        Ok(())
    });
    let took = start.elapsed();
    sampler_result?;
    samples.push(sample(&pids, took, sent.load(Ordering::Relaxed))?);

    let mut problems: Vec<String> = Vec::new();
    if let Some(e) = tally.error() {
        problems.push(format!(
            "{} unexpected replies or failed requests; the first: {e}",
            tally.other.load(Ordering::Relaxed)
        ));
    }
    let now_workers = daemon.workers();
    if now_workers != workers {
        problems.push(format!(
            "the workers changed: {workers:?} at the start, {now_workers:?} at the end"
        ));
    }

    // rustfilter stats must agree with the replies received, and show no error.
    let stats_json = Command::new(&rustfilter)
        .args([
            "stats",
            "--json",
            "--name",
            "rustfilter",
            "--modules-config",
        ])
        .arg(&modules)
        .output()
        .or_fail(|| "cannot run rustfilter stats".into())?;
    let stats_table = Command::new(&rustfilter)
        .args(["stats", "--name", "rustfilter", "--modules-config"])
        .arg(&modules)
        .output()
        .or_fail(|| "cannot run rustfilter stats".into())?;
    let json = String::from_utf8_lossy(&stats_json.stdout).into_owned();
    let accepted = tally.ok.load(Ordering::Relaxed) + fill.ok.load(Ordering::Relaxed);
    let greylisted =
        tally.greylisted.load(Ordering::Relaxed) + fill.greylisted.load(Ordering::Relaxed);
    check_stats(&json, accepted, greylisted, &mut problems);

    let (status, stop_took) = daemon.stop(Duration::from_secs(20))?;
    if !status.success() {
        problems.push(format!("the daemon exited with {status}"));
    }
    if !daemon.leftover_workers().is_empty() {
        problems.push(format!(
            "workers left running: {:?}",
            daemon.leftover_workers()
        ));
    }
    let (log_lines, unexpected) = scan_log(&log)?;
    if !unexpected.is_empty() {
        problems.push(format!(
            "{} unexpected log lines, e.g.:\n    {}",
            unexpected.len(),
            unexpected
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n    ")
        ));
    }
    let store_size = fs::metadata(state.join("ttldb.sqlite")).map_or(0, |m| m.len());

    // Report.
    let total = sent.load(Ordering::Relaxed);
    println!("\n## Result\n");
    println!(
        "{total} messages in {:.1} s: {:.0} msg/s at C={} with {} workers; {} `200 Ok`, {} \
         greylisted (new triplets), {} unexpected; stopped in {:.0} ms; {} log lines; SQLite \
         store {:.1} MiB",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64(),
        opts.concurrency,
        opts.workers,
        tally.ok.load(Ordering::Relaxed),
        tally.greylisted.load(Ordering::Relaxed),
        tally.other.load(Ordering::Relaxed),
        stop_took.as_secs_f64() * 1000.0,
        log_lines,
        store_size as f64 / 1048576.0
    );
    let growth = judge(opts, &pids, &samples, &mut problems);
    println!("\n{growth}");
    println!("## rustfilter stats at the end\n");
    println!("```");
    print!("{}", String::from_utf8_lossy(&stats_table.stdout));
    println!("```");
    println!("\n## Samples (all processes summed)\n");
    println!("| s | messages | RSS KiB | fds |");
    println!("| ---: | ---: | ---: | ---: |");
    for s in &samples {
        println!(
            "| {:.1} | {} | {} | {} |",
            s.elapsed.as_secs_f64(),
            s.sent,
            s.readings.values().map(|r| r.rss_kib).sum::<u64>(),
            s.readings.values().map(|r| r.fds).sum::<usize>()
        );
    }
    if problems.is_empty() {
        println!("\nsoak passed: zero errors; RSS and open descriptors flat");
        Ok(true)
    } else {
        println!("\nsoak FAILED:");
        for p in &problems {
            println!("  - {p}");
        }
        Ok(false)
    }
}

/// The per-process table and the flatness verdicts (appended to `problems`).
fn judge(opts: &Options, pids: &[u32], samples: &[Sample], problems: &mut Vec<String>) -> String {
    let warm = opts.messages / 10;
    let half = opts.messages / 2;
    // The first sample after 10% (the table's "after 10%") and after half of the messages.
    let at = |n: usize| {
        samples
            .iter()
            .find(|s| s.sent >= n)
            .unwrap_or(&samples[samples.len() - 1])
    };
    let (first, warmed, middle, last) =
        (&samples[0], at(warm), at(half), &samples[samples.len() - 1]);
    let mut out = String::from(
        "| process | RSS KiB start | after 10% | at 50% | end | peak | anon KiB start | at 50% | end | fds start | after 10% | end | max 0–50% | max 50–100% |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (i, pid) in pids.iter().enumerate() {
        let r = |s: &Sample| s.readings.get(pid).copied();
        let (Some(r0), Some(rw), Some(rm), Some(re)) = (r(first), r(warmed), r(middle), r(last))
        else {
            problems.push(format!("process {pid} has missing samples"));
            continue;
        };
        let peak = samples
            .iter()
            .filter_map(|s| r(s).map(|x| x.rss_kib))
            .max()
            .unwrap_or(0);
        let max_fds = |from: usize, to: usize| {
            samples
                .iter()
                .filter(|s| s.sent >= from && s.sent <= to)
                .filter_map(|s| r(s).map(|x| x.fds))
                .max()
                .unwrap_or(0)
        };
        let fds_first = max_fds(0, half.saturating_sub(1));
        let fds_second = max_fds(half, usize::MAX);
        let name = if i == 0 {
            format!("master {pid}")
        } else {
            format!("worker {pid}")
        };
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {peak} | {} | {} | {} | {} | {} | {} | {fds_first} | {fds_second} |\n",
            r0.rss_kib,
            rw.rss_kib,
            rm.rss_kib,
            re.rss_kib,
            r0.anon_kib,
            rm.anon_kib,
            re.anon_kib,
            r0.fds,
            rw.fds,
            re.fds
        ));
        let grew = re.rss_kib.saturating_sub(rm.rss_kib);
        if grew > opts.max_rss_growth_kib {
            problems.push(format!(
                "{name}: RSS grew {grew} KiB in the second half ({} → {} KiB; allowed {})",
                rm.rss_kib, re.rss_kib, opts.max_rss_growth_kib
            ));
        }
        if fds_second > fds_first + FD_SLACK {
            problems.push(format!(
                "{name}: open descriptors rose from at most {fds_first} (first half) to \
                 {fds_second} (second half)"
            ));
        }
    }
    out
}

/// `rustfilter stats --json`: no module reported an error, and the reply counts match.
fn check_stats(json: &str, accepted: usize, greylisted: usize, problems: &mut Vec<String>) {
    // The JSON is rustfilter's own, one line: find each module's object and its counts.
    let Some(modules) = json.split_once("\"modules\":[").map(|(_, m)| m) else {
        problems.push(format!(
            "rustfilter stats --json printed no modules: {json:?}"
        ));
        return;
    };
    let count = |object: &str, decision: &str| -> Option<u64> {
        let key = format!("\"{decision}\":{{\"since_start\":");
        let rest = object.split_once(&key)?.1;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let mut seen = 0;
    for object in modules.split("{\"module\":").skip(1) {
        seen += 1;
        let name = object.split('"').nth(1).unwrap_or("?");
        match count(object, "error") {
            Some(0) => {}
            Some(n) => problems.push(format!("rustfilter stats: {name} had {n} errors")),
            None => problems.push(format!("rustfilter stats: no error count for {name}")),
        }
        if name == "(reply)" {
            let got = (
                count(object, "accept"),
                count(object, "tempfail"),
                count(object, "reject"),
            );
            let want = (Some(accepted as u64), Some(greylisted as u64), Some(0));
            if got != want {
                problems.push(format!(
                    "rustfilter stats counts accept/tempfail/reject {got:?}, the clients saw {want:?}"
                ));
            }
        }
    }
    if seen != 1 + CHAIN.lines().count() {
        problems.push(format!("rustfilter stats lists {seen} rows: {json}"));
    }
}

/// Count the log's lines and return those that are not the daemon's start and stop lines, a
/// greylisting reject line or an accounting line.
fn scan_log(log: &PathBuf) -> Result<(usize, Vec<String>)> {
    let file = fs::File::open(log).or_fail(|| format!("cannot open {}", log.display()))?;
    let mut lines = 0;
    let mut unexpected = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.or_fail(|| format!("cannot read {}", log.display()))?;
        lines += 1;
        let expected = line.starts_with("CPU TIME ACCOUNTING: ")
            || (line.starts_with("rustfilter greylist reject,from=<")
                && line.contains(": 451 4.7.1 Greylisting in action"))
            || line.starts_with("rustfilter starting: ")
            || line.starts_with("rustfilter: ready, ")
            || line == "rustfilter: stdin closed, shutting down"
            || line.ends_with(" initialized");
        if !expected && unexpected.len() < 1000 {
            unexpected.push(line);
        }
    }
    Ok((lines, unexpected))
}
