//! `berth bench`: one benchmark case in this process, reporting median and
//! minimum time per iteration, tokens/s and peak resident memory. Run one
//! case per process (as `tools/bench-vs-torch.py` does for PyTorch) so each
//! peak belongs to its case.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::autograd::Tape;
use crate::backend::select_device;
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::model::device_model::Precision;
use crate::model::params::random_parameters;
use crate::model::{BertClassifier, BertConfig, ForwardMode, HeadKind, Labels, LoadOptions, load_model};
use crate::rng::SeqRng;
use crate::tensor::DType;
use crate::tensor::Tensor;
use serde_json::json;

use super::bench_device::{PEAK_FLOPS, format_timings, kernel_timings, model_case, train_flops_per_token};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model folder; when omitted, `--config` picks a randomly initialised model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Built-in configuration when no --model is given: bert-base, minilm, or
    /// the published base size of another family: roberta-base,
    /// xlm-roberta-base, distilbert-base, electra-base, modernbert-base,
    /// deberta-v3-base.
    #[arg(long, default_value = "bert-base")]
    pub config: String,
    /// fwd (inference, no tape), train (forward + backward, dropout on, then
    /// the gradient norm and AdamW: the whole step), or kernels (the kernel
    /// timing table against measured ceilings: on the CPU, the model's linear
    /// layers in fp32 and INT8 at B·T rows).
    #[arg(long, default_value = "fwd")]
    pub case: String,
    /// cpu, cuda or sim (the simulated device: correct but slow, for testing).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// fp32, bf16 (needs a device) or int8 (CPU, --case fwd).
    #[arg(long, default_value = "fp32")]
    pub precision: String,
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Print a per-op time table (forward and backward) after the run, and
    /// write it as JSON to --profile-out.
    #[arg(long)]
    pub profile: bool,
    /// Where --profile writes its JSON (the format of train's profile.json).
    #[arg(long, default_value = "profile.json")]
    pub profile_out: PathBuf,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// Peak resident set size of this process in MiB (Linux), from VmHWM.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn build_model(args: &BenchArgs) -> Result<BertClassifier> {
    if let Some(dir) = &args.model {
        let options = LoadOptions { labels: Some(vec!["0".into(), "1".into()]), ..LoadOptions::default() };
        return Ok(load_model(dir, &options)?.0);
    }
    let config = built_in_config(&args.config)?;
    let params = random_parameters(&config, HeadKind::SequenceClassification, 2, 0, DType::F32);
    BertClassifier::new(config, HeadKind::SequenceClassification, None, vec!["0".into(), "1".into()], params)
}

/// The names `--config` takes.
pub const BUILT_IN_CONFIGS: [&str; 8] =
    ["bert-base", "minilm", "roberta-base", "xlm-roberta-base", "distilbert-base", "electra-base", "modernbert-base", "deberta-v3-base"];

