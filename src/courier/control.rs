//! Queue control files, parsed once per message into an [`Envelope`] (spec §4). Values are
//! decoded with the reference's "malformed UTF-8" rule. Recipient edits append records to the
//! files (one `write` per edit) and update the in-memory view, so later modules and the reject
//! log see them.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::watch::{find_byte, read_bounded, with_path};

/// One recipient: `r` (address), `R` (original recipient / ORCPT), `N` (DSN flags).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recipient {
    pub addr: String,
    pub orig: String,
    pub dsn: String,
}

impl Recipient {
    pub fn new(addr: &str, orig: &str, dsn: &str) -> Recipient {
        Recipient {
            addr: addr.to_string(),
            orig: orig.to_string(),
            dsn: dsn.to_string(),
        }
    }
}

/// An undelivered recipient as the envelope holds it: borrowed, nothing copied (modules that
/// only look at the recipients of every message allocate nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipientRef<'a> {
    pub addr: &'a str,
    pub orig: &'a str,
    pub dsn: &'a str,
}

impl RecipientRef<'_> {
    pub fn to_recipient(&self) -> Recipient {
        Recipient::new(self.addr, self.orig, self.dsn)
    }
}

/// Why the control files could not be loaded.
#[derive(Debug)]
pub struct ControlError {
    pub path: PathBuf,
    pub error: io::Error,
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "control file {}: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for ControlError {}

/// The largest control file we read. Courier's are a few KiB even with 100 recipients.
pub const MAX_CONTROL_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The text of the `I` record written when a module removes a recipient.
const REMOVED_INFO: &str = "R 250 Ok - Removed by rustfilter";

/// Where a decoded value lies in its file's [`ControlFile::text`].
type Span = std::ops::Range<usize>;

/// One recipient group (`r` … `N`) of one file, numbered as Courier numbers them.
#[derive(Debug, Clone)]
struct RecipientEntry {
    index: usize,
    addr: Span,
    orig: Span,
    dsn: Span,
}

/// One control file, parsed.
#[derive(Debug, Clone, Default)]
struct ControlFile {
    /// The decoded values of all records, in one buffer (no allocation per record): the file's
    /// own text when it is valid UTF-8, each value a slice of its line; otherwise the decoded
    /// values one after another. Values of records added later are appended.
    text: String,
    /// Every record: letter and decoded value.
    records: Vec<(u8, Span)>,
    /// Every recipient group, including those with an empty `r` (they take an index).
    recipients: Vec<RecipientEntry>,
    /// Indexes marked complete by `S<n>` / `F<n>`.
    done: BTreeSet<usize>,
    /// The `r` and `R` values of a group not yet closed by `N`.
    pending: (Span, Span),
    /// The value of the first `OTCPREMOTEIP=` record, after the `=`.
    client_ip: Option<Span>,
}

impl ControlFile {
    fn parse(path: &Path, data: Vec<u8>) -> ControlFile {
        let mut file = ControlFile::default();
        file.parse_into(path, data);
        file
    }

    /// Parse `data` into this file, in place of what it held: its lists keep their memory (a
    /// worker parses a control file per message), unless a big file made them big.
    fn parse_into(&mut self, path: &Path, data: Vec<u8>) {
        const MAX_KEPT: usize = 1024;
        if self.records.capacity() > MAX_KEPT || self.recipients.capacity() > MAX_KEPT {
            *self = ControlFile::default();
        }
        self.records.clear();
        self.recipients.clear();
        self.done.clear();
        self.pending = Default::default();
        self.client_ip = None;
        // Room for the usual number of records (Courier's lines average a few dozen bytes)
        // without counting the lines first.
        self.records.reserve(data.len() / 24 + 16);
        let file = self;
        match String::from_utf8(data) {
            // Then every line is valid UTF-8 too (lines end at an ASCII byte), and each value
            // is its line minus the letter and the blanks around it.
            Ok(text) => {
                let len = text.len();
                file.text = text;
                let mut pos = 0;
                while pos < len {
                    let bytes = &file.text.as_bytes()[..len];
                    let end = find_byte(&bytes[pos..], b'\n').map_or(len, |p| pos + p);
                    if end > pos {
                        let letter = bytes[pos];
                        if letter.is_ascii() {
                            let span = trim_blanks(bytes, pos + 1..end);
                            file.push_record(path, letter, span);
                        } else {
                            // A multi-byte character in the letter's place: the rest of it is
                            // not UTF-8 on its own.
                            let value = decode_value(&bytes[pos + 1..end]);
                            let span = file.append(&value);
                            file.push_record(path, letter, span);
                        }
                    }
                    pos = end + 1;
                }
            }
            Err(e) => {
                let data = e.into_bytes();
                file.text.clear();
                file.text.reserve(data.len() + 64);
                for line in data.split(|&b| b == b'\n') {
                    if let Some((&letter, rest)) = line.split_first() {
                        file.push_raw(path, letter, rest);
                    }
                }
            }
        }
        for n in &file.done {
            if !file.recipients.iter().any(|r| r.index == *n) {
                log::warn!(
                    "control file {}: delivery record for recipient #{n}, which does not exist",
                    path.display()
                );
            }
        }
    }

