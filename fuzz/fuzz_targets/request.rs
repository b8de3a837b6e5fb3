//! The courierfilter request (daemon/wire.rs): the data file path, control file paths, blank
//! line.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rustfilter::daemon::wire::{Limits, format_reply, parse_request};

fuzz_target!(|data: &[u8]| {
    // Small limits too, so the limit paths are reached.
    let small = Limits {
        max_line: 64,
        max_control_files: 4,
        max_request_bytes: 512,
        ..Limits::default()
    };
    for limits in [Limits::default(), small] {
        if let Ok(request) = parse_request(data, Path::new("/var/lib/courier"), &limits) {
            assert!(request.control_paths.len() <= limits.max_control_files);
        }
    }
    // The reply formatter takes module text (any UTF-8).
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = format_reply(text);
    }
});
