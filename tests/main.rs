//! The one integration-test binary (DESIGN.md style). Each module covers one
//! area; regression tests are named `r<issue>_…` after the issue they guard.

// Shared helpers: paths to ../shared, relative errors, skipping with a message.
mod common;
// Parity with the Hugging Face float64 fixtures (logits, loss, hidden states, gradients).
mod fixtures;
// Central-difference gradient checks in f64, for every op and for whole tiny models.
mod gradcheck;
// Checkpoint loading errors and round trips.
mod checkpoint;
// The berth binary: predict on the fixtures, bad input files.
mod cli;
// Classification metrics against scikit-learn (tests/data/metrics/cases.json).
mod metrics;
// Multi-label, entity-level (seqeval) and regression metrics against their references (tests/data/metrics/task_cases.json).
mod task_metrics;
// berth train and eval end to end: resume after SIGKILL, bad input, --config, new labels.
mod train;
// The CUDA engine on the simulated device (BERTH_TEST_DEVICE=cuda for a GPU): kernel parity, training steps.
mod device;
// Token classification: sub-word label alignment (first/all), decoding back to words, windows over long sentences.
mod token_alignment;
// The other tasks end to end: multi-label with thresholds, NER from CoNLL, regression, freezing, bad input, exports in transformers.
mod tasks;
// Class imbalance and calibration: weights, samplers, focal loss, thresholds, ECE, temperature, the report.
mod imbalance;
// The library API: berth::Classifier against the fixtures, and shared by four threads.
mod classifier;
// berth serve end to end: concurrent answers, batching, 400/413/503.
mod serve;
// Issue 15, training: the same run on resume, one run per output folder, failed saves, option values.
mod r15_train;
// Issue 15, models: no prediction from a random head, non-finite weights, unsupported model types.
mod r15_model;
// docs/reliability.md: every test it names exists.
mod reliability_doc;
// Issue 15's suite checks: skips that count or fail, BF16 kernel tolerances, check and device-info from the CLI, training options end to end.
mod r15_suite;
// Issue 15 for berth serve: TEI fields and the Hugging Face client, draining, 405/413/408/504, trickling clients, --device sim.
mod r15_serve;
// Issue 15, data: predict's one row per input line, misread data files (header guess, wide rows, tags, JSON labels), windows, vocab.txt.
mod r15_data;
// Issue 16: the layers' arrows point one way; every crate:: path in src/ is checked against one table.
mod layering;
// Issue 16: the backend interface: fused CPU attention and embeddings equal their pieces; missing ops are typed errors.
mod backend;
// Issue 16: multi-task training through the one loop: --device sim, --grad-accum, SIGKILL resume, changed data.
mod r16_multitask;

// Issue 17: dynamic INT8 inference on the CPU: kernels against exact integer sums, error bounds, the CLI, refusals.
mod r17_int8;
// Issue 17: the f32 inference linear layer packed at load: paths, epilogues, the packed cache against the gemm crate's.
mod r17_packed_linear;
// Issue 17: --precision bf16 on the CPU: every kernel path against the exact sum, epilogues, the cache's bound against fp32, refusals.
mod r17_bf16;
// Issue 18: RoBERTa, XLM-R, ELECTRA and DistilBERT against their transformers fixtures.
mod r18_families;
// Issue 19: ModernBERT's refusals, config spellings, device refusal and multi-task heads.
mod r19_deberta;
mod r19_modernbert;
// Issue 20: long documents read in overlapping windows, against transformers' overflowing windows.
mod r20_augment;
mod r20_long_text;
// Issue 21: berth inspect against transformers' attentions and hidden states; attributions against captum.
mod r21_diagnostics;
mod r21_explain;
mod r21_inspect;
