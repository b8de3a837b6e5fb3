//! clamd's INSTREAM / FILDES reply (net/clamd.rs, parse_reply).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustfilter::net::clamd::parse_reply;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = parse_reply(data) {
        let _ = e.to_string();
    }
});
