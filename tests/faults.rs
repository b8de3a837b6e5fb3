//! Faults through the real daemon and socket (issue 9 item 1): a store that is locked, read-only,
//! full or killed; a clamd that is slow; name servers that never answer or answer SERVFAIL; a
//! worker killed mid-message; stdin closed under load; a rewrite on a full disk. Each fault
//! gives a tempfail or a documented result, never a silent accept. FAULTS.md lists every fault
//! with its test (here or elsewhere).
//!
//! Needs root (tmpfs and bind mounts), the test clamd (tests/services/clamd.sh) and PostgreSQL
//! (tests/services/postgres.sh): `make test` starts both.

mod common;
#[path = "common/stateful.rs"]
mod stateful;

#[path = "common/clamd.rs"]
mod clamd;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{Filter, Options};
use stateful::{Backend, control, message, send};

use clamd::{CLAMD_SOCKET, require_clamd};
const TEMPFAIL_GREYLIST: &str = "451 4.3.0 Temporary failure in greylist, try again later";
const CLAMD_UNAVAILABLE: &str = "451 4.3.0 Virus scanner unavailable, try again later";
const SPF_TEMPERROR: &str = "451 4.4.3 SPF temporary error, try again later";
const LOOP_REPLY: &str = "501 Mail loop - already have my Delivered-To: header.";

fn greylisted(wait: &str) -> String {
    format!("451 4.7.1 Greylisting in action, please come back in {wait}")
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the fault tests mount tmpfs and bind mounts: run them as root (`make test` as root)"
    );
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A mount that is undone when dropped (also when the test fails).
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(at).expect("mkdir mount point");
        let opts = format!("size={size},mode=0755");
        run(
            "mount",
            &["-t", "tmpfs", "-o", &opts, "rftmpfs", &at.to_string_lossy()],
        );
        Mount(at.to_path_buf())
    }

    /// `from` seen read-only at `at`.
    fn bind_read_only(from: &Path, at: &Path) -> Mount {
        std::fs::create_dir_all(at).expect("mkdir mount point");
        run(
            "mount",
            &["--bind", &from.to_string_lossy(), &at.to_string_lossy()],
        );
        let m = Mount(at.to_path_buf());
        m.remount("remount,bind,ro");
        m
    }

    fn remount(&self, opts: &str) {
        run("mount", &["-o", opts, &self.0.to_string_lossy()]);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let p = self.0.to_string_lossy().into_owned();
        let ok = Command::new("umount")
            .arg(&p)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a daemon not yet gone): detach it so nothing is left mounted.
            let _ = Command::new("umount").args(["-l", &p]).status();
        }
    }
}

/// Fill the file system of `dir` until a write fails with ENOSPC; the filler file's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create filler");
    let block = vec![0x5au8; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    // Also the last partial page.
    for _ in 0..4096 {
        if f.write(&[0x5a]).is_err() {
            break;
        }
    }
    path
}

/// The pid at the other end of a UNIX stream.
fn peer_pid(s: &UnixStream) -> i32 {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred is a valid ucred of `len` bytes; the fd is open.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    assert_eq!(rc, 0, "SO_PEERCRED: {}", std::io::Error::last_os_error());
    cred.pid
}

/// What the clamd proxy does with a connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Forward to the real clamd; hold its reply back this long.
    Delay(Duration),
    /// Hold the first connection without ever answering; forward the others at once.
    HangFirst,
}

/// A socket in front of the real test clamd that delays or withholds its replies: the scanner
/// stays real, only its timing is the fault. Each connection's client pid goes to `accepted`.
struct ClampProxy {
    path: PathBuf,
    accepted: mpsc::Receiver<i32>,
    _dir: tempfile::TempDir,
}