    fn next_index(&self) -> usize {
        self.recipients.len()
    }

    fn value(&self, span: &Span) -> &str {
        &self.text[span.clone()]
    }

    fn append(&mut self, value: &str) -> Span {
        let start = self.text.len();
        self.text.push_str(value);
        start..self.text.len()
    }

    /// Decode a record's raw value and add the record.
    fn push_raw(&mut self, path: &Path, letter: u8, raw: &[u8]) {
        let start = self.text.len();
        decode_value_into(raw, &mut self.text);
        self.push_record(path, letter, start..self.text.len());
    }

    /// Add one record to the in-memory view, with the reader's recipient logic. Kept small
    /// (it runs for every line of every control file) so that it is inlined.
    #[inline(always)]
    fn push_record(&mut self, path: &Path, letter: u8, span: Span) {
        match letter {
            b'r' => self.pending.0 = span.clone(),
            b'R' => self.pending.1 = span.clone(),
            b'N' => {
                let (addr, orig) = std::mem::take(&mut self.pending);
                let index = self.next_index();
                self.recipients.push(RecipientEntry {
                    index,
                    addr,
                    orig,
                    dsn: span.clone(),
                });
            }
            b'S' | b'F' => self.delivery_record(path, letter, &span),
            b'O' if self.client_ip.is_none() => self.option_record(&span),
            _ => {}
        }
        self.records.push((letter, span));
    }

    /// `O<name>=<value>`: the client's address is kept aside (every message asks for it).
    fn option_record(&mut self, span: &Span) {
        const NAME: &str = "TCPREMOTEIP=";
        if self.value(span).starts_with(NAME) {
            self.client_ip = Some(span.start + NAME.len()..span.end);
        }
    }

    /// `S<n> …` / `F<n> …`: recipient `n` is done.
    #[inline(never)]
    fn delivery_record(&mut self, path: &Path, letter: u8, span: &Span) {
        let value = self.value(span);
        let number = value.split(' ').next().unwrap_or_default();
        match number.parse::<usize>() {
            Ok(n) => {
                self.done.insert(n);
            }
            Err(_) => log::warn!(
                "control file {}: bad delivery record {:?}",
                path.display(),
                format!("{}{value}", letter as char)
            ),
        }
    }

    fn recipient(&self, entry: &RecipientEntry) -> RecipientRef<'_> {
        RecipientRef {
            addr: self.value(&entry.addr),
            orig: self.value(&entry.orig),
            dsn: self.value(&entry.dsn),
        }
    }

    fn undelivered(&self) -> impl Iterator<Item = &RecipientEntry> {
        self.recipients
            .iter()
            .filter(|r| !r.addr.is_empty() && !self.done.contains(&r.index))
    }

    /// Decoded values of the records with this letter, in order.
    fn values(&self, letter: u8) -> impl Iterator<Item = &str> {
        self.records
            .iter()
            .filter(move |(l, _)| *l == letter)
            .map(|(_, span)| self.value(span))
    }
}

/// `range` of `bytes` without the blanks `decode_value` strips at either end.
fn trim_blanks(bytes: &[u8], range: Span) -> Span {
    let mut start = range.start;
    let mut end = range.end;
    while start < end && is_blank(bytes[start]) {
        start += 1;
    }
    while end > start && is_blank(bytes[end - 1]) {
        end -= 1;
    }
    start..end
}

