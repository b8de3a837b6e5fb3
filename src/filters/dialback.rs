//! dialback — sender call-back verification (spec §7.8 with DECISIONS.md): ask the sender
//! domain's mail hosts whether they accept `RCPT TO:<sender>`, and cache the answer.
//!
//! Differences from the reference, on purpose: MX hosts are tried by preference; every SMTP step
//! is bounded by `smtp_timeout` and by the message deadline; a non-2xx greeting moves on to the
//! next host; QUIT is always sent; the "unknown reply" answer is a well-formed multi-line reply;
//! the port is configurable (`smtp_port`, a rustfilter addition). Kept from the reference: keys
//! (`md5(sender)`, case-sensitive) and reply texts, and a DNS failure for the sender domain —
//! NXDOMAIN included — is a temporary `421 DNS failure resolving <domain>` (a lookup failure is
//! not proof that the address does not exist; the cached bad answer needs a 5xx from a host).
//! A null sender gets no decision; mail without a client IP is checked all the same.

use std::net::IpAddr;
use std::time::Duration;

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::{Context, Filter, FilterError, FilterResult, Verdict};
use crate::net::dns::{DnsError, Lookup, Resolver};
use crate::net::smtp::{self, Client};
use crate::store::{StoreError, TtlDb, md5_key};

pub const GOOD: &str = "goodsenders";
pub const BAD: &str = "badsenders";
pub const INVALID: &str = "501 Envelope sender is invalid";
pub const NO_SERVERS: &str = "421 No SMTP servers were available to authenticate sender";

pub struct Dialback {
    good: TtlDb,
    bad: TtlDb,
    smtp_timeout: Duration,
    pub smtp_port: u16,
    postmaster_addr: String,
    /// The current unix time; tests replace it.
    pub clock: fn() -> i64,
}

pub fn build(sec: &Section<'_>, courier: &Courier) -> Result<Box<dyn Filter>, ConfigError> {
    Ok(Box::new(Dialback::from_section(sec, courier)?))
}

/// How one host's dialogue ended.
enum Outcome {
    Good,
    Bad(String),
    /// Try the next host with this reply standing.
    Next(String),
}