impl ClampProxy {
    fn start(behaviour: Behaviour) -> ClampProxy {
        require_clamd();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("proxy.sock");
        let listener = UnixListener::bind(&path).expect("bind proxy");
        let (tx, accepted) = mpsc::channel();
        let held = Arc::new(Mutex::new(Vec::new()));
        std::thread::spawn(move || {
            let mut n = 0usize;
            for conn in listener.incoming() {
                let Ok(client) = conn else { return };
                let _ = tx.send(peer_pid(&client));
                n += 1;
                match behaviour {
                    Behaviour::HangFirst if n == 1 => {
                        held.lock().expect("held").push(client);
                    }
                    Behaviour::HangFirst => {
                        std::thread::spawn(move || forward(client, Duration::ZERO));
                    }
                    Behaviour::Delay(d) => {
                        std::thread::spawn(move || forward(client, d));
                    }
                }
            }
        });
        ClampProxy {
            path,
            accepted,
            _dir: dir,
        }
    }

    fn modules(&self, timeout: f64) -> String {
        format!(
            "[clamav]\nlocal_socket = '{}'\ntimeout = {timeout}\n",
            self.path.display()
        )
    }

    /// The pid of the next client to connect.
    fn next_client(&self, within: Duration) -> i32 {
        self.accepted
            .recv_timeout(within)
            .expect("no connection to the clamd proxy")
    }
}

/// Copy the request to clamd, its reply back after `delay`.
fn forward(mut client: UnixStream, delay: Duration) {
    let Ok(mut upstream) = UnixStream::connect(CLAMD_SOCKET) else {
        return;
    };
    let (Ok(mut c_read), Ok(mut u_write)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(std::net::Shutdown::Write);
    });
    let mut reply = Vec::new();
    let _ = upstream.read_to_end(&mut reply);
    std::thread::sleep(delay);
    let _ = client.write_all(&reply);
    let _ = client.shutdown(std::net::Shutdown::Both);
}

/// A clean message in the daemon's spool with the plain control file.
fn clean_message(f: &Filter, name: &str) -> (PathBuf, PathBuf) {
    let data = f.spool(name, "data-plain");
    let control = f.spool(name, "control-plain");
    (data, control)
}

// ---- the SQLite store ----------------------------------------------------------------------

/// Another process holds the database's write lock (an admin's `sqlite3` in a transaction, a
/// stuck cron purge): each message waits out the busy timeout (5 s), then tempfails; once the
/// lock is released, mail flows again without a restart and the state is intact.
#[test]
fn sqlite_locked_by_another_process_tempfails_then_recovers() {
    let f = stateful::start(
        "greylist\n",
        "[greylist]\ngreylist_time = 0\n",
        &Backend::Sqlite,
        2,
    );
    let socket = f.socket_path();
    let (d, c) = message(
        &f,
        "a",
        &control("a@remote.example", &["u@e2e.test"], Some("192.0.2.1")),
    );
    assert_eq!(send(&socket, &d, &c), greylisted("00:00:00"));

    // The lock is held by a separate sqlite3 process inside an exclusive transaction.
    let db = f.root().join("db/ttldb.sqlite");
    let mut holder = Command::new("sqlite3")
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sqlite3 (package sqlite3)");
    let mut holder_in = holder.stdin.take().expect("stdin");
    holder_in
        .write_all(b".timeout 5000\nBEGIN EXCLUSIVE;\nSELECT 'locked';\n")
        .expect("to sqlite3");
    let mut out = holder.stdout.take().expect("stdout");
    let mut buf = [0u8; 64];
    let n = out.read(&mut buf).expect("sqlite3 output");
    assert_eq!(&buf[..n], b"locked\n");

    let t = Instant::now();
    assert_eq!(send(&socket, &d, &c), TEMPFAIL_GREYLIST);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(4500) && took < Duration::from_secs(10),
        "tempfailed after {took:?}"
    );
    assert!(
        f.wait_stderr("database is locked", Duration::from_secs(5)),
        "{}",
        f.stderr()
    );

    holder_in
        .write_all(b"COMMIT;\n.quit\n")
        .expect("to sqlite3");
    drop(holder_in);
    assert!(holder.wait().expect("sqlite3").success());
    let t = Instant::now();
    assert_eq!(send(&socket, &d, &c), "200 Ok", "{}", f.stderr());
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

