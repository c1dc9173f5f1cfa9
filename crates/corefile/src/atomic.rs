//! Replacing the rendered Corefile so that CoreDNS never reads half a file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Writes `contents` to a temporary file beside `path`, flushes it to disk and renames it
/// over `path`. Creates nothing else, and leaves no temporary file behind on error.
pub fn write_atomic(path: &Path, contents: &str) -> io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let tmp = temp_path(dir, path)?;
    let written = write_and_rename(&tmp, path, contents);
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // Persist the rename itself. Some filesystems refuse fsync on a directory; the file is
    // already in place by then, so that is not worth failing over.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn temp_path(dir: &Path, path: &Path) -> io::Result<PathBuf> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    Ok(dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )))
}

fn write_and_rename(tmp: &Path, path: &Path, contents: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn creates_then_replaces_leaving_nothing_else() {
        let dir = TestDir::new("atomic");
        let path = dir.path().join("Corefile");
        write_atomic(&path, "first\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\n");
        write_atomic(&path, "second\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
        assert_eq!(entries(dir.path()), ["Corefile"]);
    }

    #[test]
    fn failed_rename_leaves_no_temp_file() {
        let dir = TestDir::new("atomic-fail");
        // A non-empty directory where the file should go: rename fails after the write.
        let path = dir.path().join("Corefile");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), "").unwrap();
        assert!(write_atomic(&path, "text").is_err());
        assert_eq!(entries(dir.path()), ["Corefile"]);
    }

    #[test]
    fn missing_directory_is_an_error_and_creates_nothing() {
        let dir = TestDir::new("atomic-nodir");
        let path = dir.path().join("absent").join("Corefile");
        assert!(write_atomic(&path, "text").is_err());
        assert!(entries(dir.path()).is_empty());
    }
}
