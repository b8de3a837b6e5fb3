//! Log output: stderr by default (courierfilter forwards it to syslog), or straight to syslog
//! with `--syslog`. Each record is written with a single `write(2)` so lines from several
//! workers sharing the pipe never interleave.

use std::cell::RefCell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

/// Log to stderr. `name` is kept for the syslog ident only; stderr lines carry no prefix, as
/// the reference's.
pub fn init_stderr(name: &str, level: log::LevelFilter) {
    let _ = name;
    install(Box::new(StderrLogger), true, level);
}

/// Log to syslog (facility mail) with ident `name`. Falls back to stderr when there is no
/// syslog socket, saying so.
pub fn init_syslog(name: &str, level: log::LevelFilter) {
    match syslog_logger(name, None) {
        Ok(logger) => install(Box::new(logger), false, level),
        Err(e) => {
            install(Box::new(StderrLogger), true, level);
            log::warn!("{name}: cannot log to syslog ({e}); logging to stderr instead");
        }
    }
}

/// A syslog logger (facility mail, ident `name`) on the system socket or on `socket`.
fn syslog_logger(name: &str, socket: Option<&std::path::Path>) -> syslog::Result<SyslogLogger> {
    let formatter = Formatter3164 {
        facility: Facility::LOG_MAIL,
        hostname: None,
        process: name.to_string(),
        pid: std::process::id(),
    };
    let logger = match socket {
        None => syslog::unix(formatter)?,
        Some(path) => syslog::unix_custom(formatter, path)?,
    };
    Ok(SyslogLogger(Mutex::new(logger)))
}

/// Whether the logger installed is the stderr one: then [`info_line`] writes to stderr itself.
static TO_STDERR: AtomicBool = AtomicBool::new(false);

fn install(logger: Box<dyn Log>, to_stderr: bool, level: LevelFilter) {
    // A second call (tests, or a fallback) keeps the first logger; only the level changes.
    if log::set_boxed_logger(logger).is_ok() {
        TO_STDERR.store(to_stderr, Ordering::Relaxed);
    }
    log::set_max_level(level);
}

/// Log one info line that `build` writes as bytes (valid UTF-8: built from `str`s), as
/// `log::info!` would, but into a buffer kept between calls and, on stderr, without the
/// formatting machinery: for the line logged for every message.
pub fn info_line(build: impl FnOnce(&mut Vec<u8>)) {
    if Level::Info > log::max_level() {
        return;
    }
    let mut build = Some(build);
    let written = LINE
        .try_with(|cell| {
            let Ok(mut buf) = cell.try_borrow_mut() else {
                return false;
            };
            buf.clear();
            if let Some(build) = build.take() {
                build(&mut buf);
            }
            emit_info(&mut buf);
            if buf.capacity() > MAX_KEPT_BUFFER {
                *buf = Vec::new();
            }
            true
        })
        .unwrap_or(false);
    if let (false, Some(build)) = (written, build) {
        let mut buf = Vec::new();
        build(&mut buf);
        emit_info(&mut buf);
    }
}

/// Write `line` (without its newline) as an info record.
fn emit_info(line: &mut Vec<u8>) {
    if TO_STDERR.load(Ordering::Relaxed) {
        line.push(b'\n');
        write_stderr(line);
    } else {
        log::info!("{}", String::from_utf8_lossy(line));
    }
}

/// Format a record as the one line (or block) written for it: the message text and a newline.
fn render(record: &Record) -> Vec<u8> {
    let mut text = String::with_capacity(256);
    render_into(record, &mut text);
    text.into_bytes()
}

/// [`render`], appended to `out`.
fn render_into(record: &Record, out: &mut String) {
    let args = record.args();
    match args.as_str() {
        Some(s) => out.push_str(s),
        None => {
            let _ = std::fmt::Write::write_fmt(out, *args);
        }
    }
    out.push('\n');
}

/// A buffer grown past this by a huge record is not kept.
const MAX_KEPT_BUFFER: usize = 64 * 1024;

