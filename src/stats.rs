//! Per-module decision counters shared by the master and every worker, and their reader,
//! `rustfilter stats`.
//!
//! The master creates a small file, `<state dir>/<name>.stats` (the SQLite store's directory,
//! `/var/lib/rustfilter` by default), maps it shared before it forks the workers, and the
//! workers count into that mapping with atomic adds: no system call per message, and the counts
//! survive a worker's death and respawn (they live in the master's mapping, not in the worker).
//! `rustfilter stats` maps the same file read-only, so it always sees the live figures.
//!
//! For each row (row 0: the reply sent to Courier; then one row per chain entry, in chain
//! order) and each [`Kind`] of decision the file holds a total since the master started, 60
//! one-minute slots (the last hour) and 24 one-hour slots (the last day). A slot is one u64:
//! the minute (or hour) since the epoch it counts in the high 32 bits, the count in the low 32
//! bits, so a worker claims a stale slot for the current minute and counts into it with one
//! compare-and-swap, and a reader ignores slots outside its window. "Last hour" is the current
//! minute and the 59 before it; "last day" the current clock hour and the 23 before it.
//!
//! Layout (native-endian u64 words; the file is only ever read on the machine that wrote it):
//! a 128-byte header (magic, version, rows, kinds, minute slots, hour slots, start time, master
//! pid, stop time), then `rows` names of [`NAME_LEN`] bytes (NUL-padded), then for each row and
//! kind `1 + 60 + 24` words. The file is created under a temporary name and renamed into place
//! once complete, so a reader never sees a half-written header.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::StoreConfig;

/// What one module did with one message (or, in row 0, what the message got).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A 2xx (or 0xx) reply that ended the chain; row 0: the message was accepted.
    Accept = 0,
    /// A whitelist's 2xx with a bypass set (`module for a b c`): the chain went on.
    Bypass = 1,
    /// A 4xx reply (row 0: also the control-file failure and the deadline).
    Tempfail = 2,
    /// A 5xx reply.
    Reject = 3,
    /// The module failed (`451 4.3.0 Temporary failure in <module>`, or ignored with
    /// `on_error = 'continue'`).
    Error = 4,
    /// `dry_run`: the module would have replied; the chain went on.
    DryRun = 5,
    /// The module ran and had no objection.
    NoDecision = 6,
    /// Skipped because an earlier whitelist's bypass set named it.
    Skipped = 7,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Accept,
        Kind::Bypass,
        Kind::Tempfail,
        Kind::Reject,
        Kind::Error,
        Kind::DryRun,
        Kind::NoDecision,
        Kind::Skipped,
    ];

    /// The name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Accept => "accept",
            Kind::Bypass => "bypass",
            Kind::Tempfail => "tempfail",
            Kind::Reject => "reject",
            Kind::Error => "error",
            Kind::DryRun => "dry-run",
            Kind::NoDecision => "none",
            Kind::Skipped => "skipped",
        }
    }

    /// A reply by its first digit: 4 tempfail, 5 reject, anything else (2xx, 0xx) accept.
    pub fn of_reply(reply: &str) -> Kind {
        match reply.as_bytes().first() {
            Some(b'4') => Kind::Tempfail,
            Some(b'5') => Kind::Reject,
            _ => Kind::Accept,
        }
    }
}

/// The name of row 0 (the reply Courier got for each message).
pub const FINAL_ROW: &str = "(reply)";
/// Longest module name kept in the file (longer ones are cut).
pub const NAME_LEN: usize = 64;
/// More rows than any chain has; bounds what a reader accepts.
pub const MAX_ROWS: usize = 1024;

const MAGIC: u64 = u64::from_ne_bytes(*b"RFSTATS\0");
const VERSION: u64 = 1;
const MINUTES: usize = 60;
const HOURS: usize = 24;
const KINDS: usize = Kind::ALL.len();
const HEADER_WORDS: usize = 16;
/// Per row and kind: the total, then the minute slots, then the hour slots.
const CELL_WORDS: usize = 1 + MINUTES + HOURS;

// Header words.
const H_MAGIC: usize = 0;
const H_VERSION: usize = 1;
const H_ROWS: usize = 2;
const H_KINDS: usize = 3;
const H_MINUTES: usize = 4;
const H_HOURS: usize = 5;
const H_STARTED: usize = 6;
const H_PID: usize = 7;
const H_STOPPED: usize = 8;

fn file_size(rows: usize) -> usize {
    HEADER_WORDS * 8 + rows * NAME_LEN + rows * KINDS * CELL_WORDS * 8
}

