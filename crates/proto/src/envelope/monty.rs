//! Modular exponentiation modulo the group 14 prime on fixed-size limbs, for
//! the envelope's Diffie-Hellman. num-bigint stays the reference (its
//! `modpow` is what the tests compare against) and does the parsing, range
//! checks and one-off constants; this module does the per-exchange work:
//!
//! - [`Field::mul`]: Montgomery multiplication (CIOS, R = 2^2048) on
//!   `[u64; 32]`, fully reduced after every product, no allocation;
//! - [`Field::pow`]: `x^e mod p` for any base, left-to-right with a 4-bit
//!   fixed window (256 squarings and 64 products for a 256-bit exponent);
//! - [`FixedBase::pow`]: `g^e mod p` for the fixed generator from a table of
//!   `g^(j * 16^i)` built once per process (64 products, no squarings, for a
//!   256-bit exponent).
//!
//! Table lookups indexed by exponent bits scan the whole 16-entry row with
//! masks and the final subtraction of [`Field::mul`] is a masked select, so
//! neither leaks the exponent through which memory is read or a branch.

use num_bigint::BigUint;

/// 64-bit limbs in a group element (2048 bits).
pub const LIMBS: usize = 32;

/// A residue mod p: little-endian 64-bit limbs.
pub type Limbs = [u64; LIMBS];

/// Exponent bits consumed per window.
const WINDOW: usize = 4;
/// Entries per window row.
const ROW: usize = 1 << WINDOW;

/// Montgomery constants of one odd 2048-bit modulus.
pub struct Field {
    p: Limbs,
    /// `-p^-1 mod 2^64`.
    n0: u64,
    /// `R mod p`: 1 in Montgomery form.
    one: Limbs,
    /// `R^2 mod p`: converts into Montgomery form.
    r2: Limbs,
}

/// Little-endian limbs of `x`, which must be below 2^2048.
pub fn limbs_of(x: &BigUint) -> Limbs {
    let mut out = [0u64; LIMBS];
    for (o, d) in out.iter_mut().zip(x.iter_u64_digits()) {
        *o = d;
    }
    out
}

/// Big-endian 256-byte encoding of `x`.
pub fn to_bytes(x: &Limbs) -> [u8; LIMBS * 8] {
    let mut out = [0u8; LIMBS * 8];
    for (i, limb) in x.iter().enumerate() {
        let at = (LIMBS - 1 - i) * 8;
        out[at..at + 8].copy_from_slice(&limb.to_be_bytes());
    }
    out
}

/// All ones when `a == b`, else zero, without a branch.
#[inline(always)]
fn eq_mask(a: u64, b: u64) -> u64 {
    let d = a ^ b;
    ((d | d.wrapping_neg()) >> 63).wrapping_sub(1)
}

/// `row[index]`, reading every entry so the memory access does not depend on `index`.
#[inline(always)]
fn select(row: &[Limbs; ROW], index: u64) -> Limbs {
    let mut out = [0u64; LIMBS];
    for (j, entry) in row.iter().enumerate() {
        let mask = eq_mask(j as u64, index);
        for (o, e) in out.iter_mut().zip(entry.iter()) {
            *o |= e & mask;
        }
    }
    out
}

/// The `i`-th 4-bit window of a little-endian exponent (0 past its end).
#[inline(always)]
fn window(exponent: &[u64], i: usize) -> u64 {
    let bit = i * WINDOW;
    exponent
        .get(bit / 64)
        .map_or(0, |limb| (limb >> (bit % 64)) & (ROW as u64 - 1))
}

