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
