//! Embedding parity: the plain forward, the forward fused with the LayerNorm
//! (each of its launch branches: cols 1, 32, 77 → c128; 384 → c512; 768 →
//! c1024; 1500 → wide), and the deterministic backward, f32 and bf16.
//!
//! Ids repeat: one id (like padding) is used by more than ITEM_TOKENS tokens,
//! so its rows are summed in several items and merged; T = 1 with 40
//! sequences does the same for a position. Token types are 0/1 (the second
//! half of each sequence is type 1), over more than one chunk of tokens. One
//! case carries an out-of-range word id and token type: they must contribute
//! nothing (the kernels never read outside a table). The backward accumulates
//! into gradients that start non-zero.
//!
//! Tolerance: Tolerance::for_elem(T) for T outputs and for mean/rstd; the
//! table gradients are sums of the stored dsum values, which f32 carries to
//! within the F32 rule, so they are held to it for both dtypes.

use super::{CheckRow, FLOAT_TYPES, Tolerance, as_stored, compare, random};
use crate::backend::cpu::norm::layer_norm_fwd;
use crate::backend::cuda::ops::embedding::{self as emb, Segments};
use crate::backend::cuda::ops::layernorm::branch;
use crate::device::{Device, DeviceBuffer, Elem};
use crate::error::Result;

const EPS: f32 = 1e-12;

/// One configuration: batch B, sequence length T, hidden C, table rows.
#[derive(Clone, Copy)]
struct Case {
    batch: usize,
    seq: usize,
    cols: usize,
    vocab: usize,
    positions: usize,
    types: usize,
    /// One word id out of range, and one token type.
    bad_ids: bool,
}

fn cases_for(device: &Device) -> Vec<Case> {
    let c = |batch, seq, cols, vocab, positions, bad_ids| Case { batch, seq, cols, vocab, positions, types: 2, bad_ids };
    let mut v = vec![
        c(1, 1, 32, 7, 4, false),
        c(3, 7, 1, 10, 8, false),
        c(8, 13, 77, 50, 16, true),
        c(40, 1, 384, 20, 2, false),
        c(2, 5, 768, 9, 8, false),
        c(2, 3, 1500, 5, 3, true),
    ];
    if !device.is_simulated() {
        v.extend([c(32, 128, 768, 30_522, 512, false), c(64, 256, 384, 30_522, 512, false)]);
    }
    v
}

/// Host-side ids and tables of one case.
struct Data {
    ids: Vec<u32>,
    types: Vec<u32>,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
}

fn data(k: &Case, seed: u64) -> Data {
    let n = k.batch * k.seq;
    let ids = (0..n)
        .map(|i| {
            let t = i % k.seq;
            // The tail of every sequence is "padding" (id 0), like a batch padded to its longest.
            if t * 3 >= k.seq * 2 || i % 5 == 0 { 0 } else { ((i as u64 * 7919 + seed * 104_729) % k.vocab as u64) as u32 }
        })
        .collect::<Vec<u32>>();
    let types = (0..n).map(|i| if k.seq == 1 { (i % 2) as u32 } else { u32::from(i % k.seq >= k.seq / 2) }).collect::<Vec<u32>>();
    let mut d = Data {
        ids,
        types,
        word: random(seed, k.vocab * k.cols, 1.0),
        position: random(seed + 1, k.positions * k.cols, 0.5),
        token_type: random(seed + 2, k.types * k.cols, 0.5),
    };
    if k.bad_ids {
        d.ids[1] = k.vocab as u32 + 100;
        d.types[n - 1] = k.types as u32;
    }
    d
}

/// The summed row of token n, added in the device's order (word, type,
/// position) in f32 and stored as `elem`; out-of-range ids skipped.
fn embedding_sum(k: &Case, d: &Data, elem: Elem) -> Vec<f64> {
    let (w, p, tt) = (as_stored(&d.word, elem), as_stored(&d.position, elem), as_stored(&d.token_type, elem));
    let c = k.cols;
    let mut out = Vec::with_capacity(d.ids.len() * c);
    for (n, (&id, &ty)) in d.ids.iter().zip(&d.types).enumerate() {
        let pos = n % k.seq;
        for col in 0..c {
            let mut v = if (id as usize) < k.vocab { w[id as usize * c + col] as f32 } else { 0.0 };
            if (ty as usize) < k.types {
                v += tt[ty as usize * c + col] as f32;
            }
            v += p[pos * c + col] as f32;
            out.push(v);
        }
    }
    as_stored(&out, elem)
}

pub fn cases(device: &Device) -> Result<Vec<CheckRow>> {
    let mut rows = Vec::new();
    for &elem in &FLOAT_TYPES {
        for (i, k) in cases_for(device).iter().enumerate() {
            let d = data(k, 300 + 10 * i as u64);
            rows.extend(fwd_case(device, elem, k, &d)?);
            rows.extend(bwd_case(device, elem, k, &d, 400 + 10 * i as u64)?);
        }
    }
    Ok(rows)
}

