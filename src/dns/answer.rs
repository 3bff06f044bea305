//! From hickory's results to the answers a mail server acts on. The one place where NXDOMAIN,
//! NODATA and temporary failures are told apart.
//!
//! hickory 0.26 reports an empty answer as an error,
//! `NetError::Dns(DnsError::NoRecordsFound(NoRecords { response_code, .. }))`, where
//! `response_code` is `NXDomain` when the name does not exist and `NoError` when it exists
//! without records of the asked type (NODATA). SERVFAIL, REFUSED and the other response
//! codes arrive as `DnsError::ResponseCode(code)`; timeouts, I/O and protocol errors as other
//! `NetError` variants. Only the first kind is an answer; all the rest is temporary.

use std::net::IpAddr;

use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::{DnsError as HickoryError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData};
use rand::seq::SliceRandom;

use super::{IpLookup, MxHost, MxLookup, TxtLookup};

/// Why a query gave no records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// NXDOMAIN: the name does not exist.
    NoSuchName,
    /// NODATA: the name exists, without records of the asked type.
    NoData,
    /// Anything else: ask again later.
    Temporary(String),
}

impl Failure {
    pub(super) fn of(error: &NetError) -> Failure {
        match error {
            NetError::Dns(HickoryError::NoRecordsFound(NoRecords { response_code, .. })) => {
                match response_code {
                    ResponseCode::NXDomain => Failure::NoSuchName,
                    ResponseCode::NoError => Failure::NoData,
                    other => Failure::Temporary(format!("no records: {other}")),
                }
            }
            other => Failure::Temporary(other.to_string()),
        }
    }
}

/// The MX records of an answer (a CNAME chain's records are skipped).
pub(super) fn mx_records(lookup: &Lookup) -> Vec<(u16, Name)> {
    lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
            _ => None,
        })
        .collect()
}

/// The A and AAAA addresses of an answer, in answer order.
pub(super) fn addresses(lookup: &Lookup) -> Vec<IpAddr> {
    lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect()
}

/// The TXT records of an answer, each one's character-strings concatenated.
pub(super) fn txt_strings(lookup: &Lookup) -> Vec<String> {
    lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::TXT(txt) => Some(String::from_utf8_lossy(&txt.txt_data.concat()).into_owned()),
            _ => None,
        })
        .collect()
}

/// RFC 5321 §5.1 and RFC 7505 applied to an MX query's result.
pub(super) fn mx_answer(result: Result<Vec<(u16, Name)>, Failure>) -> MxLookup {
    let records = match result {
        Ok(records) => records,
        Err(Failure::NoSuchName) => return MxLookup::NoSuchDomain,
        Err(Failure::NoData) => return MxLookup::NoMx,
        Err(Failure::Temporary(why)) => return MxLookup::TempFail(why),
    };
    if records.is_empty() {
        // Only a CNAME to a name without MX: the domain exists.
        return MxLookup::NoMx;
    }
    // A null MX must be alone (RFC 7505 §3). Beside real MX records it is a
    // misconfiguration, and "." is no host to deliver to, so it is left out.
    let mut hosts: Vec<MxHost> = records
        .into_iter()
        .filter(|(_, exchange)| !exchange.is_root())
        .map(|(preference, exchange)| MxHost {
            preference,
            exchange: host_text(&exchange),
        })
        .collect();
    if hosts.is_empty() {
        return MxLookup::NullMx;
    }
    // Shuffle, then a stable sort: equal preferences stay in random order, so the load
    // spreads over them (RFC 5321 §5.1).
    hosts.shuffle(&mut rand::rng());
    hosts.sort_by_key(|host| host.preference);
    MxLookup::Hosts(hosts)
}

/// A and AAAA results merged: IPv4 first, duplicates removed. Addresses from one family are
/// enough to deliver, even when the other family failed temporarily.
pub(super) fn ip_answer(
    v4: Result<Vec<IpAddr>, Failure>,
    v6: Result<Vec<IpAddr>, Failure>,
) -> IpLookup {
    let mut addrs: Vec<IpAddr> = Vec::new();
    for ip in v4.iter().chain(v6.iter()).flatten() {
        if !addrs.contains(ip) {
            addrs.push(*ip);
        }
    }
    if !addrs.is_empty() {
        return IpLookup::Addrs(addrs);
    }
    match (v4, v6) {
        (Err(Failure::Temporary(why)), _) | (_, Err(Failure::Temporary(why))) => {
            IpLookup::TempFail(why)
        }
        _ => IpLookup::NotFound,
    }
}

