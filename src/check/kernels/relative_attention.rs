//! DeBERTa's relative attention (kernels/relative_attention.cu) against the
//! CPU's f64 kernel: forward and every gradient (q, k, v and both position
//! tables), f32 and bf16, with padding, with dropout on the probabilities,
//! and with log buckets that cut (several distances read one table row).

use super::{CheckRow, FLOAT_TYPES, Tolerance, as_stored, compare, random};
use crate::backend::cpu::relative_attention::{
    RelativeDims as CpuDims, relative_attention_bwd as cpu_bwd, relative_attention_fwd as cpu_fwd,
};
use crate::backend::cuda::ops::attention::AttentionDropout as KernelDropout;
use crate::backend::cuda::ops::relative_attention::{RelativeDims, relative_attention_bwd, relative_attention_fwd};
use crate::backend::{AttentionDropout, DropoutKey};
use crate::device::{Device, DeviceBuffer, Elem};
use crate::error::Result;
use crate::model::BertConfig;

/// (lengths of the batch rows, padded length, heads, head size, buckets, max distance, dropout).
type Case = (Vec<usize>, usize, usize, usize, usize, usize, Option<f64>);

pub fn cases(device: &Device) -> Result<Vec<CheckRow>> {
    let cases: [Case; 3] =
        [(vec![9, 5], 9, 2, 4, 4, 64, None), (vec![9, 5], 9, 2, 4, 4, 64, Some(0.2)), (vec![40, 23, 1], 40, 3, 8, 16, 128, None)];
    let mut rows = Vec::new();
    for &elem in &FLOAT_TYPES {
        for (lens, t, heads, d, buckets, max, p) in &cases {
            let (t, heads, d) = (*t, *heads, *d);
            let mut config = BertConfig::synthetic_deberta(10, heads * d, 1, heads, 8, *buckets, 0.0);
            let settings = config.deberta.as_mut().expect("a DeBERTa config");
            settings.max_relative_positions = *max;
            let distance_rows = settings.distance_rows(t);
            let r = settings.relative_rows();
            let b = lens.len();
            let c = heads * d;
            let mask: Vec<u8> = lens.iter().flat_map(|&len| (0..t).map(move |i| u8::from(i < len))).collect();
            let shapes =
                format!("B={b} T={t} H={heads} D={d} R={r}, lengths {lens:?}{}", p.map_or(String::new(), |p| format!(", dropout {p}")));
            let host: Vec<Vec<f32>> = [31, 32, 33, 34, 35, 36]
                .iter()
                .enumerate()
                .map(|(i, &seed)| random(seed, if i == 3 || i == 4 { r * c } else { b * t * c }, 0.8))
                .collect();
            let stored: Vec<Vec<f64>> = host.iter().map(|h| as_stored(h, elem)).collect();
            let bufs: Vec<DeviceBuffer> = host.iter().map(|h| DeviceBuffer::from_f32(device, h, elem)).collect::<Result<_>>()?;
            let key = DropoutKey { seed: 9, stream: 4 };
            let cpu_dropout = p.map(|p| AttentionDropout { p, key });
            let kernel_dropout = p.map(|p| KernelDropout { p: p as f32, stream_key: crate::rng::stream_key(key.seed, key.stream) });
            let scale = 1.0 / ((d as f32) * 3.0).sqrt();

            let dims = RelativeDims { batch: b, seq_len: t, heads, head_dim: d, positions: r };
            let mask_buf = DeviceBuffer::from_u8(device, &mask)?;
            let rows_buf = DeviceBuffer::from_u32(device, &distance_rows)?;
            let out = DeviceBuffer::uninit(device, b * t * c, elem)?;
            out.poison()?;
            let probs = DeviceBuffer::uninit(device, b * heads * t * t, Elem::F32)?;
            let (q, k, v, pq, pk, dout) = (&bufs[0], &bufs[1], &bufs[2], &bufs[3], &bufs[4], &bufs[5]);
            relative_attention_fwd((q, k, v), (pq, pk), &rows_buf, &mask_buf, &out, &probs, dims, scale, kernel_dropout)?;

            let cpu_dims = CpuDims { batch: b, seq_len: t, heads, head_dim: d, positions: r };
            let qkv = (&stored[0][..], &stored[1][..], &stored[2][..]);
            let (want_out, saved) =
                cpu_fwd(qkv, (&stored[3][..], &stored[4][..]), &mask, &distance_rows, cpu_dims, scale as f64, cpu_dropout);
            let tol = Tolerance::for_elem(elem);
            let name = |what: &str| format!("relative_attention {what}_{}", elem.suffix());
            rows.push(compare(&name("fwd"), &shapes, &out.to_f32_vec()?, &want_out, tol));

            let grads: Vec<DeviceBuffer> = [b * t * c, b * t * c, b * t * c, r * c, r * c]
                .iter()
                .map(|&n| {
                    let g = DeviceBuffer::uninit(device, n, elem)?;
                    g.poison()?;
                    Ok(g)
                })
                .collect::<Result<_>>()?;
            let dscores = DeviceBuffer::uninit(device, b * heads * t * t, Elem::F32)?;
            relative_attention_bwd(
                (q, k, v),
                (pq, pk),
                &rows_buf,
                &mask_buf,
                &probs,
                dout,
                &dscores,
                (&grads[0], &grads[1], &grads[2]),
                (&grads[3], &grads[4]),
                dims,
                scale,
                kernel_dropout,
            )?;
            let want = cpu_bwd(&saved, &stored[5]);
            for (what, (got, want)) in ["dq", "dk", "dv", "dpq", "dpk"].iter().zip(grads.iter().zip(want.iter())) {
                rows.push(compare(&name(what), &shapes, &got.to_f32_vec()?, want, tol));
            }
        }
    }
    Ok(rows)
}
