//! DeBERTa-v2/v3's settings and its relative positions: what a
//! `deberta-v2` config holds beyond BERT's keys, the log-bucketed distances
//! and the table row each query − key distance reads.
//!
//! berth runs the DeBERTa-v3 shape, the one every published v3 checkpoint
//! has (xsmall to large, mDeBERTa): relative attention with both c2p and
//! p2c terms, keys shared with content (`share_att_key`), no absolute
//! positions, no token types, no convolution layer. Other shapes are
//! refused by name at load.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// A DeBERTa config's own settings.
#[derive(Clone, Debug, PartialEq)]
pub struct DebertaSettings {
    /// `position_buckets` (0: distances are not bucketed).
    pub position_buckets: usize,
    /// The largest distance the buckets reach (`max_relative_positions`,
    /// or `max_position_embeddings` when it is below 1).
    pub max_relative_positions: usize,
    /// Half the rows of `rel_embeddings`: distance d reads row d + span.
    pub span: usize,
    /// `norm_rel_ebd` holds `layer_norm`: the relative embeddings pass the
    /// encoder's LayerNorm before each layer projects them.
    pub normed_relative_embeddings: bool,
    /// ContextPooler's dropout before its dense layer (`pooler_dropout`).
    pub pooler_dropout: f64,
    /// The dropout before the classifier of a sequence head (`cls_dropout`,
    /// else `hidden_dropout_prob`).
    pub cls_dropout: Option<f64>,
}

impl DebertaSettings {
    /// Reads and checks the DeBERTa keys of `raw` (`path` names the file in errors).
    pub fn from_raw(raw: &Value, hidden_size: usize, max_position_embeddings: usize, path: &Path) -> Result<DebertaSettings> {
        let bad = |message: String| Err(Error::Config { path: path.into(), message });
        let flag = |key: &str| raw.get(key).and_then(Value::as_bool);
        let int = |key: &str| raw.get(key).and_then(Value::as_i64);
        if flag("relative_attention") != Some(true) {
            return bad("relative_attention must be true: berth implements DeBERTa's disentangled (relative) attention only".into());
        }
        let kinds: Vec<String> = match raw.get("pos_att_type") {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(|s| s.trim().to_lowercase()).collect(),
            Some(Value::String(text)) => text.split('|').map(|s| s.trim().to_lowercase()).collect(),
            _ => Vec::new(),
        };
        let both = kinds.len() == 2 && kinds.iter().any(|k| k == "c2p") && kinds.iter().any(|k| k == "p2c");
        if !both {
            return bad(format!(
                "pos_att_type {} is not supported; berth implements DeBERTa-v3's [\"p2c\", \"c2p\"]",
                raw.get("pos_att_type").map_or("(absent)".into(), Value::to_string)
            ));
        }
        if flag("share_att_key") != Some(true) {
            return bad("share_att_key must be true (DeBERTa-v3): berth projects relative embeddings with the content projections".into());
        }
        if flag("position_biased_input").unwrap_or(true) {
            return bad("position_biased_input true (absolute position embeddings) is not supported; DeBERTa-v3 sets it false".into());
        }
        if int("type_vocab_size").unwrap_or(0) != 0 {
            return bad(format!(
                "type_vocab_size {} is not supported; DeBERTa-v3 has no token-type embeddings (0)",
                raw["type_vocab_size"]
            ));
        }
        if int("conv_kernel_size").unwrap_or(0) > 0 {
            return bad("conv_kernel_size > 0 (DeBERTa-v2's convolution layer) is not supported".into());
        }
        if let Some(e) = int("embedding_size")
            && e as usize != hidden_size
        {
            return bad(format!("embedding_size {e} differs from hidden_size {hidden_size}; berth has no DeBERTa embed_proj"));
        }
        if let Some(p) = int("pooler_hidden_size")
            && p as usize != hidden_size
        {
            return bad(format!("pooler_hidden_size {p} differs from hidden_size {hidden_size}"));
        }
        if let Some(act) = raw.get("pooler_hidden_act").and_then(Value::as_str)
            && act != "gelu"
        {
            return bad(format!("pooler_hidden_act `{act}` is not supported; berth implements the exact erf GELU (`gelu`) only"));
        }
        if let Some(head_size) = int("attention_head_size") {
            let heads = int("num_attention_heads").unwrap_or(1).max(1);
            if head_size * heads != hidden_size as i64 {
                return bad(format!("attention_head_size {head_size} × {heads} heads is not hidden_size {hidden_size}"));
            }
        }
        let norm = raw.get("norm_rel_ebd").and_then(Value::as_str).unwrap_or("none").to_lowercase();
        let norms: Vec<&str> = norm.split('|').map(str::trim).collect();
        if norms.iter().any(|n| *n != "layer_norm" && *n != "none") {
            return bad(format!("norm_rel_ebd `{norm}` is not supported; berth knows `layer_norm` and `none`"));
        }
        let max_relative_positions = match int("max_relative_positions").unwrap_or(-1) {
            m if m < 1 => max_position_embeddings,
            m => m as usize,
        };
        let position_buckets = int("position_buckets").unwrap_or(-1).max(0) as usize;
        if position_buckets == 1 {
            return bad("position_buckets 1 leaves no bucket for any distance (use 0 for none, or at least 2)".into());
        }
        let span = if position_buckets > 0 { position_buckets } else { max_relative_positions };
        let number = |key: &str| raw.get(key).and_then(Value::as_f64);
        Ok(DebertaSettings {
            position_buckets,
            max_relative_positions,
            span,
            normed_relative_embeddings: norms.contains(&"layer_norm"),
            pooler_dropout: number("pooler_dropout").unwrap_or(0.0),
            cls_dropout: number("cls_dropout"),
        })
    }

