//! An RFC 7208 SPF evaluator over a [`super::dns::Lookup`].
//!
//! [`check_host`] is the RFC's function; [`check_mail_from`] and [`check_helo`] derive its
//! arguments from an SMTP session the way the RFC describes (§2.3, §2.4, §4.3). The whole record
//! is parsed before any mechanism is evaluated, so a syntax error anywhere gives `permerror`
//! (§4.6). DNS-querying terms, void lookups, MX and PTR names are bounded as §4.6.4 requires, and
//! the whole check has a time limit after which the result is `temperror`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::dns::{DnsError, Lookup};

/// The result of an SPF check (RFC 7208 §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    None,
    Neutral,
    Pass,
    Fail,
    SoftFail,
    TempError,
    PermError,
}

impl Verdict {
    /// The RFC's lower-case name: `pass`, `softfail`, `permerror`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::None => "none",
            Verdict::Neutral => "neutral",
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::SoftFail => "softfail",
            Verdict::TempError => "temperror",
            Verdict::PermError => "permerror",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`check_host`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfResult {
    pub verdict: Verdict,
    /// For `fail` only: the domain's `exp=` text, or the default explanation (§6.2).
    pub explanation: Option<String>,
    /// Why, for logs: the mechanism that matched, or the error.
    pub detail: String,
}

/// Tunables of a check. [`Default`] gives the RFC's recommended limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfOptions {
    /// `%{r}`: the name of the host doing the check.
    pub receiver: String,
    /// Used for `fail` when the domain gives no usable `exp=` (a macro string).
    pub default_explanation: String,
    /// Terms that query DNS (include, a, mx, ptr, exists, redirect): 10 in RFC 7208.
    pub max_dns_terms: u32,
    /// Lookups answering NXDOMAIN or no records: 2 recommended by RFC 7208.
    pub max_void_lookups: u32,
    /// The whole check; past it the result is `temperror` (RFC 7208 §4.6.4 asks at least 20 s).
    pub time_limit: Duration,
}

impl Default for SpfOptions {
    fn default() -> Self {
        SpfOptions {
            receiver: "unknown".to_string(),
            default_explanation: "SPF fail - not authorized".to_string(),
            max_dns_terms: 10,
            max_void_lookups: 2,
            time_limit: Duration::from_secs(20),
        }
    }
}

/// The MAIL FROM identity: `check_host` on the sender's domain, or on the HELO name with
/// `postmaster@<helo>` when the reverse path is empty (RFC 7208 §2.4). A sender without a local
/// part gets `postmaster` (§4.3).
pub fn check_mail_from(
    lookup: &mut dyn Lookup,
    ip: IpAddr,
    mail_from: &str,
    helo: &str,
    opts: &SpfOptions,
) -> SpfResult {
    if mail_from.is_empty() {
        return check_helo(lookup, ip, helo, opts);
    }
    let (local, domain) = split_sender(mail_from);
    let sender = format!("{local}@{domain}");
    check_host(lookup, ip, &domain, &sender, helo, opts)
}

/// The HELO identity (RFC 7208 §2.3): `check_host` on the HELO name as `postmaster@<helo>`.
pub fn check_helo(lookup: &mut dyn Lookup, ip: IpAddr, helo: &str, opts: &SpfOptions) -> SpfResult {
    let sender = format!("postmaster@{helo}");
    check_host(lookup, ip, helo, &sender, helo, opts)
}

/// RFC 7208 §4: is `ip` allowed to send mail for `domain`? `sender` is the full identity
/// (`local@domain`), used by the `%{s}`, `%{l}` and `%{o}` macros.
pub fn check_host(
    lookup: &mut dyn Lookup,
    ip: IpAddr,
    domain: &str,
    sender: &str,
    helo: &str,
    opts: &SpfOptions,
) -> SpfResult {
    // §5: an IPv4-mapped IPv6 address is an IPv4 client.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (local, sender_domain) = split_sender(sender);
    let mut eval = Evaluator {
        lookup,
        ip,
        sender: format!("{local}@{sender_domain}"),
        local,
        sender_domain,
        helo: helo.to_string(),
        opts,
        dns_terms: 0,
        voids: 0,
        deadline: Instant::now() + opts.time_limit,
        validated: None,
    };
    eval.check(domain, true)
}

