//! The stub resolver against a real name server (nsd, started by tests/services/nsd.sh with
//! the zones of tests/data/dns/), and against misbehaving servers made here: one that never
//! answers, one that answers SERVFAIL, one that sends spoofed and mismatched answers first.
//! Also the `rustfilter dns` command.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::{Command, Output};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustfilter::net::dns::{DnsError, Lookup, RData, Resolver, ResolverConfig, testing, wire};

fn nsd() -> Resolver {
    testing::resolver()
}

fn config(servers: &[SocketAddr], timeout_ms: u64, attempts: u32) -> ResolverConfig {
    ResolverConfig {
        nameservers: servers.to_vec(),
        timeout: Duration::from_millis(timeout_ms),
        attempts,
    }
}

#[test]
fn addresses_mail_exchangers_and_text() {
    let mut r = nsd();
    assert_eq!(r.a("example.test"), Ok(vec![Ipv4Addr::new(127, 0, 0, 2)]));
    // names are case-insensitive, a final dot is allowed
    assert_eq!(r.a("EXAMPLE.Test."), Ok(vec![Ipv4Addr::new(127, 0, 0, 2)]));
    let mut multi = r.a("multi.example.test").unwrap();
    multi.sort();
    assert_eq!(
        multi,
        vec![Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)]
    );
    assert_eq!(r.aaaa("example.test"), Ok(vec![Ipv6Addr::LOCALHOST]));
    let mut v6 = r.aaaa("v6.example.test").unwrap();
    v6.sort();
    assert_eq!(
        v6,
        vec![
            "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
            "2001:db8::2".parse().unwrap()
        ]
    );
    let mut mx = r.mx("example.test").unwrap();
    mx.sort();
    assert_eq!(
        mx,
        vec![
            (10, "mx1.example.test".to_string()),
            (20, "mx2.example.test".to_string())
        ]
    );
    assert_eq!(
        r.txt("example.test"),
        Ok(vec!["v=spf1 ip4:127.0.0.0/8 mx -all".to_string()])
    );
}

#[test]
fn multi_string_txt_is_concatenated() {
    let txt = nsd().txt("long.example.test").unwrap();
    assert_eq!(txt.len(), 1);
    let t = &txt[0];
    assert!(t.len() > 255, "{}", t.len());
    assert!(t.starts_with("v=spf1 ip4:192.0.2.0/24 "), "{t}");
    // the strings join with nothing between them (RFC 7208 §3.3)
    assert!(
        t.contains("a:mail3.example.test a:mail4.example.test"),
        "{t}"
    );
    assert!(
        t.ends_with("exists:%{i}.spf.example.test redirect=_spf.example.test"),
        "{t}"
    );
}

#[test]
fn nxdomain_and_nodata_are_kept_apart() {
    let mut r = nsd();
    assert_eq!(r.a("nothere.example.test"), Err(DnsError::NxDomain));
    assert_eq!(r.txt("nothere.example.test"), Err(DnsError::NxDomain));
    // the name exists with an A record only
    assert_eq!(r.txt("nospf.example.test"), Ok(vec![]));
    assert_eq!(r.mx("nomx.example.test"), Ok(vec![]));
    assert_eq!(r.aaaa("nomx.example.test"), Ok(vec![]));
    // an empty non-terminal: a name with no records but names below it
    assert_eq!(r.a("0.127.dnswl.test"), Ok(vec![]));
    assert_eq!(r.a("7.0.0.127.dnswl.test"), Err(DnsError::NxDomain));
}