/// The file's directory: the SQLite store's (`[ttldb] dir`), else `/var/lib/rustfilter`.
pub fn stats_dir(store: &StoreConfig) -> PathBuf {
    match store {
        StoreConfig::Sqlite { path } => path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(
                || PathBuf::from(StoreConfig::DEFAULT_DIR),
                Path::to_path_buf,
            ),
        StoreConfig::Postgres(_) => PathBuf::from(StoreConfig::DEFAULT_DIR),
    }
}

/// `<dir>/<name>.stats`; None for a name that cannot be a file name.
pub fn stats_path(dir: &Path, name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.starts_with('.') || name.contains('/') || name.contains('\0') {
        return None;
    }
    Some(dir.join(format!("{name}.stats")))
}

/// Seconds since the epoch, from the coarse real-time clock (read through the vDSO: no system
/// call; a few milliseconds of resolution is plenty for minute slots).
pub fn now_secs() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0)
}

/// A shared, writable mapping of the counters (held by the master, inherited by the workers).
pub struct Board {
    base: *mut AtomicU64,
    len: usize,
    rows: usize,
    owner: libc::pid_t,
}

// The mapping is only ever accessed through atomics.
unsafe impl Send for Board {}
unsafe impl Sync for Board {}

impl Board {
    /// Create `<dir>/<name>.stats` for these rows (row 0 is [`FINAL_ROW`], then the chain's
    /// modules), zeroed, stamped with the start time and this process's pid, and map it.
    pub fn create(path: &Path, modules: &[&str]) -> io::Result<Board> {
        let rows = modules.len() + 1;
        if rows > MAX_ROWS {
            return Err(io::Error::other(format!(
                "{} chain entries (at most {})",
                modules.len(),
                MAX_ROWS - 1
            )));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // SAFETY: getpid cannot fail.
        let pid = unsafe { libc::getpid() };
        let temp = dir.join(format!(".{file_name}.{pid}"));
        let _ = std::fs::remove_file(&temp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&temp)?;
        let result = (|| {
            let len = file_size(rows);
            file.set_len(len as u64)?;
            let board = Board::map(&file, len, rows, pid)?;
            board.word(H_VERSION).store(VERSION, Ordering::Relaxed);
            board.word(H_ROWS).store(rows as u64, Ordering::Relaxed);
            board.word(H_KINDS).store(KINDS as u64, Ordering::Relaxed);
            board
                .word(H_MINUTES)
                .store(MINUTES as u64, Ordering::Relaxed);
            board.word(H_HOURS).store(HOURS as u64, Ordering::Relaxed);
            board.word(H_STARTED).store(now_secs(), Ordering::Relaxed);
            board.word(H_PID).store(pid as u64, Ordering::Relaxed);
            for (i, name) in std::iter::once(FINAL_ROW)
                .chain(modules.iter().copied())
                .enumerate()
            {
                board.set_name(i, name);
            }
            board.word(H_MAGIC).store(MAGIC, Ordering::Release);
            std::fs::rename(&temp, path)?;
            Ok(board)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    fn map(file: &File, len: usize, rows: usize, owner: libc::pid_t) -> io::Result<Board> {
        // SAFETY: a shared mapping of a file we just sized to `len`; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Board {
            base: ptr.cast(),
            len,
            rows,
            owner,
        })
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i * 8 < self.len, "stats word {i} out of range");
        // SAFETY: in bounds of the mapping (8-byte aligned: page-aligned base), which lives as
        // long as self; every access to it is atomic.
        unsafe { &*self.base.add(i) }
    }

    fn set_name(&self, row: usize, name: &str) {
        let mut bytes = [0u8; NAME_LEN];
        let n = name.len().min(NAME_LEN);
        bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
        let first = HEADER_WORDS + row * NAME_LEN / 8;
        for (k, chunk) in bytes.chunks_exact(8).enumerate() {
            let w = u64::from_ne_bytes([
                chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
            ]);
            self.word(first + k).store(w, Ordering::Relaxed);
        }
    }

    fn cell_start(&self, row: usize, kind: Kind) -> usize {
        HEADER_WORDS + self.rows * NAME_LEN / 8 + (row * KINDS + kind as usize) * CELL_WORDS
    }

    /// Count one `kind` for `row` at `now` (seconds since the epoch). Rows out of range are
    /// ignored.
    pub fn record(&self, row: usize, kind: Kind, now: u64) {
        self.record_at(row, kind, &Tick::at(now));
    }

    /// [`Board::record`] with the time already split into slots (once per message).
    pub fn record_at(&self, row: usize, kind: Kind, tick: &Tick) {
        if row >= self.rows {
            return;
        }
        let start = self.cell_start(row, kind);
        // SAFETY: row < rows, so the whole cell (CELL_WORDS words from `start`) lies inside the
        // mapping (file_size(rows) bytes), which lives as long as self; all access is atomic.
        let cell: &[AtomicU64; CELL_WORDS] = unsafe { &*self.base.add(start).cast() };
        cell[0].fetch_add(1, Ordering::Relaxed);
        bump(&cell[1 + tick.minute_slot], tick.minute);
        bump(&cell[1 + MINUTES + tick.hour_slot], tick.hour);
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        // Only the master that created it stamps the stop time (a worker never drops it, but
        // a forked child that did must not claim the daemon stopped).
        // SAFETY: getpid cannot fail.
        if unsafe { libc::getpid() } == self.owner {
            self.word(H_STOPPED).store(now_secs(), Ordering::Relaxed);
        }
        // SAFETY: unmapping exactly what map() mapped; no reference outlives self.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// A moment split into the minute and hour it falls in and their ring slots.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    minute: u64,
    hour: u64,
    minute_slot: usize,
    hour_slot: usize,
}

impl Tick {
    pub fn at(now: u64) -> Tick {
        let minute = now / 60;
        let hour = now / 3600;
        Tick {
            minute,
            hour,
            minute_slot: (minute % MINUTES as u64) as usize,
            hour_slot: (hour % HOURS as u64) as usize,
        }
    }
}

/// Count one into a slot for period `tag`: a slot still holding an older period is claimed
/// (count 1); one already holding a newer period (a clock step back) is left alone.
fn bump(slot: &AtomicU64, tag: u64) {
    let tag = tag & 0xffff_ffff;
    let mut cur = slot.load(Ordering::Relaxed);
    loop {
        let cur_tag = cur >> 32;
        let new = if cur_tag == tag {
            if cur & 0xffff_ffff == 0xffff_ffff {
                return; // saturated (4 billion in one minute: never)
            }
            cur + 1
        } else if cur_tag < tag {
            (tag << 32) | 1
        } else {
            return;
        };
        match slot.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(seen) => cur = seen,
        }
    }
}

/// The sum of the slots whose period lies in `first..=last`.
fn window_sum(slots: &[u64], first: u64, last: u64) -> u64 {
    slots
        .iter()
        .filter(|&&s| (first..=last).contains(&(s >> 32)))
        .map(|s| s & 0xffff_ffff)
        .sum()
}

/// Counts of one kind for one row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub since_start: u64,
    pub last_hour: u64,
    pub last_day: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub module: String,
    /// Indexed like [`Kind::ALL`].
    pub counts: [Counts; KINDS],
}

