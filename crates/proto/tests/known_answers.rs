//! Known-answer tests for the primitives the envelope is built from. Every
//! vector is copied from its defining document (RFC 2268 section 5, FIPS-197
//! appendix C.3, RFC 4231 section 4, RFC 5869 appendix A.1), never produced
//! by this crate, so a wrong primitive or a wrong way of driving it fails here.

use aes::Aes256;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rc2::Rc2;
use sha2::Sha256;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test vector is hex"))
        .collect()
}

/// RFC 2268 section 5: effective key bits, key, plaintext, ciphertext.
const RC2_VECTORS: [(usize, &str, &str, &str); 8] = [
    (
        63,
        "00000000 00000000",
        "00000000 00000000",
        "ebb773f9 93278eff",
    ),
    (
        64,
        "ffffffff ffffffff",
        "ffffffff ffffffff",
        "278b27e4 2e2f0d49",
    ),
    (
        64,
        "30000000 00000000",
        "10000000 00000001",
        "30649edf 9be7d2c2",
    ),
    (64, "88", "00000000 00000000", "61a8a244 adacccf0"),
    (
        64,
        "88bca90e 90875a",
        "00000000 00000000",
        "6ccf4308 974c267f",
    ),
    (
        64,
        "88bca90e 90875a7f 0f79c384 627bafb2",
        "00000000 00000000",
        "1a807d27 2bbe5db1",
    ),
    (
        128,
        "88bca90e 90875a7f 0f79c384 627bafb2",
        "00000000 00000000",
        "2269552a b0f85ca6",
    ),
    (
        129,
        "88bca90e 90875a7f 0f79c384 627bafb2 16f80a6f 85920584 c42fceb0 be255daf 1e",
        "00000000 00000000",
        "5b78d3a4 3dfff1f1",
    ),
];

#[test]
fn rc2_matches_rfc2268_section5() {
    for (eff_bits, key, plain, cipher) in RC2_VECTORS {
        let rc2 = Rc2::new_with_eff_key_len(&hex(key), eff_bits);
        let mut block = GenericArray::clone_from_slice(&hex(plain));
        rc2.encrypt_block(&mut block);
        assert_eq!(
            block.as_slice(),
            hex(cipher),
            "encrypt, {eff_bits} bits, key {key}"
        );
        rc2.decrypt_block(&mut block);
        assert_eq!(
            block.as_slice(),
            hex(plain),
            "decrypt, {eff_bits} bits, key {key}"
        );
    }
}

#[test]
fn rc2_128_bit_effective_key_is_what_the_envelope_uses() {
    // The envelope's setting: a 16-byte key with 128 effective bits.
    let rc2 = Rc2::new_with_eff_key_len(&hex("88bca90e90875a7f0f79c384627bafb2"), 128);
    let mut block = GenericArray::clone_from_slice(&[0u8; 8]);
    rc2.encrypt_block(&mut block);
    assert_eq!(block.as_slice(), hex("2269552ab0f85ca6"));
}

#[test]
fn aes256_matches_fips197_appendix_c3() {
    let key = hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    let aes = Aes256::new(GenericArray::from_slice(&key));
    let mut block = GenericArray::clone_from_slice(&hex("00112233445566778899aabbccddeeff"));
    aes.encrypt_block(&mut block);
    assert_eq!(block.as_slice(), hex("8ea2b7ca516745bfeafc49904b496089"));
    aes.decrypt_block(&mut block);
    assert_eq!(block.as_slice(), hex("00112233445566778899aabbccddeeff"));
}

#[test]
fn hmac_sha256_matches_rfc4231_cases_1_and_2() {
    let cases = [
        (
            vec![0x0b; 20],
            &b"Hi There"[..],
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            b"Jefe".to_vec(),
            &b"what do ya want for nothing?"[..],
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
    ];
    for (key, data, tag) in cases {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
        mac.update(data);
        assert_eq!(mac.clone().finalize().into_bytes().as_slice(), hex(tag));
        mac.verify_slice(&hex(tag))
            .expect("constant-time verify accepts the RFC tag");
    }
}

#[test]
fn hkdf_sha256_matches_rfc5869_case_1() {
    let ikm = [0x0b; 22];
    let salt = hex("000102030405060708090a0b0c");
    let info = hex("f0f1f2f3f4f5f6f7f8f9");
    let (prk, hk) = Hkdf::<Sha256>::extract(Some(&salt), &ikm);
    assert_eq!(
        prk.as_slice(),
        hex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
    );
    let mut okm = [0u8; 42];
    hk.expand(&info, &mut okm)
        .expect("42 bytes is a valid length");
    assert_eq!(
        okm.as_slice(),
        hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
    );
}
