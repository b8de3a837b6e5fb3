//! The quarantine (spec §5.4 as amended by DECISIONS "quarantine"): messages held back by a
//! module (clamav with `action = 'quarantine'`), notices to the recipients, release by mail,
//! purge and listing for the administrator. The store is described in [`store`], the texts in
//! [`notice`]; `rustfilter dropmsg` (spec §5.6) is in [`dropmsg`].
//!
//! Differences from the reference: the configuration keeps its defaults; ids are random;
//! `also_notify` gets one notice per message; the failure notice always reaches the requester
//! (also with `notify_recipient = False`); a copy is released once per recipient, a second
//! request gets the failure notice; the domain of the requester is compared without regard to
//! case; notices and releases are sent with the null envelope sender, so they cannot bounce
//! back into the quarantine's mailbox or to a forged sender.

pub mod dropmsg;
pub mod notice;
pub mod store;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{ConfigError, ModulesConfig, Section};
use crate::courier::Courier;
use crate::courier::control::{Envelope, Recipient};
use crate::courier::message::Message;
use crate::courier::sendmail::{Sendmail, valid_address};

pub use store::Item;

/// The default `dir`.
pub const DEFAULT_DIR: &str = "/var/lib/rustfilter/quarantine";
/// The envelope sender of notices and released copies: the null sender.
const NOTICE_SENDER: &str = "";

/// `[quarantine]`: siteid, dir, days, notify_recipient, also_notify, user_release.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineConfig {
    pub siteid: String,
    pub dir: PathBuf,
    pub days: u32,
    pub notify_recipient: bool,
    pub also_notify: Option<String>,
    pub user_release: bool,
}

impl QuarantineConfig {
    /// Read and check `[quarantine]` (call `finish()` on it too). Defaults: siteid `local`,
    /// dir `/var/lib/rustfilter/quarantine`, days 14, notify_recipient true, no also_notify,
    /// user_release true.
    pub fn from_section(section: &Section<'_>) -> Result<QuarantineConfig, ConfigError> {
        let siteid = section.string("siteid", "local")?;
        if siteid.is_empty()
            || !siteid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(section.error(
                "siteid",
                format!(
                    "{siteid:?} cannot be part of a mail address and a .courier file name \
                     (use letters, digits, '_' and '-')"
                ),
            ));
        }
        let dir = PathBuf::from(section.string("dir", DEFAULT_DIR)?);
        if !dir.is_absolute() {
            return Err(section.error("dir", "must be an absolute path"));
        }
        let days = section.int("days", 14)?;
        let days = u32::try_from(days)
            .ok()
            .filter(|d| *d <= 36_500)
            .ok_or_else(|| section.error("days", format!("{days} is not between 0 and 36500")))?;
        let notify_recipient = section.bool("notify_recipient", true)?;
        let also_notify = section.opt_string("also_notify")?.filter(|s| !s.is_empty());
        if let Some(addr) = &also_notify
            && !valid_address(addr, false)
        {
            return Err(section.error(
                "also_notify",
                format!("{addr:?} is not an address sendmail can be given"),
            ));
        }
        let user_release = section.bool("user_release", true)?;
        if !user_release && also_notify.is_none() {
            log::warn!(
                "[quarantine] user_release = False has no effect without also_notify; \
                 notices give the release address"
            );
        }
        section.finish()?;
        Ok(QuarantineConfig {
            siteid,
            dir,
            days,
            notify_recipient,
            also_notify,
            user_release,
        })
    }

    /// `[quarantine]` of a modules file.
    pub fn from_config(config: &ModulesConfig) -> Result<QuarantineConfig, ConfigError> {
        QuarantineConfig::from_section(&config.section("quarantine"))
    }
}

impl Default for QuarantineConfig {
    fn default() -> QuarantineConfig {
        QuarantineConfig {
            siteid: "local".to_string(),
            dir: PathBuf::from(DEFAULT_DIR),
            days: 14,
            notify_recipient: true,
            also_notify: None,
            user_release: true,
        }
    }
}

#[derive(Debug)]
pub struct QuarantineError(pub String);

impl fmt::Display for QuarantineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QuarantineError {}

impl From<io::Error> for QuarantineError {
    fn from(e: io::Error) -> QuarantineError {
        QuarantineError(e.to_string())
    }
}

/// What became of a release request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The held copy was sent to the requester.
    Released,
    /// Unknown id, no matching recipient, or already released: the failure notice was sent.
    Refused(String),
    /// A request from the null sender (a bounce): nothing is sent.
    Ignored,
}

#[derive(Debug, Clone)]
pub struct Quarantine {
    config: QuarantineConfig,
    /// `None`: Courier's sendmail.
    sendmail: Option<Sendmail>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Two addresses are the same if the local parts are equal and the domains equal without
/// regard to case (Courier treats domains so; the reference compared exactly).
pub fn same_address(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => a == b,
    }
}

