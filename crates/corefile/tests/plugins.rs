//! Plugin checks against node-cache's pinned plugin set (`images/node-cache/coredns-plugins.txt`,
//! what `-plugins` lists for the CoreDNS that hack/coredns.sh and the image build):
//! every Corefile the project ships uses only those plugins, and each case under
//! `tests/plugin_fixtures/` (a `Corefile.base`) gives the outcome in its `expected`: `ok`, or
//! the one-line refusal. `UPDATE_GOLDEN=1 cargo test -p corefile --test plugins` rewrites them.

use std::fs;
use std::path::{Path, PathBuf};

use corefile::{check_plugins, directives, PluginSet};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The list file read as `coredns -plugins` output would be: one name a line.
fn pinned() -> PluginSet {
    let path = workspace().join("images/node-cache/coredns-plugins.txt");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let names: Vec<&str> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect();
    PluginSet::from_listing(&names.join("\n"))
}

fn files(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(workspace().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

#[test]
fn shipped_corefiles_use_only_the_pinned_plugins() {
    let pinned = pinned();
    let mut corefiles = vec![workspace().join("templates/Corefile.base")];
    corefiles.extend(files(
        "crates/addon-manifests/tests/golden/chart",
        ".Corefile",
    ));
    for case in files("crates/corefile/tests/fixtures", "") {
        corefiles.extend([case.join("Corefile.base"), case.join("expected.Corefile")]);
    }
    let mut checked = 0;
    for path in corefiles.iter().filter(|p| p.exists()) {
        let text = fs::read_to_string(path).unwrap();
        if let Err(e) = check_plugins(&text, &pinned) {
            panic!("{}: {e}", path.display());
        }
        checked += 1;
    }
    assert!(checked > 20, "only {checked} Corefiles found");

    // The AAAA filter is lines to paste into a server block.
    let filter = fs::read_to_string(workspace().join("templates/aaaa-filter.Corefile")).unwrap();
    let block = format!(".:53 {{\n{filter}\n}}\n");
    check_plugins(&block, &pinned).unwrap();
    assert_eq!(directives(&block).len(), 1, "{block}");
}

#[test]
fn every_pinned_plugin_is_accepted_and_nothing_else() {
    let pinned = pinned();
    let names: Vec<&str> = pinned.iter().collect();
    assert!(names.len() >= 20, "{names:?}");
    let block = format!(".:53 {{\n    {}\n}}\n", names.join("\n    "));
    check_plugins(&block, &pinned).unwrap();
    for absent in ["kubernetes", "etcd", "file", "auto", "route53"] {
        assert!(!pinned.contains(absent), "{absent} is pinned");
    }
}

#[test]
fn golden() {
    let pinned = pinned();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let cases = files("crates/corefile/tests/plugin_fixtures", "");
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in &cases {
        let text = fs::read_to_string(case.join("Corefile.base")).unwrap();
        let actual = match check_plugins(&text, &pinned) {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        let expected_path = case.join("expected");
        if update {
            fs::write(&expected_path, format!("{actual}\n")).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected.trim_end_matches('\n') != actual {
            failures.push(format!(
                "{}:\n  expected {expected:?}\n  actual   {actual:?}",
                case.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "plugin fixtures differ (UPDATE_GOLDEN=1 rewrites them):\n{}",
        failures.join("\n")
    );
}
