//! The report a training run leaves in its output folder: `report.md` (the
//! per-class table with support counts, the averages, the minority classes
//! highlighted, calibration and threshold notes) and the charts it embeds,
//! as SVG files under `plots/`.

pub mod errors;
pub mod inspect;
pub mod plots;
pub mod svg;

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::metrics::Scores;
use crate::metrics::calibration::{ECE_BINS, average_precision, precision_recall_curve, reliability_bins, softmax_rows, top_label};
use crate::metrics::evaluation::{Evaluation, TaskReport};
use plots::{PrCurve, Series};

/// Everything the report is written from.
pub struct ReportInput<'a> {
    pub title: String,
    pub labels: &'a [String],
    /// Training examples per class (positives for multi-label; scored tokens
    /// for token tasks); empty when unknown.
    pub train_counts: &'a [usize],
    /// The final evaluation (with the run's temperature and threshold).
    pub evaluation: &'a Evaluation,
    /// Multi-label: the gold rows of the evaluation data.
    pub multi_gold: Option<&'a [Vec<bool>]>,
    pub eval_file: String,
    /// The lines of metrics.jsonl.
    pub log: Vec<Value>,
    /// The metric the training curves plot (an `eval_` key without its prefix).
    pub metric: String,
    /// Lines describing the run's setup (loss, weights, sampler).
    pub setup: Vec<String>,
    /// profile.json of a `--profile` run.
    pub profile: Option<Value>,
}

/// Classes whose share of the training data is under half an even share
/// (1 / 2K), or, without training counts, of the evaluation support.
pub fn minority_classes(counts: &[usize]) -> Vec<bool> {
    let total: usize = counts.iter().sum();
    let k = counts.len().max(1) as f64;
    counts.iter().map(|&n| total > 0 && (n as f64) < total as f64 / (2.0 * k)).collect()
}

