//! Signatures checked by an independent verifier: mail-auth's DKIM verifier, fed the TXT
//! records `txt_record_value` publishes (through its resolver cache, so no DNS is involved;
//! `tests/dkim.rs` goes through a real DNS server).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};

use super::*;

/// TXT records as a DNS zone would serve them.
#[derive(Default)]
struct PublishedRecords(Mutex<HashMap<Box<str>, Txt>>);

impl ResolverCache<Box<str>, Txt> for PublishedRecords {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(name).cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().remove(name)
    }

    fn insert(&self, name: Box<str>, value: Txt, _valid_until: Instant) {
        self.0.lock().unwrap().insert(name, value);
    }
}

impl PublishedRecords {
    fn publish(&self, key: &DkimKey) {
        let record = DomainKey::parse(txt_record_value(key).as_bytes()).expect("record parses");
        self.insert(
            format!("{}.", key.record_name()).into(),
            record.into(),
            Instant::now(),
        );
    }
}

/// mail-auth's verdicts on every DKIM-Signature of `message`, with `published` as the DNS.
fn verify(message: &[u8], published: &[&DkimKey]) -> Vec<DkimResult> {
    let records = PublishedRecords::default();
    for key in published {
        records.publish(key);
    }
    let parsed = AuthenticatedMessage::parse(message).expect("message parses");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // A name server on a closed port: a record not published fails fast, never leaks out.
        let mut udp = ConnectionConfig::udp();
        udp.port = 9;
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_millis(300);
        opts.attempts = 1;
        let config = ResolverConfig::from_parts(
            None,
            vec![],
            vec![NameServerConfig::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                true,
                vec![udp],
            )],
        );
        let authenticator = MessageAuthenticator::new(config, opts).unwrap();
        authenticator
            .verify_dkim(Parameters::new(&parsed).with_txt_cache(&records))
            .await
            .into_iter()
            .map(|output| output.result().clone())
            .collect()
    })
}

fn signed(key: &DkimKey, message: &[u8]) -> Vec<u8> {
    let mut out = sign(key, message).unwrap();
    out.extend_from_slice(message);
    out
}

fn load_one(dir: &Path, domain: &str, algorithm: DkimAlgorithm) -> DkimKeys {
    generate(dir, domain, "surel", algorithm).unwrap();
    DkimKeys::load(dir).unwrap()
}

const MESSAGE: &str = "From: Alice Example <alice@example.org>\r\n\
To: bob@example.net\r\n\
Subject: Quarterly  report\r\n\
Date: Mon, 1 Dec 2025 10:00:00 +0000\r\n\
Message-ID: <1@example.org>\r\n\
X-Mailer: something\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Hello Bob,\r\n\
\r\n\
the  numbers are in.\r\n\
-- \r\n\
Alice\r\n";

/// The tags of a DKIM-Signature field, unfolded.
fn tags(field: &[u8]) -> HashMap<String, String> {
    let text = std::str::from_utf8(field).unwrap();
    let value = text.strip_prefix("DKIM-Signature:").expect("field name");
    let unfolded: String = value.split("\r\n").collect::<Vec<_>>().join("");
    unfolded
        .split(';')
        .filter_map(|tag| tag.split_once('='))
        .map(|(name, value)| {
            let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
            (name.trim().to_string(), value)
        })
        .collect()
}

