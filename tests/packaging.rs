//! Packaging: `make install` / `make uninstall` into a DESTDIR, the example configurations in
//! conf/ (each must pass `rustfilter check-config`), and the cron file.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rustfilter")
}

fn output_text(out: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `make TARGET DESTDIR=… PREFIX=/usr BIN=<this build's binary>` in the repository.
fn make(target: &str, destdir: &Path) -> Output {
    let out = Command::new("make")
        .arg("-C")
        .arg(repo())
        .arg("--no-print-directory")
        .arg(target)
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg("PREFIX=/usr")
        .arg(format!("BIN={}", bin()))
        // Run under `make test`, the outer make's flags (jobserver) must not leak in.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .unwrap_or_else(|e| panic!("cannot run make (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "make {target} failed\n{}",
        output_text(&out)
    );
    out
}

/// `name=value` lines of `courier-config`, if it is installed.
fn courier_config(name: &str) -> Option<String> {
    let out = Command::new("courier-config").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_string))
}

/// Where the Makefile puts the filter: Courier's libexecdir/filters, else Debian's.
fn filter_dir() -> String {
    courier_config("libexecdir")
        .map(|d| format!("{d}/filters"))
        .unwrap_or_else(|| "/usr/lib/courier/filters".to_string())
}

fn getent(db: &str, name: &str) -> Option<u32> {
    let out = Command::new("getent").args([db, name]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)?
        .trim()
        .parse()
        .ok()
}

