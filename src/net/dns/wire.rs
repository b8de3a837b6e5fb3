//! The DNS wire format (RFC 1035, EDNS0 of RFC 6891): building one query, parsing an answer.
//! Everything here is bounded and returns errors instead of panicking, whatever the input.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_MX: u16 = 15;
pub const TYPE_TXT: u16 = 16;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const CLASS_IN: u16 = 1;

/// The UDP payload size we advertise (the DNS flag day 2020 value: no IP fragmentation).
pub const EDNS_UDP_SIZE: u16 = 1232;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_NXDOMAIN: u8 = 3;

const FLAG_QR: u16 = 0x8000;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const HEADER_LEN: usize = 12;
/// A name is at most 255 bytes on the wire (RFC 1035 §2.3.4), a label 63.
const MAX_NAME_WIRE: usize = 255;
const MAX_LABEL: usize = 63;
/// Compression pointers followed while decoding one name; pointers must also go backwards.
const MAX_POINTERS: usize = 64;
/// Answer records kept from one message (more than any real answer we ask for).
pub const MAX_RECORDS: usize = 1024;

/// The type number for a name like `TXT` (case-insensitive), for the types we decode.
pub fn type_from_name(name: &str) -> Option<u16> {
    Some(match name.to_ascii_uppercase().as_str() {
        "A" => TYPE_A,
        "NS" => TYPE_NS,
        "CNAME" => TYPE_CNAME,
        "PTR" => TYPE_PTR,
        "MX" => TYPE_MX,
        "TXT" => TYPE_TXT,
        "AAAA" => TYPE_AAAA,
        _ => return None,
    })
}

/// `TXT` for 16; `TYPE99` for a type we have no name for (RFC 3597 style).
pub fn type_name(rtype: u16) -> String {
    match rtype {
        TYPE_A => "A".into(),
        TYPE_NS => "NS".into(),
        TYPE_CNAME => "CNAME".into(),
        TYPE_PTR => "PTR".into(),
        TYPE_MX => "MX".into(),
        TYPE_TXT => "TXT".into(),
        TYPE_AAAA => "AAAA".into(),
        other => format!("TYPE{other}"),
    }
}

/// A record's data, decoded for the types we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// The character-strings concatenated (RFC 7208 §3.3), raw bytes.
    Txt(Vec<u8>),
    Mx(u16, String),
    Ptr(String),
    Cname(String),
    Ns(String),
    /// Any other type: left undecoded.
    Other(Vec<u8>),
}

impl fmt::Display for RData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RData::A(ip) => write!(f, "{ip}"),
            RData::Aaaa(ip) => write!(f, "{ip}"),
            RData::Txt(bytes) => write!(f, "\"{}\"", String::from_utf8_lossy(bytes).escape_debug()),
            RData::Mx(pref, host) => write!(f, "{pref} {host}"),
            RData::Ptr(name) | RData::Cname(name) | RData::Ns(name) => f.write_str(name),
            RData::Other(bytes) => write!(f, "\\# {}", bytes.len()),
        }
    }
}

/// One resource record of the answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner name, dotted, without the final dot.
    pub name: String,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub data: RData,
}

/// The parts of a response we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub flags: u16,
    /// (name, type, class) of the question, if there is one.
    pub question: Option<(String, u16, u16)>,
    pub answers: Vec<Record>,
}

impl Message {
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_QR != 0
    }
    pub fn truncated(&self) -> bool {
        self.flags & FLAG_TC != 0
    }
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0x0f) as u8
    }
    /// The header's RCODE (the EDNS extended bits are not needed for the codes we act on).
    pub fn rcode(&self) -> u8 {
        (self.flags & 0x000f) as u8
    }
}

/// A name in wire form: labels of 1 to 63 bytes, at most 255 bytes in all. A final dot is
/// allowed; an empty name or `.` is the root.
pub fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let start = out.len();
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(format!("'{name}' is not a valid domain name (empty label)"));
            }
            if label.len() > MAX_LABEL {
                return Err(format!(
                    "'{name}' is not a valid domain name (a label is longer than 63 bytes)"
                ));
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    if out.len() - start > MAX_NAME_WIRE {
        out.truncate(start);
        return Err(format!(
            "'{name}' is not a valid domain name (longer than 255 bytes)"
        ));
    }
    Ok(())
}

