//! Finite-field Diffie-Hellman over the RFC 3526 group 14 (2048-bit MODP,
//! generator 2): key generation, peer-value validation and the fixed-width
//! big-endian encoding. It knows nothing of keys derived from the secret.

use super::monty::{self, Field, FixedBase};
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

/// Montgomery constants of the group 14 prime, computed once per process.
fn field() -> &'static Field {
    static FIELD: OnceLock<Field> = OnceLock::new();
    FIELD.get_or_init(|| Field::new(prime()))
}

/// The table of `g^(j * 16^i)` for the generator 2 and exponents of up to
/// [`SHORT_EXPONENT_LEN`] bytes, built once per process (256 KiB, about as
/// much work as four plain exponentiations).
fn generator_table() -> &'static FixedBase {
    static TABLE: OnceLock<FixedBase> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut two = [0u64; monty::LIMBS];
        two[0] = 2;
        FixedBase::new(field(), &two, SHORT_EXPONENT_LEN * 8)
    })
}

/// A private exponent and its public value `g^x mod p`. The exponent is
/// overwritten with zeros when the pair is dropped; it never lives in a
/// `BigUint` (whose memory could not be cleared).
pub struct KeyPair {
    /// Little-endian 64-bit limbs.
    exponent: Vec<u64>,
    public: [u8; ELEMENT_LEN],
}

impl KeyPair {
    /// A key pair whose exponent has `bytes` random bytes from the OS, its
    /// public value from the per-process generator table (built on first
    /// use): for the collector, which makes one per host per round.
    pub fn generate(bytes: usize) -> KeyPair {
        Self::generate_with(bytes, true)
    }

    /// The same without the table (one plain exponentiation, four times the
    /// products of a table lookup, but no 256 KiB table to build and hold):
    /// for the agent, which makes one per request and runs on every host.
    pub fn generate_untabled(bytes: usize) -> KeyPair {
        Self::generate_with(bytes, false)
    }

    fn generate_with(bytes: usize, table: bool) -> KeyPair {
        let mut raw = vec![0u8; bytes];
        let mut exponent = vec![0u64; bytes.div_ceil(8)];
        // An exponent of 0 or 1 would expose the public value; redraw in the
        // (astronomically unlikely) case.
        loop {
            OsRng.fill_bytes(&mut raw);
            for (limb, chunk) in exponent.iter_mut().zip(raw.rchunks(8)) {
                let mut word = [0u8; 8];
                word[8 - chunk.len()..].copy_from_slice(chunk);
                *limb = u64::from_be_bytes(word);
            }
            if exponent.iter().skip(1).any(|&l| l != 0) || exponent.first().is_some_and(|&l| l > 1)
            {
                break;
            }
        }
        wipe_bytes(&mut raw);
        let tabled = table
            .then(|| generator_table().pow(field(), &exponent))
            .flatten();
        let power = tabled.unwrap_or_else(|| {
            let mut two = [0u64; monty::LIMBS];
            two[0] = 2;
            field().pow(&two, &exponent)
        });
        KeyPair {
            exponent,
            public: monty::to_bytes(&power),
        }
    }

    /// The public value, fixed-width big-endian.
    pub fn public(&self) -> &[u8; ELEMENT_LEN] {
        &self.public
    }

    /// The shared secret with a peer value already checked by [`parse_peer`].
    pub fn agree(&self, peer: &BigUint) -> [u8; ELEMENT_LEN] {
        monty::to_bytes(&field().pow(&monty::limbs_of(peer), &self.exponent))
    }
}

impl Drop for KeyPair {
    fn drop(&mut self) {
        self.exponent.fill(0);
        // The zeros are "read" here, so the stores to memory about to be freed stay.
        std::hint::black_box(&self.exponent);
    }
}

/// Overwrites `bytes` with zeros in a way the compiler keeps.
fn wipe_bytes(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(bytes);
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

    /// The fixed-base and Montgomery paths give exactly num-bigint's `modpow`
    /// for the public value and the shared secret, at both exponent sizes.
    #[test]
    fn keys_and_secrets_equal_num_bigint_modpow() {
        let p = prime();
        let two = BigUint::from(2u8);
        for bytes in [SHORT_EXPONENT_LEN, ELEMENT_LEN] {
            for i in 0..8 {
                let a = if i % 2 == 0 {
                    KeyPair::generate(bytes)
                } else {
                    KeyPair::generate_untabled(bytes)
                };
                let x = exponent_of(&a);
                assert!(x.bits() <= 8 * bytes as u64 && x >= two);
                assert_eq!(a.public(), &encode(&two.modpow(&x, p)));
                let b = KeyPair::generate(SHORT_EXPONENT_LEN);
                let peer = parse_peer(b.public()).expect("in range");
                assert_eq!(a.agree(&peer), encode(&peer.modpow(&x, p)));
            }
        }
        // Peer values at the edges of the accepted range.
        let a = KeyPair::generate(SHORT_EXPONENT_LEN);
        let x = exponent_of(&a);
        for peer in [two.clone(), p - 2u8, p - 3u8] {
            assert_eq!(a.agree(&peer), encode(&peer.modpow(&x, p)));
        }
    }

    fn exponent_of(k: &KeyPair) -> BigUint {
        let bytes: Vec<u8> = k.exponent.iter().flat_map(|l| l.to_le_bytes()).collect();
        BigUint::from_bytes_le(&bytes)
    }
}
