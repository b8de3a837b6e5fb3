//! The clamav module in the real binary against the real clamd of tests/services/clamd.sh
//! (private signatures: Rustfilter.Test.EICAR and Rustfilter.Test.Pattern; StreamMaxLength 1M).
//!
//! The EICAR test string is put together here at run time, never stored whole in the
//! repository, so that no scanner on a developer's machine quarantines this file.

#[path = "common/base64.rs"]
mod base64;
mod common;

#[path = "common/clamd.rs"]
mod clamd;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Filter;

use base64::base64_lines;
use clamd::{CLAMD_SOCKET, require_clamd};
const UNAVAILABLE: &str = "451 4.3.0 Virus scanner unavailable, try again later";
const EICAR_FOUND: &str = "554 Virus found - Signature is Rustfilter.Test.EICAR.UNOFFICIAL";
const PATTERN_FOUND: &str = "554 Virus found - Signature is Rustfilter.Test.Pattern.UNOFFICIAL";

/// The 68-byte EICAR test file, from two halves.
fn eicar() -> Vec<u8> {
    let mut e = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR".to_vec();
    e.extend_from_slice(b"-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    assert_eq!(e.len(), 68);
    e
}

fn modules(extra: &str) -> String {
    format!("[clamav]\nlocal_socket = '{CLAMD_SOCKET}'\n{extra}")
}

/// Write a message into the filter's spool and send it with the plain control file.
fn send(f: &Filter, name: &str, data: &[u8]) -> String {
    let dir = f.localstatedir().join("tmp/m");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write message");
    // As Courier's spool files: only the owner may read it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let control = f.spool("m", "control-plain");
    f.send(&path, &[&control])
}

fn mail(subject: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "From: alice@example.org\nTo: e2e@e2e.test\nSubject: {subject}\n\
         Message-ID: <{subject}@example.org>\n\n"
    )
    .into_bytes();
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// A multipart message with `attachment` as a base64 part.
fn with_attachment(subject: &str, filename: &str, ctype: &str, attachment: &[u8]) -> Vec<u8> {
    format!(
        "From: alice@example.org\nTo: e2e@e2e.test\nSubject: {subject}\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\n\n\
         --b1\nContent-Type: text/plain\n\nSee the attachment.\n\
         --b1\nContent-Type: {ctype}; name=\"{filename}\"\n\
         Content-Transfer-Encoding: base64\n\
         Content-Disposition: attachment; filename=\"{filename}\"\n\n{}\n--b1--\n",
        base64_lines(attachment, "\n")
    )
    .into_bytes()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `data` as one raw DEFLATE block with the fixed Huffman codes, literals only: a valid
/// compressed stream in which the original bytes do not appear.
fn deflate_fixed(data: &[u8]) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u32,
        n: u32,
    }
    impl Bits {
        /// `count` bits of `value`, least significant first.
        fn put(&mut self, value: u32, count: u32) {
            for i in 0..count {
                self.acc |= ((value >> i) & 1) << self.n;
                self.n += 1;
                if self.n == 8 {
                    self.out.push(self.acc as u8);
                    (self.acc, self.n) = (0, 0);
                }
            }
        }
        /// A Huffman code: most significant bit first.
        fn code(&mut self, code: u32, len: u32) {
            for i in (0..len).rev() {
                self.put((code >> i) & 1, 1);
            }
        }
    }
    let mut b = Bits {
        out: Vec::new(),
        acc: 0,
        n: 0,
    };
    b.put(1, 1); // BFINAL
    b.put(1, 2); // BTYPE 01: fixed Huffman
    for &byte in data {
        let v = u32::from(byte);
        if v < 144 {
            b.code(0x30 + v, 8);
        } else {
            b.code(0x190 + (v - 144), 9);
        }
    }
    b.code(0, 7); // end of block (256)
    if b.n > 0 {
        b.out.push(b.acc as u8);
    }
    b.out
}