/// A query for (name, type, class IN), recursion desired, with an EDNS0 OPT record when `edns`.
pub fn build_query(id: u16, name: &str, qtype: u16, edns: bool) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&FLAG_RD.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    out.extend_from_slice(&0u16.to_be_bytes()); // ANCOUNT
    out.extend_from_slice(&0u16.to_be_bytes()); // NSCOUNT
    out.extend_from_slice(&u16::from(edns).to_be_bytes()); // ARCOUNT
    encode_name(name, &mut out)?;
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    if edns {
        out.push(0); // root owner
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes()); // class = UDP payload size
        out.extend_from_slice(&0u32.to_be_bytes()); // extended RCODE, version 0, no DO
        out.extend_from_slice(&0u16.to_be_bytes()); // no options
    }
    Ok(out)
}

fn u16_at(buf: &[u8], pos: usize) -> Result<u16, String> {
    match buf.get(pos..pos + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err("message truncated".into()),
    }
}

fn u32_at(buf: &[u8], pos: usize) -> Result<u32, String> {
    match buf.get(pos..pos + 4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err("message truncated".into()),
    }
}

/// Append one label as text: `.`, `\` and bytes outside printable ASCII are escaped (`\.`,
/// `\\`, `\DDD`) so that the dotted form stays unambiguous.
fn push_label(text: &mut String, label: &[u8]) {
    for &b in label {
        match b {
            b'.' | b'\\' => {
                text.push('\\');
                text.push(b as char);
            }
            0x21..=0x7e => text.push(b as char),
            _ => text.push_str(&format!("\\{b:03}")),
        }
    }
}

/// Decode the (possibly compressed) name at `pos`; returns it and the position just after it
/// in the uncompressed stream.
pub fn decode_name(buf: &[u8], pos: usize) -> Result<(String, usize), String> {
    let mut text = String::new();
    let mut wire_len = 0usize;
    let mut cur = pos;
    let mut end: Option<usize> = None;
    let mut pointers = 0usize;
    loop {
        let Some(&len) = buf.get(cur) else {
            return Err("name runs past the end of the message".into());
        };
        match len & 0xc0 {
            0x00 => {
                let len = len as usize;
                if len == 0 {
                    let after = end.unwrap_or(cur + 1);
                    return Ok((text, after));
                }
                let Some(label) = buf.get(cur + 1..cur + 1 + len) else {
                    return Err("label runs past the end of the message".into());
                };
                wire_len += len + 1;
                if wire_len + 1 > MAX_NAME_WIRE {
                    return Err("name longer than 255 bytes".into());
                }
                if !text.is_empty() {
                    text.push('.');
                }
                push_label(&mut text, label);
                cur += 1 + len;
            }
            0xc0 => {
                let Some(&low) = buf.get(cur + 1) else {
                    return Err("compression pointer runs past the end".into());
                };
                let target = (((len & 0x3f) as usize) << 8) | low as usize;
                // Only backward pointers (RFC 1035 §4.1.4 "prior occurrence"); a loop made of
                // labels and a backward pointer is stopped by the pointer and length limits.
                if target >= cur {
                    return Err("compression pointer does not point backwards".into());
                }
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return Err("too many compression pointers".into());
                }
                if end.is_none() {
                    end = Some(cur + 2);
                }
                cur = target;
            }
            _ => return Err("unsupported label type".into()),
        }
    }
}

/// The name occupying exactly `rdata` (`start..start+len`) of the message.
fn name_in_rdata(buf: &[u8], start: usize, len: usize) -> Result<String, String> {
    let (name, after) = decode_name(buf, start)?;
    if after != start + len {
        return Err("name does not fill its record data".into());
    }
    Ok(name)
}

fn decode_rdata(buf: &[u8], rtype: u16, start: usize, len: usize) -> Result<RData, String> {
    let Some(data) = buf.get(start..start + len) else {
        return Err("record data runs past the end of the message".into());
    };
    Ok(match rtype {
        TYPE_A => {
            let octets: [u8; 4] = data.try_into().map_err(|_| "A record is not 4 bytes")?;
            RData::A(Ipv4Addr::from(octets))
        }
        TYPE_AAAA => {
            let octets: [u8; 16] = data.try_into().map_err(|_| "AAAA record is not 16 bytes")?;
            RData::Aaaa(Ipv6Addr::from(octets))
        }
        TYPE_TXT => {
            let mut text = Vec::with_capacity(len);
            let mut i = 0;
            while i < data.len() {
                let n = data[i] as usize;
                let Some(part) = data.get(i + 1..i + 1 + n) else {
                    return Err("TXT string runs past its record".into());
                };
                text.extend_from_slice(part);
                i += 1 + n;
            }
            RData::Txt(text)
        }
        TYPE_MX => {
            let pref = u16_at(data, 0).map_err(|_| "MX record too short")?;
            if len < 3 {
                return Err("MX record too short".into());
            }
            RData::Mx(pref, name_in_rdata(buf, start + 2, len - 2)?)
        }
        TYPE_PTR => RData::Ptr(name_in_rdata(buf, start, len)?),
        TYPE_CNAME => RData::Cname(name_in_rdata(buf, start, len)?),
        TYPE_NS => RData::Ns(name_in_rdata(buf, start, len)?),
        _ => RData::Other(data.to_vec()),
    })
}

