//! The policy engine: modules in config order, bypass sets, first decisive reply wins
//! (spec §1.6), the error policy (DECISIONS §3), dry-run, per-module CPU accounting and the
//! reference's reject and accounting log lines (§1.7).

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{ChainConfig, ConfigError, ModulesConfig};
use crate::courier::Courier;
use crate::courier::control::Envelope;
use crate::courier::message::Message;
use crate::filter::{Context, Filter, FilterError, Verdict};
use crate::filters;
use crate::net::dns::{Resolver, ResolverConfig};
use crate::stats::{Board, Kind};
use crate::store::{Store, StoreConfig};

/// The reply when no module decided.
pub const DEFAULT_REPLY: &str = "200 Ok";
/// The reply when the control files cannot be read (the reference's text).
pub const CONTROL_FAILURE_REPLY: &str = "451 Internal failure locating control files";
/// The reply once the per-message deadline has passed.
pub const TIMEOUT_REPLY: &str = "451 4.3.0 Message filtering timed out, try again later";

/// What a module's failure does to the message (`on_error` in its section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// `451 4.3.0 Temporary failure in <module>, try again later` (the default).
    Tempfail,
    /// Log it and go on as if the module had no objection.
    Continue,
}

/// The framework's own settings, from the `[rustfilter]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub workers: usize,
    pub message_timeout: Duration,
}

impl Settings {
    pub const SECTION: &'static str = "rustfilter";

    pub fn from_config(modules: &ModulesConfig) -> Result<Settings, ConfigError> {
        let sec = modules.section(Self::SECTION);
        let workers = sec.int("workers", 4)?;
        if !(1..=256).contains(&workers) {
            return Err(sec.error("workers", "must be between 1 and 256"));
        }
        let timeout = sec.float("message_timeout", 60.0)?;
        if !(timeout > 0.0 && timeout <= 3600.0) {
            return Err(sec.error(
                "message_timeout",
                "must be more than 0 and at most 3600 seconds",
            ));
        }
        sec.finish()?;
        Ok(Settings {
            workers: workers as usize,
            message_timeout: Duration::from_secs_f64(timeout),
        })
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            workers: 4,
            message_timeout: Duration::from_secs(60),
        }
    }
}

/// One entry of the chain.
pub struct Link {
    /// The name as written in the chain file (bypass sets match it). Shared with each
    /// message's [`Step`]s, so recording one copies no text.
    pub name: Arc<str>,
    /// `Some` for `name for a b c` (possibly empty).
    pub bypass: Option<Vec<String>>,
    pub dry_run: bool,
    pub on_error: OnError,
    pub filter: Box<dyn Filter>,
}

/// What happened to one module for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Continue,
    Reply(String),
    /// Failed; `reply` is what the chain used (None: `on_error = 'continue'`).
    Error {
        error: String,
        reply: Option<String>,
    },
    /// `dry_run`: what the module would have replied; the chain went on.
    WouldReply(String),
    /// Skipped because an earlier module's bypass set named it.
    Bypassed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub module: Arc<str>,
    pub decision: Decision,
    pub cpu: Duration,
}

/// The result of running the chain on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The text to send to Courier.
    pub reply: String,
    /// The module whose reply was sent (None: the default `200 Ok`).
    pub decided_by: Option<String>,
    pub steps: Vec<Step>,
    pub total_cpu: Duration,
}

pub struct Chain {
    /// The filter's name (socket name), first word of the reject log line.
    pub name: String,
    pub links: Vec<Link>,
    pub settings: Settings,
    /// This process's handle on the store (connected on first use, after fork).
    pub store: Store,
    /// The resolver modules use (`[dns]`); it holds no sockets between lookups.
    pub dns: Resolver,
    /// The decision counters `rustfilter stats` reads (set by the daemon's master before it
    /// forks; None: not kept, e.g. for `rustfilter check`).
    pub stats: Option<Board>,
    /// The envelope, message and list of steps [`Chain::process`] uses for each message, so
    /// that their memory is reused; boxed, to be taken out and put back without a copy.
    scratch: Option<Box<Scratch>>,
    /// `CpuSplit`'s list, kept between messages.
    cpu_pending: Vec<(usize, Duration)>,
}

/// What [`Chain::process`] fills for each message, kept between messages.
struct Scratch {
    envelope: Envelope,
    message: Message,
    steps: Vec<Step>,
    /// The answered message's outcome, until [`Chain::finish`] logs it.
    answered: Option<Outcome>,
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            envelope: Envelope::default(),
            message: Message::new(std::path::Path::new("")),
            steps: Vec::new(),
            answered: None,
        }
    }
}

