//! Golden tests: every directory under `tests/fixtures/` is one case.
//!
//! A case holds `Corefile.base` (the template), optionally `stubDomains` and
//! `upstreamNameservers` (read the way the agent reads the mounted kube-dns ConfigMap),
//! `params` (`localip=a,b`, `port=53`, `cluster_dns=IP` or absent, `upstream_svc=NAME`,
//! `prometheus=ADDR`, default `:9253`),
//! and the expectation: `expected.Corefile` (plus `expected.notes` when the render has notes)
//! or `expected.error` (the one-line message). `UPDATE_GOLDEN=1 cargo test -p corefile`
//! rewrites the expectations; review the diff before committing it.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use corefile::{load_kube_dns_dir, render, RenderParams};

const EXPECTED_COREFILE: &str = "expected.Corefile";
const EXPECTED_NOTES: &str = "expected.notes";
const EXPECTED_ERROR: &str = "expected.error";

#[test]
fn golden() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .expect("tests/fixtures")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no fixtures under {}", root.display());

    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let name = case.file_name().unwrap().to_string_lossy().into_owned();
            let actual = run(case);
            if update {
                write_expected(case, &actual);
                return None;
            }
            let expected = read_expected(case);
            (actual != expected).then(|| {
                format!("--- {name}: expected\n{expected:#?}\n--- {name}: actual\n{actual:#?}")
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} golden cases differ (UPDATE_GOLDEN=1 rewrites them):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Corefile { text: String, notes: Vec<String> },
    Error(String),
}

fn run(case: &Path) -> Outcome {
    let template = fs::read_to_string(case.join("Corefile.base")).expect("Corefile.base");
    let params = params(case);
    let kube_dns = match load_kube_dns_dir(case) {
        Ok(config) => config,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    // Same inputs, byte-identical output.
    let first = render(&template, &kube_dns, &params);
    let second = render(&template, &kube_dns, &params);
    match (first, second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "{}: render is not deterministic", case.display());
            Outcome::Corefile {
                text: a.corefile,
                notes: a.notes,
            }
        }
        (Err(e), Err(_)) => Outcome::Error(e.to_string()),
        _ => panic!("{}: render is not deterministic", case.display()),
    }
}

fn params(case: &Path) -> RenderParams {
    let text = fs::read_to_string(case.join("params")).expect("params");
    let mut params = RenderParams {
        local_ips: Vec::new(),
        dns_port: 53,
        cluster_dns: None,
        upstream_svc: "kube-dns-upstream".into(),
        prometheus_listen_address: ":9253".into(),
    };
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').expect("params: key=value");
        match key {
            "localip" => {
                params.local_ips = value
                    .split(',')
                    .map(|ip| ip.parse::<IpAddr>().expect("params: localip"))
                    .collect();
            }
            "port" => params.dns_port = value.parse().expect("params: port"),
            "cluster_dns" => params.cluster_dns = Some(value.to_owned()),
            "upstream_svc" => params.upstream_svc = value.to_owned(),
            "prometheus" => params.prometheus_listen_address = value.to_owned(),
            other => panic!("{}: unknown params key {other:?}", case.display()),
        }
    }
    params
}

fn read_expected(case: &Path) -> Outcome {
    if let Ok(error) = fs::read_to_string(case.join(EXPECTED_ERROR)) {
        return Outcome::Error(error.trim_end_matches('\n').to_owned());
    }
    let text = fs::read_to_string(case.join(EXPECTED_COREFILE)).unwrap_or_else(|_| {
        panic!(
            "{}: neither {EXPECTED_COREFILE} nor {EXPECTED_ERROR}",
            case.display()
        )
    });
    let notes = fs::read_to_string(case.join(EXPECTED_NOTES))
        .map(|n| n.lines().map(str::to_owned).collect())
        .unwrap_or_default();
    Outcome::Corefile { text, notes }
}

fn write_expected(case: &Path, actual: &Outcome) {
    for name in [EXPECTED_COREFILE, EXPECTED_NOTES, EXPECTED_ERROR] {
        let _ = fs::remove_file(case.join(name));
    }
    match actual {
        Outcome::Error(message) => {
            fs::write(case.join(EXPECTED_ERROR), format!("{message}\n")).unwrap();
        }
        Outcome::Corefile { text, notes } => {
            fs::write(case.join(EXPECTED_COREFILE), text).unwrap();
            if !notes.is_empty() {
                fs::write(case.join(EXPECTED_NOTES), notes.join("\n") + "\n").unwrap();
            }
        }
    }
}
