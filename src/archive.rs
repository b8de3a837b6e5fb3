//! Member names of archives (ZIP, gzip, tar), for the `attachments` module. Hand-written and
//! bounded: nested archives are opened to [`Limits::max_depth`], every decompression is capped
//! per member and by a total budget, and the number of entries is capped, so a zip bomb ends
//! quickly in bounded memory. Nothing is written to disk.
//!
//! When a limit is hit we stop descending (or stop listing) and say so in
//! [`Listing::limit_hit`]; the names seen so far are still returned and checked. Data that is
//! not an archive, or a corrupt one, gives no names and a note in [`Listing::notes`] (the
//! reference treats libarchive's format errors as "no hit").

use std::collections::HashSet;

use miniz_oxide::inflate::{TINFLStatus, decompress_to_vec_with_limit};

/// Bounds for one listing (one MIME part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How many archive levels are opened: 1 = only the part itself, 3 = the part, archives in
    /// it, and archives in those.
    pub max_depth: usize,
    /// The most bytes one nested member may decompress to before we give up on it.
    pub max_member_bytes: usize,
    /// The most bytes decompressed in all, over every level.
    pub max_total_bytes: usize,
    /// The most entries listed in all, over every level.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 3,
            max_member_bytes: 16 * 1024 * 1024,
            max_total_bytes: 64 * 1024 * 1024,
            max_entries: 10_000,
        }
    }
}

/// What [`list`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Entry names at every level, in the order met (an archive's entries, then those of the
    /// archives nested in it).
    pub names: Vec<String>,
    /// The first limit that stopped the listing early, if any (for an info log line).
    pub limit_hit: Option<String>,
    /// Why some data was not read as an archive (not an archive, corrupt) — for debug logs.
    pub notes: Vec<String>,
}

/// How many bytes we inflate to look at the start of a compressed member.
const SNIFF_BYTES: usize = 512;

/// List the entry names of the archive in `data` (and of archives nested in it, bounded).
/// Never fails: not an archive means no names.
pub fn list(data: &[u8], limits: &Limits) -> Listing {
    let mut walker = Walker {
        limits: *limits,
        listing: Listing::default(),
        inflated: 0,
    };
    if !walker.archive(data, 1) {
        walker.note("not an archive".to_string());
    }
    walker.listing
}

struct Walker {
    limits: Limits,
    listing: Listing,
    /// Bytes decompressed so far (against `max_total_bytes`).
    inflated: usize,
}

/// The kinds we open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Zip,
    Gzip,
    Tar,
}

/// What the first bytes (or the end, for ZIP) say `data` is.
fn sniff(data: &[u8]) -> Option<Kind> {
    if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        return Some(Kind::Zip);
    }
    if data.starts_with(&[0x1f, 0x8b]) {
        return Some(Kind::Gzip);
    }
    if data.len() >= 512 && &data[257..262] == b"ustar" {
        return Some(Kind::Tar);
    }
    // A ZIP with something in front (a self-extractor): only a valid end record counts.
    if find_eocd(data).is_some() {
        return Some(Kind::Zip);
    }
    None
}

/// Whether the start of some data looks like an archive we open (no end-of-file check).
fn starts_like_archive(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04")
        || head.starts_with(b"PK\x05\x06")
        || head.starts_with(&[0x1f, 0x8b])
        || head.len() >= 262 && &head[257..262] == b"ustar"
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(at..at + 8)?.try_into().ok()?))
}

/// An entry name as text: UTF-8 when it is, else byte-wise Latin-1 (ZIP's CP437 and tar's
/// unspecified encodings agree with it on ASCII, which is what extensions are made of).
fn name_text(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_string(),
        Err(_) => raw.iter().map(|&b| b as char).collect(),
    }
}

/// The ZIP central directory as the end record describes it.
#[derive(Debug, Clone, Copy)]
struct Eocd {
    /// Where the central directory really starts in `data`.
    cd_start: usize,
    cd_size: usize,
    entries: u64,
    /// What to add to recorded offsets (data prepended to the archive).
    shift: i64,
}

/// Find and check the end-of-central-directory record (and its ZIP64 form).
fn find_eocd(data: &[u8]) -> Option<Eocd> {
    const EOCD_LEN: usize = 22;
    if data.len() < EOCD_LEN {
        return None;
    }
    // The record is followed by a comment of at most 65535 bytes.
    let lowest = data.len().saturating_sub(EOCD_LEN + 0xffff);
    let mut pos = data.len() - EOCD_LEN;
    loop {
        if &data[pos..pos + 4] == b"PK\x05\x06"
            && let Some(eocd) = check_eocd(data, pos)
        {
            return Some(eocd);
        }
        if pos == lowest {
            return None;
        }
        pos -= 1;
    }
}

