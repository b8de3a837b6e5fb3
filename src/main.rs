//! The command line (lexopt): `rustfilter` (serve; what courierfilter runs), `rustfilter check`,
//! `rustfilter check-config`, `rustfilter ttldb import|dump|purge`, `rustfilter dns`, `rustfilter spf`,
//! `rustfilter quarantine release|purge|list`, `rustfilter dropmsg`, `rustfilter stats`. Exit statuses follow
//! sysexits (DECISIONS §9).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use rustfilter::chain::{Chain, Decision};
use rustfilter::config::{
    ChainConfig, ConfigError, ConfigPaths, ModulesConfig, find_chain_file, find_modules_file,
};
use rustfilter::courier::control::Envelope;
use rustfilter::courier::message::Message;
use rustfilter::courier::{Courier, CourierPaths, PathOverrides};
use rustfilter::daemon::{self, Limits, ServeOptions};
use rustfilter::logging;
use rustfilter::quarantine::dropmsg::Criteria;
use rustfilter::quarantine::{Quarantine, QuarantineConfig, ReleaseOutcome};
use rustfilter::server::{ChainHandler, DeferringHandler};
use rustfilter::stats;
use rustfilter::store::{Store, StoreConfig, StoreError};

const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_NOINPUT: u8 = 66;
const EX_OSERR: u8 = 71;
const EX_IOERR: u8 = 74;
const EX_TEMPFAIL: u8 = 75;
const EX_CONFIG: u8 = 78;

