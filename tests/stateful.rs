//! The stateful modules through the real daemon and socket, on SQLite and on PostgreSQL:
//! concurrent workers on the same triplets and counters, a store that fails, and
//! `rustfilter ttldb import` of pythonfilter's GDBM files.

mod common;
#[path = "common/stateful.rs"]
mod stateful;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rustfilter::store::md5_key;
use stateful::{Backend, control, dump, message, send, start, ttldb};

const TEMPFAIL_GREYLIST: &str = "451 4.3.0 Temporary failure in greylist, try again later";

fn greylisted(wait: &str) -> String {
    format!("451 4.7.1 Greylisting in action, please come back in {wait}")
}

/// 8 workers, 8 client threads, 4 triplets sent 12 times each. With `greylist_time = 0` the
/// first attempt of each triplet is greylisted and every later one passes, however the
/// attempts interleave: exactly 4 replies are 451.
fn greylist_under_concurrency(backend: Backend) {
    let f = start("greylist\n", "[greylist]\ngreylist_time = 0\n", &backend, 8);
    let triplets: Vec<(std::path::PathBuf, std::path::PathBuf)> = (0..4)
        .map(|i| {
            let c = control(
                &format!("sender{i}@remote.example"),
                &["rcpt@e2e.test"],
                Some(&format!("192.0.2.{}", 10 + i)),
            );
            message(&f, &format!("t{i}"), &c)
        })
        .collect();
    let socket = f.socket_path();
    let replies: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let triplets = &triplets;
                let socket = &socket;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for n in 0..6 {
                        let (d, c) = &triplets[(t + n) % 4];
                        out.push(send(socket, d, c));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread"))
            .collect()
    });
    assert_eq!(replies.len(), 48);
    let greylisted_count = replies
        .iter()
        .filter(|r| **r == greylisted("00:00:00"))
        .count();
    let accepted = replies.iter().filter(|r| *r == "200 Ok").count();
    assert_eq!(
        (greylisted_count, accepted),
        (4, 44),
        "replies: {replies:?}\nlog:\n{}",
        f.stderr()
    );
    let log = stateful::wait_log_lines(&f, "CPU TIME ACCOUNTING", 48, Duration::from_secs(10));
    assert!(!log.contains("database is locked"), "{log}");
    assert!(!log.contains("Temporary failure"), "{log}");
    assert_eq!(dump(f.root(), "greylist_Passed").len(), 4);
    assert_eq!(dump(f.root(), "greylist_NotPassed").len(), 0);

    // With a wait of a day nothing passes, and the first-seen time stays.
    drop(f);
    let f = start(
        "greylist\n",
        "[greylist]\ngreylist_time = 86399\n",
        &backend,
        8,
    );
    let (d, c) = message(
        &f,
        "x",
        &control("a@remote.example", &["b@e2e.test"], Some("192.0.2.1")),
    );
    let socket = f.socket_path();
    let replies: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| (0..3).map(|_| send(&socket, &d, &c)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread"))
            .collect()
    });
    assert!(
        replies
            .iter()
            .all(|r| r.starts_with("451 4.7.1 Greylisting in action, please come back in ")),
        "{replies:?}\n{}",
        f.stderr()
    );
    // (With PostgreSQL the database is the one of the first daemon.)
    let key = md5_key(&["a@remote.example", "b@e2e.test", "192.0.2"]);
    let not_passed = dump(f.root(), "greylist_NotPassed");
    assert_eq!(not_passed.iter().filter(|(k, _)| *k == key).count(), 1);
    assert!(
        !dump(f.root(), "greylist_Passed")
            .iter()
            .any(|(k, _)| *k == key)
    );
}

