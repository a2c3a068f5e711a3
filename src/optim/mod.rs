//! Optimisation: AdamW with decoupled weight decay, learning-rate schedules,
//! and gradient clipping by global norm.

pub mod adamw;
pub mod clip;
pub mod device;
pub mod schedule;

pub use adamw::{AdamW, AdamWConfig};
pub use clip::clip_grad_norm;
pub use schedule::{Schedule, ScheduleKind};
