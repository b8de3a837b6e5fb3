//! `make demo`: try rustfilter without a mail server.
//!
//! Builds a throwaway Courier directory layout in a temp dir, starts the real daemon the way
//! courierfilter does, pushes the sample messages of tests/data/demo/ through its socket, and
//! shows each reply, what the filter changed in the spool files, the daemon's log, and a clean
//! stop. Exits non-zero if anything does not go as tests/data/demo/messages.txt expects.
//!
//! Environment: `RUSTFILTER_BIN` to run another binary instead of building this checkout's.

mod common;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use common::{Daemon, OrFail, Result, Scratch, SpoolMessage};

const ME: &str = "mail.demo.example";
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    common::install_interrupt_handler();
    match run() {
        Ok(0) => {
            println!("\nDemo finished: everything went as expected.");
            ExitCode::SUCCESS
        }
        Ok(problems) => {
            println!(
                "\nDemo finished with {problems} unexpected result(s): see the lines marked !!"
            );
            ExitCode::FAILURE
        }
        Err(_) if common::interrupted() => {
            eprintln!("\ndemo interrupted; temp files removed, daemon stopped");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("\ndemo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One entry of tests/data/demo/messages.txt.
#[derive(Debug, Default)]
struct Sample {
    name: String,
    says: Vec<String>,
    expect: String,
    changes: String,
    needs: Option<String>,
}

fn load_manifest(path: &Path) -> Result<Vec<Sample>> {
    let text = fs::read_to_string(path).or_fail(|| format!("cannot read {}", path.display()))?;
    let mut samples: Vec<Sample> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| format!("{}:{}: expected 'key: value'", path.display(), n + 1))?;
        let value = value.trim().to_string();
        if key == "message" {
            samples.push(Sample {
                name: value,
                ..Sample::default()
            });
            continue;
        }
        let sample = samples.last_mut().ok_or_else(|| {
            format!(
                "{}:{}: '{key}' before any 'message:'",
                path.display(),
                n + 1
            )
        })?;
        match key {
            "says" => sample.says.push(value),
            "expect" => sample.expect = value,
            "changes" if ["none", "control", "data"].contains(&value.as_str()) => {
                sample.changes = value
            }
            "needs" => sample.needs = Some(value),
            _ => {
                return Err(format!(
                    "{}:{}: unknown or invalid line '{line}'",
                    path.display(),
                    n + 1
                ));
            }
        }
    }
    for s in &samples {
        if s.expect.is_empty() || s.changes.is_empty() {
            return Err(format!(
                "{}: message {} needs both 'expect:' and 'changes:'",
                path.display(),
                s.name
            ));
        }
    }
    Ok(samples)
}

/// Print a file's lines indented, for the set-up section.
fn show_file(title: &str, path: &Path) -> Result<()> {
    let text = fs::read_to_string(path).or_fail(|| format!("cannot read {}", path.display()))?;
    println!("  {title} ({}):", path.display());
    for line in text.lines() {
        println!("      {line}");
    }
    Ok(())
}

/// The sender and recipients of a control file, for a one-line summary.
fn envelope_summary(control: &str) -> String {
    let mut sender = String::new();
    let mut rcpts: Vec<String> = Vec::new();
    let mut auth = None;
    for line in control.lines() {
        let value = line.get(1..).unwrap_or("");
        match line.as_bytes().first() {
            Some(b's') => sender = value.to_string(),
            Some(b'r') => rcpts.push(format!("<{value}>")),
            // ORCPT and NOTIFY belong to the recipient just before them.
            Some(b'R') if !value.is_empty() => {
                if let Some(r) = rcpts.last_mut() {
                    r.push_str(&format!(" (ORCPT {})", value.trim_start_matches("rfc822;")));
                }
            }
            Some(b'N') if !value.is_empty() => {
                if let Some(r) = rcpts.last_mut() {
                    r.push_str(&format!(" (NOTIFY={})", notify_flags(value)));
                }
            }
            Some(b'i') => auth = Some(value.to_string()),
            _ => {}
        }
    }
    let mut s = format!("from <{sender}> to {}", rcpts.join(", "));
    if let Some(user) = auth {
        s.push_str(&format!(", authenticated as '{user}'"));
    }
    s
}

/// Lines removed from and added to a text, in order (enough for header edits).
fn line_changes(before: &str, after: &str) -> Vec<String> {
    let (b, a): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < b.len() || j < a.len() {
        if i < b.len() && j < a.len() && b[i] == a[j] {
            i += 1;
            j += 1;
        } else if i < b.len() && !a[j..].contains(&b[i]) {
            out.push(format!("- {}", b[i]));
            i += 1;
        } else if j < a.len() {
            out.push(format!("+ {}", a[j]));
            j += 1;
        } else {
            out.push(format!("- {}", b[i]));
            i += 1;
        }
    }
    out
}

/// Courier's `N` record letters as the SMTP NOTIFY= words.
fn notify_flags(value: &str) -> String {
    let words: Vec<&str> = value
        .chars()
        .filter_map(|c| match c {
            'S' => Some("SUCCESS"),
            'F' => Some("FAILURE"),
            'D' => Some("DELAY"),
            'N' => Some("NEVER"),
            _ => None,
        })
        .collect();
    words.join(",")
}

/// What an appended control-file record tells Courier.
fn explain_record(rec: &str) -> String {
    let value = rec.get(1..).unwrap_or("");
    let n = value.split_whitespace().next().unwrap_or("?");
    match rec.as_bytes().first() {
        Some(b'r') => format!("# new recipient <{value}>"),
        Some(b'R') => "#   its original address (ORCPT), if any".to_string(),
        Some(b'N') if value.is_empty() => "#   its DSN flags: Courier's default".to_string(),
        Some(b'N') => format!("#   its DSN flags: NOTIFY={}", notify_flags(value)),
        Some(b'I') => format!("# recipient {n} (0 = the first) is done: not delivered to"),
        Some(b'S') => format!("#   (when recipient {n} was marked done)"),
        _ => String::new(),
    }
}

fn describe_reply(reply: &str) -> &'static str {
    match reply.as_bytes().first() {
        Some(b'2') => "accepted",
        Some(b'0') => "accepted (and no later filter consulted)",
        Some(b'4') => "deferred: the client is told to try again later",
        Some(b'5') => "rejected: the SMTP client gets this error",
        _ => "unexpected reply",
    }
}