/// Courier's mail user and group as (name, id): courier-config's, else courier, else daemon.
fn mail_account(db: &str, key: &str) -> (String, u32) {
    let name = courier_config(key)
        .or_else(|| getent(db, "courier").map(|_| "courier".to_string()))
        .unwrap_or_else(|| "daemon".to_string());
    let id = getent(db, &name).unwrap_or_else(|| panic!("{db} {name} is unknown to getent"));
    (name, id)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every file, symlink and directory under `root`, relative to it.
fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            let rel = path.strip_prefix(root).expect("under root");
            out.insert(rel.display().to_string());
            if path.is_dir() && !path.is_symlink() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

fn pages() -> Vec<(String, String)> {
    let mut pages = Vec::new();
    for entry in fs::read_dir(repo().join("man")).expect("man/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some((_, section)) = name.rsplit_once('.')
            && section.len() == 1
            && section.as_bytes()[0].is_ascii_digit()
        {
            pages.push((name.clone(), section.to_string()));
        }
    }
    pages.sort();
    pages
}

fn examples() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(repo().join("conf/examples"))
        .expect("conf/examples/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".conf"))
        .collect();
    names.sort();
    names
}

#[test]
fn install_upgrade_uninstall_in_a_destdir() {
    let dest = tempfile::tempdir().expect("tempdir");
    let d = dest.path();
    let at = |p: &str| d.join(p.trim_start_matches('/'));
    let built = fs::read(bin()).expect("read the built binary");

    // ---- install -------------------------------------------------------------------------
    let out = make("install", d);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("filterctl start rustfilter"), "{said}");

    let filter = at(&format!("{}/rustfilter", filter_dir()));
    for exe in [filter.clone(), at("/usr/bin/rustfilter")] {
        assert_eq!(mode(&exe), 0o755, "{}", exe.display());
        assert!(
            fs::read(&exe).expect("read installed binary") == built,
            "{} is not the built binary",
            exe.display()
        );
    }
    for (page, section) in pages() {
        let p = at(&format!("/usr/share/man/man{section}/{page}"));
        assert_eq!(mode(&p), 0o644, "{}", p.display());
        assert_eq!(
            fs::read(&p).expect("page"),
            fs::read(repo().join("man").join(&page)).expect("source page")
        );
    }
    for example in examples() {
        let p = at(&format!("/usr/share/doc/rustfilter/examples/{example}"));
        assert_eq!(mode(&p), 0o644, "{}", p.display());
    }
    assert!(at("/usr/share/doc/rustfilter/examples/rustfilter.cron").is_file());

    // Only the two configuration files go into /etc, identical to conf/.
    let chain = at("/etc/rustfilter.conf");
    let modules = at("/etc/rustfilter-modules.conf");
    assert_eq!(mode(&chain), 0o644);
    assert_eq!(
        fs::read(&chain).expect("chain"),
        fs::read(repo().join("conf/rustfilter.conf")).expect("conf")
    );
    assert_eq!(
        fs::read(&modules).expect("modules"),
        fs::read(repo().join("conf/rustfilter-modules.conf")).expect("conf")
    );
    let etc: BTreeSet<String> = tree(&at("/etc"));
    let expected_etc: BTreeSet<String> = [
        "rustfilter.conf",
        "rustfilter-modules.conf",
        "cron.d",
        "cron.d/rustfilter",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(etc, expected_etc);

    // The cron file runs the purge as Courier's mail user.
    let (mailuser, uid) = mail_account("passwd", "mailuser");
    let (_, gid) = mail_account("group", "mailgroup");
    let cron = at("/etc/cron.d/rustfilter");
    assert_eq!(mode(&cron), 0o644);
    let cron_text = fs::read_to_string(&cron).expect("cron");
    let job = cron_text
        .lines()
        .find(|l| l.contains("ttldb purge") && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("no ttldb purge job in\n{cron_text}"));
    let fields: Vec<&str> = job.split_whitespace().collect();
    assert_eq!(fields.get(5), Some(&mailuser.as_str()), "{job}");

    // The state directory: only the mail user may enter it.
    let state = at("/var/lib/rustfilter");
    assert!(state.is_dir());
    assert_eq!(mode(&state), 0o750);
    if is_root() {
        let meta = fs::metadata(&state).expect("state dir");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (uid, gid),
            "owner of the state dir"
        );
        // The modules file may hold a database password.
        let meta = fs::metadata(&modules).expect("modules");
        assert_eq!(mode(&modules), 0o640);
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, gid),
            "owner of the modules file"
        );
    }

    // The installed command accepts the installed configuration.
    let check = Command::new(at("/usr/bin/rustfilter"))
        .arg("check-config")
        .arg("--config")
        .arg(&chain)
        .arg("--modules-config")
        .arg(&modules)
        .output()
        .expect("run the installed binary");
    assert!(check.status.success(), "{}", output_text(&check));

    // ---- a second install (an upgrade) keeps the administrator's files -------------------
    let edited_chain = format!(
        "{}# edited by the admin\n",
        fs::read_to_string(&chain).expect("chain")
    );
    fs::write(&chain, &edited_chain).expect("edit chain");
    fs::write(&modules, "[rustfilter]\nworkers = 2\n").expect("edit modules");
    let out = make("install", d);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("keeping the existing"), "{said}");
    assert_eq!(fs::read_to_string(&chain).expect("chain"), edited_chain);
    assert_eq!(
        fs::read_to_string(&modules).expect("modules"),
        "[rustfilter]\nworkers = 2\n"
    );
    assert_eq!(fs::read_to_string(&cron).expect("cron"), cron_text);

    // ---- uninstall -------------------------------------------------------------------------
    make("uninstall", d);
    let left: Vec<String> = tree(d).into_iter().filter(|p| !at(p).is_dir()).collect();
    // The configuration stays, and the (unedited) cron job goes with the binary it runs.
    assert_eq!(
        left,
        ["etc/rustfilter-modules.conf", "etc/rustfilter.conf"],
        "files left after uninstall"
    );
    assert_eq!(fs::read_to_string(&chain).expect("chain"), edited_chain);
    assert!(state.is_dir(), "uninstall must keep the state directory");

    // An edited cron file is kept by uninstall, like the configuration.
    make("install", d);
    fs::write(&cron, format!("{cron_text}# local change\n")).expect("edit cron");
    make("uninstall", d);
    assert!(cron.is_file(), "uninstall removed an edited cron file");
    assert!(!filter.exists() && !at("/usr/bin/rustfilter").exists());
}

/// `rustfilter check-config` on a chain file and a modules file, with a throwaway Courier
/// sysconfdir.
fn check_config(chain: &Path, modules: &Path) -> Output {
    let scratch = tempfile::tempdir().expect("tempdir");
    Command::new(bin())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("check-config")
        .arg("--config")
        .arg(chain)
        .arg("--modules-config")
        .arg(modules)
        .arg("--sysconfdir")
        .arg(scratch.path().join("etc"))
        .arg("--localstatedir")
        .arg(scratch.path().join("spool"))
        .output()
        .expect("run rustfilter check-config")
}