/// Writes report.md and plots/*.svg into `dir`; returns the files written.
pub fn write_report(dir: &Path, input: &ReportInput) -> Result<Vec<String>> {
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|e| Error::io(&plots_dir, e))?;
    let mut md = String::new();
    let mut files = Vec::new();
    let save = |name: &str, svg: String, files: &mut Vec<String>| -> Result<String> {
        write_atomic(&plots_dir.join(name), svg.as_bytes())?;
        files.push(format!("plots/{name}"));
        Ok(format!("plots/{name}"))
    };
    let _ = writeln!(md, "# Training report: {}\n", input.title);
    let _ = writeln!(md, "Evaluated on `{}`.\n", input.eval_file);
    for line in &input.setup {
        let _ = writeln!(md, "- {line}");
    }
    if !input.setup.is_empty() {
        md.push('\n');
    }
    let e = input.evaluation;
    match &e.report {
        TaskReport::Classification(r) => {
            let support: Vec<usize> = r.per_class.iter().map(|s| s.support).collect();
            let counts = if input.train_counts.len() == r.labels.len() { input.train_counts } else { &support };
            md.push_str(&class_table(&r.labels, &r.per_class, counts, input.train_counts.len() == r.labels.len()));
            let _ = writeln!(md, "| **accuracy** | | | | {:.4} | {} |", r.accuracy, r.micro_avg.support);
            md.push_str(&average_rows(&[("macro avg", &r.macro_avg), ("micro avg", &r.micro_avg), ("weighted avg", &r.weighted_avg)]));
            if let Some(t) = e.threshold {
                let _ = writeln!(md, "\nPredictions use the tuned threshold: `{}` where P({}) ≥ {t:.4}.", r.labels[1], r.labels[1]);
            }
            let path =
                save("confusion_matrix.svg", plots::confusion_matrix(&r.labels, &r.confusion_matrix, "Confusion matrix"), &mut files)?;
            let _ = writeln!(
                md,
                "\n## Confusion matrix\n\nRows are true labels, columns predicted; each cell gives the count and, in brackets, its share of the row.\n\n![confusion matrix]({path})\n"
            );
            md.push_str(&single_label_calibration(e, &mut |n, s| save(n, s, &mut files))?);
            if let Some((scores, positive)) = e.binary_scores() {
                let (p, rc, thresholds) = precision_recall_curve(&scores, &positive);
                let ap = average_precision(&scores, &positive);
                let operating = r.per_class.get(1).map(|s| (s.recall, s.precision));
                let curve = PrCurve {
                    name: r.labels[1].clone(),
                    recall: rc,
                    precision: p,
                    average_precision: ap,
                    operating_point: operating,
                    bold: true,
                };
                let path = save("pr_curve.svg", plots::pr_curves(&[curve], &format!("Precision-recall of `{}`", r.labels[1])), &mut files)?;
                let _ = writeln!(
                    md,
                    "\n## Precision-recall\n\nAverage precision of `{}`: **{ap:.4}** over {} thresholds. The dot marks the decision rule in use ({}).\n\n![precision-recall curve]({path})\n",
                    r.labels[1],
                    thresholds.len(),
                    e.threshold.map_or("the argmax".to_string(), |t| format!("threshold {t:.4}"))
                );
            }
        }
        TaskReport::MultiLabel(r, thresholds) => {
            let support: Vec<usize> = r.per_label.iter().map(|s| s.support).collect();
            let counts = if input.train_counts.len() == r.labels.len() { input.train_counts } else { &support };
            md.push_str(&class_table(&r.labels, &r.per_label, counts, input.train_counts.len() == r.labels.len()));
            md.push_str(&average_rows(&[
                ("micro avg", &r.micro_avg),
                ("macro avg", &r.macro_avg),
                ("weighted avg", &r.weighted_avg),
                ("samples avg", &r.samples_avg),
            ]));
            let _ = writeln!(md, "\nSubset accuracy {:.4}, Hamming loss {:.4}.", r.subset_accuracy, r.hamming_loss);
            if let Some(gold) = input.multi_gold {
                md.push_str(&multi_label_curves(&r.labels, gold, &e.probabilities, thresholds, &mut |n, s| save(n, s, &mut files))?);
            }
        }
        TaskReport::Token(_) | TaskReport::Regression(_) => {
            let _ = writeln!(md, "```text\n{}```", e.to_text());
        }
    }
    let (loss, metric) = curves_from_log(&input.log, &input.metric);
    if !loss.is_empty() {
        let path = save("training_curves.svg", plots::training_curves(&loss, &metric, &input.metric), &mut files)?;
        let _ = writeln!(
            md,
            "\n## Training curves\n\nTraining loss (mean over each logging window) and evaluation loss, and the evaluation `{}`, against the optimizer step.\n\n![training curves]({path})",
            input.metric
        );
    }
    if let Some((grad_norms, update_ratios, clipped)) = diagnostics_from_log(&input.log) {
        let path = save("diagnostics.svg", plots::diagnostics_curves(&grad_norms, &update_ratios), &mut files)?;
        let _ = writeln!(
            md,
            "\n## Training diagnostics\n\nAt each logging step: the gradient norm of the embeddings, each encoder layer and the head before clipping, and the size of that step's update relative to the weights (‖Δw‖ / ‖w‖). {clipped}\n\n![gradient norm and update size per layer]({path})"
        );
    }
    if let Some(profile) = &input.profile {
        md.push_str(&profile_table(profile));
    }
    write_atomic(&dir.join("report.md"), md.as_bytes())?;
    files.insert(0, "report.md".into());
    Ok(files)
}

/// The per-class table; minority classes in bold with a marker.
fn class_table(labels: &[String], scores: &[Scores], counts: &[usize], counts_are_train: bool) -> String {
    let minority = minority_classes(counts);
    let mut md = String::from("## Per-class results\n\n");
    let count_col = if counts_are_train { "train examples" } else { "share" };
    let total: usize = counts.iter().sum::<usize>().max(1);
    let _ = writeln!(md, "| class | {count_col} | precision | recall | F1 | support |\n|---|---:|---:|---:|---:|---:|");
    for (i, (l, s)) in labels.iter().zip(scores).enumerate() {
        let name = if minority[i] { format!("**{l}** ⚠ minority") } else { l.clone() };
        let count = format!("{} ({:.1}%)", counts[i], 100.0 * counts[i] as f64 / total as f64);
        let _ = writeln!(md, "| {name} | {count} | {:.4} | {:.4} | {:.4} | {} |", s.precision, s.recall, s.f1, s.support);
    }
    if minority.iter().any(|&m| m) {
        md.insert_str(
            "## Per-class results\n\n".len(),
            "Classes marked ⚠ are minorities: under half of an even share of the training data.\n\n",
        );
    }
    md
}

