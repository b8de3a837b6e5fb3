//! The modules file (config/ini.rs, ModulesConfig::parse) and the typed section getters the
//! modules use on it.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rustfilter::config::ini::ModulesConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match ModulesConfig::parse(Path::new("fuzz-modules.conf"), text) {
        Ok(config) => config,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for name in config.section_names() {
        let _ = config.section_line(&name);
        let sec = config.section(&name);
        for key in sec.keys() {
            let _ = sec.line(key);
            let _ = sec.string(key, "");
            let _ = sec.int(key, 0);
            let _ = sec.float(key, 0.0);
            let _ = sec.bool(key, false);
            let _ = sec.string_list(key, &[]);
            let _ = sec.string_map(key);
        }
        let _ = sec.finish().map_err(|e| e.to_string());
    }
});