/// Python's bytes.strip() set: space, \t, \n, \r, \v, \f.
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// The scalar fields of the first control file plus the undelivered recipients: the reference's
/// `get_control_data` map (spec §4.4), one field per key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlData {
    /// `s`
    pub sender: String,
    /// `f`
    pub senders_mta: String,
    /// `e` (DSN ENVID)
    pub envid: Option<String>,
    /// `M`
    pub message_id: Option<String>,
    /// `i`
    pub auth_user: Option<String>,
    /// `t` (DSN RET)
    pub dsn_ret: Option<String>,
    /// `E`
    pub expires: Option<String>,
    /// `p`
    pub fax_expires: Option<String>,
    /// `W`
    pub warn_time: Option<String>,
    /// `v`
    pub vhost: Option<String>,
    /// `X`
    pub cancelled: Option<String>,
    /// `U`
    pub security: String,
    /// `u`
    pub source: Option<String>,
    /// `w`
    pub warned: bool,
    /// `8`
    pub eight_bit: bool,
    /// `m`
    pub eight_bit_headers: bool,
    /// `V`
    pub verp: bool,
    /// `T`
    pub suppress_backscatter: bool,
    /// `r`: undelivered recipients of all files.
    pub recipients: Vec<Recipient>,
}

/// The envelope of one message: every record of every control file, in order.
#[derive(Debug, Default)]
pub struct Envelope {
    paths: Vec<PathBuf>,
    files: Vec<ControlFile>,
    client_ip: Option<IpAddr>,
}

impl Envelope {
    /// Read and parse the control files (bounded in size; a file that is missing, unreadable
    /// or too large is an error).
    pub fn load(paths: &[PathBuf]) -> Result<Envelope, ControlError> {
        let mut envelope = Envelope::default();
        envelope.reload(paths)?;
        Ok(envelope)
    }

    /// [`Envelope::load`] into this envelope, in place of the message it held: its memory is
    /// reused (a worker loads an envelope per message). After an error it is empty.
    pub fn reload(&mut self, paths: &[PathBuf]) -> Result<(), ControlError> {
        self.client_ip = None;
        self.paths.truncate(paths.len());
        for (kept, path) in self.paths.iter_mut().zip(paths) {
            kept.clone_from(path);
        }
        let kept = self.paths.len();
        self.paths.extend_from_slice(&paths[kept..]);
        self.files.truncate(paths.len());
        for (i, path) in paths.iter().enumerate() {
            let data = match read_bounded(path, MAX_CONTROL_FILE_BYTES) {
                Ok(data) => data,
                Err(error) => {
                    self.paths.clear();
                    self.files.clear();
                    return Err(ControlError {
                        path: path.clone(),
                        error,
                    });
                }
            };
            match self.files.get_mut(i) {
                Some(file) => file.parse_into(path, data),
                None => self.files.push(ControlFile::parse(path, data)),
            }
        }
        self.client_ip = self.find_client_ip();
        Ok(())
    }

    /// Parse control files already in memory: each file's path (for `paths()` and log
    /// messages only) and its bytes. [`Envelope::load`] without the reading (fuzzing, tests).
    pub fn from_bytes(files: Vec<(PathBuf, Vec<u8>)>) -> Envelope {
        let (paths, files) = files
            .into_iter()
            .map(|(path, data)| {
                let file = ControlFile::parse(&path, data);
                (path, file)
            })
            .unzip();
        Envelope::from_files(paths, files)
    }

    fn from_files(paths: Vec<PathBuf>, files: Vec<ControlFile>) -> Envelope {
        let mut envelope = Envelope {
            paths,
            files,
            client_ip: None,
        };
        envelope.client_ip = envelope.find_client_ip();
        envelope
    }

    fn find_client_ip(&self) -> Option<IpAddr> {
        let value = self
            .files
            .iter()
            .find_map(|f| f.client_ip.as_ref().map(|span| f.value(span)))?;
        let parsed = parse_client_ip(value);
        if parsed.is_none() {
            log::warn!("malformed TCPREMOTEIP {value:?} in the control file; treated as absent");
        }
        parsed
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Decoded values of every record with this letter, across all files in order.
    pub fn values(&self, letter: u8) -> Vec<&str> {
        self.files.iter().flat_map(|f| f.values(letter)).collect()
    }

    /// The first value with this letter.
    pub fn first(&self, letter: u8) -> Option<&str> {
        self.files.iter().find_map(|f| f.values(letter).next())
    }
    /// Envelope sender (`s`); `None` when there is no `s` record, `Some("")` for a null sender.
    pub fn sender(&self) -> Option<&str> {
        self.first(b's')
    }

    /// The `f` record (received-from-MTA).
    pub fn senders_mta(&self) -> Option<&str> {
        self.first(b'f')
    }

    /// The SMTP AUTH identity (`i`).
    pub fn auth_user(&self) -> Option<&str> {
        self.first(b'i')
    }

    /// Courier's message id (`M`).
    pub fn message_id(&self) -> Option<&str> {
        self.first(b'M')
    }

    /// The client address from the first `OTCPREMOTEIP=` record, IPv4-mapped IPv6 turned into
    /// IPv4. `None` without the record, and for a malformed value (logged once, at load).
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// Undelivered recipients across all files, in order.
    pub fn recipients(&self) -> Vec<Recipient> {
        self.undelivered().map(|r| r.to_recipient()).collect()
    }

    /// [`Envelope::recipients`] borrowed: nothing is copied.
    pub fn undelivered(&self) -> impl Iterator<Item = RecipientRef<'_>> {
        self.files
            .iter()
            .flat_map(|f| f.undelivered().map(|r| f.recipient(r)))
    }