/// What `rustfilter stats` shows: the file read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub path: PathBuf,
    pub pid: u64,
    pub started: u64,
    /// When the master stopped (0: it has not).
    pub stopped: u64,
    pub now: u64,
    pub rows: Vec<Row>,
}

impl Snapshot {
    /// Map `path` read-only and read every counter as of `now` (seconds since the epoch).
    pub fn read(path: &Path, now: u64) -> Result<Snapshot, SnapshotError> {
        let file = File::open(path).map_err(SnapshotError::Open)?;
        let bad = |why: String| SnapshotError::Invalid(format!("{}: {why}", path.display()));
        let size = file.metadata().map_err(SnapshotError::Open)?.len();
        if size < (HEADER_WORDS * 8) as u64 || size > file_size(MAX_ROWS) as u64 {
            return Err(bad(format!("{size} bytes is not a statistics file")));
        }
        let len = size as usize;
        // SAFETY: a read-only shared mapping of `len` bytes of a file of that size; checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(SnapshotError::Open(io::Error::last_os_error()));
        }
        struct Mapping(*mut libc::c_void, usize);
        impl Drop for Mapping {
            fn drop(&mut self) {
                // SAFETY: unmapping what was mapped above.
                unsafe { libc::munmap(self.0, self.1) };
            }
        }
        let mapping = Mapping(ptr, len);
        let words = len / 8;
        // SAFETY: the mapping is page-aligned and `words * 8 <= len`; the writers only ever
        // touch it with atomics, and so do we.
        let all: &[AtomicU64] =
            unsafe { std::slice::from_raw_parts(mapping.0.cast::<AtomicU64>(), words) };
        let w = |i: usize| all[i].load(Ordering::Relaxed);
        if all[H_MAGIC].load(Ordering::Acquire) != MAGIC {
            return Err(bad("not a rustfilter statistics file".into()));
        }
        if w(H_VERSION) != VERSION {
            return Err(bad(format!(
                "format version {} (this rustfilter reads {VERSION})",
                w(H_VERSION)
            )));
        }
        let rows = w(H_ROWS) as usize;
        if w(H_KINDS) != KINDS as u64
            || w(H_MINUTES) != MINUTES as u64
            || w(H_HOURS) != HOURS as u64
            || rows == 0
            || rows > MAX_ROWS
            || file_size(rows) != len
        {
            return Err(bad("inconsistent header".into()));
        }
        let minute = now / 60;
        let hour = now / 3600;
        let cells = HEADER_WORDS + rows * NAME_LEN / 8;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut name = Vec::with_capacity(NAME_LEN);
            for k in 0..NAME_LEN / 8 {
                name.extend_from_slice(&w(HEADER_WORDS + row * NAME_LEN / 8 + k).to_ne_bytes());
            }
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            let module = String::from_utf8_lossy(&name[..end]).into_owned();
            let mut counts = [Counts::default(); KINDS];
            for (k, c) in counts.iter_mut().enumerate() {
                let start = cells + (row * KINDS + k) * CELL_WORDS;
                let minutes: Vec<u64> = (0..MINUTES).map(|i| w(start + 1 + i)).collect();
                let hours: Vec<u64> = (0..HOURS).map(|i| w(start + 1 + MINUTES + i)).collect();
                *c = Counts {
                    since_start: w(start),
                    last_hour: window_sum(&minutes, minute.saturating_sub(59), minute),
                    last_day: window_sum(&hours, hour.saturating_sub(23), hour),
                };
            }
            out.push(Row { module, counts });
        }
        Ok(Snapshot {
            path: path.to_path_buf(),
            pid: w(H_PID),
            started: w(H_STARTED),
            stopped: w(H_STOPPED),
            now,
            rows: out,
        })
    }

    /// Whether the master that wrote the file still runs.
    pub fn running(&self) -> bool {
        if self.stopped != 0 {
            return false;
        }
        let Ok(pid) = libc::pid_t::try_from(self.pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists.
        pid > 0
            && (unsafe { libc::kill(pid, 0) } == 0
                || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
    }

    /// The readable table: one line per module and decision seen since the start.
    pub fn table(&self, running: bool) -> String {
        let mut out = String::new();
        let state = if running {
            format!("running, master pid {}", self.pid)
        } else if self.stopped != 0 {
            format!(
                "stopped at {} (figures as of then), master pid was {}",
                utc(self.stopped),
                self.pid
            )
        } else {
            format!("not running (master pid {} is gone)", self.pid)
        };
        out.push_str(&format!(
            "{}: {state}\nsince {} ({} ago); now {}\n\n",
            self.path.display(),
            utc(self.started),
            span(self.now.saturating_sub(self.started)),
            utc(self.now)
        ));
        let width = self
            .rows
            .iter()
            .map(|r| r.module.chars().count())
            .max()
            .unwrap_or(0)
            .max("module".len());
        out.push_str(&format!(
            "{:<width$}  {:<8}  {:>12}  {:>10}  {:>10}\n",
            "module", "decision", "since start", "last hour", "last day"
        ));
        for row in &self.rows {
            let mut any = false;
            for (k, kind) in Kind::ALL.iter().enumerate() {
                let c = row.counts[k];
                if c.since_start == 0 && c.last_hour == 0 && c.last_day == 0 {
                    continue;
                }
                any = true;
                out.push_str(&format!(
                    "{:<width$}  {:<8}  {:>12}  {:>10}  {:>10}\n",
                    row.module,
                    kind.name(),
                    c.since_start,
                    c.last_hour,
                    c.last_day
                ));
            }
            if !any {
                out.push_str(&format!("{:<width$}  (nothing yet)\n", row.module));
            }
        }
        out
    }

    /// Every row and every kind (zeros too), for scripts.
    pub fn json(&self, running: bool) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{{\"file\":{},\"pid\":{},\"running\":{running},\"started\":{},\"stopped\":{},\"now\":{},\"modules\":[",
            json_string(&self.path.to_string_lossy()),
            self.pid,
            self.started,
            if self.stopped == 0 {
                "null".to_string()
            } else {
                self.stopped.to_string()
            },
            self.now
        ));
        for (i, row) in self.rows.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                "{{\"module\":{},\"decisions\":{{",
                json_string(&row.module)
            ));
            for (k, kind) in Kind::ALL.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                let c = row.counts[k];
                out.push_str(&format!(
                    "\"{}\":{{\"since_start\":{},\"last_hour\":{},\"last_day\":{}}}",
                    kind.name(),
                    c.since_start,
                    c.last_hour,
                    c.last_day
                ));
            }
            out.push_str("}}");
        }
        out.push_str("]}\n");
        out
    }
}

