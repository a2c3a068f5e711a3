//! Counter-based random numbers: every value is a pure function of
//! (seed, stream, offset), so the CPU and the GPU draw identical dropout
//! masks, and a resumed run draws exactly what an uninterrupted one would.
//! Nothing here carries mutable state; checkpointing the seed and the step
//! is enough to reproduce every draw.

/// SplitMix64's finaliser: a bijective 64-bit mix with good avalanche.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key of one (seed, stream) pair. Element loops compute it once and
/// then pay a single hash per two elements (see [`bits32`]).
#[inline]
pub fn stream_key(seed: u64, stream: u64) -> u64 {
    mix64(seed ^ mix64(stream.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// 64 random bits for (seed, stream, offset).
#[inline]
pub fn bits(seed: u64, stream: u64, offset: u64) -> u64 {
    mix64(stream_key(seed, stream) ^ offset.wrapping_mul(0xd1b5_4a32_d192_ed03))
}

/// 32 random bits for element `offset` of a keyed stream. One 64-bit hash
/// serves two neighbouring offsets: the low half for the even one, the high
/// half for the odd one. The CUDA dropout kernel must draw exactly this.
#[inline(always)]
pub fn bits32(key: u64, offset: u64) -> u32 {
    let h = mix64(key ^ (offset >> 1).wrapping_mul(0xd1b5_4a32_d192_ed03));
    if offset & 1 == 0 { h as u32 } else { (h >> 32) as u32 }
}

/// The 24-bit integer behind [`uniform`]: uniform on 0..2^24.
#[inline(always)]
pub fn bits24(key: u64, offset: u64) -> u32 {
    bits32(key, offset) >> 8
}

/// A uniform draw in [0, 1) with 24 bits of resolution, the same on every device.
#[inline]
pub fn uniform(seed: u64, stream: u64, offset: u64) -> f32 {
    bits24(stream_key(seed, stream), offset) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// A standard normal draw (Box–Muller on two uniforms with 53-bit resolution).
pub fn normal(seed: u64, stream: u64, offset: u64) -> f64 {
    let u1 = ((bits(seed, stream, 2 * offset) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let u2 = (bits(seed, stream, 2 * offset + 1) >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A small sequential generator for data order and sampling, built on the
/// same hash. Its whole state is (seed, counter), which checkpoints trivially.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqRng {
    pub seed: u64,
    pub counter: u64,
}

impl SeqRng {
    pub fn new(seed: u64) -> Self {
        SeqRng { seed, counter: 0 }
    }

    pub fn next_u64(&mut self) -> u64 {
        let v = bits(self.seed, u64::MAX, self.counter);
        self.counter += 1;
        v
    }

    /// Uniform integer in 0..n (n > 0), by rejection to avoid modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_in_range_and_roughly_flat() {
        let n = 100_000;
        let mean: f64 = (0..n).map(|i| uniform(7, 3, i) as f64).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        assert!((0..n).all(|i| (0.0..1.0).contains(&uniform(7, 3, i))));
        assert_ne!(uniform(7, 3, 0), uniform(7, 4, 0));
    }
}