    /// The reference's `get_control_data`: scalar fields from the first file (the last
    /// occurrence of a letter wins), flags set when the letter occurs at all, and the
    /// undelivered recipients of all files.
    pub fn control_data(&self) -> ControlData {
        let mut data = ControlData::default();
        if let Some(first) = self.files.first() {
            for (letter, span) in &first.records {
                let value = first.value(span);
                let v = || Some(value.to_string());
                match letter {
                    b's' => data.sender = value.to_string(),
                    b'f' => data.senders_mta = value.to_string(),
                    b'e' => data.envid = v(),
                    b'M' => data.message_id = v(),
                    b'i' => data.auth_user = v(),
                    b't' => data.dsn_ret = v(),
                    b'E' => data.expires = v(),
                    b'p' => data.fax_expires = v(),
                    b'W' => data.warn_time = v(),
                    b'v' => data.vhost = v(),
                    b'X' => data.cancelled = v(),
                    b'U' => data.security = value.to_string(),
                    b'u' => data.source = v(),
                    b'w' => data.warned = true,
                    b'8' => data.eight_bit = true,
                    b'm' => data.eight_bit_headers = true,
                    b'V' => data.verp = true,
                    b'T' => data.suppress_backscatter = true,
                    _ => {}
                }
            }
        }
        data.recipients = self.recipients();
        data
    }

    /// Append a recipient (`r`, `R`, `N`) to the last control file.
    pub fn add_recipient(&mut self, rcpt: &Recipient) -> io::Result<()> {
        for field in [&rcpt.addr, &rcpt.orig, &rcpt.dsn] {
            if field.contains(['\n', '\r', '\0']) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("recipient field {field:?} contains a line break or NUL"),
                ));
            }
        }
        let (Some(path), Some(file)) = (self.paths.last(), self.files.last_mut()) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no control file to add to",
            ));
        };
        let text = format!("r{}\nR{}\nN{}\n", rcpt.addr, rcpt.orig, rcpt.dsn);
        append_records(path, text.as_bytes())?;
        // A group left open at the end of the file is overwritten by ours, as a reader sees it.
        file.pending = Default::default();
        for line in text.lines() {
            let (letter, value) = line.split_at(1);
            file.push_raw(path, letter.as_bytes()[0], value.as_bytes());
        }
        Ok(())
    }

    /// Mark the first undelivered recipient equal to `rcpt` (all three fields) as delivered
    /// (`I<n> R 250 Ok - Removed by …` + `S<n> <time>` in its file). Returns whether one was found.
    pub fn remove_recipient(&mut self, rcpt: &Recipient) -> io::Result<bool> {
        self.remove_first(|r| r.addr == rcpt.addr && r.orig == rcpt.orig && r.dsn == rcpt.dsn)
    }

    /// Like `remove_recipient`, matching the address only.
    pub fn remove_recipient_addr(&mut self, addr: &str) -> io::Result<bool> {
        self.remove_first(|r| r.addr == addr)
    }

    fn remove_first(&mut self, matches: impl Fn(&RecipientRef<'_>) -> bool) -> io::Result<bool> {
        let found = self.files.iter().enumerate().find_map(|(i, f)| {
            f.undelivered()
                .find(|r| matches(&f.recipient(r)))
                .map(|r| (i, r.index))
        });
        let Some((file_index, n)) = found else {
            return Ok(false);
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let text = format!("I{n} {REMOVED_INFO}\nS{n} {now}\n");
        let path = &self.paths[file_index];
        append_records(path, text.as_bytes())?;
        let file = &mut self.files[file_index];
        for line in text.lines() {
            let (letter, value) = line.split_at(1);
            file.push_raw(path, letter.as_bytes()[0], value.as_bytes());
        }
        Ok(true)
    }
}

/// Append complete records with one `write` on an `O_APPEND` descriptor, after a `\n` if the
/// file does not end with one (so the first new record starts on its own line).
fn append_records(path: &Path, records: &[u8]) -> io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| with_path(path, e))?;
    let len = file.metadata().map_err(|e| with_path(path, e))?.len();
    let mut buf = Vec::with_capacity(records.len() + 1);
    if len > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, len - 1)
            .map_err(|e| with_path(path, e))?;
        if last[0] != b'\n' {
            buf.push(b'\n');
        }
    }
    buf.extend_from_slice(records);
    (&file).write_all(&buf).map_err(|e| with_path(path, e))
}