fn average_rows(rows: &[(&str, &Scores)]) -> String {
    rows.iter()
        .map(|(name, s)| format!("| **{name}** | | {:.4} | {:.4} | {:.4} | {} |\n", s.precision, s.recall, s.f1, s.support))
        .collect()
}

type Saver<'a> = dyn FnMut(&str, String) -> Result<String> + 'a;

/// ECE before and after the temperature, and the reliability diagram.
fn single_label_calibration(e: &Evaluation, save: &mut Saver) -> Result<String> {
    if e.logits.is_empty() {
        return Ok(String::new());
    }
    let bins_at = |t: f64| {
        let (conf, correct) = top_label(&softmax_rows(&e.logits, t), &e.gold);
        reliability_bins(&conf, &correct, ECE_BINS)
    };
    let before = bins_at(1.0);
    let ece_before = e.ece(1.0).unwrap_or(0.0);
    let calibrated = e.temperature != 1.0;
    let after = calibrated.then(|| bins_at(e.temperature));
    let ece_after = calibrated.then(|| e.ece(e.temperature).unwrap_or(0.0));
    let svg = plots::reliability_diagram(&before, after.as_deref(), (ece_before, ece_after), "confidence (top-label probability)");
    let path = save("reliability.svg", svg)?;
    let mut md = String::from("\n## Calibration\n\n");
    match ece_after {
        Some(a) => {
            let _ = writeln!(
                md,
                "Expected calibration error (ECE; 15 equal bins of top-label confidence): **{ece_before:.4}** before and **{a:.4}** after temperature scaling (T = {:.4}, fitted on the evaluation file; predict divides the logits by it).",
                e.temperature
            );
        }
        None => {
            let _ = writeln!(
                md,
                "Expected calibration error (ECE; 15 equal bins of top-label confidence): **{ece_before:.4}**. No temperature was fitted (`--calibrate` fits one)."
            );
        }
    }
    let _ = writeln!(md, "\n![reliability diagram]({path})");
    Ok(md)
}

/// Multi-label: per-label and micro-averaged precision-recall curves, and
/// the reliability of the per-label probabilities (every cell one event).
fn multi_label_curves(labels: &[String], gold: &[Vec<bool>], probs: &[Vec<f64>], thresholds: &[f64], save: &mut Saver) -> Result<String> {
    let column = |c: usize| -> (Vec<f64>, Vec<bool>) { probs.iter().zip(gold).map(|(p, g)| (p[c], g[c])).unzip() };
    let mut curves = Vec::new();
    let (all_p, all_g): (Vec<f64>, Vec<bool>) = probs.iter().flatten().copied().zip(gold.iter().flatten().copied()).unzip();
    let (p, r, _) = precision_recall_curve(&all_p, &all_g);
    curves.push(PrCurve {
        name: "micro average".into(),
        recall: r,
        precision: p,
        average_precision: average_precision(&all_p, &all_g),
        operating_point: None,
        bold: true,
    });
    let mut md = String::from("\n## Precision-recall\n\n| label | average precision | threshold |\n|---|---:|---:|\n");
    for (c, name) in labels.iter().enumerate() {
        let (s, g) = column(c);
        let ap = average_precision(&s, &g);
        let _ = writeln!(md, "| {name} | {ap:.4} | {:.4} |", thresholds.get(c).copied().unwrap_or(0.5));
        if labels.len() <= 10 {
            let (p, r, _) = precision_recall_curve(&s, &g);
            let tp = s.iter().zip(&g).filter(|(v, y)| **y && **v >= thresholds[c]).count();
            let predicted = s.iter().filter(|v| **v >= thresholds[c]).count();
            let positives = g.iter().filter(|y| **y).count();
            let point = (positives > 0 && predicted > 0).then(|| (tp as f64 / positives as f64, tp as f64 / predicted as f64));
            curves.push(PrCurve {
                name: name.clone(),
                recall: r,
                precision: p,
                average_precision: ap,
                operating_point: point,
                bold: false,
            });
        }
    }
    let path = save("pr_curve.svg", plots::pr_curves(&curves, "Precision-recall per label"))?;
    let _ = writeln!(md, "\n![precision-recall curves]({path})\n");
    let bins = reliability_bins(&all_p, &all_g, ECE_BINS);
    let n = all_p.len().max(1) as f64;
    let ece: f64 = bins.iter().map(|b| b.count as f64 / n * (b.accuracy - b.confidence).abs()).sum();
    let path = save("reliability.svg", plots::reliability_diagram(&bins, None, (ece, None), "predicted probability of a label"))?;
    let _ = writeln!(
        md,
        "## Calibration\n\nEvery (example, label) probability is one event; the bars are the fraction of positives per bin (ECE {ece:.4}).\n\n![reliability diagram]({path})"
    );
    Ok(md)
}

