//! The message body (Courier's `D…` file), read only when a module asks for it, and rewritten
//! byte-preservingly (DECISIONS §8): untouched headers and body bytes are kept exactly, line
//! endings follow the file's own; the new content is complete in a temporary file before the
//! spool file is touched; the spool file keeps its inode (copy back, then fsync).

use std::cell::OnceCell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::watch::{find_byte, read_bounded, read_more, regular_file_size, with_path};

/// The largest message body we read into memory.
pub const MAX_MESSAGE_BYTES: u64 = 256 * 1024 * 1024;

/// One header field as it appears in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField<'a> {
    /// The name as written (before the colon).
    pub name: &'a str,
    /// The raw value: everything after the colon up to and including the final line ending,
    /// folding kept.
    pub raw_value: &'a [u8],
}

impl HeaderField<'_> {
    /// The value with leading blanks after the colon and the final CR/LF removed, folding kept
    /// (what the reference's modules compare).
    pub fn value(&self) -> String {
        let mut v = self.raw_value;
        while let [b' ' | b'\t', rest @ ..] = v {
            v = rest;
        }
        if let [rest @ .., b'\n'] = v {
            v = rest;
        }
        if let [rest @ .., b'\r'] = v {
            v = rest;
        }
        String::from_utf8_lossy(v).into_owned()
    }
}

/// Where one header field lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FieldSpan {
    /// Start of the field (its name).
    start: usize,
    /// End of the name (before any blanks and the colon).
    name_end: usize,
    /// Just after the colon.
    value_start: usize,
    /// Just after the field's last line ending (or the end of the file).
    end: usize,
}

/// Whether `b` may appear in a field name: printable ASCII except the colon (RFC 5322 `ftext`).
fn is_ftext(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b':'
}

/// Where the field that starts `line` has its name end and its colon: `(name_len, colon)`.
/// `None` when the line is not a field: the name is empty, or holds a byte outside `ftext`, or
/// is followed (after optional blanks) by anything but the colon. One pass over the name.
fn field_name(line: &[u8]) -> Option<(usize, usize)> {
    let name_len = line.iter().position(|&b| !is_ftext(b))?;
    let colon = name_len
        + line[name_len..]
            .iter()
            .position(|&b| !matches!(b, b' ' | b'\t'))?;
    (name_len > 0 && line[colon] == b':').then_some((name_len, colon))
}

/// The header fields of `data`, in order, found lazily (a module that looks for one name does
/// not pay for a list of them all). The header block ends at the first empty line (LF or
/// CRLF), at a line that is neither a field nor a continuation, or at the end of the file.
struct FieldSpans<'a> {
    data: &'a [u8],
    /// Where the next line starts; `data.len()` once the header block is over.
    pos: usize,
}

impl<'a> FieldSpans<'a> {
    fn new(data: &'a [u8]) -> FieldSpans<'a> {
        // A continuation line before any field ends the block at once.
        let pos = match data.first() {
            Some(b' ' | b'\t') => data.len(),
            _ => 0,
        };
        FieldSpans { data, pos }
    }

    /// Just after the line that starts at `pos` (its `\n`, or the end of the data).
    fn line_end(&self, pos: usize) -> usize {
        find_byte(&self.data[pos..], b'\n').map_or(self.data.len(), |p| pos + p + 1)
    }
}

impl Iterator for FieldSpans<'_> {
    type Item = FieldSpan;

    fn next(&mut self) -> Option<FieldSpan> {
        let data = self.data;
        let start = self.pos;
        // An empty line, or one that is not a field, ends the block (and the iteration).
        let Some((name_len, colon)) = field_name(&data[start..]) else {
            self.pos = data.len();
            return None;
        };
        let mut end = self.line_end(start + colon);
        // Continuation lines belong to the field.
        while matches!(data.get(end), Some(b' ' | b'\t')) {
            end = self.line_end(end);
        }
        self.pos = end;
        Some(FieldSpan {
            start,
            name_end: start + name_len,
            value_start: start + colon + 1,
            end,
        })
    }
}