/// `local@domain` → (local, domain); `postmaster` for an empty or missing local part.
fn split_sender(sender: &str) -> (String, String) {
    match sender.rfind('@') {
        Some(at) => {
            let local = &sender[..at];
            let local = if local.is_empty() {
                "postmaster"
            } else {
                local
            };
            (local.to_string(), sender[at + 1..].to_string())
        }
        None => ("postmaster".to_string(), sender.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Record syntax (RFC 7208 §4.5, §4.6, §5, §6, §7)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

impl Qualifier {
    fn verdict(self) -> Verdict {
        match self {
            Qualifier::Pass => Verdict::Pass,
            Qualifier::Fail => Verdict::Fail,
            Qualifier::SoftFail => Verdict::SoftFail,
            Qualifier::Neutral => Verdict::Neutral,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mechanism {
    All,
    Include(MacroString),
    A {
        domain: Option<MacroString>,
        cidr4: u8,
        cidr6: u8,
    },
    Mx {
        domain: Option<MacroString>,
        cidr4: u8,
        cidr6: u8,
    },
    Ptr(Option<MacroString>),
    Ip4(Ipv4Addr, u8),
    Ip6(Ipv6Addr, u8),
    Exists(MacroString),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Directive {
    qualifier: Qualifier,
    mechanism: Mechanism,
    /// The term as written, for [`SpfResult::detail`].
    text: String,
}

/// A parsed `v=spf1` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    directives: Vec<Directive>,
    redirect: Option<MacroString>,
    exp: Option<MacroString>,
}

/// One piece of a macro string (RFC 7208 §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    /// `%%`, `%_`, `%-`: a macro-expand in the grammar, a fixed text when expanded.
    Escape(&'static str),
    Macro {
        letter: u8,
        url_escape: bool,
        keep: Option<usize>,
        reverse: bool,
        delimiters: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MacroString {
    tokens: Vec<Token>,
}

/// Does this TXT string select itself as an SPF record? `v=spf1` (any case) alone or followed by
/// a space (§4.5).
fn is_spf_record(txt: &str) -> bool {
    let bytes = txt.as_bytes();
    bytes.len() >= 6
        && bytes[..6].eq_ignore_ascii_case(b"v=spf1")
        && (bytes.len() == 6 || bytes[6] == b' ')
}

/// Parse a whole record (which must start with `v=spf1`). Errors are the reason for `permerror`.
pub fn parse_record(text: &str) -> Result<Record, String> {
    if !is_spf_record(text) {
        return Err("not a v=spf1 record".to_string());
    }
    if !text.is_ascii() {
        return Err("the record is not 7-bit ASCII".to_string());
    }
    let mut record = Record {
        directives: Vec::new(),
        redirect: None,
        exp: None,
    };
    // Terms are separated by spaces only (§4.6.1): any other control character is part of a term,
    // where it is a syntax error.
    for term in text[6..].split(' ').filter(|t| !t.is_empty()) {
        if let Some((name, value)) = modifier_parts(term) {
            match name.to_ascii_lowercase().as_str() {
                "redirect" => {
                    if record.redirect.is_some() {
                        return Err("redirect= appears twice".to_string());
                    }
                    record.redirect = Some(
                        parse_domain_spec(value)
                            .map_err(|e| format!("bad redirect= '{value}': {e}"))?,
                    );
                }
                "exp" => {
                    if record.exp.is_some() {
                        return Err("exp= appears twice".to_string());
                    }
                    record.exp = Some(
                        parse_domain_spec(value).map_err(|e| format!("bad exp= '{value}': {e}"))?,
                    );
                }
                // Unknown modifiers are ignored, but their value must still be a macro string.
                _ => {
                    parse_macro_string(value, MacroContext::Unknown)
                        .map_err(|e| format!("bad modifier '{term}': {e}"))?;
                }
            }
        } else {
            record.directives.push(parse_directive(term)?);
        }
    }
    Ok(record)
}

/// `name=value` with name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ) (§4.6.1, §A).
fn modifier_parts(term: &str) -> Option<(&str, &str)> {
    let eq = term.find('=')?;
    let name = &term[..eq];
    let mut chars = name.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return None;
    }
    Some((name, &term[eq + 1..]))
}

fn parse_directive(term: &str) -> Result<Directive, String> {
    let (qualifier, body) = match term.as_bytes().first() {
        Some(b'+') => (Qualifier::Pass, &term[1..]),
        Some(b'-') => (Qualifier::Fail, &term[1..]),
        Some(b'~') => (Qualifier::SoftFail, &term[1..]),
        Some(b'?') => (Qualifier::Neutral, &term[1..]),
        _ => (Qualifier::Pass, term),
    };
    let name_end = body.find([':', '/']).unwrap_or(body.len());
    let name = body[..name_end].to_ascii_lowercase();
    let rest = &body[name_end..];
    let bad = |why: &str| format!("bad mechanism '{term}': {why}");
    let mechanism = match name.as_str() {
        "all" => {
            if !rest.is_empty() {
                return Err(bad("all takes no argument"));
            }
            Mechanism::All
        }
        "include" | "exists" => {
            let spec = rest
                .strip_prefix(':')
                .ok_or_else(|| bad("a domain is required"))?;
            let domain = parse_domain_spec(spec).map_err(|e| bad(&e))?;
            if name == "include" {
                Mechanism::Include(domain)
            } else {
                Mechanism::Exists(domain)
            }
        }
        "a" | "mx" => {
            let (spec, cidr4, cidr6) = split_dual_cidr(rest).map_err(|e| bad(&e))?;
            let domain = match spec {
                "" => None,
                _ => {
                    let spec = spec
                        .strip_prefix(':')
                        .ok_or_else(|| bad("unexpected text"))?;
                    Some(parse_domain_spec(spec).map_err(|e| bad(&e))?)
                }
            };
            if name == "a" {
                Mechanism::A {
                    domain,
                    cidr4,
                    cidr6,
                }
            } else {
                Mechanism::Mx {
                    domain,
                    cidr4,
                    cidr6,
                }
            }
        }
        "ptr" => match rest {
            "" => Mechanism::Ptr(None),
            _ => {
                let spec = rest
                    .strip_prefix(':')
                    .ok_or_else(|| bad("ptr takes no CIDR length"))?;
                Mechanism::Ptr(Some(parse_domain_spec(spec).map_err(|e| bad(&e))?))
            }
        },
        "ip4" | "ip6" => {
            let net = rest
                .strip_prefix(':')
                .ok_or_else(|| bad("an address is required"))?;
            let (addr, cidr) = match net.find('/') {
                Some(slash) => (&net[..slash], Some(&net[slash + 1..])),
                None => (net, None),
            };
            if name == "ip4" {
                let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
                let cidr = match cidr {
                    Some(c) => parse_cidr(c, 32).map_err(|e| bad(&e))?,
                    None => 32,
                };
                Mechanism::Ip4(addr, cidr)
            } else {
                let addr: Ipv6Addr = addr.parse().map_err(|_| bad("not an IPv6 address"))?;
                let cidr = match cidr {
                    Some(c) => parse_cidr(c, 128).map_err(|e| bad(&e))?,
                    None => 128,
                };
                Mechanism::Ip6(addr, cidr)
            }
        }
        _ => return Err(format!("unknown mechanism '{term}'")),
    };
    Ok(Directive {
        qualifier,
        mechanism,
        text: term.to_string(),
    })
}

/// A CIDR length: digits without a leading zero, at most `max` (§5.6; the suite reads leading
/// zeros as forbidden, as in ip4-network).
fn parse_cidr(text: &str, max: u8) -> Result<u8, String> {
    let valid = !text.is_empty()
        && text.len() <= 3
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    let value: u16 = if valid {
        text.parse()
            .map_err(|_| format!("bad CIDR length '/{text}'"))?
    } else {
        return Err(format!("bad CIDR length '/{text}'"));
    };
    if value > u16::from(max) {
        return Err(format!("CIDR length /{value} is over {max}"));
    }
    Ok(value as u8)
}

/// Split `[":" domain-spec] [ "/" ip4-cidr ] [ "//" ip6-cidr ]` into the part before the CIDR
/// lengths and the lengths (defaults /32 and /128).
fn split_dual_cidr(rest: &str) -> Result<(&str, u8, u8), String> {
    let mut head = rest;
    let mut cidr6 = 128;
    let mut cidr4 = 32;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(pos) = head.rfind("//")
        && all_digits(&head[pos + 2..])
    {
        cidr6 = parse_cidr(&head[pos + 2..], 128)?;
        head = &head[..pos];
    }
    if let Some(pos) = head.rfind('/')
        && all_digits(&head[pos + 1..])
    {
        cidr4 = parse_cidr(&head[pos + 1..], 32)?;
        head = &head[..pos];
    }
    Ok((head, cidr4, cidr6))
}

/// Where a macro string appears: that decides which characters and letters are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MacroContext {
    /// A domain-spec: no `c`, `r`, `t`, no spaces.
    Domain,
    /// The value of an unknown modifier: any macro letter, no spaces.
    Unknown,
    /// An explanation TXT string: any macro letter, spaces allowed.
    Explanation,
}

fn parse_macro_string(text: &str, context: MacroContext) -> Result<MacroString, String> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut literal = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            let allowed =
                (0x21..=0x7e).contains(&b) || (b == b' ' && context == MacroContext::Explanation);
            if !allowed {
                return Err(format!("character {:?} is not allowed", char::from(b)));
            }
            literal.push(char::from(b));
            i += 1;
            continue;
        }
        let escape = match bytes.get(i + 1) {
            Some(b'%') => Some("%"),
            Some(b'_') => Some(" "),
            Some(b'-') => Some("%20"),
            Some(b'{') => None,
            _ => return Err("'%' must be followed by '{', '%', '_' or '-'".to_string()),
        };
        if !literal.is_empty() {
            tokens.push(Token::Literal(std::mem::take(&mut literal)));
        }
        if let Some(escape) = escape {
            tokens.push(Token::Escape(escape));
            i += 2;
            continue;
        }
        let close = text[i + 2..]
            .find('}')
            .ok_or_else(|| "unterminated macro".to_string())?;
        let body = &bytes[i + 2..i + 2 + close];
        tokens.push(parse_macro_body(body, context)?);
        i += 2 + close + 1;
    }
    if !literal.is_empty() {
        tokens.push(Token::Literal(literal));
    }
    Ok(MacroString { tokens })
}

/// `macro-letter transformers *delimiter`, the inside of `%{…}`.
fn parse_macro_body(body: &[u8], context: MacroContext) -> Result<Token, String> {
    let (&letter, rest) = body
        .split_first()
        .ok_or_else(|| "empty macro".to_string())?;
    let lower = letter.to_ascii_lowercase();
    let allowed = match lower {
        b's' | b'l' | b'o' | b'd' | b'i' | b'p' | b'h' | b'v' => true,
        b'c' | b'r' | b't' => context != MacroContext::Domain,
        _ => false,
    };
    if !allowed {
        return Err(format!(
            "macro letter '{}' is not allowed here",
            char::from(letter)
        ));
    }
    let digits_end = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    let keep = if digits_end == 0 {
        None
    } else {
        let digits = &rest[..digits_end];
        // Any count past the number of labels a name can have means "all of them".
        let value = digits
            .iter()
            .try_fold(0usize, |acc, d| {
                acc.checked_mul(10)?.checked_add(usize::from(d - b'0'))
            })
            .unwrap_or(usize::MAX);
        if value == 0 {
            return Err("a macro cannot keep zero parts".to_string());
        }
        Some(value)
    };
    let mut rest = &rest[digits_end..];
    let mut reverse = false;
    if let Some((&first, tail)) = rest.split_first()
        && (first == b'r' || first == b'R')
    {
        reverse = true;
        rest = tail;
    }
    if let Some(&bad) = rest
        .iter()
        .find(|b| !matches!(b, b'.' | b'-' | b'+' | b',' | b'/' | b'_' | b'='))
    {
        return Err(format!("bad macro delimiter '{}'", char::from(bad)));
    }
    Ok(Token::Macro {
        letter: lower,
        url_escape: letter.is_ascii_uppercase(),
        keep,
        reverse,
        delimiters: rest.iter().map(|&b| char::from(b)).collect(),
    })
}

/// A domain-spec: a non-empty macro string ending in a macro or in "." toplabel ["."] (§7.1).
fn parse_domain_spec(text: &str) -> Result<MacroString, String> {
    if text.is_empty() {
        return Err("empty domain".to_string());
    }
    let spec = parse_macro_string(text, MacroContext::Domain)?;
    match spec.tokens.last() {
        Some(Token::Literal(tail)) => {
            let tail = tail.strip_suffix('.').unwrap_or(tail);
            let top = tail
                .rfind('.')
                .map(|dot| &tail[dot + 1..])
                .ok_or_else(|| format!("'{text}' has no top-level label"))?;
            if !is_toplabel(top) {
                return Err(format!("'{top}' is not a valid top-level label"));
            }
        }
        Some(_) => {}
        None => return Err("empty domain".to_string()),
    }
    Ok(spec)
}

/// toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
fn is_toplabel(label: &str) -> bool {
    let bytes = label.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    {
        return false;
    }
    if bytes.contains(&b'-') {
        first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric()
    } else {
        bytes.iter().any(|b| b.is_ascii_alphabetic())
    }
}

/// A name fit for `check_host` (§4.3): labels of 1 to 63 octets, at least two of them, and a
/// top label that is a host name's.
fn is_checkable_domain(domain: &str) -> bool {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let labels: Vec<&str> = domain.split('.').collect();
    domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty() && l.len() <= 63)
        && labels.last().is_some_and(|top| is_toplabel(top))
}

/// A macro-expanded target as a name to query: trailing dot dropped, truncated on the left to
/// 253 octets (§7.3). `None` when it cannot be a DNS name (empty or over-long label): such a
/// mechanism matches nothing.
fn target_name(expanded: &str) -> Option<String> {
    let mut name = expanded.strip_suffix('.').unwrap_or(expanded);
    while name.len() > 253 {
        name = &name[name.find('.')? + 1..];
    }
    if name.is_empty() || name.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return None;
    }
    Some(name.to_string())
}

// ---------------------------------------------------------------------------------------------
// Evaluation (RFC 7208 §4, §5, §6)
// ---------------------------------------------------------------------------------------------

/// Ends evaluation of the whole check.
enum Abort {
    Temp(String),
    Perm(String),
}

struct Evaluator<'a> {
    lookup: &'a mut dyn Lookup,
    ip: IpAddr,
    sender: String,
    local: String,
    sender_domain: String,
    helo: String,
    opts: &'a SpfOptions,
    dns_terms: u32,
    voids: u32,
    deadline: Instant,
    /// The client's validated names for `%{p}` (`None` inside: no PTR answer), looked up once
    /// per check: they do not depend on the domain, and a record may hold any number of
    /// `%{p}`, each otherwise costing a PTR and up to 10 address lookups.
    validated: Option<Option<Vec<String>>>,
}