impl Chain {
    /// Build every module of the chain from its section, and check the sections of known
    /// modules that are not in the chain too (a typo there is found before it is enabled).
    /// Every error found is returned, not just the first.
    pub fn build(
        name: &str,
        chain: &ChainConfig,
        modules: &ModulesConfig,
        courier: &Courier,
    ) -> Result<Chain, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let settings = Settings::from_config(modules).unwrap_or_else(|e| {
            errors.push(e);
            Settings::default()
        });
        let dns = match ResolverConfig::from_config(modules) {
            Ok(config) => Resolver::new(config),
            Err(e) => {
                errors.push(e);
                Resolver::system()
            }
        };
        let store_config = StoreConfig::from_config(modules).unwrap_or_else(|e| {
            errors.push(e);
            StoreConfig::Sqlite {
                path: StoreConfig::DEFAULT_DIR.into(),
            }
        });
        let mut links = Vec::new();
        for entry in &chain.entries {
            let locate = |msg: String| {
                ConfigError::at(&chain.path, entry.line, msg).with_key(entry.name.clone())
            };
            let Some(build) = filters::constructor(&entry.name) else {
                errors.push(locate(filters::unavailable_reason(&entry.name)));
                continue;
            };
            match build_link(&entry.name, build, modules, courier) {
                Ok((filter, dry_run, on_error)) => links.push(Link {
                    name: entry.name.as_str().into(),
                    bypass: entry.bypass.clone(),
                    dry_run,
                    on_error,
                    filter,
                }),
                Err(e) => errors.push(e),
            }
            if let Some(bypass) = &entry.bypass {
                for target in bypass {
                    if !chain.entries.iter().any(|e| &e.name == target) {
                        log::warn!(
                            "{}:{}: '{}' bypasses '{}', which is not in the chain",
                            chain.path.display(),
                            entry.line,
                            entry.name,
                            target
                        );
                    }
                }
            }
        }
        for section in modules.section_names() {
            if chain.entries.iter().any(|e| e.name == section) {
                continue;
            }
            if let Some(build) = filters::constructor(&section) {
                if let Err(e) = build_link(&section, build, modules, courier) {
                    errors.push(e);
                }
            } else if !filters::is_library_section(&section)
                && !filters::is_reference_module(&section)
            {
                log::warn!("section [{section}] is not used by any rustfilter module");
            }
        }
        // [authdaemon] is checked even when no module of the chain reads it.
        if let Err(e) = crate::courier::authdaemon::AuthdaemonConfig::from_config(modules) {
            errors.push(e);
        }
        // A library section's error is reported once, however many modules read it.
        let mut seen = HashSet::new();
        errors.retain(|e| seen.insert(e.to_string()));
        if errors.is_empty() {
            Ok(Chain {
                name: name.to_string(),
                links,
                settings,
                store: Store::new(store_config),
                dns,
                stats: None,
                scratch: None,
                cpu_pending: Vec::new(),
            })
        } else {
            Err(errors)
        }
    }

    /// Open per-process resources of every module (in each worker, after fork).
    pub fn open(&mut self) -> Result<(), FilterError> {
        for link in &mut self.links {
            link.filter
                .open()
                .map_err(|e| FilterError::new(format!("{}: {}", link.name, e)))?;
        }
        Ok(())
    }

    /// Run the chain on one message (spec §1.6 semantics).
    pub fn run(
        &mut self,
        courier: &Courier,
        envelope: &mut Envelope,
        message: &mut Message,
    ) -> Outcome {
        let steps = Vec::with_capacity(self.links.len());
        self.run_with(courier, envelope, message, steps)
    }

    /// [`Chain::run`], recording the steps in `steps` (empty; its memory is reused).
    fn run_with(
        &mut self,
        courier: &Courier,
        envelope: &mut Envelope,
        message: &mut Message,
        mut steps: Vec<Step>,
    ) -> Outcome {
        // The accounting line's CPU times. The thread CPU clock is a real system call (and
        // takes the scheduler's run-queue lock), so it is read before the first module, after
        // every module that may wait (`Filter::waits`) and at the end. Modules that never wait
        // run back to back between two readings and share that CPU time in proportion to
        // their wall-clock times (vDSO, no system call): they only differ when the worker was
        // preempted in between. The total is always exact.
        let first_cpu = (!self.links.is_empty()).then(thread_cpu_time);
        let mut cpu_split = CpuSplit::new(
            first_cpu.unwrap_or_default(),
            std::mem::take(&mut self.cpu_pending),
        );
        let deadline = Instant::now() + self.settings.message_timeout;
        self.dns.set_deadline(deadline);
        let mut bypassed: HashSet<&str> = HashSet::new();
        let mut reply: Option<(String, &str)> = None;
        for link in &self.links {
            if bypassed.contains(&*link.name) {
                steps.push(Step {
                    module: link.name.clone(),
                    decision: Decision::Bypassed,
                    cpu: Duration::ZERO,
                });
                continue;
            }
            let started = Instant::now();
            if started >= deadline {
                log::error!(
                    "message processing exceeded {:?}; tempfailing before \"{}\"",
                    self.settings.message_timeout,
                    link.name
                );
                reply = Some((TIMEOUT_REPLY.to_string(), &*link.name));
                break;
            }
            let mut ctx = Context {
                store: &mut self.store,
                dns: &mut self.dns,
                courier,
                envelope: &mut *envelope,
                message: &mut *message,
                deadline,
            };
            let waits = link.filter.waits();
            if waits {
                cpu_split.settle(&mut steps);
            }
            let result = catch_unwind(AssertUnwindSafe(|| link.filter.check(&mut ctx)));
            let cpu = if waits {
                cpu_split.lap()
            } else {
                cpu_split.defer(steps.len(), started.elapsed());
                Duration::ZERO // filled in by the next reading
            };
            let result = match result {
                Ok(r) => r,
                Err(panic) => Err(FilterError::new(format!("panic: {}", panic_text(&panic)))),
            };
            let (decision, text) = match result {
                Ok(Verdict::Continue) => (Decision::Continue, None),
                Ok(Verdict::Reply(r)) if link.dry_run => {
                    log::info!(
                        "{} dry run: \"{}\" would have replied: {}",
                        self.name,
                        link.name,
                        r
                    );
                    (Decision::WouldReply(r), None)
                }
                Ok(Verdict::Reply(r)) => (Decision::Reply(r.clone()), Some(r)),
                Err(e) => {
                    log::error!(
                        "Uncaught exception in \"{}\" do_filter function: {}",
                        link.name,
                        e
                    );
                    let r = match (link.on_error, link.dry_run) {
                        (OnError::Tempfail, false) => Some(format!(
                            "451 4.3.0 Temporary failure in {}, try again later",
                            link.name
                        )),
                        _ => None,
                    };
                    (
                        Decision::Error {
                            error: e.0,
                            reply: r.clone(),
                        },
                        r,
                    )
                }
            };
            steps.push(Step {
                module: link.name.clone(),
                decision,
                cpu,
            });
            // A module that ran replaces the reply, even with "no decision" (§1.6).
            reply = text.map(|t| (t, &*link.name));
            match &reply {
                None => {}
                Some((text, _)) => match &link.bypass {
                    Some(set) if !set.is_empty() && text.starts_with('2') => {
                        bypassed.extend(set.iter().map(String::as_str));
                    }
                    _ => break,
                },
            }
        }
        if first_cpu.is_some() {
            cpu_split.settle(&mut steps);
        }
        let (reply, decided_by) = match reply {
            Some((text, module)) => (text, Some(module.to_string())),
            None => (DEFAULT_REPLY.to_string(), None),
        };
        let outcome = Outcome {
            reply,
            decided_by,
            steps,
            total_cpu: first_cpu
                .map_or(Duration::ZERO, |first| cpu_split.last.saturating_sub(first)),
        };
        self.cpu_pending = cpu_split.pending;
        outcome
    }

    /// Handle one courierfilter request: [`Chain::answer`], then [`Chain::finish`].
    pub fn process(
        &mut self,
        courier: &Courier,
        data_path: &std::path::Path,
        control_paths: &[std::path::PathBuf],
    ) -> String {
        let reply = self.answer(courier, data_path, control_paths);
        self.finish();
        reply
    }

    /// Parse the control files once, run the chain and return the reply. The reject and
    /// accounting log lines are written by [`Chain::finish`], after the reply has been sent
    /// (spec §1.6: Courier has its answer without waiting for the log).
    pub fn answer(
        &mut self,
        courier: &Courier,
        data_path: &std::path::Path,
        control_paths: &[std::path::PathBuf],
    ) -> String {
        self.finish();
        // Taken out of the chain while the chain runs on it, and put back for the next message.
        let mut scratch = self.scratch.take().unwrap_or_default();
        if let Err(e) = scratch.envelope.reload(control_paths) {
            log::error!("cannot read the control files: {e}");
            if let Some(stats) = &self.stats {
                stats.record(0, Kind::Tempfail, crate::stats::now_secs());
            }
            self.scratch = Some(scratch);
            return CONTROL_FAILURE_REPLY.to_string();
        }
        let Scratch {
            envelope,
            message,
            steps,
            answered,
        } = &mut *scratch;
        message.reset(data_path);
        let outcome = self.run_with(courier, envelope, message, std::mem::take(steps));
        if let Some(stats) = &self.stats {
            self.count(stats, &outcome);
        }
        let reply = outcome.reply.clone();
        *answered = Some(outcome);
        self.scratch = Some(scratch);
        reply
    }

    /// Write the reject and accounting log lines of the message last answered, if any, and
    /// recycle its buffers.
    pub fn finish(&mut self) {
        let Some(mut scratch) = self.scratch.take() else {
            return;
        };
        if let Some(outcome) = scratch.answered.take() {
            self.log_outcome(&scratch.envelope, &outcome);
            let mut used = outcome.steps;
            used.clear();
            scratch.steps = used;
            // The message's content is not kept until the next one.
            scratch.message.forget();
        }
        self.scratch = Some(scratch);
    }

    /// Count the message's reply (row 0) and each module's decision (row 1 + its place in the
    /// chain) for `rustfilter stats`: a few atomic adds in shared memory, no system call.
    pub fn count(&self, stats: &Board, outcome: &Outcome) {
        let now = crate::stats::Tick::at(crate::stats::now_secs());
        stats.record_at(0, Kind::of_reply(&outcome.reply), &now);
        // One step per link, in chain order, up to where the chain stopped.
        for (i, (step, link)) in outcome.steps.iter().zip(&self.links).enumerate() {
            let kind = match &step.decision {
                Decision::Continue => Kind::NoDecision,
                Decision::Reply(r) => {
                    let bypasses = link.bypass.as_ref().is_some_and(|b| !b.is_empty());
                    if bypasses && r.starts_with('2') {
                        Kind::Bypass
                    } else {
                        Kind::of_reply(r)
                    }
                }
                Decision::Error { .. } => Kind::Error,
                Decision::WouldReply(_) => Kind::DryRun,
                Decision::Bypassed => Kind::Skipped,
            };
            stats.record_at(i + 1, kind, &now);
        }
    }

    /// The reference's reject lines (one per undelivered recipient, read after the modules
    /// ran) and its CPU accounting line.
    pub fn log_outcome(&self, envelope: &Envelope, outcome: &Outcome) {
        if let Some(module) = &outcome.decided_by
            && !outcome.reply.starts_with('2')
            && !outcome.reply.starts_with('0')
        {
            let sender = envelope.sender().unwrap_or("None");
            for rcpt in envelope.recipients() {
                log::info!(
                    "{} {} reject,from=<{}>,addr=<{}>: {}",
                    self.name,
                    module,
                    sender,
                    rcpt.addr,
                    outcome.reply
                );
            }
        }
        crate::logging::info_line(|line| {
            write_accounting_line(line, envelope.message_id(), outcome);
        });
    }
}

