//! Embedding launchers (kernels/embedding.cu, and the fused embedding
//! LayerNorm in kernels/layernorm.cu).
//!
//! `out[n] = word[input_ids[n]] + token_type[token_type_ids[n]] + position[n % seq_len]`,
//! added in that order (HF's). Ids are validated by the caller; an id out of
//! range contributes nothing instead of reading outside its table.
//!
//! The backward is deterministic (no float atomics): word and position rows
//! are grouped on the host ([`Segments`]), token types are summed in fixed
//! chunks of tokens and then added up in chunk order. Sums are f64, and each
//! gradient element is rounded to f32 once.

use super::layernorm::{branch, fwd_shape};
use super::{expect, expect_float};
use crate::device::{Device, DeviceBuffer, Elem, KernelArgs, LaunchShape, elementwise_blocks};
use crate::error::{Error, Result};

const THREADS: u32 = 256;
/// Tokens per item of the word/position backward: a table row used by more
/// tokens is summed in several items, then merged.
pub const ITEM_TOKENS: usize = 32;
/// Tokens per chunk of the token-type backward, at least.
const TYPE_CHUNK: usize = 64;
/// At most this many token-type chunks (each becomes a partial row per type).
const TYPE_MAX_CHUNKS: usize = 256;
/// Marks an item destination as a partial slot (kernels/embedding.cu, EMB_SLOT_BIT).
const SLOT_BIT: u32 = 0x8000_0000;

/// The shapes an embedding launch works on, checked once.
struct Dims {
    tokens: usize,
    cols: usize,
    vocab: usize,
    positions: usize,
    types: usize,
}

/// Elements of each table an embedding forward reads: a word row per
/// token, the first `seq_len` position rows, every type row.
struct TableReads {
    word: usize,
    position: usize,
    token_type: usize,
}

impl Dims {
    fn table_reads(&self, seq_len: usize) -> TableReads {
        TableReads { word: self.tokens * self.cols, position: seq_len * self.cols, token_type: self.types * self.cols }
    }
}

/// Checks the ids (U32, one per token), and that `out` (tokens, cols) and the
/// three tables (rows, cols) agree on cols; dtypes are checked by the callers.
fn dims(
    op: &'static str,
    input_ids: &DeviceBuffer,
    token_type_ids: &DeviceBuffer,
    tables: [&DeviceBuffer; 3],
    out: &DeviceBuffer,
    seq_len: usize,
) -> Result<Dims> {
    let tokens = input_ids.len();
    expect(op, "token_type_ids", token_type_ids, tokens, Elem::U32)?;
    if input_ids.elem() != Elem::U32 {
        return Err(Error::shape(op, format!("input_ids: expected U32, got {input_ids:?}")));
    }
    if tokens == 0 || out.len() % tokens != 0 || out.is_empty() {
        return Err(Error::shape(op, format!("{out:?} is not (tokens = {tokens}, cols ≥ 1)")));
    }
    let cols = out.len() / tokens;
    let [word, position, token_type] = tables;
    let mut rows = [0usize; 3];
    for (i, (what, t)) in [("word", word), ("position", position), ("token_type", token_type)].into_iter().enumerate() {
        if t.is_empty() || t.len() % cols != 0 || t.len() / cols > i32::MAX as usize {
            return Err(Error::shape(op, format!("{what} table {t:?} is not (rows ≥ 1, cols = {cols})")));
        }
        rows[i] = t.len() / cols;
    }
    if seq_len == 0 || tokens % seq_len != 0 || seq_len > rows[1] {
        return Err(Error::shape(op, format!("seq_len {seq_len} must divide {tokens} tokens and be ≤ {} positions", rows[1])));
    }
    Ok(Dims { tokens, cols, vocab: rows[0], positions: rows[1], types: rows[2] })
}

fn same_float(op: &'static str, elem: Elem, bufs: &[(&str, &DeviceBuffer)]) -> Result<()> {
    for (what, b) in bufs {
        if b.elem() != elem || !matches!(elem, Elem::F32 | Elem::BF16) {
            return Err(Error::shape(op, format!("{what} {b:?}: expected {elem:?} (F32 or BF16)")));
        }
    }
    Ok(())
}

// input_ids, token_type_ids (B·T) U32; word (V, C), position (P, C), token_type (TT, C)
// -> out (B·T, C), all T.
#[allow(clippy::too_many_arguments)]
pub fn embedding_fwd(
    input_ids: &DeviceBuffer,
    token_type_ids: &DeviceBuffer,
    word: &DeviceBuffer,
    position: &DeviceBuffer,
    token_type: &DeviceBuffer,
    seq_len: usize,
    out: &DeviceBuffer,
) -> Result<()> {
    let op = "embedding_fwd";
    let d = dims(op, input_ids, token_type_ids, [word, position, token_type], out, seq_len)?;
    same_float(op, out.elem(), &[("word", word), ("position", position), ("token_type", token_type)])?;
    // One warp per token row, grid-stride over rows.
    let blocks = elementwise_blocks(d.tokens * 32, THREADS);
    let read = d.table_reads(seq_len);
    KernelArgs::new()
        .buf(input_ids)
        .buf(token_type_ids)
        .buf_touching(word, read.word)
        .buf_touching(position, read.position)
        .buf_touching(token_type, read.token_type)
        .buf(out)
        .len(d.vocab)?
        .len(d.positions)?
        .len(d.types)?
        .len(seq_len)?
        .len(d.tokens)?
        .len(d.cols)?
        .launch(out.device(), &format!("embedding_fwd_{}", out.elem().suffix()), LaunchShape::linear(blocks, THREADS))
}

