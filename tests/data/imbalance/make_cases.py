"""Builds the class-imbalance and calibration test cases and the reference
answers, for tests/imbalance.rs.

Run from the repository root with numpy and scikit-learn installed:

    python3 tests/data/imbalance/make_cases.py

It writes tests/data/imbalance/cases.json. Every case stores its inputs
beside the expected values, so the Rust tests never need Python:

- threshold: sklearn.metrics.precision_recall_curve on a binary case
  (probabilities of the positive class), then F1 = 2PR/(P+R) (0 where
  P+R = 0) over the returned thresholds in numpy and the F1-best threshold,
  ties to the largest; sklearn.metrics.average_precision_score.
- ece: expected calibration error with 15 equal bins ((k-1)/15, k/15], a
  confidence of 0 in the first bin, written here in numpy from its
  definition (Guo et al., 2017: sum over bins of n_k/n * |acc_k - conf_k|;
  scikit-learn has no ECE), on the top-label confidences of softmax
  probabilities, plus each bin's count, accuracy and mean confidence.
"""

import importlib.metadata
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve

rng = np.random.default_rng(20261127)


def threshold_case(name, n, positive_rate, separation, ties):
    y = (rng.random(n) < positive_rate).astype(int)
    y[0] = 1  # at least one positive
    logit = rng.normal(0.0, 1.0, n) + separation * (2 * y - 1)
    scores = 1.0 / (1.0 + np.exp(-logit))
    if ties:
        scores = np.round(scores, 1)  # many equal scores cross a threshold together
    precision, recall, thresholds = precision_recall_curve(y, scores)
    p, r = precision[:-1], recall[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    best = f1.max()
    best_threshold = thresholds[np.flatnonzero(f1 == best)].max()
    return {
        "name": name,
        "y_true": y.tolist(),
        "scores": scores.tolist(),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "thresholds": thresholds.tolist(),
        "best_threshold": float(best_threshold),
        "best_f1": float(best),
        "average_precision": float(average_precision_score(y, scores)),
    }


def ece_case(name, n, classes, scale):
    logits = rng.normal(0.0, 1.0, (n, classes))
    z = logits - logits.max(axis=1, keepdims=True)
    p_true = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(classes, p=row) for row in p_true])
    reported = logits * scale  # over- (scale > 1) or under-confident
    z = reported - reported.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    bins = 15
    index = np.clip(np.ceil(conf * bins).astype(int), 1, bins) - 1
    ece, per_bin = 0.0, []
    for k in range(bins):
        mask = index == k
        count = int(mask.sum())
        acc = float(correct[mask].mean()) if count else 0.0
        mean_conf = float(conf[mask].mean()) if count else 0.0
        ece += count / n * abs(acc - mean_conf)
        per_bin.append({"count": count, "accuracy": acc, "confidence": mean_conf})
    return {"name": name, "logits": reported.tolist(), "labels": labels.tolist(), "ece": ece, "bins": per_bin}


cases = {
    "generated_by": "tests/data/imbalance/make_cases.py",
    "versions": {"numpy": np.__version__, "scikit-learn": importlib.metadata.version("scikit-learn")},
    "threshold": [
        threshold_case("spam-like, 13% positive", 300, 0.13, 1.2, False),
        threshold_case("rare, 3% positive", 400, 0.03, 1.5, False),
        threshold_case("rounded scores with ties", 120, 0.3, 0.8, True),
    ],
    "ece": [
        ece_case("binary, overconfident x3", 500, 2, 3.0),
        ece_case("five classes, overconfident x2.5", 400, 5, 2.5),
        ece_case("three classes, underconfident x0.4", 300, 3, 0.4),
    ],
}
out = Path(__file__).with_name("cases.json")
out.write_text(json.dumps(cases, indent=1) + "\n")
print(f"wrote {out}")