/// A zip archive with one deflated member.
fn zip(name: &str, content: &[u8]) -> Vec<u8> {
    let crc = crc32(content);
    let packed = deflate_fixed(content);
    let (csize, size) = (packed.len() as u32, content.len() as u32);
    let n = name.len() as u16;
    let mut z = Vec::new();
    // local file header: signature, version 2.0, flags, method 8 (deflate), time, date, crc,
    // sizes, name length, extra length
    z.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    for v in [20u16, 0, 8, 0, 0x21] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&csize.to_le_bytes());
    z.extend_from_slice(&size.to_le_bytes());
    z.extend_from_slice(&n.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(name.as_bytes());
    z.extend_from_slice(&packed);
    // central directory: made by, needed, flags, method, time, date, crc, sizes, name length,
    // extra, comment, disk, internal attrs, external attrs, local header offset
    let cd_start = z.len() as u32;
    z.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    for v in [20u16, 20, 0, 8, 0, 0x21] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&csize.to_le_bytes());
    z.extend_from_slice(&size.to_le_bytes());
    z.extend_from_slice(&n.to_le_bytes());
    for v in [0u16, 0, 0, 0] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    z.extend_from_slice(&0u32.to_le_bytes());
    z.extend_from_slice(&0u32.to_le_bytes());
    z.extend_from_slice(name.as_bytes());
    let cd_len = z.len() as u32 - cd_start;
    // end of central directory: disk numbers, entries here and in all, size, offset, comment
    z.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, 1, 1] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    z.extend_from_slice(&cd_len.to_le_bytes());
    z.extend_from_slice(&cd_start.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

fn clean() -> Vec<u8> {
    mail("clean", b"Hello Bob,\n\nnothing to see here.\n-- \nAlice")
}

#[test]
fn instream_finds_eicar_in_every_form_and_the_custom_pattern() {
    require_clamd();
    let f = Filter::start("clamav\n", &modules(""));
    let mut body = b"Here it is:\n".to_vec();
    body.extend_from_slice(&eicar());
    assert_eq!(send(&f, "raw", &mail("raw", &eicar())), EICAR_FOUND);
    assert_eq!(send(&f, "inline", &mail("inline", &body)), EICAR_FOUND);
    assert_eq!(
        send(
            &f,
            "attached",
            &with_attachment(
                "attached",
                "eicar.com",
                "application/octet-stream",
                &eicar()
            )
        ),
        EICAR_FOUND
    );
    let zipped = zip("eicar.com", &eicar());
    // Compressed: clamd finds it only by opening the archive.
    assert!(!zipped.windows(68).any(|w| w == eicar().as_slice()));
    assert_eq!(
        send(
            &f,
            "zipped",
            &with_attachment("zipped", "eicar.zip", "application/zip", &zipped)
        ),
        EICAR_FOUND
    );
    let pattern = mail(
        "pattern",
        b"some text RUSTFILTER-TEST-MALWARE-PATTERN-42 more text",
    );
    assert_eq!(send(&f, "pattern", &pattern), PATTERN_FOUND);
    // The recipe's pattern and name, for tests written against it.
    let recipe = mail("recipe", b"PYFILTER-TEST-MALWARE-PATTERN-42");
    assert_eq!(
        send(&f, "recipe", &recipe),
        "554 Virus found - Signature is Test.Custom-Pattern.UNOFFICIAL"
    );
    assert_eq!(send(&f, "clean", &clean()), "200 Ok");
    assert_eq!(send(&f, "empty", b""), "200 Ok");
    assert_eq!(
        send(
            &f,
            "zip-clean",
            &with_attachment(
                "zip-clean",
                "a.zip",
                "application/zip",
                &zip("a.txt", b"hi")
            )
        ),
        "200 Ok"
    );
}

#[test]
fn fildes_mode_scans_the_passed_descriptor() {
    require_clamd();
    let f = Filter::start("clamav\n", &modules("scan_mode = 'fildes'\n"));
    assert_eq!(send(&f, "raw", &mail("raw", &eicar())), EICAR_FOUND);
    assert_eq!(
        send(
            &f,
            "zipped",
            &with_attachment(
                "zipped",
                "e.zip",
                "application/zip",
                &zip("e.com", &eicar())
            )
        ),
        EICAR_FOUND
    );
    let pattern = mail("pattern", b"RUSTFILTER-TEST-MALWARE-PATTERN-42");
    assert_eq!(send(&f, "pattern", &pattern), PATTERN_FOUND);
    assert_eq!(send(&f, "clean", &clean()), "200 Ok");
    // StreamMaxLength does not apply to FILDES: a 2 MiB message with EICAR at its end.
    let mut big = vec![b'a'; 2 << 20];
    big.extend_from_slice(&eicar());
    assert_eq!(send(&f, "big", &mail("big", &big)), EICAR_FOUND);
}

#[test]
fn no_clamd_is_451_and_the_detail_is_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("clamd.sock");
    let f = Filter::start(
        "clamav\n",
        &format!("[clamav]\nlocal_socket = '{}'\n", missing.display()),
    );
    assert_eq!(send(&f, "raw", &mail("raw", &eicar())), UNAVAILABLE);
    assert_eq!(send(&f, "clean", &clean()), UNAVAILABLE);
    assert!(
        f.wait_stderr("cannot connect to clamd", Duration::from_secs(5)),
        "{}",
        f.stderr()
    );
    assert!(f.stderr().contains(&missing.display().to_string()));

    // A stale socket file that nobody listens on (clamd crashed): connection refused.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).expect("bind"));
    let f = Filter::start(
        "clamav\n",
        &format!("[clamav]\nlocal_socket = '{}'\n", stale.display()),
    );
    assert_eq!(send(&f, "raw", &mail("raw", &eicar())), UNAVAILABLE);
    assert!(
        f.wait_stderr("Connection refused", Duration::from_secs(5)),
        "{}",
        f.stderr()
    );
}