/// The state directory on a read-only file system: every message tempfails with a log line
/// naming the database; made writable again, mail flows without a restart.
#[test]
fn sqlite_state_dir_read_only_tempfails_then_recovers() {
    require_root();
    let state = tempfile::tempdir().expect("tempdir");
    let rw = state.path().join("rw");
    let ro = state.path().join("ro");
    std::fs::create_dir_all(&rw).expect("mkdir");
    let msg = control("a@remote.example", &["u@e2e.test"], Some("192.0.2.1"));

    // A first daemon creates the database and records the triplet.
    {
        let f = stateful::start(
            "greylist\n",
            "[greylist]\ngreylist_time = 0\n",
            &Backend::SqliteIn(rw.clone()),
            2,
        );
        let (d, c) = message(&f, "a", &msg);
        assert_eq!(send(&f.socket_path(), &d, &c), greylisted("00:00:00"));
    }

    let mount = Mount::bind_read_only(&rw, &ro);
    let f = stateful::start(
        "greylist\n",
        "[greylist]\ngreylist_time = 0\n",
        &Backend::SqliteIn(ro.clone()),
        2,
    );
    let socket = f.socket_path();
    let (d, c) = message(&f, "a", &msg);
    for _ in 0..3 {
        assert_eq!(send(&socket, &d, &c), TEMPFAIL_GREYLIST);
    }
    // The line naming the database (the stats file in the same directory has its own
    // "Read-only file system" line at start-up, so wait for this one).
    let line = format!(
        "cannot open the TtlDb store {}: Read-only file system",
        ro.join("ttldb.sqlite").display()
    );
    assert!(
        f.wait_stderr(&line, Duration::from_secs(5)),
        "{}",
        f.stderr()
    );

    mount.remount("remount,bind,rw");
    assert_eq!(send(&socket, &d, &c), "200 Ok", "{}", f.stderr());
    drop(f);
    drop(mount);
}

/// The state directory's file system is full: a message whose decision needs a write tempfails
/// (never a pass); once there is room again, the same workers decide as before.
#[test]
fn sqlite_disk_full_tempfails_then_recovers() {
    require_root();
    let f = stateful::start(
        "greylist\n",
        "[greylist]\ngreylist_time = 0\n",
        &Backend::Sqlite,
        2,
    );
    // The store is opened by the first message: the tmpfs is in place before that.
    let mount = Mount::tmpfs(&f.root().join("db"), "512k");
    let socket = f.socket_path();
    let (d, c) = message(
        &f,
        "a",
        &control("a@remote.example", &["u@e2e.test"], Some("192.0.2.1")),
    );
    assert_eq!(send(&socket, &d, &c), greylisted("00:00:00"));
    assert_eq!(send(&socket, &d, &c), "200 Ok");

    let filler = fill(&f.root().join("db"));
    let mut tempfails = 0;
    for i in 0..20 {
        let (d, c) = message(
            &f,
            &format!("n{i}"),
            &control(
                &format!("new{i}-{}@remote.example", "x".repeat(40)),
                &["u@e2e.test"],
                Some("192.0.2.1"),
            ),
        );
        let reply = send(&socket, &d, &c);
        // A new triplet is never accepted: greylisted, or a tempfail when it cannot be written.
        assert!(
            reply == greylisted("00:00:00") || reply == TEMPFAIL_GREYLIST,
            "{reply}"
        );
        if reply == TEMPFAIL_GREYLIST {
            tempfails += 1;
        }
    }
    assert!(tempfails > 0, "no write failed on a full disk");
    assert!(
        f.wait_stderr("database or disk is full", Duration::from_secs(5)),
        "{}",
        f.stderr()
    );

    std::fs::remove_file(filler).expect("rm filler");
    let (d, c) = message(
        &f,
        "b",
        &control("b@remote.example", &["u@e2e.test"], Some("192.0.2.1")),
    );
    assert_eq!(send(&socket, &d, &c), greylisted("00:00:00"));
    assert_eq!(send(&socket, &d, &c), "200 Ok", "{}", f.stderr());
    let (d, c) = message(
        &f,
        "a2",
        &control("a@remote.example", &["u@e2e.test"], Some("192.0.2.1")),
    );
    assert_eq!(send(&socket, &d, &c), "200 Ok");
    drop(f);
    drop(mount);
}

// ---- rewriting the message on a full disk ----------------------------------------------------

