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
//! Multi-label data takes `weighted[:R]` over groups instead of classes:
//! each example joins the group of its rarest label (the label with the
//! fewest training positives among its own; examples with no label form one
//! more group), so a document's draw weight comes from its rarest label.
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
    /// Multi-label only: per label, the share of examples carrying it in the
    /// data and its expected share in an epoch.
    label_shares: Vec<(f64, f64)>,
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
            label_shares: Vec::new(),
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
                sampler.class_share = weighted_shares(&counts, max_ratio);
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

    /// `weighted[:R]` for multi-label data, where `label_sets` holds each
    /// example's labels: the groups of the module comment are drawn as
    /// classes are. `random` needs no labels; `undersample` is refused, since
    /// cutting one group also cuts the other labels its examples carry.
    pub fn for_label_sets(
        kind: &SamplerKind,
        label_sets: &[Vec<bool>],
        names: &[String],
        epoch_length: Option<usize>,
        seed: u64,
    ) -> Result<Sampler> {
        let rows = label_sets.len();
        let max_ratio = match *kind {
            SamplerKind::Random => return Sampler::new(kind, rows, None, names, epoch_length, seed),
            SamplerKind::Undersample { .. } => {
                return Err(Error::InvalidArgument(multi_label_undersampling(&kind.name())));
            }
            SamplerKind::Weighted { max_ratio } => max_ratio,
        };
        let mut positives = vec![0usize; names.len()];
        for set in label_sets {
            set.iter().enumerate().filter(|(_, on)| **on).for_each(|(l, _)| positives[l] += 1);
        }
        let no_label = names.len();
        let group_of = |set: &Vec<bool>| (0..names.len()).filter(|&l| set[l]).min_by_key(|&l| (positives[l], l)).unwrap_or(no_label);
        let mut by_group = vec![Vec::new(); names.len() + 1];
        for (i, set) in label_sets.iter().enumerate() {
            by_group[group_of(set)].push(i);
        }
        // A label that is no example's rarest has no group of its own; it is drawn through its examples' groups.
        by_group.retain(|members| !members.is_empty());
        if by_group.is_empty() {
            return Err(Error::InvalidArgument(format!("--sampler {}: the training set is empty", kind.name())));
        }
        let counts: Vec<usize> = by_group.iter().map(Vec::len).collect();
        let class_share = weighted_shares(&counts, max_ratio);
        let mut label_shares = vec![(0.0, 0.0); names.len()];
        for (members, share) in by_group.iter().zip(&class_share) {
            for &i in members {
                for (l, _) in label_sets[i].iter().enumerate().filter(|(_, on)| **on) {
                    label_shares[l].0 += 1.0 / rows as f64;
                    label_shares[l].1 += share / members.len() as f64;
                }
            }
        }
        Ok(Sampler {
            kind: kind.clone(),
            epoch_length: epoch_length.unwrap_or(rows),
            seed,
            by_class: by_group,
            class_share,
            keep: Vec::new(),
            rows,
            label_shares,
        })
    }

    /// Multi-label only: per label, (share of examples carrying it in the
    /// data, expected share in an epoch); empty otherwise.
    pub fn label_shares(&self) -> &[(f64, f64)] {
        &self.label_shares
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
        if !self.label_shares.is_empty() {
            line.push_str(&format!(
                ", each example by its rarest label ({} groups); {}",
                self.by_class.len(),
                describe_label_shares(names, &self.label_shares)
            ));
        } else if !shares.is_empty() {
            let s: Vec<String> = names.iter().zip(&shares).map(|(n, s)| format!("{n} {:.1}%", 100.0 * s)).collect();
            line.push_str(&format!("; expected class shares: {}", s.join(", ")));
        }
        line
    }
}

/// Why `--sampler undersample[:R]` (`spec`) is refused for multi-label data.
pub fn multi_label_undersampling(spec: &str) -> String {
    format!(
        "--sampler {spec}: multi-label data takes --sampler weighted[:R] (each example drawn by its rarest label); \
         undersampling one label would also drop the other labels its examples carry"
    )
}