/// Series for the training curves from metrics.jsonl: training loss and
/// evaluation loss; the evaluation metric.
fn curves_from_log(log: &[Value], metric: &str) -> (Vec<Series>, Vec<Series>) {
    let points = |key: &str| -> Vec<(f64, f64)> { log.iter().filter_map(|v| Some((v["step"].as_f64()?, v.get(key)?.as_f64()?))).collect() };
    let mut loss = Vec::new();
    let train = points("loss");
    if !train.is_empty() {
        loss.push(Series { name: "training loss".into(), points: train, markers: false });
    }
    let eval_loss = points("eval_loss");
    if !eval_loss.is_empty() {
        loss.push(Series { name: "evaluation loss".into(), points: eval_loss, markers: true });
    }
    let m = points(&format!("eval_{metric}"));
    let metric_series =
        if m.is_empty() { Vec::new() } else { vec![Series { name: format!("evaluation {metric}"), points: m, markers: true }] };
    (loss, metric_series)
}

/// The report's table of profile.json: the 15 largest rows, and the rest summed.
fn profile_table(profile: &Value) -> String {
    let Some(ops) = profile["ops"].as_array() else { return String::new() };
    let steps = profile["steps"].as_u64().unwrap_or(0);
    let mut md = format!(
        "\n## Profile\n\n{} steps on the {}, wall clock per op (profile.json has every row). Total {:.0} ms, {:.1} ms per step.\n\n\
         | op | direction | calls | total ms | mean ms | share | GB/s | TFLOP/s |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        steps,
        profile["device"].as_str().unwrap_or("?"),
        profile["total_ms"].as_f64().unwrap_or(0.0),
        profile["total_ms"].as_f64().unwrap_or(0.0) / steps.max(1) as f64
    );
    let rate = |v: &Value, digits: usize| v.as_f64().map(|x| format!("{x:.digits$}")).unwrap_or_default();
    for op in ops.iter().take(15) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.3} | {:.1}% | {} | {} |",
            op["op"].as_str().unwrap_or("?"),
            op["direction"].as_str().unwrap_or("?"),
            op["calls"].as_u64().unwrap_or(0),
            op["total_ms"].as_f64().unwrap_or(0.0),
            op["mean_ms"].as_f64().unwrap_or(0.0),
            100.0 * op["share"].as_f64().unwrap_or(0.0),
            rate(&op["gb_per_s"], 1),
            rate(&op["tflops"], 3)
        );
    }
    if ops.len() > 15 {
        let rest: f64 = ops[15..].iter().filter_map(|o| o["share"].as_f64()).sum();
        let _ = writeln!(md, "| {} other rows | | | | | {:.1}% | | |", ops.len() - 15, 100.0 * rest);
    }
    if let Some(kernels) = profile["kernels"].as_array().filter(|k| !k.is_empty()) {
        md.push_str(&kernel_table(profile, kernels));
    }
    md
}

