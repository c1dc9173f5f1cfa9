//! Inputs the fuzz targets once failed on, replayed through the targets' own checks
//! (`fuzz/harness/*.rs`): `tests/fuzz_regressions/<target>/<case>`, in the target's input
//! format. Add a case by copying the artifact `hack/fuzz.sh` named, under a name that says
//! what it broke.

use std::fs;
use std::path::Path;

#[path = "../../../fuzz/harness/kube_dns.rs"]
mod kube_dns;
#[path = "../../../fuzz/harness/render.rs"]
mod render;

/// Every case of `target`, with its name; the directory may be empty of cases but must exist.
fn cases(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target);
    let mut cases: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).unwrap())
        })
        .filter(|(name, _)| !name.starts_with('.'))
        .collect();
    cases.sort();
    cases
}

fn replay(target: &str, check: fn(&[u8])) {
    for (name, input) in cases(target) {
        let outcome = std::panic::catch_unwind(|| check(&input));
        assert!(outcome.is_ok(), "{target}/{name} fails again");
    }
}

#[test]
fn kube_dns() {
    replay("kube_dns", kube_dns::check);
}

#[test]
fn render() {
    replay("render", render::check);
}
