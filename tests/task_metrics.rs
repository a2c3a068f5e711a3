//! Multi-label, entity-level (seqeval) and regression metrics against the
//! reference libraries.
//!
//! tests/data/metrics/task_cases.json holds each case's inputs and what
//! scikit-learn, seqeval or scipy computed from them (its `command` field says
//! how to rebuild it, `versions` with which libraries). Every number must
//! agree within 1e-12.

use std::path::PathBuf;

use berth::Error;
use berth::metrics::{
    EntityScheme, Scores, best_f1_threshold, entity_report, extract_entities, mse, multilabel_report, pearson, spearman, tune_thresholds,
};
use serde_json::Value;

const TOL: f64 = 1e-12;

fn load() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/metrics/task_cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let root: Value = serde_json::from_str(&text).unwrap();
    assert!(root["command"].as_str().is_some_and(|c| c.contains("make_task_expected.py")), "task_cases.json names no command");
    for lib in ["scikit-learn", "seqeval", "scipy", "numpy"] {
        assert!(root["versions"][lib].is_string(), "task_cases.json: no {lib} version");
    }
    root
}

fn cases<'a>(root: &'a Value, section: &str) -> &'a [Value] {
    root[section].as_array().unwrap_or_else(|| panic!("task_cases.json: no {section}"))
}

fn find<'a>(root: &'a Value, section: &str, name: &str) -> &'a Value {
    cases(root, section).iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {section} case {name}"))
}

fn name(case: &Value) -> &str {
    case["name"].as_str().unwrap()
}

fn num(v: &Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what}: expected a number, got {v}"))
}

fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= TOL, "{what}: got {got:.17}, reference {want:.17}");
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()).collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn bools(v: &Value) -> Vec<bool> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() == 1).collect()
}

fn bool_rows(v: &Value) -> Vec<Vec<bool>> {
    v.as_array().unwrap().iter().map(bools).collect()
}

fn sentences(v: &Value) -> Vec<Vec<String>> {
    v.as_array().unwrap().iter().map(strings).collect()
}

/// Our (precision, recall, f1, support) against a reference score object.
fn check_scores(got: &Scores, want: &Value, what: &str) {
    close(got.precision, num(&want["precision"], what), &format!("{what} precision"));
    close(got.recall, num(&want["recall"], what), &format!("{what} recall"));
    close(got.f1, num(&want["f1-score"], what), &format!("{what} f1-score"));
    close(got.support as f64, num(&want["support"], what), &format!("{what} support"));
}

/// `got` (our to_json) has the reference dict's keys in its order, then
/// `extra`; every reference number matches, and supports are integers.
fn check_json_shape(got: &Value, want: &Value, extra: &[&str], what: &str) {
    let got_keys: Vec<&str> = got.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want_keys: Vec<&str> = want.as_object().unwrap().keys().map(String::as_str).collect();
    want_keys.extend(extra);
    assert_eq!(got_keys, want_keys, "{what}: keys in order");
    for (key, w) in want.as_object().unwrap() {
        let what = format!("{what}: json[{key:?}]");
        let fields: Vec<&str> = w.as_object().unwrap().keys().map(String::as_str).collect();
        let got_fields: Vec<&str> = got[key].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(got_fields, fields, "{what}: fields");
        for (f, wv) in w.as_object().unwrap() {
            close(num(&got[key][f], &what), num(wv, &what), &format!("{what}[{f:?}]"));
        }
        assert!(got[key]["support"].is_u64(), "{what}: support should be an integer");
    }
}

// ---------------------------------------------------------------- coverage