fn run() -> Result<usize> {
    let mut problems = 0usize;
    let data_dir = project_dir().join("tests/data/demo");
    let samples = load_manifest(&data_dir.join("messages.txt"))?;

    println!("rustfilter demo");
    println!("===============");
    println!(
        "This starts the real rustfilter daemon the way Courier's courierfilter does, in a\n\
         throwaway directory, and feeds it sample messages through its socket, as Courier\n\
         does for every message it receives. Nothing outside the temp directory is touched.\n"
    );

    let bin = common::rustfilter_binary()?;
    let scratch = Scratch::new("rustfilter-demo-")?;
    let etc = scratch.sysconfdir.clone();
    let var = scratch.localstatedir.clone();
    let name = bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rustfilter".into());
    let socket = scratch.socket(&name);

    // --- the fake Courier installation
    common::write_file(&etc.join("me"), format!("{ME}\n").as_bytes())?;
    common::write_file(&etc.join("locals"), b"localhost\ndemo.example\n")?;
    common::write_file(&etc.join("defaultdomain"), b"demo.example\n")?;
    let smtpaccess_fixture = project_dir().join("tests/data/courier/smtpaccess.dat");
    let have_smtpaccess = smtpaccess_fixture.is_file();
    if have_smtpaccess {
        fs::copy(&smtpaccess_fixture, etc.join("smtpaccess.dat"))
            .or_fail(|| format!("cannot copy {}", smtpaccess_fixture.display()))?;
    }
    let chain_text = fs::read_to_string(data_dir.join("rustfilter.conf"))
        .or_fail(|| "cannot read tests/data/demo/rustfilter.conf".into())?;
    let chain_text: String = chain_text
        .lines()
        .filter(|l| have_smtpaccess || !l.starts_with("whitelist_relayclients"))
        .map(|l| format!("{l}\n"))
        .collect();
    let chain = etc.join("rustfilter.conf");
    let modules = etc.join("rustfilter-modules.conf");
    common::write_file(&chain, chain_text.as_bytes())?;
    fs::copy(data_dir.join("rustfilter-modules.conf"), &modules)
        .or_fail(|| "cannot copy tests/data/demo/rustfilter-modules.conf".into())?;

    println!("Set-up");
    println!("------");
    println!("  binary          {}", bin.display());
    println!(
        "  scratch dir     {} (removed at the end)",
        scratch.path().display()
    );
    println!("  sysconfdir      {}", etc.display());
    println!("                  me = {ME}, locals = localhost + demo.example");
    if have_smtpaccess {
        println!("                  smtpaccess.dat copied from tests/data/courier/");
    } else {
        println!(
            "                  no tests/data/courier/smtpaccess.dat: whitelist_relayclients and\n\
             \x20                 the relay-client message are left out"
        );
    }
    println!("  localstatedir   {}", var.display());
    show_file("chain file", &chain)?;
    show_file("modules file", &modules)?;

    let common_args: Vec<OsString> = vec![
        "--config".into(),
        chain.clone().into(),
        "--modules-config".into(),
        modules.clone().into(),
        "--sysconfdir".into(),
        etc.clone().into(),
        "--localstatedir".into(),
        var.clone().into(),
    ];

    // --- check-config, what an administrator runs after editing the files
    println!("\n$ rustfilter check-config --config … --modules-config …");
    let out = Command::new(&bin)
        .arg("check-config")
        .args(&common_args)
        .output()
        .or_fail(|| format!("cannot run {}", bin.display()))?;
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        println!("  {line}");
    }
    if !out.status.success() {
        return Err(format!(
            "check-config rejected the demo configuration ({})",
            out.status
        ));
    }

    // --- start the daemon
    println!("\nStarting the daemon");
    println!("-------------------");
    let mut args = common_args.clone();
    args.extend(["--workers".into(), "2".into()]);
    println!(
        "  $ {} --config … --modules-config … --sysconfdir … --localstatedir … --workers 2",
        name
    );
    println!("  (environment cleared but PATH, stdin a pipe, fd 3 a pipe, as courierfilter does)");
    let log = scratch.path().join("daemon.log");
    let mut daemon = Daemon::start(&bin, &args, &log, Duration::from_secs(10))?;
    let workers = daemon.workers();
    println!(
        "  ready after {:.1} ms: it closed fd 3; master pid {}, worker pids {:?}",
        daemon.ready_after.as_secs_f64() * 1000.0,
        daemon.pid(),
        workers
    );
    match common::mode_of(&socket) {
        Some(0o660) => println!("  socket {} (mode 0660)", socket.display()),
        Some(mode) => {
            problems += 1;
            println!(
                "  !! socket {} has mode {mode:04o}, expected 0660",
                socket.display()
            );
        }
        None => return Err(format!("no socket at {} after readiness", socket.display())),
    }

    // --- the messages
    println!("\nMessages");
    println!("--------");
    let mut sent = 0usize;
    let mut rejected: Vec<String> = Vec::new();
    let mut kept: Vec<(String, SpoolMessage)> = Vec::new();
    for (n, sample) in samples.iter().enumerate() {
        common::check_interrupted()?;
        if sample.needs.as_deref() == Some("smtpaccess.dat") && !have_smtpaccess {
            continue;
        }
        let data = fs::read(data_dir.join(format!("{}.data", sample.name)))
            .or_fail(|| format!("cannot read the sample {}.data", sample.name))?;
        let control = fs::read(data_dir.join(format!("{}.control", sample.name)))
            .or_fail(|| format!("cannot read the sample {}.control", sample.name))?;
        let msg = SpoolMessage::write(
            &var,
            &format!("{}", 4100 + n),
            n as u64,
            ME,
            &data,
            &control,
        )?;
        let control_text = String::from_utf8_lossy(&control).into_owned();
        println!("\n{:>2}. {}", n + 1, sample.says.join("\n    "));
        println!("    envelope: {}", envelope_summary(&control_text));
        let started = Instant::now();
        let reply = common::send_message(&socket, &msg, REPLY_TIMEOUT)?;
        let took = started.elapsed();
        sent += 1;
        let ok = reply.starts_with(&sample.expect);
        println!(
            "    reply:    {reply}   ({}, {:.1} ms)",
            describe_reply(&reply),
            took.as_secs_f64() * 1000.0
        );
        if !ok {
            problems += 1;
            println!("    !! expected a reply starting with: {}", sample.expect);
        }
        if !reply.starts_with('2') && !reply.starts_with('0') {
            rejected.push(control_text.clone());
        }

        let control_after = fs::read(&msg.controls[0])
            .or_fail(|| format!("cannot read back {}", msg.controls[0].display()))?;
        let data_after =
            fs::read(&msg.data).or_fail(|| format!("cannot read back {}", msg.data.display()))?;
        let control_changed = control_after != control;
        let data_changed = data_after != data;
        if control_changed {
            if control_after.starts_with(&control) {
                println!("    records appended to the control file:");
                for rec in String::from_utf8_lossy(&control_after[control.len()..]).lines() {
                    println!("        {rec:<40}{}", explain_record(rec));
                }
            } else {
                problems += 1;
                println!("    !! the control file was rewritten, not appended to");
            }
        }
        if data_changed {
            println!("    the message was rewritten in the spool:");
            let changes = line_changes(
                &String::from_utf8_lossy(&data),
                &String::from_utf8_lossy(&data_after),
            );
            for c in &changes {
                println!("        {c}");
            }
        }
        let changed = match (control_changed, data_changed) {
            (false, false) => "none",
            (true, false) => "control",
            (false, true) => "data",
            (true, true) => "control and data",
        };
        if changed != sample.changes {
            problems += 1;
            println!(
                "    !! expected changes: {}, got: {changed}",
                sample.changes
            );
        }
        kept.push((sample.name.clone(), msg));
    }

    // --- rustfilter check: the per-module view of one message
    if let Some((sample_name, msg)) = kept.iter().find(|(n, _)| n.contains("authenticated")) {
        println!("\nWhy did a message get its reply? `rustfilter check` runs the chain on a copy");
        println!("of a spooled message and shows each module's decision ({sample_name}):");
        println!("$ rustfilter check --config … DATA CONTROL");
        let out = Command::new(&bin)
            .arg("check")
            .args(&common_args)
            .arg(&msg.data)
            .args(&msg.controls)
            .output()
            .or_fail(|| format!("cannot run {} check", bin.display()))?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("  {line}");
        }
        if !out.status.success() {
            problems += 1;
            println!(
                "  !! rustfilter check failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }

    // --- the log
    println!("\nThe daemon's log (stderr; under Courier it goes to syslog via courierlogger)");
    println!("----------------------------------------------------------------------------");
    let log_text = daemon.log_text();
    for line in log_text.lines() {
        println!("  {line}");
    }
    let accounting = log_text
        .lines()
        .filter(|l| l.contains("CPU TIME ACCOUNTING"))
        .count();
    if accounting != sent {
        problems += 1;
        println!(
            "  !! expected {sent} CPU TIME ACCOUNTING lines (one per message), found {accounting}"
        );
    }
    for control in &rejected {
        for rcpt in control.lines().filter_map(|l| l.strip_prefix('r')) {
            let needle = format!("addr=<{rcpt}>");
            if !log_text
                .lines()
                .any(|l| l.contains(" reject,from=") && l.contains(&needle))
            {
                problems += 1;
                println!("  !! no reject line for the rejected recipient <{rcpt}>");
            }
        }
    }

    // --- stop
    println!("\nStopping the daemon (closing its stdin, as `courierfilter stop` does)");
    println!("---------------------------------------------------------------------");
    let (status, took) = daemon.stop(Duration::from_secs(15))?;
    println!(
        "  exited with status {} after {:.1} ms",
        status
            .code()
            .map_or_else(|| status.to_string(), |c| c.to_string()),
        took.as_secs_f64() * 1000.0
    );
    if !status.success() {
        problems += 1;
        println!("  !! expected exit status 0");
    }
    if socket.exists() {
        problems += 1;
        println!("  !! the socket {} is still there", socket.display());
    } else {
        println!("  socket removed");
    }
    // Workers should be gone (zombies left behind for a non-reaping init do not count).
    std::thread::sleep(Duration::from_millis(50));
    let left = daemon.leftover_workers();
    if left.is_empty() {
        println!("  all workers exited");
    } else {
        problems += 1;
        println!("  !! workers still running: {left:?}");
    }
    let new_lines: Vec<String> = daemon
        .log_text()
        .lines()
        .skip(log_text.lines().count())
        .map(str::to_string)
        .collect();
    for line in new_lines {
        println!("  log: {line}");
    }
    drop(daemon);
    drop(scratch);
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_in_the_manifest_has_its_files() {
        let dir = project_dir().join("tests/data/demo");
        let samples = load_manifest(&dir.join("messages.txt")).expect("manifest parses");
        assert!(samples.len() >= 7);
        for s in &samples {
            assert!(dir.join(format!("{}.data", s.name)).is_file(), "{}", s.name);
            assert!(
                dir.join(format!("{}.control", s.name)).is_file(),
                "{}",
                s.name
            );
            assert!(!s.says.is_empty(), "{}", s.name);
        }
    }

    #[test]
    fn manifest_errors_name_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.txt");
        fs::write(&path, "says: orphan\n").expect("write");
        let e = load_manifest(&path).unwrap_err();
        assert!(e.contains("m.txt:1"), "{e}");
        fs::write(&path, "message: x\nexpect: 200\nchanges: sometimes\n").expect("write");
        assert!(load_manifest(&path).is_err());
        fs::write(&path, "message: x\nexpect: 200\n").expect("write");
        assert!(load_manifest(&path).unwrap_err().contains("changes"));
    }

    #[test]
    fn removed_header_lines_are_listed_in_order() {
        let before = "Received: a\n  b\nFrom: x\n\nbody\n";
        let after = "From: x\n\nbody\n";
        assert_eq!(line_changes(before, after), vec!["- Received: a", "-   b"]);
        assert_eq!(line_changes("a\nc\n", "a\nb\nc\n"), vec!["+ b".to_string()]);
        assert!(line_changes("same\n", "same\n").is_empty());
    }

    #[test]
    fn envelope_summary_shows_orcpt_notify_and_auth() {
        let control = "sa@x\nrb@y\nRrfc822;c@y\nNSF\nie2e\n";
        assert_eq!(
            envelope_summary(control),
            "from <a@x> to <b@y> (ORCPT c@y) (NOTIFY=SUCCESS,FAILURE), authenticated as 'e2e'"
        );
    }

    #[test]
    fn appended_records_are_explained() {
        assert!(explain_record("I1 R 250 Ok").contains("recipient 1"));
        assert!(explain_record("NF").contains("NOTIFY=FAILURE"));
        assert_eq!(explain_record("Zsomething"), "");
    }
}
