//! Inference: batched prediction over texts, shared by `berth predict` and the library API.

pub mod predictor;
pub mod settings;

pub use predictor::{Prediction, Predictor};
