//! Embedding lookups: rows of a table gathered by integer ids, and BERT's
//! embeddings with their LayerNorm as one op.

use super::{Backward, BackwardContext, Tape, Var};
use crate::backend::{self, Saved};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

struct Embedding {
    ids: Vec<u32>,
}

impl Backward for Embedding {
    fn name(&self) -> &'static str {
        "embedding"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let table = ctx.inputs[0];
        Ok(vec![Some(backend::of(table).embedding_bwd(dout, &self.ids, table.shape())?)])
    }
}

/// Checks that every id indexes a row of `table`; `what` names the ids.
fn check_ids(table: &Tensor, ids: &[u32], what: &str) -> Result<()> {
    let rows = table.shape()[0];
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= rows) {
        return Err(Error::InvalidArgument(format!("{what}: id {bad} is out of range for a table of {rows} rows")));
    }
    Ok(())
}

/// table (V, C), ids (any shape S, flattened) -> (S…, C).
/// `what` names the table in the error when an id is out of range.
pub fn embedding(tape: &mut Tape, table: Var, ids: &[u32], ids_shape: &[usize], what: &str) -> Result<Var> {
    let t = tape.value(table);
    if t.dims() != 2 || ids.len() != ids_shape.iter().product::<usize>() {
        return Err(Error::shape("embedding", format!("table {:?}, {} ids for shape {:?}", t.shape(), ids.len(), ids_shape)));
    }
    check_ids(t, ids, what)?;
    let mut out_shape = ids_shape.to_vec();
    out_shape.push(t.shape()[1]);
    let out = backend::of(t).embedding_fwd(t, ids, &out_shape)?;
    Ok(tape.push(out, &[table], Embedding { ids: ids.to_vec() }))
}

/// Saved by the backend's forward for its backward.
struct EmbeddingsLn {
    saved: Saved,
}

impl Backward for EmbeddingsLn {
    fn name(&self) -> &'static str {
        "embeddings_ln"
    }
    // inputs: word (V, C), token_type (TT, C), position (P, C), ln weight (C), ln bias (C)
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let tables = [ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]];
        let grads = backend::of(tables[0]).embeddings_ln_bwd(&self.saved, tables, ctx.inputs[3], dout)?;
        Ok(grads.into_iter().map(Some).collect())
    }
}

/// LayerNorm(word[ids] + token_type[type_ids] + position[t]) -> (B, T, C);
/// word (V, C), token_type (TT, C), position (P ≥ T, C), ln (C, C), ids and
/// type ids (B·T), checked against their tables.
#[allow(clippy::too_many_arguments)]
pub fn embeddings_ln(
    tape: &mut Tape,
    word: Var,
    token_type: Var,
    position: Var,
    ln: (Var, Var),
    input_ids: &[u32],
    token_type_ids: &[u32],
    (batch, seq_len): (usize, usize),
    eps: f64,
) -> Result<Var> {
    let tables = [tape.value(word), tape.value(token_type), tape.value(position)];
    let cols = tables[0].shape()[1];
    if tables.iter().any(|t| t.dims() != 2 || t.shape()[1] != cols)
        || input_ids.len() != batch * seq_len
        || token_type_ids.len() != batch * seq_len
    {
        return Err(Error::shape(
            "embeddings_ln",
            format!(
                "tables {:?}, {:?}, {:?} with {} ids and {} type ids for ({batch}, {seq_len})",
                tables[0].shape(),
                tables[1].shape(),
                tables[2].shape(),
                input_ids.len(),
                token_type_ids.len()
            ),
        ));
    }
    check_ids(tables[0], input_ids, "input_ids")?;
    check_ids(tables[1], token_type_ids, "token_type_ids")?;
    if seq_len > tables[2].shape()[0] {
        return Err(Error::InvalidArgument(format!("sequence length {seq_len} exceeds {} positions", tables[2].shape()[0])));
    }
    let (ln_w, ln_b) = (tape.value(ln.0), tape.value(ln.1));
    if ln_w.shape() != [cols] || ln_b.shape() != [cols] {
        return Err(Error::shape("embeddings_ln", format!("LayerNorm {:?}, {:?} for width {cols}", ln_w.shape(), ln_b.shape())));
    }
    let (out, saved) =
        backend::of(tables[0]).embeddings_ln_fwd(tables, (ln_w, ln_b), (input_ids, token_type_ids), (batch, seq_len), eps)?;
    Ok(tape.push(out, &[word, token_type, position, ln.0, ln.1], EmbeddingsLn { saved }))
}