#[test]
fn every_example_configuration_passes_check_config() {
    let conf = repo().join("conf");
    let mut pairs = vec![(
        conf.join("rustfilter.conf"),
        conf.join("rustfilter-modules.conf"),
    )];
    let names = examples();
    for name in &names {
        if name.ends_with("-modules.conf") {
            continue;
        }
        let stem = name.trim_end_matches(".conf");
        let modules = format!("{stem}-modules.conf");
        assert!(
            names.contains(&modules),
            "conf/examples/{name} has no conf/examples/{modules}"
        );
        pairs.push((
            conf.join("examples").join(name),
            conf.join("examples").join(modules),
        ));
    }
    assert!(pairs.len() >= 4, "too few examples: {pairs:?}");
    for (chain, modules) in pairs {
        let out = check_config(&chain, &modules);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("configuration OK"),
            "check-config {} {}\n{}",
            chain.display(),
            modules.display(),
            output_text(&out)
        );
    }
}

#[test]
fn cron_file_runs_the_purges_as_the_mail_user() {
    let text = fs::read_to_string(repo().join("conf/rustfilter.cron")).expect("cron file");
    let mut jobs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((name, _)) = line.split_once('=')
            && !name.contains(char::is_whitespace)
        {
            continue; // PATH=…
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 7, "not a cron.d job line: {line:?}");
        for f in &fields[..5] {
            assert!(
                f.chars().all(|c| c.is_ascii_digit() || ",-*/".contains(c)),
                "bad time field {f:?} in {line:?}"
            );
        }
        assert_eq!(fields[5], "courier", "{line:?}: jobs run as the mail user");
        jobs.push(fields[6..].join(" "));
    }
    assert_eq!(
        jobs,
        ["rustfilter ttldb purge", "rustfilter quarantine purge"]
    );

    // The job's command works: a purge of an empty SQLite store.
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = dir.path().join("rustfilter.conf");
    let modules = dir.path().join("rustfilter-modules.conf");
    fs::write(&chain, "greylist\nratelimit\n").expect("chain");
    fs::write(
        &modules,
        format!("[ttldb]\ndir = '{}'\n", dir.path().display()),
    )
    .expect("modules");
    let out = Command::new(bin())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .args(["ttldb", "purge", "--config"])
        .arg(&chain)
        .arg("--modules-config")
        .arg(&modules)
        .output()
        .expect("run rustfilter ttldb purge");
    assert!(out.status.success(), "{}", output_text(&out));
    // and the quarantine's, with nothing quarantined yet
    fs::write(
        &modules,
        format!("[quarantine]\ndir = '{}/q'\n", dir.path().display()),
    )
    .expect("modules");
    let out = Command::new(bin())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .args(["quarantine", "purge", "--modules-config"])
        .arg(&modules)
        .output()
        .expect("run rustfilter quarantine purge");
    assert!(out.status.success(), "{}", output_text(&out));
}

#[test]
fn install_does_not_hide_pythonfilters_configuration() {
    // A host migrating from pythonfilter: its chain file in Courier's sysconfdir must stay
    // the one rustfilter reads, so no example rustfilter.conf goes into /etc. It has no
    // modules file, so the example one is installed.
    let dest = tempfile::tempdir().expect("tempdir");
    let d = dest.path();
    let sysconfdir = courier_config("sysconfdir").unwrap_or_else(|| "/etc/courier".into());
    let old = d.join(sysconfdir.trim_start_matches('/'));
    fs::create_dir_all(&old).expect("mkdir sysconfdir");
    fs::write(old.join("pythonfilter.conf"), "noduplicates\n").expect("pythonfilter.conf");
    let out = make("install", d);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!d.join("etc/rustfilter.conf").exists(), "{said}");
    assert!(said.contains("pythonfilter.conf"), "{said}");
    assert!(d.join("etc/rustfilter-modules.conf").is_file(), "{said}");
    assert_eq!(
        fs::read_to_string(old.join("pythonfilter.conf")).expect("read"),
        "noduplicates\n"
    );
}
