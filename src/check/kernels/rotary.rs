//! Rotary-embedding parity (ModernBERT's q and k): forward and the inverse
//! rotation, f32 and bf16, against the CPU's f64 kernel. Packed layouts
//! restart positions per sequence; one case reaches position 8191, where an
//! angle computed in f32 on the device would be visibly off (the tables are
//! made in f64 on the host).

use super::{CheckRow, FLOAT_TYPES, Tolerance, as_stored, compare, random};
use crate::backend::cpu::rotary::rotary as cpu_rotary;
use crate::backend::cuda::ops::rotary::{rotary, rotary_tables};
use crate::device::{Device, DeviceBuffer, Elem};
use crate::error::Result;

/// (positions of the rows, heads, half of the head size, theta).
type Case = (Vec<usize>, usize, usize, f64);

pub fn cases(device: &Device) -> Result<Vec<CheckRow>> {
    let packed: Vec<usize> = [70usize, 1, 33].iter().flat_map(|&len| 0..len).collect();
    let far: Vec<usize> = (8100..8192).collect();
    let cases: [Case; 3] = [(vec![0, 1, 2, 5], 1, 4, 10_000.0), (packed, 12, 32, 160_000.0), (far, 4, 16, 10_000.0)];
    let mut rows = Vec::new();
    for &elem in &FLOAT_TYPES {
        for (positions, heads, half, theta) in &cases {
            let (heads, half) = (*heads, *half);
            let inv_freq: Vec<f64> = (0..half).map(|i| 1.0 / theta.powf((2 * i) as f64 / (2 * half) as f64)).collect();
            let width = heads * 2 * half;
            let n = positions.len() * width;
            let shapes = format!("x ({}, {heads}·{}), positions ≤ {}", positions.len(), 2 * half, positions.iter().max().unwrap());
            let x_host = random(21, n, 1.0);
            let x64 = as_stored(&x_host, elem);
            let x = DeviceBuffer::from_f32(device, &x_host, elem)?;
            let ids: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
            let rows_buf = DeviceBuffer::from_u32(device, &ids)?;
            let (cos, sin) = rotary_tables(positions.iter().max().unwrap() + 1, &inv_freq);
            let (cos, sin) = (DeviceBuffer::from_f32(device, &cos, Elem::F32)?, DeviceBuffer::from_f32(device, &sin, Elem::F32)?);
            for inverse in [false, true] {
                let y = DeviceBuffer::uninit(device, n, elem)?;
                y.poison()?;
                rotary(&x, &y, &rows_buf, &cos, &sin, heads, half, inverse)?;
                let want = cpu_rotary(&x64, positions, heads, &inv_freq, inverse);
                let name = format!("rotary{}_{}", if inverse { " inverse" } else { "" }, elem.suffix());
                rows.push(compare(&name, &shapes, &y.to_f32_vec()?, &want, Tolerance::for_elem(elem)));
            }
        }
    }
    Ok(rows)
}
