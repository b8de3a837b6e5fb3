//! The PostgreSQL backend against a real server (the throwaway cluster of
//! tests/services/postgres.sh, started on demand): every operation, authentication,
//! compatibility with pythonfilter's tables, and the failures a worker must survive.

use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rustfilter::store::postgres::PgBackend;
use rustfilter::store::testing::{self, PgCluster};
use rustfilter::store::{Backend, PgConfig, StoreError, Tx};

fn connect(config: &PgConfig) -> PgBackend {
    match PgBackend::connect(config) {
        Ok(b) => b,
        Err(e) => panic!("connect {config:?}: {e}"),
    }
}

fn fresh() -> (PgConfig, PgBackend) {
    let config = testing::postgres_database();
    let b = connect(&config);
    (config, b)
}

fn superuser() -> PgBackend {
    connect(&testing::postgres_superuser(
        std::path::Path::new(testing::PG_DIR),
        testing::PG_PORT,
    ))
}

/// psql as the client pythonfilter would be, over TCP as `filter`.
fn psql(config: &PgConfig, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", &config.host, "-p", &config.port.to_string()])
        .args(["-U", &config.user, "-d", &config.db, "-c", sql])
        .env("PGPASSWORD", &config.password)
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok<T>(r: Result<T, StoreError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[test]
fn every_operation_on_a_real_server() {
    let (config, mut b) = fresh();
    ok(b.ensure_ttl_table("greylist_Sent"));
    ok(b.ensure_ttl_table("greylist_Sent")); // idempotent
    ok(b.ensure_counter_table("ratelimit_counts"));

    ok(b.begin());
    assert_eq!(ok(b.get("greylist_Sent", "k1")), None);
    ok(b.set("greylist_Sent", "k1", 100));
    ok(b.set("greylist_Sent", "k2", 200));
    ok(b.set("greylist_Sent", "k1", 150)); // replaces
    assert_eq!(ok(b.get("greylist_Sent", "k1")), Some(150));
    ok(b.count("ratelimit_counts", "10.0.0.1", 1000, 1));
    ok(b.count("ratelimit_counts", "10.0.0.1", 1000, 2));
    ok(b.count("ratelimit_counts", "10.0.0.1", 1001, 4));
    ok(b.count("ratelimit_counts", "10.0.0.1", 1005, 8));
    ok(b.count("ratelimit_counts", "10.0.0.2", 1001, 16));
    ok(b.commit());

    // Committed: another connection sees it.
    let mut other = connect(&config);
    assert_eq!(ok(other.get("greylist_Sent", "k1")), Some(150));
    assert_eq!(
        ok(other.count_sum("ratelimit_counts", "10.0.0.1", 1000, 1001)),
        7
    );
    assert_eq!(
        ok(other.count_sum("ratelimit_counts", "10.0.0.1", 1000, 1005)),
        15
    );
    assert_eq!(
        ok(other.count_sum("ratelimit_counts", "10.0.0.1", 1002, 1004)),
        0
    );
    assert_eq!(
        ok(other.count_sum("ratelimit_counts", "nobody", 0, i64::MAX)),
        0
    );

    // Rolled back: gone.
    ok(b.begin());
    ok(b.set("greylist_Sent", "k3", 300));
    ok(b.delete("greylist_Sent", "k1"));
    assert_eq!(ok(b.get("greylist_Sent", "k1")), None);
    b.rollback();
    assert_eq!(ok(b.get("greylist_Sent", "k3")), None);
    assert_eq!(ok(b.get("greylist_Sent", "k1")), Some(150));

    ok(b.begin());
    ok(b.delete("greylist_Sent", "k1"));
    ok(b.delete("greylist_Sent", "missing"));
    ok(b.commit());
    assert_eq!(ok(other.get("greylist_Sent", "k1")), None);

    ok(b.set("greylist_Sent", "a", 10));
    ok(b.set("greylist_Sent", "z", 50));
    assert_eq!(
        ok(b.dump_ttl("greylist_Sent")),
        vec![("a".into(), 10), ("k2".into(), 200), ("z".into(), 50)]
    );
    assert_eq!(ok(b.purge_ttl("greylist_Sent", 51)), 2);
    assert_eq!(ok(b.dump_ttl("greylist_Sent")), vec![("k2".into(), 200)]);
    assert_eq!(ok(b.purge_ttl("greylist_Sent", 0)), 0);

    assert_eq!(ok(b.purge_counters("ratelimit_counts", 1001)), 1);
    assert_eq!(ok(b.count_sum("ratelimit_counts", "10.0.0.1", 0, 2000)), 12);
    assert_eq!(ok(b.purge_counters("ratelimit_counts", 2000)), 3);
    assert_eq!(ok(b.count_sum("ratelimit_counts", "10.0.0.2", 0, 2000)), 0);

    // Values use the whole BIGINT range.
    ok(b.set("greylist_Sent", "big", i64::MAX));
    ok(b.set("greylist_Sent", "neg", i64::MIN));
    assert_eq!(ok(b.get("greylist_Sent", "big")), Some(i64::MAX));
    assert_eq!(ok(b.get("greylist_Sent", "neg")), Some(i64::MIN));
}

#[test]
fn statement_errors_keep_the_connection_usable() {
    let (_, mut b) = fresh();
    // No such table: a plain error, not transient, and the connection stays in sync.
    let e = b.get("nothing_here", "k").expect_err("missing table");
    assert!(!e.transient, "{e}");
    assert!(e.message.contains("42P01"), "{e}");
    assert!(!b.is_broken());
    ok(b.ensure_ttl_table("nothing_here"));
    assert_eq!(ok(b.get("nothing_here", "k")), None);

    // Keys longer than CHAR(64) are refused by the server.
    let long = "x".repeat(65);
    let e = b.set("nothing_here", &long, 1).expect_err("long key");
    assert!(!e.transient && e.message.contains("22001"), "{e}");

    // An error inside a transaction aborts it; COMMIT then reports the rollback.
    ok(b.begin());
    ok(b.set("nothing_here", "k", 1));
    assert!(b.get("nothing_here", &long).is_ok()); // a read of a long key is just no match
    assert!(b.set("nothing_here", &long, 1).is_err());
    let e = b.commit().expect_err("commit after a failed statement");
    assert!(e.message.contains("rolled back"), "{e}");
    assert_eq!(ok(b.get("nothing_here", "k")), None);

    // Invalid table names never reach the server.
    let e = b.get("t; DROP TABLE x", "k").expect_err("bad name");
    assert!(e.message.contains("invalid table name"), "{e}");
    assert!(b.ensure_ttl_table("bad-name").is_err());
    assert!(!b.is_broken());
}

#[test]
fn table_names_fold_to_lower_case_as_in_the_reference() {
    let (config, mut b) = fresh();
    ok(b.ensure_ttl_table("greylist_Passed"));
    ok(b.set("greylist_Passed", "key", 42));
    // The same table under any spelling, and psql sees greylist_passed.
    assert_eq!(ok(b.get("GREYLIST_PASSED", "key")), Some(42));
    assert_eq!(
        psql(
            &config,
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        )
        .trim(),
        "greylist_passed"
    );
    assert_eq!(
        psql(&config, "SELECT rtrim(id), value FROM greylist_passed").trim(),
        "key|42"
    );
}

#[test]
fn an_existing_pythonfilter_table_is_used_as_is() {
    let config = testing::postgres_database();
    // As pythonfilter's TtlDb created it, with rows it wrote (CHAR(64) pads the keys).
    psql(
        &config,
        "CREATE TABLE greylist_sent (id CHAR(64) NOT NULL, value BIGINT NOT NULL, PRIMARY KEY(id));\
         INSERT INTO greylist_sent VALUES ('0123456789abcdef0123456789abcdef', 1700000000), \
         ('fedcba9876543210fedcba9876543210', 1700000100);",
    );
    assert_eq!(
        psql(
            &config,
            "SELECT octet_length(id::text || 'x') FROM greylist_sent LIMIT 1"
        )
        .trim(),
        "33",
        "CHAR(64) as text drops the padding"
    );
    assert_eq!(
        psql(
            &config,
            "SELECT octet_length(id) FROM greylist_sent WHERE value = 1700000000"
        )
        .trim(),
        "64",
        "the stored key is padded"
    );
    let mut b = connect(&config);
    ok(b.ensure_ttl_table("greylist_Sent"));
    assert_eq!(
        ok(b.get("greylist_Sent", "0123456789abcdef0123456789abcdef")),
        Some(1700000000)
    );
    assert_eq!(
        ok(b.dump_ttl("greylist_Sent")),
        vec![
            ("0123456789abcdef0123456789abcdef".into(), 1700000000),
            ("fedcba9876543210fedcba9876543210".into(), 1700000100)
        ]
    );
    ok(b.set(
        "greylist_Sent",
        "0123456789abcdef0123456789abcdef",
        1800000000,
    ));
    assert_eq!(
        psql(&config, "SELECT count(*), max(value) FROM greylist_sent").trim(),
        "2|1800000000",
        "an update, not a second row"
    );
    assert_eq!(ok(b.purge_ttl("greylist_Sent", 1750000000)), 1);
}

#[test]
fn scram_with_a_wrong_password_is_refused() {
    let mut config = testing::postgres_database();
    config.password = "wrong".into();
    let e = PgBackend::connect(&config)
        .err()
        .expect("a wrong password must be refused");
    assert!(!e.transient && !e.connection_lost, "{e}");
    assert!(
        e.message
            .contains("password authentication failed for user \"filter\""),
        "{e}"
    );
    assert!(e.message.contains("28P01"), "{e}");

    config.password = String::new();
    let e = PgBackend::connect(&config).err().expect("no password");
    assert!(!e.transient, "{e}");
    assert!(e.message.contains("none is configured"), "{e}");

    let mut config = testing::postgres_database();
    config.db = "no_such_database".into();
    let e = PgBackend::connect(&config).err().expect("no database");
    assert!(!e.transient && e.message.contains("3D000"), "{e}");
}

#[test]
fn md5_cleartext_and_trust_authentication_and_unix_sockets() {
    let cluster = testing::temp_cluster();
    let mut su = connect(&cluster.superuser());
    ok(su.simple_query("SET password_encryption = 'md5'"));
    ok(su.simple_query("CREATE ROLE md5user LOGIN PASSWORD 'md5pw'"));
    ok(su.simple_query("RESET password_encryption"));
    ok(su.simple_query("CREATE ROLE pwuser LOGIN PASSWORD 'clear pw'"));
    ok(su.simple_query("CREATE ROLE trustuser LOGIN"));
    // First match wins: these lines go before initdb's.
    let hba = cluster.dir().join("data/pg_hba.conf");
    let old = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    std::fs::write(
        &hba,
        format!(
            "host all md5user 127.0.0.1/32 md5\n\
             host all pwuser 127.0.0.1/32 password\n\
             host all trustuser 127.0.0.1/32 trust\n{old}"
        ),
    )
    .expect("write pg_hba.conf");
    ok(su.simple_query("SELECT pg_reload_conf()"));
    std::thread::sleep(Duration::from_millis(300));

    let user = |user: &str, password: &str| PgConfig {
        host: "127.0.0.1".into(),
        port: cluster.port(),
        db: "filterdb".into(),
        user: user.into(),
        password: password.into(),
    };
    let who = |b: &mut PgBackend| ok(b.simple_query("SELECT current_user"))[0][0].clone();
    assert_eq!(
        who(&mut connect(&user("md5user", "md5pw"))).as_deref(),
        Some("md5user")
    );
    assert_eq!(
        who(&mut connect(&user("pwuser", "clear pw"))).as_deref(),
        Some("pwuser")
    );
    assert_eq!(
        who(&mut connect(&user("trustuser", ""))).as_deref(),
        Some("trustuser")
    );
    assert_eq!(
        who(&mut connect(&cluster.config())).as_deref(),
        Some("filter")
    );
    for (u, p) in [("md5user", "bad"), ("pwuser", "bad")] {
        let e = PgBackend::connect(&user(u, p))
            .err()
            .expect("wrong password");
        assert!(!e.transient && e.message.contains("28P01"), "{u}: {e}");
    }

    // The UNIX socket (host = the socket's directory): trust for local connections.
    let mut local = cluster.config();
    local.host = cluster.dir().to_string_lossy().into_owned();
    local.password = String::new();
    let mut b = connect(&local);
    ok(b.ensure_ttl_table("t"));
    ok(b.set("t", "k", 1));
    assert_eq!(ok(b.get("t", "k")), Some(1));
}

#[test]
fn a_key_read_in_a_transaction_waits_for_its_holder() {
    let (config, mut a) = fresh();
    let mut b = connect(&config);
    ok(a.ensure_ttl_table("t"));
    ok(a.begin());
    assert_eq!(ok(a.get("t", "k")), None);
    let reader = std::thread::spawn(move || {
        ok(b.begin());
        // Blocks on the key's lock until `a` commits, then sees what `a` wrote.
        let seen = ok(b.get("t", "k"));
        ok(b.commit());
        seen
    });
    std::thread::sleep(Duration::from_millis(300));
    ok(a.set("t", "k", 7));
    ok(a.commit());
    assert_eq!(reader.join().expect("reader"), Some(7));
}

#[test]
fn unrelated_keys_never_conflict() {
    let (config, mut a) = fresh();
    let mut b = connect(&config);
    ok(a.ensure_ttl_table("t"));
    // What SERIALIZABLE would refuse (each reads what the other writes) commits at once:
    // only the same key's read-modify-write is serialized.
    ok(a.begin());
    ok(b.begin());
    ok(a.get("t", "x"));
    ok(b.get("t", "y"));
    ok(a.set("t", "x", 1));
    ok(b.set("t", "y", 1));
    ok(a.commit());
    ok(b.commit());
}

#[test]
fn deadlocks_are_transient() {
    let (config, mut a) = fresh();
    let mut b = connect(&config);
    ok(a.ensure_ttl_table("t"));
    ok(a.begin());
    ok(b.begin());
    ok(a.get("t", "x"));
    ok(b.get("t", "y"));
    let other = std::thread::spawn(move || {
        let r = a.get("t", "y");
        (a, r)
    });
    std::thread::sleep(Duration::from_millis(200));
    let rb = b.get("t", "x");
    let (mut a, ra) = other.join().expect("thread");
    let errors: Vec<StoreError> = [ra, rb].into_iter().filter_map(Result::err).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].transient && errors[0].message.contains("40P01"),
        "{}",
        errors[0]
    );
    a.rollback();
    b.rollback();
    assert!(!a.is_broken() && !b.is_broken());
}

