//! Config values (config/literal.rs): Python literals of the modules file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustfilter::config::literal::parse_literal_detailed;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_literal_detailed(text) {
        Ok(value) => {
            let _ = value.type_name();
            let _ = value.repr();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