#[test]
fn the_stored_cases_cover_what_they_must() {
    let root = load();
    let columns = |rows: &[Vec<bool>], j: usize| -> Vec<bool> { rows.iter().map(|r| r[j]).collect() };

    // Multi-label: a label never predicted, one never true, one neither; a few hundred rows.
    let c = find(&root, "multilabel", "handcrafted");
    let (t, p) = (bool_rows(&c["y_true"]), bool_rows(&c["y_pred"]));
    let k = t[0].len();
    assert!((0..k).any(|j| columns(&t, j).contains(&true) && !columns(&p, j).contains(&true)), "a label never predicted");
    assert!((0..k).any(|j| !columns(&t, j).contains(&true) && columns(&p, j).contains(&true)), "a label never true");
    let c = find(&root, "multilabel", "unused_label");
    let (t, p) = (bool_rows(&c["y_true"]), bool_rows(&c["y_pred"]));
    assert!((0..t[0].len()).any(|j| !columns(&t, j).contains(&true) && !columns(&p, j).contains(&true)));
    assert!(bool_rows(&find(&root, "multilabel", "no_true_label")["y_true"]).iter().flatten().all(|&x| !x));
    assert_eq!(bool_rows(&find(&root, "multilabel", "random_300x6")["y_true"]).len(), 300);

    // Entities: one starting with I- in y_true (found in default mode, not in strict IOB2);
    // a type only in the predictions; a few hundred sentences.
    let c = find(&root, "entity", "starts_with_i");
    assert!(
        c["expected"]["default"]["entities_true"][0]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| c["y_true"][0][e[1].as_u64().unwrap() as usize].as_str().unwrap().starts_with("I-"))
    );
    assert_ne!(c["expected"]["default"]["entities_true"], c["expected"]["strict_iob2"]["entities_true"]);
    let c = find(&root, "entity", "pred_only_type");
    for scheme in ["default", "strict_iob2"] {
        let report = c["expected"][scheme]["report"].as_object().unwrap();
        assert!(report.iter().any(|(k, v)| !k.ends_with(" avg") && v["support"] == 0), "{scheme}: a type with support 0");
    }
    assert_eq!(find(&root, "entity", "random_300")["y_true"].as_array().unwrap().len(), 300);

    // Thresholds: a tie in the best F1, no positive, a few hundred scores.
    assert_eq!(find(&root, "thresholds", "tie_in_f1")["expected"][0], 0.9);
    assert!(find(&root, "thresholds", "no_positive")["expected"].is_null());
    assert!(floats(&find(&root, "thresholds", "random_300_rounded")["scores"]).len() >= 300);
    let c = find(&root, "tune", "random_250x4");
    assert!(floats(&c["expected"]).contains(&num(&c["default"], "default")), "a label falls back to the default");

    // Regression: ties for spearman, a few hundred points.
    let x = floats(&find(&root, "regression", "spearman_ties")["x"]);
    assert!(x.iter().enumerate().any(|(i, a)| x[..i].contains(a)));
    assert_eq!(floats(&find(&root, "regression", "random_300")["x"]).len(), 300);
}

// ------------------------------------------------------------- multi-label

#[test]
fn multilabel_scores_match_sklearn() {
    let root = load();
    for case in cases(&root, "multilabel") {
        let n = name(case);
        let labels = strings(&case["labels"]);
        let r = multilabel_report(&bool_rows(&case["y_true"]), &bool_rows(&case["y_pred"]), &labels).unwrap();
        let e = &case["expected"];
        let want = &e["report"];
        for (j, label) in labels.iter().enumerate() {
            check_scores(&r.per_label[j], &want[label], &format!("{n}: label {label}"));
        }
        check_scores(&r.micro_avg, &want["micro avg"], &format!("{n}: micro avg"));
        check_scores(&r.macro_avg, &want["macro avg"], &format!("{n}: macro avg"));
        check_scores(&r.weighted_avg, &want["weighted avg"], &format!("{n}: weighted avg"));
        check_scores(&r.samples_avg, &want["samples avg"], &format!("{n}: samples avg"));
        close(r.subset_accuracy, num(&e["subset_accuracy"], n), &format!("{n}: subset accuracy"));
        close(r.hamming_loss, num(&e["hamming_loss"], n), &format!("{n}: hamming loss"));
    }
}

#[test]
fn multilabel_json_and_text_have_sklearns_shape() {
    let root = load();
    for case in cases(&root, "multilabel") {
        let n = name(case);
        let labels = strings(&case["labels"]);
        let r = multilabel_report(&bool_rows(&case["y_true"]), &bool_rows(&case["y_pred"]), &labels).unwrap();
        let e = &case["expected"];
        let got = r.to_json();
        check_json_shape(&got, &e["report"], &["subset_accuracy", "hamming_loss"], n);
        close(num(&got["subset_accuracy"], n), num(&e["subset_accuracy"], n), &format!("{n}: json subset_accuracy"));
        close(num(&got["hamming_loss"], n), num(&e["hamming_loss"], n), &format!("{n}: json hamming_loss"));

        for digits in [2, 4] {
            let want = e[format!("text_digits{digits}")].as_str().unwrap();
            let got = r.to_text_digits(digits);
            assert!(got.starts_with(want), "{n}: digits={digits}\n--- berth\n{got}\n--- scikit-learn\n{want}");
            let rest: Vec<&str> = got[want.len()..].lines().collect();
            assert_eq!(rest.len(), 3, "{n}: after the table: {rest:?}");
            assert_eq!(rest[0], "", "{n}: a blank line after the table");
            for (line, label, value) in [(rest[1], "subset accuracy: ", r.subset_accuracy), (rest[2], "hamming loss: ", r.hamming_loss)] {
                let printed: f64 = line.strip_prefix(label).unwrap_or_else(|| panic!("{n}: {line:?}")).parse().unwrap();
                assert!((printed - value).abs() <= 0.5 * 10f64.powi(-(digits as i32)) + 1e-15, "{n}: {line:?} for {value}");
            }
        }
        assert_eq!(r.to_text(), r.to_text_digits(4));
    }
}