/// The spool directory's file system is full when a module rewrites the message: a tempfail,
/// the spool file untouched and no temporary file left behind; with room again, the rewrite
/// happens.
#[test]
fn a_rewrite_on_a_full_disk_tempfails_and_leaves_the_spool_file_intact() {
    require_root();
    let f = Filter::start("noreceivedheaders\n", "");
    let dir = f.localstatedir().join("tmp/full");
    let mount = Mount::tmpfs(&dir, "64k");
    let data = f.spool("full", "data-plain");
    let control = f.spool("full", "control-auth");
    let original = std::fs::read(&data).expect("read");
    let filler = fill(&dir);

    assert_eq!(
        f.send(&data, &[&control]),
        "451 4.3.0 Temporary failure in noreceivedheaders, try again later"
    );
    assert_eq!(std::fs::read(&data).expect("read"), original);
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .expect("readdir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    left.sort();
    assert_eq!(left, ["control-auth", "data-plain", "filler"]);
    assert!(
        f.wait_stderr("No space left on device", Duration::from_secs(5)),
        "{}",
        f.stderr()
    );

    std::fs::remove_file(filler).expect("rm filler");
    assert_eq!(f.send(&data, &[&control]), "200 Ok", "{}", f.stderr());
    let new = String::from_utf8(std::fs::read(&data).expect("read")).expect("utf-8");
    assert!(!new.contains("Received:"), "{new}");
    assert!(new.ends_with("Subject: plain\n\nbody\n"), "{new}");
    drop(f);
    drop(mount);
}

/// Free bytes on the file system of `dir`.
fn free_bytes(dir: &Path) -> u64 {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: statvfs is plain data; all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a NUL-terminated path and st a valid statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &raw mut st) };
    assert_eq!(rc, 0, "statvfs: {}", std::io::Error::last_os_error());
    st.f_bavail * st.f_frsize
}

const PAGE: u64 = 4096;

fn pages(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE)
}

/// The disk has room for the rewritten copy but not for the spool file to grow as well: the
/// rewrite tempfails with the spool file exactly as it was (not half overwritten) and no
/// temporary file left behind.
#[test]
fn a_growing_rewrite_on_a_nearly_full_disk_leaves_the_spool_file_intact() {
    require_root();
    let sig_dir = tempfile::tempdir().expect("tempdir");
    let sig = sig_dir.path().join("signature.txt");
    std::fs::write(&sig, "-- \nBob Example\n").expect("signature");
    let f = Filter::start(
        "add_signature\n",
        &format!(
            "[add_signature]\ndomains = {{'example.com': '{}'}}\n",
            sig.display()
        ),
    );
    // Just under a page, so that the signature makes it one page longer.
    let mut original = b"From: Bob <bob@example.com>\nTo: e2e@e2e.test\nSubject: near\n\n".to_vec();
    while original.len() < PAGE as usize - 100 {
        original.extend_from_slice(b"0123456789 0123456789 0123456789 0123456789\n");
    }
    let auth =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/spam/control-auth"))
            .expect("control-auth fixture");

    // The size of the rewritten message, on a disk with room.
    let roomy = f.localstatedir().join("tmp/roomy");
    std::fs::create_dir_all(&roomy).expect("mkdir");
    std::fs::write(roomy.join("D"), &original).expect("data");
    std::fs::write(roomy.join("C"), &auth).expect("control");
    assert_eq!(f.send(&roomy.join("D"), &[&roomy.join("C")]), "200 Ok");
    let new_len = std::fs::metadata(roomy.join("D")).expect("stat").len();
    assert!(
        pages(new_len) > pages(original.len() as u64),
        "{new_len} bytes: the rewrite does not grow the file by a page"
    );

    let dir = f.localstatedir().join("tmp/near");
    let mount = Mount::tmpfs(&dir, "256k");
    std::fs::write(dir.join("D"), &original).expect("data");
    std::fs::write(dir.join("C"), &auth).expect("control");
    // Exactly room for the temporary copy.
    let filler_len = free_bytes(&dir) - pages(new_len) * PAGE;
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![0x5a; filler_len as usize]).expect("filler");
    assert_eq!(free_bytes(&dir), pages(new_len) * PAGE);

    assert_eq!(
        f.send(&dir.join("D"), &[&dir.join("C")]),
        "451 4.3.0 Temporary failure in add_signature, try again later",
        "{}",
        f.stderr()
    );
    assert!(
        std::fs::read(dir.join("D")).expect("read") == original,
        "spool file changed"
    );
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .expect("readdir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    left.sort();
    assert_eq!(left, ["C", "D", "filler"]);

    std::fs::remove_file(filler).expect("rm filler");
    assert_eq!(f.send(&dir.join("D"), &[&dir.join("C")]), "200 Ok");
    assert_eq!(
        std::fs::metadata(dir.join("D")).expect("stat").len(),
        new_len
    );
    drop(f);
    drop(mount);
}

