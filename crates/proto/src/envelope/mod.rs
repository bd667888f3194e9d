//! The envelope: how an agent's report travels back to the collector,
//! encrypted and authenticated under a fresh Diffie-Hellman key per request.
//! This module owns the message formats and the cryptography; it does no IO
//! beyond the byte-stream framing helpers and knows nothing of XML or SSH.
//!
//! # Threat model
//!
//! The envelope runs inside an SSH channel. The SSH host-key check is what
//! stops a man-in-the-middle: the DH exchange here is unauthenticated, so an
//! active attacker who controlled the channel could answer both sides. The
//! envelope is defense in depth: a reply that was altered, truncated, replayed
//! against a different request, or produced by something other than the agent
//! answering *this* request is rejected, and a passive reader of the channel's
//! plaintext (logs, a misconfigured jump host) learns nothing.
//!
//! # Wire format, version 1
//!
//! All integers are unsigned big-endian. A DH group element is always written
//! as exactly 256 bytes, left-padded with zeros.
//!
//! **Group** (RFC 3526, section 3, "group 14"): the 2048-bit MODP prime `p`,
//! generator `g = 2`. Private exponents are 256 random bits from the OS
//! (`OsRng`). A received public value is accepted only in `[2, p-2]`.
//! A key pair is used for exactly one exchange; the collector may generate it
//! before the request is due ([`InitiatorPool`], between rounds), and its
//! exponent is zeroed when it is dropped. The collector's `g^a` comes from a
//! per-process fixed-base table; the agent's `g^b` and both shared secrets
//! from a Montgomery exponentiation on fixed-size limbs (`monty.rs`); both
//! are tested against num-bigint's `modpow`.
//!
//! **Framing**: on a byte stream each message is `len: u32` followed by `len`
//! bytes. A reader bounds `len` by its own limit before allocating; end of
//! stream before the first prefix byte is a clean end.
//!
//! **Request** (collector to agent), exactly 261 bytes:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0   | 4   | magic `"EMRQ"` (`45 4D 52 51`) |
//! | 4   | 1   | version `0x01` |
//! | 5   | 256 | `A = g^a mod p`, the collector's public value |
//!
//! **Reply** (agent to collector), `363 + n` bytes, where `n` is the payload
//! ciphertext length (a non-zero multiple of 16):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0    | 4   | magic `"EMRP"` (`45 4D 52 50`) |
//! | 4    | 1   | version `0x01` |
//! | 5    | 256 | `B = g^b mod p`, the agent's public value |
//! | 261  | 8   | RC2 IV, random |
//! | 269  | 2   | `k`, length of the wrapped key: always 40 |
//! | 271  | 40  | wrapped key: the 32-byte AES key, RC2-CBC, PKCS#7 |
//! | 311  | 16  | AES IV, random |
//! | 327  | 4   | `n`, length of the payload ciphertext |
//! | 331  | n   | payload: AES-256-CBC, PKCS#7, under the AES key |
//! | 331+n | 32 | tag: HMAC-SHA256 over bytes `0 .. 331+n` |
//!
//! **Keys** (RFC 5869, HKDF with SHA-256): `Z = A^b mod p = B^a mod p`, written
//! as 256 bytes, is the input keying material; it is never used directly.
//! The salt is `A || B` (512 bytes), which binds the keys to this request and
//! this reply. Two expansions with distinct labels:
//!
//! - `info = "edgemon envelope v1 rc2 key"`, 16 bytes: the RC2 key, used with
//!   an effective key length of 128 bits (RFC 2268);
//! - `info = "edgemon envelope v1 mac key"`, 32 bytes: the HMAC-SHA256 key
//!   (RFC 2104).
//!
//! The payload key is 32 random bytes per reply (AES-256, FIPS-197). The agent
//! encrypts then MACs; the collector checks, in this order: the size limit,
//! magic, version, `B` in range, then the tag in constant time, and only then
//! parses the lengths and decrypts.

mod dh;
mod frame;
mod monty;
mod pool;

pub use frame::{FrameError, read_frame, write_frame};
pub use pool::InitiatorPool;

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::generic_array::GenericArray;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyIvInit};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use rc2::Rc2;
use sha2::Sha256;