#[test]
fn multilabel_bad_shapes_are_errors() {
    let labels = vec!["a".to_owned(), "b".to_owned()];
    let good = vec![vec![true, false], vec![false, false]];
    for (t, p, needle) in [
        (good.clone(), vec![vec![true, false], vec![true]], "y_pred[1] has 1 columns but there are 2 labels"),
        (vec![vec![true], vec![false, true]], good.clone(), "y_true[0] has 1 columns"),
        (good.clone(), vec![vec![true, false]], "y_true has 2 samples but y_pred has 1"),
    ] {
        let err = multilabel_report(&t, &p, &labels).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    assert!(multilabel_report(&good, &good, &labels[..1]).is_err());
}

// -------------------------------------------------------------- thresholds

#[test]
fn best_f1_threshold_matches_precision_recall_curve() {
    let root = load();
    for case in cases(&root, "thresholds") {
        let n = name(case);
        let got = best_f1_threshold(&floats(&case["scores"]), &bools(&case["y_true"]));
        match (&got, &case["expected"]) {
            (None, Value::Null) => {}
            (Some((t, f1)), Value::Array(want)) => {
                close(*t, num(&want[0], n), &format!("{n}: threshold"));
                close(*f1, num(&want[1], n), &format!("{n}: f1"));
            }
            (got, want) => panic!("{n}: got {got:?}, reference {want}"),
        }
    }
}

#[test]
fn tune_thresholds_matches_per_label_best_f1() {
    let root = load();
    for case in cases(&root, "tune") {
        let n = name(case);
        let probs: Vec<Vec<f64>> = case["probs"].as_array().unwrap().iter().map(floats).collect();
        let got = tune_thresholds(&probs, &bool_rows(&case["y_true"]), num(&case["default"], n));
        let want = floats(&case["expected"]);
        assert_eq!(got.len(), want.len(), "{n}: one threshold per label");
        // berth moves scikit-learn's cut (a score itself) down to the midpoint
        // below it: the same predictions on these scores, with a margin.
        for (j, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(*g <= *w, "{n}: label {j}: {g} above scikit-learn's {w}");
            for (i, row) in probs.iter().enumerate() {
                assert_eq!(row[j] >= *g, row[j] >= *w, "{n}: label {j}, row {i} ({}) is split differently by {g} and {w}", row[j]);
            }
            if probs.iter().any(|row| row[j] == *w) {
                assert!(*g < *w, "{n}: label {j}: the cut still sits on a score");
            }
        }
    }
}

// ------------------------------------------------------------------ entity

fn scheme_of(key: &str) -> EntityScheme {
    match key {
        "default" => EntityScheme::Default,
        "strict_iob2" => EntityScheme::StrictIob2,
        other => panic!("unknown scheme {other}"),
    }
}

#[test]
fn entity_reports_match_seqeval() {
    let root = load();
    for case in cases(&root, "entity") {
        let (t, p) = (sentences(&case["y_true"]), sentences(&case["y_pred"]));
        for (key, e) in case["expected"].as_object().unwrap() {
            let n = format!("{}/{key}", name(case));
            let r = entity_report(&t, &p, scheme_of(key)).unwrap();
            let want = &e["report"];
            let types: Vec<&str> = want.as_object().unwrap().keys().map(String::as_str).filter(|k| !k.ends_with(" avg")).collect();
            assert_eq!(r.types, types, "{n}: types");
            for (ty, s) in r.types.iter().zip(&r.per_type) {
                check_scores(s, &want[ty], &format!("{n}: type {ty}"));
            }
            check_scores(&r.micro_avg, &want["micro avg"], &format!("{n}: micro avg"));
            check_scores(&r.macro_avg, &want["macro avg"], &format!("{n}: macro avg"));
            check_scores(&r.weighted_avg, &want["weighted avg"], &format!("{n}: weighted avg"));
            check_json_shape(&r.to_json(), want, &[], &n);
            for digits in [2, 4] {
                let want = e[format!("text_digits{digits}")].as_str().unwrap();
                assert_eq!(r.to_text_digits(digits), want, "{n}: text with {digits} digits");
            }
            assert_eq!(r.to_text(), r.to_text_digits(4));
        }
    }
}

#[test]
fn extracted_entities_match_seqeval() {
    let root = load();
    for case in cases(&root, "entity") {
        for (key, e) in case["expected"].as_object().unwrap() {
            for (side, want_key) in [("y_true", "entities_true"), ("y_pred", "entities_pred")] {
                for (i, (tags, want)) in sentences(&case[side]).iter().zip(e[want_key].as_array().unwrap()).enumerate() {
                    let got = serde_json::to_value(
                        extract_entities(tags, scheme_of(key)).iter().map(|x| (&x.kind, x.start, x.end)).collect::<Vec<_>>(),
                    )
                    .unwrap();
                    assert_eq!(&got, want, "{}/{key}: {side} sentence {i}: {tags:?}", name(case));
                }
            }
        }
    }
}

#[test]
fn entity_input_errors_name_the_sentence() {
    let s = |v: &[&str]| -> Vec<String> { v.iter().map(|x| x.to_string()).collect() };
    let t = vec![s(&["B-PER", "O"]), s(&["O", "B-LOC", "I-LOC"])];
    let short = vec![s(&["B-PER", "O"]), s(&["O", "B-LOC"])];
    for scheme in [EntityScheme::Default, EntityScheme::StrictIob2] {
        let err = entity_report(&t, &short, scheme).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert!(err.to_string().contains("sentence 1 has 3 tags in y_true but 2 in y_pred"), "{err}");
        let err = entity_report(&t, &t[..1], scheme).unwrap_err();
        assert!(err.to_string().contains("y_true has 2 sentences but y_pred has 1"), "{err}");
    }
    let iobes = vec![s(&["S-PER", "O"]), s(&["O", "B-LOC", "E-LOC"])];
    let err = entity_report(&iobes, &t, EntityScheme::StrictIob2).unwrap_err();
    assert!(err.to_string().contains("y_true sentence 0, word 0: tag \"S-PER\""), "{err}");
    let r = entity_report(&iobes, &t, EntityScheme::Default).unwrap();
    assert_eq!(r.types, ["LOC", "PER"]);
    assert_eq!(r.micro_avg.support, 2);
}

// -------------------------------------------------------------- regression

#[test]
fn regression_metrics_match_scipy_and_sklearn() {
    let root = load();
    for case in cases(&root, "regression") {
        let n = name(case);
        let (x, y) = (floats(&case["x"]), floats(&case["y"]));
        let e = &case["expected"];
        close(pearson(&x, &y).unwrap(), num(&e["pearson"], n), &format!("{n}: pearson"));
        close(spearman(&x, &y).unwrap(), num(&e["spearman"], n), &format!("{n}: spearman"));
        close(mse(&x, &y).unwrap(), num(&e["mse"], n), &format!("{n}: mse"));
    }
}

#[test]
fn regression_errors_instead_of_nan() {
    let err = |r: berth::Result<f64>| -> String {
        match r {
            Err(e @ Error::InvalidArgument(_)) => e.to_string(),
            other => panic!("expected an InvalidArgument error, got {other:?}"),
        }
    };
    for f in [pearson, spearman] {
        assert!(err(f(&[1.0, 2.0, 3.0], &[1.0, 2.0])).contains("x has 3 values but y has 2"));
        assert!(err(f(&[1.0], &[2.0])).contains("at least 2 points"));
        assert!(err(f(&[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0])).contains("x is constant"));
        assert!(err(f(&[1.0, 2.0, 3.0], &[5.0, 5.0, 5.0])).contains("zero variance"));
        assert!(err(f(&[1.0, f64::NAN], &[1.0, 2.0])).contains("not finite"));
    }
    assert!(err(mse(&[1.0], &[1.0, 2.0])).contains("x has 1 values but y has 2"));
    assert!(err(mse(&[], &[])).contains("at least 1 point"));
}
