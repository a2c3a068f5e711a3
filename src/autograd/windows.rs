//! A chunked document's logits from its windows' logits (`--chunk-loss
//! document`): the mean, the max or the first window, per logit.
//!
//! The op works on (W, C) logits, a few hundred numbers per batch, so it runs
//! on the host wherever the logits live: a device tensor is downloaded, and
//! the result (and in backward the gradient) uploaded in the same precision.
//! The round trip is one small copy each way per micro-batch; a kernel would
//! save nothing measurable beside the encoder's GEMMs.

use std::sync::Arc;

use super::{Backward, BackwardContext, Tape, Var};
use crate::data::chunks::Aggregate;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

struct AggregateWindows {
    spans: Arc<[(usize, usize)]>,
    aggregate: Aggregate,
    /// Max: the window each (document, logit) came from, as a row of the input.
    chosen: Vec<usize>,
    windows: usize,
}

impl Backward for AggregateWindows {
    fn name(&self) -> &'static str {
        "aggregate_windows"
    }

    fn backward(&self, dout: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let (_, c) = dout.rows_cols();
        let dy = dout.to_host()?.to_f64_vec();
        let mut dx = vec![0.0; self.windows * c];
        for (d, &(start, n)) in self.spans.iter().enumerate() {
            let g = &dy[d * c..(d + 1) * c];
            match self.aggregate {
                Aggregate::First => dx[start * c..(start + 1) * c].copy_from_slice(g),
                Aggregate::Mean => {
                    for w in start..start + n {
                        for (x, &v) in dx[w * c..(w + 1) * c].iter_mut().zip(g) {
                            *x = v / n as f64;
                        }
                    }
                }
                Aggregate::Max => {
                    for (j, &v) in g.iter().enumerate() {
                        dx[self.chosen[d * c + j] * c + j] = v;
                    }
                }
            }
        }
        Ok(vec![Some(Tensor::from_f64_like(dx, &[self.windows, c], dout)?)])
    }
}

/// logits (W, C) -> (D, C): document d's row combines the rows `spans[d]` =
/// (first row, count) by `aggregate`. The spans must cover the W rows in
/// order, each with at least one row. Max sends each gradient to the window
/// that held the largest value (the first of equal ones).
pub fn aggregate_windows(tape: &mut Tape, logits: Var, spans: Arc<[(usize, usize)]>, aggregate: Aggregate) -> Result<Var> {
    let t = tape.value(logits);
    let (w, c) = t.rows_cols();
    let mut next = 0;
    for &(start, n) in spans.iter() {
        if start != next || n == 0 {
            return Err(Error::shape("aggregate_windows", format!("spans {:?} do not cover {w} rows in order", &spans[..])));
        }
        next += n;
    }
    if t.dims() != 2 || next != w {
        return Err(Error::shape("aggregate_windows", format!("logits {:?} for spans covering {next} rows", t.shape())));
    }
    let x = t.to_host()?.to_f64_vec();
    let rows: Vec<Vec<f64>> = x.chunks(c.max(1)).map(<[f64]>::to_vec).collect();
    let mut out = Vec::with_capacity(spans.len() * c);
    let mut chosen = Vec::new();
    for &(start, n) in spans.iter() {
        out.extend(aggregate.combine(&rows[start..start + n]));
        if aggregate == Aggregate::Max {
            // Strictly greater: the first window wins a tie, as combine's fold keeps it.
            chosen.extend((0..c).map(|j| (start + 1..start + n).fold(start, |b, r| if rows[r][j] > rows[b][j] { r } else { b })));
        }
    }
    let output = Tensor::from_f64_like(out, &[spans.len(), c], t)?;
    Ok(tape.push(output, &[logits], AggregateWindows { spans, aggregate, chosen, windows: w }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The analytic gradient of sum(weights ⊙ aggregate(x)) against central
    /// differences, for every aggregate, on two documents of 3 and 1 windows.
    #[test]
    fn each_aggregate_and_its_gradient_match_finite_differences() {
        let spans: Arc<[(usize, usize)]> = Arc::from(vec![(0, 3), (3, 1)]);
        let x: Vec<f64> = vec![0.3, -1.2, 2.0, 0.7, -0.4, 1.1, 1.5, 0.2];
        let weights = [0.9, -0.6, 1.3, 0.4];
        for aggregate in [Aggregate::Mean, Aggregate::Max, Aggregate::First] {
            let value = |x: &[f64]| -> f64 {
                let mut tape = Tape::no_grad();
                let v = tape.leaf(Tensor::from_vec(x.to_vec(), &[4, 2]).unwrap(), false);
                let y = aggregate_windows(&mut tape, v, spans.clone(), aggregate).unwrap();
                tape.value(y).to_f64_vec().iter().zip(weights).map(|(a, b)| a * b).sum()
            };
            let mut tape = Tape::new();
            let v = tape.leaf(Tensor::from_vec(x.clone(), &[4, 2]).unwrap(), true);
            let y = aggregate_windows(&mut tape, v, spans.clone(), aggregate).unwrap();
            assert_eq!(tape.value(y).shape(), [2, 2]);
            let mut grads = tape.backward_with(y, Tensor::from_vec(weights.to_vec(), &[2, 2]).unwrap()).unwrap();
            let analytic = grads.take(v).unwrap().to_f64_vec();
            for i in 0..x.len() {
                let (mut up, mut down) = (x.clone(), x.clone());
                up[i] += 1e-6;
                down[i] -= 1e-6;
                let numeric = (value(&up) - value(&down)) / 2e-6;
                assert!((numeric - analytic[i]).abs() < 1e-6, "{aggregate:?} x[{i}]: numeric {numeric}, analytic {}", analytic[i]);
            }
        }
        let mut tape = Tape::no_grad();
        let v = tape.leaf(Tensor::from_vec(x, &[4, 2]).unwrap(), false);
        let y = aggregate_windows(&mut tape, v, spans, Aggregate::Max).unwrap();
        assert_eq!(tape.value(y).to_f64_vec(), vec![2.0, 1.1, 1.5, 0.2]);
        let gap = aggregate_windows(&mut tape, v, Arc::from(vec![(0, 2), (3, 1)]), Aggregate::Mean).unwrap_err();
        assert!(gap.to_string().contains("do not cover"), "{gap}");
    }
}
