//! Parity for kernels/rows.cu: gather_rows and scatter_rows against the
//! CPU's (backend/cpu/layout.rs), bit for bit: they are copies. Shapes cover
//! one row, RoBERTa's position rows (a contiguous range from row 2), a
//! padded batch's real tokens (a ragged subset) and a reversed order; the
//! gather's output is poisoned first, and the scatter must leave every row
//! it does not name as it found it.

use super::{CheckRow, FLOAT_TYPES, as_stored, random};
use crate::backend::cpu::layout;
use crate::backend::cuda::ops::rows as row_ops;
use crate::device::{Device, DeviceBuffer, Elem};
use crate::error::Result;

pub fn cases(device: &Device) -> Result<Vec<CheckRow>> {
    let mut out = Vec::new();
    for &elem in &FLOAT_TYPES {
        // (table rows, cols, the rows taken)
        let cases: Vec<(usize, usize, Vec<usize>)> = vec![
            (1, 7, vec![0]),
            (128, 32, (2..72).collect()),
            (9 * 70, 33, (0..9 * 70).filter(|i| (i % 70) < 20 + 5 * (i / 70)).collect()),
            (50, 768, (0..50).rev().step_by(3).collect()),
        ];
        for (total, cols, rows) in cases {
            out.extend(case(device, elem, total, cols, &rows)?);
        }
    }
    Ok(out)
}

/// A row that passes when `got` and `want` hold the same bits.
fn exact(kernel: String, shapes: &str, got: &[f32], want: &[f32]) -> CheckRow {
    let differ = got.iter().zip(want).filter(|(a, b)| a.to_bits() != b.to_bits()).count() + got.len().abs_diff(want.len());
    CheckRow {
        kernel,
        shapes: shapes.to_string(),
        max_abs_err: got.iter().zip(want).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max),
        worst_ratio: if differ == 0 { 0.0 } else { f64::INFINITY },
        rule: "bit-exact".into(),
        pass: differ == 0,
        note: format!("{differ} values differ"),
    }
}

// table (total, cols) T, rows (n) -> gathered (n, cols) T, and scattered back into (total, cols)
fn case(device: &Device, elem: Elem, total: usize, cols: usize, rows: &[usize]) -> Result<Vec<CheckRow>> {
    let shapes = format!("({total}, {cols}) rows {}", rows.len());
    let host = random(91 + total as u64, total * cols, 1.0);
    let stored: Vec<f32> = as_stored(&host, elem).iter().map(|&v| v as f32).collect();
    let table = DeviceBuffer::from_f32(device, &host, elem)?;
    let indices: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
    let device_rows = DeviceBuffer::from_u32(device, &indices)?;
    let sfx = elem.suffix();

    let gathered = DeviceBuffer::uninit(device, rows.len() * cols, elem)?;
    gathered.poison()?;
    row_ops::gather_rows(&table, &device_rows, &indices, &gathered, cols)?;
    let want_gather = layout::gather_rows(&stored, cols, rows);
    let gathered_host = gathered.to_f32_vec()?;
    let gather_row = exact(format!("gather_rows_{sfx}"), &shapes, &gathered_host, &want_gather);

    // Scatter into a poisoned table: the named rows are the gathered ones,
    // every other row keeps the poison's bits.
    let target = DeviceBuffer::uninit(device, total * cols, elem)?;
    target.poison()?;
    let poison = target.to_f32_vec()?;
    row_ops::scatter_rows(&gathered, &device_rows, &indices, &target, cols)?;
    let mut want_scatter = poison;
    for (i, &r) in rows.iter().enumerate() {
        want_scatter[r * cols..(r + 1) * cols].copy_from_slice(&want_gather[i * cols..(i + 1) * cols]);
    }
    let scatter_row = exact(format!("scatter_rows_{sfx}"), &shapes, &target.to_f32_vec()?, &want_scatter);
    Ok(vec![gather_row, scatter_row])
}