impl Dialback {
    pub fn from_section(sec: &Section<'_>, courier: &Courier) -> Result<Dialback, ConfigError> {
        let ttl = super::greylist::seconds(sec, "senders_ttl", 604_800)?;
        let purge_interval = super::greylist::seconds(sec, "senders_purge_interval", 43200)?;
        let timeout = sec.float("smtp_timeout", 60.0)?;
        if !(timeout > 0.0 && timeout <= 3600.0) {
            return Err(sec.error(
                "smtp_timeout",
                "must be more than 0 and at most 3600 seconds",
            ));
        }
        let port = sec.int("smtp_port", 25)?;
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| sec.error("smtp_port", "must be between 1 and 65535"))?;
        let postmaster_addr = match sec.opt_string("postmaster_addr")? {
            Some(a) => a,
            None => format!("postmaster@{}", courier.me()),
        };
        if !smtp::valid_address(&postmaster_addr) {
            return Err(sec.error(
                "postmaster_addr",
                "must be printable ASCII without '<' or '>'",
            ));
        }
        super::initialized("dialback");
        let table = |name: &str| TtlDb {
            name: name.into(),
            ttl,
            purge_interval,
        };
        Ok(Dialback {
            good: table(GOOD),
            bad: table(BAD),
            smtp_timeout: Duration::from_secs_f64(timeout),
            smtp_port: port,
            postmaster_addr,
            clock: crate::store::now,
        })
    }

    /// The sender domain's mail hosts, by MX preference; the domain itself without MX.
    fn mail_hosts(&self, resolver: &mut Resolver, domain: &str) -> Result<Vec<String>, DnsError> {
        let mut mx = resolver.mx(domain)?;
        if mx.is_empty() {
            if addresses(resolver, domain)?.is_empty() {
                return Err(DnsError::Other("no MX, A or AAAA records".into()));
            }
            return Ok(vec![domain.to_string()]);
        }
        mx.sort_by_key(|(pref, _)| *pref);
        Ok(mx.into_iter().map(|(_, host)| host).collect())
    }

    fn try_host(
        &self,
        (courier, deadline): (&Courier, std::time::Instant),
        resolver: &mut Resolver,
        host: &str,
        sender: &str,
    ) -> Outcome {
        let connect_failed = || Outcome::Next("400 SMTP class exception during connect".into());
        let addrs = match addresses(resolver, host) {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => {
                log::info!("dialback: mail host {host} has no address");
                return connect_failed();
            }
            Err(e) => {
                log::info!("dialback: cannot resolve mail host {host}: {e}");
                return connect_failed();
            }
        };
        let (mut client, greeting) =
            match Client::connect_any(&addrs, self.smtp_port, self.smtp_timeout, deadline) {
                Ok(c) => c,
                Err(e) => {
                    log::info!("dialback: {host}: {e}");
                    return connect_failed();
                }
            };
        if !greeting.is_positive() {
            log::info!("dialback: {host} greeted with {}", greeting.code);
            quit(client, host);
            return connect_failed();
        }
        match client.helo(&courier.esmtphelo()) {
            Ok(r) if r.is_positive() => {}
            Ok(_) => {
                quit(client, host);
                return Outcome::Next(format!("421 {host} rejected the HELO command"));
            }
            Err(e) => {
                log::info!("dialback: {host}: HELO: {e}");
                quit(client, host);
                return Outcome::Next("400 SMTP class exception during HELO".into());
            }
        }
        match client.mail_from(&self.postmaster_addr) {
            Ok(r) if r.is_positive() => {}
            Ok(_) => {
                quit(client, host);
                return Outcome::Next(format!("421 {host} rejected the MAIL FROM command"));
            }
            Err(e) => {
                log::info!("dialback: {host}: MAIL: {e}");
                quit(client, host);
                return Outcome::Next("400 SMTP class exception during MAIL command".into());
            }
        }
        let outcome = match client.rcpt_to(sender) {
            Ok(r) if r.is_positive() => Outcome::Good,
            Ok(r) if (500..600).contains(&r.code) => Outcome::Bad(format!(
                "517-MX server {host} said:\n517 Sender does not exist: {sender}"
            )),
            Ok(_) => Outcome::Next(format!(
                "421-Unable to validate sender address.\n421 MX server {host} provided unknown reply"
            )),
            Err(e) => {
                log::info!("dialback: {host}: RCPT: {e}");
                Outcome::Next("400 SMTP class exception during RCPT command".into())
            }
        };
        quit(client, host);
        outcome
    }

    fn record(&self, ctx: &mut Context<'_>, db: &TtlDb, key: &str) -> Result<(), FilterError> {
        let now = (self.clock)();
        ctx.store
            .transaction(&[db], &[], |tx| tx.set(&db.name, key, now))
            .map_err(store_error)
    }
}

fn store_error(e: StoreError) -> FilterError {
    FilterError::new(format!("dialback TtlDb: {e}"))
}

fn quit(client: Client, host: &str) {
    if let Err(e) = client.quit() {
        log::debug!("dialback: {host}: QUIT: {e}");
    }
}

/// A host's IPv4 then IPv6 addresses. An error only when neither lookup answered.
fn addresses(resolver: &mut Resolver, host: &str) -> Result<Vec<IpAddr>, DnsError> {
    let v4 = resolver.a(host);
    let v6 = resolver.aaaa(host);
    match (v4, v6) {
        (Err(e), Err(_)) => Err(e),
        (v4, v6) => {
            let mut all: Vec<IpAddr> = v4.unwrap_or_default().into_iter().map(IpAddr::V4).collect();
            all.extend(v6.unwrap_or_default().into_iter().map(IpAddr::V6));
            Ok(all)
        }
    }
}

