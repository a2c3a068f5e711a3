//! Inference: batched prediction over texts, shared by `berth predict`, the
//! library API ([`Classifier`]) and `berth serve`.

pub mod classifier;
pub mod explain;
pub mod predictor;

pub use classifier::{Classifier, ClassifierOptions, LabelScore, ModelKind, TextPrediction};
pub use predictor::{EntitySpan, Prediction, Predictor, WordPrediction};