// ---- clamd --------------------------------------------------------------------------------

/// A slow clamd: an answer inside the timeout is used (the message waits for it); one that
/// comes later is a tempfail at the timeout, and the late answer is never taken for the next
/// message's.
#[test]
fn a_slow_clamd_inside_and_outside_the_timeout() {
    let proxy = ClampProxy::start(Behaviour::Delay(Duration::from_millis(800)));
    let f = Filter::start("clamav\n", &proxy.modules(5.0));
    let (d, c) = clean_message(&f, "in");
    let t = Instant::now();
    assert_eq!(f.send(&d, &[&c]), "200 Ok", "{}", f.stderr());
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "{took:?}"
    );
    drop(f);

    let proxy = ClampProxy::start(Behaviour::Delay(Duration::from_millis(2500)));
    let f = Filter::start("clamav\n", &proxy.modules(1.0));
    for name in ["out1", "out2"] {
        let (d, c) = clean_message(&f, name);
        let t = Instant::now();
        assert_eq!(f.send(&d, &[&c]), CLAMD_UNAVAILABLE);
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2000),
            "{took:?}"
        );
    }
    assert!(
        f.wait_stderr("clamd timed out", Duration::from_secs(5)),
        "{}",
        f.stderr()
    );
}

// ---- DNS ----------------------------------------------------------------------------------