/// `max_connections = 10`, 40 messages from one address at once from 8 threads: exactly 10
/// accepted (all within one calendar minute: the test waits for a fresh minute if needed).
fn ratelimit_under_concurrency(backend: Backend) {
    let f = start(
        "ratelimit\n",
        "[ratelimit]\nmax_connections = 10\ninterval = 1\n",
        &backend,
        8,
    );
    let (d, c) = message(
        &f,
        "r",
        &control(
            "a@remote.example",
            &["b@e2e.test"],
            Some("::ffff:198.51.100.7"),
        ),
    );
    let (ld, lc) = message(&f, "l", &control("a@e2e.test", &["b@e2e.test"], None));
    let socket = f.socket_path();
    stateful::room_in_this_minute(10);
    let replies: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| (0..5).map(|_| send(&socket, &d, &c)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread"))
            .collect()
    });
    let accepted = replies.iter().filter(|r| *r == "200 Ok").count();
    let refused = replies
        .iter()
        .filter(|r| *r == "421 Too many messages from 198.51.100.7, slow down.")
        .count();
    assert_eq!((accepted, refused), (10, 30), "{replies:?}\n{}", f.stderr());
    // Locally submitted mail is not limited.
    for _ in 0..12 {
        assert_eq!(send(&socket, &ld, &lc), "200 Ok");
    }
    let log = stateful::wait_log_lines(&f, "CPU TIME ACCOUNTING", 52, Duration::from_secs(10));
    assert!(!log.contains("database is locked"), "{log}");
    assert!(!log.contains("Temporary failure"), "{log}");
}

#[test]
fn greylist_concurrency_sqlite() {
    greylist_under_concurrency(Backend::Sqlite);
}

#[test]
fn greylist_concurrency_postgres() {
    greylist_under_concurrency(Backend::postgres());
}

#[test]
fn ratelimit_concurrency_sqlite() {
    ratelimit_under_concurrency(Backend::Sqlite);
}

#[test]
fn ratelimit_concurrency_postgres() {
    ratelimit_under_concurrency(Backend::postgres());
}

/// A SQLite database that cannot be opened: every message tempfails, the log says why.
#[test]
fn sqlite_unusable_tempfails_with_a_clear_log_line() {
    // Root ignores file modes, so make the database path a directory instead.
    let f = start("greylist\n", "", &Backend::Sqlite, 2);
    std::fs::create_dir_all(f.root().join("db/ttldb.sqlite")).expect("mkdir in the way");
    let (d, c) = message(
        &f,
        "m",
        &control("a@remote.example", &["b@e2e.test"], Some("192.0.2.1")),
    );
    assert_eq!(send(&f.socket_path(), &d, &c), TEMPFAIL_GREYLIST);
    assert_eq!(send(&f.socket_path(), &d, &c), TEMPFAIL_GREYLIST);
    // The harness collects stderr in a thread: wait for the line.
    f.wait_stderr(
        "Uncaught exception in \"greylist\"",
        Duration::from_secs(10),
    );
    let log = f.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("Uncaught exception in \"greylist\""))
        .unwrap_or_else(|| panic!("no error line in:\n{log}"));
    assert!(line.contains("ttldb.sqlite"), "{line}");
    // The directory is fixed: mail flows again without a restart.
    std::fs::remove_dir(f.root().join("db/ttldb.sqlite")).expect("rmdir");
    assert_eq!(send(&f.socket_path(), &d, &c), greylisted("00:05:00"));
    // The CLI says the store cannot be used (75).
    std::fs::remove_file(f.root().join("db/ttldb.sqlite")).expect("rm db");
    std::fs::create_dir_all(f.root().join("db/ttldb.sqlite")).expect("mkdir in the way");
    let out = ttldb(f.root(), &["dump", "greylist_Passed"]);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ttldb.sqlite"));
}