#[test]
fn both_algorithms_sign_and_verify() {
    for (algorithm, a_tag) in [
        (DkimAlgorithm::Rsa, "rsa-sha256"),
        (DkimAlgorithm::Ed25519, "ed25519-sha256"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let keys = load_one(tmp.path(), "example.org", algorithm);
        let key = keys.for_domain("example.org").unwrap();
        let field = sign(key, MESSAGE.as_bytes()).unwrap();

        // A well-formed, folded header field.
        assert!(field.starts_with(b"DKIM-Signature: v=1; "), "{field:?}");
        assert!(field.ends_with(b"\r\n"));
        let text = std::str::from_utf8(&field).unwrap();
        let lines: Vec<&str> = text.strip_suffix("\r\n").unwrap().split("\r\n").collect();
        assert!(lines.len() > 1, "folded: {text}");
        for line in &lines[1..] {
            assert!(line.starts_with([' ', '\t']), "continuation line {line:?}");
        }
        assert!(lines.iter().all(|l| l.len() <= 998 && !l.contains('\n')));

        let tags = tags(&field);
        assert_eq!(tags["a"], a_tag);
        assert_eq!(tags["d"], "example.org");
        assert_eq!(tags["s"], "surel");
        assert_eq!(tags["c"], "relaxed/relaxed");
        // Present fields, bottom-up, X-Mailer not among them, From oversigned.
        assert_eq!(
            tags["h"],
            "Content-Type:MIME-Version:Message-ID:Date:Subject:To:From:From"
        );
        assert!(!tags.contains_key("l"), "no body length limit");

        let message = signed(key, MESSAGE.as_bytes());
        assert_eq!(verify(&message, &[key]), [DkimResult::Pass], "{algorithm}");
    }
}

#[test]
fn relaxed_canonicalization_tolerates_whitespace_but_not_content() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = load_one(tmp.path(), "example.org", DkimAlgorithm::Ed25519);
    let key = keys.for_domain("example.org").unwrap();
    let message = String::from_utf8(signed(key, MESSAGE.as_bytes())).unwrap();
    assert_eq!(verify(message.as_bytes(), &[key]), [DkimResult::Pass]);

    let tolerated = [
        // Header: name case, whitespace around the colon and inside the value, refolding.
        (
            "Subject: Quarterly  report",
            "subject:Quarterly \t report  ",
        ),
        ("To: bob@example.net", "TO: \r\n\tbob@example.net"),
        // Body: trailing whitespace, runs of spaces, trailing empty lines.
        ("the  numbers are in.\r\n", "the numbers   are in. \t\r\n"),
        ("Alice\r\n", "Alice\r\n\r\n\r\n"),
        // A header field that is not signed may be added by a relay.
        (
            "X-Mailer: something\r\n",
            "X-Mailer: something\r\nX-Spam: no\r\n",
        ),
    ];
    for (from, to) in tolerated {
        let changed = message.replacen(from, to, 1);
        assert_ne!(changed, message);
        assert_eq!(
            verify(changed.as_bytes(), &[key]),
            [DkimResult::Pass],
            "{from:?} -> {to:?}"
        );
    }

    // mail-auth reports a changed body as "neutral" (body hash mismatch, checked first) and a
    // changed signed header as "fail" (bad signature); neither is a pass, which is what DMARC
    // and every receiver look at.
    let body_changed = [
        ("the  numbers are in.", "the  numbers are out."),
        ("Hello Bob,\r\n\r\n", "Hello Bob,\r\n"),
        ("Alice\r\n", "Alice\r\nP.S. wire the money\r\n"),
    ];
    for (from, to) in body_changed {
        let changed = message.replacen(from, to, 1);
        assert_ne!(changed, message);
        assert_eq!(
            verify(changed.as_bytes(), &[key]),
            [BODY_HASH_MISMATCH],
            "{from:?} -> {to:?}"
        );
    }
    let header_changed = [
        ("Subject: Quarterly  report", "Subject: Quarterly  reports"),
        ("Date: Mon, 1 Dec", "Date: Tue, 2 Dec"),
        // A second From above the signed one (the one a mail client would show).
        ("To: bob", "From: ceo@example.org\r\nTo: bob"),
    ];
    for (from, to) in header_changed {
        let changed = message.replacen(from, to, 1);
        assert_ne!(changed, message);
        let results = verify(changed.as_bytes(), &[key]);
        assert!(
            matches!(results.as_slice(), [DkimResult::Fail(_)]),
            "{from:?} -> {to:?}: {results:?}"
        );
    }
}

const BODY_HASH_MISMATCH: DkimResult = DkimResult::Neutral(mail_auth::Error::Dkim(
    mail_auth::dkim::DkimError::FailedBodyHashMatch,
));

#[test]
fn a_different_published_key_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = load_one(tmp.path(), "example.org", DkimAlgorithm::Rsa);
    let key = keys.for_domain("example.org").unwrap();
    let message = signed(key, MESSAGE.as_bytes());

    let other_dir = tempfile::tempdir().unwrap();
    let other_keys = load_one(other_dir.path(), "example.org", DkimAlgorithm::Rsa);
    let impostor = other_keys.for_domain("example.org").unwrap();
    assert_eq!(impostor.record_name(), key.record_name());
    let results = verify(&message, &[impostor]);
    assert!(
        matches!(results.as_slice(), [DkimResult::Fail(_)]),
        "{results:?}"
    );
}