fn result(verdict: Verdict, detail: impl Into<String>) -> SpfResult {
    SpfResult {
        verdict,
        explanation: None,
        detail: detail.into(),
    }
}

impl Evaluator<'_> {
    /// `check_host` on one domain (the top level, an include or a redirect). The explanation is
    /// only worked out where it can be returned.
    fn check(&mut self, domain: &str, want_explanation: bool) -> SpfResult {
        let domain = domain.strip_suffix('.').unwrap_or(domain).to_string();
        if !is_checkable_domain(&domain) {
            return result(Verdict::None, format!("'{domain}' is not a valid domain"));
        }
        if Instant::now() >= self.deadline {
            return result(Verdict::TempError, "time limit reached");
        }
        let txts = match self.lookup.txt(&domain) {
            Ok(txts) => txts,
            Err(DnsError::NxDomain) => {
                return result(Verdict::None, format!("{domain} does not exist"));
            }
            Err(e) => {
                return result(
                    Verdict::TempError,
                    format!("TXT lookup of {domain} failed: {e}"),
                );
            }
        };
        let mut records = txts.iter().filter(|t| is_spf_record(t));
        let text = match (records.next(), records.next()) {
            (None, _) => return result(Verdict::None, format!("{domain} has no SPF record")),
            (Some(_), Some(_)) => {
                return result(
                    Verdict::PermError,
                    format!("{domain} has more than one SPF record"),
                );
            }
            (Some(text), None) => text.clone(),
        };
        let record = match parse_record(&text) {
            Ok(record) => record,
            Err(e) => return result(Verdict::PermError, format!("{domain}: {e}")),
        };
        match self.evaluate(&domain, &record, want_explanation) {
            Ok(outcome) => outcome,
            Err(Abort::Temp(why)) => result(Verdict::TempError, why),
            Err(Abort::Perm(why)) => result(Verdict::PermError, why),
        }
    }

    fn evaluate(
        &mut self,
        domain: &str,
        record: &Record,
        want_explanation: bool,
    ) -> Result<SpfResult, Abort> {
        for directive in &record.directives {
            if self.matches(domain, &directive.mechanism)? {
                let verdict = directive.qualifier.verdict();
                let explanation = if verdict == Verdict::Fail && want_explanation {
                    Some(self.explanation(domain, record.exp.as_ref()))
                } else {
                    None
                };
                return Ok(SpfResult {
                    verdict,
                    explanation,
                    detail: format!("{domain}: matched '{}'", directive.text),
                });
            }
        }
        let Some(redirect) = &record.redirect else {
            return Ok(result(
                Verdict::Neutral,
                format!("{domain}: no mechanism matched"),
            ));
        };
        self.count_dns_term()?;
        let expanded = self.expand(redirect, domain)?;
        let target = target_name(&expanded).unwrap_or(expanded);
        let outcome = self.check(&target, want_explanation);
        match outcome.verdict {
            // §6.1: a redirect to a domain without a record is an error of this domain's.
            Verdict::None => Err(Abort::Perm(format!(
                "{domain}: redirect to {target}: {}",
                outcome.detail
            ))),
            _ => Ok(outcome),
        }
    }

    fn count_dns_term(&mut self) -> Result<(), Abort> {
        self.dns_terms += 1;
        if self.dns_terms > self.opts.max_dns_terms {
            return Err(Abort::Perm(format!(
                "more than {} DNS-querying terms",
                self.opts.max_dns_terms
            )));
        }
        if Instant::now() >= self.deadline {
            return Err(Abort::Temp("time limit reached".to_string()));
        }
        Ok(())
    }

    fn count_void(&mut self) -> Result<(), Abort> {
        self.voids += 1;
        if self.voids > self.opts.max_void_lookups {
            return Err(Abort::Perm(format!(
                "more than {} void lookups",
                self.opts.max_void_lookups
            )));
        }
        Ok(())
    }

    /// The expanded, query-ready target of a mechanism (`None`: it cannot match).
    fn target(
        &mut self,
        spec: Option<&MacroString>,
        domain: &str,
    ) -> Result<Option<String>, Abort> {
        match spec {
            Some(spec) => Ok(target_name(&self.expand(spec, domain)?)),
            None => Ok(Some(domain.to_string())),
        }
    }

    fn matches(&mut self, domain: &str, mechanism: &Mechanism) -> Result<bool, Abort> {
        match mechanism {
            Mechanism::All => Ok(true),
            Mechanism::Ip4(net, cidr) => Ok(match self.ip {
                IpAddr::V4(ip) => in_net4(ip, *net, *cidr),
                IpAddr::V6(_) => false,
            }),
            Mechanism::Ip6(net, cidr) => Ok(match self.ip {
                IpAddr::V6(ip) => in_net6(ip, *net, *cidr),
                IpAddr::V4(_) => false,
            }),
            Mechanism::Include(spec) => {
                self.count_dns_term()?;
                let expanded = self.expand(spec, domain)?;
                let target = target_name(&expanded).unwrap_or(expanded);
                let outcome = self.check(&target, false);
                match outcome.verdict {
                    Verdict::Pass => Ok(true),
                    Verdict::Fail | Verdict::SoftFail | Verdict::Neutral => Ok(false),
                    Verdict::TempError => Err(Abort::Temp(outcome.detail)),
                    Verdict::PermError | Verdict::None => {
                        Err(Abort::Perm(format!("include:{target}: {}", outcome.detail)))
                    }
                }
            }
            Mechanism::A {
                domain: spec,
                cidr4,
                cidr6,
            } => {
                self.count_dns_term()?;
                let Some(name) = self.target(spec.as_ref(), domain)? else {
                    return Ok(false);
                };
                match self.addresses(&name) {
                    Ok(addrs) if addrs.is_empty() => {
                        self.count_void()?;
                        Ok(false)
                    }
                    Ok(addrs) => Ok(addrs.iter().any(|a| self.in_dual(*a, *cidr4, *cidr6))),
                    Err(DnsError::NxDomain) => {
                        self.count_void()?;
                        Ok(false)
                    }
                    Err(e) => Err(Abort::Temp(format!("address lookup of {name}: {e}"))),
                }
            }
            Mechanism::Mx {
                domain: spec,
                cidr4,
                cidr6,
            } => {
                self.count_dns_term()?;
                let Some(name) = self.target(spec.as_ref(), domain)? else {
                    return Ok(false);
                };
                let mut exchanges = match self.lookup.mx(&name) {
                    Ok(mx) if mx.is_empty() => {
                        self.count_void()?;
                        return Ok(false);
                    }
                    Ok(mx) => mx,
                    Err(DnsError::NxDomain) => {
                        self.count_void()?;
                        return Ok(false);
                    }
                    Err(e) => return Err(Abort::Temp(format!("MX lookup of {name}: {e}"))),
                };
                // §4.6.4: more than 10 exchanges to look up is the publisher's error.
                if exchanges.len() > 10 {
                    return Err(Abort::Perm(format!("{name} has more than 10 MX records")));
                }
                exchanges.sort();
                for (_, exchange) in exchanges {
                    let exchange = exchange.trim_end_matches('.');
                    // A null MX (RFC 7505) names no host.
                    if exchange.is_empty() {
                        continue;
                    }
                    self.check_deadline()?;
                    match self.addresses(exchange) {
                        Ok(addrs) => {
                            if addrs.iter().any(|a| self.in_dual(*a, *cidr4, *cidr6)) {
                                return Ok(true);
                            }
                        }
                        Err(DnsError::NxDomain) => {}
                        Err(e) => {
                            return Err(Abort::Temp(format!(
                                "address lookup of MX {exchange}: {e}"
                            )));
                        }
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(spec) => {
                self.count_dns_term()?;
                let Some(target) = self.target(spec.as_ref(), domain)? else {
                    return Ok(false);
                };
                let names = match self.lookup.ptr(self.ip) {
                    Ok(names) if names.is_empty() => {
                        self.count_void()?;
                        return Ok(false);
                    }
                    Ok(names) => names,
                    Err(DnsError::NxDomain) => {
                        self.count_void()?;
                        return Ok(false);
                    }
                    // §5.5: a PTR lookup error means no match, not an error.
                    Err(_) => return Ok(false),
                };
                let target = target.to_ascii_lowercase();
                for name in names.iter().take(10) {
                    let name = name.trim_end_matches('.').to_ascii_lowercase();
                    if is_same_or_sub(&name, &target) && self.validates(&name)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Exists(spec) => {
                self.count_dns_term()?;
                let Some(name) = self.target(Some(spec), domain)? else {
                    return Ok(false);
                };
                // §5.7: always an A query, whatever the client's address family.
                match self.lookup.a(&name) {
                    Ok(addrs) if addrs.is_empty() => {
                        self.count_void()?;
                        Ok(false)
                    }
                    Ok(_) => Ok(true),
                    Err(DnsError::NxDomain) => {
                        self.count_void()?;
                        Ok(false)
                    }
                    Err(e) => Err(Abort::Temp(format!("A lookup of {name}: {e}"))),
                }
            }
        }
    }

    fn check_deadline(&self) -> Result<(), Abort> {
        if Instant::now() >= self.deadline {
            return Err(Abort::Temp("time limit reached".to_string()));
        }
        Ok(())
    }

    /// The addresses of `name` in the client's family.
    fn addresses(&mut self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        match self.ip {
            IpAddr::V4(_) => Ok(self.lookup.a(name)?.into_iter().map(IpAddr::V4).collect()),
            IpAddr::V6(_) => Ok(self
                .lookup
                .aaaa(name)?
                .into_iter()
                .map(IpAddr::V6)
                .collect()),
        }
    }

    fn in_dual(&self, addr: IpAddr, cidr4: u8, cidr6: u8) -> bool {
        match (self.ip, addr) {
            (IpAddr::V4(ip), IpAddr::V4(net)) => in_net4(ip, net, cidr4),
            (IpAddr::V6(ip), IpAddr::V6(net)) => in_net6(ip, net, cidr6),
            _ => false,
        }
    }

    /// Does `name` have an address equal to the client's? Lookup errors just mean no (§5.5).
    fn validates(&mut self, name: &str) -> Result<bool, Abort> {
        self.check_deadline()?;
        Ok(self
            .addresses(name)
            .is_ok_and(|addrs| addrs.contains(&self.ip)))
    }

    /// `%{p}`: a validated name of the client, preferring `domain` itself, then a subdomain of
    /// it, then any (§7.3); `unknown` when there is none.
    fn validated_name(&mut self, domain: &str) -> Result<String, Abort> {
        if self.validated.is_none() {
            let found = match self.lookup.ptr(self.ip) {
                Ok(names) => {
                    let mut validated = Vec::new();
                    for name in names.iter().take(10) {
                        let name = name.trim_end_matches('.');
                        if self.validates(name)? {
                            validated.push(name.to_string());
                        }
                    }
                    Some(validated)
                }
                Err(_) => None,
            };
            self.validated = Some(found);
        }
        let Some(Some(validated)) = &self.validated else {
            return Ok("unknown".to_string());
        };
        let domain = domain.to_ascii_lowercase();
        let pick = validated
            .iter()
            .find(|n| n.eq_ignore_ascii_case(&domain))
            .or_else(|| {
                validated
                    .iter()
                    .find(|n| is_same_or_sub(&n.to_ascii_lowercase(), &domain))
            })
            .or_else(|| validated.first());
        Ok(pick.cloned().unwrap_or_else(|| "unknown".to_string()))
    }

    /// §6.2: the `exp=` text for a `fail`, or the default explanation when it cannot be had.
    fn explanation(&mut self, domain: &str, exp: Option<&MacroString>) -> String {
        if let Some(spec) = exp
            && let Some(text) = self.exp_text(domain, spec)
        {
            return text;
        }
        match parse_macro_string(&self.opts.default_explanation, MacroContext::Explanation) {
            Ok(parsed) => self
                .expand(&parsed, domain)
                .unwrap_or_else(|_| self.opts.default_explanation.clone()),
            Err(_) => self.opts.default_explanation.clone(),
        }
    }

    /// Any DNS error, a count other than one record, non-ASCII text or a macro syntax error
    /// means "as if no exp= were given". The lookup is not a counted term or void lookup.
    fn exp_text(&mut self, domain: &str, spec: &MacroString) -> Option<String> {
        let name = target_name(&self.expand(spec, domain).ok()?)?;
        let txts = self.lookup.txt(&name).ok()?;
        let [text] = txts.as_slice() else {
            return None;
        };
        if !text.is_ascii() {
            return None;
        }
        let parsed = parse_macro_string(text, MacroContext::Explanation).ok()?;
        self.expand(&parsed, domain).ok()
    }

    fn expand(&mut self, spec: &MacroString, domain: &str) -> Result<String, Abort> {
        let mut out = String::new();
        for token in &spec.tokens {
            match token {
                Token::Literal(text) => out.push_str(text),
                Token::Escape(text) => out.push_str(text),
                Token::Macro {
                    letter,
                    url_escape,
                    keep,
                    reverse,
                    delimiters,
                } => {
                    let value = self.macro_value(*letter, domain)?;
                    let value = transform(&value, *keep, *reverse, delimiters);
                    if *url_escape {
                        out.push_str(&url_escape_unreserved(&value));
                    } else {
                        out.push_str(&value);
                    }
                }
            }
        }
        Ok(out)
    }

    fn macro_value(&mut self, letter: u8, domain: &str) -> Result<String, Abort> {
        Ok(match letter {
            b's' => self.sender.clone(),
            b'l' => self.local.clone(),
            b'o' => self.sender_domain.clone(),
            b'd' => domain.to_string(),
            b'i' => dotted_ip(self.ip),
            b'p' => self.validated_name(domain)?,
            b'v' => match self.ip {
                IpAddr::V4(_) => "in-addr".to_string(),
                IpAddr::V6(_) => "ip6".to_string(),
            },
            b'h' => self.helo.clone(),
            b'c' => self.ip.to_string(),
            b'r' => self.opts.receiver.clone(),
            b't' => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                .to_string(),
            // The parser admits no other letter.
            _ => String::new(),
        })
    }
}

/// Split on the delimiters, optionally reverse, keep the right-most `keep` parts, join with '.'
/// (§7.3).
fn transform(value: &str, keep: Option<usize>, reverse: bool, delimiters: &str) -> String {
    let delimiters = if delimiters.is_empty() {
        "."
    } else {
        delimiters
    };
    let mut parts: Vec<&str> = value.split(|c| delimiters.contains(c)).collect();
    if reverse {
        parts.reverse();
    }
    if let Some(keep) = keep
        && keep < parts.len()
    {
        parts.drain(..parts.len() - keep);
    }
    parts.join(".")
}

/// Percent-encode everything but RFC 3986 unreserved characters (upper-case macro letters).
fn url_escape_unreserved(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%{i}`: dotted quad, or dot-separated nibbles for IPv6.
fn dotted_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6
            .octets()
            .iter()
            .flat_map(|b| [b >> 4, b & 0xf])
            .map(|n| format!("{n:X}"))
            .collect::<Vec<_>>()
            .join("."),
    }
}

fn is_same_or_sub(name: &str, domain: &str) -> bool {
    name == domain
        || (name.len() > domain.len()
            && name.ends_with(domain)
            && name.as_bytes()[name.len() - domain.len() - 1] == b'.')
}

fn in_net4(ip: Ipv4Addr, net: Ipv4Addr, cidr: u8) -> bool {
    let mask = if cidr == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(cidr.min(32)))
    };
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_net6(ip: Ipv6Addr, net: Ipv6Addr, cidr: u8) -> bool {
    let mask = if cidr == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(cidr.min(128)))
    };
    u128::from(ip) & mask == u128::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Zone data for unit tests: TXT and A/AAAA records by name; absent names are NXDOMAIN.
    #[derive(Default)]
    struct Zone {
        txt: HashMap<String, Vec<String>>,
        a: HashMap<String, Vec<IpAddr>>,
        ptr: HashMap<IpAddr, Vec<String>>,
        queries: usize,
    }

    impl Zone {
        fn with_txt(mut self, name: &str, txt: &str) -> Self {
            self.txt
                .entry(name.to_string())
                .or_default()
                .push(txt.to_string());
            self
        }
        fn with_addr(mut self, name: &str, ip: &str) -> Self {
            let ip = ip.parse().unwrap();
            self.a.entry(name.to_string()).or_default().push(ip);
            self
        }
        fn exists(&self, name: &str) -> bool {
            self.txt.contains_key(name) || self.a.contains_key(name)
        }
    }

    impl Lookup for Zone {
        fn a(&mut self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
            self.queries += 1;
            if !self.exists(name) {
                return Err(DnsError::NxDomain);
            }
            let addrs = self.a.get(name).cloned().unwrap_or_default();
            Ok(addrs
                .into_iter()
                .filter_map(|ip| match ip {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(_) => None,
                })
                .collect())
        }
        fn aaaa(&mut self, name: &str) -> Result<Vec<Ipv6Addr>, DnsError> {
            self.queries += 1;
            if !self.exists(name) {
                return Err(DnsError::NxDomain);
            }
            let addrs = self.a.get(name).cloned().unwrap_or_default();
            Ok(addrs
                .into_iter()
                .filter_map(|ip| match ip {
                    IpAddr::V6(v6) => Some(v6),
                    IpAddr::V4(_) => None,
                })
                .collect())
        }
        fn txt(&mut self, name: &str) -> Result<Vec<String>, DnsError> {
            self.queries += 1;
            if !self.exists(name) {
                return Err(DnsError::NxDomain);
            }
            Ok(self.txt.get(name).cloned().unwrap_or_default())
        }
        fn mx(&mut self, name: &str) -> Result<Vec<(u16, String)>, DnsError> {
            self.queries += 1;
            if !self.exists(name) {
                return Err(DnsError::NxDomain);
            }
            Ok(Vec::new())
        }
        fn ptr(&mut self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
            self.queries += 1;
            self.ptr.get(&ip).cloned().ok_or(DnsError::NxDomain)
        }
    }

    /// Expand `text` (as a domain-spec, or as explanation text) in the RFC 7208 §7.4 setting.
    fn expand_with(ip: &str, text: &str, context: MacroContext) -> String {
        let mut zone = Zone::default();
        let opts = SpfOptions {
            receiver: "mx.receiver.example".to_string(),
            ..SpfOptions::default()
        };
        let mut eval = Evaluator {
            lookup: &mut zone,
            ip: ip.parse().unwrap(),
            sender: "strong-bad@email.example.com".to_string(),
            local: "strong-bad".to_string(),
            sender_domain: "email.example.com".to_string(),
            helo: "mx.example.org".to_string(),
            opts: &opts,
            dns_terms: 0,
            voids: 0,
            deadline: Instant::now() + Duration::from_secs(20),
            validated: None,
        };
        let parsed = parse_macro_string(text, context).unwrap();
        match eval.expand(&parsed, "email.example.com") {
            Ok(s) => s,
            Err(_) => panic!("expansion of {text} failed"),
        }
    }

    fn expand(text: &str) -> String {
        expand_with("192.0.2.3", text, MacroContext::Domain)
    }

    #[test]
    fn macro_examples_of_rfc7208_section_7_4() {
        let cases = [
            ("%{s}", "strong-bad@email.example.com"),
            ("%{o}", "email.example.com"),
            ("%{d}", "email.example.com"),
            ("%{d4}", "email.example.com"),
            ("%{d3}", "email.example.com"),
            ("%{d2}", "example.com"),
            ("%{d1}", "com"),
            ("%{dr}", "com.example.email"),
            ("%{d2r}", "example.email"),
            ("%{l}", "strong-bad"),
            ("%{l-}", "strong.bad"),
            ("%{lr}", "strong-bad"),
            ("%{lr-}", "bad.strong"),
            ("%{l1r-}", "strong"),
            (
                "%{ir}.%{v}._spf.%{d2}",
                "3.2.0.192.in-addr._spf.example.com",
            ),
            ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
            (
                "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
                "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
            ),
            (
                "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
                "3.2.0.192.in-addr.strong.lp._spf.example.com",
            ),
            (
                "%{d2}.trusted-domains.example.net",
                "example.com.trusted-domains.example.net",
            ),
        ];
        for (macro_string, expansion) in cases {
            assert_eq!(expand(macro_string), expansion, "{macro_string}");
        }
        // The RFC prints the nibbles in lower case, the OpenSPF suite in upper case; DNS does not
        // care, and the suite's explanation check decides the case (upper).
        let v6 = expand_with(
            "2001:db8::cb01",
            "%{ir}.%{v}._spf.%{d2}",
            MacroContext::Domain,
        );
        assert_eq!(
            v6,
            "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com"
        );
    }

    #[test]
    fn macro_escapes_transformers_and_url_encoding() {
        assert_eq!(expand("a%%b%_c%-d.example.com"), "a%b c%20d.example.com");
        assert_eq!(expand("%{L}"), "strong-bad");
        assert_eq!(expand("%{S}"), "strong-bad%40email.example.com");
        assert_eq!(expand("%{l+-}"), "strong.bad");
        assert_eq!(expand("%{d200}"), "email.example.com");
        assert_eq!(expand("%{d99999999999999999999999}"), "email.example.com");
        assert_eq!(
            expand_with("192.0.2.3", "%{c} via %{r}", MacroContext::Explanation),
            "192.0.2.3 via mx.receiver.example"
        );
        assert_eq!(
            expand_with("2001:db8::cb01", "%{c} %{v}", MacroContext::Explanation),
            "2001:db8::cb01 ip6"
        );
        assert_eq!(expand("%{h}"), "mx.example.org");
        // %{p} without PTR data.
        assert_eq!(expand("%{p}"), "unknown");
    }

    #[test]
    fn macro_syntax_errors() {
        for bad in [
            "%", "%a", "%{", "%{x}", "%{d0}", "%{dz}", "%{d2r*}", "%(ir)", "%{}", "a b",
        ] {
            assert!(
                parse_macro_string(bad, MacroContext::Domain).is_err(),
                "{bad:?} should not parse"
            );
        }
        // c, r and t only in explanations.
        for letter in ["%{c}", "%{r}", "%{t}"] {
            assert!(parse_macro_string(letter, MacroContext::Domain).is_err());
            assert!(parse_macro_string(letter, MacroContext::Explanation).is_ok());
        }
        assert!(parse_macro_string("two words", MacroContext::Explanation).is_ok());
        assert!(parse_macro_string("tab\there", MacroContext::Explanation).is_err());
    }

    #[test]
    fn domain_spec_syntax() {
        for good in [
            "example.com",
            "example.com.",
            "%{d}",
            "%{ir}.%{v}._spf.%{d2}",
            "foo:bar/baz.example.com",
            "foo.example.xn--zckzah",
            "x.%%",
        ] {
            assert!(parse_domain_spec(good).is_ok(), "{good} should parse");
        }
        for bad in [
            "",
            "museum",
            "museum.",
            "abc.123",
            "111.222.33.44",
            "example.-com",
            "example.com:8080",
            "foo-bar",
            "%{d}com",
            "-all",
            "foo.example.com\0",
        ] {
            assert!(parse_domain_spec(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn record_parsing() {
        let record = parse_record(
            "v=spf1 +a mx/24//64 -ptr:example.org ~ip4:192.0.2.0/24 ?ip6:2001:db8::/32 \
             exists:%{i}.bl.example.com include:_spf.example.net all redirect=x.example.com \
             exp=exp.example.com unknown.mod=whatever",
        )
        .unwrap();
        assert_eq!(record.directives.len(), 8);
        assert_eq!(
            record.directives[1].mechanism,
            Mechanism::Mx {
                domain: None,
                cidr4: 24,
                cidr6: 64
            }
        );
        assert_eq!(record.directives[2].qualifier, Qualifier::Fail);
        assert_eq!(
            record.directives[3].mechanism,
            Mechanism::Ip4(Ipv4Addr::new(192, 0, 2, 0), 24)
        );
        assert!(record.redirect.is_some() && record.exp.is_some());
        assert!(parse_record("V=SpF1").unwrap().directives.is_empty());

        for bad in [
            "v=spf1 moo",
            "v=spf1 -all.",
            "v=spf1 all:x",
            "v=spf1 a/33",
            "v=spf1 a//129",
            "v=spf1 a/24/64",
            "v=spf1 ip4:1.2.3.4/032",
            "v=spf1 ip4:1.2.3",
            "v=spf1 ip4:01.2.3.4",
            "v=spf1 ip4:1.2.3.4//32",
            "v=spf1 ip6:1.2.3.4",
            "v=spf1 ip6::CAFE::BABE",
            "v=spf1 ptr/0",
            "v=spf1 include",
            "v=spf1 exists:",
            "v=spf1 redirect=a.example.com redirect=b.example.com",
            "v=spf1 exp=a.example.com exp=b.example.com",
            "v=spf1 exp=",
            "v=spf1 1up=foo",
            "v=spf1 =all",
            "v=spf1 foo=%abc",
            "v=spf1 a:ctrl.example.com\rptr",
            "v=spf1 \u{96}all",
            "v=spf1x",
        ] {
            assert!(parse_record(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn dual_cidr_defaults_and_matching() {
        assert_eq!(split_dual_cidr("").unwrap(), ("", 32, 128));
        assert_eq!(split_dual_cidr("//0").unwrap(), ("", 32, 0));
        assert_eq!(split_dual_cidr(":x.com/8").unwrap(), (":x.com", 8, 128));
        assert!(in_net4(
            Ipv4Addr::new(10, 1, 2, 3),
            Ipv4Addr::new(10, 0, 0, 0),
            8
        ));
        assert!(!in_net4(
            Ipv4Addr::new(11, 1, 2, 3),
            Ipv4Addr::new(10, 0, 0, 0),
            8
        ));
        assert!(in_net4(
            Ipv4Addr::new(1, 2, 3, 4),
            Ipv4Addr::new(9, 9, 9, 9),
            0
        ));
        let net: Ipv6Addr = "2001:db8::".parse().unwrap();
        assert!(in_net6("2001:db8:ffff::1".parse().unwrap(), net, 32));
        assert!(!in_net6("2001:db9::1".parse().unwrap(), net, 32));
    }

    fn opts() -> SpfOptions {
        SpfOptions {
            default_explanation: "not allowed for %{d}".to_string(),
            ..SpfOptions::default()
        }
    }

    #[test]
    fn check_host_results_and_explanations() {
        let mut zone = Zone::default()
            .with_txt(
                "example.com",
                "v=spf1 ip4:192.0.2.0/24 include:inc.example.com -all exp=why.example.com",
            )
            .with_txt("inc.example.com", "v=spf1 a:mail.example.com ~all")
            .with_addr("mail.example.com", "198.51.100.7")
            .with_txt("why.example.com", "%{i} may not send for %{d}")
            .with_txt("noexp.example.com", "v=spf1 -all");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let pass = check_mail_from(
            &mut zone,
            ip("192.0.2.9"),
            "a@example.com",
            "h.example",
            &opts(),
        );
        assert_eq!(pass.verdict, Verdict::Pass);
        assert_eq!(pass.explanation, None);
        let via_include =
            check_mail_from(&mut zone, ip("198.51.100.7"), "a@example.com", "h", &opts());
        assert_eq!(via_include.verdict, Verdict::Pass);
        let fail = check_mail_from(&mut zone, ip("203.0.113.1"), "a@example.com", "h", &opts());
        assert_eq!(fail.verdict, Verdict::Fail);
        assert_eq!(
            fail.explanation.as_deref(),
            Some("203.0.113.1 may not send for example.com")
        );
        let default = check_mail_from(
            &mut zone,
            ip("203.0.113.1"),
            "b@noexp.example.com",
            "h",
            &opts(),
        );
        assert_eq!(
            default.explanation.as_deref(),
            Some("not allowed for noexp.example.com")
        );
        // IPv4-mapped IPv6 clients are IPv4 clients.
        let mapped = check_mail_from(
            &mut zone,
            ip("::ffff:192.0.2.9"),
            "a@example.com",
            "h",
            &opts(),
        );
        assert_eq!(mapped.verdict, Verdict::Pass);
        let none = check_mail_from(
            &mut zone,
            ip("192.0.2.9"),
            "a@nowhere.example",
            "h",
            &opts(),
        );
        assert_eq!(none.verdict, Verdict::None);
    }

    #[test]
    fn empty_sender_checks_the_helo_name() {
        let mut zone = Zone::default()
            .with_txt("mx.example.org", "v=spf1 -all exp=e.example.org")
            .with_txt("e.example.org", "%{s} via %{h}");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let got = check_mail_from(&mut zone, ip, "", "mx.example.org", &opts());
        assert_eq!(got.verdict, Verdict::Fail);
        assert_eq!(
            got.explanation.as_deref(),
            Some("postmaster@mx.example.org via mx.example.org")
        );
        let helo = check_helo(&mut zone, ip, "mx.example.org", &opts());
        assert_eq!(helo.verdict, Verdict::Fail);
        // Not a multi-label name: none, without a query.
        let before = zone.queries;
        assert_eq!(
            check_helo(&mut zone, ip, "localhost", &opts()).verdict,
            Verdict::None
        );
        assert_eq!(zone.queries, before);
    }

    #[test]
    fn validated_names_are_looked_up_once_per_check() {
        // Found by fuzzing (fuzz/fuzz_targets/spf.rs): every %{p} did its own PTR and address
        // lookups, so a record with many of them in a redirect chain made thousands of queries.
        let many_p = "%{p}.".repeat(40);
        let mut zone = Zone::default()
            .with_txt(
                "example.com",
                &format!("v=spf1 exists:{many_p}x.example.com redirect={many_p}r.example.com"),
            )
            .with_txt("mail.example.com", "v=spf1 -all")
            .with_addr("mail.example.com", "192.0.2.1")
            .with_addr("other.example.net", "192.0.2.1");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        zone.ptr.insert(
            ip,
            vec![
                "other.example.net".to_string(),
                "mail.example.com.".to_string(),
            ],
        );
        let got = check_mail_from(&mut zone, ip, "a@example.com", "h", &opts());
        // The redirect target (40 labels "mail.example.com") is too long: permerror or none;
        // what matters is the number of queries: TXT, PTR, 2 validations, exists, redirect.
        let _ = got;
        assert!(zone.queries <= 8, "{} queries", zone.queries);
        // The pick still depends on the domain: the one under it first, else the first valid.
        let mut zone = Zone::default()
            .with_txt("example.com", "v=spf1 -all exp=e.example.com")
            .with_txt("e.example.com", "%{p} %{p}")
            .with_addr("mail.example.com", "192.0.2.1")
            .with_addr("other.example.net", "192.0.2.1");
        zone.ptr.insert(
            ip,
            vec![
                "other.example.net".to_string(),
                "mail.example.com".to_string(),
            ],
        );
        let got = check_mail_from(&mut zone, ip, "a@example.com", "h", &opts());
        assert_eq!(
            got.explanation.as_deref(),
            Some("mail.example.com mail.example.com")
        );
    }

    #[test]
    fn time_limit_gives_temperror() {
        let mut zone = Zone::default().with_txt("example.com", "v=spf1 a -all");
        let limited = SpfOptions {
            time_limit: Duration::ZERO,
            ..SpfOptions::default()
        };
        let got = check_mail_from(
            &mut zone,
            "192.0.2.1".parse().unwrap(),
            "a@example.com",
            "h",
            &limited,
        );
        assert_eq!(got.verdict, Verdict::TempError);
    }

    /// xorshift64*: a fixed-seed generator, so a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_records_never_panic() {
        const PIECES: &[&str] = &[
            "v=spf1",
            " ",
            " ",
            "+",
            "-",
            "~",
            "?",
            "all",
            "a",
            "mx",
            "ptr",
            "ip4:",
            "ip6:",
            "include:",
            "exists:",
            "redirect=",
            "exp=",
            ":",
            "/",
            "//",
            "0",
            "24",
            "33",
            "129",
            "128",
            "1.2.3.4",
            "::1",
            "::ffff:1.2.3.4",
            "example.com",
            ".",
            "..",
            "%{",
            "}",
            "%",
            "%%",
            "%_",
            "%-",
            "d",
            "ir",
            "l2r-",
            "H",
            "p",
            "c",
            "=",
            "é",
            "\u{96}",
            "\t",
            "\0",
            "x.example.com",
            "-",
            "9999999999999999999999",
            "%{d99999999999999999999}",
        ];
        let mut rng = Rng(0x5eed_5eed_1234_5678);
        let ips: [IpAddr; 3] = [
            "192.0.2.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            "::ffff:192.0.2.1".parse().unwrap(),
        ];
        for round in 0..20_000 {
            let mut record = String::from(if round % 7 == 0 { "" } else { "v=spf1 " });
            for _ in 0..rng.below(12) {
                record.push_str(PIECES[rng.below(PIECES.len())]);
            }
            let _ = parse_record(&record);
            let _ = parse_macro_string(&record, MacroContext::Explanation);
            let _ = parse_domain_spec(&record);
            if round % 10 == 0 {
                let mut zone = Zone::default()
                    .with_txt("example.com", &record)
                    .with_txt("x.example.com", "v=spf1 redirect=example.com")
                    .with_addr("x.example.com", "192.0.2.1");
                let ip = ips[rng.below(ips.len())];
                let _ = check_mail_from(&mut zone, ip, "user@example.com", &record, &opts());
            }
        }
    }
}