#[test]
fn cname_chains() {
    let mut r = nsd();
    // nsd gives the whole chain in one answer
    assert_eq!(
        r.a("www.example.test"),
        Ok(vec![Ipv4Addr::new(127, 0, 0, 6)])
    );
    assert_eq!(
        r.txt("www.example.test"),
        Ok(vec!["at the end of the chain".to_string()])
    );
    let answer = r.resolve("www.example.test", wire::TYPE_A).unwrap();
    assert_eq!(
        answer.cnames,
        vec![
            (
                "www.example.test".to_string(),
                "alias1.example.test".to_string()
            ),
            (
                "alias1.example.test".to_string(),
                "alias2.example.test".to_string()
            ),
        ]
    );
    assert_eq!(answer.name, "alias2.example.test");
    // at the end of the chain there is no MX: NODATA
    assert_eq!(r.mx("www.example.test"), Ok(vec![]));
    // a CNAME into another zone: the answer holds only the CNAME, a second query follows it
    assert_eq!(
        r.a("cross.example.test"),
        Ok(vec![Ipv4Addr::new(127, 0, 10, 3)])
    );
    // a CNAME to a missing name is NXDOMAIN
    assert_eq!(r.a("dangling.example.test"), Err(DnsError::NxDomain));
    // a loop ends with an error, not a hang
    match r.a("loop1.example.test") {
        Err(DnsError::Other(m)) => assert!(m.contains("CNAME"), "{m}"),
        other => panic!("{other:?}"),
    }
    // asking for the CNAME itself gives it, not its target
    let answer = r.resolve("www.example.test", wire::TYPE_CNAME).unwrap();
    assert_eq!(
        answer.records,
        vec![RData::Cname("alias1.example.test".into())]
    );
}

#[test]
fn truncated_udp_answer_is_fetched_over_tcp() {
    // 12 records, over 1232 bytes: nsd's UDP answer has TC set and no records
    let mut txt = nsd().txt("big.example.test").unwrap();
    txt.sort();
    assert_eq!(txt.len(), 12);
    for (i, t) in txt.iter().enumerate() {
        assert!(
            t.starts_with(&format!("padding-record-{:02}-", i + 1)),
            "{t}"
        );
    }
}

#[test]
fn reverse_lookups() {
    let mut r = nsd();
    assert_eq!(
        r.ptr("127.0.0.2".parse().unwrap()),
        Ok(vec!["mx1.example.test".to_string()])
    );
    let mut two = r.ptr("127.0.0.4".parse().unwrap()).unwrap();
    two.sort();
    assert_eq!(two, vec!["one.example.test", "two.example.test"]);
    assert_eq!(
        r.ptr("2001:db8::1".parse().unwrap()),
        Ok(vec!["v6.example.test".to_string()])
    );
    assert_eq!(
        r.ptr(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        Ok(vec!["localhost".to_string()])
    );
    assert_eq!(
        r.ptr("127.0.0.99".parse().unwrap()),
        Err(DnsError::NxDomain)
    );
}

#[test]
fn dnswl_answers() {
    let mut r = nsd();
    for (ip, want) in [
        ("127.0.0.2", Some([127, 0, 10, 3])),
        ("127.0.0.3", Some([127, 0, 10, 0])),
        ("127.0.0.4", Some([127, 0, 5, 3])),
        ("127.0.0.5", Some([127, 0, 0, 255])),
        ("127.0.0.6", Some([10, 0, 0, 1])),
        ("127.0.0.7", None),
        ("::1", Some([127, 0, 10, 2])),
        ("2001:db8::1", Some([127, 0, 5, 3])),
        ("2001:db8::2", None),
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        let name = rustfilter::net::dns::reverse_name(ip);
        let zone_name = name
            .strip_suffix(".in-addr.arpa")
            .or_else(|| name.strip_suffix(".ip6.arpa"))
            .unwrap();
        let got = r.a(&format!("{zone_name}.dnswl.test"));
        match want {
            Some(o) => assert_eq!(got, Ok(vec![Ipv4Addr::from(o)]), "{ip}"),
            None => assert_eq!(got, Err(DnsError::NxDomain), "{ip}"),
        }
    }
}

/// A misbehaving UDP server on `addr`: for each of `queries` queries it sends the datagrams
/// `reply` makes (none: silence), from its own socket or a second one (`spoof`).
struct Misbehaving {
    addr: SocketAddr,
    thread: Option<JoinHandle<usize>>,
}

enum Datagram {
    Real(Vec<u8>),
    /// From another socket (another source port) to the client.
    Spoofed(Vec<u8>),
}

impl Misbehaving {
    fn start(
        bind: &str,
        queries: usize,
        reply: impl Fn(&[u8]) -> Vec<Datagram> + Send + 'static,
    ) -> Misbehaving {
        let socket = UdpSocket::bind(bind).expect("bind");
        let addr = socket.local_addr().expect("addr");
        let spoofer = UdpSocket::bind((addr.ip(), 0)).expect("bind spoofer");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut seen = 0;
            while seen < queries {
                let (n, client) = match socket.recv_from(&mut buf) {
                    Ok(got) => got,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                seen += 1;
                for d in reply(&buf[..n]) {
                    match d {
                        Datagram::Real(b) => socket.send_to(&b, client).map(|_| ()),
                        Datagram::Spoofed(b) => spoofer.send_to(&b, client).map(|_| ()),
                    }
                    .expect("send");
                }
            }
            seen
        });
        Misbehaving {
            addr,
            thread: Some(thread),
        }
    }

    /// How many queries it received.
    fn finish(mut self) -> usize {
        self.thread
            .take()
            .map(|t| t.join().expect("server thread"))
            .unwrap_or(0)
    }
}