/// `weighted[:R]`: each class (or group) drawn in proportion to
/// max(n_c, n_max / R).
fn weighted_shares(counts: &[usize], max_ratio: f64) -> Vec<f64> {
    let floor = *counts.iter().max().unwrap_or(&0) as f64 / max_ratio;
    let mass: Vec<f64> = counts.iter().map(|&n| (n as f64).max(floor)).collect();
    let total: f64 = mass.iter().sum();
    mass.iter().map(|m| m / total).collect()
}

/// The multi-label shares, data → epoch: every label when there are few,
/// else the four most common and the four rarest.
fn describe_label_shares(names: &[String], shares: &[(f64, f64)]) -> String {
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| shares[b].0.total_cmp(&shares[a].0).then(a.cmp(&b)));
    let show = |ls: &[usize]| {
        ls.iter().map(|&l| format!("{} {:.1}% → {:.1}%", names[l], 100.0 * shares[l].0, 100.0 * shares[l].1)).collect::<Vec<_>>().join(", ")
    };
    if order.len() <= 12 {
        format!("expected label shares (examples carrying the label, data → epoch): {}", show(&order))
    } else {
        format!(
            "expected label shares (examples carrying the label, data → epoch), most common: {}; rarest: {}",
            show(&order[..4]),
            show(&order[order.len() - 4..])
        )
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
    fn multi_label_weighting_draws_each_example_by_its_rarest_label() {
        let names: Vec<String> = ["common", "rare", "mid"].iter().map(|s| s.to_string()).collect();
        // common on 8 examples, mid on 3, rare on 1; example 9 has no label.
        let mut sets = vec![vec![true, false, false]; 6];
        sets.push(vec![true, false, true]);
        sets.push(vec![true, true, true]);
        sets.push(vec![false, false, true]);
        sets.push(vec![false, false, false]);
        let s = Sampler::for_label_sets(&SamplerKind::Weighted { max_ratio: 1.0 }, &sets, &names, Some(40_000), 7).unwrap();
        // Groups: common {0..6}, mid {6, 8}, rare {7}, none {9}: with R = 1 each is drawn a quarter of the time.
        let draws = s.epoch(0);
        let rate = |i: usize| draws.iter().filter(|&&j| j == i).count() as f64 / draws.len() as f64;
        assert!((rate(7) - 0.25).abs() < 0.01, "the only rare example: {}", rate(7));
        assert!((rate(9) - 0.25).abs() < 0.01, "the unlabelled example: {}", rate(9));
        assert!((rate(6) - 0.125).abs() < 0.01 && (rate(8) - 0.125).abs() < 0.01);
        assert!((rate(0) - 0.25 / 6.0).abs() < 0.01);
        // Expected label shares, data → epoch: rare 10% → 25%; common 80% → 25% + 12.5% + 25%.
        let shares = s.label_shares();
        assert!((shares[1].0 - 0.1).abs() < 1e-12 && (shares[1].1 - 0.25).abs() < 1e-12);
        assert!((shares[0].0 - 0.8).abs() < 1e-12 && (shares[0].1 - 0.625).abs() < 1e-12);
        let line = s.describe(&names);
        assert!(line.contains("rarest label (4 groups)") && line.contains("rare 10.0% → 25.0%"), "{line}");
        // R caps the most common group at R draws per draw of the smallest.
        let capped = Sampler::for_label_sets(&SamplerKind::Weighted { max_ratio: 6.0 }, &sets, &names, None, 7).unwrap();
        let common = capped.label_shares()[0].1;
        assert!(common > 0.625, "a larger R keeps more of the common label: {common}");
    }

    #[test]
    fn multi_label_refuses_undersampling() {
        let names = vec!["a".to_string()];
        let e = Sampler::for_label_sets(&SamplerKind::Undersample { max_ratio: 1.0 }, &[vec![true]], &names, None, 1).unwrap_err();
        assert!(e.to_string().contains("weighted[:R]"), "{e}");
    }

    #[test]
    fn class_samplers_need_classes() {
        let e = Sampler::new(&SamplerKind::Weighted { max_ratio: 1.0 }, 4, None, &[], None, 1).unwrap_err().to_string();
        assert!(e.contains("single-label"), "{e}");
    }
}
