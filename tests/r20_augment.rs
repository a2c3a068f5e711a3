//! Issue 20, synthetic minority data: `--augment FILE` adds reviewed
//! synthetic examples that stay marked by their source (the plan lines, the
//! report, training_state.json with each file's size and SHA-256),
//! `--augment-max-share` caps their share of any class, a changed file
//! stops a resume, and the options refuse bad values by name.

use std::path::Path;

use crate::common::{fixture_dir, scratch_dir};
use crate::train::{fail, read_json, succeed, train_cmd};

fn rows(label: &str, texts: &[&str]) -> String {
    texts.iter().map(|t| format!("{{\"text\": \"{t}\", \"label\": \"{label}\"}}\n")).collect()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn r20_augment_marks_synthetic_examples_caps_their_share_and_records_the_files() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r20-augment");
    let (train, aug1, aug2) = (work.join("train.jsonl"), work.join("aug1.jsonl"), work.join("aug2.jsonl"));
    write(
        &train,
        &[
            rows("negative", &["awful film", "dull plot", "bad acting", "so boring", "a mess", "weak script"]),
            rows("neutral", &["a film", "it exists", "some scenes"]),
            rows("positive", &["great film", "lovely cast", "superb"]),
        ]
        .concat(),
    );
    // Four synthetic positives and two neutrals, then two negatives in a second file.
    write(
        &aug1,
        &[rows("positive", &["truly great", "a delight", "wonderful", "moving"]), rows("neutral", &["a movie", "scenes"])].concat(),
    );
    write(&aug2, &rows("negative", &["terrible", "tedious"]));
    let output = work.join("out");
    let run = |output: &Path, extra: &[&str]| {
        let mut c = train_cmd(&model, &train, output, &["--max-steps", "2", "--save-every", "2", "--batch-size", "4"]);
        c.arg("--eval").arg(&train).arg("--augment").arg(&aug1).arg("--augment").arg(&aug2).args(extra);
        c
    };
    let out = succeed(&mut run(&output, &["--augment-max-share", "0.5", "--augment-weight", "0.5"]), "augmented training");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // At most half of a class synthetic: 3 of the 4 positives (3 real), both neutrals (3 real), both negatives (6 real).
    let sha = berth::io::sha256_hex(&std::fs::read(&aug1).unwrap());
    let size = std::fs::metadata(&aug1).unwrap().len();
    let line = format!("aug1.jsonl: 6 synthetic examples, 5 kept under --augment-max-share 0.5 ({size} bytes, sha256 {sha})");
    assert!(stderr.contains(&line), "{line}\n{stderr}");
    assert!(stderr.contains("aug2.jsonl: 2 synthetic examples ("), "{stderr}");
    let counts = "augment: 12 real + 7 synthetic examples; synthetic loss weight 0.5";
    assert!(stderr.contains(counts), "{stderr}");
    assert!(stderr.contains("(real + synthetic): negative 6 + 2, neutral 3 + 2, positive 3 + 3"), "{stderr}");
    assert!(stderr.contains("19 training rows"), "the training set holds both: {stderr}");

    // training_state.json records each file; the report names them; evaluation read only --eval.
    let state = read_json(&output.join("checkpoint-2").join("training_state.json"));
    let recorded = state["identity"]["augment"].as_array().unwrap_or_else(|| panic!("{state}"));
    assert_eq!(recorded.len(), 2);
    assert_eq!((recorded[0]["sha256"].as_str(), recorded[0]["size"].as_u64()), (Some(sha.as_str()), Some(size)));
    assert!(recorded[1]["file"].as_str().unwrap().ends_with("aug2.jsonl"));
    let report = std::fs::read_to_string(output.join("report.md")).unwrap();
    assert!(report.contains(counts), "{report}");
    let metrics = read_json(&output.join("metrics.json"));
    assert_eq!(metrics["macro avg"]["support"].as_u64(), Some(12), "{metrics}");

    // A resume whose augment file changed is another run.
    write(&aug2, &rows("negative", &["terrible", "tedious", "grim"]));
    let mut resume = run(&output, &["--augment-max-share", "0.5", "--augment-weight", "0.5"]);
    let e = fail(resume.arg("--resume-from").arg(output.join("checkpoint-2")), "resume with a changed augment file");
    assert!(e.contains("--augment (the files' contents)") && e.contains("aug2.jsonl"), "{e}");
}

#[test]
fn r20_bad_augment_options_are_clear_errors() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r20-augment-bad");
    let (train, aug) = (work.join("train.jsonl"), work.join("aug.jsonl"));
    write(&train, &[rows("negative", &["bad", "dull"]), rows("positive", &["good", "great"])].concat());
    write(&aug, &[rows("positive", &["fine"]), rows("ecstatic", &["wow"])].concat());
    let run = |extra: &[&str]| {
        let mut c = train_cmd(&model, &train, &work.join("out"), &["--max-steps", "1"]);
        c.args(extra);
        fail(&mut c, &extra.join(" "))
    };
    let aug_flag = aug.to_str().unwrap();
    let e = run(&["--augment-weight", "0.5"]);
    assert!(e.contains("--augment-weight and --augment-max-share need --augment FILE"), "{e}");
    let e = run(&["--augment", aug_flag, "--augment-weight", "-1"]);
    assert!(e.contains("--augment-weight -1: use a finite number ≥ 0"), "{e}");
    let e = run(&["--augment", aug_flag, "--augment-max-share", "0"]);
    assert!(e.contains("--augment-max-share 0: use a share above 0 and at most 1"), "{e}");
    // A synthetic label the training set does not have: the file and line are named.
    let e = run(&["--augment", aug_flag]);
    assert!(e.contains("aug.jsonl:2") && e.contains("ecstatic"), "{e}");
    // A file with other columns than --train's: the file, line and field are named.
    let other = work.join("other.jsonl");
    write(&other, "{\"sentence\": \"fine\", \"label\": \"positive\"}\n");
    let e = run(&["--augment", other.to_str().unwrap()]);
    assert!(e.contains("other.jsonl:1") && e.contains("text"), "{e}");
    let e = run(&["--augment", work.join("missing.jsonl").to_str().unwrap()]);
    assert!(e.contains("missing.jsonl"), "{e}");
}