#[test]
fn a_killed_connection_is_transient_and_replaced() {
    let (_, mut b) = fresh();
    ok(b.ensure_ttl_table("t"));
    ok(b.set("t", "k", 1));
    let mut su = superuser();
    let kill = |su: &mut PgBackend, pid: i32| {
        let r = ok(su.simple_query(&format!("SELECT pg_terminate_backend({pid})")));
        assert_eq!(r[0][0].as_deref(), Some("t"));
        // Termination is asynchronous: wait for the backend to be gone.
        for _ in 0..100 {
            let r = ok(su.simple_query(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
            )));
            if r[0][0].as_deref() == Some("0") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("backend {pid} did not terminate");
    };

    // Between transactions.
    let pid = b.backend_pid();
    kill(&mut su, pid);
    let e = b.get("t", "k").expect_err("the connection is gone");
    assert!(e.transient && e.connection_lost, "{e}");
    assert!(b.is_broken());
    let e = b.get("t", "k").expect_err("still broken");
    assert!(e.transient, "{e}");
    ok(b.begin()); // reconnects
    assert!(!b.is_broken());
    assert_ne!(b.backend_pid(), pid);
    assert_eq!(ok(b.get("t", "k")), Some(1));
    ok(b.commit());

    // Inside a transaction: the transaction is lost, never silently continued.
    ok(b.begin());
    ok(b.set("t", "k", 2));
    kill(&mut su, b.backend_pid());
    let e = b.set("t", "k", 3).expect_err("the connection is gone");
    assert!(e.transient, "{e}");
    let e = b
        .purge_ttl("t", 0)
        .expect_err("no reconnect inside a transaction");
    assert!(e.transient, "{e}");
    assert!(b.commit().is_err_and(|e| e.transient));
    b.rollback();
    ok(b.begin());
    assert_eq!(ok(b.get("t", "k")), Some(1));
    ok(b.commit());

    // Maintenance outside a transaction reconnects by itself.
    kill(&mut su, b.backend_pid());
    assert!(b.get("t", "k").is_err());
    assert_eq!(ok(b.dump_ttl("t")), vec![("k".into(), 1)]);
}