const USAGE: &str = "\
Usage: rustfilter [OPTIONS]                        serve (run by courierfilter)
       rustfilter check [OPTIONS] DATA CONTROL...  run the chain once on copies of a message
       rustfilter check-config [OPTIONS]           validate the configuration
       rustfilter ttldb import [OPTIONS] DIR       copy pythonfilter's GDBM TtlDb files from DIR
                                                   into the configured store
       rustfilter ttldb dump [OPTIONS] NAME        print a TtlDb table: '<key> <value>' lines
       rustfilter ttldb purge [OPTIONS]            delete expired entries of the chain's tables now
       rustfilter dns [OPTIONS] TYPE NAME          look NAME up as the filter would (TYPE: A, AAAA,
                                                   TXT, MX, PTR, CNAME, NS; PTR takes an IP address)
       rustfilter spf [OPTIONS] --ip IP --sender ADDR [--helo NAME]
                                                   the SPF result (RFC 7208) for a client and
                                                   MAIL FROM (empty: the HELO name's), as the
                                                   spfcheck and whitelist_spf modules see it
       rustfilter quarantine release [ID ADDRESS]  release a held message to ADDRESS (default:
                                                   $DEFAULT and $SENDER, as a .courier alias
                                                   delivery sets them)
       rustfilter quarantine purge [OPTIONS]       remove held messages older than [quarantine] days
       rustfilter quarantine list [OPTIONS]        list the held messages
       rustfilter dropmsg [-a USER] [-i IP] [-s ADDRESS]
                                                   move matching messages out of Courier's queue
       rustfilter stats [--json] [OPTIONS]         what each module decided since the filter
                                                   started, in the last hour and the last day
       rustfilter --version | --help

Options:
  --config FILE          the chain file (default: first rustfilter.conf, else pythonfilter.conf,
                         in /etc, /usr/local/etc, Courier's sysconfdir)
  --modules-config FILE  the modules file (default: rustfilter-modules.conf, else
                         pythonfilter-modules.conf, in the same places)
  --name NAME            socket name and log ident (default: the program's file name)
  --workers N            number of worker processes (default: [rustfilter] workers, or 4)
  --sysconfdir DIR       Courier's sysconfdir (default: from courier-config)
  --localstatedir DIR    Courier's localstatedir (default: from courier-config)
  --syslog               log to syslog (facility mail) instead of stderr
  --nameserver HOST:PORT dns, spf: ask this name server (repeatable), not those of [dns]
  --ip IP, --sender ADDR, --helo NAME
                         spf: the client's address, the MAIL FROM address, the HELO name
  --json                 stats: print JSON instead of a table
";

#[derive(Debug, PartialEq)]
enum Command {
    Serve,
    Check {
        data: PathBuf,
        controls: Vec<PathBuf>,
    },
    CheckConfig,
    Ttldb(TtldbCommand),
    Dns {
        qtype: String,
        name: String,
    },
    Spf {
        ip: std::net::IpAddr,
        sender: String,
        helo: Option<String>,
    },
    Quarantine(QuarantineCommand),
    Dropmsg(Criteria),
    Stats {
        json: bool,
    },
    Version,
    Help,
}

#[derive(Debug, PartialEq)]
enum QuarantineCommand {
    /// `Some((id, address))` from the command line; `None`: $DEFAULT and $SENDER.
    Release(Option<(String, String)>),
    Purge,
    List,
}

#[derive(Debug, PartialEq)]
enum TtldbCommand {
    Import(PathBuf),
    Dump(String),
    Purge,
}

#[derive(Debug, Default)]
struct Options {
    config: Option<PathBuf>,
    modules_config: Option<PathBuf>,
    name: Option<String>,
    workers: Option<usize>,
    overrides: PathOverrides,
    syslog: bool,
    /// `--nameserver` (dns only).
    nameservers: Vec<String>,
}

fn parse_args(
    args: impl IntoIterator<Item = OsString>,
) -> Result<(Command, Options), lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(reference_spelling(args.into_iter().collect()));
    let mut opts = Options::default();
    let mut subcommand: Option<String> = None;
    let mut positional: Vec<PathBuf> = Vec::new();
    // spf's --ip, --sender, --helo.
    let mut spf_ip: Option<std::net::IpAddr> = None;
    let mut spf_sender: Option<String> = None;
    let mut spf_helo: Option<String> = None;
    // dropmsg's -a, -i, -s.
    let mut drop = Criteria::default();
    let mut json = false;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("config") => opts.config = Some(parser.value()?.into()),
            Long("modules-config") => opts.modules_config = Some(parser.value()?.into()),
            Long("name") => opts.name = Some(parser.value()?.string()?),
            Long("workers") => {
                let n: usize = parser.value()?.parse()?;
                if !(1..=256).contains(&n) {
                    return Err("--workers must be between 1 and 256".into());
                }
                opts.workers = Some(n);
            }
            Long("sysconfdir") => opts.overrides.sysconfdir = Some(parser.value()?.into()),
            Long("localstatedir") => opts.overrides.localstatedir = Some(parser.value()?.into()),
            Long("syslog") => opts.syslog = true,
            Long("nameserver") => opts.nameservers.push(parser.value()?.string()?),
            Long("ip") => spf_ip = Some(parser.value()?.parse()?),
            Long("sender") => spf_sender = Some(parser.value()?.string()?),
            Long("helo") => spf_helo = Some(parser.value()?.string()?),
            Long("json") => json = true,
            Short('a') => drop.auth.push(parser.value()?.string()?),
            Short('i') => drop.ips.push(parser.value()?.string()?),
            Short('s') => drop.senders.push(parser.value()?.string()?),
            Long("version") | Short('V') => return Ok((Command::Version, opts)),
            Long("help") | Short('h') => return Ok((Command::Help, opts)),
            Value(v) if subcommand.is_none() && positional.is_empty() => {
                let word = v.string()?;
                match word.as_str() {
                    "check" | "check-config" | "ttldb" | "dns" | "spf" | "quarantine"
                    | "dropmsg" | "stats" => subcommand = Some(word),
                    _ => return Err(format!("unknown command '{word}'").into()),
                }
            }
            Value(v) => positional.push(v.into()),
            _ => return Err(arg.unexpected()),
        }
    }
    if !opts.nameservers.is_empty() && !matches!(subcommand.as_deref(), Some("dns" | "spf")) {
        return Err("--nameserver is only for the dns and spf commands".into());
    }
    if (spf_ip.is_some() || spf_sender.is_some() || spf_helo.is_some())
        && subcommand.as_deref() != Some("spf")
    {
        return Err("--ip, --sender and --helo are only for the spf command".into());
    }
    if !drop.is_empty() && subcommand.as_deref() != Some("dropmsg") {
        return Err("-a, -i and -s are only for the dropmsg command".into());
    }
    if json && subcommand.as_deref() != Some("stats") {
        return Err("--json is only for the stats command".into());
    }
    let command = match subcommand.as_deref() {
        None => Command::Serve,
        Some("check-config") if positional.is_empty() => Command::CheckConfig,
        Some("check") if positional.len() >= 2 => {
            let data = positional.remove(0);
            Command::Check {
                data,
                controls: positional,
            }
        }
        Some("check") => return Err("check needs a data file and at least one control file".into()),
        Some("ttldb") => Command::Ttldb(parse_ttldb(positional)?),
        Some("dns") if positional.len() == 2 => {
            let mut words = positional
                .into_iter()
                .map(|p| p.to_string_lossy().into_owned());
            let qtype = words.next().unwrap_or_default();
            let name = words.next().unwrap_or_default();
            Command::Dns { qtype, name }
        }
        Some("dns") => return Err("dns needs a record type and a name".into()),
        Some("spf") if positional.is_empty() => {
            let (Some(ip), Some(sender)) = (spf_ip, spf_sender) else {
                return Err("spf needs --ip and --sender".into());
            };
            if sender.is_empty() && spf_helo.as_deref().is_none_or(str::is_empty) {
                return Err("spf: an empty --sender needs --helo".into());
            }
            Command::Spf {
                ip,
                sender,
                helo: spf_helo,
            }
        }
        Some("quarantine") => Command::Quarantine(parse_quarantine(positional)?),
        Some("dropmsg") if !positional.is_empty() => {
            return Err("dropmsg takes no arguments besides -a, -i and -s".into());
        }
        Some("dropmsg") if drop.is_empty() => {
            return Err("dropmsg needs at least one of -a, -i, -s".into());
        }
        Some("dropmsg") => Command::Dropmsg(drop),
        Some("stats") if positional.is_empty() => Command::Stats { json },
        Some(_) => return Err("unexpected arguments".into()),
    };
    Ok((command, opts))
}

/// `ttldb import DIR`, `ttldb dump NAME`, `ttldb purge`.
fn parse_ttldb(words: Vec<PathBuf>) -> Result<TtldbCommand, lexopt::Error> {
    let mut words = words.into_iter();
    let action = words.next().map(|w| w.to_string_lossy().into_owned());
    let arg = words.next();
    if words.next().is_some() {
        return Err("ttldb: too many arguments".into());
    }
    match (action.as_deref(), arg) {
        (Some("import"), Some(dir)) => Ok(TtldbCommand::Import(dir)),
        (Some("dump"), Some(name)) => {
            let name = name.to_string_lossy().into_owned();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("ttldb dump: '{name}' is not a table name").into());
            }
            Ok(TtldbCommand::Dump(name))
        }
        (Some("purge"), None) => Ok(TtldbCommand::Purge),
        _ => Err("ttldb needs 'import DIR', 'dump NAME' or 'purge'".into()),
    }
}