/// A UDP "name server" that answers every query with `rcode` (None: never answers).
struct NameServer {
    addr: std::net::SocketAddr,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl NameServer {
    fn start(rcode: Option<u8>) -> NameServer {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let addr = sock.local_addr().expect("addr");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, s) = (Arc::clone(&queries), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                q.fetch_add(1, Ordering::Relaxed);
                if let (Some(rcode), true) = (rcode, n >= 12) {
                    // The query itself, turned into a response with this rcode.
                    let mut r = buf[..n].to_vec();
                    r[2] |= 0x80;
                    r[3] = (r[3] & 0xf0) | rcode;
                    let _ = sock.send_to(&r, from);
                }
            }
        });
        NameServer {
            addr,
            queries,
            stop,
        }
    }

    fn dns_section(&self) -> String {
        format!(
            "[dns]\nnameservers = ['{}']\ntimeout = 0.5\nattempts = 2\n",
            self.addr
        )
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// spfcheck when the name server never answers or answers SERVFAIL: `451 4.4.3` (SPF
/// temperror), within the resolver's timeout × attempts; whitelist_dnswl treats a failed
/// lookup as "not listed" (logged), so the rest of the chain still decides.
#[test]
fn dns_timeout_and_servfail_through_the_socket() {
    let spf_mail = control("someone@spf.example", &["u@e2e.test"], Some("192.0.2.1"));
    for (rcode, max) in [
        (None, Duration::from_secs(3)),
        (Some(2), Duration::from_secs(1)),
    ] {
        let ns = NameServer::start(rcode);
        let f = Filter::start("spfcheck\n", &ns.dns_section());
        let (d, c) = message(&f, "spf", &spf_mail);
        let t = Instant::now();
        assert_eq!(send(&f.socket_path(), &d, &c), SPF_TEMPERROR, "{rcode:?}");
        let took = t.elapsed();
        assert!(took < max, "{rcode:?}: {took:?}");
        if rcode.is_none() {
            // 0.5 s × 2 attempts, one lookup: the TXT of the sender's domain.
            assert!(took >= Duration::from_millis(900), "{took:?}");
        }
        assert!(
            f.wait_stderr("spfcheck: SPF temperror", Duration::from_secs(5)),
            "{}",
            f.stderr()
        );
        assert!(ns.queries.load(Ordering::Relaxed) >= 1);

        let f = Filter::start("whitelist_dnswl\ndeliveredto\n", &ns.dns_section());
        let data = f.spool("wl", "data-loop");
        let ctl = f.spool("wl", "control-plain");
        assert_eq!(f.send(&data, &[&ctl]), LOOP_REPLY, "{rcode:?}");
        assert!(
            f.wait_stderr("whitelist_dnswl: lookup of", Duration::from_secs(5)),
            "{}",
            f.stderr()
        );
    }
}

// ---- the worker pool ------------------------------------------------------------------------

/// A worker SIGKILLed while it handles a message: Courier's connection is closed with no reply
/// (Courier then tempfails the message), and the master has a new worker serving at once.
#[test]
fn a_worker_killed_mid_message_is_replaced_within_100_ms() {
    let proxy = ClampProxy::start(Behaviour::HangFirst);
    let f = Filter::start_with(Options {
        chain: "clamav\n",
        modules: &proxy.modules(30.0),
        workers: Some(1),
        ..Options::default()
    });
    let before = f.workers();
    assert_eq!(before.len(), 1);
    let (d, c) = clean_message(&f, "killed");
    let (d2, c2) = clean_message(&f, "next");

    let socket = f.socket_path();
    let request = format!("{}\n{}\n\n", d.display(), c.display());
    let client = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        s.write_all(request.as_bytes()).expect("write");
        common::read_reply(&mut s).expect("read")
    });
    // The worker is mid-message: it has connected to "clamd", which never answers.
    let busy = proxy.next_client(Duration::from_secs(10));
    assert_eq!(busy, before[0]);

    let killed = Instant::now();
    // SAFETY: signalling the daemon's worker.
    unsafe { libc::kill(busy, libc::SIGKILL) };
    let replaced = loop {
        let w = f.workers();
        if w.len() == 1 && w[0] != busy {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(5), "not replaced");
        std::thread::sleep(Duration::from_micros(500));
    };
    assert_eq!(f.send(&d2, &[&c2]), "200 Ok", "{}", f.stderr());
    let served = killed.elapsed();
    assert_eq!(client.join().expect("client"), "", "a reply after SIGKILL");
    eprintln!("worker replaced after {replaced:?}, next message answered after {served:?}");
    assert!(replaced < Duration::from_millis(100), "{replaced:?}");
    // The next message includes a real scan by the shared clamd: a looser bound.
    assert!(served < Duration::from_secs(2), "{served:?}");
    assert!(
        f.wait_stderr(
            &format!("worker {busy} killed by signal 9"),
            Duration::from_secs(5)
        ),
        "{}",
        f.stderr()
    );
}

/// stdin closed (courierfilter stop) while messages are in flight: the socket goes at once (no
/// new message is taken), every message in flight gets its reply, and the daemon exits 0
/// within 10 s.
#[test]
fn stdin_closed_under_load_completes_in_flight_messages() {
    const N: usize = 4;
    let proxy = ClampProxy::start(Behaviour::Delay(Duration::from_millis(1500)));
    let mut f = Filter::start_with(Options {
        chain: "clamav\n",
        modules: &proxy.modules(10.0),
        workers: Some(N),
        ..Options::default()
    });
    let workers = f.workers();
    let socket = f.socket_path();
    let clients: Vec<_> = (0..N)
        .map(|i| {
            let (d, c) = clean_message(&f, &format!("m{i}"));
            let socket = socket.clone();
            std::thread::spawn(move || send(&socket, &d, &c))
        })
        .collect();
    for _ in 0..N {
        proxy.next_client(Duration::from_secs(10));
    }

    let t = Instant::now();
    f.close_stdin();
    while socket.exists() {
        assert!(t.elapsed() < Duration::from_secs(1), "socket still there");
        std::thread::sleep(Duration::from_millis(5));
    }
    let gone = t.elapsed();
    assert!(UnixStream::connect(&socket).is_err());
    for c in clients {
        assert_eq!(c.join().expect("client"), "200 Ok");
    }
    let status = f.wait_exit(Duration::from_secs(10)).expect("still running");
    let exited = t.elapsed();
    assert_eq!(status.code(), Some(0), "{}", f.stderr());
    assert!(exited < Duration::from_secs(10), "{exited:?}");
    eprintln!("socket gone after {gone:?}, exit after {exited:?}");
    for w in workers {
        assert!(
            !Path::new(&format!("/proc/{w}")).exists(),
            "worker {w} left"
        );
    }
}

