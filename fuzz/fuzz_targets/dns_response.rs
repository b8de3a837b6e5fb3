//! DNS responses (net/dns/wire.rs): the message parser and name decompression.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustfilter::net::dns::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = wire::parse(data) {
        let _ = format!("{message:?}");
    }
    for pos in [0, 12, data.len() / 2] {
        let _ = wire::decode_name(data, pos);
    }
});