/// `quarantine release [ID ADDRESS]`, `quarantine purge`, `quarantine list`.
fn parse_quarantine(words: Vec<PathBuf>) -> Result<QuarantineCommand, lexopt::Error> {
    let words: Vec<String> = words
        .into_iter()
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["release"] => Ok(QuarantineCommand::Release(None)),
        ["release", id, address] => Ok(QuarantineCommand::Release(Some((
            id.to_string(),
            address.to_string(),
        )))),
        ["purge"] => Ok(QuarantineCommand::Purge),
        ["list"] => Ok(QuarantineCommand::List),
        _ => Err("quarantine needs 'release [ID ADDRESS]', 'purge' or 'list'".into()),
    }
}

/// The reference's spelling, `-release` / `-purge` (pythonfilter-quarantine), after
/// `quarantine`: lexopt would take them for bundles of short options.
fn reference_spelling(args: Vec<OsString>) -> Vec<OsString> {
    let mut after_quarantine = false;
    args.into_iter()
        .map(|a| {
            let out = match a.to_str() {
                Some("-release") if after_quarantine => OsString::from("release"),
                Some("-purge") if after_quarantine => OsString::from("purge"),
                _ => a,
            };
            after_quarantine = out == "quarantine";
            out
        })
        .collect()
}

/// The filter's name: `--name`, else the file name courierfilter ran us as.
fn filter_name(opts: &Options) -> String {
    if let Some(name) = &opts.name {
        return name.clone();
    }
    std::env::args_os()
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "rustfilter".to_string())
}

/// Whether courierfilter gave us fd 3 (closed to signal readiness).
fn fd3_is_open() -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    unsafe { libc::fcntl(3, libc::F_GETFD) != -1 }
}

/// Everything the configuration yields: the chain, or every error found.
struct Loaded {
    courier: Courier,
    chain: Result<Chain, Vec<ConfigError>>,
    description: String,
}

fn load(opts: &Options, name: &str) -> Loaded {
    let courier = Courier::new(CourierPaths::discover(&opts.overrides));
    let dirs = ConfigPaths::standard(courier.sysconfdir());
    let chain_path = match &opts.config {
        Some(p) => Some(p.clone()),
        None => find_chain_file(&dirs).map(|(p, fallback)| {
            if fallback {
                log::info!("using pythonfilter's chain file {}", p.display());
            }
            p
        }),
    };
    let modules_path = match &opts.modules_config {
        Some(p) => Some(p.clone()),
        None => find_modules_file(&dirs).map(|(p, fallback)| {
            if fallback {
                log::info!("using pythonfilter's modules file {}", p.display());
            }
            p
        }),
    };
    let description = format!(
        "chain {}, modules {}",
        chain_path
            .as_deref()
            .map_or("(none)".into(), |p| p.display().to_string()),
        modules_path
            .as_deref()
            .map_or("(none)".into(), |p| p.display().to_string())
    );
    let chain = (|| {
        let Some(chain_path) = chain_path else {
            let searched: Vec<String> = dirs.dirs.iter().map(|d| d.display().to_string()).collect();
            return Err(vec![ConfigError::new(format!(
                "no rustfilter.conf or pythonfilter.conf in any of: {}",
                searched.join(", ")
            ))]);
        };
        let chain_cfg = ChainConfig::load(&chain_path).map_err(|e| vec![e])?;
        let modules_cfg = match &modules_path {
            Some(p) => ModulesConfig::load(p).map_err(|e| vec![e])?,
            None => ModulesConfig::empty(),
        };
        Chain::build(name, &chain_cfg, &modules_cfg, &courier)
    })();
    Loaded {
        courier,
        chain,
        description,
    }
}

fn serve(opts: &Options, name: &str) -> ExitCode {
    let ready_fd = fd3_is_open().then_some(3);
    let loaded = load(opts, name);
    let localstatedir = loaded.courier.localstatedir().to_path_buf();
    // Before the fork: the workers inherit it. Without it spool files open by full path.
    if let Err(e) = rustfilter::courier::spool::hold_tmp_dir(&localstatedir) {
        log::debug!("{name}: {}/tmp: {e}", localstatedir.display());
    }
    let mut serve_opts = ServeOptions {
        name: name.to_string(),
        localstatedir,
        workers: opts.workers.unwrap_or(4),
        limits: Limits::default(),
        ready_fd,
        reminder: None,
    };
    let result = match loaded.chain {
        Ok(mut chain) => {
            serve_opts.workers = opts.workers.unwrap_or(chain.settings.workers);
            // Before the fork: the workers inherit the mapping.
            chain.stats = open_stats(name, &chain);
            log::info!(
                "{name} starting: {} modules ({}), {} workers",
                chain.links.len(),
                loaded.description,
                serve_opts.workers
            );
            daemon::serve(
                &serve_opts,
                ChainHandler {
                    chain,
                    courier: loaded.courier,
                },
            )
        }
        Err(errors) => {
            for e in &errors {
                log::error!("{name}: configuration error: {e}");
            }
            if ready_fd.is_none() {
                return ExitCode::from(EX_CONFIG);
            }
            let first = errors.first().map(|e| e.to_string()).unwrap_or_default();
            log::error!(
                "{name}: deferring all mail until the configuration is fixed and {name} restarted"
            );
            serve_opts.workers = 1;
            serve_opts.reminder = Some((
                Duration::from_secs(60),
                format!("{name}: configuration error, all mail is being deferred: {first}"),
            ));
            daemon::serve(&serve_opts, DeferringHandler)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(EX_OSERR)
        }
    }
}

