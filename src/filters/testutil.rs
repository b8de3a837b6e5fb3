//! A message on disk (control + data files, a sysconfdir) for module unit tests.

use std::cell::RefCell;
use std::path::PathBuf;

use crate::config::ModulesConfig;
use crate::courier::control::Envelope;
use crate::courier::message::Message;
use crate::courier::{Courier, CourierPaths};
use crate::filter::{Context, Filter, FilterResult};
use crate::net::dns::Resolver;
use crate::store::{Store, StoreConfig};

pub struct Fixture {
    /// Removed (with everything in it) when the fixture is dropped.
    _dir: tempfile::TempDir,
    pub courier: Courier,
    pub control: PathBuf,
    pub data: PathBuf,
    /// SQLite in the fixture's directory unless a test replaces it.
    pub store: RefCell<Store>,
    /// /etc/resolv.conf unless a test replaces it (e.g. with the test name server).
    pub dns: RefCell<Resolver>,
}

impl Fixture {
    /// `etc` files go into the sysconfdir (e.g. `("locals", "example.com\n")`).
    pub fn new(control: &str, data: &str, etc: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let sysconf = dir.path().join("etc");
        std::fs::create_dir_all(&sysconf).expect("mkdir etc");
        for (name, text) in etc {
            std::fs::write(sysconf.join(name), text).expect("write etc file");
        }
        let control_path = dir.path().join("C1");
        let data_path = dir.path().join("D1");
        std::fs::write(&control_path, control).expect("write control");
        std::fs::write(&data_path, data).expect("write data");
        let mut paths = CourierPaths::defaults();
        paths.sysconfdir = sysconf;
        paths.localstatedir = dir.path().join("spool");
        let store = Store::new(StoreConfig::Sqlite {
            path: dir.path().join("ttldb.sqlite"),
        });
        Fixture {
            store: RefCell::new(store),
            dns: RefCell::new(Resolver::system()),
            courier: Courier::new(paths),
            _dir: dir,
            control: control_path,
            data: data_path,
        }
    }

    /// Run one module on the message (control files parsed afresh).
    pub fn run(&self, filter: &dyn Filter) -> FilterResult {
        let mut envelope =
            Envelope::load(std::slice::from_ref(&self.control)).expect("load control");
        let mut message = Message::new(&self.data);
        let mut store = self.store.borrow_mut();
        let mut dns = self.dns.borrow_mut();
        let mut ctx = Context {
            store: &mut store,
            dns: &mut dns,
            courier: &self.courier,
            envelope: &mut envelope,
            message: &mut message,
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(60),
        };
        filter.check(&mut ctx)
    }

    pub fn control_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.control).expect("read control")).into_owned()
    }

    pub fn data_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.data).expect("read data")).into_owned()
    }
}

/// Build a module from modules-file text.
pub fn build(
    ctor: super::Constructor,
    section: &str,
    modules_text: &str,
    courier: &Courier,
) -> Result<Box<dyn Filter>, crate::config::ConfigError> {
    let cfg = ModulesConfig::parse(std::path::Path::new("test-modules.conf"), modules_text)?;
    let sec = cfg.section(section);
    let filter = ctor(&sec, courier)?;
    sec.finish()?;
    Ok(filter)
}
