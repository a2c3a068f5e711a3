//! Learning-rate schedules as Hugging Face defines them: linear warmup from
//! 0, then linear decay to 0, cosine decay to 0, or constant.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleKind {
    Linear,
    Cosine,
    Constant,
}

impl ScheduleKind {
    pub fn parse(name: &str) -> Result<ScheduleKind> {
        match name {
            "linear" => Ok(ScheduleKind::Linear),
            "cosine" => Ok(ScheduleKind::Cosine),
            "constant" => Ok(ScheduleKind::Constant),
            other => Err(Error::InvalidArgument(format!("unknown schedule `{other}` (linear, cosine or constant)"))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub peak_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl Schedule {
    /// The learning rate for optimizer step `step` (0-based: the first update uses step 0).
    pub fn lr(&self, step: u64) -> f64 {
        let factor = if step < self.warmup_steps {
            step as f64 / self.warmup_steps.max(1) as f64
        } else {
            let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
            let progress = (step - self.warmup_steps) as f64 / decay_steps;
            match self.kind {
                ScheduleKind::Linear => (1.0 - progress).max(0.0),
                ScheduleKind::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())).max(0.0),
                ScheduleKind::Constant => 1.0,
            }
        };
        self.peak_lr * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_warmup_then_decay_matches_hf() {
        // HF get_linear_schedule_with_warmup(num_warmup_steps=10, num_training_steps=110).
        let s = Schedule { kind: ScheduleKind::Linear, peak_lr: 1.0, warmup_steps: 10, total_steps: 110 };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 0.5).abs() < 1e-15);
        assert_eq!(s.lr(10), 1.0);
        assert!((s.lr(60) - 0.5).abs() < 1e-15);
        assert_eq!(s.lr(110), 0.0);
        assert_eq!(s.lr(500), 0.0);
    }

    #[test]
    fn cosine_and_constant() {
        let c = Schedule { kind: ScheduleKind::Cosine, peak_lr: 2.0, warmup_steps: 0, total_steps: 100 };
        assert_eq!(c.lr(0), 2.0);
        assert!((c.lr(50) - 1.0).abs() < 1e-12);
        assert!(c.lr(100).abs() < 1e-12);
        let k = Schedule { kind: ScheduleKind::Constant, peak_lr: 3.0, warmup_steps: 4, total_steps: 100 };
        assert_eq!(k.lr(2), 1.5);
        assert_eq!(k.lr(99), 3.0);
    }
}
