//! A Go memory limit for CoreDNS derived from the container's cgroup memory limit, so the Go
//! runtime collects garbage harder before the kernel OOM-kills it.

use std::path::Path;

/// The share of the cgroup limit given to the Go heap: the rest covers stacks, the binary and
/// memory outside Go's accounting.
pub const SHARE_PERCENT: u64 = 80;

/// cgroup v1 reports "no limit" as a page-rounded i64::MAX; anything this large is no limit.
const V1_UNLIMITED_ABOVE: u64 = 1 << 60;

/// The cgroup memory limit in bytes under `cgroup_root` (v2 `memory.max`, else v1
/// `memory/memory.limit_in_bytes`), or None when there is none.
pub fn cgroup_memory_limit(cgroup_root: &Path) -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(cgroup_root.join(p)).ok();
    if let Some(v2) = read("memory.max") {
        return v2.trim().parse().ok();
    }
    let v1: u64 = read("memory/memory.limit_in_bytes")?.trim().parse().ok()?;
    (v1 < V1_UNLIMITED_ABOVE).then_some(v1)
}

/// `GOMEMLIMIT` for the child when the user set none and a limit exists.
pub fn derived_gomemlimit(user_set: bool, cgroup_root: &Path) -> Option<u64> {
    if user_set {
        return None;
    }
    cgroup_memory_limit(cgroup_root).map(|limit| limit / 100 * SHARE_PERCENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(files: &[(&str, &str)]) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "memlimit-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        for (path, content) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn v2_limit_gives_80_percent() {
        let dir = root(&[("memory.max", "209715200\n")]);
        assert_eq!(derived_gomemlimit(false, &dir), Some(167_772_160));
        assert_eq!(
            derived_gomemlimit(true, &dir),
            None,
            "the user's GOMEMLIMIT wins"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn no_limit_in_either_version() {
        let v2 = root(&[("memory.max", "max\n")]);
        assert_eq!(derived_gomemlimit(false, &v2), None);
        let v1 = root(&[("memory/memory.limit_in_bytes", "9223372036854771712\n")]);
        assert_eq!(derived_gomemlimit(false, &v1), None);
        let none = root(&[]);
        assert_eq!(derived_gomemlimit(false, &none), None);
        for d in [v2, v1, none] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn v1_limit() {
        let dir = root(&[("memory/memory.limit_in_bytes", "104857600\n")]);
        assert_eq!(derived_gomemlimit(false, &dir), Some(83_886_080));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
