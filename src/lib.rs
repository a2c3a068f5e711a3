//! berth: fine-tune and serve BERT-family encoders.
//!
//! Layers, with arrows pointing one way only (docs/architecture.md is the
//! map; tests/layering.rs checks it):
//! `cli → {check, serve} → {train, infer} → model → autograd → backend →
//! tensor → device`, with the leaves `data`, `metrics`, `numerics`, `rng`,
//! `io` and `error` usable from anywhere.
//!
//! - [`device`]: the device interface, the real GPU and the simulated one.
//! - [`tensor`]: contiguous row-major tensors with a runtime dtype.
//! - [`backend`]: the CPU kernels (generic over f32 and f64) and the CUDA launchers.
//! - [`autograd`]: the tape; one file per op family, forward beside backward.
//! - [`model`]: BERT, its heads and losses, HF checkpoints in and out, the task.
//! - [`train`], [`optim`], [`report`]: fine-tuning, AdamW and schedules, the run's report.
//! - [`infer`]: batched prediction, and [`Classifier`], the library API.
//! - [`serve`]: `berth serve`, an HTTP server with dynamic batching.
//! - [`check`]: gradient checks, kernel parity, the CUDA probe (`berth check`).
//! - [`data`], [`metrics`], [`numerics`], [`rng`]: readers and tokenisation,
//!   scikit-learn's metrics, scalar numerics, counter-based random numbers.

pub mod autograd;
pub mod backend;
pub mod check;
pub mod cli;
pub mod data;
pub mod device;
pub mod error;
pub mod infer;
pub mod io;
pub mod metrics;
pub mod model;
pub mod numerics;
pub mod optim;
pub mod report;
pub mod rng;
pub mod serve;
pub mod tensor;
pub mod train;

pub use device::DeviceChoice;
pub use error::{Error, Result};
pub use infer::{Classifier, ClassifierOptions, EntitySpan, LabelScore, ModelKind, TextPrediction, WordPrediction};
pub use model::device_model::Precision;