/// Parse a response: header, the question, the answer section. Authority and additional
/// sections are not needed and are not read.
pub fn parse(buf: &[u8]) -> Result<Message, String> {
    if buf.len() < HEADER_LEN {
        return Err("message shorter than a DNS header".into());
    }
    let id = u16_at(buf, 0)?;
    let flags = u16_at(buf, 2)?;
    let qdcount = u16_at(buf, 4)?;
    let ancount = u16_at(buf, 6)?;
    let mut pos = HEADER_LEN;
    let question = match qdcount {
        0 => None,
        1 => {
            let (name, after) = decode_name(buf, pos)?;
            let qtype = u16_at(buf, after)?;
            let qclass = u16_at(buf, after + 2)?;
            pos = after + 4;
            Some((name, qtype, qclass))
        }
        n => return Err(format!("{n} questions in a response")),
    };
    let mut answers = Vec::new();
    for _ in 0..ancount {
        if answers.len() >= MAX_RECORDS {
            return Err("too many answer records".into());
        }
        let (name, after) = decode_name(buf, pos)?;
        let rtype = u16_at(buf, after)?;
        let class = u16_at(buf, after + 2)?;
        let ttl = u32_at(buf, after + 4)?;
        let rdlen = u16_at(buf, after + 8)? as usize;
        let start = after + 10;
        let data = decode_rdata(buf, rtype, start, rdlen)?;
        pos = start + rdlen;
        answers.push(Record {
            name,
            rtype,
            class,
            ttl,
            data,
        });
    }
    Ok(Message {
        id,
        flags,
        question,
        answers,
    })
}