fn check_eocd(data: &[u8], pos: usize) -> Option<Eocd> {
    let mut entries = u64::from(u16_at(data, pos + 10)?);
    let mut cd_size = u64::from(u32_at(data, pos + 12)?);
    let mut cd_offset = u64::from(u32_at(data, pos + 16)?);
    let mut cd_end = pos;
    if (entries == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff)
        && pos >= 20
        && &data[pos - 20..pos - 16] == b"PK\x06\x07"
    {
        // ZIP64: the locator before the record points at the ZIP64 end record.
        let rec = usize::try_from(u64_at(data, pos - 12)?).ok()?;
        let found = if data.get(rec..rec + 4) == Some(b"PK\x06\x06") {
            rec
        } else {
            // Prepended data shifts the recorded offset; the ZIP64 record has a fixed size
            // when it carries no extensible data.
            pos.checked_sub(20 + 56)?
        };
        if data.get(found..found + 4) != Some(b"PK\x06\x06") {
            return None;
        }
        entries = u64_at(data, found + 32)?;
        cd_size = u64_at(data, found + 40)?;
        cd_offset = u64_at(data, found + 48)?;
        cd_end = found;
    }
    let cd_size = usize::try_from(cd_size).ok()?;
    let cd_start = cd_end.checked_sub(cd_size)?;
    if cd_size > 0 && data.get(cd_start..cd_start + 4) != Some(b"PK\x01\x02") {
        return None;
    }
    let shift = i64::try_from(cd_start).ok()? - i64::try_from(cd_offset).ok()?;
    Some(Eocd {
        cd_start,
        cd_size,
        entries,
        shift,
    })
}

/// One ZIP member as its central directory entry records it.
struct ZipMember {
    name: String,
    flags: u16,
    method: u16,
    compressed: u64,
    local_offset: u64,
}

/// ZIP64 extra field: the 64-bit values replace those recorded as 0xffffffff, in this order.
fn zip64_extra(extra: &[u8], usize_: &mut u64, csize: &mut u64, offset: &mut u64) {
    let mut at = 0;
    while let (Some(id), Some(len)) = (u16_at(extra, at), u16_at(extra, at + 2)) {
        let body_start = at + 4;
        let body_end = body_start + usize::from(len);
        let Some(body) = extra.get(body_start..body_end) else {
            return;
        };
        if id == 0x0001 {
            let mut p = 0;
            for field in [usize_, csize, offset] {
                if *field == 0xffff_ffff {
                    match u64_at(body, p) {
                        Some(v) => *field = v,
                        None => return,
                    }
                    p += 8;
                }
            }
            return;
        }
        at = body_end;
    }
}

impl Walker {
    fn note(&mut self, text: String) {
        if self.listing.notes.len() < 32 {
            self.listing.notes.push(text);
        }
    }

    fn hit_limit(&mut self, text: String) {
        if self.listing.limit_hit.is_none() {
            self.listing.limit_hit = Some(text);
        }
    }

    /// Record one name; false once the entry limit is reached (stop listing).
    fn push_name(&mut self, name: String) -> bool {
        if self.listing.names.len() >= self.limits.max_entries {
            let max = self.limits.max_entries;
            self.hit_limit(format!("more than {max} archive entries"));
            return false;
        }
        self.listing.names.push(name);
        true
    }

    /// List `data` if it is an archive we know, at nesting `depth` (1 = the part itself).
    /// Returns whether it was one.
    fn archive(&mut self, data: &[u8], depth: usize) -> bool {
        match sniff(data) {
            Some(Kind::Zip) => self.zip(data, depth),
            Some(Kind::Gzip) => self.gzip(data, depth),
            Some(Kind::Tar) => self.tar(data, depth),
            None => return false,
        }
        true
    }

    /// Look inside a member's content for a nested archive, if depth allows.
    fn nested(&mut self, content: &[u8], depth: usize, name: &str) {
        if self.listing.names.len() >= self.limits.max_entries {
            return; // nothing more would be listed
        }
        if !starts_like_archive(content) && find_eocd(content).is_none() {
            return;
        }
        if depth >= self.limits.max_depth {
            let max = self.limits.max_depth;
            self.hit_limit(format!(
                "archive nesting deeper than {max} levels (at {name:?})"
            ));
            return;
        }
        self.archive(content, depth + 1);
    }

