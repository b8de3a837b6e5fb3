//! Spec §8.2 (the reference's `tests/test_config.py`), on tests/data/courier: the source files
//! there and the `.dat` files Debian's own makedat/makealiases built from them (see its README).

use std::path::{Path, PathBuf};

use rustfilter::courier::{Courier, CourierPaths, PathOverrides};

fn courier() -> Courier {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/courier");
    let mut paths = CourierPaths::defaults();
    paths.apply(&PathOverrides {
        sysconfdir: Some(dir),
        localstatedir: None,
    });
    Courier::new(paths)
}

const ME: &str = "ascension.private.dragonsdawn.net";

fn strings(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| s.to_string()).collect())
}

#[test]
fn points_at_the_fixture_directory() {
    let c = courier();
    assert!(c.sysconfdir().ends_with("tests/data/courier"));
    assert_eq!(c.localstatedir(), PathBuf::from("/var/spool/courier"));
}

#[test]
fn single_line_files() {
    let c = courier();
    assert_eq!(c.me(), ME);
    assert_eq!(c.defaultdomain(), "dragonsdawn.net");
    assert_eq!(
        c.dsnfrom(),
        "\"Courier mail server at ascension.private.dragonsdawn.net\" <@>"
    );
    assert!(c.locallowercase());
}

#[test]
fn is_local() {
    let c = courier();
    assert!(c.is_local("ascension.private.dragonsdawn.net").unwrap());
    assert!(c.is_local("private.dragonsdawn.net").unwrap());
    assert!(!c.is_local("herald.private.dragonsdawn.net").unwrap());
}

#[test]
fn is_hosteddomain() {
    let c = courier();
    assert!(
        c.is_hosteddomain("virtual.private.dragonsdawn.net")
            .unwrap()
    );
    assert!(
        !c.is_hosteddomain("ascension.private.dragonsdawn.net")
            .unwrap()
    );
    // our extra `.wild.example.org` entry: subdomains only
    assert!(c.is_hosteddomain("a.wild.example.org").unwrap());
    assert!(!c.is_hosteddomain("wild.example.org").unwrap());
}

#[test]
fn get_alias() {
    let c = courier();
    let gordon = strings(&["gordon@ascension.private.dragonsdawn.net"]);
    assert_eq!(c.get_alias("alias1").unwrap(), gordon);
    assert_eq!(
        c.get_alias("alias1@ascension.private.dragonsdawn.net")
            .unwrap(),
        gordon
    );
    assert_eq!(
        c.get_alias("alias2").unwrap(),
        strings(&[
            "root@ascension.private.dragonsdawn.net",
            "gordon@ascension.private.dragonsdawn.net"
        ])
    );
    assert_eq!(
        c.get_alias("alias3@virtual.private.dragonsdawn.net")
            .unwrap(),
        strings(&["root@ascension.private.dragonsdawn.net"])
    );
    // a local domain other than me() is normalised to me(); domains are case-insensitive
    assert_eq!(
        c.get_alias("alias1@private.dragonsdawn.net").unwrap(),
        gordon
    );
    assert_eq!(
        c.get_alias("alias1@ASCENSION.private.dragonsdawn.net")
            .unwrap(),
        gordon
    );
    assert_eq!(c.get_alias("nobody").unwrap(), None);
}

#[test]
fn smtpaccess() {
    let c = courier();
    assert_eq!(
        c.smtpaccess("127.0.0.1").unwrap().as_deref(),
        Some("allow,RELAYCLIENT")
    );
    assert_eq!(
        c.smtpaccess("192.168.1.1").unwrap().as_deref(),
        Some("allow,BLOCK")
    );
    assert_eq!(
        c.smtpaccess("192.168.2.1").unwrap().as_deref(),
        Some("allow,BLOCK=shoo")
    );
    assert_eq!(c.smtpaccess("192.168.3.1").unwrap(), None);
}

#[test]
fn smtpaccess_val() {
    let c = courier();
    assert_eq!(
        c.smtpaccess_val("RELAYCLIENT", "127.0.0.1")
            .unwrap()
            .as_deref(),
        Some("")
    );
    assert_eq!(c.smtpaccess_val("BLOCK", "127.0.0.1").unwrap(), None);
    assert_eq!(
        c.smtpaccess_val("RELAYCLIENT", "192.168.3.1").unwrap(),
        None
    );
    assert_eq!(
        c.smtpaccess_val("BLOCK", "192.168.2.1").unwrap().as_deref(),
        Some("shoo")
    );
}

#[test]
fn derived_helpers() {
    let c = courier();
    assert!(c.is_relayed("127.0.0.1").unwrap());
    assert!(!c.is_relayed("192.168.1.1").unwrap());
    assert!(!c.is_relayed("192.168.3.1").unwrap());

    assert!(!c.is_whiteblocked("127.0.0.1").unwrap());
    assert!(c.is_whiteblocked("192.168.1.1").unwrap());
    assert!(!c.is_whiteblocked("192.168.3.1").unwrap());

    assert_eq!(c.block_val("127.0.0.1").unwrap(), None);
    assert_eq!(c.block_val("192.168.1.1").unwrap().as_deref(), Some(""));
    assert_eq!(c.block_val("192.168.2.1").unwrap().as_deref(), Some("shoo"));
    assert_eq!(c.block_val("192.168.3.1").unwrap(), None);
}

/// The entries `makedat -cidr` expanded (CIDR netblocks) and the IPv6 forms.
#[test]
fn smtpaccess_cidr_and_ipv6_entries_built_by_makedat() {
    let c = courier();
    // 10.0.0.0/8 -> key `10`
    assert!(c.is_relayed("10.20.30.40").unwrap());
    // 172.16.0.0/12 -> keys 172.16 … 172.31
    assert_eq!(c.smtpaccess("172.16.0.1").unwrap().as_deref(), Some("deny"));
    assert_eq!(
        c.smtpaccess("172.31.255.255").unwrap().as_deref(),
        Some("deny")
    );
    assert_eq!(c.smtpaccess("172.32.0.1").unwrap(), None);
    assert_eq!(c.smtpaccess("172.15.0.1").unwrap(), None);
    // `:2001:0db8:0000:0000:0000:0000:0000:0001` written out in the source
    assert!(c.is_relayed("2001:db8::1").unwrap());
    assert!(c.is_relayed("2001:DB8:0:0:0:0:0:1").unwrap());
    assert!(!c.is_relayed("2001:db8::2").unwrap());
    // 2001:db8:aa::/48 -> key `:2001:0db8:00aa`
    assert_eq!(
        c.block_val("2001:db8:aa:1::5").unwrap().as_deref(),
        Some("v6 net")
    );
    assert_eq!(c.block_val("2001:db8:ab::5").unwrap(), None);
    // IPv4-mapped IPv6 is looked up as IPv4, as couriertcpd does
    assert!(c.is_relayed("::ffff:127.0.0.1").unwrap());
    assert_eq!(
        c.block_val("::ffff:192.168.2.7").unwrap().as_deref(),
        Some("shoo")
    );
    // unparsable: logged, none
    assert_eq!(c.smtpaccess("not-an-address").unwrap(), None);
}
