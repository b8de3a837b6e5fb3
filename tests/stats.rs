//! `rustfilter stats` against a running daemon with 4 workers: messages that are accepted,
//! bypassed by a whitelist, rejected, tempfailed, failed by a module and answered in dry-run,
//! counted exactly per module and decision, across a worker that is killed and respawned.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Filter, Options};

const CHAIN: &str = "\
whitelist_auth
whitelist_block for deliveredto clamav greylist
whitelist_relayclients for clamav
fixed_reply
clamav
deliveredto
greylist
";

const LOOP_REPLY: &str = "501 Mail loop - already have my Delivered-To: header.";
const CLAMAV_FAILED: &str = "451 4.3.0 Temporary failure in clamav, try again later";

fn prepare(root: &Path) {
    std::fs::create_dir_all(root.join("state")).expect("state dir");
    // whitelist_block and whitelist_relayclients read smtpaccess.dat: 192.168.1 is
    // `allow,BLOCK` (whiteblocked), 127.0.0.1 `allow,RELAYCLIENT`.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/courier/smtpaccess.dat"),
        root.join("etc/smtpaccess.dat"),
    )
    .expect("smtpaccess.dat");
    let modules = format!(
        "[ttldb]\ndir = '{0}/state'\n\n[greylist]\ngreylist_time = 0\n\n\
         [fixed_reply]\nreply = '550 5.7.1 only a dry run'\ndry_run = True\n\n\
         [clamav]\nlocal_socket = '{0}/no-clamd.sock'\n",
        root.display()
    );
    std::fs::write(root.join("rustfilter-modules.conf"), modules).expect("modules");
}

/// `rustfilter stats [args]` for the test's instance: (exit code, stdout, stderr).
fn stats(f: &Filter, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rustfilter"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("stats")
        .args(args)
        .arg("--modules-config")
        .arg(f.root().join("rustfilter-modules.conf"))
        .output()
        .expect("run rustfilter stats");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// control-plain with another client address.
fn control_from(f: &Filter, name: &str, ip: &str) -> PathBuf {
    let plain = std::fs::read_to_string(common::fixture("control-plain")).expect("fixture");
    let text = plain.replace("::ffff:127.0.0.1", &format!("::ffff:{ip}"));
    assert_ne!(text, plain);
    let path = f.localstatedir().join("tmp/m").join(name);
    std::fs::write(&path, text).expect("control");
    path
}

type Expected = BTreeMap<&'static str, BTreeMap<&'static str, u64>>;

fn expected(rows: &[(&'static str, &[(&'static str, u64)])]) -> Expected {
    rows.iter()
        .map(|(m, ds)| (*m, ds.iter().copied().collect()))
        .collect()
}