/// Magic opening every request.
pub const REQUEST_MAGIC: [u8; 4] = *b"EMRQ";
/// Magic opening every reply.
pub const REPLY_MAGIC: [u8; 4] = *b"EMRP";
/// The only envelope version this code speaks.
pub const VERSION: u8 = 1;
/// Exact length of a request.
pub const REQUEST_LEN: usize = 5 + dh::ELEMENT_LEN;
/// HKDF label of the RC2 key-wrapping key.
pub const RC2_KEY_INFO: &[u8] = b"edgemon envelope v1 rc2 key";
/// HKDF label of the HMAC key.
pub const MAC_KEY_INFO: &[u8] = b"edgemon envelope v1 mac key";

const RC2_IV_LEN: usize = 8;
const AES_KEY_LEN: usize = 32;
const AES_IV_LEN: usize = 16;
const WRAPPED_KEY_LEN: usize = 40;
const TAG_LEN: usize = 32;
const OFF_B: usize = 5;
const OFF_RC2_IV: usize = OFF_B + dh::ELEMENT_LEN;
const OFF_KEY_LEN: usize = OFF_RC2_IV + RC2_IV_LEN;
const OFF_KEY: usize = OFF_KEY_LEN + 2;
const OFF_AES_IV: usize = OFF_KEY + WRAPPED_KEY_LEN;
const OFF_PAYLOAD_LEN: usize = OFF_AES_IV + AES_IV_LEN;
const OFF_PAYLOAD: usize = OFF_PAYLOAD_LEN + 4;
/// Reply bytes besides the payload ciphertext (363).
pub const REPLY_OVERHEAD: usize = OFF_PAYLOAD + TAG_LEN;
/// Smallest well-formed reply: one block of payload ciphertext.
pub const MIN_REPLY_LEN: usize = REPLY_OVERHEAD + AES_IV_LEN;

/// Why a request or reply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The message does not start with the expected magic.
    #[error("not an edgemon envelope message (bad magic)")]
    BadMagic,
    /// The peer speaks another envelope version.
    #[error("envelope version {0} is not supported (this side speaks {VERSION})")]
    UnsupportedVersion(u8),
    /// The message is larger than allowed.
    #[error("envelope message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Length received.
        len: usize,
        /// Largest length accepted.
        max: usize,
    },
    /// The message is shorter than its fixed part.
    #[error("envelope message truncated: {len} bytes, at least {min} needed")]
    Truncated {
        /// Length received.
        len: usize,
        /// Smallest length that could be valid.
        min: usize,
    },
    /// The peer's DH public value is outside `[2, p-2]`.
    #[error("peer's Diffie-Hellman value is outside [2, p-2]")]
    BadPeerValue,
    /// The reply's HMAC does not match: altered, truncated, or not for this request.
    #[error(
        "reply authentication failed (HMAC mismatch): altered, truncated or not for this request"
    )]
    MacMismatch,
    /// A ciphertext decrypted to invalid PKCS#7 padding.
    #[error("decrypted data has invalid padding")]
    BadPadding,
    /// An authenticated reply whose inner lengths are inconsistent (a sender bug).
    #[error("malformed reply: {0}")]
    Malformed(&'static str),
}

/// The collector's side of one exchange: holds the private exponent between
/// [`Initiator::request`] and [`Initiator::open`]. Use one per request.
pub struct Initiator {
    keys: dh::KeyPair,
}

impl Default for Initiator {
    fn default() -> Self {
        Self::new()
    }
}

impl Initiator {
    /// A fresh initiator with a 256-bit private exponent.
    pub fn new() -> Initiator {
        Initiator {
            keys: dh::KeyPair::generate(dh::SHORT_EXPONENT_LEN),
        }
    }

    /// A fresh initiator with a full 2048-bit exponent; slower, kept only to
    /// measure the cost against [`Initiator::new`].
    pub fn with_full_exponent() -> Initiator {
        Initiator {
            keys: dh::KeyPair::generate(dh::ELEMENT_LEN),
        }
    }

