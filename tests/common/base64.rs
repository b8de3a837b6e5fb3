//! Base64 for test messages and AUTH tokens (the tests build mail that Courier or the
//! attachment walker must decode).

#![allow(dead_code)] // each test file uses part of it

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 on one line, with padding.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let mut b = [0u8; 3];
        b[..chunk.len()].copy_from_slice(chunk);
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// Base64 in 76-character lines, as MIME wants them, joined by `eol` (none after the last).
pub fn base64_lines(data: &[u8], eol: &str) -> String {
    let one_line = base64(data);
    let lines: Vec<&str> = one_line
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    lines.join(eol)
}