    /// Inflate raw deflate data up to `cap` bytes (charged to the total budget). `Ok(None)`
    /// when it does not fit, `Err` when it is corrupt.
    fn inflate(&mut self, input: &[u8], cap: usize) -> Result<Option<Vec<u8>>, String> {
        let budget = self.limits.max_total_bytes.saturating_sub(self.inflated);
        let cap = cap.min(budget);
        match decompress_to_vec_with_limit(input, cap) {
            Ok(out) => {
                self.inflated += out.len();
                Ok(Some(out))
            }
            Err(e) if e.status == TINFLStatus::HasMoreOutput => {
                self.inflated += e.output.len();
                Ok(None)
            }
            Err(e) => {
                self.inflated += e.output.len();
                Err(e.to_string())
            }
        }
    }

    /// Inflate a member that might hold an archive: first its start, then (if that looks like
    /// an archive and depth allows) all of it within the per-member cap and the total budget.
    fn inflate_member(&mut self, input: &[u8], depth: usize, name: &str) -> Option<Vec<u8>> {
        let head = match decompress_to_vec_with_limit(input, SNIFF_BYTES) {
            Ok(all) => {
                self.inflated += all.len();
                return Some(all);
            }
            Err(e) if e.status == TINFLStatus::HasMoreOutput => {
                self.inflated += e.output.len();
                e.output
            }
            Err(e) => {
                self.note(format!("{name:?}: {e}"));
                return None;
            }
        };
        if !starts_like_archive(&head) || depth >= self.limits.max_depth {
            // Not an archive, or one too deep to open: the start is enough for `nested` to
            // tell (and to report the depth limit).
            return Some(head);
        }
        let cap = self.limits.max_member_bytes;
        match self.inflate(input, cap) {
            Ok(Some(all)) => Some(all),
            Ok(None) => {
                if self.inflated >= self.limits.max_total_bytes {
                    let max = self.limits.max_total_bytes;
                    self.hit_limit(format!("more than {max} bytes decompressed in all"));
                } else {
                    self.hit_limit(format!(
                        "nested archive {name:?} decompresses to more than {cap} bytes"
                    ));
                }
                None
            }
            Err(e) => {
                self.note(format!("{name:?}: {e}"));
                None
            }
        }
    }

    fn zip(&mut self, data: &[u8], depth: usize) {
        let Some(eocd) = find_eocd(data) else {
            self.note("ZIP without a valid central directory; reading local headers".into());
            self.zip_local_headers(data, depth, &HashSet::new());
            return;
        };
        let Some(cd) = data.get(eocd.cd_start..eocd.cd_start + eocd.cd_size) else {
            self.note("ZIP central directory out of bounds".into());
            return;
        };
        if eocd.entries != 0xffff && eocd.entries > 0 && eocd.cd_size == 0 {
            self.note("ZIP end record counts entries but has no central directory".into());
        }
        let mut members = Vec::new();
        let mut at = 0;
        // The directory's bytes decide, not the recorded count (which could hide entries).
        while cd.get(at..at + 4) == Some(b"PK\x01\x02") {
            let (Some(flags), Some(method), Some(csize), Some(usize_)) = (
                u16_at(cd, at + 8),
                u16_at(cd, at + 10),
                u32_at(cd, at + 20),
                u32_at(cd, at + 24),
            ) else {
                break;
            };
            let (Some(name_len), Some(extra_len), Some(comment_len), Some(offset)) = (
                u16_at(cd, at + 28),
                u16_at(cd, at + 30),
                u16_at(cd, at + 32),
                u32_at(cd, at + 42),
            ) else {
                break;
            };
            let name_start = at + 46;
            let extra_start = name_start + usize::from(name_len);
            let extra_end = extra_start + usize::from(extra_len);
            let (Some(raw_name), Some(extra)) = (
                cd.get(name_start..extra_start),
                cd.get(extra_start..extra_end),
            ) else {
                self.note("ZIP central directory entry cut off".into());
                break;
            };
            let (mut usize_, mut csize, mut offset) =
                (u64::from(usize_), u64::from(csize), u64::from(offset));
            zip64_extra(extra, &mut usize_, &mut csize, &mut offset);
            let name = name_text(raw_name);
            if !self.push_name(name.clone()) {
                break;
            }
            members.push(ZipMember {
                name,
                flags,
                method,
                compressed: csize,
                local_offset: offset,
            });
            at = extra_end + usize::from(comment_len);
        }
        let listed: HashSet<u64> = members.iter().map(|m| m.local_offset).collect();
        for m in &members {
            self.zip_member(data, m, eocd.shift, depth);
        }
        // Entries with a local header but no directory entry are invisible to most tools
        // but not to streaming extractors: list them too.
        if self.listing.limit_hit.is_none() {
            let start = usize::try_from(eocd.shift.max(0)).unwrap_or(0);
            if let Some(rest) = data.get(start..) {
                self.zip_local_headers(rest, depth, &listed);
            }
        }
    }