/// The process is gone or a zombie.
fn dead_or_zombie(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

// ---- PostgreSQL -------------------------------------------------------------------------------

/// The PostgreSQL server SIGKILLed while messages stream in: no message is accepted unchecked
/// (every new triplet is greylisted or tempfailed), and once the server is back the workers
/// reconnect and the state written before the crash is there.
#[test]
fn postgres_killed_mid_load_never_accepts_unchecked() {
    let cluster = rustfilter::store::testing::temp_cluster();
    let backend = Backend::Postgres(cluster.config());
    let f = stateful::start("greylist\n", "[greylist]\ngreylist_time = 0\n", &backend, 4);
    let socket = f.socket_path();
    let (d, c) = message(
        &f,
        "known",
        &control("known@remote.example", &["u@e2e.test"], Some("192.0.2.1")),
    );
    assert_eq!(send(&socket, &d, &c), greylisted("00:00:00"));
    assert_eq!(send(&socket, &d, &c), "200 Ok");

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Mutex::new((0usize, 0usize)));
    let spool = f.localstatedir().join("tmp");
    let load: Vec<_> = (0..4)
        .map(|t| {
            let (stop, counts, socket) = (Arc::clone(&stop), Arc::clone(&counts), socket.clone());
            let spool = spool.clone();
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let dir = spool.join(format!("l{t}-{i}"));
                    std::fs::create_dir_all(&dir).expect("mkdir");
                    let (d, c) = (dir.join("D"), dir.join("C"));
                    std::fs::write(&d, "Subject: load\n\nbody\n").expect("data");
                    let sender = format!("load{t}-{i}@remote.example");
                    std::fs::write(&c, control(&sender, &["u@e2e.test"], Some("192.0.2.1")))
                        .expect("control");
                    let reply = send(&socket, &d, &c);
                    let mut n = counts.lock().expect("counts");
                    if reply == greylisted("00:00:00") {
                        n.0 += 1;
                    } else if reply == TEMPFAIL_GREYLIST {
                        n.1 += 1;
                    } else {
                        panic!("a new triplet got {reply:?}");
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let pid_file = cluster.dir().join("data/postmaster.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("postmaster.pid")
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid in postmaster.pid");
    let backends: Vec<i32> = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    // SAFETY: the test cluster's postmaster.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.join().expect("a load thread failed");
    }
    let (greylisted_n, tempfailed_n) = *counts.lock().expect("counts");
    eprintln!("during the load: {greylisted_n} greylisted, {tempfailed_n} tempfailed");
    assert!(
        greylisted_n > 0 && tempfailed_n > 0,
        "{greylisted_n} {tempfailed_n}"
    );

    // The postmaster and its backends are dead, but here they stay zombies (nobody reaps
    // orphans), which pg_ctl and PostgreSQL's lock files take for a live server: remove the
    // stale lock files as an administrator would after such a crash.
    let t = Instant::now();
    while !dead_or_zombie(pid) || backends.iter().any(|&b| !dead_or_zombie(b)) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "PostgreSQL still alive"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(
        cluster
            .dir()
            .join(format!(".s.PGSQL.{}.lock", cluster.port())),
    );
    cluster.start();
    let mut reply = String::new();
    for _ in 0..100 {
        reply = send(&socket, &d, &c);
        if reply == "200 Ok" {
            break;
        }
        assert_eq!(reply, TEMPFAIL_GREYLIST);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(reply, "200 Ok", "{}", f.stderr());
}
