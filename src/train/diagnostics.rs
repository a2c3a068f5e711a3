//! Training diagnostics (`--diagnostics on`, the default): at each logging
//! step, the gradient norm of each part of the model (the embeddings, each
//! encoder layer, the head or each multi-task head), the size of that step's
//! update relative to the weights it changed, and, over the steps since the
//! last log line, the fraction whose gradient norm was clipped.
//!
//! Only a step that will be logged pays. On the CPU almost nothing: the
//! clip already sums each gradient's squares, and AdamW sums each
//! parameter's Σ Δw² and Σ w² while it updates ([`LayerGroups::from_sums`]).
//! On a device, the gradients' squares are summed per part before clipping
//! and the weights are downloaded before and after the update
//! ([`BeforeUpdate`]). Every other step costs one comparison.

use serde_json::{Map, Value, json};

use crate::model::params::ParamStore;
use crate::tensor::{DType, Tensor};

/// The part of the model a parameter belongs to: `embeddings`, `layer.<i>`
/// (any family's numbered encoder layers), `head.<name>` for a multi-task
/// head, or `head` for everything else (pooler, pre-classifier, classifier).
pub fn layer_group(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("heads.") {
        return format!("head.{}", rest.split('.').next().unwrap_or(rest));
    }
    let parts: Vec<&str> = name.split('.').collect();
    if let Some(i) = parts.windows(2).position(|w| w[0] == "layer" && w[1].parse::<usize>().is_ok()) {
        return format!("layer.{}", parts[i + 1]);
    }
    if parts.contains(&"embeddings") {
        return "embeddings".into();
    }
    "head".into()
}

/// The parts of a store in order of appearance, and each parameter's part.
#[derive(Clone, Debug)]
pub struct LayerGroups {
    pub names: Vec<String>,
    of_param: Vec<usize>,
}

impl LayerGroups {
    pub fn of(store: &ParamStore) -> LayerGroups {
        let mut names: Vec<String> = Vec::new();
        let of_param = store
            .names()
            .iter()
            .map(|n| {
                let group = layer_group(n);
                names.iter().position(|g| *g == group).unwrap_or_else(|| {
                    names.push(group);
                    names.len() - 1
                })
            })
            .collect();
        LayerGroups { names, of_param }
    }

    /// Σ x² per part over `tensors` (store order; None counts nothing).
    fn squares<'a>(&self, tensors: impl Iterator<Item = Option<&'a Tensor>>) -> Vec<f64> {
        let mut sums = vec![0.0; self.names.len()];
        for (i, t) in tensors.enumerate() {
            if let Some(t) = t {
                sums[self.of_param[i]] += sum_of_squares(t);
            }
        }
        sums
    }
}

/// Elements per block of the reductions below: each block is summed in f32
/// with independent lanes (so it vectorises), the blocks in f64, and the
/// blocks spread over the rayon pool. A logged step of MiniLM reads its 22.7M
/// weights and gradients a few times over, so this is where its cost is.
const BLOCK: usize = 4096;

/// Σ f(i) over one block, eight lanes at a time.
fn block_sum(n: usize, f: impl Fn(usize) -> f32) -> f64 {
    let mut lanes = [0.0f32; 8];
    let whole = n / 8 * 8;
    for i in (0..whole).step_by(8) {
        for (k, lane) in lanes.iter_mut().enumerate() {
            *lane += f(i + k);
        }
    }
    let tail: f32 = (whole..n).map(&f).sum();
    lanes.iter().map(|&v| v as f64).sum::<f64>() + tail as f64
}

/// Σ x² of a tensor, wherever it lives, in f64.
fn sum_of_squares(t: &Tensor) -> f64 {
    use rayon::prelude::*;
    match (t.is_on_device(), t.dtype()) {
        (false, DType::F32) => {
            t.data::<f32>().map(|d| d.par_chunks(BLOCK).map(|c| block_sum(c.len(), |i| c[i] * c[i])).sum()).unwrap_or(f64::NAN)
        }
        (false, DType::F64) => t.data::<f64>().map(|d| d.par_iter().map(|x| x * x).sum()).unwrap_or(f64::NAN),
        _ => t.to_f64_vec().iter().map(|x| x * x).sum(),
    }
}

