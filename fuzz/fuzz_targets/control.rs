//! Courier control files (courier/control.rs): the byte-level parser and every read accessor.
//! A 0x00 byte in the input starts the next control file.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use rustfilter::courier::control::{Envelope, decode_value, parse_client_ip};

fuzz_target!(|data: &[u8]| {
    let files: Vec<(PathBuf, Vec<u8>)> = data
        .split(|&b| b == 0)
        .enumerate()
        .map(|(i, bytes)| (PathBuf::from(format!("C{i}")), bytes.to_vec()))
        .collect();
    let envelope = Envelope::from_bytes(files);
    let _ = envelope.sender();
    let _ = envelope.senders_mta();
    let _ = envelope.auth_user();
    let _ = envelope.message_id();
    let _ = envelope.client_ip();
    let _ = envelope.recipients();
    let _ = envelope.control_data();
    for letter in [b'r', b'R', b'N', b'S', b'F', b'O', b'I'] {
        let _ = envelope.values(letter);
        let _ = envelope.first(letter);
    }
    let _ = decode_value(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_client_ip(text);
    }
});
