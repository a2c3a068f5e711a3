//! The library API, `berth::Classifier`: the fixtures' logits through
//! predict / predict_pairs / predict_words, one instance shared by four
//! threads, and clear errors for calls that do not fit the model.

use std::path::Path;
use std::sync::Arc;

use berth::model::checkpoint::{read_safetensors, read_safetensors_i64};
use berth::tensor::DType;
use berth::{Classifier, DeviceChoice, ModelKind, TextPrediction};

use crate::common::{fixture_dir, rel_error};
use crate::serve::headed_minilm;

fn reference(dir: &Path) -> (serde_json::Value, Vec<usize>, Vec<f64>) {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let tensors = read_safetensors(&dir.join("reference.safetensors"), DType::F64).unwrap();
    let (shape, logits) = tensors.iter().find(|(n, _)| n == "logits").map(|(_, t)| (t.shape().to_vec(), t.to_f64_vec())).unwrap();
    (json["inputs"].clone(), shape, logits)
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect()
}

/// Scores sorted highest first, one per label, and the chosen labels consistent with the kind.
fn check_shape(p: &TextPrediction, classifier: &Classifier) {
    assert_eq!(p.logits.len(), classifier.labels().len());
    assert_eq!(p.scores.len(), if classifier.kind() == ModelKind::Regression { 1 } else { classifier.labels().len() });
    assert!(p.scores.windows(2).all(|w| w[0].score >= w[1].score), "scores not sorted: {:?}", p.scores);
    if classifier.kind() == ModelKind::SingleLabel {
        let sum: f64 = p.scores.iter().map(|s| s.score).sum();
        assert!((sum - 1.0).abs() < 1e-9, "probabilities sum to {sum}");
        let argmax = (0..p.logits.len()).max_by(|&a, &b| p.logits[a].total_cmp(&p.logits[b])).unwrap();
        assert_eq!(p.labels, vec![classifier.labels()[argmax].clone()]);
        assert_eq!(p.top().label, p.labels[0]);
    }
}

