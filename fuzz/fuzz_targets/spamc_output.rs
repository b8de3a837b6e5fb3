//! spamc's output as the spamassassin module reads it (filters/spamassassin.rs): the
//! X-Spam-Status value, the reject decision, and whether the output may replace the message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustfilter::filters::spamassassin::{decide, is_processed_message, spam_status};

fuzz_target!(|data: &[u8]| {
    let _ = is_processed_message(data);
    let status = spam_status(data).unwrap_or_default();
    for spam in [false, true] {
        for reject_score in [None, Some(5.0), Some(f64::NAN)] {
            if let Some(reply) = decide(&status, spam, reject_score) {
                assert!(reply.ends_with(status.as_str()));
            }
        }
    }
});