/// `TCPREMOTEIP`'s value as an address: blanks stripped, an IPv6 `%zone` dropped, an
/// IPv4-mapped IPv6 address turned into IPv4.
pub fn parse_client_ip(value: &str) -> Option<IpAddr> {
    let value = value.trim();
    let without_zone = find_byte(value.as_bytes(), b'%').map_or(value, |p| &value[..p]);
    // What Courier writes for IPv4 clients, parsed without the general IPv6 parser (the same
    // result: a mapped address becomes its IPv4 address).
    if let Some(v4) = without_zone
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("::ffff:"))
        .and_then(|_| parse_ipv4(&without_zone[7..]))
    {
        return Some(IpAddr::V4(v4));
    }
    match without_zone.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Some(IpAddr::V4(v4)),
            None => Some(IpAddr::V6(v6)),
        },
        v4 => Some(v4),
    }
}

/// A dotted-quad IPv4 address, as `str::parse::<Ipv4Addr>` reads it (four decimal octets of
/// one to three digits, no leading zeros, nothing else), in one pass: this runs for every
/// message.
fn parse_ipv4(text: &str) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut done = 0;
    let (mut value, mut digits) = (0u16, 0);
    for &b in text.as_bytes() {
        match b {
            b'0'..=b'9' => {
                // A fourth digit, or a digit after a leading zero.
                if digits == 3 || (digits == 1 && value == 0) {
                    return None;
                }
                value = value * 10 + u16::from(b - b'0');
                digits += 1;
            }
            b'.' if digits > 0 && done < 3 => {
                octets[done] = u8::try_from(value).ok()?;
                done += 1;
                (value, digits) = (0, 0);
            }
            _ => return None,
        }
    }
    if done != 3 || digits == 0 {
        return None;
    }
    octets[3] = u8::try_from(value).ok()?;
    Some(std::net::Ipv4Addr::from(octets))
}

/// The reference's value decoding: strip ASCII whitespace, then UTF-8, else
/// `(malformed utf8):` + quote_plus-style escaping with `@` kept.
pub fn decode_value(raw: &[u8]) -> String {
    let mut out = String::new();
    decode_value_into(raw, &mut out);
    out
}

/// [`decode_value`], appended to `out`.
fn decode_value_into(raw: &[u8], out: &mut String) {
    let raw = &raw[trim_blanks(raw, 0..raw.len())];
    match std::str::from_utf8(raw) {
        Ok(text) => out.push_str(text),
        Err(_) => {
            out.push_str("(malformed utf8):");
            for &b in raw {
                match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' | b'@' => {
                        out.push(b as char)
                    }
                    b' ' => out.push('+'),
                    _ => {
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        out.push('%');
                        out.push(HEX[usize::from(b >> 4)] as char);
                        out.push(HEX[usize::from(b & 15)] as char);
                    }
                }
            }
        }
    }
}

/// Resolve a request path as the reference does: relative paths live under `L/tmp/`.
pub fn resolve_spool_path(localstatedir: &Path, path: &str) -> PathBuf {
    resolve_spool_path_bytes(localstatedir, path.as_bytes())
}

