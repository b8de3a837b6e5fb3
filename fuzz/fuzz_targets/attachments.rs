//! The attachment walker: the bytes as a message (courier/mime.rs: MIME parts, transfer
//! decoding, names) and every part's payload through the archive lister (archive.rs), as the
//! attachments module does; and the bytes themselves through the archive lister, so ZIP /
//! gzip / tar structures are reached without a MIME wrapper.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustfilter::archive::{self, Limits};
use rustfilter::courier::mime::{self, Parsed};

fuzz_target!(|data: &[u8]| {
    // The module's own depth and entry caps; smaller byte budgets keep an execution short
    // (the budget logic is the same).
    let limits = Limits {
        max_member_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
        ..Limits::default()
    };
    let listing = archive::list(data, &limits);
    assert!(listing.names.len() <= limits.max_entries);

    if let Some(parsed) = Parsed::new(data)
        && let Ok(parts) = parsed.parts()
    {
        for part in &parts {
            if let Some(name) = &part.name {
                let _ = mime::decode_encoded_words(name);
            }
            let _ = mime::is_message_type(&part.content_type);
            let _ = archive::list(&part.payload, &limits);
        }
    }
    let _ = mime::base64_lenient(data);
    let _ = mime::quoted_printable_lenient(data);
});
