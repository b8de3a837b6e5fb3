//! The OpenSPF RFC 7208 test suite (tests/data/spf/rfc7208-tests.yml, BSD licence beside it):
//! each section's zone data is served to the evaluator through a `Lookup`, and every case must
//! give one of its acceptable results (and its explanation, when the case names one).
//!
//! Zone semantics follow the suite's reference driver (pyspf's test/testspf.py), as recorded in
//! tests/data/spf/SOURCE.txt: a name's `SPF` records are also served as TXT unless the name has
//! TXT records of its own (`TXT: NONE` counts as having them, and serves nothing); a `TIMEOUT`
//! entry times out a query unless a record of the queried type comes before it, in which case it
//! ends the answer. A name that is absent is NXDOMAIN; a present name without the type is NODATA.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustfilter::net::dns::{DnsError, Lookup};
use rustfilter::net::spf::{SpfOptions, check_mail_from};
use serde_yaml::Value;

const SUITE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/spf/rfc7208-tests.yml"
);

#[derive(Debug, Clone)]
enum Entry {
    Timeout,
    Txt(String),
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Mx(u16, String),
    Ptr(String),
    Cname(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Txt,
    A,
    Aaaa,
    Mx,
    Ptr,
}

fn kind_of(entry: &Entry) -> Option<Kind> {
    match entry {
        Entry::Txt(_) => Some(Kind::Txt),
        Entry::A(_) => Some(Kind::A),
        Entry::Aaaa(_) => Some(Kind::Aaaa),
        Entry::Mx(..) => Some(Kind::Mx),
        Entry::Ptr(_) => Some(Kind::Ptr),
        Entry::Timeout | Entry::Cname(_) => None,
    }
}

struct Zone {
    names: HashMap<String, Vec<Entry>>,
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// TXT/SPF data: one string, or a list of strings glued together (an empty list: a null TXT).
fn txt_value(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Sequence(parts) => parts
            .iter()
            .map(|p| {
                p.as_str()
                    .map(str::to_string)
                    .ok_or(format!("bad TXT part {p:?}"))
            })
            .collect(),
        other => Err(format!("bad TXT value {other:?}")),
    }
}

fn scalar(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("expected a scalar, got {other:?}")),
    }
}

impl Zone {
    fn from_yaml(zonedata: &Value) -> Result<Zone, String> {
        let mut names = HashMap::new();
        let Some(map) = zonedata.as_mapping() else {
            return Err("zonedata is not a mapping".to_string());
        };
        for (name, records) in map {
            let name = normalise(&scalar(name)?);
            let mut entries = Vec::new();
            let mut spf_texts = Vec::new();
            let mut has_txt = false;
            for record in records.as_sequence().ok_or("records are not a list")? {
                if record.as_str() == Some("TIMEOUT") {
                    entries.push(Entry::Timeout);
                    continue;
                }
                let map = record
                    .as_mapping()
                    .ok_or(format!("bad record {record:?}"))?;
                for (kind, value) in map {
                    let kind = scalar(kind)?;
                    if kind == "TXT" {
                        has_txt = true;
                    }
                    if value.as_str() == Some("NONE") {
                        continue;
                    }
                    let entry = match kind.as_str() {
                        "SPF" => {
                            spf_texts.push(txt_value(value)?);
                            continue;
                        }
                        "TXT" => Entry::Txt(txt_value(value)?),
                        "A" => Entry::A(scalar(value)?.parse().map_err(|e| format!("{e}"))?),
                        "AAAA" => Entry::Aaaa(scalar(value)?.parse().map_err(|e| format!("{e}"))?),
                        "MX" => {
                            let pair = value.as_sequence().ok_or("MX is not a pair")?;
                            let pref = pair
                                .first()
                                .and_then(Value::as_u64)
                                .ok_or("bad MX preference")?;
                            let host = pair.get(1).ok_or("MX without exchange")?;
                            Entry::Mx(pref as u16, scalar(host)?)
                        }
                        "PTR" => Entry::Ptr(scalar(value)?),
                        "CNAME" => Entry::Cname(scalar(value)?),
                        other => return Err(format!("unknown record type {other}")),
                    };
                    entries.push(entry);
                }
            }
            if !has_txt {
                entries.extend(spf_texts.into_iter().map(Entry::Txt));
            }
            names.insert(name, entries);
        }
        Ok(Zone { names })
    }

    fn query(&self, name: &str, kind: Kind) -> Result<Vec<Entry>, DnsError> {
        let mut name = normalise(name);
        for _ in 0..8 {
            let entries = self.names.get(&name).ok_or(DnsError::NxDomain)?;
            let mut answer = Vec::new();
            let mut seen_type = false;
            let mut cname = None;
            for entry in entries {
                match entry {
                    Entry::Timeout if !seen_type => return Err(DnsError::Timeout),
                    Entry::Timeout => break,
                    Entry::Cname(target) => cname = Some(normalise(target)),
                    _ if kind_of(entry) == Some(kind) => {
                        seen_type = true;
                        answer.push(entry.clone());
                    }
                    _ => {}
                }
            }
            match cname {
                Some(target) if answer.is_empty() => name = target,
                _ => return Ok(answer),
            }
        }
        // A CNAME loop: what a recursive server reports as SERVFAIL.
        Err(DnsError::ServerFailure(2))
    }
}

