//! The modules, one small file each, and the registry (name → constructor). Names, defaults and
//! replies are pythonfilter 3.0.6's (spec §7) except where DECISIONS.md says otherwise.

use crate::config::{ConfigError, Section};
use crate::courier::Courier;
use crate::filter::Filter;

pub mod add_signature;
pub mod attachments;
pub mod auto_whitelist;
pub mod clamav;
pub mod comeagain;
pub mod debug;
pub mod deliveredto;
pub mod dialback;
pub mod fixed_reply;
pub mod greylist;
pub mod localsenders;
pub mod log_aliases;
pub mod noduplicates;
pub mod noreceivedheaders;
pub mod nosuccessdsn;
pub mod privateaddr;
pub mod quota;
pub mod ratelimit;
pub mod ratelimitauth;
pub mod sentfolder;
pub mod spamassassin;
pub mod spfcheck;
pub mod whitelist_auth;
pub mod whitelist_block;
pub mod whitelist_dnswl;
pub mod whitelist_relayclients;
pub mod whitelist_spf;

/// Builds a module from its config section. It must not open connections or files that a
/// worker needs (that is `Filter::open`, after fork).
pub type Constructor = fn(&Section<'_>, &Courier) -> Result<Box<dyn Filter>, ConfigError>;

const MODULES: &[(&str, Constructor)] = &[
    ("add_signature", add_signature::build),
    ("attachments", attachments::build),
    ("auto_whitelist", auto_whitelist::build),
    ("clamav", clamav::build),
    ("comeagain", comeagain::build),
    ("debug", debug::build),
    ("deliveredto", deliveredto::build),
    ("dialback", dialback::build),
    ("fixed_reply", fixed_reply::build),
    ("greylist", greylist::build),
    ("localsenders", localsenders::build),
    ("log_aliases", log_aliases::build),
    ("noduplicates", noduplicates::build),
    ("noreceivedheaders", noreceivedheaders::build),
    ("nosuccessdsn", nosuccessdsn::build),
    ("privateaddr", privateaddr::build),
    ("quota", quota::build),
    ("ratelimit", ratelimit::build),
    ("ratelimitauth", ratelimitauth::build),
    ("sentfolder", sentfolder::build),
    ("spamassassin", spamassassin::build),
    ("spfcheck", spfcheck::build),
    ("whitelist_auth", whitelist_auth::build),
    ("whitelist_block", whitelist_block::build),
    ("whitelist_dnswl", whitelist_dnswl::build),
    ("whitelist_relayclients", whitelist_relayclients::build),
    ("whitelist_spf", whitelist_spf::build),
];

/// Every module name pythonfilter 3.0.6 has.
pub const REFERENCE_MODULES: &[&str] = &[
    "add_signature",
    "attachments",
    "auto_whitelist",
    "clamav",
    "comeagain",
    "debug",
    "deliveredto",
    "dialback",
    "greylist",
    "localsenders",
    "log_aliases",
    "noduplicates",
    "noreceivedheaders",
    "nosuccessdsn",
    "privateaddr",
    "quota",
    "ratelimit",
    "ratelimitauth",
    "sentfolder",
    "spamassassin",
    "spfcheck",
    "whitelist_auth",
    "whitelist_block",
    "whitelist_dnswl",
    "whitelist_relayclients",
    "whitelist_spf",
];

/// Sections read by the framework and libraries rather than by a module.
const LIBRARY_SECTIONS: &[&str] = &["rustfilter", "ttldb", "quarantine", "authdaemon", "dns"];

pub fn constructor(name: &str) -> Option<Constructor> {
    MODULES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// Names of the modules this build has.
pub fn available() -> impl Iterator<Item = &'static str> {
    MODULES.iter().map(|(n, _)| *n)
}

pub fn is_reference_module(name: &str) -> bool {
    REFERENCE_MODULES.contains(&name)
}

pub fn is_library_section(name: &str) -> bool {
    LIBRARY_SECTIONS.contains(&name)
}

/// Why a chain entry names no module of this build (every pythonfilter module is one, so
/// the name is unknown).
pub fn unavailable_reason(name: &str) -> String {
    let known: Vec<&str> = available().collect();
    format!("unknown module '{name}' (available: {})", known.join(", "))
}

/// The init log line (spec §7.0), written once when the chain is built.
pub(crate) fn initialized(name: &str) {
    log::debug!("Initialized the \"{name}\" filter");
}

#[cfg(test)]
pub(crate) mod stateful_testutil;
#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests {
    /// rustfilter(8) names the modules that never wait (their CPU times share a reading).
    #[test]
    fn the_man_page_lists_the_modules_that_never_wait() {
        let fx = super::testutil::Fixture::new("sa@b.example\nrc@d.example\n", "\n", &[]);
        let mut never_wait: Vec<&str> = super::MODULES
            .iter()
            .filter(|(name, ctor)| {
                // The keys a module cannot do without.
                let text = match *name {
                    "fixed_reply" => "[fixed_reply]\nreply = '451 4.3.2 Maintenance'\n",
                    "sentfolder" => "[sentfolder]\nsiteid = 'a-secret-of-this-test'\n",
                    _ => "",
                };
                let filter = super::testutil::build(*ctor, name, text, &fx.courier)
                    .unwrap_or_else(|e| panic!("{name} with its defaults: {e}"));
                !filter.waits()
            })
            .map(|(name, _)| *name)
            .collect();
        never_wait.sort_unstable();
        let page =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/rustfilter.8"))
                .expect("man/rustfilter.8");
        let list = page
            .split("The modules that never wait:\n")
            .nth(1)
            .and_then(|rest| rest.split("\n.PP").next())
            .expect("the list in rustfilter(8)");
        let listed: Vec<&str> = list
            .lines()
            .filter_map(|l| l.strip_prefix(".BR "))
            .map(|l| l.trim_end_matches([' ', ',', '.']))
            .collect();
        assert_eq!(listed, never_wait);
    }

    #[test]
    fn every_pythonfilter_module_is_here() {
        for name in super::REFERENCE_MODULES {
            assert!(super::constructor(name).is_some(), "{name} is missing");
        }
    }
}
