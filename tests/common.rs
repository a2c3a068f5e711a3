use std::path::PathBuf;

/// `../shared` beside the project, or None (tests then skip with a message).
/// BERTH_SHARED overrides it (the GPU machine gets the fixtures in gpu-bundle/).
pub fn shared_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("BERTH_SHARED") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    };
    if dir.join("fixtures").is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIP: ../shared/fixtures is absent");
        None
    }
}

pub fn fixture_dir(name: &str) -> Option<PathBuf> {
    shared_dir().map(|d| d.join("fixtures").join(name))
}

/// The fetched all-MiniLM-L6-v2 checkpoint, or None with a message.
pub fn minilm_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!("SKIP: models/all-MiniLM-L6-v2 is absent; run tools/fetch-model.sh");
        None
    }
}

/// ‖a − b‖ / ‖b‖ (DESIGN.md's measure), with ‖b‖ floored to avoid 0/0.
pub fn rel_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    let norm: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    diff / norm.max(1e-300)
}

/// A fresh scratch folder for one test. The process id is part of the name,
/// so two test runs that share a target folder (worktrees, a second
/// terminal) never clobber each other's files.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// all-MiniLM-L6-v2 with a classification head that `berth train` wrote
/// (one step at a tiny learning rate on a few sentences, seed 42), made once
/// per test run: prediction refuses the bare encoder. None with a message
/// when the model is absent.
pub fn minilm_classifier_dir() -> Option<PathBuf> {
    static DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let model = minilm_dir()?;
        let work = scratch_dir("minilm-classifier");
        let train = work.join("train.tsv");
        let mut text = String::from("text\tlabel\n");
        for (i, sentence) in ["the film was great", "the plot was dull", "a lovely story", "a boring script"].iter().enumerate() {
            text.push_str(&format!("{sentence}\t{}\n", ["pos", "neg"][i % 2]));
        }
        std::fs::write(&train, text).unwrap();
        let output = work.join("model");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["train", "--device", "cpu", "--max-steps", "1", "--lr", "1e-9", "--batch-size", "4", "--model"])
            .arg(&model)
            .arg("--train")
            .arg(&train)
            .arg("--output")
            .arg(&output)
            .output()
            .unwrap();
        assert!(out.status.success(), "training the MiniLM test classifier failed:\n{}", String::from_utf8_lossy(&out.stderr));
        Some(output)
    })
    .clone()
}