    /// The request message: magic, version, public value.
    pub fn request(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REQUEST_LEN);
        out.extend_from_slice(&REQUEST_MAGIC);
        out.push(VERSION);
        out.extend_from_slice(self.keys.public());
        out
    }

    /// Checks a reply to this initiator's request and returns the payload.
    ///
    /// Nothing is decrypted before the tag is verified; a reply longer than
    /// `max_reply` is refused before any work.
    pub fn open(&self, reply: &[u8], max_reply: usize) -> Result<Vec<u8>, Error> {
        if reply.len() > max_reply {
            return Err(Error::TooLarge {
                len: reply.len(),
                max: max_reply,
            });
        }
        check_header(reply, &REPLY_MAGIC, MIN_REPLY_LEN)?;
        let b_bytes = &reply[OFF_B..OFF_RC2_IV];
        let b = dh::parse_peer(b_bytes).ok_or(Error::BadPeerValue)?;
        let keys = derive(&self.keys.agree(&b), self.keys.public(), b_bytes);

        let (body, tag) = reply.split_at(reply.len() - TAG_LEN);
        let mut mac = new_mac(&keys.mac);
        mac.update(body);
        mac.verify_slice(tag).map_err(|_| Error::MacMismatch)?;

        let key_len = usize::from(u16::from_be_bytes([
            reply[OFF_KEY_LEN],
            reply[OFF_KEY_LEN + 1],
        ]));
        if key_len != WRAPPED_KEY_LEN {
            return Err(Error::Malformed("wrapped key length is not 40"));
        }
        let payload_len = u32::from_be_bytes([
            reply[OFF_PAYLOAD_LEN],
            reply[OFF_PAYLOAD_LEN + 1],
            reply[OFF_PAYLOAD_LEN + 2],
            reply[OFF_PAYLOAD_LEN + 3],
        ]) as usize;
        if payload_len != body.len() - OFF_PAYLOAD || !payload_len.is_multiple_of(AES_IV_LEN) {
            return Err(Error::Malformed("payload length does not match the reply"));
        }

        let rc2 = Rc2::new_with_eff_key_len(&keys.rc2, 128);
        let aes_key = cbc::Decryptor::<Rc2>::inner_iv_init(
            rc2,
            GenericArray::from_slice(&reply[OFF_RC2_IV..OFF_KEY_LEN]),
        )
        .decrypt_padded_vec_mut::<Pkcs7>(&reply[OFF_KEY..OFF_AES_IV])
        .map_err(|_| Error::BadPadding)?;
        if aes_key.len() != AES_KEY_LEN {
            return Err(Error::Malformed("wrapped key is not 32 bytes"));
        }
        cbc::Decryptor::<Aes256>::new(
            GenericArray::from_slice(&aes_key),
            GenericArray::from_slice(&reply[OFF_AES_IV..OFF_PAYLOAD_LEN]),
        )
        .decrypt_padded_vec_mut::<Pkcs7>(&body[OFF_PAYLOAD..])
        .map_err(|_| Error::BadPadding)
    }
}

/// The agent's key pair for one reply, which may be generated before the
/// request arrives (after the previous reply is sent); [`respond_with`]
/// consumes it, so it serves exactly one reply.
pub struct Responder {
    keys: dh::KeyPair,
}

impl Default for Responder {
    fn default() -> Self {
        Self::new()
    }
}

impl Responder {
    /// A fresh responder with a 256-bit private exponent (computed without
    /// the collector's generator table: the agent makes one per request).
    pub fn new() -> Responder {
        Responder {
            keys: dh::KeyPair::generate_untabled(dh::SHORT_EXPONENT_LEN),
        }
    }
}

/// The agent's side: checks `request` and seals `payload` into a reply that
/// only the initiator who sent `request` can open.
pub fn respond(request: &[u8], payload: &[u8]) -> Result<Vec<u8>, Error> {
    respond_with(Responder::new(), request, payload)
}