    /// Open one member (by its local header) to look for a nested archive.
    fn zip_member(&mut self, data: &[u8], m: &ZipMember, shift: i64, depth: usize) {
        if m.name.ends_with('/') || m.flags & 1 != 0 {
            return; // a directory, or encrypted: nothing we can read
        }
        let Some(lh) = i64::try_from(m.local_offset)
            .ok()
            .and_then(|o| o.checked_add(shift))
            .and_then(|o| usize::try_from(o).ok())
        else {
            return;
        };
        if data.get(lh..lh + 4) != Some(b"PK\x03\x04") {
            self.note(format!("{:?}: no local header", m.name));
            return;
        }
        let (Some(n), Some(e)) = (u16_at(data, lh + 26), u16_at(data, lh + 28)) else {
            return;
        };
        let start = lh + 30 + usize::from(n) + usize::from(e);
        let end = usize::try_from(m.compressed)
            .ok()
            .and_then(|c| start.checked_add(c))
            .unwrap_or(usize::MAX)
            .min(data.len());
        let Some(body) = data.get(start..end) else {
            return;
        };
        self.member_content(body, m.method, depth, &m.name);
    }

    fn member_content(&mut self, body: &[u8], method: u16, depth: usize, name: &str) {
        match method {
            0 => self.nested(body, depth, name),
            8 => {
                if let Some(content) = self.inflate_member(body, depth, name) {
                    self.nested(&content, depth, name);
                }
            }
            other => self.note(format!(
                "{name:?}: compression method {other} not supported"
            )),
        }
    }

    /// A ZIP whose central directory is missing (truncated): walk the local headers from the
    /// start while their sizes are known.
    /// Headers at an offset in `known` were listed from the central directory already.
    fn zip_local_headers(&mut self, data: &[u8], depth: usize, known: &HashSet<u64>) {
        let mut at = 0;
        while data.get(at..at + 4) == Some(b"PK\x03\x04") {
            let is_known = known.contains(&(at as u64));
            let (Some(flags), Some(method), Some(csize), Some(n), Some(e)) = (
                u16_at(data, at + 6),
                u16_at(data, at + 8),
                u32_at(data, at + 18),
                u16_at(data, at + 26),
                u16_at(data, at + 28),
            ) else {
                return;
            };
            let name_start = at + 30;
            let extra_start = name_start + usize::from(n);
            let start = extra_start + usize::from(e);
            let (Some(raw_name), Some(extra)) = (
                data.get(name_start..extra_start),
                data.get(extra_start..start),
            ) else {
                return;
            };
            let name = name_text(raw_name);
            if !is_known && !self.push_name(name.clone()) {
                return;
            }
            let (mut usize_, mut csize, mut offset) = (0, u64::from(csize), 0);
            zip64_extra(extra, &mut usize_, &mut csize, &mut offset);
            if flags & 8 != 0 && csize == 0 {
                // Sizes follow the data (a data descriptor): the next header cannot be found
                // without decompressing; stop here.
                return;
            }
            let Some(end) = usize::try_from(csize)
                .ok()
                .and_then(|c| start.checked_add(c))
            else {
                return;
            };
            if !is_known && flags & 1 == 0 && !name.ends_with('/') {
                let body = &data[start.min(data.len())..end.min(data.len())];
                self.member_content(body, method, depth, &name);
            }
            at = end;
        }
    }