/// A response to `query` (its ID and question) with `rcode` and A records for the question.
fn response(query: &[u8], rcode: u16, addrs: &[[u8; 4]]) -> Vec<u8> {
    let (_, after) = wire::decode_name(query, 12).expect("query name");
    let question = &query[12..after + 4];
    let mut out = query[..2].to_vec();
    out.extend_from_slice(&(0x8180u16 | rcode).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for a in addrs {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend_from_slice(a);
    }
    out
}

#[test]
fn a_server_that_never_answers_times_out_in_time() {
    let silent = Misbehaving::start("127.0.0.1:0", 2, |_| vec![]);
    let mut r = Resolver::new(config(&[silent.addr], 300, 2));
    let t = Instant::now();
    assert_eq!(r.a("example.test"), Err(DnsError::Timeout));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert_eq!(silent.finish(), 2, "one query per attempt");
}

#[test]
fn the_overall_deadline_bounds_a_lookup() {
    let silent = Misbehaving::start("127.0.0.1:0", 1, |_| vec![]);
    let mut r = Resolver::new(config(&[silent.addr], 5000, 2));
    r.set_deadline(Instant::now() + Duration::from_millis(200));
    let t = Instant::now();
    assert_eq!(r.txt("example.test"), Err(DnsError::Timeout));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_millis(800),
        "{took:?}"
    );
    // past the deadline, a lookup fails at once, even against a good server
    let mut r = Resolver::new(config(&[testing::nameserver()], 1000, 1));
    r.set_deadline(Instant::now());
    assert_eq!(r.a("example.test"), Err(DnsError::Timeout));
    silent.finish();
}

#[test]
fn servfail_and_the_next_server() {
    let failing = Misbehaving::start("127.0.0.1:0", 2, |q| {
        vec![Datagram::Real(response(q, 2, &[]))]
    });
    let mut r = Resolver::new(config(&[failing.addr], 1000, 2));
    let t = Instant::now();
    assert_eq!(r.a("example.test"), Err(DnsError::ServerFailure(2)));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "no waiting on SERVFAIL"
    );
    assert_eq!(failing.finish(), 2);

    // REFUSED from the first server, the answer from the second
    let refusing = Misbehaving::start("127.0.0.1:0", 1, |q| {
        vec![Datagram::Real(response(q, 5, &[]))]
    });
    let mut r = Resolver::new(config(&[refusing.addr, testing::nameserver()], 1000, 1));
    assert_eq!(r.a("example.test"), Ok(vec![Ipv4Addr::new(127, 0, 0, 2)]));
    assert_eq!(refusing.finish(), 1);

    // SERVFAIL from one server and silence from the other: the failure is what is reported
    let failing = Misbehaving::start("127.0.0.1:0", 1, |q| {
        vec![Datagram::Real(response(q, 2, &[]))]
    });
    let silent = Misbehaving::start("127.0.0.1:0", 1, |_| vec![]);
    let mut r = Resolver::new(config(&[failing.addr, silent.addr], 200, 1));
    assert_eq!(r.a("example.test"), Err(DnsError::ServerFailure(2)));
    failing.finish();
    silent.finish();
}