#[derive(Debug)]
pub enum SnapshotError {
    /// The file could not be opened or mapped (absent: the daemon has not run).
    Open(io::Error),
    Invalid(String),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Open(e) => e.fmt(f),
            SnapshotError::Invalid(why) => f.write_str(why),
        }
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `2026-11-25 23:30:00 UTC`.
fn utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm), for dates after 1970.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `3d 4h 5m 6s`, largest units first, zeros left out.
fn span(secs: u64) -> String {
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
    ];
    let text: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if text.is_empty() {
        "0s".into()
    } else {
        text.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(dir: &Path, modules: &[&str]) -> (Board, PathBuf) {
        let path = dir.join("rf.stats");
        (Board::create(&path, modules).expect("create"), path)
    }

    fn counts(s: &Snapshot, row: usize, kind: Kind) -> Counts {
        s.rows[row].counts[kind as usize]
    }

    #[test]
    fn counts_since_start_last_hour_and_last_day() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (b, path) = board(dir.path(), &["whitelist_auth", "greylist"]);
        let t0: u64 = 1_795_600_800; // a whole hour
        // Two days ago, 90 minutes ago, 30 minutes ago, now.
        for (at, n) in [
            (t0 - 2 * 86_400, 5),
            (t0 - 90 * 60, 3),
            (t0 - 30 * 60, 2),
            (t0, 1),
        ] {
            for _ in 0..n {
                b.record(2, Kind::Tempfail, at);
            }
        }
        b.record(0, Kind::Accept, t0);
        b.record(99, Kind::Accept, t0); // ignored
        let s = Snapshot::read(&path, t0 + 10).expect("read");
        assert_eq!(
            s.rows.iter().map(|r| r.module.as_str()).collect::<Vec<_>>(),
            ["(reply)", "whitelist_auth", "greylist"]
        );
        assert_eq!(
            counts(&s, 2, Kind::Tempfail),
            Counts {
                since_start: 11,
                last_hour: 3,
                last_day: 6
            }
        );
        assert_eq!(counts(&s, 0, Kind::Accept).since_start, 1);
        assert_eq!(counts(&s, 1, Kind::Accept), Counts::default());
        // An hour and a day later the windows have moved on; the total has not.
        let later = Snapshot::read(&path, t0 + 3600).expect("read");
        assert_eq!(
            counts(&later, 2, Kind::Tempfail),
            Counts {
                since_start: 11,
                last_hour: 0,
                last_day: 6
            }
        );
        let day = Snapshot::read(&path, t0 + 86_400).expect("read");
        assert_eq!(counts(&day, 2, Kind::Tempfail).last_day, 0);
        assert_eq!(s.pid, u64::from(std::process::id()));
        assert!(s.running());
    }

    #[test]
    fn a_slot_is_reused_for_a_later_period_and_a_clock_step_back_is_dropped() {
        let slot = AtomicU64::new(0);
        bump(&slot, 100);
        bump(&slot, 100);
        assert_eq!(slot.load(Ordering::Relaxed), (100 << 32) | 2);
        bump(&slot, 160);
        assert_eq!(slot.load(Ordering::Relaxed), (160 << 32) | 1);
        bump(&slot, 100);
        assert_eq!(slot.load(Ordering::Relaxed), (160 << 32) | 1);
        assert_eq!(window_sum(&[(160 << 32) | 4, (99 << 32) | 7], 101, 160), 4);
    }

    #[test]
    fn forked_processes_share_the_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (b, path) = board(dir.path(), &["m"]);
        let now = now_secs();
        let mut children = Vec::new();
        for _ in 0..4 {
            // SAFETY: the child only counts and _exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                for _ in 0..10_000 {
                    b.record(1, Kind::NoDecision, now);
                }
                unsafe { libc::_exit(0) };
            }
            children.push(pid);
        }
        for pid in children {
            let mut status = 0;
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        }
        let s = Snapshot::read(&path, now).expect("read");
        assert_eq!(
            counts(&s, 1, Kind::NoDecision),
            Counts {
                since_start: 40_000,
                last_hour: 40_000,
                last_day: 40_000
            }
        );
    }

    #[test]
    fn the_stop_time_is_stamped_by_the_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (b, path) = board(dir.path(), &[]);
        assert_eq!(Snapshot::read(&path, 1).expect("read").stopped, 0);
        drop(b);
        let s = Snapshot::read(&path, now_secs()).expect("read");
        assert!(s.stopped > 0);
        assert!(!s.running());
        assert!(s.table(false).contains("stopped at "), "{}", s.table(false));
    }

    #[test]
    fn bad_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.stats");
        assert!(matches!(Snapshot::read(&p, 0), Err(SnapshotError::Open(_))));
        std::fs::write(&p, b"short").expect("write");
        assert!(matches!(
            Snapshot::read(&p, 0),
            Err(SnapshotError::Invalid(_))
        ));
        std::fs::write(&p, vec![0u8; 4096]).expect("write");
        let e = Snapshot::read(&p, 0).expect_err("zeros");
        assert!(
            e.to_string().contains("not a rustfilter statistics file"),
            "{e}"
        );
        // A valid file cut short.
        let (b, path) = board(dir.path(), &["a", "b"]);
        drop(b);
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&p, &bytes[..bytes.len() - 8]).expect("write");
        let e = Snapshot::read(&p, 0).expect_err("truncated");
        assert!(e.to_string().contains("inconsistent header"), "{e}");
    }

    #[test]
    fn names_paths_and_dirs() {
        assert_eq!(
            stats_path(Path::new("/var/lib/rustfilter"), "rustfilter"),
            Some(PathBuf::from("/var/lib/rustfilter/rustfilter.stats"))
        );
        assert_eq!(stats_path(Path::new("/d"), "a/b"), None);
        assert_eq!(stats_path(Path::new("/d"), ".x"), None);
        assert_eq!(stats_path(Path::new("/d"), ""), None);
        assert_eq!(
            stats_dir(&StoreConfig::Sqlite {
                path: "/srv/rf/ttldb.sqlite".into()
            }),
            PathBuf::from("/srv/rf")
        );
        let long = "m".repeat(100);
        let dir = tempfile::tempdir().expect("tempdir");
        let (_b, path) = board(dir.path(), &[&long]);
        let s = Snapshot::read(&path, 0).expect("read");
        assert_eq!(s.rows[1].module, "m".repeat(NAME_LEN));
    }

    #[test]
    fn table_and_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (b, path) = board(dir.path(), &["deliveredto", "quiet \"one\""]);
        let t = 1_795_600_800;
        b.record(0, Kind::Reject, t);
        b.record(1, Kind::Reject, t);
        let s = Snapshot::read(&path, t + 5).expect("read");
        let table = s.table(true);
        assert!(table.contains("now 2026-11-25 10:00:05 UTC\n"), "{table}");
        assert!(
            table.contains("\nmodule       decision   since start   last hour    last day\n"),
            "{table}"
        );
        assert!(
            table.contains("\ndeliveredto  reject               1           1           1\n"),
            "{table}"
        );
        assert!(
            table.contains("\nquiet \"one\"  (nothing yet)\n"),
            "{table}"
        );
        let json = s.json(true);
        assert!(json.contains("\"module\":\"quiet \\\"one\\\"\""), "{json}");
        assert!(
            json.contains(
                "{\"module\":\"deliveredto\",\"decisions\":{\"accept\":{\"since_start\":0,\"last_hour\":0,\"last_day\":0},\"bypass\""
            ),
            "{json}"
        );
        assert!(json.contains("\"running\":true,"), "{json}");
        assert!(json.contains("\"stopped\":null,"), "{json}");
    }

    #[test]
    fn utc_and_span() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_795_600_800), "2026-11-25 10:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(span(0), "0s");
        assert_eq!(span(90_061), "1d 1h 1m 1s");
        assert_eq!(span(3600), "1h");
    }

    #[test]
    fn replies_by_first_digit() {
        assert_eq!(Kind::of_reply("200 Ok"), Kind::Accept);
        assert_eq!(Kind::of_reply("050 OK"), Kind::Accept);
        assert_eq!(Kind::of_reply("451 4.7.1 wait"), Kind::Tempfail);
        assert_eq!(Kind::of_reply("550-a\n550 b"), Kind::Reject);
    }
}
