//! Classification metrics against scikit-learn.
//!
//! tests/data/metrics/cases.json holds each case's inputs and what
//! scikit-learn computed from them (its `command` field says how to rebuild
//! it). Every number must agree within 1e-12.

use std::collections::BTreeSet;
use std::path::PathBuf;

use berth::Error;
use berth::metrics::{ClassificationReport, Scores, classification_report};
use serde_json::Value;

const TOL: f64 = 1e-12;

/// Keys berth adds to scikit-learn's `output_dict=True` shape.
const EXTRA_KEYS: [&str; 3] = ["micro avg", "confusion_matrix", "labels"];

struct Case {
    name: String,
    labels: Vec<String>,
    y_true: Vec<usize>,
    y_pred: Vec<usize>,
    expected: Value,
}

fn load_cases() -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/metrics/cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let root: Value = serde_json::from_str(&text).unwrap();
    assert!(root["command"].as_str().is_some_and(|c| c.contains("make_expected.py")), "cases.json names no command");
    let ids = |v: &Value| -> Vec<usize> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect() };
    root["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_owned(),
            labels: c["labels"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()).collect(),
            y_true: ids(&c["y_true"]),
            y_pred: ids(&c["y_pred"]),
            expected: c["expected"].clone(),
        })
        .collect()
}

fn report(case: &Case) -> ClassificationReport {
    classification_report(&case.y_true, &case.y_pred, &case.labels).unwrap_or_else(|e| panic!("{}: {e}", case.name))
}

fn num(v: &Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what}: expected a number, got {v}"))
}

fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= TOL, "{what}: got {got:.17}, scikit-learn {want:.17}");
}

/// Our (precision, recall, f1, support) against a scikit-learn score object.
fn check_scores(got: &Scores, want: &Value, what: &str) {
    close(got.precision, num(&want["precision"], what), &format!("{what} precision"));
    close(got.recall, num(&want["recall"], what), &format!("{what} recall"));
    close(got.f1, num(&want["f1-score"], what), &format!("{what} f1-score"));
    if !want["support"].is_null() {
        close(got.support as f64, num(&want["support"], what), &format!("{what} support"));
    }
}

#[test]
fn the_stored_cases_cover_what_they_must() {
    let cases = load_cases();
    let find = |name: &str| cases.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no case {name}"));
    let some_class = |c: &Case, pred: &dyn Fn(usize) -> bool| (0..c.labels.len()).any(pred);

    let c = find("missing_class");
    assert!(some_class(c, &|k| !c.y_true.contains(&k) && c.y_pred.contains(&k)));
    let c = find("never_predicted");
    assert!(some_class(c, &|k| c.y_true.contains(&k) && !c.y_pred.contains(&k)));
    let c = find("unused_label");
    assert!(some_class(c, &|k| !c.y_true.contains(&k) && !c.y_pred.contains(&k)));
    let c = find("perfect");
    assert_eq!(c.y_true, c.y_pred);
    assert_eq!(find("binary").labels.len(), 2);
    let c = find("random_5class_200");
    assert_eq!((c.labels.len(), c.y_true.len()), (5, 200));
}

#[test]
fn per_class_and_averages_match_sklearn() {
    for case in load_cases() {
        let r = report(&case);
        let want = &case.expected["report"];
        for (k, name) in case.labels.iter().enumerate() {
            check_scores(&r.per_class[k], &want[name], &format!("{}: class {name}", case.name));
        }
        close(r.accuracy, num(&want["accuracy"], "accuracy"), &format!("{}: report accuracy", case.name));
        check_scores(&r.macro_avg, &want["macro avg"], &format!("{}: macro avg", case.name));
        check_scores(&r.weighted_avg, &want["weighted avg"], &format!("{}: weighted avg", case.name));
    }
}

#[test]
fn accuracy_micro_average_and_confusion_match_sklearn() {
    for case in load_cases() {
        let r = report(&case);
        let e = &case.expected;
        close(r.accuracy, num(&e["accuracy"], "accuracy_score"), &format!("{}: accuracy_score", case.name));
        check_scores(&r.micro_avg, &e["micro_avg"], &format!("{}: micro avg", case.name));
        assert_eq!(r.micro_avg.support, case.y_true.len(), "{}: micro avg support", case.name);
        let want: Vec<Vec<usize>> = serde_json::from_value(e["confusion_matrix"].clone()).unwrap();
        assert_eq!(r.confusion_matrix, want, "{}: confusion matrix", case.name);
    }
}

