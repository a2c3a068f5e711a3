//! File helpers shared by checkpoints and outputs.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// folder, flushed to disk, then renamed over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        #[cfg(feature = "fault-injection")]
        fault::before_write(path, &mut f, bytes)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Deterministic faults for the reliability tests (feature `fault-injection`).
///
/// `BERTH_FAULT=<kind>:<text>` acts on the first atomic write whose target
/// path contains `<text>` (as `/`-separated text):
/// - `enospc`: the write fails as on a full disk, after half the bytes;
/// - `crash`: half the bytes are written, then the process aborts, as if
///   it were killed in the middle of the write.
#[cfg(feature = "fault-injection")]
mod fault {
    use std::io::Write;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    static FIRED: AtomicBool = AtomicBool::new(false);

    pub fn before_write(path: &Path, f: &mut std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
        let Ok(spec) = std::env::var("BERTH_FAULT") else { return Ok(()) };
        let Some((kind, text)) = spec.split_once(':') else { return Ok(()) };
        let target = path.to_string_lossy().replace('\\', "/");
        if !target.contains(text) || FIRED.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        f.write_all(&bytes[..bytes.len() / 2])?;
        f.sync_all()?;
        match kind {
            "enospc" => Err(std::io::Error::from(std::io::ErrorKind::StorageFull)),
            "crash" => {
                eprintln!("fault injection: crashing while writing {}", path.display());
                std::process::abort()
            }
            _ => Ok(()),
        }
    }
}