#[test]
fn classifier_reproduces_the_fixtures_for_texts_and_pairs() {
    for name in ["a-seqcls", "a-pair", "a-multilabel", "a-regression"] {
        let Some(dir) = fixture_dir(name) else { return };
        let classifier = Classifier::load(&dir, DeviceChoice::Cpu).unwrap();
        let (inputs, shape, want) = reference(&dir);
        let predictions = if let Some(texts) = inputs.get("texts") {
            let texts = strings(texts);
            classifier.predict(&texts.iter().map(String::as_str).collect::<Vec<_>>()).unwrap()
        } else {
            let pairs: Vec<(String, String)> = inputs["pairs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
                .collect();
            classifier.predict_pairs(&pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect::<Vec<_>>()).unwrap()
        };
        assert_eq!(predictions.len(), shape[0], "{name}: one prediction per input");
        let got: Vec<f64> = predictions.iter().flat_map(|p| p.logits.clone()).collect();
        let e = rel_error(&got, &want);
        assert!(e <= 1e-5, "{name}: logits differ from HF by {e:e}");
        for p in &predictions {
            check_shape(p, &classifier);
        }
        if name == "a-regression" {
            assert_eq!(classifier.kind(), ModelKind::Regression);
            assert!(predictions.iter().all(|p| p.scores[0].score == p.logits[0]));
        }
    }
}

#[test]
fn classifier_tags_words_like_the_fixture() {
    let Some(dir) = fixture_dir("a-tokcls") else { return };
    let classifier = Classifier::load(&dir, DeviceChoice::Cpu).unwrap();
    assert_eq!(classifier.kind(), ModelKind::TokenClassification);
    let (inputs, shape, want) = reference(&dir);
    let sentences: Vec<Vec<String>> = inputs["words"].as_array().unwrap().iter().map(strings).collect();
    let predictions = classifier.predict_words(&sentences).unwrap();
    // The fixture's labels sit on each word's first sub-token: the reference
    // tag of a word is the argmax of HF's logits there.
    let labels = &read_safetensors_i64(&dir.join("reference.safetensors")).unwrap()["labels"].1;
    let (t, c) = (shape[1], shape[2]);
    for (i, (words, p)) in sentences.iter().zip(&predictions).enumerate() {
        assert_eq!(&p.words, words);
        let firsts: Vec<usize> = (0..t).filter(|&j| labels[i * t + j] != -100).collect();
        assert_eq!(firsts.len(), words.len(), "sentence {i}: one labelled sub-token per word");
        let expected: Vec<&str> = firsts
            .iter()
            .map(|&j| {
                let row = &want[(i * t + j) * c..(i * t + j + 1) * c];
                let k = (0..c).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
                classifier.labels()[k].as_str()
            })
            .collect();
        assert_eq!(p.tags, expected, "sentence {i}");
        for e in &p.entities {
            assert!(e.start < e.end && e.end <= words.len());
            assert_eq!(e.text, words[e.start..e.end].join(" "));
            assert!(p.tags[e.start].ends_with(&e.kind), "entity {e:?} starts on tag {}", p.tags[e.start]);
        }
    }
}

/// Texts of varied length and content.
fn texts(n: usize) -> Vec<String> {
    let words = ["good", "awful", "the", "film", "was", "not", "at", "all", "boring", "and", "quite", "moving", "café", "résumé"];
    (0..n).map(|i| (0..3 + (i * 7) % 17).map(|j| words[(i * 5 + j * 3) % words.len()]).collect::<Vec<_>>().join(" ")).collect()
}

/// Four threads share one classifier, each calling it in its own order,
/// one text at a time and the whole list at once; every answer equals the
/// single-threaded answer to the same call.
fn four_threads_equal_one(dir: &Path, n: usize) {
    let classifier = Arc::new(Classifier::load(dir, DeviceChoice::Cpu).unwrap());
    let texts = Arc::new(texts(n));
    let alone: Vec<TextPrediction> = texts.iter().map(|t| classifier.predict(&[t.as_str()]).unwrap().remove(0)).collect();
    let together = classifier.predict(&texts.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    // Batched and single calls agree too (padding changes nothing but rounding).
    for (a, b) in alone.iter().zip(&together) {
        assert_eq!(a.labels, b.labels);
        assert!(rel_error(&b.logits, &a.logits) < 1e-5);
    }
    let (alone, together) = (Arc::new(alone), Arc::new(together));
    let handles: Vec<_> = (0..4)
        .map(|thread| {
            let (classifier, texts, alone, together) = (classifier.clone(), texts.clone(), alone.clone(), together.clone());
            std::thread::spawn(move || {
                for round in 0..2 {
                    for k in 0..texts.len() {
                        let i = (k * (thread + 1) + round) % texts.len();
                        let p = classifier.predict(&[texts[i].as_str()]).unwrap().remove(0);
                        assert_eq!(p, alone[i], "thread {thread}: text {i}");
                    }
                    let all = classifier.predict(&texts.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
                    assert_eq!(&all, &*together, "thread {thread}: the whole list");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a thread's answers differed");
    }
}

#[test]
fn classifier_from_four_threads_equals_single_threaded() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    four_threads_equal_one(&dir, 24);
}

#[test]
fn classifier_from_four_threads_equals_single_threaded_minilm() {
    let Some(dir) = headed_minilm() else { return };
    four_threads_equal_one(&dir, 6);
}

#[test]
fn classifier_refuses_calls_that_do_not_fit_the_model() {
    let (Some(seq), Some(tok)) = (fixture_dir("a-seqcls"), fixture_dir("a-tokcls")) else { return };
    let sequence = Classifier::load(&seq, DeviceChoice::Cpu).unwrap();
    let tagger = Classifier::load(&tok, DeviceChoice::Cpu).unwrap();
    let e = tagger.predict(&["EU rejects German call"]).unwrap_err().to_string();
    assert!(e.contains("predict_words"), "{e}");
    let e = sequence.predict_words(&[vec!["EU".to_string()]]).unwrap_err().to_string();
    assert!(e.contains("token-classification"), "{e}");
    let e = tagger.predict_words(&[vec!["EU".to_string()], vec![]]).unwrap_err().to_string();
    assert!(e.contains("sentence 1 has no words"), "{e}");
    assert!(sequence.predict(&[]).unwrap().is_empty());
    let missing = seq.join("no-such-model");
    let e = Classifier::load(&missing, DeviceChoice::Cpu).err().expect("a missing folder fails").to_string();
    assert!(e.contains("no-such-model"), "{e}");
}
