//! End to end under a real Courier MTA: the built binary is installed as Courier's global
//! filter by tests/services/courier-up.sh, mail goes in over SMTP on 127.0.0.1:2525, and we
//! look at what the SMTP client, the mailbox, /proc and syslog show.
//!
//! Needs root and Debian's courier-mta (the up script installs it when missing). Courier is
//! one per machine, so everything runs in one test function, in order, under a lock file,
//! and tests/services/courier-down.sh always runs at the end. Without root, or when Courier
//! cannot be installed or started, the test fails: it never skips.
//!
//! What Courier does with the filter's replies (Debian 12, Courier 1.0.16): the reply
//! reaches the SMTP client unchanged as the answer to DATA, whatever the code — `501 …` and
//! the non-standard `517 …` included. Only `200 Ok` is turned into Courier's own
//! `250 Ok. <queue id>`.

use std::fs;
use std::path::Path;
use std::time::Instant;

#[path = "common/courier.rs"]
mod courier;
use courier::*;

const DELIVEREDTO_REPLY: &str = "501 Mail loop - already have my Delivered-To: header.";
const PRIVATEADDR_REPLY: &str = "517 Sender is not allowed by privacy settings.";

#[test]
fn rustfilter_under_real_courier() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "the Courier end-to-end test must run as root (it installs and starts Courier, \
         and installs the filter in /usr/lib/courier/filters); running as uid {euid}. \
         Run `make test` as root (CI does)."
    );

    let mut guard = CourierGuard::lock();
    eprintln!("filter binary: {}", filter_bin().display());
    let test_started = Instant::now();

    // ---- up ----------------------------------------------------------------------------
    let data = repo().join("tests/data/e2e");
    let up_time = guard.up(
        &data.join("rustfilter.conf"),
        &data.join("rustfilter-modules.conf"),
    );
    eprintln!("courier-up.sh took {up_time:?}");

    let (courier_uid, courier_gid, _) =
        passwd_entry("courier").expect("user courier in /etc/passwd (courier-mta creates it)");
    let (_, _, e2e_home) =
        passwd_entry("e2e").expect("user e2e in /etc/passwd (the up script creates it)");
    let maildir = e2e_home.join("Maildir");

    // ---- (a) accepted message is delivered --------------------------------------------
    let accepted_token = unique("accepted");
    let t = Instant::now();
    let accepted = send("friend@example.org", &message(&accepted_token, ""), false);
    let smtp_time = t.elapsed();
    assert_eq!(
        accepted.code,
        250,
        "friend@ should be accepted: {}",
        accepted.wire()
    );
    assert!(accepted.lines[0].starts_with("Ok. "), "{}", accepted.wire());
    eprintln!("accepted: {:?} in {smtp_time:?}", accepted.wire());
    let (file, delivery_time) = wait_for_delivery(&maildir, &accepted_token);
    eprintln!("delivered to {} after {delivery_time:?}", file.display());
    let delivered = fs::read_to_string(&file).unwrap_or_default();
    assert!(
        delivered.contains("by mail.e2e.test with ESMTP"),
        "the delivered copy lacks Courier's Received header:\n{delivered}"
    );
    assert!(
        delivered.contains("\n.line that needs dot-stuffing\n"),
        "dot-stuffing was not undone:\n{delivered}"
    );

    // ---- (b) rejects reach the SMTP client exactly ---------------------------------------
    let loop_token = unique("loop");
    let looped = send(
        "friend@example.org",
        &message(&loop_token, "Delivered-To: someone@e2e.test\n"),
        false,
    );
    eprintln!("deliveredto: {:?}", looped.wire());
    assert_eq!(looped.wire(), DELIVEREDTO_REPLY);

    let private_token = unique("private");
    let private = send("stranger@example.org", &message(&private_token, ""), false);
    eprintln!("privateaddr: {:?}", private.wire());
    assert_eq!(private.wire(), PRIVATEADDR_REPLY);

    // ---- (c) an authenticated sender bypasses privateaddr, not deliveredto -------------
    let auth_token = unique("auth");
    let authed = send("stranger@example.org", &message(&auth_token, ""), true);
    eprintln!("authenticated stranger: {:?}", authed.wire());
    assert_eq!(
        authed.code,
        250,
        "AUTH'd stranger@ should pass: {}",
        authed.wire()
    );
    wait_for_delivery(&maildir, &auth_token);

    let auth_loop_token = unique("authloop");
    let auth_looped = send(
        "stranger@example.org",
        &message(&auth_loop_token, "Delivered-To: someone@e2e.test\n"),
        true,
    );
    eprintln!("authenticated, looping: {:?}", auth_looped.wire());
    assert_eq!(auth_looped.wire(), DELIVEREDTO_REPLY);

    // The accounting lines show which modules ran: all four for the plain message,
    // everything but privateaddr for the authenticated one.
    let plain_acct = accounting_line_for(&accepted);
    for module in ["debug(", "whitelist_auth(", "privateaddr(", "deliveredto("] {
        assert!(
            plain_acct.contains(module),
            "{module} missing in: {plain_acct}"
        );
    }
    let auth_acct = accounting_line_for(&authed);
    for module in ["debug(", "whitelist_auth(", "deliveredto("] {
        assert!(
            auth_acct.contains(module),
            "{module} missing in: {auth_acct}"
        );
    }
    assert!(
        !auth_acct.contains("privateaddr("),
        "privateaddr ran for an authenticated sender: {auth_acct}"
    );

    // ---- (d) the filter runs as courier, in courierfilter's environment ------------------
    let pids = filter_pids();
    assert!(
        !pids.is_empty(),
        "no process with argv[0] {ACTIVE_LINK} or executable {INSTALLED_BIN}"
    );
    let expected_env = courierd_environment();
    assert!(
        !expected_env.contains_key("HOME"),
        "courierd itself sets HOME: {expected_env:?}"
    );
    for &pid in &pids {
        let uids = proc_ids(pid, "Uid:");
        let gids = proc_ids(pid, "Gid:");
        assert!(
            uids.len() == 4 && uids.iter().all(|&u| u == courier_uid),
            "pid {pid} runs with uids {uids:?}, not courier's {courier_uid}"
        );
        assert!(
            gids.len() == 4 && gids.iter().all(|&g| g == courier_gid),
            "pid {pid} runs with gids {gids:?}, not courier's {courier_gid}"
        );
        let raw = fs::read(format!("/proc/{pid}/environ"))
            .unwrap_or_else(|e| panic!("reading /proc/{pid}/environ: {e}"));
        let env = parse_environ(&raw);
        assert!(!env.contains_key("HOME"), "pid {pid} has HOME: {env:?}");
        assert!(env.contains_key("PATH"), "pid {pid} has no PATH: {env:?}");
        for (k, v) in &env {
            assert_eq!(
                expected_env.get(k),
                Some(v),
                "pid {pid} has {k}={v}, which sourcing /etc/courier/courierd does not give"
            );
        }
    }
    eprintln!(
        "filter processes {pids:?}: uid/gid {courier_uid}/{courier_gid}, environment = courierd's"
    );

    // ---- (e) the rejects are in syslog as the reject log lines ---------------------------
    for (module, sender, reply) in [
        ("privateaddr", "stranger@example.org", PRIVATEADDR_REPLY),
        ("deliveredto", "friend@example.org", DELIVEREDTO_REPLY),
        ("deliveredto", "stranger@example.org", DELIVEREDTO_REPLY),
    ] {
        let expected = format!("{NAME} {module} reject,from=<{sender}>,addr=<{RCPT}>: {reply}");
        let line = wait_for_log(&format!("from courierfilter with {expected:?}"), |l| {
            l.contains("courierfilter") && l.ends_with(&expected)
        });
        eprintln!("syslog: {line}");
    }

    // Only the accepted messages were delivered, each once.
    for token in [&accepted_token, &auth_token] {
        assert_eq!(
            maildir_hits(&maildir, token).len(),
            1,
            "{token} delivered more than once"
        );
    }
    for token in [&loop_token, &private_token, &auth_loop_token] {
        assert!(
            maildir_hits(&maildir, token).is_empty(),
            "the rejected message {token} was delivered"
        );
    }

    // ---- down ----------------------------------------------------------------------------
    match guard.down() {
        Ok(t) => eprintln!("courier-down.sh took {t:?}"),
        Err(e) => panic!("{e}"),
    }
    assert!(
        filter_pids().is_empty(),
        "rustfilter still runs after courier-down.sh: {:?}",
        filter_pids()
    );
    assert!(
        !Path::new("/var/lib/courier/allfilters/rustfilter").exists(),
        "the filter socket is still there after courier-down.sh"
    );
    eprintln!("whole end-to-end test took {:?}", test_started.elapsed());
}