#[test]
fn forged_and_mismatched_answers_are_ignored() {
    let server = Misbehaving::start("127.0.0.1:0", 1, |q| {
        let good = response(q, 0, &[[127, 0, 0, 42]]);
        // right ID, but from another port: the connected socket never sees it
        let spoofed = response(q, 0, &[[6, 6, 6, 6]]);
        // wrong ID
        let mut wrong_id = response(q, 0, &[[6, 6, 6, 7]]);
        wrong_id[0] ^= 0xff;
        // another question
        let mut other = q.to_vec();
        if let Some(b) = other.get_mut(13) {
            *b ^= 0x20 ^ 0x01; // change a letter of the name (not just its case)
        }
        let wrong_question = response(&other, 0, &[[6, 6, 6, 8]]);
        // not a response (QR clear)
        let mut not_response = response(q, 0, &[[6, 6, 6, 9]]);
        not_response[2] &= 0x7f;
        vec![
            Datagram::Spoofed(spoofed),
            Datagram::Real(wrong_id),
            Datagram::Real(wrong_question),
            Datagram::Real(not_response),
            Datagram::Real(vec![1, 2, 3]),
            Datagram::Real(good),
        ]
    });
    let mut r = Resolver::new(config(&[server.addr], 2000, 1));
    assert_eq!(r.a("example.test"), Ok(vec![Ipv4Addr::new(127, 0, 0, 42)]));
    server.finish();
}

#[test]
fn the_question_name_is_matched_without_regard_to_case() {
    let server = Misbehaving::start("127.0.0.1:0", 1, |q| {
        let mut upper = q.to_vec();
        for b in upper.iter_mut().skip(13).take(7) {
            b.make_ascii_uppercase();
        }
        vec![Datagram::Real(response(&upper, 0, &[[127, 0, 0, 43]]))]
    });
    let mut r = Resolver::new(config(&[server.addr], 2000, 1));
    assert_eq!(r.a("example.test"), Ok(vec![Ipv4Addr::new(127, 0, 0, 43)]));
    server.finish();
}

#[test]
fn a_name_server_over_ipv6() {
    let server = Misbehaving::start("[::1]:0", 1, |q| {
        vec![Datagram::Real(response(q, 0, &[[127, 0, 0, 44]]))]
    });
    let mut r = Resolver::new(config(&[server.addr], 2000, 1));
    assert_eq!(r.a("example.test"), Ok(vec![Ipv4Addr::new(127, 0, 0, 44)]));
    server.finish();
}

#[test]
fn an_old_server_that_rejects_edns_is_asked_again_without_it() {
    let server = Misbehaving::start("127.0.0.1:0", 2, |q| {
        let arcount = u16::from_be_bytes([q[10], q[11]]);
        if arcount > 0 {
            // FORMERR, with no question, as some old servers answer an OPT record
            let mut formerr = q[..2].to_vec();
            formerr.extend_from_slice(&[0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
            vec![Datagram::Real(formerr)]
        } else {
            vec![Datagram::Real(response(q, 0, &[[127, 0, 0, 45]]))]
        }
    });
    let mut r = Resolver::new(config(&[server.addr], 2000, 1));
    assert_eq!(r.a("example.test"), Ok(vec![Ipv4Addr::new(127, 0, 0, 45)]));
    assert_eq!(server.finish(), 2);
}

#[test]
fn tc_is_followed_by_tcp_to_the_same_server() {
    use std::io::{Read, Write};
    // a UDP and a TCP socket on one port
    let (udp, tcp) = (0..20)
        .find_map(|_| {
            let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
            let tcp = std::net::TcpListener::bind(udp.local_addr().ok()?).ok()?;
            Some((udp, tcp))
        })
        .expect("a free port for UDP and TCP");
    let addr = udp.local_addr().expect("addr");
    let udp_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        udp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let (n, client) = udp.recv_from(&mut buf).expect("udp query");
        // TC set, no records
        let mut tc = response(&buf[..n], 0, &[]);
        tc[2] |= 0x02;
        udp.send_to(&tc, client).expect("send");
    });
    let tcp_thread = std::thread::spawn(move || {
        let (mut conn, _) = tcp.accept().expect("accept");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).expect("length");
        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
        conn.read_exact(&mut q).expect("query");
        let answer = response(&q, 0, &[[127, 0, 0, 46], [127, 0, 0, 47]]);
        let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&answer);
        // in two pieces: the reader must put them together
        conn.write_all(&framed[..5]).expect("write");
        std::thread::sleep(Duration::from_millis(50));
        conn.write_all(&framed[5..]).expect("write");
    });
    let mut r = Resolver::new(config(&[addr], 2000, 1));
    assert_eq!(
        r.a("example.test"),
        Ok(vec![
            Ipv4Addr::new(127, 0, 0, 46),
            Ipv4Addr::new(127, 0, 0, 47)
        ])
    );
    udp_thread.join().expect("udp thread");
    tcp_thread.join().expect("tcp thread");
}