/// Whether `requester` may release the copy held for `rcpt` (spec §5.4 release step 3): the
/// address, the original recipient, or the original recipient as `rfc822;<address>`.
pub fn requester_matches(rcpt: &Recipient, requester: &str) -> bool {
    let orig = match rcpt.orig.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("rfc822;") => &rcpt.orig[7..],
        _ => rcpt.orig.as_str(),
    };
    !requester.is_empty()
        && (same_address(&rcpt.addr, requester)
            || (!orig.is_empty() && same_address(orig, requester)))
}

impl Quarantine {
    pub fn new(config: QuarantineConfig) -> Quarantine {
        Quarantine {
            config,
            sendmail: None,
        }
    }

    /// Send through this program instead of Courier's sendmail.
    pub fn with_sendmail(mut self, sendmail: Sendmail) -> Quarantine {
        self.sendmail = Some(sendmail);
        self
    }

    pub fn config(&self) -> &QuarantineConfig {
        &self.config
    }

    fn sendmail(&self, courier: &Courier) -> Sendmail {
        self.sendmail
            .clone()
            .unwrap_or_else(|| Sendmail::for_courier(courier))
    }

    fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// The address a notice tells the reader to forward it to.
    pub fn release_address(&self, courier: &Courier, id: &str) -> String {
        match (&self.config.also_notify, self.config.user_release) {
            (Some(admin), false) => admin.clone(),
            _ => format!("quarantine-{}-{id}@{}", self.config.siteid, courier.me()),
        }
    }