/// [`respond`] with a key pair generated ahead of time; it is dropped (and
/// its exponent zeroed) whatever the outcome.
pub fn respond_with(ours: Responder, request: &[u8], payload: &[u8]) -> Result<Vec<u8>, Error> {
    if request.len() > REQUEST_LEN {
        return Err(Error::TooLarge {
            len: request.len(),
            max: REQUEST_LEN,
        });
    }
    check_header(request, &REQUEST_MAGIC, REQUEST_LEN)?;
    let a_bytes = &request[5..];
    let a = dh::parse_peer(a_bytes).ok_or(Error::BadPeerValue)?;
    // The payload ciphertext length must fit its u32 field (and the reply a frame).
    let max_payload = u32::MAX as usize - REPLY_OVERHEAD - AES_IV_LEN;
    if payload.len() > max_payload {
        return Err(Error::TooLarge {
            len: payload.len(),
            max: max_payload,
        });
    }

    let ours = ours.keys;
    let keys = derive(&ours.agree(&a), a_bytes, ours.public());

    let mut rc2_iv = [0u8; RC2_IV_LEN];
    let mut aes_key = [0u8; AES_KEY_LEN];
    let mut aes_iv = [0u8; AES_IV_LEN];
    OsRng.fill_bytes(&mut rc2_iv);
    OsRng.fill_bytes(&mut aes_key);
    OsRng.fill_bytes(&mut aes_iv);

    let rc2 = Rc2::new_with_eff_key_len(&keys.rc2, 128);
    let wrapped = cbc::Encryptor::<Rc2>::inner_iv_init(rc2, GenericArray::from_slice(&rc2_iv))
        .encrypt_padded_vec_mut::<Pkcs7>(&aes_key);
    let sealed = cbc::Encryptor::<Aes256>::new(
        GenericArray::from_slice(&aes_key),
        GenericArray::from_slice(&aes_iv),
    )
    .encrypt_padded_vec_mut::<Pkcs7>(payload);

    let mut out = Vec::with_capacity(REPLY_OVERHEAD + sealed.len());
    out.extend_from_slice(&REPLY_MAGIC);
    out.push(VERSION);
    out.extend_from_slice(ours.public());
    out.extend_from_slice(&rc2_iv);
    // Both lengths are bounded above: 40, and at most `max_payload + 16`.
    out.extend_from_slice(&(wrapped.len() as u16).to_be_bytes());
    out.extend_from_slice(&wrapped);
    out.extend_from_slice(&aes_iv);
    out.extend_from_slice(&(sealed.len() as u32).to_be_bytes());
    out.extend_from_slice(&sealed);
    let mut mac = new_mac(&keys.mac);
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    Ok(out)
}

/// Checks magic, version and the minimum length, in that order, so the most
/// telling error wins (a wrong program talking beats a short message).
fn check_header(msg: &[u8], magic: &[u8; 4], min: usize) -> Result<(), Error> {
    if msg.len() < 4 {
        return Err(Error::Truncated {
            len: msg.len(),
            min,
        });
    }
    if &msg[..4] != magic {
        return Err(Error::BadMagic);
    }
    match msg.get(4) {
        None => {
            return Err(Error::Truncated {
                len: msg.len(),
                min,
            });
        }
        Some(&v) if v != VERSION => return Err(Error::UnsupportedVersion(v)),
        Some(_) => {}
    }
    if msg.len() < min {
        return Err(Error::Truncated {
            len: msg.len(),
            min,
        });
    }
    Ok(())
}

struct Keys {
    rc2: [u8; 16],
    mac: [u8; 32],
}

/// HKDF-SHA256 (RFC 5869) from the shared secret, salted with `A || B`.
fn derive(secret: &[u8; dh::ELEMENT_LEN], a: &[u8], b: &[u8]) -> Keys {
    let mut salt = Vec::with_capacity(a.len() + b.len());
    salt.extend_from_slice(a);
    salt.extend_from_slice(b);
    let hk = Hkdf::<Sha256>::new(Some(&salt), secret);
    let mut keys = Keys {
        rc2: [0; 16],
        mac: [0; 32],
    };
    // 16 and 32 bytes are far below HKDF-SHA256's 8160-byte output limit.
    let _ = hk.expand(RC2_KEY_INFO, &mut keys.rc2);
    let _ = hk.expand(MAC_KEY_INFO, &mut keys.mac);
    keys
}

fn new_mac(key: &[u8; 32]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; a 32-byte key cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// The group 14 prime, big-endian, 256 bytes: for tests that build hostile peer values.
pub fn group14_prime() -> [u8; 256] {
    dh::encode(dh::prime())
}