#[test]
fn json_has_sklearns_shape_plus_extras() {
    for case in load_cases() {
        let r = report(&case);
        let got = r.to_json();
        let want = &case.expected["report"];

        let got_keys: BTreeSet<&str> = got.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want_keys: BTreeSet<&str> = want.as_object().unwrap().keys().map(String::as_str).collect();
        want_keys.extend(EXTRA_KEYS);
        assert_eq!(got_keys, want_keys, "{}: top-level keys", case.name);

        // Every scikit-learn entry, number for number.
        for (key, w) in want.as_object().unwrap() {
            let what = format!("{}: json[{key:?}]", case.name);
            let g = &got[key];
            match w {
                Value::Number(_) => close(num(g, &what), num(w, &what), &what),
                Value::Object(fields) => {
                    let names: BTreeSet<&String> = g.as_object().unwrap().keys().collect();
                    assert_eq!(names, fields.keys().collect(), "{what}: keys");
                    for (f, wv) in fields {
                        close(num(&g[f], &what), num(wv, &what), &format!("{what}[{f:?}]"));
                    }
                    assert!(g["support"].is_u64(), "{what}: support should be an integer");
                }
                _ => panic!("{what}: unexpected {w}"),
            }
        }

        // The extras.
        let e = &case.expected;
        for f in ["precision", "recall", "f1-score"] {
            let what = format!("{}: json[\"micro avg\"][{f:?}]", case.name);
            close(num(&got["micro avg"][f], &what), num(&e["micro_avg"][f], &what), &what);
        }
        assert_eq!(got["micro avg"]["support"], case.y_true.len());
        assert_eq!(got["confusion_matrix"], e["confusion_matrix"], "{}: json confusion_matrix", case.name);
        assert_eq!(got["labels"], serde_json::json!(case.labels), "{}: json labels", case.name);
    }
}

#[test]
fn text_table_is_sklearns_then_the_confusion_matrix() {
    for case in load_cases() {
        // scikit-learn prints supports as floats ("2.0") when no sample is
        // predicted right (its tp counts then start as float zeros); berth
        // prints integers, so that case is compared below on its own.
        if case.name == "all_wrong" {
            continue;
        }
        let r = report(&case);
        for digits in [2, 4] {
            let want = case.expected[format!("text_digits{digits}")].as_str().unwrap();
            let got = r.to_text_digits(digits);
            assert!(got.starts_with(want), "{}: digits={digits}\n--- berth\n{got}\n--- scikit-learn\n{want}", case.name);
            let rest = &got[want.len()..];
            assert!(rest.starts_with("\nconfusion matrix"), "{}: after the table:\n{rest}", case.name);
            // One line per label under a header line; the counts read back.
            let rows: Vec<&str> = rest.lines().skip(4).collect();
            assert_eq!(rows.len(), case.labels.len(), "{}: confusion rows\n{rest}", case.name);
            for (row, want_row) in rows.iter().zip(&r.confusion_matrix) {
                let tokens: Vec<&str> = row.split_whitespace().collect();
                let counts: Vec<usize> = tokens[tokens.len() - want_row.len()..].iter().map(|x| x.parse().unwrap()).collect();
                assert_eq!(&counts, want_row, "{}: confusion row {row:?}", case.name);
            }
        }
        assert_eq!(r.to_text(), r.to_text_digits(4));
    }
}

#[test]
fn text_supports_are_integers_where_sklearn_prints_floats() {
    let case = load_cases().into_iter().find(|c| c.name == "all_wrong").unwrap();
    // "      2.0" -> "        2": drop the ".0" and keep the column 9 wide.
    let want: String = case.expected["text_digits2"]
        .as_str()
        .unwrap()
        .lines()
        .map(|l| match l.strip_suffix(".0") {
            Some(head) => {
                let (before, support) = head.rsplit_once(' ').unwrap();
                format!("{before}   {support}\n")
            }
            None => format!("{l}\n"),
        })
        .collect();
    let got = report(&case).to_text_digits(2);
    assert!(got.starts_with(&want), "--- berth\n{got}\n--- scikit-learn, supports as integers\n{want}");
}

#[test]
fn text_columns_line_up() {
    let case = load_cases().into_iter().find(|c| c.name == "random_5class_200").unwrap();
    let text = report(&case).to_text();
    let table: Vec<&str> = text.split("\n\n").take(3).flat_map(str::lines).collect();
    let len = table[0].chars().count();
    assert!(table.iter().all(|l| l.chars().count() == len), "ragged table:\n{text}");
}

#[test]
fn mismatched_lengths_are_an_error() {
    let labels = vec!["a".to_owned(), "b".to_owned()];
    let err = classification_report(&[0, 1, 1], &[0, 1], &labels).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(err.to_string().contains("3") && err.to_string().contains("2"), "{err}");
}

#[test]
fn an_id_without_a_label_is_an_error_naming_it() {
    let labels = vec!["a".to_owned(), "b".to_owned()];
    let err = classification_report(&[0, 1, 1], &[0, 2, 1], &labels).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(err.to_string().contains("y_pred[1] = 2"), "{err}");
    let err = classification_report(&[5], &[0], &labels).unwrap_err();
    assert!(err.to_string().contains("y_true[0] = 5"), "{err}");
}
