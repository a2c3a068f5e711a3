//! `--sampler`: which training examples an epoch visits, and how often.
//!
//! - `random`: every example once, shuffled (the default).
//! - `weighted[:R]`: draws with replacement, each class with probability
//!   proportional to max(n_c, n_max / R). R = 1 (the default) is inverse
//!   class frequency: every class is drawn equally often. A larger R lets
//!   the majority keep up to R times the draws of any class.
//! - `undersample[:R]`: every class keeps at most ⌊R · n_min⌋ examples, a
//!   fresh random subset each epoch; the rest of the epoch is skipped. R = 1
//!   (the default) balances the classes exactly.
//!
//! An epoch is `--epoch-length` examples when given; otherwise the training
//! set's size for `random` and `weighted`, and the kept examples for
//! `undersample`. Every draw depends only on (seed, epoch), so runs repeat
//! exactly and a resumed run sees the epochs the interrupted one would have.

use crate::error::{Error, Result};
use crate::rng::{SeqRng, mix64};

#[derive(Clone, Debug, PartialEq)]
pub enum SamplerKind {
    Random,
    Weighted { max_ratio: f64 },
    Undersample { max_ratio: f64 },
}

impl SamplerKind {
    pub fn parse(spec: &str) -> Result<SamplerKind> {
        let bad = |m: String| Error::InvalidArgument(format!("--sampler `{spec}`: {m}"));
        let (name, ratio) = match spec.split_once(':') {
            Some((n, r)) => {
                let r: f64 = r.parse().map_err(|_| bad(format!("ratio `{r}` is not a number")))?;
                (n, Some(r))
            }
            None => (spec, None),
        };
        if let Some(r) = ratio
            && !(r.is_finite() && r > 0.0)
        {
            return Err(bad(format!("the ratio must be a positive number, got {r}")));
        }
        match name {
            "random" if ratio.is_none() => Ok(SamplerKind::Random),
            "weighted" | "oversample" => {
                let r = ratio.unwrap_or(1.0);
                if r < 1.0 {
                    return Err(bad(format!("the ratio is the most draws the majority may get per minority draw: at least 1, got {r}")));
                }
                Ok(SamplerKind::Weighted { max_ratio: r })
            }
            "undersample" => Ok(SamplerKind::Undersample { max_ratio: ratio.unwrap_or(1.0) }),
            _ => Err(bad("use random, weighted[:R] or undersample[:R]".into())),
        }
    }

    pub fn name(&self) -> String {
        match self {
            SamplerKind::Random => "random".into(),
            SamplerKind::Weighted { max_ratio } => format!("weighted:{max_ratio}"),
            SamplerKind::Undersample { max_ratio } => format!("undersample:{max_ratio}"),
        }
    }
}

/// A sampler bound to one training set.
#[derive(Clone, Debug)]
pub struct Sampler {
    kind: SamplerKind,
    /// Examples per epoch.
    epoch_length: usize,
    seed: u64,
    /// Example indices by class (empty for `random`).
    by_class: Vec<Vec<usize>>,
    /// Weighted: each class's draw probability. Undersample: how many each class keeps.
    class_share: Vec<f64>,
    keep: Vec<usize>,
    rows: usize,
}

impl Sampler {
    /// `classes`: each example's class id, for the class-aware samplers
    /// (None for tasks without one class per example: only `random` then).
    /// `names`: the class names, for messages.
    pub fn new(
        kind: &SamplerKind,
        rows: usize,
        classes: Option<&[usize]>,
        names: &[String],
        epoch_length: Option<usize>,
        seed: u64,
    ) -> Result<Sampler> {
        if epoch_length == Some(0) {
            return Err(Error::InvalidArgument("--epoch-length must be at least 1".into()));
        }
        let mut sampler = Sampler {
            kind: kind.clone(),
            epoch_length: epoch_length.unwrap_or(rows),
            seed,
            by_class: Vec::new(),
            class_share: Vec::new(),
            keep: Vec::new(),
            rows,
        };
        if *kind == SamplerKind::Random {
            return Ok(sampler);
        }
        let Some(classes) = classes else {
            return Err(Error::InvalidArgument(format!(
                "--sampler {} needs a single-label classification task (one class per example)",
                kind.name()
            )));
        };
        let mut by_class = vec![Vec::new(); names.len()];
        for (i, &c) in classes.iter().enumerate() {
            by_class[c].push(i);
        }
        let counts: Vec<usize> = by_class.iter().map(Vec::len).collect();
        match *kind {
            SamplerKind::Weighted { max_ratio } => {
                if let Some(c) = counts.iter().position(|&n| n == 0) {
                    return Err(Error::InvalidArgument(format!(
                        "--sampler {}: class `{}` has no training examples, so it cannot be drawn",
                        kind.name(),
                        names[c]
                    )));
                }
                let floor = *counts.iter().max().unwrap_or(&0) as f64 / max_ratio;
                let mass: Vec<f64> = counts.iter().map(|&n| (n as f64).max(floor)).collect();
                let total: f64 = mass.iter().sum();
                sampler.class_share = mass.iter().map(|m| m / total).collect();
            }
            SamplerKind::Undersample { max_ratio } => {
                let smallest = counts.iter().copied().min().unwrap_or(0);
                let cap = (max_ratio * smallest as f64).floor() as usize;
                if cap == 0 {
                    let (c, n) = counts.iter().enumerate().min_by_key(|(_, n)| **n).map(|(c, n)| (c, *n)).unwrap_or((0, 0));
                    let why = if n == 0 {
                        format!("class `{}` has no training examples", names[c])
                    } else {
                        format!("⌊{max_ratio} × {n}⌋ = 0, where {n} is the size of the smallest class, `{}`", names[c])
                    };
                    return Err(Error::InvalidArgument(format!(
                        "--sampler {}: would leave every class empty, since each keeps at most ⌊ratio × smallest class⌋ examples and {why}",
                        kind.name()
                    )));
                }
                sampler.keep = counts.iter().map(|&n| n.min(cap)).collect();
                if epoch_length.is_none() {
                    sampler.epoch_length = sampler.keep.iter().sum();
                }
            }
            SamplerKind::Random => {}
        }
        sampler.by_class = by_class;
        Ok(sampler)
    }