    /// gzip: the original file name (if recorded) is an entry; the content is looked at as a
    /// nested archive (a .tar.gz is a tar one level down).
    fn gzip(&mut self, data: &[u8], depth: usize) {
        let Some(&flags) = data.get(3) else {
            self.note("gzip header cut off".into());
            return;
        };
        if data.get(2) != Some(&8) {
            self.note("gzip with an unknown method".into());
            return;
        }
        let mut at = 10;
        if flags & 0x04 != 0 {
            let Some(xlen) = u16_at(data, at) else { return };
            at += 2 + usize::from(xlen);
        }
        if flags & 0x08 != 0 {
            let Some(rest) = data.get(at..) else { return };
            let Some(nul) = rest.iter().position(|&b| b == 0) else {
                return;
            };
            let name = name_text(&rest[..nul]);
            at += nul + 1;
            if !self.push_name(name) {
                return;
            }
        }
        if flags & 0x10 != 0 {
            let Some(rest) = data.get(at..) else { return };
            let Some(nul) = rest.iter().position(|&b| b == 0) else {
                return;
            };
            at += nul + 1;
        }
        if flags & 0x02 != 0 {
            at += 2;
        }
        let Some(body) = data.get(at..) else { return };
        // The decompressed stream is the next level (a .tar.gz's tar is at depth + 1).
        if let Some(content) = self.inflate_member(body, depth, "gzip content") {
            self.nested(&content, depth, "gzip content");
        }
    }

    /// ustar / GNU tar: names (with the ustar prefix, GNU long names, pax `path`), and regular
    /// files looked at as nested archives.
    fn tar(&mut self, data: &[u8], depth: usize) {
        let mut at = 0;
        let mut long_name: Option<String> = None;
        while let Some(h) = data.get(at..at + 512) {
            if h.iter().all(|&b| b == 0) {
                return; // end of archive
            }
            if !tar_checksum_ok(h) {
                self.note("tar header checksum mismatch".into());
                return;
            }
            let Some(size) = tar_number(&h[124..136]) else {
                self.note("tar header with a bad size".into());
                return;
            };
            let body_start = at + 512;
            let Some(body_end) = usize::try_from(size)
                .ok()
                .and_then(|s| body_start.checked_add(s))
            else {
                return;
            };
            let body = &data[body_start.min(data.len())..body_end.min(data.len())];
            let kind = h[156];
            match kind {
                b'L' => long_name = Some(name_text(until_nul(body))),
                b'x' => long_name = pax_path(body).or(long_name),
                b'g' | b'K' => {}
                _ => {
                    let name = long_name.take().unwrap_or_else(|| {
                        let base = until_nul(&h[0..100]);
                        let prefix = until_nul(&h[345..500]);
                        if &h[257..262] == b"ustar" && !prefix.is_empty() {
                            format!("{}/{}", name_text(prefix), name_text(base))
                        } else {
                            name_text(base)
                        }
                    });
                    if !self.push_name(name.clone()) {
                        return;
                    }
                    if kind == b'0' || kind == 0 || kind == b'7' {
                        self.nested(body, depth, &name);
                    }
                }
            }
            // Bodies are padded to whole blocks.
            let Some(next) = body_end.checked_add(511).map(|e| e / 512 * 512) else {
                return;
            };
            at = next;
        }
    }
}

fn until_nul(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

/// A tar numeric field: octal text, or GNU base-256 (high bit set).
fn tar_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text = std::str::from_utf8(until_nul(field)).ok()?.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

fn tar_checksum_ok(h: &[u8]) -> bool {
    let Some(recorded) = tar_number(&h[148..156]) else {
        return false;
    };
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    sum == recorded
}

/// The `path` record of a pax extended header (`<len> path=<value>\n` records).
fn pax_path(body: &[u8]) -> Option<String> {
    let mut rest = body;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        let record = rest.get(space + 1..len)?;
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(path) = record.strip_prefix(b"path=") {
            return Some(name_text(path));
        }
        rest = rest.get(len..)?;
    }
    None
}

/// Archive writers for tests (ZIP stored/deflated, tar, gzip), so no binary blobs are needed.
#[cfg(test)]
pub(crate) mod testdata {
    /// A ZIP of `(name, content, deflate?)` members, written like common tools do (local
    /// headers, central directory, end record). CRCs are left 0: the reader does not check them.
    pub fn zip(members: &[(&str, &[u8], bool)]) -> Vec<u8> {
        zip_with_prefix(b"", members)
    }

