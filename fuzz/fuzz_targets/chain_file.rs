//! The chain file (config/chainfile.rs, ChainConfig::parse).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rustfilter::config::chainfile::ChainConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ChainConfig::parse(Path::new("fuzz-chain.conf"), text) {
        Ok(chain) => {
            for entry in &chain.entries {
                assert!(!entry.name.is_empty());
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
