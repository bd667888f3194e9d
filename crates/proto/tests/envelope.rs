//! The envelope as the collector and agent use it: round trips, and every way
//! a request or reply can be wrong is refused with the right error.

use edgemon_proto::envelope::{
    Error, Initiator, InitiatorPool, MIN_REPLY_LEN, REPLY_OVERHEAD, REQUEST_LEN, Responder,
    group14_prime, respond, respond_with,
};

const MAX: usize = 1 << 20;

fn sealed(payload: &[u8]) -> (Initiator, Vec<u8>) {
    let init = Initiator::new();
    let reply = respond(&init.request(), payload).expect("a fresh request is valid");
    (init, reply)
}

/// A request carrying `value` as the collector's public value, as-is.
fn request_with(value: &[u8]) -> Vec<u8> {
    let mut req = b"EMRQ\x01".to_vec();
    req.extend_from_slice(value);
    req
}

fn be256(small: u8) -> [u8; 256] {
    let mut v = [0u8; 256];
    v[255] = small;
    v
}

#[test]
fn payloads_of_every_padding_length_round_trip() {
    for len in [0, 1, 15, 16, 17, 31, 32, 1000] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let (init, reply) = sealed(&payload);
        assert_eq!(reply.len(), REPLY_OVERHEAD + (len / 16 + 1) * 16);
        assert_eq!(init.open(&reply, MAX).expect("own reply opens"), payload);
    }
}

#[test]
fn full_exponent_initiator_interoperates() {
    let init = Initiator::with_full_exponent();
    let reply = respond(&init.request(), b"<stats/>").expect("valid request");
    assert_eq!(init.open(&reply, MAX).expect("opens"), b"<stats/>");
}

#[test]
fn request_is_magic_version_and_256_byte_value() {
    let req = Initiator::new().request();
    assert_eq!(req.len(), REQUEST_LEN);
    assert_eq!(&req[..5], b"EMRQ\x01");
}

#[test]
fn a_reply_for_another_request_is_a_mac_mismatch() {
    let (_, reply) = sealed(b"payload");
    let other = Initiator::new();
    assert_eq!(other.open(&reply, MAX), Err(Error::MacMismatch));
}

#[test]
fn every_single_byte_flip_of_a_reply_is_rejected() {
    let (init, reply) = sealed(b"<stats version=\"1\">an honest report</stats>");
    for i in 0..reply.len() {
        // One flip per byte keeps the debug-build test short; alternating the
        // bit covers both ends of every byte position class.
        {
            let bit = if i % 2 == 0 { 0x01 } else { 0x80 };
            let mut bad = reply.clone();
            bad[i] ^= bit;
            let result = init.open(&bad, MAX);
            match i {
                0..4 => assert_eq!(result, Err(Error::BadMagic), "flip at {i}"),
                4 => assert_eq!(
                    result,
                    Err(Error::UnsupportedVersion(1 ^ bit)),
                    "flip at {i}"
                ),
                // A flipped B is either out of range or yields other keys.
                5..261 => assert!(
                    matches!(result, Err(Error::MacMismatch | Error::BadPeerValue)),
                    "flip at {i}: {result:?}"
                ),
                // IVs, lengths, both ciphertexts and the tag: only the MAC can
                // catch these before decryption, so this fails without it.
                _ => assert_eq!(result, Err(Error::MacMismatch), "flip at {i}"),
            }
        }
    }
}

#[test]
fn every_truncation_of_a_reply_is_rejected() {
    let (init, reply) = sealed(b"0123456789abcdef0123456789abcdef!");
    for cut in 0..reply.len() {
        let result = init.open(&reply[..cut], MAX);
        if cut < MIN_REPLY_LEN {
            assert!(
                matches!(result, Err(Error::Truncated { .. })),
                "cut at {cut}: {result:?}"
            );
        } else {
            assert_eq!(result, Err(Error::MacMismatch), "cut at {cut}");
        }
    }
}

#[test]
fn appended_bytes_are_rejected() {
    let (init, mut reply) = sealed(b"x");
    reply.push(0);
    assert_eq!(init.open(&reply, MAX), Err(Error::MacMismatch));
}

#[test]
fn a_reply_over_the_limit_is_refused_before_any_work() {
    let (init, reply) = sealed(&[7u8; 100]);
    assert_eq!(
        init.open(&reply, reply.len() - 1),
        Err(Error::TooLarge {
            len: reply.len(),
            max: reply.len() - 1
        })
    );
    // Size is checked first: even garbage of the wrong size says TooLarge.
    assert!(matches!(
        init.open(&[0u8; 64], 10),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn degenerate_and_out_of_range_peer_values_are_rejected() {
    let p = group14_prime();
    let mut p_minus_1 = p;
    p_minus_1[255] -= 1; // p ends in 0xff, so no borrow
    let mut p_minus_2 = p;
    p_minus_2[255] -= 2;
    for (name, value) in [
        ("0", be256(0)),
        ("1", be256(1)),
        ("p-1", p_minus_1),
        ("p", p),
        ("2^2048-1", [0xff; 256]),
    ] {
        assert_eq!(
            respond(&request_with(&value), b"x"),
            Err(Error::BadPeerValue),
            "A = {name}"
        );
    }
    // The bounds themselves are accepted.
    for (name, value) in [("2", be256(2)), ("p-2", p_minus_2)] {
        assert!(respond(&request_with(&value), b"x").is_ok(), "A = {name}");
    }
    // An oversized value (257 bytes) makes an oversized request.
    let mut big = vec![0u8; 257];
    big[256] = 5;
    assert!(matches!(
        respond(&request_with(&big), b"x"),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn degenerate_agent_values_are_rejected_by_the_collector() {
    let init = Initiator::new();
    let (_, reply) = sealed(b"payload");
    let p = group14_prime();
    for value in [be256(0), be256(1), p] {
        let mut bad = reply.clone();
        bad[5..261].copy_from_slice(&value);
        assert_eq!(init.open(&bad, MAX), Err(Error::BadPeerValue));
    }
}

#[test]
fn malformed_requests_name_the_problem() {
    let good = Initiator::new().request();
    let mut magic = good.clone();
    magic[0] = b'X';
    assert_eq!(respond(&magic, b""), Err(Error::BadMagic));
    let mut version = good.clone();
    version[4] = 2;
    assert_eq!(respond(&version, b""), Err(Error::UnsupportedVersion(2)));
    for cut in 0..good.len() {
        assert!(respond(&good[..cut], b"").is_err(), "cut at {cut}");
    }
    assert!(matches!(
        respond(&good[..100], b""),
        Err(Error::Truncated { len: 100, .. })
    ));
    // A reply is not a request.
    let (_, reply) = sealed(b"");
    assert!(respond(&reply, b"").is_err());
}

#[test]
fn two_replies_to_one_payload_differ() {
    let init = Initiator::new();
    let a = respond(&init.request(), b"same").expect("valid");
    let b = respond(&init.request(), b"same").expect("valid");
    assert_ne!(a, b, "fresh agent value, IVs and AES key every time");
}

#[test]
fn a_responder_made_ahead_seals_a_reply_the_pooled_initiator_opens() {
    let pool = InitiatorPool::new();
    pool.refill(2);
    let first = pool.take();
    let second = pool.take();
    let ahead = Responder::new();
    let reply = respond_with(ahead, &first.request(), b"made ahead").expect("respond");
    assert_eq!(first.open(&reply, 1 << 16).expect("open"), b"made ahead");
    // The other pooled initiator holds a different key: the reply is not for it.
    assert_eq!(second.open(&reply, 1 << 16), Err(Error::MacMismatch));
}