/// Σ (a − b)² of two tensors of one shape, in f64.
fn distance_squared(a: &Tensor, b: &Tensor) -> f64 {
    use rayon::prelude::*;
    match (a.is_on_device() || b.is_on_device(), a.dtype(), b.dtype()) {
        (false, DType::F32, DType::F32) => match (a.data::<f32>(), b.data::<f32>()) {
            (Ok(a), Ok(b)) => a
                .par_chunks(BLOCK)
                .zip(b.par_chunks(BLOCK))
                .map(|(x, y)| {
                    block_sum(x.len(), |i| {
                        let d = x[i] - y[i];
                        d * d
                    })
                })
                .sum(),
            _ => f64::NAN,
        },
        _ => a.to_f64_vec().iter().zip(b.to_f64_vec()).map(|(x, y)| (x - y).powi(2)).sum(),
    }
}

/// What a logged step measured before its update.
pub struct BeforeUpdate {
    grad_squares: Vec<f64>,
    /// The weights as they were: host copies of a device's (or, given host
    /// tensors, clones that share storage until the update writes).
    weights: Vec<Tensor>,
}

impl BeforeUpdate {
    /// `params` are the tensors the optimizer will update (the store's, or
    /// the device's working parameters), `grads` their unclipped gradients.
    pub fn take(groups: &LayerGroups, params: &[Tensor], grads: &[Option<Tensor>]) -> BeforeUpdate {
        let grad_squares = groups.squares(grads.iter().map(Option::as_ref));
        let weights = params
            .iter()
            .map(|p| if p.is_on_device() { Tensor::from_vec(p.to_f32_vec(), p.shape()).unwrap_or_else(|_| p.clone()) } else { p.clone() })
            .collect();
        BeforeUpdate { grad_squares, weights }
    }

    /// -> the step's diagnostics, from the weights after the update.
    pub fn finish(self, groups: &LayerGroups, params: &[Tensor]) -> StepDiagnostics {
        let mut update = vec![0.0; groups.names.len()];
        for (i, (old, new)) in self.weights.iter().zip(params).enumerate() {
            update[groups.of_param[i]] += distance_squared(old, new);
        }
        let weight = groups.squares(self.weights.iter().map(Some));
        StepDiagnostics {
            grad_norms: self.grad_squares.iter().map(|s| s.sqrt()).collect(),
            update_ratios: update.iter().zip(&weight).map(|(u, w)| if *w > 0.0 { (u / w).sqrt() } else { 0.0 }).collect(),
        }
    }
}

impl LayerGroups {
    /// A CPU step's diagnostics from sums its clip and update computed:
    /// each parameter's Σ g² before clipping, and (Σ Δw², Σ w² before).
    pub fn from_sums(&self, grad_squares: &[f64], update_sums: &[(f64, f64)]) -> StepDiagnostics {
        let mut grads = vec![0.0; self.names.len()];
        let mut moved = vec![0.0; self.names.len()];
        let mut weight = vec![0.0; self.names.len()];
        for (i, &part) in self.of_param.iter().enumerate() {
            grads[part] += grad_squares.get(i).copied().unwrap_or(0.0);
            let (d, w) = update_sums.get(i).copied().unwrap_or((0.0, 0.0));
            moved[part] += d;
            weight[part] += w;
        }
        StepDiagnostics {
            grad_norms: grads.iter().map(|s| s.sqrt()).collect(),
            update_ratios: moved.iter().zip(&weight).map(|(u, w)| if *w > 0.0 { (u / w).sqrt() } else { 0.0 }).collect(),
        }
    }
}

/// One logged step's per-part figures, in [`LayerGroups::names`] order.
#[derive(Clone, Debug, PartialEq)]
pub struct StepDiagnostics {
    /// ‖g‖ of the part's gradients before clipping.
    pub grad_norms: Vec<f64>,
    /// ‖Δw‖ / ‖w‖ of the part's weights over the step.
    pub update_ratios: Vec<f64>,
}

