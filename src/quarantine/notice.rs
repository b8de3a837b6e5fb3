//! The texts the quarantine sends (spec §5.4): the notice to the recipients, the failure notice
//! to a release requester, and the expiration date in the reference's format.
//!
//! Differences from the reference, on purpose: every line ends with LF (the reference mixes
//! CRLF headers with an LF body), the body ends with a newline (the reference's ends with four
//! stray blanks), and the notice carries `MIME-Version`/`Content-Type` (the quoted From and
//! Subject may hold raw 8-bit text) and `Auto-Submitted: auto-generated` (RFC 3834: no
//! vacation replies to it).

/// The notice body, line for line as in the reference (spec §5.4 step 7).
pub fn notice_body(
    explanation: &str,
    expiration: &str,
    from: &str,
    subject: &str,
    release_address: &str,
) -> String {
    format!(
        "You received a message that was quarantined because:\n\
         {explanation}\n\
         \n\
         This message will be held in the quarantine until {expiration}.\n\
         After that time, it will no longer be possible to release the message.\n\
         \n\
         The message appears to have come from {from}, although\n\
         this address could have been forged and should not be trusted.  The\n\
         message subject was \"{subject}\".\n\
         \n\
         If this was a message that you were expecting, and you know that it\n\
         is safe to continue, then forward this message to the following address\n\
         to release the quarantined message.  If you do not recognise the\n\
         sender, or were not expecting this message, then releasing it from\n\
         the quarantine could be very harmful.  You will almost always want\n\
         to simply ignore this notice.\n\
         \n\
         Quarantine release address:\n\
         {release_address}\n"
    )
}

/// The failure notice body (spec §5.4 `send_failure_notice`).
pub fn failure_body(requested_id: &str) -> String {
    format!(
        "The quarantine system received a request from your address\n\
         to release the message with id '{requested_id}' from the quarantine.  That message\n\
         was not found.  It may have already expired.\n\
         \n\
         I'm sorry that it didn't work out.  Please contact your system admin\n\
         for further assistance.\n"
    )
}

/// The whole notice message: `From: Mail Quarantine System <postmaster@me>`, `To: <address>`,
/// `Subject: Quarantine notice`, then the body.
pub fn notice_message(me: &str, to: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Mail Quarantine System <postmaster@{me}>\n\
         To: <{to}>\n\
         Subject: Quarantine notice\n\
         Auto-Submitted: auto-generated\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=UTF-8\n\
         Content-Transfer-Encoding: 8bit\n\
         \n\
         {body}"
    )
    .into_bytes()
}

/// A header value as quoted in the notice: the raw value (folding kept), `None` when absent
/// (what the reference prints).
pub fn quoted_header(values: &[String]) -> &str {
    values.first().map_or("None", String::as_str)
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The local calendar time at unix time `secs` (localtime_r).
fn local_tm(secs: i64) -> Option<libc::tm> {
    // time_t's width is the platform's (the alias is deprecated on musl): let the call say.
    #[allow(clippy::useless_conversion)] // not useless where time_t is 32 bits
    let t = secs.try_into().ok()?;
    // SAFETY: localtime_r writes only into `tm`, which we own; a zeroed tm is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    ok.then_some(tm)
}

/// `%a %B %d, %Y` in the C locale (`Mon July 01, 2024`) of the local calendar date at unix
/// time `secs`.
pub fn expiration_date(secs: i64) -> String {
    let Some(tm) = local_tm(secs) else {
        return format!("@{secs}");
    };
    let weekday = WEEKDAYS
        .get(usize::try_from(tm.tm_wday).unwrap_or(0))
        .copied()
        .unwrap_or("?");
    let month = MONTHS
        .get(usize::try_from(tm.tm_mon).unwrap_or(0))
        .copied()
        .unwrap_or("?");
    format!(
        "{weekday} {month} {:02}, {}",
        tm.tm_mday,
        i64::from(tm.tm_year) + 1900
    )
}

/// `YYYY-MM-DD HH:MM:SS` in local time, for listings.
pub fn timestamp(secs: i64) -> String {
    let Some(tm) = local_tm(secs) else {
        return format!("@{secs}");
    };
    format!(
        "{}-{:02}-{:02} {:02}:{:02}:{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_body_is_the_reference_text_with_a_final_newline() {
        let body = notice_body(
            "Virus found: Eicar-Signature",
            "Mon July 01, 2024",
            "root <root@example.org>",
            "test\n subject",
            "quarantine-local-abc@mail.example",
        );
        let expected = "You received a message that was quarantined because:\n\
Virus found: Eicar-Signature\n\
\n\
This message will be held in the quarantine until Mon July 01, 2024.\n\
After that time, it will no longer be possible to release the message.\n\
\n\
The message appears to have come from root <root@example.org>, although\n\
this address could have been forged and should not be trusted.  The\n\
message subject was \"test\n subject\".\n\
\n\
If this was a message that you were expecting, and you know that it\n\
is safe to continue, then forward this message to the following address\n\
to release the quarantined message.  If you do not recognise the\n\
sender, or were not expecting this message, then releasing it from\n\
the quarantine could be very harmful.  You will almost always want\n\
to simply ignore this notice.\n\
\n\
Quarantine release address:\n\
quarantine-local-abc@mail.example\n";
        assert_eq!(body, expected);
    }

    #[test]
    fn failure_body_quotes_the_id() {
        let body = failure_body("12ab");
        assert!(body.starts_with(
            "The quarantine system received a request from your address\n\
             to release the message with id '12ab' from the quarantine.  That message\n"
        ));
        assert!(body.ends_with("for further assistance.\n"));
        assert_eq!(body.lines().count(), 6);
    }

    #[test]
    fn notice_headers() {
        let m = String::from_utf8(notice_message("mail.example", "a@b.example", "BODY\n")).unwrap();
        assert!(m.starts_with(
            "From: Mail Quarantine System <postmaster@mail.example>\n\
             To: <a@b.example>\n\
             Subject: Quarantine notice\n"
        ));
        assert!(m.ends_with("\n\nBODY\n"));
        assert!(!m.contains('\r'));
    }

    #[test]
    fn header_absent_is_none() {
        assert_eq!(quoted_header(&[]), "None");
        assert_eq!(quoted_header(&["x".into(), "y".into()]), "x");
    }

    #[test]
    fn expiration_date_format() {
        // Noon UTC keeps the calendar date in every time zone between -11 and +11.
        assert_eq!(expiration_date(1_719_835_200), "Mon July 01, 2024");
        assert_eq!(expiration_date(1_735_646_400), "Tue December 31, 2024");
    }
}