    /// Hold the message: store the body and control data under a new random id, mark every
    /// undelivered recipient of `envelope` delivered, send the notices (through Courier's
    /// sendmail). Returns the id. The caller then answers `050 OK`. On an error nothing is
    /// marked delivered (the caller tempfails).
    pub fn quarantine(
        &self,
        courier: &Courier,
        envelope: &mut Envelope,
        message: &Message,
        explanation: &str,
    ) -> Result<String, QuarantineError> {
        let dir = self.dir();
        store::ensure_dir(dir)?;
        let recipients = envelope.recipients();
        let time = now();

        // The body first: its exclusive creation is what reserves the id.
        let mut id = String::new();
        for attempt in 0.. {
            id = store::new_id()?;
            match store::copy_exclusive(message.path(), &dir.join(store::data_name(&id))) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 4 => continue,
                Err(e) => {
                    // A partly written body must not stay behind.
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        store::remove_item_files(dir, &id, 0);
                    }
                    return Err(e.into());
                }
            }
        }
        let controls = envelope.paths().len();
        let item = Item {
            id: id.clone(),
            time,
            sender: envelope.sender().unwrap_or_default().to_string(),
            explanation: explanation.to_string(),
            controls,
            recipients: recipients.iter().map(|r| (r.clone(), 0)).collect(),
        };
        let stored = (|| -> io::Result<store::Index> {
            for (n, path) in envelope.paths().iter().enumerate() {
                store::copy_exclusive(path, &dir.join(store::control_name(&id, n)))?;
            }
            store::sync_dir(dir)?;
            let mut index = store::Index::open(dir)?;
            index.insert(&item)?;
            Ok(index)
        })();
        let mut index = match stored {
            Ok(index) => index,
            Err(e) => {
                store::remove_item_files(dir, &id, controls);
                return Err(e.into());
            }
        };
        let undo = |index: &mut store::Index| {
            if let Err(e) = index.delete(&id) {
                log::warn!("quarantine: cannot remove the index row of {id}: {e}");
            }
            store::remove_item_files(dir, &id, controls);
        };

        if let Err(e) = self.send_notices(courier, message, &recipients, &id, time, explanation) {
            undo(&mut index);
            return Err(e);
        }
        // Only now that the copy is safe: Courier will deliver to nobody.
        for rcpt in &recipients {
            match envelope.remove_recipient(rcpt) {
                Ok(true) => {}
                Ok(false) => log::warn!(
                    "quarantine {id}: recipient <{}> was no longer undelivered",
                    rcpt.addr
                ),
                Err(e) => {
                    undo(&mut index);
                    return Err(QuarantineError(format!(
                        "cannot mark <{}> delivered: {e}",
                        rcpt.addr
                    )));
                }
            }
        }
        log::info!(
            "quarantined message from <{}> to {} as {id}: {explanation}",
            item.sender,
            recipients
                .iter()
                .map(|r| format!("<{}>", r.addr))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(id)
    }

    /// One notice to each recipient (if `notify_recipient`) and one to `also_notify`.
    fn send_notices(
        &self,
        courier: &Courier,
        message: &Message,
        recipients: &[Recipient],
        id: &str,
        time: i64,
        explanation: &str,
    ) -> Result<(), QuarantineError> {
        let from = message.header_values("From")?;
        let subject = message.header_values("Subject")?;
        let expiration =
            notice::expiration_date(time.saturating_add(i64::from(self.config.days) * 86_400));
        let body = notice::notice_body(
            explanation,
            &expiration,
            notice::quoted_header(&from),
            notice::quoted_header(&subject),
            &self.release_address(courier, id),
        );
        let mut targets: Vec<&str> = Vec::new();
        if self.config.notify_recipient {
            for r in recipients {
                if !valid_address(&r.addr, false) {
                    log::warn!(
                        "quarantine {id}: no notice to <{}>: not a usable address",
                        r.addr
                    );
                } else if !targets.iter().any(|t| same_address(t, &r.addr)) {
                    targets.push(&r.addr);
                }
            }
        }
        if let Some(admin) = &self.config.also_notify
            && !targets.iter().any(|t| same_address(t, admin))
        {
            targets.push(admin);
        }
        self.send_each(courier, &targets, &body)
    }

    fn send_each(
        &self,
        courier: &Courier,
        targets: &[&str],
        body: &str,
    ) -> Result<(), QuarantineError> {
        let sendmail = self.sendmail(courier);
        let me = courier.me();
        for to in targets {
            let msg = notice::notice_message(&me, to, body);
            sendmail
                .send(Some(NOTICE_SENDER), &[to], &[&msg])
                .map_err(|e| QuarantineError(format!("quarantine notice to <{to}>: {e}")))?;
        }
        Ok(())
    }

    /// The failure notice, to the requester and `also_notify`.
    fn send_failure_notice(
        &self,
        courier: &Courier,
        requested_id: &str,
        requester: &str,
    ) -> Result<(), QuarantineError> {
        let body = notice::failure_body(requested_id);
        let mut targets = vec![requester];
        if let Some(admin) = &self.config.also_notify
            && !same_address(admin, requester)
        {
            targets.push(admin);
        }
        self.send_each(courier, &targets, &body)
    }

    /// Release the copy held under `requested_id` to `requester`, if it was held for that
    /// address and not released to it before; otherwise send the failure notice. An `Err` is
    /// a failure to deliver (the request may be retried).
    pub fn release(
        &self,
        courier: &Courier,
        requested_id: &str,
        requester: &str,
    ) -> Result<ReleaseOutcome, QuarantineError> {
        if requester.is_empty() {
            log::info!("quarantine release of {requested_id:?} from the null sender ignored");
            return Ok(ReleaseOutcome::Ignored);
        }
        if !valid_address(requester, false) {
            return Err(QuarantineError(format!(
                "the requesting address {requester:?} cannot be given to sendmail"
            )));
        }
        let id = requested_id.trim().to_ascii_lowercase();
        let refused = |reason: String| -> Result<ReleaseOutcome, QuarantineError> {
            log::info!(
                "quarantine release of {requested_id:?} for <{requester}> refused: {reason}"
            );
            self.send_failure_notice(courier, requested_id, requester)?;
            Ok(ReleaseOutcome::Refused(reason))
        };
        if !store::is_valid_id(&id) {
            return refused("not a quarantine id".into());
        }
        if !self.dir().is_dir() {
            return refused(format!("no quarantine directory {}", self.dir().display()));
        }
        let mut index = store::Index::open(self.dir())?;
        if index.get(&id)?.is_none() {
            return refused("no such item (expired?)".into());
        }
        let Some((n, rcpt)) =
            index.claim_release(&id, now(), |r| requester_matches(r, requester))?
        else {
            return refused("not held for this address, or already released to it".into());
        };
        let delivered = store::read_limited(
            &self.dir().join(store::data_name(&id)),
            store::MAX_RELEASE_BYTES,
        )
        .map_err(QuarantineError::from)
        .and_then(|data| {
            self.sendmail(courier)
                .send(Some(NOTICE_SENDER), &[requester], &[&data])
                .map_err(|e| QuarantineError(format!("releasing {id} to <{requester}>: {e}")))
        });
        if let Err(e) = delivered {
            if let Err(undo) = index.unclaim_release(&id, n) {
                log::warn!("quarantine: cannot undo the release mark of {id}: {undo}");
            }
            return Err(e);
        }
        log::info!(
            "quarantine: released {id} to <{requester}> (held for <{}>)",
            rcpt.addr
        );
        Ok(ReleaseOutcome::Released)
    }

    /// Remove the items older than `days`, and files no item owns. Returns how many items
    /// were removed.
    pub fn purge(&self) -> Result<usize, QuarantineError> {
        self.purge_at(now())
    }

    /// [`Quarantine::purge`] as if it were `now`.
    pub fn purge_at(&self, now: i64) -> Result<usize, QuarantineError> {
        let dir = self.dir();
        if !dir.is_dir() {
            return Ok(0);
        }
        let age = i64::from(self.config.days) * 86_400;
        let mut index = store::Index::open(dir)?;
        let old = index.purge_rows(now - age)?;
        for (id, controls) in &old {
            store::remove_item_files(dir, id, *controls);
            log::info!("quarantine: purged {id}");
        }
        store::remove_orphans(dir, &index, now - age.max(store::ORPHAN_MIN_AGE_SECS))?;
        Ok(old.len())
    }

    /// Every held item, oldest first (none when the directory does not exist).
    pub fn list(&self) -> Result<Vec<Item>, QuarantineError> {
        if !self.dir().is_dir() {
            return Ok(Vec::new());
        }
        Ok(store::Index::open(self.dir())?.list()?)
    }
}

#[cfg(test)]
mod tests;
