//! CPU benchmarks of the model: forward at B=1 and B=32, and forward +
//! backward at B=32, all at T=128, for all-MiniLM-L6-v2 (when fetched) and
//! a randomly initialised bert-base, in fp32 and (`bf16 …`) on the CPU's
//! BF16 kernels. Throughput is reported in tokens/s.
//!
//!     cargo bench --bench forward
//!
//! The same shapes run through PyTorch with tools/bench-vs-torch.py; record
//! both, from one session, in docs/perf.md.

use std::path::PathBuf;

use berth::autograd::Tape;
use berth::cli::bench::random_batch;
use berth::model::params::random_parameters;
use berth::model::{BertClassifier, BertConfig, ForwardMode, HeadKind, Labels, LoadOptions, load_model};
use berth::tensor::{DType, Precision};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const T: usize = 128;

fn models() -> Vec<(&'static str, BertClassifier)> {
    let labels = vec!["0".to_string(), "1".to_string()];
    let mut out = Vec::new();
    let minilm = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    if minilm.join("model.safetensors").is_file() {
        let options = LoadOptions { labels: Some(labels.clone()), ..LoadOptions::default() };
        out.push(("minilm", load_model(&minilm, &options).expect("MiniLM loads").0));
    } else {
        eprintln!("SKIP minilm: models/all-MiniLM-L6-v2 is absent (run tools/fetch-model.sh)");
    }
    let config = BertConfig::bert_base();
    let params = random_parameters(&config, HeadKind::SequenceClassification, 2, 0, DType::F32);
    out.push(("bert-base", BertClassifier::new(config, HeadKind::SequenceClassification, None, labels, params).unwrap()));
    out
}

fn bench(c: &mut Criterion) {
    for (name, model) in models() {
        let cache = model.weight_cache().unwrap();
        let mut group = c.benchmark_group(format!("cpu/{name}"));
        group.sample_size(10);
        for b in [1usize, 32] {
            let batch = random_batch(b, T, model.config.vocab_size, 1);
            group.throughput(Throughput::Elements((b * T) as u64));
            group.bench_function(format!("forward B={b} T={T}"), |bencher| {
                bencher.iter(|| {
                    let mut tape = Tape::no_grad();
                    let out = model.forward_cached(&mut tape, &batch, ForwardMode::eval(), Some(&cache)).unwrap();
                    tape.value(out.logits).numel()
                })
            });
        }
        let bf16_cache = model.inference_cache(Precision::Bf16).unwrap();
        for b in [1usize, 32] {
            let batch = random_batch(b, T, model.config.vocab_size, 1);
            group.throughput(Throughput::Elements((b * T) as u64));
            group.bench_function(format!("bf16 forward B={b} T={T}"), |bencher| {
                bencher.iter(|| {
                    let mut tape = Tape::no_grad();
                    let mode = ForwardMode::eval().skipping_padding();
                    let out = model.forward_cached(&mut tape, &batch, mode, Some(&bf16_cache)).unwrap();
                    tape.value(out.logits).numel()
                })
            });
        }
        let b = 32;
        let batch = random_batch(b, T, model.config.vocab_size, 1);
        let labels = Labels::SingleLabel((0..b as i64).map(|i| i % 2).collect());
        group.throughput(Throughput::Elements((b * T) as u64));
        for precision in [Precision::Fp32, Precision::Bf16] {
            let prefix = if precision == Precision::Bf16 { "bf16 " } else { "" };
            group.bench_function(format!("{prefix}forward+backward B={b} T={T}"), |bencher| {
                let mut step = 0u64;
                bencher.iter(|| {
                    step += 1;
                    let mut tape = Tape::new();
                    let cache = model.weight_cache_for(precision).unwrap();
                    let out = model.forward_cached(&mut tape, &batch, ForwardMode::train(step), Some(&cache)).unwrap();
                    let loss = model.loss(&mut tape, out.logits, &labels, None).unwrap();
                    let grads = tape.backward(loss).unwrap();
                    grads.get(out.params[0]).map(|g| g.numel())
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