#[test]
fn a_stopped_server_fails_fast_and_comes_back() {
    let cluster: PgCluster = testing::temp_cluster();
    let config = cluster.config();
    let mut b = connect(&config);
    ok(b.ensure_ttl_table("t"));
    ok(b.set("t", "k", 7));

    cluster.stop();
    let t = Instant::now();
    let e = b.get("t", "k").expect_err("server stopped");
    assert!(e.transient, "{e}");
    let e = b.begin().expect_err("cannot reconnect");
    assert!(e.transient, "{e}");
    let e = PgBackend::connect(&config).err().expect("server stopped");
    assert!(e.transient && e.connection_lost, "{e}");
    assert!(e.message.contains("cannot connect"), "{e}");
    let mut local = config.clone();
    local.host = cluster.dir().to_string_lossy().into_owned();
    let e = PgBackend::connect(&local).err().expect("no socket");
    assert!(e.transient, "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    cluster.start();
    ok(b.begin());
    assert_eq!(ok(b.get("t", "k")), Some(7));
    ok(b.commit());
}

#[test]
fn a_server_that_never_answers_times_out() {
    // The kernel completes the TCP handshake of a listener nobody accepts on; the startup
    // exchange then waits for an answer that never comes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let config = testing::filter_config(port, "filterdb");
    let t = Instant::now();
    let e = PgBackend::connect(&config).err().expect("no answer");
    let took = t.elapsed();
    assert!(e.transient, "{e}");
    assert!(e.message.contains("timed out"), "{e}");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "{took:?}"
    );
    drop(listener);
}

