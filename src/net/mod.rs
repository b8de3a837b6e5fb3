//! Network clients used by modules: a hand-written blocking DNS stub resolver ([`dns`]) and an
//! RFC 7208 SPF evaluator ([`spf`]).

pub mod dns;
pub mod smtp;
pub mod spamc;
pub mod spf;