/// A built-in configuration: the shapes of the published checkpoint of that
/// name (roberta-base, xlm-roberta-base, distilbert-base-uncased,
/// google/electra-base-discriminator, answerdotai/ModernBERT-base,
/// microsoft/deberta-v3-base), with
/// random weights in the bench.
pub fn built_in_config(name: &str) -> Result<BertConfig> {
    let base = json!({
        "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "max_position_embeddings": 512,
    });
    let with = |extra: serde_json::Value| {
        let mut config = base.clone();
        config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        config
    };
    let roberta = |vocab: usize, model_type: &str| {
        with(json!({
            "model_type": model_type, "vocab_size": vocab, "max_position_embeddings": 514,
            "type_vocab_size": 1, "pad_token_id": 1, "layer_norm_eps": 1e-5,
        }))
    };
    let text = match name {
        "bert-base" => return Ok(BertConfig::bert_base()),
        "minilm" => return Ok(BertConfig::synthetic(30522, 384, 6, 12, 1536)),
        "roberta-base" => roberta(50265, "roberta"),
        "xlm-roberta-base" => roberta(250002, "xlm-roberta"),
        "distilbert-base" => json!({
            "model_type": "distilbert", "vocab_size": 30522, "dim": 768, "n_layers": 6, "n_heads": 12,
            "hidden_dim": 3072, "max_position_embeddings": 512, "activation": "gelu",
        }),
        "electra-base" => with(json!({"model_type": "electra", "embedding_size": 768})),
        // 22 layers, GeGLU of 1152, a global layer every third, windows of 128.
        "modernbert-base" => json!({
            "model_type": "modernbert", "vocab_size": 50368, "hidden_size": 768, "num_hidden_layers": 22,
            "num_attention_heads": 12, "intermediate_size": 1152, "max_position_embeddings": 8192,
            "local_attention": 128, "global_attn_every_n_layers": 3, "global_rope_theta": 160000.0,
            "local_rope_theta": 10000.0, "pad_token_id": 50283, "classifier_pooling": "mean", "norm_eps": 1e-5,
        }),
        // 256 position buckets over 512 distances, relative embeddings normed.
        "deberta-v3-base" => with(json!({
            "model_type": "deberta-v2", "vocab_size": 128100, "relative_attention": true,
            "pos_att_type": ["p2c", "c2p"], "position_buckets": 256, "max_relative_positions": -1,
            "share_att_key": true, "norm_rel_ebd": "layer_norm", "position_biased_input": false,
            "type_vocab_size": 0, "layer_norm_eps": 1e-7, "pooler_hidden_size": 768, "pooler_dropout": 0,
            "pooler_hidden_act": "gelu", "pad_token_id": 0,
        })),
        other => {
            return Err(Error::InvalidArgument(format!("unknown --config `{other}` (one of {})", BUILT_IN_CONFIGS.join(", "))));
        }
    };
    BertConfig::from_json_str(&text.to_string(), std::path::Path::new(&format!("<built-in config {name}>")))
}

