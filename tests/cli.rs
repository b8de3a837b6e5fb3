//! The command line: `check`, `check-config`, `--version`, usage errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(chain: &str, modules: &str) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(&etc).expect("mkdir");
        std::fs::write(etc.join("locals"), "e2e.test\n").expect("locals");
        std::fs::write(etc.join("me"), "mx.e2e.test\n").expect("me");
        std::fs::write(dir.path().join("rustfilter.conf"), chain).expect("chain");
        std::fs::write(dir.path().join("rustfilter-modules.conf"), modules).expect("modules");
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn run(&self, args: &[&str]) -> Output {
        let root = self.dir.path();
        Command::new(env!("CARGO_BIN_EXE_rustfilter"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .args(args)
            .arg("--config")
            .arg(root.join("rustfilter.conf"))
            .arg("--modules-config")
            .arg(root.join("rustfilter-modules.conf"))
            .arg("--sysconfdir")
            .arg(root.join("etc"))
            .arg("--localstatedir")
            .arg(root.join("spool"))
            .output()
            .expect("run rustfilter")
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rustfilter"))
        .args(args)
        .output()
        .expect("run rustfilter")
}

#[test]
fn version_and_help() {
    let out = bin(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!("rustfilter {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = bin(&["--help"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("check-config"));
}

#[test]
fn usage_errors_exit_64() {
    for args in [
        &["--bogus"][..],
        &["frobnicate"],
        &["check", "only-data"],
        &["--workers", "zero"],
    ] {
        let out = bin(args);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains("Usage:"));
    }
}

#[test]
fn check_config_accepts_a_valid_configuration() {
    let s = Setup::new(
        "# a comment\nwhitelist_auth for privateaddr\nprivateaddr\ndeliveredto\n",
        "[rustfilter]\nworkers = 2\n[privateaddr.py]\nprivate_rcpts = {'a@e2e.test': ['b@']}\n",
    );
    let out = s.run(&["check-config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("whitelist_auth, privateaddr, deliveredto"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn check_config_names_file_line_and_key() {
    let s = Setup::new(
        "debug\nnosuchmodule\n",
        "[privateaddr]\nprivate_rcpts = 'x'\n",
    );
    let out = s.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(78));
    let err = text(&out.stderr);
    let chain = s.path("rustfilter.conf").display().to_string();
    assert!(
        err.contains(&format!("{chain}:2")) && err.contains("unknown module 'nosuchmodule'"),
        "{err}"
    );
    let modules = s.path("rustfilter-modules.conf").display().to_string();
    assert!(
        err.contains(&format!("{modules}:2")) && err.contains("private_rcpts"),
        "{err}"
    );
}

#[test]
fn check_config_rejects_unknown_keys_and_evaluation() {
    let s = Setup::new("debug\n", "[debug]\ncolour = 'blue'\n");
    let out = s.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("colour"),
        "{}",
        text(&out.stderr)
    );
    let s = Setup::new(
        "debug\n",
        "[debug.py]\ndry_run = __import__('os').system('true')\n",
    );
    let out = s.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("dry_run"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_runs_the_chain_on_copies() {
    let s = Setup::new(
        "noduplicates\nwhitelist_auth for deliveredto\ndeliveredto\n",
        "",
    );
    let control = "sfrom@example.org\nre2e@e2e.test\nR\nN\nre2e@e2e.test\nRrfc822;alias@e2e.test\nN\nMmsg-1\n";
    let c = s.write("C1", control);
    let d = s.write("D1", "Delivered-To: e2e@E2E.test\nSubject: loop\n\nbody\n");
    let out = s.run(&[
        "check",
        d.to_str().expect("utf8"),
        c.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("noduplicates: no decision"), "{stdout}");
    assert!(stdout.contains("whitelist_auth: no decision"), "{stdout}");
    assert!(
        stdout.contains(
            "deliveredto: reply \"501 Mail loop - already have my Delivered-To: header.\""
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("would append") && stdout.contains("S1 "),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("reply: 501 Mail loop - already have my Delivered-To: header.\n"),
        "{stdout}"
    );
    // The spooled files themselves are never touched.
    assert_eq!(std::fs::read_to_string(&c).expect("control"), control);
}

#[test]
fn check_with_missing_files_fails_clearly() {
    let s = Setup::new("debug\n", "");
    let out = s.run(&["check", "/nonexistent/D1", "/nonexistent/C1"]);
    assert_eq!(out.status.code(), Some(71));
    assert!(
        text(&out.stderr).contains("/nonexistent/D1"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn missing_chain_file_is_a_config_error() {
    let s = Setup::new("debug\n", "");
    let out = Command::new(env!("CARGO_BIN_EXE_rustfilter"))
        .env_clear()
        .args(["check-config", "--config"])
        .arg(s.path("absent.conf"))
        .arg("--sysconfdir")
        .arg(Path::new(&s.path("etc")))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("absent.conf"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_config_checks_the_dns_section() {
    let s = Setup::new(
        "debug\n",
        "[dns]\nnameservers = ['127.0.0.1:15353']\ntimeout = 2\n",
    );
    let out = s.run(&["check-config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = Setup::new("debug\n", "[dns]\ntimeout = 'soon'\n");
    let out = s.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("timeout"),
        "{}",
        text(&out.stderr)
    );
}
