//! The model: BERT encoder, task heads, losses and checkpoints.

pub mod bert;
pub mod checkpoint;
pub mod config;
pub mod deberta;
pub mod decision;
pub mod device_model;
pub mod explain;
pub mod heads;
pub mod inspect;
pub mod loss;
pub mod multitask;
pub mod params;
pub mod settings;
pub mod task;
pub mod torch_checkpoint;

pub use bert::ForwardMode;
pub use checkpoint::{LoadOptions, LoadReport, load_model, save_model};
pub use config::{BertConfig, Family, ProblemType};
pub use heads::{BertClassifier, ForwardOutput, InferenceWeights, Labels};
pub use loss::{LossKind, LossName, LossSpec, parse_focal_alpha};
pub use params::{HeadKind, ParamStore};
