//! The quarantine (spec §5.4 as amended by DECISIONS "quarantine"): messages held back by a
//! module (clamav with `action = 'quarantine'`), notices to the recipients, release by mail,
//! purge and listing for the administrator.
//!
//! INTERFACE SKELETON — the bodies are to be written (issue 6). clamav calls
//! [`QuarantineConfig::from_section`] at build time and [`Quarantine::quarantine`] per message.

use std::fmt;
use std::path::PathBuf;

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::courier::control::Envelope;
use crate::courier::message::Message;

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
        let _ = section;
        todo!("issue 6: quarantine configuration")
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

#[derive(Debug, Clone)]
pub struct Quarantine {
    config: QuarantineConfig,
}

impl Quarantine {
    pub fn new(config: QuarantineConfig) -> Quarantine {
        Quarantine { config }
    }

    pub fn config(&self) -> &QuarantineConfig {
        &self.config
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
        let _ = (courier, envelope, message, explanation);
        todo!("issue 6: quarantine a message")
    }
}