/// A device run's kernels (profile.json's `kernels`): the 15 largest, and the rest summed.
fn kernel_table(profile: &Value, kernels: &[Value]) -> String {
    let mut md = format!(
        "\n### Kernels\n\n{} Total {:.0} ms. GB/s is the bytes each launch names (its buffers; a GEMM's operands) over its time.\n\n\
         | kernel | launches | total ms | mean ms | share | GB/s | TFLOP/s |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        profile["kernel_timing"].as_str().map(|t| format!("Timed by {t}.")).unwrap_or_default(),
        profile["kernels_total_ms"].as_f64().unwrap_or(0.0)
    );
    for k in kernels.iter().take(15) {
        let tflops = k["tflops"].as_f64().map(|t| format!("{t:.3}")).unwrap_or_default();
        let gb_per_s = k["gb_per_s"].as_f64().map(|g| format!("{g:.1}")).unwrap_or_default();
        let _ = writeln!(
            md,
            "| `{}` | {} | {:.1} | {:.3} | {:.1}% | {gb_per_s} | {tflops} |",
            k["kernel"].as_str().unwrap_or("?"),
            k["launches"].as_u64().unwrap_or(0),
            k["total_ms"].as_f64().unwrap_or(0.0),
            k["mean_ms"].as_f64().unwrap_or(0.0),
            100.0 * k["share"].as_f64().unwrap_or(0.0)
        );
    }
    if kernels.len() > 15 {
        let rest: f64 = kernels[15..].iter().filter_map(|k| k["share"].as_f64()).sum();
        let _ = writeln!(md, "| {} other kernels | | | | {:.1}% | | |", kernels.len() - 15, 100.0 * rest);
    }
    md
}

/// The diagnostics of metrics.jsonl (`--diagnostics on`): one series per
/// part for the gradient norms and the update ratios, in the parts' order,
/// and a sentence on the clipped steps. None when the log has none.
fn diagnostics_from_log(log: &[Value]) -> Option<(Vec<Series>, Vec<Series>, String)> {
    let lines: Vec<&Value> = log.iter().filter(|v| v.get("grad_norm_by_layer").is_some()).collect();
    let parts: Vec<String> = lines.first()?["grad_norm_by_layer"].as_object()?.keys().cloned().collect();
    let series = |key: &str| -> Vec<Series> {
        parts
            .iter()
            .map(|part| Series {
                name: part.clone(),
                points: lines.iter().filter_map(|v| Some((v["step"].as_f64()?, v[key][part].as_f64()?))).collect(),
                markers: false,
            })
            .collect()
    };
    // Each line's fraction covers the steps since the line before it.
    let (mut clipped, mut steps, mut previous) = (0.0, 0.0, 0.0);
    for v in &lines {
        if let (Some(step), Some(fraction)) = (v["step"].as_f64(), v["clipped_fraction"].as_f64()) {
            clipped += fraction * (step - previous);
            steps += step - previous;
            previous = step;
        }
    }
    let sentence = if steps > 0.0 {
        format!("{:.1}% of the {} steps logged had their gradient norm clipped.", 100.0 * clipped / steps, steps as u64)
    } else {
        String::new()
    };
    Some((series("grad_norm_by_layer"), series("update_ratio_by_layer"), sentence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_series_follow_the_log_and_clipping_is_weighted_by_window() {
        let log = vec![
            serde_json::json!({"step": 10, "loss": 1.0}),
            serde_json::json!({"step": 10, "grad_norm_by_layer": {"embeddings": 0.5, "layer.0": 2.0}, "update_ratio_by_layer": {"embeddings": 1e-4, "layer.0": 3e-4}, "clipped_fraction": 1.0}),
            serde_json::json!({"step": 40, "grad_norm_by_layer": {"embeddings": 0.25, "layer.0": 1.0}, "update_ratio_by_layer": {"embeddings": 2e-4, "layer.0": 1e-4}, "clipped_fraction": 0.0}),
        ];
        let (norms, ratios, sentence) = diagnostics_from_log(&log).unwrap();
        assert_eq!(norms.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["embeddings", "layer.0"]);
        assert_eq!(norms[1].points, vec![(10.0, 2.0), (40.0, 1.0)]);
        assert_eq!(ratios[0].points, vec![(10.0, 1e-4), (40.0, 2e-4)]);
        // 10 clipped steps of 40.
        assert_eq!(sentence, "25.0% of the 40 steps logged had their gradient norm clipped.");
        assert!(diagnostics_from_log(&log[..1]).is_none());
    }

    #[test]
    fn minorities_are_under_half_an_even_share() {
        assert_eq!(minority_classes(&[865, 135]), vec![false, true]);
        assert_eq!(minority_classes(&[400, 350, 250]), vec![false, false, false]);
        assert_eq!(minority_classes(&[900, 80, 20]), vec![false, true, true]);
        assert_eq!(minority_classes(&[9000, 800, 200]), vec![false, true, true]);
        assert_eq!(minority_classes(&[0, 0]), vec![false, false]);
    }
}