fn fwd_case(device: &Device, elem: Elem, k: &Case, d: &Data) -> Result<Vec<CheckRow>> {
    let (n, c) = (k.batch * k.seq, k.cols);
    let tol = Tolerance::for_elem(elem);
    let shapes = format!("B{} T{} C{} V{}{}", k.batch, k.seq, c, k.vocab, if k.bad_ids { " +bad ids" } else { "" });
    let ids = DeviceBuffer::from_u32(device, &d.ids)?;
    let types = DeviceBuffer::from_u32(device, &d.types)?;
    let word = DeviceBuffer::from_f32(device, &d.word, elem)?;
    let position = DeviceBuffer::from_f32(device, &d.position, elem)?;
    let token_type = DeviceBuffer::from_f32(device, &d.token_type, elem)?;
    let s_ref = embedding_sum(k, d, elem);

    let out = DeviceBuffer::uninit(device, n * c, elem)?;
    out.poison()?;
    emb::embedding_fwd(&ids, &types, &word, &position, &token_type, k.seq, &out)?;
    let mut rows = vec![compare(&format!("embedding_fwd_{}", elem.suffix()), &shapes, &out.to_f32_vec()?, &s_ref, tol)];

    let ln_w: Vec<f32> = random(71, c, 0.2).iter().map(|v| 1.0 + v).collect();
    let ln_b = random(72, c, 0.1);
    let (weight, bias) = (DeviceBuffer::from_f32(device, &ln_w, elem)?, DeviceBuffer::from_f32(device, &ln_b, elem)?);
    let sum = DeviceBuffer::uninit(device, n * c, elem)?;
    let y = DeviceBuffer::uninit(device, n * c, elem)?;
    let mean = DeviceBuffer::uninit(device, n, Elem::F32)?;
    let rstd = DeviceBuffer::uninit(device, n, Elem::F32)?;
    for b in [&sum, &y, &mean, &rstd] {
        b.poison()?;
    }
    emb::embedding_ln_fwd(&ids, &types, &word, &position, &token_type, k.seq, &weight, &bias, EPS, &sum, &y, &mean, &rstd)?;
    let (y_ref, mean_ref, rstd_ref) = layer_norm_fwd(&s_ref, &as_stored(&ln_w, elem), &as_stored(&ln_b, elem), c, EPS as f64);
    let kernel = format!("embedding_ln_{}_fwd_{}", branch(c).0, elem.suffix());
    rows.push(compare(&format!("{kernel} sum"), &shapes, &sum.to_f32_vec()?, &s_ref, tol));
    rows.push(compare(&format!("{kernel} y"), &shapes, &y.to_f32_vec()?, &y_ref, tol));
    let mut stats = mean.to_f32_vec()?;
    stats.extend(rstd.to_f32_vec()?);
    let stats_ref: Vec<f64> = mean_ref.iter().chain(&rstd_ref).copied().collect();
    rows.push(compare(&format!("{kernel} mean,rstd"), &shapes, &stats, &stats_ref, tol));
    Ok(rows)
}

fn bwd_case(device: &Device, elem: Elem, k: &Case, d: &Data, seed: u64) -> Result<Vec<CheckRow>> {
    let (n, c) = (k.batch * k.seq, k.cols);
    let tol = Tolerance::for_elem(Elem::F32);
    let dsum_host = random(seed, n * c, 1.0);
    let dsum64 = as_stored(&dsum_host, elem);
    // Gradients accumulate: start from non-zero values.
    let start = |rows: usize, s: u64| random(s, rows * c, 0.5);
    let (w0, p0, t0) = (start(k.vocab, seed + 1), start(k.positions, seed + 2), start(k.types, seed + 3));
    let ids = DeviceBuffer::from_u32(device, &d.ids)?;
    let types = DeviceBuffer::from_u32(device, &d.types)?;
    let dsum = DeviceBuffer::from_f32(device, &dsum_host, elem)?;
    let dword = DeviceBuffer::from_f32(device, &w0, Elem::F32)?;
    let dposition = DeviceBuffer::from_f32(device, &p0, Elem::F32)?;
    let dtoken_type = DeviceBuffer::from_f32(device, &t0, Elem::F32)?;
    emb::embedding_bwd(&ids, &d.ids, &types, &dsum, &dword, &dposition, &dtoken_type, k.seq)?;

    let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let (mut w_ref, mut p_ref, mut t_ref) = (widen(&w0), widen(&p0), widen(&t0));
    for t in 0..n {
        let row = &dsum64[t * c..(t + 1) * c];
        let add = |table: &mut Vec<f64>, r: usize| table[r * c..(r + 1) * c].iter_mut().zip(row).for_each(|(a, g)| *a += g);
        if (d.ids[t] as usize) < k.vocab {
            add(&mut w_ref, d.ids[t] as usize);
        }
        add(&mut p_ref, t % k.seq);
        if (d.types[t] as usize) < k.types {
            add(&mut t_ref, d.types[t] as usize);
        }
    }
    // Say in the shapes whether a word or position run was long enough to be merged.
    let merged = |key: &dyn Fn(usize) -> Option<u32>| if Segments::build(n, key).group_dest.is_empty() { "" } else { " +merge" };
    let word_merge = merged(&|t| Some(d.ids[t]).filter(|&id| (id as usize) < k.vocab));
    let pos_merge = merged(&|t| Some((t % k.seq) as u32));
    let base = format!("B{} T{} C{} V{}{}", k.batch, k.seq, c, k.vocab, if k.bad_ids { " +bad ids" } else { "" });
    let sfx = elem.suffix();
    Ok(vec![
        compare(&format!("embedding_bwd_rows_{sfx} dword"), &format!("{base}{word_merge}"), &dword.to_f32_vec()?, &w_ref, tol),
        compare(&format!("embedding_bwd_rows_{sfx} dposition"), &format!("{base}{pos_merge}"), &dposition.to_f32_vec()?, &p_ref, tol),
        compare(&format!("embedding_bwd_types_{sfx} dtoken_type"), &base, &dtoken_type.to_f32_vec()?, &t_ref, tol),
    ])
}
