//! Finite-field Diffie-Hellman over the RFC 3526 group 14 (2048-bit MODP,
//! generator 2): key generation, peer-value validation and the fixed-width
//! big-endian encoding. It knows nothing of keys derived from the secret.

use num_bigint::BigUint;
use rand::RngCore;
use rand::rngs::OsRng;
use std::sync::OnceLock;

/// Width in bytes of every group element on the wire (2048 bits).
pub const ELEMENT_LEN: usize = 256;

/// Bytes of randomness in the usual private exponent (256 bits).
pub const SHORT_EXPONENT_LEN: usize = 32;

/// The RFC 3526 section 3 prime, `2^2048 - 2^1984 - 1 + 2^64 * ([2^1918 pi] + 124476)`.
const GROUP14_PRIME_HEX: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1",
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD",
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245",
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D",
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F",
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D",
    "670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9",
    "DE2BCBF6955817183995497CEA956AE515D2261898FA0510",
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
);

/// The group 14 prime `p`, parsed once.
pub fn prime() -> &'static BigUint {
    static PRIME: OnceLock<BigUint> = OnceLock::new();
    // The constant is well-formed hex; a failure here is a bug in this file,
    // caught by `prime_is_2048_bits_and_ends_in_ones`.
    PRIME.get_or_init(|| BigUint::parse_bytes(GROUP14_PRIME_HEX.as_bytes(), 16).unwrap_or_default())
}

/// A private exponent and its public value `g^x mod p`.
pub struct KeyPair {
    exponent: BigUint,
    public: [u8; ELEMENT_LEN],
}

impl KeyPair {
    /// A key pair whose exponent has `bytes` random bytes from the OS.
    pub fn generate(bytes: usize) -> KeyPair {
        let mut raw = vec![0u8; bytes];
        OsRng.fill_bytes(&mut raw);
        // An exponent of 0 or 1 would expose the public value; redraw in the
        // (astronomically unlikely) case.
        let mut exponent = BigUint::from_bytes_be(&raw);
        while exponent < BigUint::from(2u8) {
            OsRng.fill_bytes(&mut raw);
            exponent = BigUint::from_bytes_be(&raw);
        }
        let public = encode(&BigUint::from(2u8).modpow(&exponent, prime()));
        KeyPair { exponent, public }
    }

    /// The public value, fixed-width big-endian.
    pub fn public(&self) -> &[u8; ELEMENT_LEN] {
        &self.public
    }

    /// The shared secret with a peer value already checked by [`parse_peer`].
    pub fn agree(&self, peer: &BigUint) -> [u8; ELEMENT_LEN] {
        encode(&peer.modpow(&self.exponent, prime()))
    }
}

/// Reads a peer's public value and accepts it only in `[2, p-2]`, which
/// excludes the degenerate elements 0, 1 and `p-1` and anything `>= p`.
pub fn parse_peer(bytes: &[u8]) -> Option<BigUint> {
    if bytes.len() != ELEMENT_LEN {
        return None;
    }
    let value = BigUint::from_bytes_be(bytes);
    let p = prime();
    let upper = p - BigUint::from(2u8);
    (value >= BigUint::from(2u8) && value <= upper).then_some(value)
}

/// Fixed-width big-endian encoding, left-padded with zeros.
pub fn encode(value: &BigUint) -> [u8; ELEMENT_LEN] {
    let bytes = value.to_bytes_be();
    let mut out = [0u8; ELEMENT_LEN];
    // Every value here is reduced mod p, so it fits; keep the low bytes if not.
    let take = bytes.len().min(ELEMENT_LEN);
    out[ELEMENT_LEN - take..].copy_from_slice(&bytes[bytes.len() - take..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prime_is_2048_bits_and_ends_in_ones() {
        let p = prime();
        assert_eq!(p.bits(), 2048);
        assert_eq!(encode(p)[..8], [0xff; 8]);
        assert_eq!(encode(p)[248..], [0xff; 8]);
    }

    #[test]
    fn both_sides_agree() {
        let a = KeyPair::generate(SHORT_EXPONENT_LEN);
        let b = KeyPair::generate(SHORT_EXPONENT_LEN);
        let pa = parse_peer(a.public()).expect("a's value is in range");
        let pb = parse_peer(b.public()).expect("b's value is in range");
        assert_eq!(a.agree(&pb), b.agree(&pa));
    }
}
