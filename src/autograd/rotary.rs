//! Rotary position embeddings on the tape: q and k of ModernBERT's
//! attention, turned by their positions before the scores.

use std::sync::Arc;

use super::{Backward, BackwardContext, Tape, Var};
use crate::backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

struct Rotary {
    positions: Arc<[usize]>,
    heads: usize,
    inv_freq: Arc<[f64]>,
}

impl Backward for Rotary {
    fn name(&self) -> &'static str {
        "rotary"
    }
    fn backward(&self, dout: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        // A rotation's transpose is its inverse.
        Ok(vec![Some(backend::of(dout).rotary(dout, &self.positions, self.heads, &self.inv_freq, true)?)])
    }
}

/// x (…, H·D) with one position per row (`positions`, R = rows of x),
/// inv_freq (D/2) -> (…, H·D): each head's pair (i, i + D/2) turned by
/// position · inv_freq[i] (transformers' rotate-half layout).
pub fn rotary(tape: &mut Tape, x: Var, positions: Arc<[usize]>, heads: usize, inv_freq: Arc<[f64]>) -> Result<Var> {
    let t = tape.value(x);
    let (rows, cols) = t.rows_cols();
    if rows != positions.len() || heads == 0 || cols != heads * 2 * inv_freq.len() || inv_freq.is_empty() {
        return Err(Error::shape(
            "rotary",
            format!("x {:?} with {} positions, {heads} heads and {} frequencies", t.shape(), positions.len(), inv_freq.len()),
        ));
    }
    let out = backend::of(t).rotary(t, &positions, heads, &inv_freq, false)?;
    Ok(tape.push(out, &[x], Rotary { positions, heads, inv_freq }))
}