    /// The same with `prefix` in front (a self-extractor's stub); offsets stay relative to the
    /// archive start, as such tools record them.
    pub fn zip_with_prefix(prefix: &[u8], members: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut cd = Vec::new();
        for (name, content, deflate) in members {
            let offset = out.len() as u32;
            let (method, body): (u16, Vec<u8>) = if *deflate {
                (8, miniz_oxide::deflate::compress_to_vec(content, 6))
            } else {
                (0, content.to_vec())
            };
            let mut fixed = Vec::new();
            fixed.extend_from_slice(&20u16.to_le_bytes()); // version needed
            fixed.extend_from_slice(&0u16.to_le_bytes()); // flags
            fixed.extend_from_slice(&method.to_le_bytes());
            fixed.extend_from_slice(&[0; 4]); // time, date
            fixed.extend_from_slice(&0u32.to_le_bytes()); // crc
            fixed.extend_from_slice(&(body.len() as u32).to_le_bytes());
            fixed.extend_from_slice(&(content.len() as u32).to_le_bytes());
            fixed.extend_from_slice(&(name.len() as u16).to_le_bytes());
            fixed.extend_from_slice(&0u16.to_le_bytes()); // extra
            out.extend_from_slice(b"PK\x03\x04");
            out.extend_from_slice(&fixed);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&body);
            cd.extend_from_slice(b"PK\x01\x02");
            cd.extend_from_slice(&20u16.to_le_bytes()); // version made by
            cd.extend_from_slice(&fixed);
            cd.extend_from_slice(&[0; 10]); // comment len, disk, internal, external attrs
            cd.extend_from_slice(&offset.to_le_bytes());
            cd.extend_from_slice(name.as_bytes());
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&cd);
        out.extend_from_slice(b"PK\x05\x06");
        out.extend_from_slice(&[0; 4]); // disk numbers
        out.extend_from_slice(&(members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // comment
        let mut all = prefix.to_vec();
        all.extend_from_slice(&out);
        all
    }

    /// A ustar archive of regular files.
    pub fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, content) in members {
            let mut h = [0u8; 512];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[100..107].copy_from_slice(b"0000644");
            h[124..135].copy_from_slice(format!("{:011o}", content.len()).as_bytes());
            h[136..147].copy_from_slice(b"00000000000");
            h[156] = b'0';
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
            h[148..156].copy_from_slice(b"        ");
            let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
            h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
            out.extend_from_slice(&h);
            out.extend_from_slice(content);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    /// gzip of `content`, with the original name recorded when given.
    pub fn gzip(name: Option<&str>, content: &[u8]) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, if name.is_some() { 0x08 } else { 0 }];
        out.extend_from_slice(&[0; 6]);
        if let Some(n) = name {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
        }
        out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(content, 6));
        out.extend_from_slice(&[0; 8]); // crc, size (not checked)
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testdata::{gzip, tar, zip, zip_with_prefix};
    use super::{Limits, list};
    use std::time::{Duration, Instant};

    fn names(data: &[u8]) -> Vec<String> {
        list(data, &Limits::default()).names
    }

    #[test]
    fn zip_stored_and_deflated_members() {
        let z = zip(&[
            ("readme.txt", b"hello", false),
            ("dir/", b"", false),
            ("dir/run.bat", b"@echo off\r\n", true),
        ]);
        assert_eq!(names(&z), ["readme.txt", "dir/", "dir/run.bat"]);
    }

    #[test]
    fn empty_zip_and_self_extractor_prefix() {
        assert!(names(&zip(&[])).is_empty());
        let sfx = zip_with_prefix(b"MZ\x90\0 stub code", &[("inner.exe", b"x", true)]);
        assert_eq!(names(&sfx), ["inner.exe"]);
    }

    #[test]
    fn zip_inside_zip_inside_zip() {
        let l3 = zip(&[("deep.exe", b"MZ", true)]);
        let l2 = zip(&[("l3.zip", &l3, true)]);
        let l1 = zip(&[("l2.zip", &l2, false), ("note.txt", b"x", true)]);
        let got = list(&l1, &Limits::default());
        assert_eq!(got.names, ["l2.zip", "note.txt", "l3.zip", "deep.exe"]);
        assert_eq!(got.limit_hit, None);
    }

    #[test]
    fn nesting_beyond_the_depth_limit_is_not_opened() {
        let l4 = zip(&[("too-deep.exe", b"MZ", true)]);
        let l3 = zip(&[("l4.zip", &l4, true)]);
        let l2 = zip(&[("l3.zip", &l3, true)]);
        let l1 = zip(&[("l2.zip", &l2, true)]);
        let got = list(&l1, &Limits::default());
        assert_eq!(got.names, ["l2.zip", "l3.zip", "l4.zip"]);
        let hit = got.limit_hit.expect("depth limit reported");
        assert!(hit.contains("deeper than 3"), "{hit}");
    }

    #[test]
    fn a_huge_nested_member_stops_at_the_member_cap() {
        // A ZIP (so it looks like an archive) followed by 200 MiB of zeros, deflated.
        let mut big = zip(&[("x.bat", b"", false)]);
        big.resize(200 * 1024 * 1024, 0);
        let outer = zip(&[("bomb.zip", &big, true)]);
        drop(big);
        assert!(outer.len() < 1024 * 1024, "{}", outer.len());
        let t = Instant::now();
        let got = list(&outer, &Limits::default());
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(got.names, ["bomb.zip"]);
        let hit = got.limit_hit.expect("member cap reported");
        assert!(hit.contains("decompresses to more than"), "{hit}");
    }

    #[test]
    fn a_declared_gigabyte_of_zeros_is_never_inflated() {
        // The classic bomb: one member that inflates to far more than anything we allow. It
        // does not start like an archive, so only its first bytes are inflated.
        let zeros = vec![0u8; 64 * 1024 * 1024];
        let mut z = zip(&[("zeros.bin", &zeros, true)]);
        drop(zeros);
        // Declare 1 GiB in the central directory (uncompressed size at +24 of the entry).
        let cd = z.windows(4).position(|w| w == b"PK\x01\x02").expect("cd");
        z[cd + 24..cd + 28].copy_from_slice(&(1u32 << 30).to_le_bytes());
        let t = Instant::now();
        let got = list(&z, &Limits::default());
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(got.names, ["zeros.bin"]);
        assert_eq!(got.limit_hit, None);
    }

    #[test]
    fn a_recursive_bomb_is_bounded_in_depth_entries_and_bytes() {
        // 42.zip-style: every level holds 4 copies of the level below, 8 levels deep, with a
        // 1 MiB file of zeros at the bottom.
        let mut level = zip(&[("zeros.txt", &vec![0u8; 1 << 20], true)]);
        for _ in 0..8 {
            let copies: Vec<(String, Vec<u8>)> = (0..4)
                .map(|i| (format!("{i}.zip"), level.clone()))
                .collect();
            let refs: Vec<(&str, &[u8], bool)> = copies
                .iter()
                .map(|(n, d)| (n.as_str(), d.as_slice(), true))
                .collect();
            level = zip(&refs);
        }
        let t = Instant::now();
        let got = list(&level, &Limits::default());
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // Levels 1..3 are listed: 4 + 16 + 64 names.
        assert_eq!(got.names.len(), 4 + 16 + 64);
        assert!(got.limit_hit.is_some());
    }

    #[test]
    fn the_entry_count_is_bounded() {
        let many: Vec<(String, Vec<u8>)> = (0..50).map(|i| (format!("{i}.txt"), vec![])).collect();
        let refs: Vec<(&str, &[u8], bool)> = many
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice(), false))
            .collect();
        let limits = Limits {
            max_entries: 10,
            ..Limits::default()
        };
        let got = list(&zip(&refs), &limits);
        assert_eq!(got.names.len(), 10);
        assert!(got.limit_hit.expect("entries").contains("more than 10"));
    }

    #[test]
    fn the_total_budget_is_shared_between_members() {
        let inner = {
            let mut z = zip(&[("a.txt", b"", false)]);
            z.resize(6 * 1024 * 1024, 0);
            z
        };
        let members: Vec<(String, &[u8], bool)> = (0..20)
            .map(|i| (format!("{i}.zip"), inner.as_slice(), true))
            .collect();
        let refs: Vec<(&str, &[u8], bool)> = members
            .iter()
            .map(|(n, d, c)| (n.as_str(), *d, *c))
            .collect();
        let got = list(&zip(&refs), &Limits::default());
        // 64 MiB total: ten 6 MiB members fit, the 11th does not.
        assert_eq!(got.names.iter().filter(|n| *n == "a.txt").count(), 10);
        assert!(got.limit_hit.expect("budget").contains("in all"));
    }

    #[test]
    fn corrupt_and_non_archives_give_no_names() {
        for data in [
            &b""[..],
            b"just some text, not an archive",
            b"PK\x03\x04\xff\xff",
            b"\x1f\x8b\x08\x00garbage",
        ] {
            let got = list(data, &Limits::default());
            assert!(got.names.is_empty(), "{data:?}: {got:?}");
            assert!(!got.notes.is_empty(), "{data:?}");
        }
        // A central directory pointing outside the file.
        let mut z = zip(&[("a.exe", b"x", false)]);
        let eocd = z.len() - 22;
        z[eocd + 16..eocd + 20].copy_from_slice(&0xfff0_0000u32.to_le_bytes());
        z[eocd + 12..eocd + 16].copy_from_slice(&0xfff0_0000u32.to_le_bytes());
        let _ = list(&z, &Limits::default());
        // A corrupt deflate stream in a member that claims to be a nested archive.
        let mut z = zip(&[("in.zip", &zip(&[("x", b"y", false)]), true)]);
        let lh_data = 30 + "in.zip".len();
        for b in &mut z[lh_data..lh_data + 8] {
            *b = 0xff;
        }
        assert_eq!(names(&z), ["in.zip"]);
    }

    #[test]
    fn a_zip_cut_before_its_central_directory_is_read_by_local_headers() {
        let z = zip(&[("first.txt", b"a", false), ("second.scr", b"b", true)]);
        let cd = z.windows(4).position(|w| w == b"PK\x01\x02").expect("cd");
        assert_eq!(names(&z[..cd]), ["first.txt", "second.scr"]);
        // Cut inside the second member: both names are still seen.
        assert_eq!(names(&z[..cd - 2]), ["first.txt", "second.scr"]);
    }

    #[test]
    fn tar_gzip_and_tar_gz() {
        let t = tar(&[("docs/a.txt", b"a"), ("run.cmd", b"b")]);
        assert_eq!(names(&t), ["docs/a.txt", "run.cmd"]);
        assert_eq!(names(&gzip(Some("evil.exe"), b"MZ")), ["evil.exe"]);
        let tgz = gzip(None, &t);
        assert_eq!(names(&tgz), ["docs/a.txt", "run.cmd"]);
        // A zip inside a tar.gz: gzip (1) → tar (2) → zip (3).
        let z = zip(&[("x.vbs", b"", false)]);
        let tgz = gzip(None, &tar(&[("a.zip", &z)]));
        assert_eq!(names(&tgz), ["a.zip", "x.vbs"]);
    }

    #[test]
    fn archives_made_by_python_zipfile_and_tarfile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = r#"