fn build_link(
    name: &str,
    build: filters::Constructor,
    modules: &ModulesConfig,
    courier: &Courier,
) -> Result<(Box<dyn Filter>, bool, OnError), ConfigError> {
    let sec = modules.section(name);
    let filter = build(&sec, courier)?;
    let dry_run = sec.bool("dry_run", false)?;
    let on_error = match sec.string("on_error", "tempfail")?.as_str() {
        "tempfail" => OnError::Tempfail,
        "continue" => OnError::Continue,
        other => {
            return Err(sec.error(
                "on_error",
                format!("must be 'tempfail' or 'continue', not '{other}'"),
            ));
        }
    };
    sec.finish()?;
    Ok((filter, dry_run, on_error))
}

/// `CPU TIME ACCOUNTING: <M> processed with <t> seconds: (<mod>(<t>) …)`; only modules that ran
/// are listed.
pub fn accounting_line(message_id: Option<&str>, outcome: &Outcome) -> String {
    let mut line = Vec::new();
    write_accounting_line(&mut line, message_id, outcome);
    // Only `str`s and ASCII digits went in: always valid.
    String::from_utf8(line).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// [`accounting_line`], appended to `line` as bytes (the digits need no UTF-8 check each).
fn write_accounting_line(line: &mut Vec<u8>, message_id: Option<&str>, outcome: &Outcome) {
    line.reserve(96 + 32 * outcome.steps.len());
    line.extend_from_slice(b"CPU TIME ACCOUNTING: ");
    line.extend_from_slice(message_id.unwrap_or("None").as_bytes());
    line.extend_from_slice(b" processed with ");
    push_seconds(line, outcome.total_cpu);
    line.extend_from_slice(b" seconds: (");
    let mut first = true;
    for step in outcome
        .steps
        .iter()
        .filter(|s| s.decision != Decision::Bypassed)
    {
        if !first {
            line.push(b' ');
        }
        first = false;
        line.extend_from_slice(step.module.as_bytes());
        line.push(b'(');
        push_seconds(line, step.cpu);
        line.push(b')');
    }
    line.push(b')');
}

/// Seconds with 6 decimals, rounded to the nearest microsecond (what `{:.6}` of the f64 gives),
/// without float formatting on every message.
fn push_seconds(out: &mut Vec<u8>, d: Duration) {
    let mut secs = d.as_secs();
    let mut micros = (d.subsec_nanos() + 500) / 1000;
    if micros == 1_000_000 {
        secs += 1;
        micros = 0;
    }
    if secs < 10 {
        // The usual case: one digit.
        out.push(b'0' + secs as u8);
    } else {
        // Filled from the end.
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        while secs > 0 {
            i -= 1;
            digits[i] = b'0' + (secs % 10) as u8;
            secs /= 10;
        }
        out.extend_from_slice(&digits[i..]);
    }
    // Six decimals: three pairs of digits.
    let pair = |n: u32| {
        let i = 2 * n as usize;
        [DIGIT_PAIRS[i], DIGIT_PAIRS[i + 1]]
    };
    let [a, b] = pair(micros / 10_000);
    let [c, d] = pair(micros / 100 % 100);
    let [e, f] = pair(micros % 100);
    out.extend_from_slice(&[b'.', a, b, c, d, e, f]);
}

/// "00" to "99": two decimal digits per lookup.
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// The accounting line's CPU times (see `Chain::run_with`).
struct CpuSplit {
    /// The last thread-CPU-clock reading.
    last: Duration,
    /// Steps (by index) of modules that never wait, run since `last`, with their wall-clock
    /// times. Kept by the chain between messages (no allocation per message).
    pending: Vec<(usize, Duration)>,
}

impl CpuSplit {
    fn new(first: Duration, mut pending: Vec<(usize, Duration)>) -> CpuSplit {
        pending.clear();
        CpuSplit {
            last: first,
            pending,
        }
    }

    /// Read the clock: the CPU time since the last reading.
    fn lap(&mut self) -> Duration {
        let now = thread_cpu_time();
        let interval = now.saturating_sub(self.last);
        self.last = now;
        interval
    }

    /// Step `index`, a module that never waits, took `wall`: its CPU time comes with the next
    /// reading.
    fn defer(&mut self, index: usize, wall: Duration) {
        self.pending.push((index, wall));
    }

    /// Read the clock and share the time since the last reading among the pending steps, in
    /// proportion to their wall-clock times, the rounding left to the last, so that the shares
    /// add up to the interval exactly. Nothing pending: no reading.
    fn settle(&mut self, steps: &mut [Step]) {
        if self.pending.is_empty() {
            return;
        }
        let total = self.lap();
        let walls: Duration = self.pending.iter().map(|&(_, w)| w).sum();
        let count = self.pending.len();
        let mut given = Duration::ZERO;
        for (k, &(index, wall)) in self.pending.iter().enumerate() {
            let rest = total.saturating_sub(given);
            let share = if k + 1 == count {
                rest
            } else if walls.is_zero() {
                // A clock that did not move: equal shares.
                total / count as u32
            } else {
                // f64: nanosecond-exact below 104 days, and no 128-bit division per message.
                total
                    .mul_f64(wall.as_secs_f64() / walls.as_secs_f64())
                    .min(rest)
            };
            given += share;
            if let Some(step) = steps.get_mut(index) {
                step.cpu = share;
            }
        }
        self.pending.clear();
    }
}

/// CPU time used by the calling thread (workers are single-threaded processes).
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::FilterResult;
    use crate::filters::testutil::Fixture;

    struct Canned(fn() -> FilterResult);

    impl Filter for Canned {
        fn check(&self, _: &mut Context<'_>) -> FilterResult {
            (self.0)()
        }
    }

    fn cont() -> FilterResult {
        Ok(Verdict::Continue)
    }
    fn ok200() -> FilterResult {
        Ok(Verdict::reply("200 Ok"))
    }
    fn reject() -> FilterResult {
        Ok(Verdict::reply("550 5.7.1 no"))
    }
    fn accept050() -> FilterResult {
        Ok(Verdict::reply("050 OK"))
    }
    fn fail() -> FilterResult {
        Err(FilterError::new("backend down"))
    }
    fn boom() -> FilterResult {
        panic!("module bug")
    }

    fn link(name: &str, bypass: Option<&[&str]>, f: fn() -> FilterResult) -> Link {
        Link {
            name: name.into(),
            bypass: bypass.map(|b| b.iter().map(|s| s.to_string()).collect()),
            dry_run: false,
            on_error: OnError::Tempfail,
            filter: Box::new(Canned(f)),
        }
    }

    fn test_store() -> Store {
        Store::new(StoreConfig::Sqlite {
            path: "/nonexistent/ttldb.sqlite".into(),
        })
    }

    fn run(links: Vec<Link>) -> Outcome {
        let fx = Fixture::new(
            "sa@b.example\nrc@d.example\nR\nN\nM0001\n",
            "Subject: x\n\nbody\n",
            &[],
        );
        let mut chain = Chain {
            name: "rustfilter".into(),
            links,
            settings: Settings::default(),
            store: test_store(),
            dns: Resolver::system(),
            stats: None,
            scratch: None,
            cpu_pending: Vec::new(),
        };
        let mut env = Envelope::load(std::slice::from_ref(&fx.control)).expect("control");
        let mut msg = Message::new(&fx.data);
        chain.run(&fx.courier, &mut env, &mut msg)
    }

    fn ran(o: &Outcome) -> Vec<&str> {
        o.steps
            .iter()
            .filter(|s| s.decision != Decision::Bypassed)
            .map(|s| &*s.module)
            .collect()
    }

    #[test]
    fn empty_chain_accepts() {
        let o = run(vec![]);
        assert_eq!((o.reply.as_str(), o.decided_by), ("200 Ok", None));
    }

    #[test]
    fn first_decisive_reply_wins() {
        let o = run(vec![
            link("a", None, cont),
            link("b", None, reject),
            link("c", None, ok200),
        ]);
        assert_eq!(o.reply, "550 5.7.1 no");
        assert_eq!(o.decided_by.as_deref(), Some("b"));
        assert_eq!(ran(&o), ["a", "b"]);
    }

    #[test]
    fn accept_without_bypass_set_stops_the_chain() {
        let o = run(vec![link("w", None, ok200), link("r", None, reject)]);
        assert_eq!((o.reply.as_str(), ran(&o)), ("200 Ok", vec!["w"]));
        let o = run(vec![link("w", Some(&[]), ok200), link("r", None, reject)]);
        assert_eq!((o.reply.as_str(), ran(&o)), ("200 Ok", vec!["w"]));
    }

    #[test]
    fn bypass_set_skips_only_the_named_modules() {
        let o = run(vec![
            link("w", Some(&["r"]), ok200),
            link("r", None, reject),
            link("x", None, cont),
        ]);
        assert_eq!(ran(&o), ["w", "x"]);
        // A later "no decision" replaces the 2xx: the default reply is sent (spec §1.6).
        assert_eq!((o.reply.as_str(), o.decided_by), ("200 Ok", None));
        let o = run(vec![
            link("w", Some(&["r"]), ok200),
            link("r", None, reject),
        ]);
        assert_eq!(
            (o.reply.as_str(), o.decided_by.as_deref()),
            ("200 Ok", Some("w"))
        );
        let o = run(vec![
            link("w", Some(&["other"]), ok200),
            link("r", None, reject),
        ]);
        assert_eq!(
            (o.reply.as_str(), o.decided_by.as_deref()),
            ("550 5.7.1 no", Some("r"))
        );
    }

    #[test]
    fn non_2xx_from_a_module_with_a_bypass_set_stops() {
        let o = run(vec![
            link("q", Some(&["r"]), accept050),
            link("r", None, ok200),
        ]);
        assert_eq!((o.reply.as_str(), ran(&o)), ("050 OK", vec!["q"]));
    }

    #[test]
    fn errors_and_panics_tempfail() {
        let o = run(vec![link("db", None, fail), link("r", None, ok200)]);
        assert_eq!(
            o.reply,
            "451 4.3.0 Temporary failure in db, try again later"
        );
        let o = run(vec![link("bug", None, boom), link("r", None, ok200)]);
        assert_eq!(
            o.reply,
            "451 4.3.0 Temporary failure in bug, try again later"
        );
        assert!(
            matches!(&o.steps[0].decision, Decision::Error { error, .. } if error.contains("module bug"))
        );
    }

    #[test]
    fn on_error_continue_goes_on() {
        let mut l = link("db", None, fail);
        l.on_error = OnError::Continue;
        let o = run(vec![l, link("r", None, reject)]);
        assert_eq!(o.reply, "550 5.7.1 no");
    }

    #[test]
    fn decisions_are_counted_per_module_for_stats() {
        use crate::stats::{Board, Snapshot};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rf.stats");
        let mut dry = link("dry", None, reject);
        dry.dry_run = true;
        let mut ignored = link("ignored", None, fail);
        ignored.on_error = OnError::Continue;
        let links = vec![
            link("w", Some(&["r"]), ok200),
            dry,
            ignored,
            link("r", None, reject),
            link("x", None, cont),
            link("last", None, ok200),
        ];
        let names: Vec<&str> = links.iter().map(|l| &*l.name).collect();
        let board = Board::create(&path, &names).expect("board");
        let chain = Chain {
            name: "rf".into(),
            links,
            settings: Settings::default(),
            store: test_store(),
            dns: Resolver::system(),
            stats: None,
            scratch: None,
            cpu_pending: Vec::new(),
        };
        let o = Outcome {
            reply: "200 Ok".into(),
            decided_by: Some("last".into()),
            steps: vec![
                Step {
                    module: "w".into(),
                    decision: Decision::Reply("200 Ok".into()),
                    cpu: Duration::ZERO,
                },
                Step {
                    module: "dry".into(),
                    decision: Decision::WouldReply("550 5.7.1 no".into()),
                    cpu: Duration::ZERO,
                },
                Step {
                    module: "ignored".into(),
                    decision: Decision::Error {
                        error: "backend down".into(),
                        reply: None,
                    },
                    cpu: Duration::ZERO,
                },
                Step {
                    module: "r".into(),
                    decision: Decision::Bypassed,
                    cpu: Duration::ZERO,
                },
                Step {
                    module: "x".into(),
                    decision: Decision::Continue,
                    cpu: Duration::ZERO,
                },
                Step {
                    module: "last".into(),
                    decision: Decision::Reply("200 Ok".into()),
                    cpu: Duration::ZERO,
                },
            ],
            total_cpu: Duration::ZERO,
        };
        chain.count(&board, &o);
        // The chain stopped at the second module this time: the others are not counted.
        let stopped = Outcome {
            reply: "451 4.3.0 Temporary failure in w, try again later".into(),
            decided_by: Some("w".into()),
            steps: vec![Step {
                module: "w".into(),
                decision: Decision::Error {
                    error: "x".into(),
                    reply: Some("451 4.3.0 Temporary failure in w, try again later".into()),
                },
                cpu: Duration::ZERO,
            }],
            total_cpu: Duration::ZERO,
        };
        chain.count(&board, &stopped);
        let snap = Snapshot::read(&path, crate::stats::now_secs()).expect("read");
        let seen: Vec<(String, Vec<&str>)> = snap
            .rows
            .iter()
            .map(|r| {
                let kinds = Kind::ALL
                    .iter()
                    .filter(|k| r.counts[**k as usize].since_start > 0)
                    .map(|k| k.name())
                    .collect();
                (r.module.clone(), kinds)
            })
            .collect();
        let want: Vec<(String, Vec<&str>)> = [
            ("(reply)", vec!["accept", "tempfail"]),
            ("w", vec!["bypass", "error"]),
            ("dry", vec!["dry-run"]),
            ("ignored", vec!["error"]),
            ("r", vec!["skipped"]),
            ("x", vec!["none"]),
            ("last", vec!["accept"]),
        ]
        .into_iter()
        .map(|(m, k)| (m.to_string(), k))
        .collect();
        assert_eq!(seen, want);
        assert!(
            snap.rows
                .iter()
                .all(|r| r.counts.iter().all(|c| c.since_start <= 1))
        );
    }

    #[test]
    fn dry_run_only_logs() {
        let mut l = link("r", None, reject);
        l.dry_run = true;
        let o = run(vec![l, link("x", None, cont)]);
        assert_eq!((o.reply.as_str(), ran(&o)), ("200 Ok", vec!["r", "x"]));
        assert_eq!(
            o.steps[0].decision,
            Decision::WouldReply("550 5.7.1 no".into())
        );
    }

    #[test]
    fn deadline_tempfails() {
        let fx = Fixture::new(
            "sa@b.example\nrc@d.example\nR\nN\n",
            "Subject: x\n\nbody\n",
            &[],
        );
        let settings = Settings {
            workers: 1,
            message_timeout: Duration::from_nanos(1),
        };
        let mut chain = Chain {
            name: "rf".into(),
            links: vec![link("a", None, cont)],
            settings,
            store: test_store(),
            dns: Resolver::system(),
            stats: None,
            scratch: None,
            cpu_pending: Vec::new(),
        };
        let mut env = Envelope::load(std::slice::from_ref(&fx.control)).expect("control");
        let mut msg = Message::new(&fx.data);
        std::thread::sleep(Duration::from_millis(1));
        let o = chain.run(&fx.courier, &mut env, &mut msg);
        assert_eq!(o.reply, TIMEOUT_REPLY);
    }

    #[test]
    fn module_cpu_times_add_up_to_the_total() {
        fn burn() -> FilterResult {
            let start = thread_cpu_time();
            while thread_cpu_time() - start < Duration::from_millis(2) {}
            Ok(Verdict::Continue)
        }
        let o = run(vec![
            link("a", None, cont),
            link("b", None, burn),
            link("c", None, cont),
        ]);
        let sum: Duration = o.steps.iter().map(|s| s.cpu).sum();
        assert_eq!(o.total_cpu, sum);
        assert!(o.steps[1].cpu >= Duration::from_millis(2), "{:?}", o.steps);
        assert_eq!(run(vec![]).total_cpu, Duration::ZERO);
    }

    /// A module that never waits (`Filter::waits` false).
    struct Pure(fn() -> FilterResult);

    impl Filter for Pure {
        fn waits(&self) -> bool {
            false
        }
        fn check(&self, _: &mut Context<'_>) -> FilterResult {
            (self.0)()
        }
    }

    fn pure_link(name: &str, f: fn() -> FilterResult) -> Link {
        Link {
            filter: Box::new(Pure(f)),
            ..link(name, None, f)
        }
    }

    fn burn_2ms() -> FilterResult {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(2) {}
        Ok(Verdict::Continue)
    }

    #[test]
    fn modules_that_never_wait_share_one_reading_by_wall_time() {
        let o = run(vec![
            pure_link("a", cont),
            pure_link("b", burn_2ms),
            link("c", None, cont),
            pure_link("d", burn_2ms),
            pure_link("e", cont),
        ]);
        let sum: Duration = o.steps.iter().map(|s| s.cpu).sum();
        assert_eq!(o.total_cpu, sum, "{:?}", o.steps);
        // The burners ran on the CPU for 2 ms of wall time each; the others for microseconds.
        for burner in [1, 3] {
            assert!(
                o.steps[burner].cpu >= Duration::from_millis(1),
                "{:?}",
                o.steps
            );
        }
        for quick in [0, 4] {
            assert!(
                o.steps[quick].cpu < Duration::from_millis(1),
                "{:?}",
                o.steps
            );
        }
    }

    fn step(name: &str) -> Step {
        Step {
            module: name.into(),
            decision: Decision::Continue,
            cpu: Duration::ZERO,
        }
    }

    #[test]
    fn a_shared_reading_is_split_in_proportion_and_adds_up() {
        let mut steps = vec![step("a"), step("b"), step("c")];
        let mut split = CpuSplit::new(Duration::ZERO, Vec::new());
        split.defer(0, Duration::from_nanos(1));
        split.defer(1, Duration::from_nanos(2));
        split.defer(2, Duration::from_nanos(0));
        split.settle(&mut steps);
        let interval = split.last;
        assert!(interval > Duration::ZERO);
        let cpu: Vec<u128> = steps.iter().map(|s| s.cpu.as_nanos()).collect();
        assert_eq!(cpu.iter().sum::<u128>(), interval.as_nanos());
        assert!(cpu[0].abs_diff(interval.as_nanos() / 3) <= 1, "{cpu:?}");
        assert!(cpu[1].abs_diff(interval.as_nanos() * 2 / 3) <= 1, "{cpu:?}");
        assert_eq!(
            cpu[2],
            interval.as_nanos() - cpu[0] - cpu[1],
            "the rest goes to the last"
        );
        // Nothing pending: no reading, nothing changes.
        let last = split.last;
        split.settle(&mut steps);
        assert_eq!(split.last, last);
    }

    fn empty_steps(o: &Outcome) -> Outcome {
        Outcome {
            steps: vec![],
            ..o.clone()
        }
    }

    #[test]
    fn seconds_have_six_rounded_decimals() {
        let mut nanos = 1u64;
        while nanos < 40_000_000_000_000 {
            for d in [nanos - 1, nanos, nanos + 499, nanos + 500] {
                let d = Duration::from_nanos(d);
                let rounded = (d.as_nanos() + 500) / 1000;
                let want = format!("{}.{:06}", rounded / 1_000_000, rounded % 1_000_000);
                let mut got = Vec::new();
                push_seconds(&mut got, d);
                assert_eq!(String::from_utf8(got).expect("ascii"), want, "{d:?}");
            }
            nanos = nanos * 3 + 7;
        }
    }

    #[test]
    fn accounting_line_format() {
        let o = Outcome {
            reply: "200 Ok".into(),
            decided_by: None,
            steps: vec![
                Step {
                    module: "a".into(),
                    decision: Decision::Continue,
                    cpu: Duration::from_micros(499),
                },
                Step {
                    module: "b".into(),
                    decision: Decision::Bypassed,
                    cpu: Duration::ZERO,
                },
            ],
            total_cpu: Duration::from_micros(20436),
        };
        assert_eq!(
            accounting_line(Some("000AF5DB.46B0E301.0000778F"), &o),
            "CPU TIME ACCOUNTING: 000AF5DB.46B0E301.0000778F processed with 0.020436 seconds: (a(0.000499))"
        );
        // Rounded to the nearest microsecond, as `{:.6}` rounds.
        let rounded = Outcome {
            steps: vec![Step {
                module: "r".into(),
                decision: Decision::Continue,
                cpu: Duration::from_nanos(1_999_999_500),
            }],
            total_cpu: Duration::from_nanos(2_000_000_499),
            ..o.clone()
        };
        assert_eq!(
            accounting_line(Some("M"), &rounded),
            "CPU TIME ACCOUNTING: M processed with 2.000000 seconds: (r(2.000000))"
        );
        let long = Outcome {
            total_cpu: Duration::new(12345, 678_900),
            ..empty_steps(&o)
        };
        assert_eq!(
            accounting_line(Some("M"), &long),
            "CPU TIME ACCOUNTING: M processed with 12345.000679 seconds: ()"
        );
        let empty = Outcome { steps: vec![], ..o };
        assert_eq!(
            accounting_line(None, &empty),
            "CPU TIME ACCOUNTING: None processed with 0.020436 seconds: ()"
        );
    }
}

#[cfg(test)]
mod build_tests {
    use super::*;
    use crate::filters::testutil::Fixture;

    #[test]
    fn the_dns_section_reaches_the_modules_resolver() {
        let fx = Fixture::new("s\n", "\n", &[]);
        let chain =
            ChainConfig::parse(std::path::Path::new("c.conf"), "whitelist_dnswl\n").expect("chain");
        let modules = ModulesConfig::parse(
            std::path::Path::new("m.conf"),
            "[dns]\nnameservers = ['127.0.0.1:15353']\ntimeout = 1.5\nattempts = 1\n",
        )
        .expect("modules");
        let built = Chain::build("rf", &chain, &modules, &fx.courier).map_err(|e| format!("{e:?}"));
        let built = built.expect("builds");
        let config = built.dns.config();
        assert_eq!(
            config.nameservers,
            vec!["127.0.0.1:15353".parse().expect("addr")]
        );
        assert_eq!(
            (config.timeout, config.attempts),
            (Duration::from_millis(1500), 1)
        );
    }
}
