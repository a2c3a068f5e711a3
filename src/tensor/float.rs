//! The float trait the CPU backend is generic over (f32 for real work, f64
//! for gradient checks and the reference fixtures).

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use super::{DType, Storage};

pub trait Float:
    Copy
    + Send
    + Sync
    + 'static
    + Default
    + Debug
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + super::pool::Poolable
{
    const DTYPE: DType;
    const ZERO: Self;
    const ONE: Self;
    /// The most negative finite value, used as a masking bias like HF's `finfo.min`.
    const MIN: Self;

    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    /// e^x. In f32 this is a branch-free polynomial (relative error about
    /// 2e-7) that the compiler vectorises; in f64 it is the libm function,
    /// so the f64 reference path stays exact to rounding.
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn tanh(self) -> Self;
    fn sqrt(self) -> Self;
    fn erf(self) -> Self;
    fn erfc(self) -> Self;
    fn abs(self) -> Self;
    fn is_finite(self) -> bool;
    fn max(self, other: Self) -> Self;

    fn slice(storage: &Storage) -> Option<&[Self]>;
    fn slice_mut(storage: &mut Storage) -> Option<&mut [Self]>;
    fn into_storage(values: Vec<Self>) -> Storage;
}

macro_rules! impl_float {
    ($t:ty, $variant:ident, $erf:path, $erfc:path, $exp:path) => {
        impl Float for $t {
            const DTYPE: DType = DType::$variant;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const MIN: Self = <$t>::MIN;

            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn erf(self) -> Self {
                $erf(self)
            }
            #[inline(always)]
            fn erfc(self) -> Self {
                $erfc(self)
            }
            #[inline]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            fn slice(storage: &Storage) -> Option<&[Self]> {
                match storage {
                    Storage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(storage: &mut Storage) -> Option<&mut [Self]> {
                match storage {
                    Storage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn into_storage(values: Vec<Self>) -> Storage {
                Storage::$variant(values)
            }
        }
    };
}

impl_float!(f32, F32, libm::erff, fast_f32::erfc, fast_f32::exp);
impl_float!(f64, F64, libm::erf, libm::erfc, f64::exp);

/// Vectorisable f32 elementary functions. The libm versions are scalar calls
/// with branches, and took a fifth of a MiniLM forward pass in erfc alone.
pub mod fast_f32 {
    /// e^x: x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-7 Taylor
    /// polynomial (truncation below 1e-8), 2^n by building the exponent bits.
    /// Every multiply-add is fused (`mul_add`, one FMA instruction on the
    /// x86-64-v3 baseline this crate is built for): a third fewer
    /// instructions than separate roundings, and the same operations as the
    /// 16-lane copy in `backend::cpu::fused_attention`.
    #[inline(always)]
    pub fn exp(x: f32) -> f32 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_145_75;
        const LN2_LO: f32 = 1.428_606_8e-6;
        let x = x.clamp(-87.0, 88.0);
        // Round to nearest by adding and removing 1.5·2^23; the integer then
        // sits in the low mantissa bits of `biased` (no libm call and no
        // saturating float-to-int cast, so the loop vectorises).
        const ROUNDER: f32 = 12_582_912.0;
        let biased = x.mul_add(LOG2E, ROUNDER);
        let n = biased - ROUNDER;
        let n_int = biased.to_bits().wrapping_sub(ROUNDER.to_bits()) as i32;
        let r = (-n).mul_add(LN2_HI, x);
        let r = (-n).mul_add(LN2_LO, r);
        let mut p: f32 = 1.0 / 5040.0;
        for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = p.mul_add(r, c);
        }
        // Wrapping, so a NaN input (whose n_int is garbage) gives NaN in debug
        // builds too instead of an overflow panic; in range it is exact.
        let scale = f32::from_bits((n_int.wrapping_add(127) as u32) << 23);
        p * scale
    }

    /// erfc(x), with relative error below 1e-6 where erfc(x) > 1e-4 and
    /// absolute error below 1e-10 elsewhere: the
    /// Chebyshev-fitted form erfc(z) = t·exp(−z² + P(t)), t = 1/(1 + z/2),
    /// for z = |x|, and 2 − erfc(|x|) for negative x.
    #[inline(always)]
    pub fn erfc(x: f32) -> f32 {
        const P: [f32; 10] = [
            0.170_872_77,
            -0.822_152_23,
            1.488_515_9,
            -1.135_203_9,
            0.278_868_07,
            -0.186_288_06,
            0.096_784_18,
            0.374_091_96,
            1.000_023_7,
            -1.265_512_2,
        ];
        let z = x.abs();
        let t = 1.0 / z.mul_add(0.5, 1.0);
        let mut poly = P[0];
        for &c in &P[1..] {
            poly = poly.mul_add(t, c);
        }
        let r = t * exp((-z).mul_add(z, poly));
        if x >= 0.0 { r } else { 2.0 - r }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn exp_and_erfc_match_libm() {
            let mut worst_exp = 0.0f64;
            let mut worst_erfc = 0.0f64;
            for i in -80_000..80_000 {
                let x = i as f32 * 1e-3;
                let e = (super::exp(x) as f64 - (x as f64).exp()).abs() / (x as f64).exp();
                worst_exp = worst_exp.max(e);
                // Relative accuracy where erfc is not tiny; where it is (x > 2.75)
                // the rounding of z² in f32 dominates, and absolute error is what matters.
                let want = libm::erfc(x as f64);
                let err = (super::erfc(x) as f64 - want).abs();
                worst_erfc = worst_erfc.max(err / want.max(1e-4));
            }
            assert!(worst_exp < 3e-7, "exp relative error {worst_exp}");
            assert!(worst_erfc < 1e-6, "erfc relative error {worst_erfc}");
        }
    }
}
