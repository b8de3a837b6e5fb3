//! Network clients used by modules: a hand-written blocking DNS stub resolver ([`dns`]), an
//! RFC 7208 SPF evaluator ([`spf`]) and a clamd client ([`clamd`]).

pub mod clamd;
pub mod dns;
pub mod smtp;
pub mod spamc;
pub mod spf;