// As embedding_fwd, fused with the LayerNorm that follows:
// ln_weight, ln_bias (C) -> sum_out (B·T, C) the pre-LN sum, y (B·T, C), mean, rstd (B·T) F32.
// Launch branches as layer_norm_fwd's (ops/layernorm.rs), by C.
#[allow(clippy::too_many_arguments)]
pub fn embedding_ln_fwd(
    input_ids: &DeviceBuffer,
    token_type_ids: &DeviceBuffer,
    word: &DeviceBuffer,
    position: &DeviceBuffer,
    token_type: &DeviceBuffer,
    seq_len: usize,
    ln_weight: &DeviceBuffer,
    ln_bias: &DeviceBuffer,
    eps: f32,
    sum_out: &DeviceBuffer,
    y: &DeviceBuffer,
    mean: &DeviceBuffer,
    rstd: &DeviceBuffer,
) -> Result<()> {
    let op = "embedding_ln_fwd";
    let d = dims(op, input_ids, token_type_ids, [word, position, token_type], y, seq_len)?;
    let elem = y.elem();
    same_float(op, elem, &[("word", word), ("position", position), ("token_type", token_type), ("sum_out", sum_out)])?;
    same_float(op, elem, &[("ln_weight", ln_weight), ("ln_bias", ln_bias)])?;
    expect_float(op, "sum_out", sum_out, y.len())?;
    expect_float(op, "ln_weight", ln_weight, d.cols)?;
    expect_float(op, "ln_bias", ln_bias, d.cols)?;
    expect(op, "mean", mean, d.tokens, Elem::F32)?;
    expect(op, "rstd", rstd, d.tokens, Elem::F32)?;
    let kernel = format!("embedding_ln_{}_fwd_{}", branch(d.cols).0, elem.suffix());
    let read = d.table_reads(seq_len);
    KernelArgs::new()
        .buf(input_ids)
        .buf(token_type_ids)
        .buf_touching(word, read.word)
        .buf_touching(position, read.position)
        .buf_touching(token_type, read.token_type)
        .len(d.vocab)?
        .len(d.positions)?
        .len(d.types)?
        .len(seq_len)?
        .buf(ln_weight)
        .buf(ln_bias)
        .buf(sum_out)
        .buf(y)
        .buf(mean)
        .buf(rstd)
        .len(d.tokens)?
        .len(d.cols)?
        .f32(eps)
        .launch(y.device(), &kernel, fwd_shape(op, d.tokens, d.cols)?)
}

/// Token rows grouped by table row, for a deterministic scatter-add.
///
/// Tokens are ordered by (table row, token); each table row's run is cut
/// into items of at most [`ITEM_TOKENS`] tokens. A run of one item adds into
/// the table directly (`item_dest` = table row); a longer run writes its
/// items to consecutive partial slots (`item_dest` = SLOT_BIT | slot), and a
/// group merges them in order into its table row.
#[derive(Debug, Default, PartialEq)]
pub struct Segments {
    pub token_rows: Vec<u32>,
    /// items + 1 offsets into `token_rows`.
    pub item_begin: Vec<u32>,
    pub item_dest: Vec<u32>,
    /// groups + 1 offsets into the slots.
    pub group_begin: Vec<u32>,
    pub group_dest: Vec<u32>,
    pub slots: usize,
}

impl Segments {
    /// `key(token)`: the table row token `token` adds to, or None to skip it.
    pub fn build(tokens: usize, key: impl Fn(usize) -> Option<u32>) -> Segments {
        let mut order: Vec<(u32, u32)> = (0..tokens).filter_map(|t| key(t).map(|k| (k, t as u32))).collect();
        order.sort_unstable();
        let mut s = Segments { group_begin: vec![0], ..Segments::default() };
        let mut start = 0;
        while start < order.len() {
            let row = order[start].0;
            let end = start + order[start..].iter().take_while(|(k, _)| *k == row).count();
            let items = (end - start).div_ceil(ITEM_TOKENS);
            if items > 1 {
                s.group_dest.push(row);
            }
            for i in 0..items {
                s.item_begin.push((start + i * ITEM_TOKENS) as u32);
                if items == 1 {
                    s.item_dest.push(row);
                } else {
                    s.item_dest.push(SLOT_BIT | s.slots as u32);
                    s.slots += 1;
                }
            }
            if items > 1 {
                s.group_begin.push(s.slots as u32);
            }
            start = end;
        }
        s.item_begin.push(order.len() as u32);
        s.token_rows = order.into_iter().map(|(_, t)| t).collect();
        s
    }