#[test]
fn concurrent_increments_lose_no_update() {
    const THREADS: usize = 8;
    const EACH: i64 = 20;
    let (config, mut b) = fresh();
    ok(b.ensure_ttl_table("t"));
    ok(b.ensure_counter_table("c"));
    ok(b.set("t", "n", 0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let config = config.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut b = connect(&config);
                barrier.wait();
                let mut retries = 0u32;
                for _ in 0..EACH {
                    loop {
                        let r = (|| {
                            b.begin()?;
                            let n = b.get("t", "n")?.unwrap_or(0);
                            b.set("t", "n", n + 1)?;
                            b.count("c", "k", 1, 1)?;
                            b.commit()
                        })();
                        match r {
                            Ok(()) => break,
                            Err(e) if e.transient => {
                                b.rollback();
                                retries += 1;
                                assert!(retries < 10_000, "endless conflicts: {e}");
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                retries
            })
        })
        .collect();
    let retries: u32 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    assert_eq!(ok(b.get("t", "n")), Some(THREADS as i64 * EACH));
    assert_eq!(ok(b.count_sum("c", "k", 0, 10)), THREADS as i64 * EACH);
    eprintln!("{} increments, {retries} retries", THREADS as i64 * EACH);
}

#[test]
fn connect_and_query_latency() {
    let config = testing::postgres_database();
    let mut b = connect(&config);
    ok(b.ensure_ttl_table("t"));
    let n = 20;
    let t = Instant::now();
    for _ in 0..n {
        drop(connect(&config));
    }
    let tcp = t.elapsed() / n;
    let mut local = config.clone();
    local.host = testing::PG_DIR.into();
    let t = Instant::now();
    for _ in 0..n {
        drop(connect(&local));
    }
    let unix = t.elapsed() / n;
    let t = Instant::now();
    for i in 0..n {
        ok(b.begin());
        let v = ok(b.get("t", "k")).unwrap_or(0);
        ok(b.set("t", "k", v + i64::from(i)));
        ok(b.commit());
    }
    let tx = t.elapsed() / n;
    eprintln!(
        "connect TCP+SCRAM {tcp:?}, connect UNIX trust {unix:?}, transaction (begin get set commit) {tx:?}"
    );
    assert!(tcp < Duration::from_secs(1) && tx < Duration::from_secs(1));
}

/// The same through [`Store`], as the modules use it: each thread is a worker with its own
/// store and connection; conflicts are retried inside `Store::transaction`.
#[test]
fn concurrent_store_transactions_lose_no_update() {
    use rustfilter::store::{Counter, Store, StoreConfig, TtlDb};
    const THREADS: usize = 8;
    const EACH: i64 = 20;
    let config = testing::postgres_database();
    let db = TtlDb {
        name: "greylist_Passed".into(),
        ttl: 3600,
        purge_interval: 60,
    };
    let counter = Counter {
        name: "ratelimit_counts".into(),
        window_minutes: 5,
        purge_interval: 60,
    };
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (config, db, counter) = (config.clone(), db.clone(), counter.clone());
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut store = Store::new(StoreConfig::Postgres(config));
                barrier.wait();
                let mut gave_up = 0;
                for _ in 0..EACH {
                    let r = store.transaction(&[&db], &[&counter], |tx| {
                        let n = tx.get(&db.name, "hot")?.unwrap_or(0);
                        tx.set(&db.name, "hot", n + 1)?;
                        tx.count(&counter.name, "hot", 1, 1)
                    });
                    match r {
                        Ok(()) => {}
                        // Under this contention a message may tempfail; it must not count.
                        Err(e) if e.transient => gave_up += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                gave_up
            })
        })
        .collect();
    let gave_up: i64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    let mut store = Store::new(StoreConfig::Postgres(config));
    let (n, sum) = ok(store.transaction(&[&db], &[&counter], |tx| {
        Ok((
            tx.get(&db.name, "hot")?,
            tx.count_sum(&counter.name, "hot", 0, 10)?,
        ))
    }));
    let done = THREADS as i64 * EACH - gave_up;
    assert_eq!(n, Some(done), "{gave_up} gave up");
    assert_eq!(sum, done);
    eprintln!("{done} committed, {gave_up} gave up after retries");
}