impl Filter for Dialback {
    fn check(&self, ctx: &mut Context<'_>) -> FilterResult {
        let sender = match ctx.envelope.sender() {
            None | Some("") => return Ok(Verdict::Continue),
            Some(s) => s.to_string(),
        };
        let key = md5_key(&[&sender]);
        let now = (self.clock)();
        ctx.store
            .maybe_purge(&self.good, now)
            .map_err(store_error)?;
        ctx.store.maybe_purge(&self.bad, now).map_err(store_error)?;
        let cached = ctx
            .store
            .transaction(&[&self.good, &self.bad], &[], |tx| {
                if tx.get(GOOD, &key)?.is_some() {
                    tx.set(GOOD, &key, now)?;
                    return Ok(Some(true));
                }
                if tx.get(BAD, &key)?.is_some() {
                    tx.set(BAD, &key, now)?;
                    return Ok(Some(false));
                }
                Ok(None)
            })
            .map_err(store_error)?;
        match cached {
            Some(true) => return Ok(Verdict::Continue),
            Some(false) => {
                return Ok(Verdict::reply(format!(
                    "517 Sender does not exist: {sender}"
                )));
            }
            None => {}
        }
        let parts: Vec<&str> = sender.split('@').collect();
        let domain = match parts.as_slice() {
            [local, domain] if !local.is_empty() && !domain.is_empty() => domain.to_string(),
            _ => return Ok(Verdict::reply(INVALID)),
        };
        if !sender.is_ascii() {
            // A call-out after HELO cannot carry it (no SMTPUTF8), and it may well exist.
            log::info!("dialback: cannot verify the non-ASCII sender {sender:?}");
            return Ok(Verdict::Continue);
        }
        // Refuse rather than send what could break the dialogue.
        if !smtp::valid_address(&sender) {
            return Ok(Verdict::reply(INVALID));
        }
        let hosts = match self.mail_hosts(ctx.dns, &domain) {
            Ok(h) => h,
            Err(e) => {
                log::info!("dialback: resolving {domain}: {e}");
                return Ok(Verdict::reply(format!(
                    "421 DNS failure resolving {domain}"
                )));
            }
        };
        let mut reply = NO_SERVERS.to_string();
        for host in &hosts {
            if std::time::Instant::now() >= ctx.deadline {
                break;
            }
            match self.try_host((ctx.courier, ctx.deadline), ctx.dns, host, &sender) {
                Outcome::Good => {
                    self.record(ctx, &self.good, &key)?;
                    return Ok(Verdict::Continue);
                }
                Outcome::Bad(text) => {
                    self.record(ctx, &self.bad, &key)?;
                    return Ok(Verdict::reply(text));
                }
                Outcome::Next(text) => reply = text,
            }
        }
        Ok(Verdict::reply(reply))
    }

    fn ttl_tables(&self) -> Vec<TtlDb> {
        vec![self.good.clone(), self.bad.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::stateful_testutil::{Backend, Harness, set_clock, test_clock};
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    const T0: f64 = 1_700_000_000.0;

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Behaviour {
        Accept,
        Reject,
        TempFail,
        /// Accept the connection, never say anything.
        Hang,
        /// Greet, then close when HELO arrives.
        CloseAfterGreeting,
        Greet554,
        RejectHelo,
        RejectMail,
    }

    /// Lines received, as "ip COMMAND", across all responders of a test.
    type Log = Arc<Mutex<Vec<String>>>;

    fn serve(listener: TcpListener, behaviour: Behaviour, log: Log) {
        let ip = listener
            .local_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            log.lock().unwrap().push(format!("{ip} connect"));
            if behaviour == Behaviour::Hang {
                std::thread::sleep(Duration::from_secs(5));
                continue;
            }
            let greeting = if behaviour == Behaviour::Greet554 {
                "554 go away\r\n"
            } else {
                "220-test responder\r\n220 ready\r\n"
            };
            if s.write_all(greeting.as_bytes()).is_err() {
                continue;
            }
            let Ok(clone) = s.try_clone() else { continue };
            let mut r = BufReader::new(clone);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let cmd = line.trim_end().to_string();
                log.lock().unwrap().push(format!("{ip} {cmd}"));
                let verb = cmd
                    .split([' ', ':'])
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                let answer = match (verb.as_str(), behaviour) {
                    ("QUIT", _) => "221 bye\r\n",
                    ("HELO", Behaviour::CloseAfterGreeting) => break,
                    ("HELO", Behaviour::RejectHelo) => "550 not you\r\n",
                    ("MAIL", Behaviour::RejectMail) => "451 not now\r\n",
                    ("RCPT", Behaviour::Reject) => "550-no such\r\n550 user here\r\n",
                    ("RCPT", Behaviour::TempFail) => "450 try later\r\n",
                    (_, Behaviour::Greet554) => "503 bad sequence\r\n",
                    _ => "250 ok\r\n",
                };
                if s.write_all(answer.as_bytes()).is_err() || verb == "QUIT" {
                    break;
                }
            }
        }
    }