#[test]
fn a_closed_port_is_an_error_not_an_answer() {
    // a port that was bound a moment ago and is now closed
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("probe");
    let mut r = Resolver::new(config(&[port], 300, 1));
    let t = Instant::now();
    let e = r.a("example.test").unwrap_err();
    assert!(matches!(e, DnsError::Other(_) | DnsError::Timeout), "{e:?}");
    assert!(t.elapsed() < Duration::from_millis(800));
}

// ---- rustfilter dns

fn rustfilter_dns(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rustfilter"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("dns")
        .args(args)
        .output()
        .expect("run rustfilter")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn cli_answers() {
    let ns = testing::nameserver().to_string();
    let out = rustfilter_dns(&["MX", "example.test", "--nameserver", &ns]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "MX example.test -> 10 mx1.example.test",
            "MX example.test -> 20 mx2.example.test"
        ]
    );

    let out = rustfilter_dns(&["a", "www.example.test", "--nameserver", &ns]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "CNAME www.example.test -> alias1.example.test\n\
         CNAME alias1.example.test -> alias2.example.test\n\
         A alias2.example.test -> 127.0.0.6\n"
    );

    let out = rustfilter_dns(&["PTR", "127.0.0.2", "--nameserver", &ns]);
    assert_eq!(
        text(&out.stdout),
        "PTR 2.0.0.127.in-addr.arpa -> mx1.example.test\n"
    );

    let out = rustfilter_dns(&["TXT", "example.test", "--nameserver", &ns]);
    assert_eq!(
        text(&out.stdout),
        "TXT example.test -> \"v=spf1 ip4:127.0.0.0/8 mx -all\"\n"
    );

    let out = rustfilter_dns(&["TXT", "big.example.test", "--nameserver", &ns]);
    assert_eq!(text(&out.stdout).lines().count(), 12);

    // NODATA: no output lines, a note on stderr, exit 0
    let out = rustfilter_dns(&["TXT", "nospf.example.test", "--nameserver", &ns]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).contains("NODATA"),
        "{}",
        text(&out.stderr)
    );

    // NXDOMAIN: exit 1
    let out = rustfilter_dns(&["A", "nothere.example.test", "--nameserver", &ns]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("NXDOMAIN"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn cli_failures() {
    // SERVFAIL: exit 75
    let failing = Misbehaving::start("127.0.0.1:0", 2, |q| {
        vec![Datagram::Real(response(q, 2, &[]))]
    });
    let out = rustfilter_dns(&[
        "A",
        "example.test",
        "--nameserver",
        &failing.addr.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("server failure"),
        "{}",
        text(&out.stderr)
    );
    failing.finish();

    // timeout, with the resolver settings of the modules file's [dns] section: exit 75
    let silent = Misbehaving::start("127.0.0.1:0", 1, |_| vec![]);
    let dir = tempfile::tempdir().expect("tempdir");
    let modules = dir.path().join("rustfilter-modules.conf");
    std::fs::write(
        &modules,
        format!(
            "[dns]\nnameservers = ['{}']\ntimeout = 0.3\nattempts = 1\n",
            silent.addr
        ),
    )
    .expect("modules");
    let t = Instant::now();
    let out = rustfilter_dns(&[
        "A",
        "example.test",
        "--modules-config",
        modules.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("timeout"),
        "{}",
        text(&out.stderr)
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(silent.finish(), 1);

    // a bad [dns] section: exit 78
    std::fs::write(&modules, "[dns]\nnameservers = ['ns1.example.org']\n").expect("modules");
    let out = rustfilter_dns(&[
        "A",
        "example.test",
        "--modules-config",
        modules.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("[dns] nameservers"),
        "{}",
        text(&out.stderr)
    );

    // usage errors: exit 64
    for args in [
        &["SRV", "example.test", "--nameserver", "127.0.0.1"][..],
        &["A", "a..b", "--nameserver", "127.0.0.1"],
        &["A", "example.test", "--nameserver", "ns1.example.org"],
        &["A"],
    ] {
        let out = rustfilter_dns(args);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