thread_local! {
    /// The stderr logger's line buffer, kept between records (a worker logs a line or more
    /// per message).
    static RENDERED: RefCell<String> = const { RefCell::new(String::new()) };
    /// [`info_line`]'s buffer.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Write `buf` to fd 2 in one `write(2)` (pipe writes up to PIPE_BUF are atomic); only a short
/// write, which the kernel makes for very large records, is continued.
fn write_stderr(mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice; fd 2 may be closed, which write reports as EBADF.
        let n = unsafe { libc::write(2, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return; // Nowhere left to report it.
        }
        buf = &buf[n as usize..];
    }
}

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    // The log macros have already compared the level with log::max_level().
    fn log(&self, record: &Record) {
        // The reused buffer, unless it is in use (a record logged while formatting one).
        let written = RENDERED
            .try_with(|cell| {
                let Ok(mut buf) = cell.try_borrow_mut() else {
                    return false;
                };
                buf.clear();
                render_into(record, &mut buf);
                write_stderr(buf.as_bytes());
                if buf.capacity() > MAX_KEPT_BUFFER {
                    *buf = String::new();
                }
                true
            })
            .unwrap_or(false);
        if !written {
            write_stderr(&render(record));
        }
    }

    fn flush(&self) {}
}

struct SyslogLogger(Mutex<Logger<LoggerBackend, Formatter3164>>);

impl Log for SyslogLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        let message = record.args().to_string();
        let mut logger = match self.0.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Workers are forked after the logger is made: each reports its own pid.
        logger.formatter.pid = std::process::id();
        // Datagram syslog sends each record as one message, newlines and all.
        let sent = match record.level() {
            Level::Error => logger.err(&message),
            Level::Warn => logger.warning(&message),
            Level::Info => logger.info(&message),
            Level::Debug | Level::Trace => logger.debug(&message),
        };
        if sent.is_err() {
            // syslogd gone: keep the record rather than lose it.
            write_stderr(&render(record));
        }
    }

    fn flush(&self) {
        if let Ok(mut l) = self.0.lock() {
            let _ = std::io::Write::flush(&mut l.backend);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_its_message_and_a_newline() {
        let args = format_args!("line one\nline two");
        let record = Record::builder().args(args).level(Level::Warn).build();
        assert_eq!(render(&record), b"line one\nline two\n");
        let long = "x".repeat(300);
        let args = format_args!("{long} and {}", 42);
        let record = Record::builder().args(args).level(Level::Info).build();
        assert_eq!(render(&record), format!("{long} and 42\n").into_bytes());
    }

    #[test]
    fn syslog_records_are_one_datagram_each_with_facility_mail_and_our_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let sink = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sink.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let logger = syslog_logger("rf", Some(&path)).unwrap();
        // As if the logger were made in the master before the fork.
        logger.0.lock().unwrap().formatter.pid = 1;
        let args = format_args!("two\nlines");
        logger.log(&Record::builder().args(args).level(Level::Error).build());
        let args = format_args!("info");
        logger.log(&Record::builder().args(args).level(Level::Info).build());
        let mut buf = [0u8; 1024];
        let mut next = || {
            let n = sink.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        let pid = std::process::id();
        // mail = 2: err 2*8+3, info 2*8+6.
        let first = next();
        assert!(first.starts_with("<19>"), "{first}");
        assert!(
            first.ends_with(&format!(" rf[{pid}]: two\nlines")),
            "{first}"
        );
        let second = next();
        assert!(second.starts_with("<22>"), "{second}");
        assert!(second.ends_with(&format!(" rf[{pid}]: info")), "{second}");
    }

    #[test]
    fn stderr_records_are_single_writes() {
        // Several processes writing big records at once into one pipe: every record must
        // arrive whole. (Fork is safe here: the child only writes and _exits.)
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let mut children = Vec::new();
        for c in 0..4u8 {
            // Allocate before fork: the test harness has other threads.
            let mut line = vec![b'a' + c; 3000];
            line.push(b'\n');
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                unsafe { libc::dup2(fds[1], 2) };
                for _ in 0..50 {
                    write_stderr(&line);
                }
                unsafe { libc::_exit(0) };
            }
            children.push(pid);
        }
        unsafe { libc::close(fds[1]) };
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
        unsafe { libc::close(fds[0]) };
        for pid in children {
            let mut status = 0;
            unsafe { libc::waitpid(pid, &mut status, 0) };
        }
        let lines: Vec<&[u8]> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 200);
        for line in lines {
            assert_eq!(line.len(), 3000);
            assert!(line.iter().all(|&b| b == line[0]));
        }
    }
}