#[test]
fn a_store_survives_a_killed_connection_and_a_restarted_server() {
    use rustfilter::store::{Store, StoreConfig, TtlDb};
    let db = TtlDb {
        name: "t".into(),
        ttl: 3600,
        purge_interval: 60,
    };
    let cluster = testing::temp_cluster();
    let mut store = Store::new(StoreConfig::Postgres(cluster.config()));
    ok(store.transaction(&[&db], &[], |tx| tx.set("t", "k", 1)));

    // Killed between messages: the next transaction reconnects by itself.
    let mut su = connect(&cluster.superuser());
    ok(su.simple_query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = 'filterdb' AND pid <> pg_backend_pid()",
    ));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        ok(store.transaction(&[&db], &[], |tx| tx.get("t", "k"))),
        Some(1)
    );

    // Server down: a prompt transient failure (the message tempfails), then recovery.
    cluster.stop();
    let t = Instant::now();
    let e = store
        .transaction(&[&db], &[], |tx| tx.get("t", "k"))
        .expect_err("server down");
    assert!(e.transient, "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    cluster.start();
    assert_eq!(
        ok(store.transaction(&[&db], &[], |tx| tx.get("t", "k"))),
        Some(1)
    );
    assert_eq!(ok(store.dump("t")), vec![("k".into(), 1)]);
}