/// Whether two dotted names are the same name (ASCII case-insensitive, final dot ignored).
pub fn same_name(a: &str, b: &str) -> bool {
    let a = a.strip_suffix('.').unwrap_or(a);
    let b = b.strip_suffix('.').unwrap_or(b);
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response for `query` with the given answer records (already in wire form).
    fn response(query: &[u8], flags: u16, answers: &[Vec<u8>]) -> Vec<u8> {
        let mut out = query[..2].to_vec();
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        // the question from the query (it has no OPT when built with edns=false)
        out.extend_from_slice(&query[12..]);
        for a in answers {
            out.extend_from_slice(a);
        }
        out
    }

    fn rr(owner: &[u8], rtype: u16, data: &[u8]) -> Vec<u8> {
        let mut out = owner.to_vec();
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&60u32.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn query_layout() {
        let q = build_query(0x1234, "Example.TEST.", TYPE_TXT, true).unwrap();
        assert_eq!(&q[..12], &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&q[12..26], b"\x07Example\x04TEST\x00");
        assert_eq!(&q[26..30], &[0, 16, 0, 1]);
        // OPT: root, type 41, size 1232, ttl 0, rdlen 0
        assert_eq!(&q[30..], &[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn bad_names_are_refused() {
        let long_label = "a".repeat(64);
        assert!(build_query(1, &long_label, TYPE_A, false).is_err());
        assert!(build_query(1, "a..b", TYPE_A, false).is_err());
        let long_name = vec!["abcdefghi"; 26].join(".");
        assert!(build_query(1, &long_name, TYPE_A, false).is_err());
        let max = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert!(build_query(1, &max, TYPE_A, false).is_ok());
        assert!(build_query(1, ".", TYPE_A, false).is_ok());
    }

    #[test]
    fn answers_with_compression() {
        let q = build_query(7, "example.test", TYPE_MX, false).unwrap();
        // pointer 0xc00c = the question name
        let ptr = [0xc0, 0x0c];
        let mut mx = vec![0, 10];
        mx.extend_from_slice(b"\x03mx1\xc0\x0c");
        let txt = b"\x03abc\x00\x02de";
        let msg = response(
            &q,
            0x8180,
            &[
                rr(&ptr, TYPE_MX, &mx),
                rr(&ptr, TYPE_TXT, txt),
                rr(&ptr, TYPE_A, &[127, 0, 0, 2]),
            ],
        );
        let m = parse(&msg).unwrap();
        assert_eq!(m.id, 7);
        assert!(m.is_response() && !m.truncated());
        assert_eq!(m.rcode(), 0);
        assert_eq!(m.question, Some(("example.test".into(), TYPE_MX, CLASS_IN)));
        assert_eq!(m.answers[0].data, RData::Mx(10, "mx1.example.test".into()));
        assert_eq!(m.answers[1].data, RData::Txt(b"abcde".to_vec()));
        assert_eq!(m.answers[2].data, RData::A(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(m.answers[2].name, "example.test");
    }

    #[test]
    fn pointer_loops_and_forward_pointers_fail() {
        let q = build_query(7, "example.test", TYPE_A, false).unwrap();
        // an owner name pointing at itself
        let mut msg = response(&q, 0x8180, &[]);
        msg[7] = 1;
        let at = msg.len();
        msg.extend_from_slice(&[0xc0 | (at >> 8) as u8, at as u8]);
        msg.extend_from_slice(&rr(&[], TYPE_A, &[1, 2, 3, 4]));
        assert!(parse(&msg).is_err());
        // a label followed by a pointer back to that label: a loop through a backward pointer
        let mut msg = response(&q, 0x8180, &[]);
        msg[7] = 1;
        let at = msg.len();
        msg.extend_from_slice(&[1, b'x', 0xc0 | (at >> 8) as u8, at as u8]);
        msg.extend_from_slice(&rr(&[], TYPE_A, &[1, 2, 3, 4]));
        assert!(parse(&msg).is_err());
    }

    #[test]
    fn escaped_labels() {
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(b"\x03a.b\x02\x00\\\x00");
        let (name, after) = decode_name(&buf, 12).unwrap();
        assert_eq!(name, "a\\.b.\\000\\\\");
        assert_eq!(after, buf.len());
    }

    #[test]
    fn wrong_lengths_fail() {
        let q = build_query(7, "example.test", TYPE_A, false).unwrap();
        let ptr = [0xc0, 0x0c];
        for (rtype, data) in [
            (TYPE_A, &[1u8, 2, 3][..]),
            (TYPE_AAAA, &[0u8; 4][..]),
            (TYPE_TXT, &[5u8, b'a'][..]),
            (TYPE_MX, &[0u8][..]),
            (TYPE_PTR, &[1u8, b'a', 0, 0][..]),
        ] {
            let msg = response(&q, 0x8180, &[rr(&ptr, rtype, data)]);
            assert!(parse(&msg).is_err(), "type {rtype}");
        }
    }

    /// xorshift64: a fixed-seed generator, so a failure is reproducible.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    #[test]
    fn random_and_damaged_packets_never_panic() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        // a valid response to damage
        let q = build_query(9, "example.test", TYPE_MX, false).unwrap();
        let ptr = [0xc0, 0x0c];
        let mut mx = vec![0, 10];
        mx.extend_from_slice(b"\x03mx1\xc0\x0c");
        let good = response(
            &q,
            0x8180,
            &[
                rr(&ptr, TYPE_MX, &mx),
                rr(&ptr, TYPE_TXT, b"\x03abc"),
                rr(&ptr, TYPE_CNAME, b"\x01x\xc0\x0c"),
                rr(&ptr, TYPE_AAAA, &[0; 16]),
            ],
        );
        assert!(parse(&good).is_ok());
        let mut parsed = 0;
        for round in 0..20_000 {
            let buf: Vec<u8> = match round % 3 {
                // pure noise with a plausible header
                0 => {
                    let len = (rng.next() % 600) as usize;
                    (0..len).map(|_| rng.next() as u8).collect()
                }
                // the good message truncated
                1 => good[..(rng.next() as usize % good.len())].to_vec(),
                // the good message with a few bytes flipped
                _ => {
                    let mut b = good.clone();
                    for _ in 0..(1 + rng.next() % 4) {
                        let i = rng.next() as usize % b.len();
                        b[i] = rng.next() as u8;
                    }
                    b
                }
            };
            if parse(&buf).is_ok() {
                parsed += 1;
            }
        }
        // the flipped-byte messages often still parse: the generator did reach deep paths
        assert!(parsed > 100, "{parsed}");
    }
}