/// [`resolve_spool_path`] for a name as bytes (a request line need not be UTF-8).
pub fn resolve_spool_path_bytes(localstatedir: &Path, path: &[u8]) -> PathBuf {
    let path = OsStr::from_bytes(path);
    if path.as_bytes().starts_with(b"/") {
        PathBuf::from(path)
    } else {
        // One allocation (`join` twice would make an intermediate path).
        let len = localstatedir.as_os_str().len() + "/tmp/".len() + path.len();
        let mut resolved = PathBuf::with_capacity(len);
        resolved.push(localstatedir);
        resolved.push("tmp");
        resolved.push(path);
        resolved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, data).unwrap();
        p
    }

    #[test]
    fn decode_value_rules() {
        assert_eq!(
            decode_value(b"  plain@example.org \r\n"),
            "plain@example.org"
        );
        assert_eq!(decode_value(b"\x0b\x0cx\x0b"), "x");
        assert_eq!(decode_value(b""), "");
        assert_eq!(decode_value("gr\u{fc}n@x".as_bytes()), "gr\u{fc}n@x");
        assert_eq!(
            decode_value(b"t\xEBst-is\xF6-8859@ascension.private.dragonsdawn.net"),
            "(malformed utf8):t%EBst-is%F6-8859@ascension.private.dragonsdawn.net"
        );
        assert_eq!(decode_value(b" \xff@x "), "(malformed utf8):%FF@x");
        assert_eq!(
            decode_value(b"a b_c.d-e~f+g/h%\xfe"),
            "(malformed utf8):a+b_c.d-e~f%2Bg%2Fh%25%FE"
        );
    }

    #[test]
    fn client_ip_parsing() {
        assert_eq!(
            parse_client_ip("::ffff:10.1.10.163"),
            Some(IpAddr::V4(Ipv4Addr::new(10, 1, 10, 163)))
        );
        assert_eq!(
            parse_client_ip("2001:DB8:0:0:0:0:0:1"),
            Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)))
        );
        assert_eq!(
            parse_client_ip("2001:DB8:0:0:0:0:0:1").unwrap().to_string(),
            "2001:db8::1"
        );
        assert_eq!(
            parse_client_ip(" 127.0.0.1 "),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        assert_eq!(parse_client_ip("fe80::1%eth0"), "fe80::1".parse().ok());
        assert_eq!(parse_client_ip("::1").unwrap().to_string(), "::1");
        assert_eq!(parse_client_ip("010.1.1.1"), None);
        assert_eq!(
            parse_client_ip("::FFFF:192.0.2.1%lo"),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        assert_eq!(
            parse_client_ip("::ffff:c000:0201"),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        assert_eq!(parse_client_ip("::ffff:010.1.1.1"), None);
        assert_eq!(parse_client_ip("::ffff:"), None);
        assert_eq!(parse_client_ip("garbage"), None);
        assert_eq!(parse_client_ip(""), None);
    }

    #[test]
    fn ipv4_parser_agrees_with_std() {
        let fixed = [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.",
            "1.2.3.4.5",
            ".1.2.3",
            "01.2.3.4",
            "1.2.3.00",
            "1..2.3",
            "1.2.3.4 ",
            "1000.1.1.1",
            "+1.2.3.4",
            "",
        ];
        for text in fixed {
            assert_eq!(parse_ipv4(text), text.parse().ok(), "{text:?}");
        }
        const ALPHABET: &[u8] = b"0125.9..a";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..50_000 {
            let mut text = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            for _ in 0..(seed % 16) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push(ALPHABET[(seed % ALPHABET.len() as u64) as usize] as char);
            }
            assert_eq!(parse_ipv4(&text), text.parse().ok(), "{text:?}");
        }
    }

    #[test]
    fn a_reloaded_envelope_is_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let big = write(
            dir.path(),
            "big",
            b"sbig@x\nra@x\nR\nNS\nrb@x\nR\nN\nS0 1\nOTCPREMOTEIP=192.0.2.1\nie2e\nMid\n",
        );
        let extra = write(dir.path(), "extra", b"rc@x\nR\nN\n");
        let small = write(dir.path(), "small", b"ssmall@x\nrd@x\nR\nN\n");
        let bad = write(dir.path(), "bad", b"s\xffx\nre@x\nR\nN\n");
        let missing = dir.path().join("missing");
        let sets: Vec<Vec<PathBuf>> = vec![
            vec![big.clone(), extra.clone()],
            vec![small.clone()],
            vec![bad.clone(), big.clone()],
            vec![big.clone(), missing.clone()],
            vec![bad.clone()],
            vec![],
            vec![small.clone(), extra.clone()],
        ];
        let mut reused = Envelope::default();
        for paths in &sets {
            let fresh = Envelope::load(paths).map(|e| format!("{e:?}"));
            let reloaded = reused.reload(paths).map(|()| format!("{reused:?}"));
            match (fresh, reloaded) {
                (Ok(fresh), Ok(reloaded)) => assert_eq!(reloaded, fresh, "{paths:?}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("{paths:?}: {a:?} but reloaded {b:?}"),
            }
        }
    }

    #[test]
    fn getters_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "a",
            b"sone@x\nfdns; a\nOFOO=1\nOTCPREMOTEIP=::ffff:192.0.2.1\nie2e\n",
        );
        let b = write(dir.path(), "b", b"stwo@x\nOTCPREMOTEIP=192.0.2.9\nMid\n");
        let env = Envelope::load(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(env.paths(), [a, b]);
        assert_eq!(env.values(b's'), ["one@x", "two@x"]);
        assert_eq!(env.first(b's'), Some("one@x"));
        assert_eq!(env.sender(), Some("one@x"));
        assert_eq!(env.senders_mta(), Some("dns; a"));
        assert_eq!(env.auth_user(), Some("e2e"));
        assert_eq!(env.message_id(), Some("id"));
        assert_eq!(env.first(b'X'), None);
        assert_eq!(
            env.client_ip(),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
    }

    #[test]
    fn from_bytes_is_load_without_the_reading() {
        let env = Envelope::from_bytes(vec![
            (PathBuf::from("a"), b"sone@x\nrr@x\nR\nN\n".to_vec()),
            (
                PathBuf::from("b"),
                b"OTCPREMOTEIP=192.0.2.9\n\xffbad\n".to_vec(),
            ),
        ]);
        assert_eq!(env.paths(), [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(env.sender(), Some("one@x"));
        assert_eq!(env.recipients(), [Recipient::new("r@x", "", "")]);
        assert_eq!(
            env.client_ip(),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)))
        );
    }

    #[test]
    fn null_sender_and_missing_records() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "a",
            b"s\nOTCPREMOTEIP=not-an-ip\nOTCPREMOTEIP=1.2.3.4\n",
        );
        let env = Envelope::load(&[a]).unwrap();
        assert_eq!(env.sender(), Some(""));
        assert_eq!(env.auth_user(), None);
        // the first TCPREMOTEIP counts; malformed means none
        assert_eq!(env.client_ip(), None);
        let b = write(dir.path(), "b", b"ulocal\n");
        assert_eq!(Envelope::load(&[b]).unwrap().client_ip(), None);
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = Envelope::load(std::slice::from_ref(&missing)).unwrap_err();
        assert_eq!(err.path, missing);
        assert!(err.to_string().contains("missing"));

        let big = dir.path().join("big");
        let f = fs::File::create(&big).unwrap();
        f.set_len(MAX_CONTROL_FILE_BYTES + 1).unwrap();
        assert!(Envelope::load(&[big]).is_err());
    }

    #[test]
    fn recipient_numbering_counts_empty_groups() {
        let dir = tempfile::tempdir().unwrap();
        // group 0 has an empty r; group 1 is b; S1 marks b done, S0 the empty one
        let a = write(
            dir.path(),
            "a",
            b"r\nR\nN\nrb@x\nR\nN\nrc@x\nRrfc822;c@x\nNF\nS1 123 r\nS0 1\n",
        );
        let env = Envelope::load(&[a]).unwrap();
        assert_eq!(env.recipients(), [Recipient::new("c@x", "rfc822;c@x", "F")]);
    }

    #[test]
    fn unknown_and_bad_delivery_indexes_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a", b"ra@x\nR\nN\nS7 1\nFx\nS\nF0\n");
        let env = Envelope::load(&[a]).unwrap();
        // F0 marks a (failure is also completion)
        assert!(env.recipients().is_empty());
        let b = write(dir.path(), "b", b"ra@x\nR\nN\nS7 1\n");
        assert_eq!(
            Envelope::load(&[b]).unwrap().recipients(),
            [Recipient::new("a@x", "", "")]
        );
    }

    #[test]
    fn file_without_final_newline_and_open_group() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a", b"ra@x\nR\nN\nrdangling@x");
        let mut env = Envelope::load(std::slice::from_ref(&a)).unwrap();
        assert_eq!(env.recipients(), [Recipient::new("a@x", "", "")]);
        env.add_recipient(&Recipient::new("new@x", "", "N"))
            .unwrap();
        let text = fs::read(&a).unwrap();
        assert_eq!(text, b"ra@x\nR\nN\nrdangling@x\nrnew@x\nR\nNN\n");
        let expect = [
            Recipient::new("a@x", "", ""),
            Recipient::new("new@x", "", "N"),
        ];
        assert_eq!(env.recipients(), expect);
        // a fresh read sees the same
        assert_eq!(
            Envelope::load(std::slice::from_ref(&a))
                .unwrap()
                .recipients(),
            expect
        );
        // and the new one can be removed with the right index (1)
        assert!(env.remove_recipient_addr("new@x").unwrap());
        let reread = Envelope::load(std::slice::from_ref(&a)).unwrap();
        assert_eq!(reread.recipients(), [Recipient::new("a@x", "", "")]);
        assert_eq!(env.recipients(), reread.recipients());
        assert!(reread.values(b'S').iter().any(|v| v.starts_with("1 ")));
    }

    #[test]
    fn add_goes_to_the_last_file_remove_to_the_holding_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a", b"sx@y\nra@x\nR\nN\nrb@x\nR\nN\n");
        let b = write(dir.path(), "b", b"rc@x\nR\nN\n");
        let paths = [a.clone(), b.clone()];
        let mut env = Envelope::load(&paths).unwrap();
        env.add_recipient(&Recipient::new("d@x", "rfc822;d@x", ""))
            .unwrap();
        assert_eq!(fs::read(&b).unwrap(), b"rc@x\nR\nN\nrd@x\nRrfc822;d@x\nN\n");
        assert!(env.remove_recipient_addr("b@x").unwrap());
        let a_text = String::from_utf8(fs::read(&a).unwrap()).unwrap();
        let tail: Vec<&str> = a_text.lines().skip(7).collect();
        assert_eq!(tail[0], "I1 R 250 Ok - Removed by rustfilter");
        let (s, secs) = tail[1].split_once(' ').unwrap();
        assert_eq!(s, "S1");
        assert!(secs.parse::<u64>().unwrap() > 1_600_000_000);
        assert_eq!(tail.len(), 2);
        // d is index 1 of file b
        assert!(
            env.remove_recipient(&Recipient::new("d@x", "rfc822;d@x", ""))
                .unwrap()
        );
        assert!(
            String::from_utf8(fs::read(&b).unwrap())
                .unwrap()
                .contains("\nI1 R 250")
        );
        assert!(
            !env.remove_recipient(&Recipient::new("d@x", "rfc822;d@x", ""))
                .unwrap()
        );
        assert!(!env.remove_recipient_addr("nobody@x").unwrap());
        let expect = [Recipient::new("a@x", "", ""), Recipient::new("c@x", "", "")];
        assert_eq!(env.recipients(), expect);
        assert_eq!(Envelope::load(&paths).unwrap().recipients(), expect);
    }

    #[test]
    fn remove_matches_all_fields_first_undelivered() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a", b"ra@x\nR\nN\nra@x\nRrfc822;o@x\nN\n");
        let mut env = Envelope::load(std::slice::from_ref(&a)).unwrap();
        assert!(
            !env.remove_recipient(&Recipient::new("a@x", "rfc822;o@x", "N"))
                .unwrap()
        );
        assert!(
            env.remove_recipient(&Recipient::new("a@x", "rfc822;o@x", ""))
                .unwrap()
        );
        assert_eq!(env.recipients(), [Recipient::new("a@x", "", "")]);
        assert!(
            String::from_utf8(fs::read(&a).unwrap())
                .unwrap()
                .contains("I1 R 250")
        );
    }

    #[test]
    fn add_rejects_line_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a", b"ra@x\nR\nN\n");
        let mut env = Envelope::load(std::slice::from_ref(&a)).unwrap();
        let err = env
            .add_recipient(&Recipient::new("x@y\nS0 1", "", ""))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(
            env.add_recipient(&Recipient::new("x@y", "a\rb", ""))
                .is_err()
        );
        assert_eq!(fs::read(&a).unwrap(), b"ra@x\nR\nN\n");
    }

    #[test]
    fn add_without_files_is_an_error() {
        let mut env = Envelope::load(&[]).unwrap();
        assert!(env.add_recipient(&Recipient::new("a@x", "", "")).is_err());
        assert!(env.recipients().is_empty());
        assert_eq!(env.control_data(), ControlData::default());
    }

    #[test]
    fn control_data_first_file_last_wins_flags() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "a",
            b"sa@x\nsb@x\n8\nVyes\nUnone\nt\nra@x\nR\nN\n",
        );
        let b = write(dir.path(), "b", b"sc@x\nw\nie2e\nrb@x\nR\nN\n");
        let env = Envelope::load(&[a, b]).unwrap();
        let d = env.control_data();
        assert_eq!(d.sender, "b@x");
        assert!(d.eight_bit && d.verp);
        assert!(!d.warned && !d.eight_bit_headers && !d.suppress_backscatter);
        assert_eq!(d.security, "none");
        assert_eq!(d.dsn_ret.as_deref(), Some(""));
        assert_eq!(d.envid, None);
        assert_eq!(d.auth_user, None);
        assert_eq!(
            d.recipients,
            [Recipient::new("a@x", "", ""), Recipient::new("b@x", "", "")]
        );
    }

    #[test]
    fn resolve_relative_paths() {
        let l = Path::new("/var/lib/courier");
        assert_eq!(
            resolve_spool_path(l, "sub/D1"),
            PathBuf::from("/var/lib/courier/tmp/sub/D1")
        );
        assert_eq!(resolve_spool_path(l, "/abs/C1"), PathBuf::from("/abs/C1"));
    }
}