/// A "clamd" that accepts `n` connections and reads but never answers.
fn hung_clamd(dir: &Path, n: usize) -> (PathBuf, std::thread::JoinHandle<()>) {
    let path = dir.join("hung.sock");
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).expect("bind");
    let t = std::thread::spawn(move || {
        let mut held = Vec::new();
        // Hold each connection open, reading what comes.
        for _ in 0..n {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = s.read(&mut buf);
            held.push(s);
        }
        std::thread::sleep(Duration::from_secs(5));
    });
    (path, t)
}

#[test]
fn a_hung_clamd_is_451_within_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sock, t) = hung_clamd(dir.path(), 2);
    let f = Filter::start(
        "clamav\n",
        &format!(
            "[clamav]\nlocal_socket = '{}'\ntimeout = 1.0\n",
            sock.display()
        ),
    );
    for name in ["first", "second"] {
        let start = Instant::now();
        assert_eq!(send(&f, name, &mail(name, &eicar())), UNAVAILABLE);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
    assert!(
        f.wait_stderr("clamd timed out", Duration::from_secs(5)),
        "{}",
        f.stderr()
    );
    // Not joined: a listener left waiting must not hang the test.
    drop((f, t));

    // The message's deadline cuts a longer timeout short.
    let (sock, t) = hung_clamd(dir.path(), 1);
    let f = Filter::start(
        "clamav\n",
        &format!(
            "[rustfilter]\nmessage_timeout = 1.0\n[clamav]\nlocal_socket = '{}'\ntimeout = 30\n",
            sock.display()
        ),
    );
    let start = Instant::now();
    let reply = send(&f, "deadline", &mail("deadline", &eicar()));
    let took = start.elapsed();
    assert!(reply.starts_with("451 4.3.0 "), "{reply}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // Not joined: a listener left waiting must not hang the test.
    drop((f, t));
}

#[test]
fn a_message_longer_than_the_stream_limit() {
    require_clamd();
    // Above clamd's StreamMaxLength (1M) with the default stream_max_length (25 MiB): clamd
    // refuses the stream (the client gets EPIPE while sending, then reads the reply): 451.
    let mut virus_first = eicar();
    virus_first.extend(std::iter::repeat_n(b'a', 2 << 20));
    let mut virus_last = vec![b'a'; 2 << 20];
    virus_last.extend_from_slice(&eicar());
    {
        let f = Filter::start("clamav\n", &modules(""));
        assert_eq!(send(&f, "big", &mail("big", &virus_last)), UNAVAILABLE);
        assert!(
            f.wait_stderr("size limit exceeded", Duration::from_secs(5)),
            "{}",
            f.stderr()
        );
    }
    // stream_max_length at clamd's limit: the first 1 MiB is scanned, the rest is not.
    let f = Filter::start("clamav\n", &modules("stream_max_length = 1048576\n"));
    assert_eq!(send(&f, "first", &mail("first", &virus_first)), EICAR_FOUND);
    assert_eq!(send(&f, "last", &mail("last", &virus_last)), "200 Ok");
    assert!(
        f.wait_stderr(
            "only the first 1048576 bytes were scanned",
            Duration::from_secs(5)
        ),
        "{}",
        f.stderr()
    );
    // Exactly the limit is scanned whole.
    let mut exact = mail("exact", b"");
    exact.resize(1048576 - 68, b'a');
    exact.extend_from_slice(&eicar());
    assert_eq!(exact.len(), 1048576);
    assert_eq!(send(&f, "exact", &exact), EICAR_FOUND);
}

/// A second, private clamd (tests/services/clamd.sh on its own directory), stopped on drop.
/// Run as root, it runs as the user `clamav`, who may not read the test's spool.
struct PrivateClamd {
    dir: String,
}

impl PrivateClamd {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/services/clamd.sh")
    }

    fn run(&self, action: &str) {
        let mut cmd = std::process::Command::new(Self::script());
        cmd.arg(action).arg(&self.dir);
        if is_root() {
            cmd.env("CLAMD_USER", "clamav");
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run tests/services/clamd.sh: {e}"));
        assert!(
            out.status.success(),
            "tests/services/clamd.sh {action} {}: {}",
            self.dir,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(dir: String) -> PrivateClamd {
        let c = PrivateClamd { dir };
        c.run("start");
        c
    }

    fn socket(&self) -> String {
        format!("{}/clamd.sock", self.dir)
    }
}

impl Drop for PrivateClamd {
    fn drop(&mut self) {
        self.run("stop");
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(format!("{}.lock", self.dir));
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// clamd's answer to `zSCAN <path>` (clamd opens the file itself, as pythonfilter had it).
fn scan_by_path(socket: &str, path: &Path) -> String {
    let mut s = UnixStream::connect(socket).expect("connect to the private clamd");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut cmd = b"zSCAN ".to_vec();
    cmd.extend_from_slice(path.as_os_str().as_encoded_bytes());
    cmd.push(0);
    s.write_all(&cmd).expect("send");
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn a_clamd_without_spool_access_and_its_restart() {
    let clamd = PrivateClamd::start(format!("/tmp/rustfilter-clamd-t{}", std::process::id()));
    let instream = Filter::start(
        "clamav\n",
        &format!("[clamav]\nlocal_socket = '{}'\n", clamd.socket()),
    );
    let fildes = Filter::start(
        "clamav\n",
        &format!(
            "[clamav]\nlocal_socket = '{}'\nscan_mode = 'fildes'\n",
            clamd.socket()
        ),
    );
    let virus = mail("virus", &eicar());
    assert_eq!(send(&instream, "virus", &virus), EICAR_FOUND);
    assert_eq!(send(&fildes, "virus", &virus), EICAR_FOUND);
    assert_eq!(send(&fildes, "clean", &clean()), "200 Ok");
    if is_root() {
        // clamd runs as `clamav` and cannot open the spool file (0600, root's) by name: the
        // scans above did not need it to.
        let path = fildes.localstatedir().join("tmp/m/virus");
        let reply = scan_by_path(&clamd.socket(), &path);
        assert!(
            reply.ends_with(" ERROR\0") && reply.contains("denied"),
            "{reply:?}"
        );
    }

    // clamd stopped: deferred, not accepted.
    clamd.run("stop");
    assert_eq!(send(&instream, "virus2", &virus), UNAVAILABLE);
    assert_eq!(send(&fildes, "clean2", &clean()), UNAVAILABLE);
    // Back again: the filter needs no restart.
    clamd.run("start");
    assert_eq!(send(&instream, "virus3", &virus), EICAR_FOUND);
    assert_eq!(send(&fildes, "clean3", &clean()), "200 Ok");
}