pub(super) fn txt_answer(result: Result<Vec<String>, Failure>) -> TxtLookup {
    match result {
        Ok(records) if !records.is_empty() => TxtLookup::Records(records),
        Ok(_) | Err(Failure::NoSuchName) | Err(Failure::NoData) => TxtLookup::NotFound,
        Err(Failure::Temporary(why)) => TxtLookup::TempFail(why),
    }
}

/// An exchange as the relay uses it: lowercase A-labels, no final dot.
fn host_text(name: &Name) -> String {
    let mut text = name.to_ascii().to_ascii_lowercase();
    if text.ends_with('.') {
        text.pop();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hickory_resolver::proto::op::Query;
    use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, MX, TXT};
    use hickory_resolver::proto::rr::{Record, RecordType};

    use super::*;

    fn no_records(code: ResponseCode) -> NetError {
        let query = Query::query(Name::from_ascii("example.test.").unwrap(), RecordType::MX);
        NoRecords::new(query, code).into()
    }

    fn mx(preference: u16, exchange: &str) -> (u16, Name) {
        (preference, Name::from_ascii(exchange).unwrap())
    }

    fn host(preference: u16, exchange: &str) -> MxHost {
        MxHost {
            preference,
            exchange: exchange.into(),
        }
    }

    /// An answer as hickory returns it after following `alias.test` → `target.test`.
    fn lookup(record_type: RecordType, data: Vec<RData>) -> Lookup {
        let alias = Name::from_ascii("alias.test.").unwrap();
        let target = Name::from_ascii("target.test.").unwrap();
        let mut records = vec![Record::from_rdata(
            alias.clone(),
            300,
            RData::CNAME(CNAME(target.clone())),
        )];
        records.extend(
            data.into_iter()
                .map(|rdata| Record::from_rdata(target.clone(), 300, rdata)),
        );
        Lookup::new_with_max_ttl(Query::query(alias, record_type), records)
    }

    #[test]
    fn records_are_taken_by_type_past_a_cname() {
        let exchange = Name::from_ascii("mx.target.test.").unwrap();
        let answer = lookup(
            RecordType::MX,
            vec![RData::MX(MX::new(7, exchange.clone()))],
        );
        assert_eq!(mx_records(&answer), vec![(7, exchange)]);
        assert_eq!(mx_records(&lookup(RecordType::MX, vec![])), vec![]);

        let answer = lookup(
            RecordType::A,
            vec![
                RData::A(A::new(192, 0, 2, 7)),
                RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
            ],
        );
        assert_eq!(
            addresses(&answer),
            vec![
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
                "2001:db8::7".parse::<IpAddr>().unwrap()
            ]
        );
    }

    #[test]
    fn txt_character_strings_are_joined_and_bad_utf8_replaced() {
        let answer = lookup(
            RecordType::TXT,
            vec![
                RData::TXT(TXT::from_bytes(vec![b"v=DKIM1; p=", b"abc", b""])),
                RData::TXT(TXT::from_bytes(vec![b"bad \xff octet"])),
                RData::TXT(TXT::from_bytes(vec![])),
            ],
        );
        assert_eq!(
            txt_strings(&answer),
            vec![
                "v=DKIM1; p=abc".to_string(),
                "bad \u{fffd} octet".into(),
                String::new()
            ]
        );
    }

    #[test]
    fn nxdomain_nodata_and_failures_are_told_apart() {
        assert_eq!(
            Failure::of(&no_records(ResponseCode::NXDomain)),
            Failure::NoSuchName
        );
        assert_eq!(
            Failure::of(&no_records(ResponseCode::NoError)),
            Failure::NoData
        );
        for error in [
            NetError::Dns(HickoryError::ResponseCode(ResponseCode::ServFail)),
            NetError::Dns(HickoryError::ResponseCode(ResponseCode::Refused)),
            NetError::Dns(HickoryError::ResponseCode(ResponseCode::NXDomain)),
            no_records(ResponseCode::ServFail),
            NetError::Timeout,
            NetError::NoConnections,
            NetError::Busy,
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
        ] {
            assert!(
                matches!(Failure::of(&error), Failure::Temporary(ref why) if !why.is_empty()),
                "{error:?} must be temporary"
            );
        }
    }

    #[test]
    fn mx_failures() {
        assert_eq!(mx_answer(Err(Failure::NoSuchName)), MxLookup::NoSuchDomain);
        assert_eq!(mx_answer(Err(Failure::NoData)), MxLookup::NoMx);
        assert_eq!(mx_answer(Ok(vec![])), MxLookup::NoMx);
        assert_eq!(
            mx_answer(Err(Failure::Temporary("SERVFAIL".into()))),
            MxLookup::TempFail("SERVFAIL".into())
        );
    }

    #[test]
    fn mx_sorted_lowercased_without_final_dot() {
        let answer = mx_answer(Ok(vec![
            mx(20, "MX2.Example.Test."),
            mx(5, "mx0.example.test."),
            mx(10, "mx1.example.test."),
        ]));
        assert_eq!(
            answer,
            MxLookup::Hosts(vec![
                host(5, "mx0.example.test"),
                host(10, "mx1.example.test"),
                host(20, "mx2.example.test"),
            ])
        );
    }

    #[test]
    fn null_mx() {
        assert_eq!(mx_answer(Ok(vec![mx(0, ".")])), MxLookup::NullMx);
        // A non-zero preference does not make "." a host.
        assert_eq!(mx_answer(Ok(vec![mx(10, ".")])), MxLookup::NullMx);
        assert_eq!(
            mx_answer(Ok(vec![mx(0, "."), mx(10, "mx.example.test.")])),
            MxLookup::Hosts(vec![host(10, "mx.example.test")])
        );
    }

    #[test]
    fn equal_preferences_come_in_both_orders() {
        let records = vec![mx(10, "a.example.test."), mx(10, "b.example.test.")];
        let mut seen_a_first = false;
        let mut seen_b_first = false;
        // Each order has probability 1/2: missing one in 200 draws is a 2^-199 event.
        for _ in 0..200 {
            let MxLookup::Hosts(hosts) = mx_answer(Ok(records.clone())) else {
                panic!("hosts expected");
            };
            assert_eq!(hosts.len(), 2);
            match hosts[0].exchange.as_str() {
                "a.example.test" => seen_a_first = true,
                "b.example.test" => seen_b_first = true,
                other => panic!("unexpected {other}"),
            }
        }
        assert!(seen_a_first && seen_b_first);
    }

    #[test]
    fn addresses_merged_v4_first_without_duplicates() {
        let v4a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let v4b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(
            ip_answer(Ok(vec![v4a, v4b, v4a]), Ok(vec![v6, v6])),
            IpLookup::Addrs(vec![v4a, v4b, v6])
        );
        assert_eq!(
            ip_answer(Err(Failure::NoData), Ok(vec![v6])),
            IpLookup::Addrs(vec![v6])
        );
        assert_eq!(
            ip_answer(Ok(vec![v4a]), Err(Failure::Temporary("timeout".into()))),
            IpLookup::Addrs(vec![v4a])
        );
    }

    #[test]
    fn address_failures() {
        assert_eq!(
            ip_answer(Err(Failure::NoSuchName), Err(Failure::NoSuchName)),
            IpLookup::NotFound
        );
        assert_eq!(
            ip_answer(Err(Failure::NoData), Ok(vec![])),
            IpLookup::NotFound
        );
        // No address yet, and one family could still have some.
        assert_eq!(
            ip_answer(
                Err(Failure::NoData),
                Err(Failure::Temporary("SERVFAIL".into()))
            ),
            IpLookup::TempFail("SERVFAIL".into())
        );
        assert_eq!(
            ip_answer(
                Err(Failure::Temporary("timeout".into())),
                Err(Failure::NoData)
            ),
            IpLookup::TempFail("timeout".into())
        );
    }

    #[test]
    fn txt_results() {
        assert_eq!(
            txt_answer(Ok(vec!["v=spf1 -all".into()])),
            TxtLookup::Records(vec!["v=spf1 -all".into()])
        );
        assert_eq!(txt_answer(Ok(vec![])), TxtLookup::NotFound);
        assert_eq!(txt_answer(Err(Failure::NoSuchName)), TxtLookup::NotFound);
        assert_eq!(txt_answer(Err(Failure::NoData)), TxtLookup::NotFound);
        assert_eq!(
            txt_answer(Err(Failure::Temporary("REFUSED".into()))),
            TxtLookup::TempFail("REFUSED".into())
        );
    }
}