impl Lookup for Zone {
    fn a(&mut self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        Ok(self
            .query(name, Kind::A)?
            .into_iter()
            .filter_map(|e| match e {
                Entry::A(a) => Some(a),
                _ => None,
            })
            .collect())
    }

    fn aaaa(&mut self, name: &str) -> Result<Vec<Ipv6Addr>, DnsError> {
        Ok(self
            .query(name, Kind::Aaaa)?
            .into_iter()
            .filter_map(|e| match e {
                Entry::Aaaa(a) => Some(a),
                _ => None,
            })
            .collect())
    }

    fn txt(&mut self, name: &str) -> Result<Vec<String>, DnsError> {
        Ok(self
            .query(name, Kind::Txt)?
            .into_iter()
            .filter_map(|e| match e {
                Entry::Txt(t) => Some(t),
                _ => None,
            })
            .collect())
    }

    fn mx(&mut self, name: &str) -> Result<Vec<(u16, String)>, DnsError> {
        Ok(self
            .query(name, Kind::Mx)?
            .into_iter()
            .filter_map(|e| match e {
                Entry::Mx(p, h) => Some((p, h)),
                _ => None,
            })
            .collect())
    }

    fn ptr(&mut self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        let name = match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
            }
            IpAddr::V6(v6) => {
                let mut labels: Vec<String> = v6
                    .octets()
                    .iter()
                    .flat_map(|b| [b >> 4, b & 0xf])
                    .map(|n| format!("{n:x}"))
                    .collect();
                labels.reverse();
                format!("{}.ip6.arpa", labels.join("."))
            }
        };
        Ok(self
            .query(&name, Kind::Ptr)?
            .into_iter()
            .filter_map(|e| match e {
                Entry::Ptr(p) => Some(p),
                _ => None,
            })
            .collect())
    }
}

fn field(case: &Value, key: &str) -> Result<String, String> {
    scalar(case.get(key).ok_or(format!("missing {key}"))?)
}

#[test]
fn rfc7208_suite() {
    let text = std::fs::read_to_string(SUITE).expect("the suite file is part of the repository");
    let opts = SpfOptions {
        default_explanation: "DEFAULT".to_string(),
        ..SpfOptions::default()
    };
    let (mut passed, mut failed) = (0, 0);
    let mut failures = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let section: Value =
            serde::Deserialize::deserialize(document).expect("the suite is valid YAML");
        let description = section
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let zone = Zone::from_yaml(&section["zonedata"])
            .unwrap_or_else(|e| panic!("section '{description}': bad zone data: {e}"));
        let mut zone = zone;
        let tests = section["tests"]
            .as_mapping()
            .expect("each section has tests");
        for (name, case) in tests {
            let name = format!("{} / {}", description, name.as_str().unwrap_or("?"));
            let outcome = (|| -> Result<Option<String>, String> {
                let host: IpAddr = field(case, "host")?
                    .parse()
                    .map_err(|e| format!("bad host: {e}"))?;
                let mail_from = field(case, "mailfrom")?;
                let helo = field(case, "helo")?;
                let expected: Vec<String> = match &case["result"] {
                    Value::Sequence(list) => list.iter().map(scalar).collect::<Result<_, _>>()?,
                    other => vec![scalar(other)?],
                };
                let got = check_mail_from(&mut zone, host, &mail_from, &helo, &opts);
                if !expected.iter().any(|e| e == got.verdict.as_str()) {
                    return Ok(Some(format!(
                        "expected {expected:?}, got {} ({})",
                        got.verdict, got.detail
                    )));
                }
                if let Some(want) = case.get("explanation") {
                    let want = scalar(want)?;
                    if got.explanation.as_deref() != Some(want.as_str()) {
                        return Ok(Some(format!(
                            "explanation: expected {want:?}, got {:?} ({})",
                            got.explanation, got.detail
                        )));
                    }
                }
                Ok(None)
            })();
            match outcome {
                Ok(None) => passed += 1,
                Ok(Some(why)) | Err(why) => {
                    failed += 1;
                    failures.push(format!("{name}: {why}"));
                }
            }
        }
    }
    for failure in &failures {
        println!("FAILED {failure}");
    }
    println!("SPF suite: {passed} passed, {failed} failed");
    assert_eq!(failed, 0, "SPF suite failures:\n{}", failures.join("\n"));
    assert_eq!(passed, 203, "the suite has 203 cases");
}
