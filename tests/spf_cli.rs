//! `rustfilter spf` against the test name server (nsd with the zones of tests/data/dns/,
//! started through `rustfilter::net::dns::testing`), and its failures.

use std::process::{Command, Output};

use rustfilter::net::dns::testing;

fn rustfilter_spf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rustfilter"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("spf")
        .args(args)
        .output()
        .expect("run rustfilter")
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// (exit status, stdout lines) of `spf --ip IP --sender SENDER [extra…]` against nsd.
fn spf(ip: &str, sender: &str, extra: &[&str]) -> (Option<i32>, Vec<String>) {
    let ns = testing::nameserver().to_string();
    let mut args = vec!["--ip", ip, "--sender", sender, "--nameserver", &ns];
    args.extend_from_slice(extra);
    let out = rustfilter_spf(&args);
    (out.status.code(), lines(&out))
}

#[test]
fn results_as_spfquery_prints_them() {
    // example.test: "v=spf1 ip4:127.0.0.0/8 mx -all"
    let (code, out) = spf("127.0.0.9", "someone@example.test", &[]);
    assert_eq!((code, out[0].as_str()), (Some(0), "pass"), "{out:?}");
    assert!(out[1].contains("ip4:127.0.0.0/8"), "{out:?}");

    let (code, out) = spf(
        "192.0.2.77",
        "someone@example.test",
        &["--helo", "h.example"],
    );
    assert_eq!(code, Some(0));
    assert_eq!(out[0], "fail");
    assert_eq!(out[1], "SPF fail - not authorized");
    assert!(out[2].contains("-all"), "{out:?}");

    // long.example.test: a multi-string TXT record, answered over TCP.
    let (_, out) = spf("198.51.100.1", "a@long.example.test", &[]);
    assert_eq!(out[0], "pass", "{out:?}");
    let (_, out) = spf("2001:db8::5", "a@long.example.test", &[]);
    assert_eq!(out[0], "pass", "{out:?}");
    // Its a: mechanisms name hosts that do not exist: the third void lookup is an error.
    let (_, out) = spf("10.9.9.9", "a@long.example.test", &[]);
    assert_eq!(out[0], "permerror", "{out:?}");

    let (_, out) = spf("10.1.1.1", "a@nospf.example.test", &[]);
    assert_eq!(out[0], "none", "{out:?}");
    let (_, out) = spf("10.1.1.1", "a@nonexistent.example.test", &[]);
    assert_eq!(out[0], "none", "{out:?}");

    // An empty sender: the HELO name's record.
    let (_, out) = spf("127.0.0.2", "", &["--helo", "example.test"]);
    assert_eq!(out[0], "pass", "{out:?}");
}

#[test]
fn failures() {
    // A name server that refuses the connection: temperror, exit 75.
    let out = rustfilter_spf(&[
        "--ip",
        "192.0.2.1",
        "--sender",
        "a@example.test",
        "--nameserver",
        "127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(75));
    assert_eq!(lines(&out)[0], "temperror");

    for bad in [
        &["--ip", "192.0.2.1"][..],
        &["--sender", "a@example.test"],
        &["--ip", "not-an-ip", "--sender", "a@example.test"],
        &["--ip", "192.0.2.1", "--sender", ""],
    ] {
        let out = rustfilter_spf(bad);
        assert_eq!(out.status.code(), Some(64), "{bad:?}");
    }
}