    pub fn epoch_length(&self) -> usize {
        self.epoch_length
    }

    pub fn kind(&self) -> &SamplerKind {
        &self.kind
    }

    /// Each class's expected share of an epoch (empty for `random`).
    pub fn expected_shares(&self) -> Vec<f64> {
        match self.kind {
            SamplerKind::Random => Vec::new(),
            SamplerKind::Weighted { .. } => self.class_share.clone(),
            SamplerKind::Undersample { .. } => {
                let total: usize = self.keep.iter().sum();
                self.keep.iter().map(|&k| k as f64 / total.max(1) as f64).collect()
            }
        }
    }

    /// The example indices of `epoch`, in the order they are visited
    /// (before length bucketing, which reorders within pools).
    pub fn epoch(&self, epoch: u64) -> Vec<usize> {
        let mut rng = SeqRng::new(mix64(self.seed ^ mix64(epoch.wrapping_add(0x5bd1_e995))));
        match self.kind {
            SamplerKind::Random => {
                let mut order: Vec<usize> = (0..self.rows).collect();
                rng.shuffle(&mut order);
                cycle(order, self.epoch_length, &mut rng)
            }
            SamplerKind::Weighted { .. } => {
                // Inverse-CDF over the class shares, then a uniform example of the class.
                let mut cumulative = Vec::with_capacity(self.class_share.len());
                let mut acc = 0.0;
                for s in &self.class_share {
                    acc += s;
                    cumulative.push(acc);
                }
                (0..self.epoch_length)
                    .map(|_| {
                        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * acc;
                        let c = cumulative.iter().position(|&edge| u < edge).unwrap_or(cumulative.len() - 1);
                        let members = &self.by_class[c];
                        members[rng.below(members.len() as u64) as usize]
                    })
                    .collect()
            }
            SamplerKind::Undersample { .. } => {
                let mut kept = Vec::new();
                for (members, &k) in self.by_class.iter().zip(&self.keep) {
                    let mut m = members.clone();
                    rng.shuffle(&mut m);
                    kept.extend_from_slice(&m[..k]);
                }
                rng.shuffle(&mut kept);
                cycle(kept, self.epoch_length, &mut rng)
            }
        }
    }

    /// One line for the start of training.
    pub fn describe(&self, names: &[String]) -> String {
        let shares = self.expected_shares();
        let how = match self.kind {
            SamplerKind::Random => "each example once, shuffled".to_string(),
            SamplerKind::Weighted { .. } => "drawn with replacement".to_string(),
            SamplerKind::Undersample { .. } => format!(
                "a fresh subset each epoch, keeping {}",
                names.iter().zip(&self.keep).map(|(n, k)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
            ),
        };
        let mut line = format!("sampler: {}, epoch of {} examples ({how})", self.kind.name(), self.epoch_length);
        if !shares.is_empty() {
            let s: Vec<String> = names.iter().zip(&shares).map(|(n, s)| format!("{n} {:.1}%", 100.0 * s)).collect();
            line.push_str(&format!("; expected class shares: {}", s.join(", ")));
        }
        line
    }
}

/// `length` indices from a shuffled `order`: its first `length` when that is
/// enough, else all of it, then reshuffled passes until `length` are taken.
fn cycle(mut order: Vec<usize>, length: usize, rng: &mut SeqRng) -> Vec<usize> {
    let mut out = Vec::with_capacity(length);
    while out.len() < length && !order.is_empty() {
        let take = (length - out.len()).min(order.len());
        out.extend_from_slice(&order[..take]);
        rng.shuffle(&mut order);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_ratios() {
        assert_eq!(SamplerKind::parse("random").unwrap(), SamplerKind::Random);
        assert_eq!(SamplerKind::parse("weighted").unwrap(), SamplerKind::Weighted { max_ratio: 1.0 });
        assert_eq!(SamplerKind::parse("weighted:3").unwrap(), SamplerKind::Weighted { max_ratio: 3.0 });
        assert_eq!(SamplerKind::parse("undersample:2").unwrap(), SamplerKind::Undersample { max_ratio: 2.0 });
        for bad in ["weighted:0.5", "undersample:-1", "undersample:x", "random:2", "balanced", "weighted:nan"] {
            assert!(SamplerKind::parse(bad).unwrap_err().to_string().contains("--sampler"), "{bad}");
        }
    }

    #[test]
    fn random_visits_every_example_once_and_can_be_lengthened() {
        let s = Sampler::new(&SamplerKind::Random, 10, None, &[], None, 1).unwrap();
        let mut e = s.epoch(0);
        e.sort();
        assert_eq!(e, (0..10).collect::<Vec<_>>());
        let long = Sampler::new(&SamplerKind::Random, 10, None, &[], Some(25), 1).unwrap();
        let e = long.epoch(3);
        assert_eq!(e.len(), 25);
        assert!((0..10).all(|i| e.iter().filter(|&&j| j == i).count() >= 2));
    }

    #[test]
    fn class_samplers_need_classes() {
        let e = Sampler::new(&SamplerKind::Weighted { max_ratio: 1.0 }, 4, None, &[], None, 1).unwrap_err().to_string();
        assert!(e.contains("single-label"), "{e}");
    }
}