    /// Start responders on one port shared by all their addresses; returns the port and log.
    fn responders(spec: &[(&str, Behaviour)]) -> (u16, Log) {
        let log: Log = Arc::new(Mutex::new(Vec::new()));
        'retry: for _ in 0..50 {
            let mut listeners = Vec::new();
            let mut port = 0;
            for (ip, _) in spec {
                match TcpListener::bind((*ip, port)) {
                    Ok(l) => {
                        port = l.local_addr().expect("addr").port();
                        listeners.push(l);
                    }
                    Err(_) => continue 'retry,
                }
            }
            for (l, (_, b)) in listeners.into_iter().zip(spec) {
                let (b, log) = (*b, log.clone());
                std::thread::spawn(move || serve(l, b, log));
            }
            return (port, log);
        }
        panic!("cannot bind the responders");
    }

    fn dialback(h: &Harness, port: u16, extra: &str) -> Dialback {
        let text = format!("[dialback]\nsmtp_port = {port}\n{extra}");
        let courier = &h.fx.courier;
        let mut f = h
            .section("dialback", &text, |s| Dialback::from_section(s, courier))
            .expect("builds");
        f.clock = test_clock;
        h.fx.dns.replace(crate::net::dns::testing::resolver());
        f
    }

    fn control(sender: &str) -> String {
        format!("s{sender}\nrb@e2e.test\nR\nN\n")
    }

    fn lines(log: &Log) -> Vec<String> {
        log.lock().unwrap().clone()
    }

    #[test]
    fn settings() {
        let h = Harness::new(Backend::Sqlite, "s\n");
        let me = h.fx.courier.me();
        let f = dialback(&h, 25, "");
        assert_eq!(
            f.ttl_tables(),
            vec![
                TtlDb {
                    name: GOOD.into(),
                    ttl: 604_800,
                    purge_interval: 43200
                },
                TtlDb {
                    name: BAD.into(),
                    ttl: 604_800,
                    purge_interval: 43200
                }
            ]
        );
        assert_eq!(f.postmaster_addr, format!("postmaster@{me}"));
        assert_eq!(f.smtp_timeout, Duration::from_secs(60));
        let f = dialback(
            &h,
            2525,
            "senders_ttl = 10\nsenders_purge_interval = 5\nsmtp_timeout = 2.5\npostmaster_addr = ''\n",
        );
        assert_eq!((f.good.ttl, f.bad.purge_interval), (10, 5));
        assert_eq!(
            (f.smtp_port, f.smtp_timeout),
            (2525, Duration::from_millis(2500))
        );
        assert_eq!(f.postmaster_addr, "");
        let courier = &h.fx.courier;
        for bad in [
            "smtp_timeout = 0\n",
            "smtp_port = 0\n",
            "smtp_port = 70000\n",
            "postmaster_addr = 'a>b@c'\n",
            "senders_ttl = -1\n",
            "greylist_time = 1\n",
        ] {
            let text = format!("[dialback]\n{bad}");
            assert!(
                h.section("dialback", &text, |s| Dialback::from_section(s, courier))
                    .is_err(),
                "{bad}"
            );
        }
    }

    fn good_sender_is_cached(backend: Backend) {
        let (port, log) = responders(&[("127.0.1.1", Behaviour::Accept)]);
        let h = Harness::new(backend, &control("User@dbgood.example.test"));
        let f = dialback(&h, port, "postmaster_addr = 'pm@here.test'\n");
        set_clock(T0);
        assert_eq!(h.run(&f), Verdict::Continue);
        let got = lines(&log);
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0], "127.0.1.1 connect");
        assert!(got[1].starts_with("127.0.1.1 HELO "), "{got:?}");
        assert_eq!(
            got[2..],
            [
                "127.0.1.1 MAIL FROM:<pm@here.test>",
                "127.0.1.1 RCPT TO:<User@dbgood.example.test>",
                "127.0.1.1 QUIT"
            ]
        );
        let key = md5_key(&["User@dbgood.example.test"]);
        assert_eq!(h.dump(GOOD), vec![(key.clone(), T0 as i64)]);
        // Cached: no second call-out, and the entry is refreshed.
        set_clock(T0 + 100.0);
        assert_eq!(h.run(&f), Verdict::Continue);
        assert_eq!(lines(&log).len(), 5);
        assert_eq!(h.dump(GOOD), vec![(key, T0 as i64 + 100)]);
        // Keys keep the case: another spelling is asked about again.
        h.control(&control("user@dbgood.example.test"));
        assert_eq!(h.run(&f), Verdict::Continue);
        assert_eq!(lines(&log).len(), 10);
    }

    fn bad_sender_is_cached(backend: Backend) {
        let (port, log) = responders(&[("127.0.1.2", Behaviour::Reject)]);
        let h = Harness::new(backend, &control("nobody@dbbad.example.test"));
        let f = dialback(&h, port, "");
        set_clock(T0);
        assert_eq!(
            h.run(&f),
            Verdict::reply(
                "517-MX server dbbad-mx.example.test said:\n\
                 517 Sender does not exist: nobody@dbbad.example.test"
            )
        );
        let n = lines(&log).len();
        assert_eq!(
            lines(&log).last().map(String::as_str),
            Some("127.0.1.2 QUIT")
        );
        assert_eq!(
            h.dump(BAD),
            vec![(md5_key(&["nobody@dbbad.example.test"]), T0 as i64)]
        );
        assert_eq!(h.dump(GOOD), vec![]);
        assert_eq!(
            h.run(&f),
            Verdict::reply("517 Sender does not exist: nobody@dbbad.example.test")
        );
        assert_eq!(lines(&log).len(), n);
        // Expired: asked again.
        set_clock(T0 + 604_801.0);
        assert_ne!(h.run(&f), Verdict::Continue);
        assert_eq!(lines(&log).len(), 2 * n);
    }

    fn tempfail_is_not_cached(backend: Backend) {
        let (port, log) = responders(&[("127.0.1.3", Behaviour::TempFail)]);
        let h = Harness::new(backend, &control("a@dbtemp.example.test"));
        let f = dialback(&h, port, "");
        let want = Verdict::reply(
            "421-Unable to validate sender address.\n\
             421 MX server dbtemp-mx.example.test provided unknown reply",
        );
        assert_eq!(h.run(&f), want);
        let n = lines(&log).len();
        assert_eq!(
            lines(&log).last().map(String::as_str),
            Some("127.0.1.3 QUIT")
        );
        assert_eq!(h.run(&f), want);
        assert_eq!(lines(&log).len(), 2 * n);
        assert_eq!(h.dump(GOOD), vec![]);
        assert_eq!(h.dump(BAD), vec![]);
    }

    fn store_failure_is_an_error(backend: Backend) {
        let h = Harness::new(backend, &control("a@dbgood.example.test"));
        let f = dialback(&h, 1, "");
        h.break_store();
        assert!(h.run_result(&f).is_err());
    }

    crate::filters::stateful_testutil::on_both_backends!(
        good_sender_is_cached,
        bad_sender_is_cached,
        tempfail_is_not_cached,
        store_failure_is_an_error,
    );

    #[test]
    fn hanging_server_times_out() {
        let (port, _log) = responders(&[("127.0.1.4", Behaviour::Hang)]);
        let h = Harness::new(Backend::Sqlite, &control("a@dbhang.example.test"));
        let f = dialback(&h, port, "smtp_timeout = 0.5\n");
        let t = std::time::Instant::now();
        assert_eq!(
            h.run(&f),
            Verdict::reply("400 SMTP class exception during connect")
        );
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    }

    #[test]
    fn server_closing_early() {
        let (port, _log) = responders(&[("127.0.1.5", Behaviour::CloseAfterGreeting)]);
        let h = Harness::new(Backend::Sqlite, &control("a@dbclose.example.test"));
        let f = dialback(&h, port, "");
        assert_eq!(
            h.run(&f),
            Verdict::reply("400 SMTP class exception during HELO")
        );
    }

    #[test]
    fn mx_by_preference_and_bad_greeting_moves_on() {
        let (port, log) = responders(&[
            ("127.0.1.6", Behaviour::Greet554),
            ("127.0.1.7", Behaviour::Accept),
        ]);
        let h = Harness::new(Backend::Sqlite, &control("a@dborder.example.test"));
        let f = dialback(&h, port, "");
        assert_eq!(h.run(&f), Verdict::Continue);
        let got = lines(&log);
        assert_eq!(
            got[..3],
            ["127.0.1.6 connect", "127.0.1.6 QUIT", "127.0.1.7 connect"]
        );
        assert!(got.iter().all(|l| !l.starts_with("127.0.1.6 HELO")));
    }

    #[test]
    fn no_mx_uses_the_domain_address() {
        let (port, log) = responders(&[("127.0.1.8", Behaviour::Accept)]);
        let h = Harness::new(Backend::Sqlite, &control("a@dbnomx.example.test"));
        let f = dialback(&h, port, "");
        assert_eq!(h.run(&f), Verdict::Continue);
        assert_eq!(lines(&log)[0], "127.0.1.8 connect");
    }

    #[test]
    fn helo_rejected() {
        let (port, log) = responders(&[("127.0.1.9", Behaviour::RejectHelo)]);
        let h = Harness::new(Backend::Sqlite, &control("a@dbhelo.example.test"));
        let f = dialback(&h, port, "");
        assert_eq!(
            h.run(&f),
            Verdict::reply("421 dbhelo-mx.example.test rejected the HELO command")
        );
        assert_eq!(
            lines(&log).last().map(String::as_str),
            Some("127.0.1.9 QUIT")
        );
    }

    #[test]
    fn mail_from_rejected() {
        let (port, log) = responders(&[("127.0.1.10", Behaviour::RejectMail)]);
        let h = Harness::new(Backend::Sqlite, &control("a@dbmail.example.test"));
        let f = dialback(&h, port, "postmaster_addr = ''\n");
        assert_eq!(
            h.run(&f),
            Verdict::reply("421 dbmail-mx.example.test rejected the MAIL FROM command")
        );
        let got = lines(&log);
        assert!(
            got.contains(&"127.0.1.10 MAIL FROM:<>".to_string()),
            "{got:?}"
        );
        assert_eq!(got.last().map(String::as_str), Some("127.0.1.10 QUIT"));
    }

    #[test]
    fn ipv6_mail_host() {
        let (port, log) = responders(&[("::1", Behaviour::Reject)]);
        let h = Harness::new(Backend::Sqlite, &control("a@dbv6.example.test"));
        let f = dialback(&h, port, "");
        assert_eq!(
            h.run(&f),
            Verdict::reply(
                "517-MX server dbv6-mx.example.test said:\n\
                 517 Sender does not exist: a@dbv6.example.test"
            )
        );
        assert_eq!(lines(&log)[0], "::1 connect");
    }

    #[test]
    fn dns_failure_and_unusable_senders() {
        let h = Harness::new(Backend::Sqlite, &control("a@nosuch.example.test"));
        // Nothing listens on port 1.
        let f = dialback(&h, 1, "");
        assert_eq!(
            h.run(&f),
            Verdict::reply("421 DNS failure resolving nosuch.example.test")
        );
        // MX hosts that refuse connections.
        h.control(&control("a@example.test"));
        assert_eq!(
            h.run(&f),
            Verdict::reply("400 SMTP class exception during connect")
        );
        for bad in [
            "nodomain",
            "\"a@b\"@example.test",
            "a@",
            "@example.test",
            "a<b@example.test",
            "a\tb@example.test",
        ] {
            h.control(&control(bad));
            assert_eq!(h.run(&f), Verdict::reply(INVALID), "{bad}");
        }
        // Cannot be asked without SMTPUTF8: no decision.
        h.control(&control("jörg@example.test"));
        assert_eq!(h.run(&f), Verdict::Continue);
        // The null sender and a missing sender: no decision.
        h.control("s\nrb@e2e.test\nR\nN\n");
        assert_eq!(h.run(&f), Verdict::Continue);
        h.control("rb@e2e.test\nR\nN\n");
        assert_eq!(h.run(&f), Verdict::Continue);
        assert_eq!(h.dump(GOOD), vec![]);
        assert_eq!(h.dump(BAD), vec![]);
    }
}