/// A full (unpadded) batch of random token ids.
pub fn random_batch(batch_size: usize, seq_len: usize, vocab: usize, seed: u64) -> Batch {
    let mut rng = SeqRng::new(seed);
    let n = batch_size * seq_len;
    Batch {
        batch_size,
        seq_len,
        input_ids: (0..n).map(|_| rng.below(vocab as u64) as u32).collect(),
        token_type_ids: vec![0; n],
        attention_mask: vec![1; n],
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.device == "auto" {
        return Err(Error::InvalidArgument(
            "berth bench needs an explicit --device (cpu, cuda or sim), so a figure names its device".into(),
        ));
    }
    let (device, precision) = select_device(&args.device, &args.precision)?;
    if let Some(device) = device {
        return run_on_device(&args, &device, precision);
    }
    let mut model = build_model(&args)?;
    if args.case == "kernels" {
        let rows = super::bench_cpu::cpu_kernel_timings(&model.config, (args.batch_size, args.seq_len), args.warmup, args.iters)?;
        match args.json {
            true => println!("{}", serde_json::to_string(&rows).expect("timings serialise")),
            false => print!("{}", super::bench_cpu::format_cpu_timings(&rows)),
        }
        return Ok(());
    }
    let batch = random_batch(args.batch_size, args.seq_len, model.config.vocab_size, 1);
    let labels = Labels::SingleLabel((0..args.batch_size as i64).map(|i| i % 2).collect());
    let train = match args.case.as_str() {
        "fwd" => false,
        "train" => true,
        other => return Err(Error::InvalidArgument(format!("unknown --case `{other}` (fwd or train)"))),
    };
    if train && precision == Precision::Int8 {
        return Err(Error::InvalidArgument(format!("--case train --precision int8: {}", crate::tensor::INT8_IS_CPU_INFERENCE)));
    }
    let profile = std::cell::RefCell::new(crate::autograd::Profile::default());
    // Inference reuses one cache of transposed (or INT8) weights, as the
    // predictor does; a train step rebuilds it every time, as weights change.
    let inference_cache = model.inference_cache(precision)?;
    let precision_name = match precision {
        Precision::Int8 => format!("int8/{}", crate::backend::cpu::int8::best_path().name()),
        Precision::Bf16 => format!("bf16/{}", crate::backend::cpu::bf16_linear::best_path().name()),
        Precision::Fp32 => "fp32".to_string(),
    };
    // A CPU training step ends as the trainer's does: the gradient norm
    // (clipped at 1.0, the factor applied inside AdamW) and AdamW with HF
    // Trainer's defaults, so the step is the peers' whole step.
    let mut optimizer = train.then(|| {
        let config = crate::optim::AdamWConfig { weight_decay: 0.01, ..Default::default() };
        let trainable = vec![true; model.params.len()];
        crate::optim::AdamW::new(config, model.params.names(), model.params.tensors(), &trainable)
    });
    let mut step = |i: usize| -> Result<()> {
        if train {
            let mut tape = Tape::new();
            if args.profile {
                tape.enable_profile();
            }
            let cache = model.weight_cache_for(precision)?;
            // As training runs on the CPU: packed rows (here no padding, so only the attention's layout differs).
            let out =
                model.forward_cached(&mut tape, &batch, ForwardMode::train(i as u64).skipping_padding().last_state_only(), Some(&cache))?;
            let loss = model.loss(&mut tape, out.logits, &labels, None)?;
            let mut g = tape.backward(loss)?;
            let grads: Vec<Option<Tensor>> = out.params.iter().map(|&p| g.take(p)).collect();
            if let Some(p) = tape.profile() {
                profile.borrow_mut().merge(p);
            }
            let clip = crate::optim::clip::grad_norm_for_clip(&grads, 1.0)?;
            let optimizer = optimizer.as_mut().expect("made for a train case");
            optimizer.update_clipped(model.params.tensors_mut(), &grads, 1e-5, Some(&clip.factor), false)?;
        } else {
            let mut tape = Tape::no_grad();
            if args.profile {
                tape.enable_profile();
            }
            // As predict, eval and serve run on the CPU: packed rows.
            let out = model.forward_cached(
                &mut tape,
                &batch,
                ForwardMode::eval().skipping_padding().last_state_only(),
                Some(&inference_cache),
            )?;
            std::hint::black_box(tape.value(out.logits).numel());
            if let Some(p) = tape.profile() {
                profile.borrow_mut().merge(p);
            }
        }
        Ok(())
    };
    for i in 0..args.warmup {
        step(i)?;
    }
    let mut times = Vec::with_capacity(args.iters);
    for i in 0..args.iters {
        let start = Instant::now();
        step(args.warmup + i)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    if args.profile {
        eprintln!("{}", profile.borrow().report());
        let json = profile.borrow().to_json("cpu", (args.warmup + args.iters) as u64);
        crate::io::write_atomic(&args.profile_out, serde_json::to_string_pretty(&json).expect("a profile serialises").as_bytes())?;
        eprintln!("profile: {} (warm-up and timed iterations)", args.profile_out.display());
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = times[times.len() / 2];
    let min = times[0];
    let tokens_per_s = (args.batch_size * args.seq_len) as f64 / (median / 1e3);
    let rss = peak_rss_mib().unwrap_or(f64::NAN);
    let name = args.model.as_ref().map(|p| p.display().to_string()).unwrap_or(args.config.clone());
    if args.json {
        println!(
            "{}",
            serde_json::json!({"model": name, "case": args.case, "batch_size": args.batch_size, "seq_len": args.seq_len,
                "precision": precision_name, "median_ms": median, "min_ms": min, "tokens_per_s": tokens_per_s, "peak_rss_mib": rss,
                "iters": args.iters, "threads": rayon::current_num_threads()})
        );
    } else {
        println!(
            "cpu/{name} {} {precision_name} B={} T={}: median {median:.2} ms, min {min:.2} ms, {tokens_per_s:.0} tokens/s, peak RSS {rss:.0} MiB ({} iters, {} threads)",
            args.case,
            args.batch_size,
            args.seq_len,
            args.iters,
            rayon::current_num_threads()
        );
    }
    Ok(())
}

/// `berth bench --device cuda|sim`: the kernel table, or a whole-model case
/// with tokens/s and (for train) MFU against the H100's BF16 peak.
fn run_on_device(args: &BenchArgs, device: &crate::device::Device, precision: Precision) -> Result<()> {
    let where_ = format!("{} ({precision:?})", device.describe());
    if args.case == "kernels" {
        let rows = kernel_timings(device)?;
        if args.json {
            println!("{}", serde_json::json!({"device": where_, "kernels": rows}));
        } else {
            println!("kernel timings on {where_}");
            print!("{}", format_timings(device, &rows));
        }
        return Ok(());
    }
    let train = match args.case.as_str() {
        "fwd" => false,
        "train" => true,
        other => return Err(Error::InvalidArgument(format!("unknown --case `{other}` (fwd, train or kernels)"))),
    };
    let model = build_model(args)?;
    let batch = random_batch(args.batch_size, args.seq_len, model.config.vocab_size, 1);
    let labels = Labels::SingleLabel((0..args.batch_size as i64).map(|i| i % 2).collect());
    if args.profile {
        device.start_kernel_profile()?;
    }
    let (median, min) = model_case(device, &model, precision, &batch, &labels, train, (args.warmup, args.iters))?;
    if args.profile {
        let mut json = crate::device::kernel_profile_json(&device.take_kernel_profile()?, device.is_simulated());
        json["device"] = serde_json::json!(where_);
        json["steps"] = serde_json::json!(args.warmup + args.iters);
        json["ops"] = serde_json::json!([]);
        json["timing"] = serde_json::json!("kernels only: the device's launches over the warm-up and timed iterations");
        crate::io::write_atomic(&args.profile_out, serde_json::to_string_pretty(&json).expect("a profile serialises").as_bytes())?;
        eprintln!("profile: {} (warm-up and timed iterations, every kernel)", args.profile_out.display());
    }
    let tokens = (args.batch_size * args.seq_len) as f64;
    let tokens_per_s = tokens / (median / 1e3);
    // MFU counts model FLOPs only (no recomputation) against 989 TFLOP/s.
    let mfu = train.then(|| tokens_per_s * train_flops_per_token(&model.config, args.seq_len) / PEAK_FLOPS);
    let name = args.model.as_ref().map(|p| p.display().to_string()).unwrap_or(args.config.clone());
    if args.json {
        println!(
            "{}",
            serde_json::json!({"model": name, "case": args.case, "device": where_, "precision": args.precision,
                "batch_size": args.batch_size, "seq_len": args.seq_len, "median_ms": median, "min_ms": min,
                "tokens_per_s": tokens_per_s, "mfu": mfu, "iters": args.iters})
        );
    } else {
        let mfu_text = mfu.map(|m| format!(", MFU {:.1}%", 100.0 * m)).unwrap_or_default();
        println!(
            "{where_}/{name} {} B={} T={}: median {median:.2} ms, min {min:.2} ms, {tokens_per_s:.0} tokens/s{mfu_text} ({} iters)",
            args.case, args.batch_size, args.seq_len, args.iters
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_config_parses_and_modernbert_base_has_its_published_shape() {
        for name in BUILT_IN_CONFIGS {
            built_in_config(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let config = built_in_config("modernbert-base").unwrap();
        let modern = config.modern.as_ref().expect("a ModernBERT config");
        assert_eq!((config.num_hidden_layers, config.intermediate_size, config.head_dim()), (22, 1152, 64));
        let global: Vec<usize> = (0..22).filter(|&l| modern.global_layers[l]).collect();
        assert_eq!(global, [0, 3, 6, 9, 12, 15, 18, 21]);
        assert_eq!((modern.window, config.max_sequence_length()), (64, 8192));
        assert!(built_in_config("modernbert-large").unwrap_err().to_string().contains("modernbert-base"));
        let deberta = built_in_config("deberta-v3-base").unwrap();
        let settings = deberta.deberta.as_ref().expect("a DeBERTa config");
        assert_eq!((settings.relative_rows(), deberta.vocab_size, deberta.max_sequence_length()), (512, 128100, 512));
    }
}