impl Field {
    /// The constants for the odd modulus `p`, `2^2047 < p < 2^2048`.
    pub fn new(p: &BigUint) -> Field {
        let limbs = limbs_of(p);
        // Newton's iteration for p^-1 mod 2^64: each step doubles the correct low bits.
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(limbs[0].wrapping_mul(inv)));
        }
        let r = BigUint::from(1u8) << (64 * LIMBS);
        Field {
            p: limbs,
            n0: inv.wrapping_neg(),
            one: limbs_of(&(&r % p)),
            r2: limbs_of(&((&r * &r) % p)),
        }
    }

    /// `a * b / R mod p` for `a, b < p`; the result is below p.
    pub fn mul(&self, a: &Limbs, b: &Limbs) -> Limbs {
        let p = &self.p;
        // t holds LIMBS + 2 limbs; it stays below 2p < 2^2049 between rounds.
        let mut t = [0u64; LIMBS + 2];
        for &bi in b.iter() {
            let mut carry = 0u64;
            for j in 0..LIMBS {
                let s = t[j] as u128 + a[j] as u128 * bi as u128 + carry as u128;
                t[j] = s as u64;
                carry = (s >> 64) as u64;
            }
            let s = t[LIMBS] as u128 + carry as u128;
            t[LIMBS] = s as u64;
            t[LIMBS + 1] = (s >> 64) as u64;

            let m = t[0].wrapping_mul(self.n0);
            let s = t[0] as u128 + m as u128 * p[0] as u128;
            let mut carry = (s >> 64) as u64;
            for j in 1..LIMBS {
                let s = t[j] as u128 + m as u128 * p[j] as u128 + carry as u128;
                t[j - 1] = s as u64;
                carry = (s >> 64) as u64;
            }
            let s = t[LIMBS] as u128 + carry as u128;
            t[LIMBS - 1] = s as u64;
            t[LIMBS] = t[LIMBS + 1] + (s >> 64) as u64;
        }
        let top = t[LIMBS];
        let mut low = [0u64; LIMBS];
        low.copy_from_slice(&t[..LIMBS]);
        self.subtract_if_not_below(&low, top)
    }

    /// `a^2 / R mod p` for `a < p`, the same value as `mul(a, a)` with about
    /// a quarter fewer word products: each cross product is computed once and
    /// doubled, then the 4096-bit square is reduced.
    pub fn sqr(&self, a: &Limbs) -> Limbs {
        let mut t = [0u64; 2 * LIMBS];
        for i in 0..LIMBS {
            let mut carry = 0u64;
            for j in i + 1..LIMBS {
                let s = t[i + j] as u128 + a[i] as u128 * a[j] as u128 + carry as u128;
                t[i + j] = s as u64;
                carry = (s >> 64) as u64;
            }
            t[i + LIMBS] = carry;
        }
        // Double the cross products (their sum is below 2^4095: nothing shifts out).
        let mut high_bit = 0u64;
        for limb in t.iter_mut() {
            let next = *limb >> 63;
            *limb = (*limb << 1) | high_bit;
            high_bit = next;
        }
        // Add the squares on the diagonal.
        let mut carry = 0u128;
        for i in 0..LIMBS {
            let sq = a[i] as u128 * a[i] as u128;
            let s = t[2 * i] as u128 + (sq as u64) as u128 + carry;
            t[2 * i] = s as u64;
            let s = t[2 * i + 1] as u128 + (sq >> 64) + (s >> 64);
            t[2 * i + 1] = s as u64;
            carry = s >> 64;
        }
        self.reduce(&mut t)
    }

    /// `t / R mod p` for `t < p * R` (separated operand scanning).
    fn reduce(&self, t: &mut [u64; 2 * LIMBS]) -> Limbs {
        let p = &self.p;
        // The carry out of limb i + LIMBS, added in the next round.
        let mut high = 0u64;
        for i in 0..LIMBS {
            let m = t[i].wrapping_mul(self.n0);
            let mut carry = 0u64;
            for j in 0..LIMBS {
                let s = t[i + j] as u128 + m as u128 * p[j] as u128 + carry as u128;
                t[i + j] = s as u64;
                carry = (s >> 64) as u64;
            }
            let s = t[i + LIMBS] as u128 + carry as u128 + high as u128;
            t[i + LIMBS] = s as u64;
            high = (s >> 64) as u64;
        }
        let mut low = [0u64; LIMBS];
        low.copy_from_slice(&t[LIMBS..]);
        self.subtract_if_not_below(&low, high)
    }

    /// `top * 2^2048 + low` (below 2p) reduced below p: p is subtracted when
    /// the value is at least p, chosen by mask rather than a branch.
    #[inline(always)]
    fn subtract_if_not_below(&self, low: &Limbs, top: u64) -> Limbs {
        let mut reduced = [0u64; LIMBS];
        let mut borrow = 0u64;
        for j in 0..LIMBS {
            let (d, b1) = low[j].overflowing_sub(self.p[j]);
            let (d, b2) = d.overflowing_sub(borrow);
            reduced[j] = d;
            borrow = (b1 | b2) as u64;
        }
        // Keep `low` only when nothing is above it and the subtraction borrowed (below p).
        let keep = (borrow & (top ^ 1)).wrapping_neg();
        let mut out = [0u64; LIMBS];
        for j in 0..LIMBS {
            out[j] = (low[j] & keep) | (reduced[j] & !keep);
        }
        out
    }

    /// `x` (below p) in Montgomery form.
    pub fn enter_mont(&self, x: &Limbs) -> Limbs {
        self.mul(x, &self.r2)
    }

    /// `x` (Montgomery form) back to an ordinary residue.
    pub fn leave_mont(&self, x: &Limbs) -> Limbs {
        let mut unit = [0u64; LIMBS];
        unit[0] = 1;
        self.mul(x, &unit)
    }

    /// `base^exponent mod p` for `base < p` and a little-endian exponent of any length.
    pub fn pow(&self, base: &Limbs, exponent: &[u64]) -> Limbs {
        let mut powers = [[0u64; LIMBS]; ROW];
        powers[0] = self.one;
        powers[1] = self.enter_mont(base);
        for j in 2..ROW {
            powers[j] = self.mul(&powers[j - 1], &powers[1]);
        }
        let windows = exponent.len() * 64 / WINDOW;
        let mut z = self.one;
        for i in (0..windows).rev() {
            if i + 1 != windows {
                for _ in 0..WINDOW {
                    z = self.sqr(&z);
                }
            }
            z = self.mul(&z, &select(&powers, window(exponent, i)));
        }
        self.leave_mont(&z)
    }
}