/// A pythonfilter dbm TtlDb directory, written by Python's dbm.gnu as the reference does.
fn write_gdbm(dir: &Path, table: &str, entries: &[(String, i64)]) {
    let python = "/usr/bin/python3";
    let probe = Command::new(python).args(["-c", "import dbm.gnu"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "{python} has no dbm.gnu (install Debian's python3-gdbm, e.g. tests/services/install-deps.sh): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run {python} (needed to write GDBM files): {e}"),
    }
    let script = "import dbm.gnu, sys\n\
        db = dbm.gnu.open(sys.argv[1], 'c')\n\
        for pair in sys.argv[2:]:\n\
        \x20   k, v = pair.split('=')\n\
        \x20   db[k.encode()] = v.encode()\n\
        db.close()\n";
    let mut cmd = Command::new(python);
    cmd.arg("-c").arg(script).arg(dir.join(table));
    for (k, v) in entries {
        cmd.arg(format!("{k}={v}"));
    }
    let out = cmd.output().expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn import_then_known_triplets_pass(backend: Backend) {
    let now = rustfilter::store::now();
    let old = tempfile::tempdir().expect("tempdir");
    let passed = md5_key(&["friend@remote.example", "user@e2e.test", "203.0.113"]);
    let waited = md5_key(&["patient@remote.example", "user@e2e.test", "2001:0db8:00aa"]);
    write_gdbm(
        old.path(),
        "greylist_Passed",
        &[(passed.clone(), now - 3600)],
    );
    write_gdbm(
        old.path(),
        "greylist_NotPassed",
        &[(waited.clone(), now - 1000)],
    );
    let aw = md5_key(&["user@e2e.test", "friend@remote.example"]);
    write_gdbm(old.path(), "auto_whitelist", &[(aw.clone(), now - 10)]);

    let f = start("greylist\n", "", &backend, 2);
    let out = ttldb(f.root(), &["import", &old.path().display().to_string()]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("greylist_Passed: 1 entries imported"),
        "{stdout}"
    );
    assert!(
        stdout.contains("greylist_NotPassed: 1 entries imported"),
        "{stdout}"
    );
    assert_eq!(dump(f.root(), "auto_whitelist"), vec![(aw, now - 10)]);
    assert_eq!(
        dump(f.root(), "greylist_Passed"),
        vec![(passed, now - 3600)]
    );

    let socket = f.socket_path();
    // Known triplet (another host of the same /24): passes at once.
    let (d, c) = message(
        &f,
        "a",
        &control(
            "Friend@remote.example",
            &["user@e2e.test"],
            Some("203.0.113.200"),
        ),
    );
    assert_eq!(send(&socket, &d, &c), "200 Ok");
    // Seen 1000 s ago, never passed: its wait is over.
    let (d, c) = message(
        &f,
        "b",
        &control(
            "patient@remote.example",
            &["user@e2e.test"],
            Some("2001:db8:aa::25"),
        ),
    );
    assert_eq!(send(&socket, &d, &c), "200 Ok");
    // An unknown one is greylisted.
    let (d, c) = message(
        &f,
        "c",
        &control(
            "stranger@remote.example",
            &["user@e2e.test"],
            Some("203.0.113.200"),
        ),
    );
    assert_eq!(send(&socket, &d, &c), greylisted("00:05:00"));
    assert_eq!(dump(f.root(), "greylist_Passed").len(), 2);

    // A directory that is not there: 66, and a table name that is no name: usage.
    let out = ttldb(f.root(), &["import", "/nonexistent/pythonfilter"]);
    assert_eq!(out.status.code(), Some(66), "{out:?}");
    let out = ttldb(f.root(), &["dump", "x;drop"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
}

#[test]
fn import_sqlite() {
    import_then_known_triplets_pass(Backend::Sqlite);
}

#[test]
fn import_postgres() {
    import_then_known_triplets_pass(Backend::postgres());
}

/// `ttldb purge` deletes what has expired in the chain's tables, whatever the interval.
fn purge_from_the_command_line(backend: Backend) {
    let now = rustfilter::store::now();
    let old = tempfile::tempdir().expect("tempdir");
    write_gdbm(
        old.path(),
        "greylist_NotPassed",
        &[("a".repeat(32), now - 200_000), ("b".repeat(32), now - 10)],
    );
    let f = start(
        "greylist\nratelimit\n",
        "[greylist]\nsenders_purge_interval = 86400\n",
        &backend,
        1,
    );
    let out = ttldb(f.root(), &["import", &old.path().display().to_string()]);
    assert!(out.status.success(), "{out:?}");
    let out = ttldb(f.root(), &["purge"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("greylist_NotPassed: 1 expired entries deleted"),
        "{stdout}"
    );
    assert!(
        stdout.contains("greylist_Passed: 0 expired entries deleted"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ratelimit: 0 old counters deleted"),
        "{stdout}"
    );
    assert_eq!(
        dump(f.root(), "greylist_NotPassed"),
        vec![("b".repeat(32), now - 10)]
    );
    // A configuration error: 78.
    std::fs::write(f.root().join("rustfilter.conf"), "greylist\nnosuchmodule\n").expect("chain");
    assert_eq!(ttldb(f.root(), &["purge"]).status.code(), Some(78));
}

#[test]
fn purge_sqlite() {
    purge_from_the_command_line(Backend::Sqlite);
}

#[test]
fn purge_postgres() {
    purge_from_the_command_line(Backend::postgres());
}

/// Wait until `send` gives `want` (the store may need a moment to come back).
fn eventually(socket: &Path, d: &Path, c: &Path, want: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        last = send(socket, d, c);
        if last == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

/// PostgreSQL stopped under a running daemon: every message tempfails (never passes
/// unchecked) with a log line; once the server is back, the same workers reconnect and
/// decide as before (the greylisting state is intact).
#[test]
fn postgres_outage_tempfails_then_recovers() {
    let cluster = rustfilter::store::testing::temp_cluster();
    let backend = Backend::Postgres(cluster.config());
    let f = start("greylist\n", "[greylist]\ngreylist_time = 0\n", &backend, 2);
    let socket = f.socket_path();
    let (da, ca) = message(
        &f,
        "a",
        &control("a@remote.example", &["u@e2e.test"], Some("192.0.2.1")),
    );
    let (db, cb) = message(
        &f,
        "b",
        &control("b@remote.example", &["u@e2e.test"], Some("192.0.2.1")),
    );
    assert_eq!(send(&socket, &da, &ca), greylisted("00:00:00"));
    assert_eq!(send(&socket, &da, &ca), "200 Ok");

    cluster.stop();
    for _ in 0..4 {
        assert_eq!(send(&socket, &da, &ca), TEMPFAIL_GREYLIST);
        assert_eq!(send(&socket, &db, &cb), TEMPFAIL_GREYLIST);
    }
    assert!(
        f.wait_stderr(
            "Uncaught exception in \"greylist\" do_filter function: greylist TtlDb: ",
            Duration::from_secs(10)
        ),
        "{}",
        f.stderr()
    );

    cluster.start();
    assert_eq!(
        eventually(&socket, &da, &ca, "200 Ok"),
        "200 Ok",
        "{}",
        f.stderr()
    );
    for _ in 0..4 {
        assert_eq!(send(&socket, &da, &ca), "200 Ok");
    }
    assert_eq!(send(&socket, &db, &cb), greylisted("00:00:00"));
    assert_eq!(send(&socket, &db, &cb), "200 Ok");
}

/// Two daemons ("hosts") on one store share the counts, and the counts survive a restart.
fn ratelimit_shared_and_persistent(backend: Backend) {
    // A window of an hour: the minute boundaries do not matter.
    let modules = "[ratelimit]\nmax_connections = 5\ninterval = 60\n";
    let ip = Some("203.0.113.9");
    let one = start("ratelimit\n", modules, &backend, 2);
    let two = start("ratelimit\n", modules, &backend, 2);
    let (d1, c1) = message(&one, "m", &control("a@remote.example", &["u@e2e.test"], ip));
    let (d2, c2) = message(&two, "m", &control("a@remote.example", &["u@e2e.test"], ip));
    for _ in 0..2 {
        assert_eq!(send(&one.socket_path(), &d1, &c1), "200 Ok");
        assert_eq!(send(&two.socket_path(), &d2, &c2), "200 Ok");
    }
    drop(one);
    let one = start("ratelimit\n", modules, &backend, 2);
    let (d1, c1) = message(&one, "m", &control("a@remote.example", &["u@e2e.test"], ip));
    assert_eq!(send(&one.socket_path(), &d1, &c1), "200 Ok");
    let refused = "421 Too many messages from 203.0.113.9, slow down.";
    assert_eq!(send(&one.socket_path(), &d1, &c1), refused);
    assert_eq!(send(&two.socket_path(), &d2, &c2), refused);
}

#[test]
fn ratelimit_shared_and_persistent_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    ratelimit_shared_and_persistent(Backend::SqliteIn(dir.path().to_path_buf()));
}

#[test]
fn ratelimit_shared_and_persistent_postgres() {
    ratelimit_shared_and_persistent(Backend::postgres());
}
