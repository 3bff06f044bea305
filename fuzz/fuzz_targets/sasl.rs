//! SASL decoding (`surel::net::sasl`): base64 and PLAIN, with the IMAP codec's lenient base64
//! beside it.
//!
//! Invariants:
//! * encoding then decoding gives the input back (both decoders), and the encoder
//!   agrees with base64ct;
//! * whatever a strict RFC 4648 decoder (base64ct, padded or not) accepts, `decode_base64`
//!   accepts with the same result, and whatever `decode_base64` accepts decodes to the number of
//!   octets its length says and re-encodes to the same octets;
//! * IMAP's lenient decoder agrees with `decode_base64` wherever the latter succeeds;
//! * `parse_plain` accepts exactly `[authzid] NUL authcid NUL password` with non-empty UTF-8
//!   user and password, and its fields rebuild the input; `decode_plain` is decode + parse.
#![no_main]

use base64ct::{Base64, Base64Unpadded, Encoding};
use libfuzzer_sys::fuzz_target;
use surel::net::sasl::{
    PlainError, decode_base64, decode_initial_response, decode_plain, encode_base64, parse_plain,
};

fuzz_target!(|data: &[u8]| {
    // Round trips from arbitrary octets.
    let encoded = encode_base64(data);
    assert_eq!(encoded, Base64::encode_string(data));
    assert_eq!(decode_base64(encoded.as_bytes()).as_deref(), Ok(data));
    assert_eq!(
        decode_base64(encoded.trim_end_matches('=').as_bytes()).as_deref(),
        Ok(data)
    );
    assert_eq!(
        surel::imap::codec::base64_decode(encoded.as_bytes()).as_deref(),
        Some(data)
    );

    // The input as base64 text.
    let ours = decode_base64(data);
    for strict in [Base64::decode_vec, Base64Unpadded::decode_vec] {
        if let Ok(s) = std::str::from_utf8(data)
            && let Ok(expected) = strict(s)
        {
            assert_eq!(ours.as_deref(), Ok(&expected[..]), "strict decoder disagrees");
        }
    }
    if let Ok(decoded) = &ours {
        let symbols = data.iter().filter(|&&b| b != b'=').count();
        assert_eq!(decoded.len(), symbols * 6 / 8);
        assert_eq!(decode_base64(encode_base64(decoded).as_bytes()).as_ref(), Ok(decoded));
        assert_eq!(
            surel::imap::codec::base64_decode(data).as_ref(),
            Some(decoded),
            "IMAP's decoder disagrees"
        );
    }
    match decode_initial_response(data) {
        Ok(v) if data == b"=" => assert!(v.is_empty()),
        other => assert_eq!(other, ours),
    }

    // PLAIN on the raw octets.
    let parsed = parse_plain(data);
    let fields: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    match &parsed {
        Ok(creds) => {
            assert_eq!(fields.len(), 3);
            assert!(!creds.authcid.is_empty() && !creds.password.is_empty());
            let mut rebuilt = creds.authzid.clone().unwrap_or_default().into_bytes();
            rebuilt.push(0);
            rebuilt.extend_from_slice(creds.authcid.as_bytes());
            rebuilt.push(0);
            rebuilt.extend_from_slice(creds.password.as_bytes());
            assert_eq!(rebuilt, data);
        }
        Err(PlainError::Malformed) => assert_ne!(fields.len(), 3),
        Err(PlainError::EmptyField) => {
            assert!(fields.len() == 3 && (fields[1].is_empty() || fields[2].is_empty()))
        }
        Err(PlainError::NotUtf8) => {
            assert!(fields.iter().any(|f| std::str::from_utf8(f).is_err()))
        }
        Err(PlainError::Base64(_)) => panic!("parse_plain does not decode base64"),
    }
    assert_eq!(decode_plain(encoded.as_bytes()), parsed);
    match (decode_plain(data), &ours) {
        (Err(PlainError::Base64(e)), Err(ours)) => assert_eq!(&e, ours),
        (result, Ok(raw)) => assert_eq!(result, parse_plain(raw)),
        (result, Err(_)) => panic!("decode_plain gave {result:?} for bad base64"),
    }
});