/// `g^(j * 16^i)` in Montgomery form for a fixed `g`, for exponents of up to
/// `4 * rows` bits.
pub struct FixedBase {
    rows: Vec<[Limbs; ROW]>,
}

impl FixedBase {
    /// The table for `g` (below p) and exponents of at most `bits` bits.
    pub fn new(field: &Field, g: &Limbs, bits: usize) -> FixedBase {
        let count = bits.div_ceil(WINDOW);
        let mut rows = Vec::with_capacity(count);
        // g^(16^i) in Montgomery form.
        let mut step = field.enter_mont(g);
        for _ in 0..count {
            let mut row = [[0u64; LIMBS]; ROW];
            row[0] = field.one;
            row[1] = step;
            for j in 2..ROW {
                row[j] = field.mul(&row[j - 1], &step);
            }
            step = field.mul(&row[ROW - 1], &step);
            rows.push(row);
        }
        FixedBase { rows }
    }

    /// Largest exponent size, in 64-bit limbs, that [`FixedBase::pow`] accepts.
    pub fn max_limbs(&self) -> usize {
        self.rows.len() * WINDOW / 64
    }

    /// `g^exponent mod p`; `None` when the exponent has more limbs than the table covers.
    pub fn pow(&self, field: &Field, exponent: &[u64]) -> Option<Limbs> {
        if exponent.len() > self.max_limbs() {
            return None;
        }
        let mut z = select(&self.rows[0], window(exponent, 0));
        for (i, row) in self.rows.iter().enumerate().skip(1) {
            z = field.mul(&z, &select(row, window(exponent, i)));
        }
        Some(field.leave_mont(&z))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::dh::prime;
    use rand::RngCore;

    fn big(x: &Limbs) -> BigUint {
        BigUint::from_bytes_be(&to_bytes(x))
    }

    fn exponent_limbs(e: &BigUint, limbs: usize) -> Vec<u64> {
        let mut out: Vec<u64> = e.iter_u64_digits().collect();
        out.resize(limbs, 0);
        out
    }

    fn random_below_p(rng: &mut impl RngCore) -> BigUint {
        let mut bytes = [0u8; 256];
        rng.fill_bytes(&mut bytes);
        BigUint::from_bytes_be(&bytes) % prime()
    }

    /// Bases and exponents that exercise the edges: 0, 1, 2, p-1, p-2, all-ones.
    fn edge_bases() -> Vec<BigUint> {
        let p = prime();
        vec![
            BigUint::from(0u8),
            BigUint::from(1u8),
            BigUint::from(2u8),
            p - 1u8,
            p - 2u8,
            (BigUint::from(1u8) << 2047) - 1u8,
        ]
    }

    fn edge_exponents() -> Vec<BigUint> {
        let max = (BigUint::from(1u8) << 256) - 1u8;
        vec![
            BigUint::from(0u8),
            BigUint::from(1u8),
            BigUint::from(2u8),
            BigUint::from(15u8),
            BigUint::from(16u8),
            BigUint::from(1u8) << 255,
            max,
        ]
    }

    #[test]
    fn field_constants_are_right() {
        let p = prime();
        let f = Field::new(p);
        assert_eq!(f.p[0].wrapping_mul(f.n0.wrapping_neg()), 1, "n0 = -p^-1");
        let r = BigUint::from(1u8) << 2048;
        assert_eq!(big(&f.one), &r % p);
        assert_eq!(big(&f.r2), (&r * &r) % p);
    }

    #[test]
    fn mul_and_sqr_are_montgomery_products_for_random_and_edge_inputs() {
        let p = prime();
        let f = Field::new(p);
        let r: BigUint = BigUint::from(1u8) << 2048usize;
        let r_inv = r.modpow(&(p - 2u8), p);
        let mut rng = rand::thread_rng();
        let mut values = edge_bases();
        values.extend((0..20).map(|_| random_below_p(&mut rng)));
        for a in &values {
            for b in &values {
                let want = (a * b % p) * &r_inv % p;
                assert_eq!(
                    big(&f.mul(&limbs_of(a), &limbs_of(b))),
                    want,
                    "{a:x} * {b:x}"
                );
            }
        }
    }

    #[test]
    fn pow_equals_num_bigint_modpow() {
        let p = prime();
        let f = Field::new(p);
        let mut rng = rand::thread_rng();
        let mut bases = edge_bases();
        bases.extend((0..4).map(|_| random_below_p(&mut rng)));
        let mut exponents = edge_exponents();
        for _ in 0..4 {
            let mut e = [0u8; 32];
            rng.fill_bytes(&mut e);
            exponents.push(BigUint::from_bytes_be(&e));
        }
        for base in &bases {
            for e in &exponents {
                let got = f.pow(&limbs_of(base), &exponent_limbs(e, 4));
                assert_eq!(big(&got), base.modpow(e, p), "{base:x} ^ {e:x}");
            }
        }
        // A full 2048-bit exponent, and p-1 as the exponent.
        let mut e = [0u8; 256];
        rng.fill_bytes(&mut e);
        for e in [BigUint::from_bytes_be(&e), p - 1u8] {
            let base = random_below_p(&mut rng);
            let got = f.pow(&limbs_of(&base), &exponent_limbs(&e, 32));
            assert_eq!(big(&got), base.modpow(&e, p));
        }
    }

    #[test]
    fn fixed_base_equals_num_bigint_modpow() {
        let p = prime();
        let f = Field::new(p);
        let two = BigUint::from(2u8);
        let table = FixedBase::new(&f, &limbs_of(&two), 256);
        assert_eq!(table.max_limbs(), 4);
        let mut rng = rand::thread_rng();
        let mut exponents = edge_exponents();
        for _ in 0..32 {
            let mut e = [0u8; 32];
            rng.fill_bytes(&mut e);
            exponents.push(BigUint::from_bytes_be(&e));
        }
        for e in &exponents {
            let got = table
                .pow(&f, &exponent_limbs(e, 4))
                .expect("fits the table");
            assert_eq!(big(&got), two.modpow(e, p), "2 ^ {e:x}");
            // Shorter limb slices mean the same number.
            let short: Vec<u64> = e.iter_u64_digits().collect();
            let got = table.pow(&f, &short).expect("fits the table");
            assert_eq!(big(&got), two.modpow(e, p));
        }
        // Another fixed base: p-1 (order 2), and a random one.
        for g in [p - 1u8, random_below_p(&mut rng)] {
            let table = FixedBase::new(&f, &limbs_of(&g), 256);
            for e in &exponents[..10] {
                let got = table
                    .pow(&f, &exponent_limbs(e, 4))
                    .expect("fits the table");
                assert_eq!(big(&got), g.modpow(e, p));
            }
        }
        assert!(table.pow(&f, &[1u64; 5]).is_none(), "a 320-bit exponent");
    }
}