/// Whether the header block of `data` may hold a field called `name`: only the start of each
/// line is looked at, up to the first empty line. `false` means there is certainly none (the
/// usual answer when a module looks for a field most messages lack, such as `Delivered-To`);
/// `true` is for the field scan to confirm.
fn may_have_field(data: &[u8], name: &[u8]) -> bool {
    let Some(&first) = name.first() else {
        return false;
    };
    // Equal bytes, or letters that differ in case only, are equal with this bit set: a cheap
    // look at each line's first byte (the full comparison decides).
    let first = first | 0x20;
    let mut pos = 0;
    while pos < data.len() {
        let line = &data[pos..];
        if line.starts_with(b"\n") || line.starts_with(b"\r\n") {
            return false;
        }
        // The first letter alone rules out most lines.
        if line[0] | 0x20 == first
            && line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
        {
            return true;
        }
        match find_byte(line, b'\n') {
            Some(p) => pos += p + 1,
            None => return false,
        }
    }
    false
}

/// The header fields of `data`, in order (see [`FieldSpans`]).
fn field_spans(data: &[u8]) -> FieldSpans<'_> {
    FieldSpans::new(data)
}

/// One header field's place in the file (see [`header_layout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawField {
    /// The name as written (before any blanks and the colon).
    pub name: std::ops::Range<usize>,
    /// The whole field: name, colon, value, folding and its final line ending (if any).
    pub whole: std::ops::Range<usize>,
}

/// The header fields of `data` as byte ranges, and where the body starts: just after the
/// empty line that ends the header block, or where the block ended without one. For modules
/// that rebuild a message around its original bytes.
pub fn header_layout(data: &[u8]) -> (Vec<RawField>, usize) {
    let mut end = 0;
    let fields = field_spans(data)
        .map(|s| {
            end = s.end;
            RawField {
                name: s.start..s.name_end,
                whole: s.start..s.end,
            }
        })
        .collect();
    let rest = &data[end..];
    let body_start = if rest.starts_with(b"\r\n") {
        end + 2
    } else if rest.starts_with(b"\n") {
        end + 1
    } else {
        end
    };
    (fields, body_start)
}

/// Allocate `len` bytes of `file` without changing its size, so that writing them cannot fail
/// for want of space. A file system without fallocate(2) is left to the writes.
fn reserve(file: &File, len: u64) -> io::Result<()> {
    let current = file.metadata()?.len();
    if len <= current {
        return Ok(());
    }
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::other("message too large"))?;
    loop {
        // SAFETY: fallocate on an open descriptor; KEEP_SIZE leaves the file's length alone.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP | libc::ENOSYS) => return Ok(()),
            _ => return Err(e),
        }
    }
}