/// The counters of `rustfilter stats`: `<state dir>/<name>.stats`. Without them the filter
/// still runs (a warning says why).
fn open_stats(name: &str, chain: &Chain) -> Option<stats::Board> {
    let dir = stats::stats_dir(chain.store.config());
    let Some(path) = stats::stats_path(&dir, name) else {
        log::warn!("{name}: no statistics for 'rustfilter stats': the name is not a file name");
        return None;
    };
    let modules: Vec<&str> = chain.links.iter().map(|l| &*l.name).collect();
    match stats::Board::create(&path, &modules) {
        Ok(board) => Some(board),
        Err(e) => {
            log::warn!(
                "{name}: no statistics for 'rustfilter stats': cannot create {}: {e}",
                path.display()
            );
            None
        }
    }
}

/// `stats [--json]`: the live counters of the daemon called `name`, found where it keeps them
/// (the modules file's `[ttldb] dir`, else /var/lib/rustfilter).
fn stats(opts: &Options, name: &str, json: bool) -> ExitCode {
    let config = match store_config(opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let dir = stats::stats_dir(&config);
    let Some(path) = stats::stats_path(&dir, name) else {
        eprintln!("rustfilter stats: '{name}' is not a filter name (see --name)");
        return ExitCode::from(EX_USAGE);
    };
    match stats::Snapshot::read(&path, stats::now_secs()) {
        Ok(snapshot) => {
            let running = snapshot.running();
            if json {
                print!("{}", snapshot.json(running));
            } else {
                print!("{}", snapshot.table(running));
            }
            ExitCode::SUCCESS
        }
        Err(stats::SnapshotError::Open(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "rustfilter stats: no statistics at {}: has the filter '{name}' been started \
                 (with this modules file and --name)?",
                path.display()
            );
            ExitCode::from(EX_NOINPUT)
        }
        Err(stats::SnapshotError::Open(e)) => {
            eprintln!("rustfilter stats: {}: {e}", path.display());
            ExitCode::from(EX_NOINPUT)
        }
        Err(e) => {
            eprintln!("rustfilter stats: {e}");
            ExitCode::from(EX_DATAERR)
        }
    }
}

fn check_config(opts: &Options, name: &str) -> ExitCode {
    let loaded = load(opts, name);
    match loaded.chain {
        Ok(chain) => {
            let names: Vec<&str> = chain.links.iter().map(|l| &*l.name).collect();
            println!("configuration OK: {}", loaded.description);
            println!(
                "chain: {}",
                if names.is_empty() {
                    "(empty: every message gets 200 Ok)".to_string()
                } else {
                    names.join(", ")
                }
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            ExitCode::from(EX_CONFIG)
        }
    }
}

/// The modules file alone (`--modules-config`, else the one discovery finds, else none), for
/// the sub-commands that need a library section but not the chain.
fn modules_file(opts: &Options) -> Result<ModulesConfig, ConfigError> {
    let courier = Courier::new(CourierPaths::discover(&opts.overrides));
    let dirs = ConfigPaths::standard(courier.sysconfdir());
    let path = match &opts.modules_config {
        Some(p) => Some(p.clone()),
        None => find_modules_file(&dirs).map(|(p, _)| p),
    };
    match path {
        Some(p) => ModulesConfig::load(&p),
        None => Ok(ModulesConfig::empty()),
    }
}

/// The store the modules file's `[ttldb]` section configures (the chain file is not needed).
fn store_config(opts: &Options) -> Result<StoreConfig, ConfigError> {
    StoreConfig::from_config(&modules_file(opts)?)
}

/// Where the store is, for messages.
fn describe_store(config: &StoreConfig) -> String {
    match config {
        StoreConfig::Sqlite { path } => format!("SQLite {}", path.display()),
        StoreConfig::Postgres(pg) => {
            format!("PostgreSQL {}@{}:{}/{}", pg.user, pg.host, pg.port, pg.db)
        }
    }
}

fn store_failed(store: &Store, e: &StoreError) -> ExitCode {
    // The backends' messages usually name the store already.
    let text = e.to_string();
    let named = match store.config() {
        StoreConfig::Sqlite { path } => text.contains(&*path.to_string_lossy()),
        StoreConfig::Postgres(pg) => text.contains(&format!("{}:{}", pg.host, pg.port)),
    };
    if named {
        eprintln!("rustfilter ttldb: {text}");
    } else {
        eprintln!(
            "rustfilter ttldb: {}: {text}",
            describe_store(store.config())
        );
    }
    ExitCode::from(EX_TEMPFAIL)
}

fn ttldb(opts: &Options, name: &str, command: &TtldbCommand) -> ExitCode {
    match command {
        TtldbCommand::Import(dir) => ttldb_import(opts, dir),
        TtldbCommand::Dump(table) => ttldb_dump(opts, table),
        TtldbCommand::Purge => ttldb_purge(opts, name),
    }
}

fn open_store(opts: &Options) -> Result<Store, ExitCode> {
    match store_config(opts) {
        Ok(config) => Ok(Store::new(config)),
        Err(e) => {
            eprintln!("{e}");
            Err(ExitCode::from(EX_CONFIG))
        }
    }
}

fn ttldb_import(opts: &Options, dir: &Path) -> ExitCode {
    let mut store = match open_store(opts) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if !dir.is_dir() {
        eprintln!(
            "rustfilter ttldb import: {} is not a directory",
            dir.display()
        );
        return ExitCode::from(EX_NOINPUT);
    }
    match rustfilter::store::import::import_dir(&mut store, dir) {
        Ok(tables) => {
            if tables.is_empty() {
                println!("no pythonfilter TtlDb files in {}", dir.display());
            }
            for t in tables {
                println!(
                    "{}: {} entries imported, {} skipped",
                    t.table, t.entries, t.skipped
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => store_failed(&store, &e),
    }
}

fn ttldb_dump(opts: &Options, table: &str) -> ExitCode {
    let mut store = match open_store(opts) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match store.dump(table) {
        Ok(entries) => {
            let mut out = String::new();
            for (key, value) in entries {
                out.push_str(&format!("{key} {value}\n"));
            }
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => store_failed(&store, &e),
    }
}

/// Purge every TtlDb and counter table of the chain's modules, whatever their intervals.
fn ttldb_purge(opts: &Options, name: &str) -> ExitCode {
    let mut chain = match load(opts, name).chain {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            return ExitCode::from(EX_CONFIG);
        }
    };
    let now = rustfilter::store::now();
    let mut done = std::collections::HashSet::new();
    for link in &chain.links {
        for db in link.filter.ttl_tables() {
            if done.insert(db.name.clone()) {
                match chain.store.purge_now(&db, now) {
                    Ok(n) => println!("{}: {n} expired entries deleted", db.name),
                    Err(e) => return store_failed(&chain.store, &e),
                }
            }
        }
        for counter in link.filter.counters() {
            if done.insert(counter.name.clone()) {
                match chain.store.purge_counters_now(&counter, now) {
                    Ok(n) => println!("{}: {n} old counters deleted", counter.name),
                    Err(e) => return store_failed(&chain.store, &e),
                }
            }
        }
    }
    if done.is_empty() {
        println!("the chain has no module that keeps TtlDb or counter tables");
    }
    ExitCode::SUCCESS
}

/// `dns TYPE NAME`: one lookup with the resolver the modules use (the `[dns]` section, or
/// `--nameserver`), printed as `TYPE name -> value` lines. Exit 0 on an answer (also an
/// empty one, NODATA), 1 on NXDOMAIN, 75 on a server failure or timeout.
fn dns(opts: &Options, qtype_name: &str, name: &str) -> ExitCode {
    use rustfilter::net::dns::{self, DnsError, Resolver};
    let Some(qtype) = dns::type_from_name(qtype_name) else {
        eprintln!(
            "rustfilter dns: unknown record type '{qtype_name}' (use A, AAAA, TXT, MX, PTR, CNAME or NS)"
        );
        return ExitCode::from(EX_USAGE);
    };
    let qname = if qtype == dns::wire::TYPE_PTR {
        match name.parse::<std::net::IpAddr>() {
            Ok(ip) => dns::reverse_name(ip),
            Err(_) => name.to_string(),
        }
    } else {
        name.to_string()
    };
    let config = match resolver_config(opts, "dns") {
        Ok(config) => config,
        Err(code) => return code,
    };
    let type_text = dns::type_name(qtype);
    match Resolver::new(config).resolve(&qname, qtype) {
        Ok(answer) => {
            let mut out = String::new();
            for (alias, target) in &answer.cnames {
                out.push_str(&format!("CNAME {alias} -> {target}\n"));
            }
            for record in &answer.records {
                out.push_str(&format!("{type_text} {} -> {record}\n", answer.name));
            }
            print!("{out}");
            if answer.records.is_empty() {
                eprintln!(
                    "rustfilter dns: {} has no {type_text} records (NODATA)",
                    answer.name
                );
            }
            ExitCode::SUCCESS
        }
        Err(DnsError::NxDomain) => {
            eprintln!("rustfilter dns: {qname}: no such name (NXDOMAIN)");
            ExitCode::from(1)
        }
        Err(DnsError::Other(msg)) if msg.contains("not a valid domain name") => {
            eprintln!("rustfilter dns: {msg}");
            ExitCode::from(EX_USAGE)
        }
        Err(e) => {
            eprintln!("rustfilter dns: {qname} {type_text}: {e}");
            ExitCode::from(EX_TEMPFAIL)
        }
    }
}

/// The resolver settings of the `dns` and `spf` commands: the `--nameserver`s if given (with
/// /etc/resolv.conf's timeout and attempts), else the modules file's `[dns]` section.
fn resolver_config(
    opts: &Options,
    command: &str,
) -> Result<rustfilter::net::dns::ResolverConfig, ExitCode> {
    use rustfilter::net::dns::{self, ResolverConfig};
    if opts.nameservers.is_empty() {
        let modules = modules_file(opts).map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(EX_CONFIG)
        })?;
        ResolverConfig::from_config(&modules).map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(EX_CONFIG)
        })
    } else {
        let mut config = ResolverConfig::from_resolv_conf(Path::new(ResolverConfig::RESOLV_CONF));
        config.nameservers.clear();
        for ns in &opts.nameservers {
            match dns::parse_nameserver(ns) {
                Ok(addr) => config.nameservers.push(addr),
                Err(e) => {
                    eprintln!("rustfilter {command}: --nameserver: {e}");
                    return Err(ExitCode::from(EX_USAGE));
                }
            }
        }
        Ok(config)
    }
}

/// `spf --ip IP --sender ADDR [--helo NAME]`: the SPF result as `spfquery` prints it — the
/// result, then the explanation (for `fail`), then why. Exit 0 when a result was reached
/// (whatever it is), 75 on `temperror`.
fn spf(opts: &Options, ip: std::net::IpAddr, sender: &str, helo: Option<&str>) -> ExitCode {
    use rustfilter::net::dns::Resolver;
    use rustfilter::net::spf::{SpfOptions, Verdict, check_mail_from};
    let config = match resolver_config(opts, "spf") {
        Ok(config) => config,
        Err(code) => return code,
    };
    let spf_options = SpfOptions::default();
    let mut resolver = Resolver::new(config);
    resolver.set_deadline(std::time::Instant::now() + spf_options.time_limit);
    let helo = helo.unwrap_or("unknown");
    let result = check_mail_from(&mut resolver, ip, sender, helo, &spf_options);
    println!("{}", result.verdict);
    if let Some(explanation) = &result.explanation {
        println!("{explanation}");
    }
    println!("spf: {}", result.detail);
    if result.verdict == Verdict::TempError {
        return ExitCode::from(EX_TEMPFAIL);
    }
    ExitCode::SUCCESS
}

/// A private temporary directory for `check`'s copies.
fn temp_dir() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir();
    for attempt in 0..100u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = base.join(format!(
            "rustfilter-check-{}-{nanos}-{attempt}",
            std::process::id()
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("cannot create a temporary directory"))
}

/// The modules file's `[quarantine]` section (the chain file is not needed).
fn quarantine_config(opts: &Options) -> Result<QuarantineConfig, ConfigError> {
    QuarantineConfig::from_config(&modules_file(opts)?)
}

/// Run as root (cron, an administrator): become the owner of the quarantine directory, so
/// the index and its journal stay writable for the filter, which runs as Courier's user.
fn become_owner_of(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    if meta.uid() == 0 {
        return Ok(());
    }
    // SAFETY: plain system calls on integers; each result is checked.
    let failed = unsafe {
        libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(meta.gid()) != 0
            || libc::setuid(meta.uid()) != 0
    };
    if failed {
        return Err(format!(
            "cannot switch to uid {} gid {} (the owner of {}): {}",
            meta.uid(),
            meta.gid(),
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// `quarantine release|purge|list`. Release statuses are for Courier's .courier delivery:
/// 0 done (also when the failure notice went out), 75 try again later, 78 set-up error.
fn quarantine(opts: &Options, command: &QuarantineCommand) -> ExitCode {
    let config = match quarantine_config(opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if let Err(e) = become_owner_of(&config.dir) {
        eprintln!("rustfilter quarantine: {e}");
        return ExitCode::from(EX_OSERR);
    }
    let q = Quarantine::new(config);
    match command {
        QuarantineCommand::Release(given) => {
            let (id, requester) = match given {
                Some(pair) => pair.clone(),
                None => {
                    let mut vars = Vec::new();
                    for var in ["DEFAULT", "SENDER"] {
                        match std::env::var(var) {
                            Ok(v) => vars.push(v),
                            Err(_) => {
                                eprintln!("Could not find the {var} environment variable.");
                                eprintln!("See rustfilter-quarantine(8) for the proper setup.");
                                return ExitCode::from(EX_CONFIG);
                            }
                        }
                    }
                    drain_stdin();
                    let requester = vars.pop().unwrap_or_default();
                    (vars.pop().unwrap_or_default(), requester)
                }
            };
            let courier = Courier::new(CourierPaths::discover(&opts.overrides));
            match q.release(&courier, &id, &requester) {
                Ok(ReleaseOutcome::Released) => {
                    println!("released {id} to <{requester}>");
                    ExitCode::SUCCESS
                }
                Ok(ReleaseOutcome::Refused(why)) => {
                    println!("not released ({why}); the failure notice was sent to <{requester}>");
                    ExitCode::SUCCESS
                }
                Ok(ReleaseOutcome::Ignored) => {
                    println!("a request from the null sender is ignored");
                    ExitCode::SUCCESS
                }
                Err(e) if !rustfilter::courier::sendmail::valid_address(&requester, true) => {
                    eprintln!("rustfilter quarantine release: {e}");
                    ExitCode::from(EX_DATAERR)
                }
                Err(e) => {
                    eprintln!("rustfilter quarantine release: {e}");
                    ExitCode::from(EX_TEMPFAIL)
                }
            }
        }
        QuarantineCommand::Purge => match q.purge() {
            Ok(n) => {
                println!("{n} quarantined messages purged");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rustfilter quarantine purge: {e}");
                ExitCode::from(EX_TEMPFAIL)
            }
        },
        QuarantineCommand::List => match q.list() {
            Ok(items) => {
                use rustfilter::quarantine::notice::timestamp;
                let mut out = String::new();
                for item in items {
                    out.push_str(&format!(
                        "{} {} from <{}>: {}\n",
                        item.id,
                        timestamp(item.time),
                        item.sender,
                        item.explanation.replace('\n', " ")
                    ));
                    for (r, released) in &item.recipients {
                        if *released == 0 {
                            out.push_str(&format!("    to <{}> held\n", r.addr));
                        } else {
                            out.push_str(&format!(
                                "    to <{}> released {}\n",
                                r.addr,
                                timestamp(*released)
                            ));
                        }
                    }
                }
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rustfilter quarantine list: {e}");
                ExitCode::from(EX_TEMPFAIL)
            }
        },
    }
}

/// Courier writes the message (here: the forwarded notice) to a delivery program's stdin; read
/// and discard it, bounded, so Courier never sees a broken pipe. Not from a terminal.
fn drain_stdin() {
    use std::io::Read;
    // SAFETY: isatty only queries the descriptor.
    if unsafe { libc::isatty(0) } == 1 {
        return;
    }
    let _ = std::io::copy(
        &mut std::io::stdin().lock().take(64 * 1024 * 1024),
        &mut std::io::sink(),
    );
}

/// dropmsg's usage text, with Courier's localstatedir (from `--localstatedir` if given).
fn dropmsg_usage(args: &[OsString]) -> String {
    let mut overrides = PathOverrides::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--localstatedir" {
            overrides.localstatedir = it.next().map(PathBuf::from);
        } else if let Some(v) = a.strip_prefix("--localstatedir=") {
            overrides.localstatedir = Some(PathBuf::from(v));
        }
    }
    let paths = CourierPaths::discover(&overrides);
    rustfilter::quarantine::dropmsg::usage(&paths.localstatedir)
}

/// `dropmsg -a/-i/-s …`: 0 when the walk went through, 74 when something could not be
/// moved or read, 66 without a queue.
fn dropmsg(opts: &Options, criteria: &Criteria) -> ExitCode {
    let paths = CourierPaths::discover(&opts.overrides);
    match rustfilter::quarantine::dropmsg::drop_messages(&paths.localstatedir, criteria) {
        Ok(report) => {
            for (control, why) in &report.dropped {
                println!("dropped {} ({why})", control.display());
            }
            for control in &report.vanished {
                println!("skipped {}: it left the queue meanwhile", control.display());
            }
            for e in &report.errors {
                eprintln!("rustfilter dropmsg: {e}");
            }
            println!(
                "{} messages moved to {}",
                report.dropped.len(),
                paths.localstatedir.join("quarantine").display()
            );
            if report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EX_IOERR)
            }
        }
        Err(e) => {
            eprintln!("rustfilter dropmsg: {e}");
            if e.kind() == std::io::ErrorKind::NotFound {
                ExitCode::from(EX_NOINPUT)
            } else {
                ExitCode::from(EX_IOERR)
            }
        }
    }
}

fn check(opts: &Options, name: &str, data: &Path, controls: &[PathBuf]) -> ExitCode {
    let loaded = load(opts, name);
    let mut chain = match loaded.chain {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            return ExitCode::from(EX_CONFIG);
        }
    };
    // Modules may edit the message and control files: work on copies, never on the queue.
    let mut run = || -> std::io::Result<(String, Vec<String>)> {
        let dir = temp_dir()?;
        let result = (|| {
            let copy = |from: &Path, to: &Path| {
                std::fs::copy(from, to)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", from.display())))
            };
            let data_copy = dir.join("D");
            copy(data, &data_copy)?;
            let mut control_copies = Vec::new();
            for (i, c) in controls.iter().enumerate() {
                let c_copy = dir.join(format!("C{i}"));
                copy(c, &c_copy)?;
                control_copies.push(c_copy);
            }
            let mut envelope = Envelope::load(&control_copies)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut message = Message::new(&data_copy);
            let outcome = chain.run(&loaded.courier, &mut envelope, &mut message);
            let mut lines = Vec::new();
            for step in &outcome.steps {
                let what = match &step.decision {
                    Decision::Continue => "no decision".to_string(),
                    Decision::Reply(r) => format!("reply {r:?}"),
                    Decision::Error { error, reply } => match reply {
                        Some(r) => format!("error ({error}) -> reply {r:?}"),
                        None => format!("error ({error}), ignored"),
                    },
                    Decision::WouldReply(r) => format!("dry run, would reply {r:?}"),
                    Decision::Bypassed => "bypassed".to_string(),
                };
                lines.push(format!("{}: {what}", step.module));
            }
            if std::fs::read(&data_copy)? != std::fs::read(data)? {
                lines.push("(the message would be rewritten)".to_string());
            }
            for (orig, copy) in controls.iter().zip(&control_copies) {
                let before = std::fs::read(orig)?;
                let after = std::fs::read(copy)?;
                if after.len() > before.len() && after.starts_with(&before) {
                    for rec in String::from_utf8_lossy(&after[before.len()..]).lines() {
                        lines.push(format!("(would append to {}: {rec})", orig.display()));
                    }
                }
            }
            Ok((outcome.reply, lines))
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    };
    match run() {
        Ok((reply, lines)) => {
            for l in lines {
                println!("{l}");
            }
            println!("reply: {reply}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("check failed: {e}");
            ExitCode::from(EX_OSERR)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let (command, opts) = match parse_args(args.clone()) {
        Ok(parsed) => parsed,
        Err(e) if args.iter().any(|a| a == "dropmsg") => {
            // The reference's dropmsg: the error and the usage on stdout, status 2.
            println!("{e}");
            print!("{}", dropmsg_usage(&args));
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("rustfilter: {e}\n\n{USAGE}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let name = filter_name(&opts);
    match command {
        Command::Version => {
            println!("rustfilter {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let level = log::LevelFilter::Info;
    if opts.syslog {
        logging::init_syslog(&name, level);
    } else {
        logging::init_stderr(&name, level);
    }
    std::panic::set_hook(Box::new(|info| log::error!("internal error: {info}")));
    match command {
        Command::Serve => serve(&opts, &name),
        Command::CheckConfig => check_config(&opts, &name),
        Command::Check { data, controls } => check(&opts, &name, &data, &controls),
        Command::Ttldb(t) => ttldb(&opts, &name, &t),
        Command::Dns { qtype, name } => dns(&opts, &qtype, &name),
        Command::Spf { ip, sender, helo } => spf(&opts, ip, &sender, helo.as_deref()),
        Command::Quarantine(q) => quarantine(&opts, &q),
        Command::Dropmsg(criteria) => dropmsg(&opts, &criteria),
        Command::Stats { json } => stats(&opts, &name, json),
        Command::Version | Command::Help => ExitCode::SUCCESS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<(Command, Options), lexopt::Error> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn commands() {
        assert_eq!(parse(&[]).map(|p| p.0).ok(), Some(Command::Serve));
        assert_eq!(
            parse(&["check-config"]).map(|p| p.0).ok(),
            Some(Command::CheckConfig)
        );
        assert_eq!(
            parse(&["check", "--config", "x", "D", "C1", "C2"])
                .map(|p| p.0)
                .ok(),
            Some(Command::Check {
                data: "D".into(),
                controls: vec!["C1".into(), "C2".into()]
            })
        );
        assert!(parse(&["check", "D"]).is_err());
        assert!(parse(&["bogus"]).is_err());
        assert_eq!(
            parse(&["ttldb", "import", "/var/lib/pythonfilter", "--config", "c"])
                .map(|p| p.0)
                .ok(),
            Some(Command::Ttldb(TtldbCommand::Import(
                "/var/lib/pythonfilter".into()
            )))
        );
        assert_eq!(
            parse(&["ttldb", "dump", "greylist_Passed"])
                .map(|p| p.0)
                .ok(),
            Some(Command::Ttldb(TtldbCommand::Dump("greylist_Passed".into())))
        );
        assert_eq!(
            parse(&["--modules-config", "m", "ttldb", "purge"])
                .map(|p| p.0)
                .ok(),
            Some(Command::Ttldb(TtldbCommand::Purge))
        );
        for bad in [
            &["ttldb"][..],
            &["ttldb", "import"],
            &["ttldb", "purge", "x"],
            &["ttldb", "dump", "a;b"],
            &["ttldb", "dump", "a", "b"],
            &["ttldb", "frob"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse(&[
                "dns",
                "txt",
                "example.test",
                "--nameserver",
                "127.0.0.1:15353"
            ])
            .map(|p| (p.0, p.1.nameservers))
            .ok(),
            Some((
                Command::Dns {
                    qtype: "txt".into(),
                    name: "example.test".into()
                },
                vec!["127.0.0.1:15353".to_string()]
            ))
        );
        assert!(parse(&["dns", "A"]).is_err());
        assert!(parse(&["dns", "A", "b", "c"]).is_err());
        assert!(parse(&["check-config", "--nameserver", "127.0.0.1"]).is_err());
        assert_eq!(
            parse(&[
                "spf",
                "--ip",
                "192.0.2.1",
                "--sender",
                "a@example.com",
                "--nameserver",
                "127.0.0.1:15353"
            ])
            .map(|p| p.0)
            .ok(),
            Some(Command::Spf {
                ip: "192.0.2.1".parse().expect("an address"),
                sender: "a@example.com".into(),
                helo: None
            })
        );
        assert_eq!(
            parse(&[
                "spf",
                "--ip",
                "::1",
                "--sender",
                "",
                "--helo",
                "mx.example.com"
            ])
            .map(|p| p.0)
            .ok(),
            Some(Command::Spf {
                ip: "::1".parse().expect("an address"),
                sender: String::new(),
                helo: Some("mx.example.com".into())
            })
        );
        for bad in [
            &["spf", "--ip", "192.0.2.1"][..],
            &["spf", "--sender", "a@example.com"],
            &["spf", "--ip", "nope", "--sender", "a@b.c"],
            &["spf", "--ip", "192.0.2.1", "--sender", ""],
            &["spf", "--ip", "192.0.2.1", "--sender", "a@b.c", "extra"],
            &["check-config", "--ip", "192.0.2.1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse(&["quarantine", "release"]).map(|p| p.0).ok(),
            Some(Command::Quarantine(QuarantineCommand::Release(None)))
        );
        assert_eq!(
            parse(&["quarantine", "-release"]).map(|p| p.0).ok(),
            Some(Command::Quarantine(QuarantineCommand::Release(None)))
        );
        assert_eq!(
            parse(&["quarantine", "release", "ab", "x@y"])
                .map(|p| p.0)
                .ok(),
            Some(Command::Quarantine(QuarantineCommand::Release(Some((
                "ab".into(),
                "x@y".into()
            )))))
        );
        assert_eq!(
            parse(&["--config", "c", "quarantine", "-purge"])
                .map(|p| p.0)
                .ok(),
            Some(Command::Quarantine(QuarantineCommand::Purge))
        );
        assert_eq!(
            parse(&["quarantine", "list"]).map(|p| p.0).ok(),
            Some(Command::Quarantine(QuarantineCommand::List))
        );
        assert_eq!(
            parse(&[
                "dropmsg", "-a", "bob", "-i", "1.2.3.4", "-s", "x@y", "-s", ""
            ])
            .map(|p| p.0)
            .ok(),
            Some(Command::Dropmsg(Criteria {
                auth: vec!["bob".into()],
                ips: vec!["1.2.3.4".into()],
                senders: vec!["x@y".into(), String::new()],
            }))
        );
        for bad in [
            &["quarantine"][..],
            &["quarantine", "release", "id"],
            &["quarantine", "frob"],
            &["-release"],
            &["dropmsg"],
            &["dropmsg", "x"],
            &["dropmsg", "-x", "1"],
            &["check-config", "-a", "bob"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse(&["stats", "--json", "--name", "rf"])
                .map(|p| p.0)
                .ok(),
            Some(Command::Stats { json: true })
        );
        assert_eq!(
            parse(&["stats"]).map(|p| p.0).ok(),
            Some(Command::Stats { json: false })
        );
        assert!(parse(&["stats", "x"]).is_err());
        assert!(parse(&["check-config", "--json"]).is_err());
        assert!(parse(&["--workers", "0"]).is_err());
        assert!(parse(&["--workers", "x"]).is_err());
        let (_, o) = parse(&["--name", "rf", "--workers", "2", "--syslog"]).expect("parses");
        assert_eq!(
            (o.name.as_deref(), o.workers, o.syslog),
            (Some("rf"), Some(2), true)
        );
    }
}