#[test]
fn signs_only_what_is_present_and_needs_a_from() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = load_one(tmp.path(), "example.org", DkimAlgorithm::Ed25519);
    let key = keys.for_domain("example.org").unwrap();

    let minimal = b"from: a@example.org\r\ncc: c@example.net\r\n\r\n";
    let field = sign(key, minimal).unwrap();
    assert_eq!(tags(&field)["h"], "cc:from:From");
    let mut message = field.clone();
    message.extend_from_slice(minimal);
    assert_eq!(verify(&message, &[key]), [DkimResult::Pass]);

    // Two To fields: both signed.
    let two = b"From: a@example.org\r\nTo: x@example.net\r\nTo: y@example.net\r\n\r\nhi\r\n";
    assert_eq!(tags(&sign(key, two).unwrap())["h"], "To:To:From:From");

    // No body at all.
    let headers_only = b"From: a@example.org\r\nSubject: x\r\n";
    let mut message = sign(key, headers_only).unwrap();
    message.extend_from_slice(headers_only);
    assert_eq!(verify(&message, &[key]), [DkimResult::Pass]);

    for no_from in [
        &b"To: b@example.net\r\n\r\nbody\r\n"[..],
        b"",
        b"\r\n\r\nFrom: a@example.org\r\n",
        b"Sender: a@example.org\r\n\r\n",
    ] {
        let err = sign(key, no_from).unwrap_err();
        assert!(err.0.contains("no From"), "{err}");
    }
}

fn run_monoio<F: std::future::Future>(future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn signer_pool_from_monoio() {
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path(), "example.org", "surel", DkimAlgorithm::Rsa).unwrap();
    generate(tmp.path(), "example.net", "ed", DkimAlgorithm::Ed25519).unwrap();
    let signer = DkimSigner::start(DkimKeys::load(tmp.path()).unwrap(), 2);
    assert_eq!(signer.keys().len(), 2);

    let message_from = |from: &str, n: usize| {
        Bytes::from(format!(
            "From: {from}\r\nTo: x@elsewhere.example\r\nSubject: n{n}\r\n\r\nmessage {n}\r\n"
        ))
    };
    let mut messages = Vec::new();
    for n in 0..12 {
        let from = if n % 2 == 0 {
            "a@Example.ORG"
        } else {
            "b@example.net"
        };
        messages.push(message_from(from, n));
    }
    let results = run_monoio({
        let signer = signer.clone();
        let messages = messages.clone();
        async move {
            let tasks: Vec<_> = messages
                .into_iter()
                .map(|m| {
                    let signer = signer.clone();
                    monoio::spawn(async move { signer.sign(m).await })
                })
                .collect();
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await);
            }
            // Not ours to sign: answered without a signer thread.
            assert_eq!(
                signer.sign(message_from("c@other.example", 99)).await,
                Ok(None)
            );
            assert_eq!(
                signer
                    .sign(Bytes::from_static(b"To: x@y.example\r\n\r\n"))
                    .await,
                Ok(None)
            );
            assert_eq!(
                signer.sign(message_from("sub@mail.example.org", 98)).await,
                Ok(None),
                "a subdomain has no key of its own"
            );
            results
        }
    });

    let keys = signer.keys();
    for (n, (message, result)) in messages.iter().zip(results).enumerate() {
        let field = result.unwrap().expect("a key covers this domain");
        let expected_domain = if n % 2 == 0 {
            "example.org"
        } else {
            "example.net"
        };
        assert_eq!(tags(&field)["d"], expected_domain);
        let mut signed = field;
        signed.extend_from_slice(message);
        let key = keys.for_domain(expected_domain).unwrap();
        assert_eq!(verify(&signed, &[key]), [DkimResult::Pass], "message {n}");
    }
}

#[test]
fn signer_pool_refuses_work_beyond_its_queue() {
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path(), "example.org", "surel", DkimAlgorithm::Rsa).unwrap();
    // One thread, room for 4 waiting jobs; 200 requests arrive at once.
    let signer = DkimSigner::start_with_queue(DkimKeys::load(tmp.path()).unwrap(), 1, 4);
    let message = Bytes::from_static(MESSAGE.as_bytes());
    let results = run_monoio(async {
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (signer, message) = (signer.clone(), message.clone());
                monoio::spawn(async move { signer.sign(message).await })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await);
        }
        results
    });
    let signed = results.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
    let refused: Vec<&DkimError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(signed + refused.len(), 200, "{results:?}");
    assert!(signed >= 4, "the queue's worth is signed: {signed}");
    // All 200 are offered within a few milliseconds, about what one RSA signature takes:
    // wide margin for a loaded machine, still far from "no limit".
    assert!(refused.len() >= 100, "{} refused", refused.len());
    assert!(
        refused.iter().all(|e| e.0.contains("queue full")),
        "{refused:?}"
    );

    // Once drained, the pool signs again.
    let again = run_monoio(signer.sign(message.clone())).unwrap().unwrap();
    let mut full = again;
    full.extend_from_slice(&message);
    let key = signer.keys().for_domain("example.org").unwrap();
    assert_eq!(verify(&full, &[key]), [DkimResult::Pass]);
}