    /// Table rows the items add into directly (the others go through slots).
    fn rows_added_directly(&self) -> usize {
        self.item_dest.iter().filter(|&&d| d & SLOT_BIT == 0).count()
    }

    /// dsum (tokens, cols) -> table (rows, cols) F32, accumulated.
    fn launch(&self, device: &Device, dsum: &DeviceBuffer, table: &DeviceBuffer, cols: usize) -> Result<()> {
        let items = self.item_dest.len();
        if items == 0 {
            return Ok(());
        }
        let upload = |v: &[u32]| DeviceBuffer::from_u32(device, v);
        let (item_begin, item_dest, token_rows) = (upload(&self.item_begin)?, upload(&self.item_dest)?, upload(&self.token_rows)?);
        // (slots, cols) f64, allocated as twice as many F32 elements.
        let partial = DeviceBuffer::uninit(device, self.slots * cols * 2, Elem::F32)?;
        KernelArgs::new()
            .buf(&item_begin)
            .buf(&item_dest)
            .buf(&token_rows)
            .buf(dsum)
            .buf_touching(table, self.rows_added_directly() * cols)
            .buf(&partial)
            .len(items)?
            .len(cols)?
            .launch(
                device,
                &format!("embedding_bwd_rows_{}", dsum.elem().suffix()),
                LaunchShape::linear(elementwise_blocks(items * cols, THREADS), THREADS),
            )?;
        let groups = self.group_dest.len();
        if groups == 0 {
            return Ok(());
        }
        let (group_begin, group_dest) = (upload(&self.group_begin)?, upload(&self.group_dest)?);
        KernelArgs::new()
            .buf(&group_begin)
            .buf(&group_dest)
            .buf(&partial)
            .buf_touching(table, groups * cols)
            .len(groups)?
            .len(cols)?
            .launch(device, "embedding_bwd_merge_f32", LaunchShape::linear(elementwise_blocks(groups * cols, THREADS), THREADS))
    }
}

// dsum (B·T, C) T -> dword (V, C), dposition (P, C), dtoken_type (TT, C) F32, accumulated.
// `host_input_ids` holds the same ids as `input_ids`, for grouping the word rows on the host.
#[allow(clippy::too_many_arguments)]
pub fn embedding_bwd(
    input_ids: &DeviceBuffer,
    host_input_ids: &[u32],
    token_type_ids: &DeviceBuffer,
    dsum: &DeviceBuffer,
    dword: &DeviceBuffer,
    dposition: &DeviceBuffer,
    dtoken_type: &DeviceBuffer,
    seq_len: usize,
) -> Result<()> {
    let op = "embedding_bwd";
    let d = dims(op, input_ids, token_type_ids, [dword, dposition, dtoken_type], dsum, seq_len)?;
    expect_float(op, "dsum", dsum, d.tokens * d.cols)?;
    for (what, b) in [("dword", dword), ("dposition", dposition), ("dtoken_type", dtoken_type)] {
        if b.elem() != Elem::F32 {
            return Err(Error::shape(op, format!("{what} {b:?}: parameter gradients are F32")));
        }
    }
    if host_input_ids.len() != d.tokens {
        return Err(Error::shape(op, format!("{} host ids for {} tokens", host_input_ids.len(), d.tokens)));
    }
    let device = dsum.device();
    let vocab = d.vocab;
    Segments::build(d.tokens, |t| Some(host_input_ids[t]).filter(|&id| (id as usize) < vocab)).launch(device, dsum, dword, d.cols)?;
    Segments::build(d.tokens, |t| Some((t % seq_len) as u32)).launch(device, dsum, dposition, d.cols)?;
    embedding_types_bwd(token_type_ids, dsum, dtoken_type, &d)
}

// token_type_ids (B·T), dsum (B·T, C) -> dtoken_type (TT, C) F32, accumulated:
// fixed chunks of tokens, then the chunks added up in order.
fn embedding_types_bwd(token_type_ids: &DeviceBuffer, dsum: &DeviceBuffer, dtoken_type: &DeviceBuffer, d: &Dims) -> Result<()> {
    let device = dsum.device();
    let chunk = d.tokens.div_ceil(TYPE_MAX_CHUNKS).max(TYPE_CHUNK);
    let chunks = d.tokens.div_ceil(chunk);
    // (chunks, types, cols) f64, allocated as twice as many F32 elements.
    let partial = DeviceBuffer::uninit(device, chunks * d.types * d.cols * 2, Elem::F32)?;
    KernelArgs::new().buf(token_type_ids).buf(dsum).buf(&partial).len(d.tokens)?.len(d.cols)?.len(d.types)?.len(chunk)?.launch(
        device,
        &format!("embedding_bwd_types_{}", dsum.elem().suffix()),
        LaunchShape::linear(elementwise_blocks(chunks * d.cols, THREADS), THREADS),
    )?;
    KernelArgs::new().buf(&partial).buf(dtoken_type).len(chunks)?.len(d.types)?.len(d.cols)?.launch(
        device,
        "embedding_bwd_types_merge_f32",
        LaunchShape::linear(elementwise_blocks(d.types * d.cols, THREADS), THREADS),
    )
}