/// Makes temporary file names unique within the process.
static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Create a new file beside `path` (same directory, so the copy back never crosses file
/// systems), exclusively, mode 0600.
fn create_temp_beside(path: &Path) -> io::Result<(PathBuf, File)> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last_error = None;
    for _ in 0..16 {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let temp = dir.join(format!(
            ".{base}.rustfilter.{}.{n}.{nanos}",
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(with_path(&temp, e)),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("cannot create a temporary file")))
}

/// A file this small is read whole even when only its header is wanted: one read either way.
const HEAD_CHUNK: usize = 16 * 1024;
/// A header block longer than this is not looked for on its own: the whole file is read.
const MAX_HEAD_BYTES: usize = 1024 * 1024;

/// Where the header block of `data` ends: just after its empty line (LF or CRLF), if `data`
/// holds one. Searched from `from` (a previous search's end, minus the overlap).
fn blank_line_end(data: &[u8], from: usize) -> Option<usize> {
    if data.starts_with(b"\n") {
        return Some(1);
    }
    if data.starts_with(b"\r\n") {
        return Some(2);
    }
    let mut pos = from.saturating_sub(2);
    while let Some(nl) = find_byte(&data[pos..], b'\n') {
        let after = pos + nl + 1;
        match &data[after..] {
            [b'\n', ..] => return Some(after + 1),
            [b'\r', b'\n', ..] => return Some(after + 2),
            _ => pos = after,
        }
    }
    None
}

/// What [`read_head`] found.
enum Head {
    /// The file up to and including the empty line that ends its header.
    Header(Vec<u8>),
    /// The whole file (it is small, or ended before any empty line).
    Whole(Vec<u8>),
    /// No empty line within [`MAX_HEAD_BYTES`].
    TooLong,
}

/// Read the header block of a spool file without its body (header-only modules cost the same
/// whatever the message's size).
fn read_head(path: &Path) -> io::Result<Head> {
    let file = super::spool::open(path)?;
    let Some(size) = regular_file_size(&file)? else {
        return read_bounded(path, MAX_MESSAGE_BYTES).map(Head::Whole);
    };
    if size <= HEAD_CHUNK as u64 {
        // One read of exactly its size, from the descriptor already open.
        let mut data = Vec::with_capacity(size as usize);
        read_more(&file, &mut data, size as usize)?;
        return Ok(Head::Whole(data));
    }
    let mut buf = Vec::with_capacity(HEAD_CHUNK);
    loop {
        let searched = buf.len();
        let want = (buf.len() + HEAD_CHUNK).min(MAX_HEAD_BYTES);
        let more = want - buf.len();
        let got = read_more(&file, &mut buf, more)?;
        if let Some(end) = blank_line_end(&buf, searched) {
            buf.truncate(end);
            return Ok(Head::Header(buf));
        }
        if got == 0 {
            return Ok(Head::Whole(buf));
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Ok(Head::TooLong);
        }
    }
}

pub struct Message {
    path: PathBuf,
    data: OnceCell<Vec<u8>>,
    /// The header block alone, when it was read without the body.
    head: OnceCell<Vec<u8>>,
    parsed: OnceCell<mail_parser::Message<'static>>,
}

impl Message {
    /// Nothing is read until a module asks.
    pub fn new(path: &Path) -> Message {
        Message {
            path: path.to_path_buf(),
            data: OnceCell::new(),
            head: OnceCell::new(),
            parsed: OnceCell::new(),
        }
    }

    /// Make this the message at `path`, as [`Message::new`] would, reusing the path's memory
    /// (a worker takes a message per request). What was read of the last one is dropped.
    pub fn reset(&mut self, path: &Path) {
        let buf = self.path.as_mut_os_string();
        buf.clear();
        buf.push(path.as_os_str());
        self.forget();
    }

    /// Drop what was read of the file (it is read again if asked for).
    pub fn forget(&mut self) {
        self.data = OnceCell::new();
        self.head = OnceCell::new();
        self.parsed = OnceCell::new();
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file (read once, bounded).
    pub fn bytes(&self) -> io::Result<&[u8]> {
        if let Some(data) = self.data.get() {
            return Ok(data);
        }
        let data =
            read_bounded(&self.path, MAX_MESSAGE_BYTES).map_err(|e| with_path(&self.path, e))?;
        Ok(self.data.get_or_init(|| data))
    }

    /// The file from its start to at least the end of its header block: the whole file when
    /// it has been read, else only the header (read once, bounded).
    fn head(&self) -> io::Result<&[u8]> {
        if let Some(data) = self.data.get() {
            return Ok(data);
        }
        if let Some(head) = self.head.get() {
            return Ok(head);
        }
        match read_head(&self.path).map_err(|e| with_path(&self.path, e))? {
            Head::Header(head) => Ok(self.head.get_or_init(|| head)),
            Head::Whole(data) => Ok(self.data.get_or_init(|| data)),
            Head::TooLong => self.bytes(),
        }
    }

    /// The header fields in order. Header names are matched case-insensitively by callers.
    pub fn headers(&self) -> io::Result<Vec<HeaderField<'_>>> {
        let data = self.head()?;
        Ok(field_spans(data)
            .map(|s| HeaderField {
                // field_spans only accepts ASCII names
                name: std::str::from_utf8(&data[s.start..s.name_end]).unwrap_or_default(),
                raw_value: &data[s.value_start..s.end],
            })
            .collect())
    }

    /// Values (see [`HeaderField::value`]) of every header with this name, case-insensitive.
    /// Nothing is allocated when there is none.
    pub fn header_values(&self, name: &str) -> io::Result<Vec<String>> {
        let data = self.head()?;
        if !may_have_field(data, name.as_bytes()) {
            return Ok(Vec::new());
        }
        Ok(field_spans(data)
            .filter(|s| data[s.start..s.name_end].eq_ignore_ascii_case(name.as_bytes()))
            .map(|s| {
                HeaderField {
                    name,
                    raw_value: &data[s.value_start..s.end],
                }
                .value()
            })
            .collect())
    }

    /// The top-level header fields, parsed once (mail-parser) on first use. Only the header:
    /// a whole parse, kept owned, would copy the message once per nested message/rfc822 part
    /// (and its drop recurses per level), so modules that walk the MIME parts use
    /// [`super::mime`] on [`Message::bytes`] instead.
    pub fn parsed_headers(&self) -> io::Result<&mail_parser::Message<'_>> {
        if let Some(parsed) = self.parsed.get() {
            return Ok(parsed);
        }
        let data = self.head()?;
        let parsed = mail_parser::MessageParser::default()
            .parse_headers(data)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: cannot parse the message", self.path.display()),
                )
            })?;
        Ok(self.parsed.get_or_init(|| parsed.into_owned()))
    }

    /// Remove every header with this name (case-insensitive) and write the file back.
    /// Returns how many were removed; nothing is written when none was present.
    pub fn remove_headers(&mut self, name: &str) -> io::Result<usize> {
        let data = self.bytes()?;
        let doomed: Vec<FieldSpan> = field_spans(data)
            .filter(|s| data[s.start..s.name_end].eq_ignore_ascii_case(name.as_bytes()))
            .collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        let mut new = Vec::with_capacity(data.len());
        let mut pos = 0;
        for span in &doomed {
            new.extend_from_slice(&data[pos..span.start]);
            pos = span.end;
        }
        new.extend_from_slice(&data[pos..]);
        self.replace(new)?;
        Ok(doomed.len())
    }

    /// Replace the file's content with `new` (temp file complete first, inode kept, fsync),
    /// and make later reads see it. A result that does not end with `\n` gets one (the
    /// reference's rule, so Courier's own appends start on a new line).
    pub fn replace(&mut self, mut new: Vec<u8>) -> io::Result<()> {
        if new.last() != Some(&b'\n') {
            new.push(b'\n');
        }
        // Opened first: if the spool file cannot be written, nothing has been touched.
        let spool = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| with_path(&self.path, e))?;

        let (temp_path, mut temp) = create_temp_beside(&self.path)?;
        let staged = temp.write_all(&new).and_then(|()| temp.sync_all());
        drop(temp);
        if let Err(e) = staged {
            let _ = fs::remove_file(&temp_path);
            return Err(with_path(&temp_path, e));
        }

        // Reserve the blocks the spool file grows into before overwriting it: a disk that is
        // full fails here, with the spool file untouched, not halfway through the copy back.
        if let Err(e) = reserve(&spool, new.len() as u64) {
            let _ = fs::remove_file(&temp_path);
            return Err(with_path(&self.path, e));
        }

        // Copy back over the spool file in place: Courier names queue files after the inode.
        let copied = spool
            .write_all_at(&new, 0)
            .and_then(|()| spool.set_len(new.len() as u64))
            .and_then(|()| spool.sync_all());
        if let Err(e) = copied {
            // The spool file may now be incomplete; the temp file holds the full new content.
            self.data = OnceCell::new();
            self.head = OnceCell::new();
            self.parsed = OnceCell::new();
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "{}: rewrite failed ({e}); the complete new content is in {}",
                    self.path.display(),
                    temp_path.display()
                ),
            ));
        }
        if let Err(e) = fs::remove_file(&temp_path) {
            log::warn!("cannot remove {}: {e}", temp_path.display());
        }
        self.parsed = OnceCell::new();
        self.head = OnceCell::new();
        self.data = OnceCell::from(new);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn message_with(data: &[u8]) -> (tempfile::TempDir, Message) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("D12345");
        fs::write(&path, data).unwrap();
        let m = Message::new(&path);
        (dir, m)
    }

    /// The header scan as first written (a list built line by line), kept to check the lazy
    /// one against.
    fn field_spans_by_lines(data: &[u8]) -> Vec<FieldSpan> {
        let mut spans: Vec<FieldSpan> = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let line_end = find_byte(&data[pos..], b'\n').map_or(data.len(), |p| pos + p + 1);
            let line = &data[pos..line_end];
            if line == b"\n" || line == b"\r\n" {
                break;
            }
            if matches!(line[0], b' ' | b'\t') {
                match spans.last_mut() {
                    Some(field) => field.end = line_end,
                    None => break,
                }
            } else {
                let Some(colon) = find_byte(line, b':') else {
                    break;
                };
                let mut name_len = colon;
                while name_len > 0 && matches!(line[name_len - 1], b' ' | b'\t') {
                    name_len -= 1;
                }
                let name = &line[..name_len];
                if name.is_empty() || !name.iter().all(|&b| is_ftext(b)) {
                    break;
                }
                spans.push(FieldSpan {
                    start: pos,
                    name_end: pos + name_len,
                    value_start: pos + colon + 1,
                    end: line_end,
                });
            }
            pos = line_end;
        }
        spans
    }

    #[test]
    fn the_quick_look_for_a_field_never_misses_one() {
        let cases: &[(&[u8], bool)] = &[
            (b"", false),
            (b"Delivered-To: a@b\n", true),
            (b"delivered-to  : a@b\n", true),
            (b"Subject: x\nDELIVERED-TO:a\n\nbody", true),
            (b"Subject: x\n\nDelivered-To: a\n", false),
            (b"Subject: x\r\n\r\nDelivered-To: a\n", false),
            (b"Subject: x\n Delivered-To: a\n", false),
            (b"Delivered-To", false),
            (b"Delivered-Toy: a\n", true),
        ];
        for (data, want) in cases {
            assert_eq!(
                may_have_field(data, b"delivered-to"),
                *want,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        // Wherever the scan finds the field, the quick look says it may be there.
        const ALPHABET: &[u8] = b"Xx: \t\r\n\n\n";
        let mut seed = 0x1234_5678_9abc_def1u64;
        for _ in 0..20_000 {
            let mut data = Vec::new();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                if seed.is_multiple_of(3) {
                    data.extend_from_slice(b"x-y");
                }
                for _ in 0..(seed % 5) {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    data.push(ALPHABET[(seed % ALPHABET.len() as u64) as usize]);
                }
            }
            let present =
                field_spans(&data).any(|s| data[s.start..s.name_end].eq_ignore_ascii_case(b"X-Y"));
            assert!(!present || may_have_field(&data, b"X-Y"), "{data:?}");
        }
    }

    #[test]
    fn a_reset_message_reads_its_new_file() {
        let (dir, mut m) = message_with(b"Subject: one\n\nbody one\n");
        assert_eq!(m.header_values("Subject").unwrap(), ["one"]);
        let other = dir.path().join("D67890");
        fs::write(&other, b"Subject: two\n\nbody two\n").unwrap();
        m.reset(&other);
        assert_eq!(m.path(), other);
        assert_eq!(m.header_values("Subject").unwrap(), ["two"]);
        assert_eq!(m.bytes().unwrap(), b"Subject: two\n\nbody two\n");
        m.forget();
        fs::write(&other, b"Subject: three\n\n").unwrap();
        assert_eq!(m.header_values("Subject").unwrap(), ["three"]);
    }

    #[test]
    fn lazy_field_scan_matches_the_line_by_line_one() {
        let fixed: &[&[u8]] = &[
            b"",
            b"\n",
            b"\r\n",
            b" x: y\n",
            b"A: b\n c\n\td\nE : f\r\n\r\nbody",
            b"A:b",
            b"A",
            b"A  ",
            b"A b: c\n",
            b":x\n",
            b"A: b\n \r\nC: d\n",
            b"A\t \t: b\nB\xc3\xa9: c\n",
            b"A: b\nno colon here\nC: d\n",
            b"A: b\n\nC: d\n",
        ];
        for data in fixed {
            assert_eq!(
                field_spans(data).collect::<Vec<_>>(),
                field_spans_by_lines(data),
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        // Random headers over the bytes that matter to the scan.
        const ALPHABET: &[u8] = b"Ab: \t\r\n\n\n:\x7f\x80~";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut data = Vec::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                data.push(ALPHABET[(seed % ALPHABET.len() as u64) as usize]);
            }
            assert_eq!(
                field_spans(&data).collect::<Vec<_>>(),
                field_spans_by_lines(&data),
                "{data:?}"
            );
        }
    }

    #[test]
    fn blank_line_end_finds_lf_and_crlf_ends() {
        assert_eq!(blank_line_end(b"\nbody", 0), Some(1));
        assert_eq!(blank_line_end(b"\r\nbody", 0), Some(2));
        assert_eq!(blank_line_end(b"A: b\n\nbody", 0), Some(6));
        assert_eq!(blank_line_end(b"A: b\r\n\r\nbody", 0), Some(8));
        assert_eq!(blank_line_end(b"A: b\nC: d\n", 0), None);
        // a search that resumes just after a chunk ending inside the blank line
        assert_eq!(blank_line_end(b"A: b\r\n\r\nx", 7), Some(8));
    }

    #[test]
    fn headers_of_a_large_message_are_read_without_its_body() {
        for eol in ["\n", "\r\n"] {
            let mut data =
                format!("Subject: big{eol}Delivered-To: a@b.example{eol}{eol}").into_bytes();
            data.extend(std::iter::repeat_n(b'x', 5 * HEAD_CHUNK));
            let (_d, m) = message_with(&data);
            assert_eq!(m.header_values("delivered-to").unwrap(), ["a@b.example"]);
            assert_eq!(m.headers().unwrap().len(), 2);
            assert_eq!(m.parsed_headers().unwrap().subject(), Some("big"));
            assert!(m.data.get().is_none(), "the body was read");
            // the whole file is still there for modules that want it
            assert_eq!(m.bytes().unwrap(), &data[..]);
        }
    }

    #[test]
    fn a_header_longer_than_a_chunk_and_one_without_an_end() {
        // the header block spans several chunks
        let mut data = Vec::new();
        for i in 0..3000 {
            data.extend_from_slice(format!("X-Filler-{i}: {}\n", "y".repeat(20)).as_bytes());
        }
        data.extend_from_slice(b"\nbody\n");
        let (_d, m) = message_with(&data);
        assert_eq!(m.headers().unwrap().len(), 3000);
        assert!(m.data.get().is_none());

        // no empty line at all: the whole file is the header
        let data = "A: b\n".repeat(10_000).into_bytes();
        let (_d, m) = message_with(&data);
        assert_eq!(m.headers().unwrap().len(), 10_000);
        assert!(m.data.get().is_some());

        // an empty line only after MAX_HEAD_BYTES: read whole, same answer
        let mut data = "A: b\n".repeat(MAX_HEAD_BYTES / 5 + 10).into_bytes();
        data.extend_from_slice(b"\nbody\n");
        let (_d, m) = message_with(&data);
        assert_eq!(m.headers().unwrap().len(), MAX_HEAD_BYTES / 5 + 10);
    }

    #[test]
    fn after_a_rewrite_the_header_is_read_again() {
        let mut data = b"Received: x\nSubject: s\n\n".to_vec();
        data.extend(std::iter::repeat_n(b'z', 2 * HEAD_CHUNK));
        let (_d, mut m) = message_with(&data);
        assert_eq!(m.header_values("received").unwrap().len(), 1);
        assert_eq!(m.remove_headers("Received").unwrap(), 1);
        assert!(m.header_values("received").unwrap().is_empty());
        assert_eq!(m.header_values("subject").unwrap(), ["s"]);
    }

    fn names(m: &Message) -> Vec<String> {
        m.headers()
            .unwrap()
            .iter()
            .map(|h| h.name.to_string())
            .collect()
    }

    #[test]
    fn header_block_lf_and_crlf() {
        let (_d, m) = message_with(b"A: 1\nB:\t two\n  folded\nC:3\n\nD: body\n");
        assert_eq!(names(&m), ["A", "B", "C"]);
        let h = m.headers().unwrap();
        assert_eq!(h[1].raw_value, b"\t two\n  folded\n");
        assert_eq!(h[1].value(), "two\n  folded");
        assert_eq!(h[2].value(), "3");

        let (_d, m) = message_with(b"A: 1\r\nB: 2\r\n\tx\r\n\r\nC: body\r\n");
        assert_eq!(names(&m), ["A", "B"]);
        assert_eq!(m.headers().unwrap()[1].value(), "2\r\n\tx");
        assert_eq!(m.headers().unwrap()[0].raw_value, b" 1\r\n");
    }

    #[test]
    fn last_field_without_a_line_ending() {
        let (_d, m) = message_with(b"A: 1\nDelivered-To: x@y");
        assert_eq!(names(&m), ["A", "Delivered-To"]);
        assert_eq!(m.header_values("delivered-to").unwrap(), ["x@y"]);
    }

    #[test]
    fn header_block_ends_at_a_line_without_colon() {
        let (_d, m) = message_with(b"A: 1\nnot a header\nB: 2\n");
        assert_eq!(names(&m), ["A"]);
        let (_d, m) = message_with(b" leading continuation\nA: 1\n");
        assert!(m.headers().unwrap().is_empty());
        let (_d, m) = message_with(b"\nA: 1\n");
        assert!(m.headers().unwrap().is_empty());
        let (_d, m) = message_with(b"");
        assert!(m.headers().unwrap().is_empty());
        // no empty line, no final newline: everything is header
        let (_d, m) = message_with(b"A: 1\nB: 2");
        assert_eq!(names(&m), ["A", "B"]);
        assert_eq!(m.headers().unwrap()[1].value(), "2");
        // obsolete blank before the colon
        let (_d, m) = message_with(b"Subject : hi\n\n");
        assert_eq!(names(&m), ["Subject"]);
        assert_eq!(m.header_values("subject").unwrap(), ["hi"]);
    }

    #[test]
    fn header_layout_ranges_and_body_start() {
        let data = b"A: 1\r\nB : 2\r\n\tx\r\n\r\nbody\r\n";
        let (fields, body) = header_layout(data);
        assert_eq!(fields.len(), 2);
        assert_eq!(&data[fields[1].name.clone()], b"B");
        assert_eq!(&data[fields[1].whole.clone()], b"B : 2\r\n\tx\r\n");
        assert_eq!(&data[body..], b"body\r\n");
        // no empty line: the body starts where the block ended
        let data = b"A: 1\nnot a header\n";
        let (fields, body) = header_layout(data);
        assert_eq!(fields.len(), 1);
        assert_eq!(&data[body..], b"not a header\n");
        assert_eq!(header_layout(b"").1, 0);
        assert_eq!(header_layout(b"\nbody").1, 1);
    }

    #[test]
    fn header_values_case_insensitive() {
        let (_d, m) = message_with(b"Received: a\nreceived: b\nX: c\n\nReceived: body\n");
        assert_eq!(m.header_values("RECEIVED").unwrap(), ["a", "b"]);
        assert!(m.header_values("Missing").unwrap().is_empty());
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let m = Message::new(&dir.path().join("Dnope"));
        let err = m.bytes().unwrap_err();
        assert!(err.to_string().contains("Dnope"));
        assert!(m.headers().is_err());
        assert!(m.parsed_headers().is_err());
    }

    #[test]
    fn reads_once() {
        let (_d, m) = message_with(b"A: 1\n\nbody\n");
        assert_eq!(m.bytes().unwrap(), b"A: 1\n\nbody\n");
        fs::write(m.path(), b"changed").unwrap();
        assert_eq!(m.bytes().unwrap(), b"A: 1\n\nbody\n");
    }

    #[test]
    fn parsed_once() {
        let (_d, m) = message_with(b"Subject: hello\nContent-Type: text/plain\n\nbody\n");
        let p = m.parsed_headers().unwrap();
        assert_eq!(p.subject(), Some("hello"));
        let again = m.parsed_headers().unwrap();
        assert!(std::ptr::eq(p, again));
    }

    #[test]
    fn remove_headers_preserves_everything_else() {
        let data = b"Received: one\r\n\tfolded\r\nX: y\r\nreceived: two\r\nSubject: s\r\n\r\nReceived: in body\r\n";
        let (_d, mut m) = message_with(data);
        let ino = fs::metadata(m.path()).unwrap().ino();
        assert_eq!(m.remove_headers("RECEIVED").unwrap(), 2);
        let expect = b"X: y\r\nSubject: s\r\n\r\nReceived: in body\r\n";
        assert_eq!(fs::read(m.path()).unwrap(), expect);
        assert_eq!(m.bytes().unwrap(), expect);
        assert_eq!(fs::metadata(m.path()).unwrap().ino(), ino);
        assert_eq!(m.remove_headers("Received").unwrap(), 0);
    }

    #[test]
    fn remove_nothing_writes_nothing() {
        let (_d, mut m) = message_with(b"A: 1\n\nno newline");
        let before = fs::metadata(m.path()).unwrap();
        assert_eq!(m.remove_headers("B").unwrap(), 0);
        assert_eq!(fs::read(m.path()).unwrap(), b"A: 1\n\nno newline");
        assert_eq!(
            fs::metadata(m.path()).unwrap().mtime_nsec(),
            before.mtime_nsec()
        );
    }

    #[test]
    fn replace_keeps_inode_adds_newline_and_cleans_up() {
        let (dir, mut m) =
            message_with(b"Subject: old\n\nold body that is longer than the new one\n");
        let ino = fs::metadata(m.path()).unwrap().ino();
        assert_eq!(m.parsed_headers().unwrap().subject(), Some("old"));
        m.replace(b"Subject: x\n\nno newline at end".to_vec())
            .unwrap();
        assert_eq!(
            fs::read(m.path()).unwrap(),
            b"Subject: x\n\nno newline at end\n"
        );
        assert_eq!(fs::metadata(m.path()).unwrap().ino(), ino);
        assert_eq!(m.bytes().unwrap(), b"Subject: x\n\nno newline at end\n");
        assert_eq!(m.parsed_headers().unwrap().subject(), Some("x"));
        assert_eq!(m.header_values("subject").unwrap(), ["x"]);
        // no temp file left behind
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1);

        m.replace(Vec::new()).unwrap();
        assert_eq!(fs::read(m.path()).unwrap(), b"\n");
    }

    #[test]
    fn replace_fails_cleanly_when_the_spool_file_is_gone() {
        let (dir, mut m) = message_with(b"A: 1\n\n");
        fs::remove_file(m.path()).unwrap();
        assert!(m.replace(b"B: 2\n\n".to_vec()).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn replace_leaves_the_spool_file_alone_when_no_temp_file_can_be_made() {
        // A 250-byte file name is valid, but the temp name beside it is too long (even for
        // root), so staging fails before the spool file is touched.
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("D".repeat(250));
        fs::write(&spool, b"A: 1\n\n").unwrap();
        let mut m = Message::new(&spool);
        assert!(m.replace(b"B: 2\n\n".to_vec()).is_err());
        assert_eq!(fs::read(&spool).unwrap(), b"A: 1\n\n");
        assert_eq!(m.bytes().unwrap(), b"A: 1\n\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temp_names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("D1");
        let (a, _fa) = create_temp_beside(&p).unwrap();
        let (b, _fb) = create_temp_beside(&p).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(dir.path()));
        let mode = fs::metadata(&a).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