/// Compare every count of the JSON (since start, last hour, last day) with `want` (absent: 0),
/// and the table's lines with the non-zero ones.
fn assert_counts(f: &Filter, want: &Expected) {
    let (code, json, err) = stats(f, &["--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_yaml::Value = serde_yaml::from_str(&json).expect("stats --json is JSON");
    assert_eq!(v["running"], serde_yaml::Value::Bool(true), "{json}");
    assert_eq!(v["pid"].as_i64(), Some(i64::from(f.pid())), "{json}");
    let modules = v["modules"].as_sequence().expect("modules");
    let names: Vec<&str> = modules
        .iter()
        .map(|m| m["module"].as_str().expect("module name"))
        .collect();
    assert_eq!(
        names,
        [
            "(reply)",
            "whitelist_auth",
            "whitelist_block",
            "whitelist_relayclients",
            "fixed_reply",
            "clamav",
            "deliveredto",
            "greylist"
        ]
    );
    for m in modules {
        let name = m["module"].as_str().expect("name");
        let decisions = m["decisions"].as_mapping().expect("decisions");
        assert_eq!(decisions.len(), 8, "{json}");
        for (decision, c) in decisions {
            let decision = decision.as_str().expect("decision");
            let n = want
                .get(name)
                .and_then(|d| d.get(decision))
                .copied()
                .unwrap_or(0);
            for window in ["since_start", "last_hour", "last_day"] {
                assert_eq!(
                    c[window].as_u64(),
                    Some(n),
                    "{name} {decision} {window} in {json}"
                );
            }
        }
    }

    let (code, table, err) = stats(f, &[]);
    assert_eq!(code, 0, "{err}");
    let mut seen = Expected::new();
    for line in table
        .lines()
        .skip_while(|l| !l.starts_with("module "))
        .skip(1)
    {
        if let Some(module) = line.strip_suffix("(nothing yet)") {
            assert!(
                !want.contains_key(module.trim_end()),
                "{line:?} in\n{table}"
            );
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.len(), 5, "{line:?} in\n{table}");
        assert_eq!(words[2], words[3], "{line}");
        assert_eq!(words[2], words[4], "{line}");
        let module = want
            .keys()
            .find(|k| **k == words[0])
            .unwrap_or_else(|| panic!("{line:?} in\n{table}"));
        let decision = [
            "accept", "bypass", "tempfail", "reject", "error", "dry-run", "none",
        ]
        .into_iter()
        .chain(["skipped"])
        .find(|d| *d == words[1])
        .unwrap_or_else(|| panic!("{line:?}"));
        seen.entry(module)
            .or_default()
            .insert(decision, words[2].parse().expect("count"));
    }
    assert_eq!(&seen, want, "{table}");
}

#[test]
fn stats_counts_every_decision_across_workers_and_respawns() {
    let mut f = Filter::start_with(Options {
        chain: CHAIN,
        workers: Some(4),
        prepare: Some(&prepare),
        ..Options::default()
    });
    assert_eq!(f.workers().len(), 4, "{}", f.stderr());
    let stats_file = f.root().join("state/rustfilter.stats");
    assert!(stats_file.is_file(), "{}", f.stderr());

    // Nothing yet: every module is listed with zeros.
    assert_counts(&f, &Expected::new());
    let (_, table, _) = stats(&f, &[]);
    assert!(
        table.contains("\nclamav                  (nothing yet)\n"),
        "{table}"
    );
    assert!(table.contains(": running, master pid "), "{table}");

    let plain = f.spool("m", "data-plain");
    let looped = f.spool("m", "data-loop");
    let auth = f.spool("m", "control-auth");
    let local = f.spool("m", "control-plain"); // 127.0.0.1: RELAYCLIENT
    let whiteblocked = control_from(&f, "control-whiteblocked", "192.168.1.5");
    let stranger = control_from(&f, "control-stranger", "203.0.113.9");
    let missing = f.localstatedir().join("tmp/m/no-such-data");

    // whitelist_auth accepts (and ends the chain).
    for _ in 0..3 {
        assert_eq!(f.send(&plain, &[&auth]), "200 Ok");
    }
    // whitelist_block lets a mail loop through: bypass, deliveredto skipped.
    for _ in 0..2 {
        assert_eq!(f.send(&looped, &[&whiteblocked]), "200 Ok");
    }
    // relayclients bypasses clamav; deliveredto rejects.
    for _ in 0..4 {
        assert_eq!(f.send(&looped, &[&local]), LOOP_REPLY);
    }
    // clamav cannot read the message: a module failure.
    for _ in 0..2 {
        assert_eq!(f.send(&missing, &[&stranger]), CLAMAV_FAILED);
    }
    // greylist: first sight.
    let greylisted = f.send(&plain, &[&local]);
    assert!(greylisted.starts_with("451 4.7.1 "), "{greylisted}");

    let mut want = expected(&[
        ("(reply)", &[("accept", 5), ("tempfail", 3), ("reject", 4)]),
        ("whitelist_auth", &[("accept", 3), ("none", 9)]),
        ("whitelist_block", &[("bypass", 2), ("none", 7)]),
        ("whitelist_relayclients", &[("bypass", 5), ("none", 4)]),
        ("fixed_reply", &[("dry-run", 9)]),
        ("clamav", &[("skipped", 7), ("error", 2)]),
        ("deliveredto", &[("skipped", 2), ("reject", 4), ("none", 1)]),
        ("greylist", &[("skipped", 2), ("tempfail", 1)]),
    ]);
    assert_counts(&f, &want);

    // Kill two workers (SIGKILL: nothing of theirs is flushed); the master replaces them and
    // the counts stay.
    let before = f.workers();
    let killed = &before[..2];
    for &pid in killed {
        // SAFETY: signalling the daemon's own worker.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let after = f.wait_workers(4, killed, Duration::from_secs(10));
    assert_eq!(after.len(), 4, "{after:?} {}", f.stderr());
    assert!(!after.iter().any(|p| killed.contains(p)), "{after:?}");
    assert_counts(&f, &want);

    // More traffic, served by old and new workers alike: greylist now passes the triplet
    // (no decision: the default 200 Ok), one more authenticated sender, and a control file
    // that cannot be read.
    for _ in 0..3 {
        assert_eq!(f.send(&plain, &[&local]), "200 Ok");
    }
    assert_eq!(f.send(&plain, &[&auth]), "200 Ok");
    let no_control = f.localstatedir().join("tmp/m/no-such-control");
    assert_eq!(
        f.send(&plain, &[&no_control]),
        "451 Internal failure locating control files"
    );
    want = expected(&[
        ("(reply)", &[("accept", 9), ("tempfail", 4), ("reject", 4)]),
        ("whitelist_auth", &[("accept", 4), ("none", 12)]),
        ("whitelist_block", &[("bypass", 2), ("none", 10)]),
        ("whitelist_relayclients", &[("bypass", 8), ("none", 4)]),
        ("fixed_reply", &[("dry-run", 12)]),
        ("clamav", &[("skipped", 10), ("error", 2)]),
        ("deliveredto", &[("skipped", 2), ("reject", 4), ("none", 4)]),
        ("greylist", &[("skipped", 2), ("tempfail", 1), ("none", 3)]),
    ]);
    assert_counts(&f, &want);

    // Another name: no such statistics, a clear message, exit 66.
    let (code, _, err) = stats(&f, &["--name", "other"]);
    assert_eq!(code, 66, "{err}");
    assert!(err.contains("other.stats"), "{err}");
    assert!(err.contains("has the filter 'other' been started"), "{err}");

    // Once the daemon has stopped, the last figures stay readable, marked as such.
    f.close_stdin();
    let status = f.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{}", f.stderr());
    let (code, table, err) = stats(&f, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(table.contains(": stopped at "), "{table}");
    assert!(
        table.contains("\nclamav                  error                2"),
        "{table}"
    );
    let (_, json, _) = stats(&f, &["--json"]);
    assert!(json.contains("\"running\":false,"), "{json}");
}
