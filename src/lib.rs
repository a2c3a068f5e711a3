//! berth: fine-tune and serve BERT-family encoders.
//!
//! Layers, with arrows pointing one way only (see DESIGN.md):
//! `cli → infer → model → autograd → backend`, with `data` feeding the
//! model and `tensor` underneath everything.
//!
//! - [`tensor`]: contiguous row-major tensors with a runtime dtype.
//! - [`backend`]: the CPU reference kernels (generic over f32 and f64).
//! - [`autograd`]: the tape; one file per op family, forward beside backward.
//! - [`model`]: BERT, its heads and losses, HF checkpoints in and out.
//! - [`data`]: tokenisation and batching.
//! - [`infer`]: batched prediction, and [`Classifier`], the library API.
//! - [`serve`]: `berth serve`, an HTTP server with dynamic batching.
//! - [`report`]: the run's report.md and its SVG charts.
//! - [`rng`]: the counter-based random numbers dropout uses.

pub mod autograd;
pub mod backend;
pub mod cli;
pub mod data;
pub mod error;
pub mod infer;
pub mod io;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod report;
pub mod rng;
pub mod serve;
pub mod tensor;
pub mod train;

pub use backend::cuda::DeviceChoice;
pub use error::{Error, Result};
pub use infer::{Classifier, ClassifierOptions, EntitySpan, LabelScore, ModelKind, TextPrediction, WordPrediction};
pub use train::device_model::Precision;
