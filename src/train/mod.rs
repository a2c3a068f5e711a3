//! Fine-tuning: options, the encoded dataset and its batches, the training
//! loop with evaluation and checkpoints, and the state that makes a resumed
//! run continue exactly where the interrupted one stopped.

pub mod augment;
pub mod class_weights;
pub mod dataset;
pub mod device_training;
pub mod diagnostics;
pub mod evaluate;
pub mod freeze;
pub mod head_prior;
pub mod imbalance;
pub mod long_text;
pub mod multitask;
pub mod option_groups;
pub mod option_text;
pub mod options;
pub mod output_dir;
mod run_files;
mod run_start;
pub mod state;
mod step_loop;
pub mod trainer;

pub use options::{TrainConfig, TrainOptions};
pub use trainer::{TrainSummary, train};