    /// The rows of `rel_embeddings` (2 × span).
    pub fn relative_rows(&self) -> usize {
        2 * self.span
    }

    /// The bucket of distance `d` = i − j: as is up to half the buckets,
    /// log-spaced beyond, up to the buckets' edge at `max_relative_positions`.
    /// transformers computes the logarithm in float32 even in a float64
    /// model, and so does this: the two differ at the last distance
    /// (d = max − 1 gives bucket 15, not 16, for 16 buckets over 128).
    pub fn bucket(&self, d: i64) -> i64 {
        if self.position_buckets == 0 {
            return d;
        }
        let mid = (self.position_buckets / 2) as i64;
        let magnitude = if d < mid && d > -mid { mid - 1 } else { d.abs() };
        if magnitude <= mid {
            return d;
        }
        let edge = ((self.max_relative_positions as f64 - 1.0) / mid as f64) as f32;
        let log_position = ((magnitude as f32 / mid as f32).ln() / edge.ln() * (mid - 1) as f32).ceil() + mid as f32;
        log_position as i64 * d.signum()
    }

    /// For a sequence of `t`, the table row of each distance d = i − j
    /// from −(t − 1) to t − 1 (2t − 1 entries): clamp(bucket(d) + span, 0,
    /// 2·span − 1), which c2p and p2c both read.
    pub fn distance_rows(&self, t: usize) -> Vec<u32> {
        let (span, last) = (self.span as i64, 2 * self.span as i64 - 1);
        let t = t as i64;
        (-(t - 1)..t).map(|d| (self.bucket(d) + span).clamp(0, last) as u32).collect()
    }

    /// 1 / sqrt(3 × head size), the scale of all three score terms, with
    /// the square root taken in float32 as transformers takes it
    /// (sqrt(24) = 4.898979663848877, not 4.898979485566356).
    pub fn attention_scale(head_dim: usize) -> f64 {
        1.0 / ((head_dim as f32) * 3.0).sqrt() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(buckets: i64, max: usize) -> DebertaSettings {
        let raw = serde_json::json!({
            "relative_attention": true, "pos_att_type": ["p2c", "c2p"], "share_att_key": true,
            "position_biased_input": false, "type_vocab_size": 0, "position_buckets": buckets,
            "max_relative_positions": -1, "norm_rel_ebd": "layer_norm"
        });
        DebertaSettings::from_raw(&raw, 32, max, Path::new("config.json")).unwrap()
    }

    #[test]
    fn buckets_match_transformers_float32_values() {
        // Values printed by transformers 5.24's make_log_bucket_position on long tensors.
        let small = settings(16, 128);
        for (d, bucket) in [(7, 7), (8, 8), (9, 9), (10, 9), (127, 15), (128, 16), (200, 17), (300, 18), (511, 19), (4096, 24)] {
            assert_eq!(small.bucket(d), bucket, "distance {d}");
            assert_eq!(small.bucket(-d), -bucket, "distance -{d}");
        }
        let base = settings(256, 512);
        for (d, bucket) in [(127, 127), (128, 128), (129, 129), (200, 169), (300, 207), (511, 255), (512, 256), (1000, 317), (4096, 446)] {
            assert_eq!(base.bucket(d), bucket, "distance {d}");
        }
        assert_eq!(settings(256, 2048).bucket(2047), 255);
    }

    #[test]
    fn distance_rows_are_centred_and_clamped() {
        let s = settings(16, 128);
        let rows = s.distance_rows(100);
        assert_eq!(rows.len(), 199);
        assert_eq!(rows[99], 16, "distance 0 reads the middle row");
        assert_eq!(rows[100], 17);
        assert_eq!(rows[98], 15);
        assert_eq!(*rows.iter().max().unwrap(), 31);
        assert_eq!(*rows.iter().min().unwrap(), 1, "bucket -15 + 16");
        assert_eq!(DebertaSettings::attention_scale(8), 1.0 / 4.898979663848877);
    }

    #[test]
    fn other_deberta_shapes_are_refused_by_name() {
        let base = serde_json::json!({
            "relative_attention": true, "pos_att_type": "p2c|c2p", "share_att_key": true,
            "position_biased_input": false, "type_vocab_size": 0, "position_buckets": 256
        });
        assert!(DebertaSettings::from_raw(&base, 32, 512, Path::new("c.json")).is_ok(), "the string spelling of pos_att_type");
        for (key, value, needle) in [
            ("relative_attention", serde_json::json!(false), "relative_attention"),
            ("pos_att_type", serde_json::json!(["c2p"]), "pos_att_type"),
            ("share_att_key", serde_json::json!(false), "share_att_key"),
            ("position_biased_input", serde_json::json!(true), "position_biased_input"),
            ("type_vocab_size", serde_json::json!(2), "type_vocab_size"),
            ("conv_kernel_size", serde_json::json!(3), "conv_kernel_size"),
            ("pooler_hidden_act", serde_json::json!("tanh"), "pooler_hidden_act"),
            ("norm_rel_ebd", serde_json::json!("batch_norm"), "norm_rel_ebd"),
        ] {
            let mut raw = base.clone();
            raw[key] = value;
            let err = DebertaSettings::from_raw(&raw, 32, 512, Path::new("c.json")).unwrap_err().to_string();
            assert!(err.contains(needle) && err.contains("c.json"), "{key}: {err}");
        }
    }
}
