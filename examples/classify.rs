//! Classify texts with a trained model, from several threads sharing one
//! `Classifier`.
//!
//! ```sh
//! cargo run --release --example classify -- runs/sst2 "a charming journey" "bleak and desperate"
//! ```
//!
//! A text holding a TAB is read as a text pair. For a token model (NER),
//! each text is split at spaces and tagged word by word.

use std::sync::Arc;

use berth::{Classifier, DeviceChoice, ModelKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: classify MODEL_DIR TEXT [TEXT ...]");
        std::process::exit(2);
    };
    let texts: Vec<String> = args.collect();
    if texts.is_empty() {
        eprintln!("usage: classify MODEL_DIR TEXT [TEXT ...]");
        std::process::exit(2);
    }
    // Loaded once: config, labels, tokenizer and weights.
    let classifier = Arc::new(Classifier::load(&dir, DeviceChoice::Auto)?);
    println!("{} labels {:?} on {}", dir, classifier.labels(), classifier.device_name());

    if classifier.kind() == ModelKind::TokenClassification {
        let sentences: Vec<Vec<String>> = texts.iter().map(|t| t.split_whitespace().map(String::from).collect()).collect();
        for p in classifier.predict_words(&sentences)? {
            println!("{}", serde_json::to_string(&p)?);
        }
        return Ok(());
    }

    // One thread per text, all sharing the same classifier.
    let handles: Vec<_> = texts
        .into_iter()
        .map(|text| {
            let classifier = Arc::clone(&classifier);
            std::thread::spawn(move || {
                let prediction = match text.split_once('\t') {
                    Some((a, b)) => classifier.predict_pairs(&[(a, b)]),
                    None => classifier.predict(&[text.as_str()]),
                };
                (text, prediction)
            })
        })
        .collect();
    for handle in handles {
        let (text, prediction) = handle.join().expect("a worker thread panicked");
        let p = prediction?.remove(0);
        println!("{:<40} {:<10} {:.4}  logits {:?}", text, p.top().label, p.top().score, p.logits);
    }
    Ok(())
}
