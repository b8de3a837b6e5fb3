//! Unit-test support for the stateful modules: one message whose control file a test rewrites
//! between runs, a store on SQLite or on a fresh PostgreSQL database, and a clock the test sets.

use std::cell::Cell;

use super::testutil::Fixture;
use crate::config::{ConfigError, ModulesConfig, Section};
use crate::filter::{Filter, FilterResult, Verdict};
use crate::store::{PgConfig, Store, StoreConfig, TtlDb};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct Harness {
    pub fx: Fixture,
    pub backend: Backend,
}

impl Harness {
    pub fn new(backend: Backend, control: &str) -> Harness {
        let fx = Fixture::new(control, "Subject: x\n\nbody\n", &[]);
        if backend == Backend::Postgres {
            let pg = crate::store::testing::postgres_database();
            *fx.store.borrow_mut() = Store::new(StoreConfig::Postgres(pg));
        }
        Harness { fx, backend }
    }

    /// Build a module from modules-file text (its section checked for unknown keys).
    pub fn section<T>(
        &self,
        name: &str,
        text: &str,
        ctor: impl Fn(&Section<'_>) -> Result<T, ConfigError>,
    ) -> Result<T, ConfigError> {
        let cfg = ModulesConfig::parse(std::path::Path::new("test-modules.conf"), text)?;
        let sec = cfg.section(name);
        let module = ctor(&sec)?;
        sec.finish()?;
        Ok(module)
    }

    /// Replace the message's control file.
    pub fn control(&self, text: &str) {
        std::fs::write(&self.fx.control, text).expect("write control");
    }

    pub fn run(&self, filter: &dyn Filter) -> Verdict {
        match self.fx.run(filter) {
            Ok(v) => v,
            Err(e) => panic!("{:?} backend: module failed: {e}", self.backend),
        }
    }

    pub fn run_result(&self, filter: &dyn Filter) -> FilterResult {
        self.fx.run(filter)
    }

    /// A TtlDb table's entries, sorted by key (the table is created if missing).
    pub fn dump(&self, table: &str) -> Vec<(String, i64)> {
        let mut store = self.fx.store.borrow_mut();
        let db = TtlDb {
            name: table.to_string(),
            ttl: 1,
            purge_interval: 1,
        };
        store
            .transaction(&[&db], &[], |_| Ok(()))
            .expect("create table");
        store.dump(table).expect("dump")
    }

    /// Point the store at a database that cannot be reached or written.
    pub fn break_store(&self) {
        let config = match self.backend {
            Backend::Sqlite => StoreConfig::Sqlite {
                path: "/nonexistent/rustfilter-test/ttldb.sqlite".into(),
            },
            // Nothing listens on port 1: connections are refused at once.
            Backend::Postgres => StoreConfig::Postgres(PgConfig {
                host: "127.0.0.1".into(),
                port: 1,
                db: "none".into(),
                user: "filter".into(),
                password: "filterpw".into(),
            }),
        };
        *self.fx.store.borrow_mut() = Store::new(config);
    }
}

thread_local! {
    static NOW: Cell<f64> = const { Cell::new(1_700_000_000.0) };
}

/// Set the time the test clocks return (per test thread).
pub fn set_clock(now: f64) {
    NOW.with(|c| c.set(now));
}

pub fn test_clock_f64() -> f64 {
    NOW.with(|c| c.get())
}

pub fn test_clock() -> i64 {
    test_clock_f64() as i64
}

/// `on_both_backends!(case, …)`: a `#[test]` per case and backend, each calling
/// `case(Backend::Sqlite)` / `case(Backend::Postgres)`.
macro_rules! on_both_backends {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $case() {
                    super::$case($crate::filters::stateful_testutil::Backend::Sqlite)
                }
            )+
        }
        mod postgres {
            $(
                #[test]
                fn $case() {
                    super::$case($crate::filters::stateful_testutil::Backend::Postgres)
                }
            )+
        }
    };
}
pub(crate) use on_both_backends;