import io, sys, tarfile, zipfile
inner = io.BytesIO()
with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("payload.js", "alert(1)")
with zipfile.ZipFile(sys.argv[1] + "/a.zip", "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("docs/readme.txt", "hi" * 1000)
    z.writestr("inner.zip", inner.getvalue())
    z.writestr("caf\u00e9.txt", "x")
with zipfile.ZipFile(sys.argv[1] + "/z64.zip", "w", allowZip64=True) as z:
    with z.open("big.pif", "w", force_zip64=True) as f:
        f.write(b"x")
with tarfile.open(sys.argv[1] + "/a.tgz", "w:gz") as t:
    data = b"y"
    info = tarfile.TarInfo("d/" + "n" * 120 + ".hta")
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))
"#;
        let status = std::process::Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .arg(dir.path())
            .status()
            .expect("run /usr/bin/python3");
        assert!(status.success());
        let read = |n: &str| std::fs::read(dir.path().join(n)).expect("read archive");
        assert_eq!(
            names(&read("a.zip")),
            ["docs/readme.txt", "inner.zip", "café.txt", "payload.js"]
        );
        assert_eq!(names(&read("z64.zip")), ["big.pif"]);
        let long = format!("d/{}.hta", "n".repeat(120));
        // gzip records the original file name; Python writes the archive's own.
        assert_eq!(names(&read("a.tgz")), ["a.tgz".to_string(), long]);
    }

    #[test]
    fn entries_the_directory_hides_are_still_listed() {
        // The end record claims one entry; the directory has two.
        let mut z = zip(&[("a.txt", b"a", false), ("b.exe", b"b", false)]);
        let eocd = z.len() - 22;
        z[eocd + 8..eocd + 12].copy_from_slice(&[1, 0, 1, 0]);
        assert_eq!(names(&z), ["a.txt", "b.exe"]);
        // A local entry the directory does not mention: cut the second directory entry out.
        let z = zip(&[("a.txt", b"a", false), ("hidden.exe", b"b", false)]);
        let cd = z.windows(4).position(|w| w == b"PK\x01\x02").expect("cd");
        let second = cd + 46 + "a.txt".len();
        let mut cut = z[..second].to_vec();
        cut.extend_from_slice(&z[z.len() - 22..]);
        let eocd = cut.len() - 22;
        cut[eocd + 8..eocd + 12].copy_from_slice(&[1, 0, 1, 0]);
        cut[eocd + 12..eocd + 16].copy_from_slice(&((second - cd) as u32).to_le_bytes());
        assert_eq!(names(&cut), ["a.txt", "hidden.exe"]);
    }
}
