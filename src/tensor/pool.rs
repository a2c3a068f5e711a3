//! A pool of freed tensor buffers, reused by length.
//!
//! A model allocates the same buffer sizes layer after layer and step after
//! step. Fresh allocations of that size cost a memset and, for large
//! blocks, page faults as the allocator returns memory to the kernel and
//! asks for it back; together that was a sixth of a MiniLM forward pass.
//! When a tensor's storage is dropped its buffer comes here, and ops that
//! overwrite every element take buffers from here instead.
//!
//! Buffers handed out by [`take`] hold stale (initialised) values: callers
//! must write every element. The pool keeps at most `BERTH_POOL_MB`
//! megabytes (default 2048); beyond that, freed buffers go back to the allocator.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

struct Pool<T> {
    free: HashMap<usize, Vec<Vec<T>>>,
    bytes: usize,
}

fn cap_bytes() -> usize {
    static CAP: OnceLock<usize> = OnceLock::new();
    *CAP.get_or_init(|| std::env::var("BERTH_POOL_MB").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(2048) << 20)
}

/// Buffers smaller than this are left to the allocator, which handles them well.
const MIN_POOLED_BYTES: usize = 64 << 10;

pub trait Poolable: Copy + Default + Send + 'static {
    fn pool() -> &'static Mutex<PoolOf<Self>>;
}

/// The pool for one element type.
pub struct PoolOf<T>(Pool<T>);

macro_rules! poolable {
    ($t:ty) => {
        impl Poolable for $t {
            fn pool() -> &'static Mutex<PoolOf<$t>> {
                static POOL: OnceLock<Mutex<PoolOf<$t>>> = OnceLock::new();
                POOL.get_or_init(|| Mutex::new(PoolOf(Pool { free: HashMap::new(), bytes: 0 })))
            }
        }
    };
}

poolable!(f32);
poolable!(f64);
poolable!(half::bf16);
// The CPU's BF16 kernels: packed weights (u16) and input pairs (u32).
poolable!(u16);
poolable!(u32);

/// A buffer of exactly `len` elements with unspecified (but initialised)
/// contents: the caller overwrites all of them.
pub fn take<T: Poolable>(len: usize) -> Vec<T> {
    let bytes = len * std::mem::size_of::<T>();
    if bytes >= MIN_POOLED_BYTES {
        if let Ok(mut pool) = T::pool().lock() {
            if let Some(buffer) = pool.0.free.get_mut(&len).and_then(Vec::pop) {
                pool.0.bytes -= bytes;
                return buffer;
            }
        }
    }
    vec![T::default(); len]
}

/// A buffer of `len` zeros (a pooled one, cleared, when available).
pub fn zeros<T: Poolable>(len: usize) -> Vec<T> {
    let mut v = take(len);
    v.fill(T::default());
    v
}

/// Returns a buffer to the pool, if it is large enough and there is room.
pub fn give<T: Poolable>(buffer: Vec<T>) {
    let len = buffer.len();
    let bytes = len * std::mem::size_of::<T>();
    if bytes < MIN_POOLED_BYTES || buffer.capacity() != len {
        return;
    }
    if let Ok(mut pool) = T::pool().lock() {
        if pool.0.bytes + bytes <= cap_bytes() {
            pool.0.bytes += bytes;
            pool.0.free.entry(len).or_default().push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_given_buffer_is_taken_again_and_zeros_are_zero() {
        let n = 1 << 20;
        let mut v = super::take::<f64>(n);
        v.fill(7.0);
        let ptr = v.as_ptr();
        super::give(v);
        let again = super::take::<f64>(n);
        assert_eq!(again.as_ptr(), ptr, "the same block comes back");
        super::give(again);
        let z = super::zeros::<f64>(n);
        assert!(z.iter().all(|&x| x == 0.0));
        assert_eq!(super::take::<f64>(3).len(), 3);
    }
}