impl StepDiagnostics {
    /// Adds `grad_norm/<part>` and `update_ratio/<part>` to a log line.
    pub fn write_into(&self, groups: &LayerGroups, entry: &mut Value) {
        let mut norms = Map::new();
        let mut ratios = Map::new();
        for (i, name) in groups.names.iter().enumerate() {
            norms.insert(name.clone(), json!(self.grad_norms[i]));
            ratios.insert(name.clone(), json!(self.update_ratios[i]));
        }
        entry["grad_norm_by_layer"] = Value::Object(norms);
        entry["update_ratio_by_layer"] = Value::Object(ratios);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_fall_into_embeddings_layers_and_heads() {
        assert_eq!(layer_group("bert.embeddings.word_embeddings.weight"), "embeddings");
        assert_eq!(layer_group("roberta.embeddings.LayerNorm.weight"), "embeddings");
        assert_eq!(layer_group("bert.encoder.layer.11.attention.self.query.weight"), "layer.11");
        assert_eq!(layer_group("distilbert.transformer.layer.3.ffn.lin1.bias"), "layer.3");
        assert_eq!(layer_group("bert.pooler.dense.weight"), "head");
        assert_eq!(layer_group("classifier.weight"), "head");
        assert_eq!(layer_group("heads.sentiment.classifier.bias"), "head.sentiment");
        // A head whose name contains "layer" is still a head.
        assert_eq!(layer_group("heads.layer.classifier.bias"), "head.layer");
    }

    #[test]
    fn norms_and_update_ratios_are_per_part() {
        let mut store = ParamStore::default();
        store.push("bert.embeddings.word_embeddings.weight".into(), Tensor::from_vec(vec![3.0f32, 4.0], &[2]).unwrap());
        store.push("bert.encoder.layer.0.output.dense.weight".into(), Tensor::from_vec(vec![1.0f32, 0.0], &[2]).unwrap());
        store.push("classifier.weight".into(), Tensor::from_vec(vec![2.0f32], &[1]).unwrap());
        store.push("bert.encoder.layer.0.output.dense.bias".into(), Tensor::from_vec(vec![0.0f32], &[1]).unwrap());
        let groups = LayerGroups::of(&store);
        assert_eq!(groups.names, vec!["embeddings", "layer.0", "head"]);
        let grads = vec![
            Some(Tensor::from_vec(vec![0.6f32, 0.8], &[2]).unwrap()),
            Some(Tensor::from_vec(vec![2.0f32, 0.0], &[2]).unwrap()),
            None,
            Some(Tensor::from_vec(vec![0.0f32], &[1]).unwrap()),
        ];
        let before = BeforeUpdate::take(&groups, store.tensors(), &grads);
        // The update writes through data_mut: the kept clone must not see it.
        store.tensors_mut()[0].data_mut::<f32>().unwrap()[0] = 3.3;
        store.tensors_mut()[3].data_mut::<f32>().unwrap()[0] = 0.1;
        let d = before.finish(&groups, store.tensors());
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(close(d.grad_norms[0], 1.0) && close(d.grad_norms[1], 2.0) && d.grad_norms[2] == 0.0, "{d:?}");
        // embeddings: ‖Δ‖ = 0.3, ‖w‖ = 5; layer.0: ‖Δ‖ = 0.1, ‖w‖ = 1; the head did not move.
        assert!(close(d.update_ratios[0], 0.06) && close(d.update_ratios[1], 0.1) && d.update_ratios[2] == 0.0, "{d:?}");
        let mut entry = json!({"step": 1});
        d.write_into(&groups, &mut entry);
        assert!(close(entry["grad_norm_by_layer"]["layer.0"].as_f64().unwrap(), 2.0), "{entry}");
        assert!(close(entry["update_ratio_by_layer"]["embeddings"].as_f64().unwrap(), 0.06), "{entry}");
    }
}
