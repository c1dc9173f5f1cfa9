//! The Corefile render with any template, kube-dns ConfigMap and parameters.
//!
//! Input: four parts separated by NUL: the parameters in the golden fixtures' `params` format
//! (`localip=a,b`, `port=N`, `cluster_dns=VALUE`, `upstream_svc=NAME`; unparsable local IPs and
//! ports are skipped), the `stubDomains` value, the `upstreamNameservers` value (empty: absent)
//! and the template (the rest, NULs included; not UTF-8 is replaced lossily).
//! A ConfigMap that `parse_kube_dns` accepts is rendered as the agent renders it; one it
//! refuses is still rendered, from whatever its JSON holds, unvalidated (`KubeDnsConfig`'s
//! fields are public).
//!
//! Invariants, beyond "no panic":
//! - the template's directives each sit on one of its lines; with no plugin available, a
//!   refusal names the first directive other than `import`, in one line;
//! - the render is deterministic: twice the same inputs, the same Corefile and notes, or the
//!   same error;
//! - an error is one line; `NoLocalIp` exactly when no local IP is given;
//! - with a validated ConfigMap: every note is one line; no `reload` directive is left; each
//!   stub domain gets its block; every `__PILLAR__` placeholder left in the output is noted;
//!   a template without placeholders or `reload` lines comes out unchanged, followed by the
//!   same stub blocks an empty template gets.

use std::collections::BTreeMap;
use std::net::IpAddr;

use corefile::{directives, parse_kube_dns, render, KubeDnsConfig, PluginSet, RenderParams};

const PLACEHOLDER_PREFIX: &str = "__PILLAR__";

pub fn check(data: &[u8]) {
    let mut parts = data.splitn(4, |&b| b == 0);
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (params, stub, upstream, template) = (next(), next(), next(), next());
    check_plugins(&template);
    let params = render_params(&params);
    let present = |value: &str| (!value.is_empty()).then_some(value.to_owned());
    let (stub, upstream) = (present(&stub), present(&upstream));

    let (kube_dns, validated) = match parse_kube_dns(stub.as_deref(), upstream.as_deref()) {
        Ok(config) => (config, true),
        Err(_) => (unvalidated(stub.as_deref(), upstream.as_deref()), false),
    };

    let first = render(&template, &kube_dns, &params);
    let second = render(&template, &kube_dns, &params);
    let rendered = match (first, second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "render is not deterministic");
            a
        }
        (Err(a), Err(b)) => {
            let message = a.to_string();
            assert_eq!(message, b.to_string(), "render is not deterministic");
            assert!(!message.contains(['\n', '\r']), "not one line: {message:?}");
            assert_eq!(
                matches!(a, corefile::RenderError::NoLocalIp),
                params.local_ips.is_empty(),
                "{message}"
            );
            return;
        }
        (a, b) => panic!("render is not deterministic: {a:?} / {b:?}"),
    };
    assert!(!params.local_ips.is_empty(), "rendered without a local IP");
    if validated {
        check_validated(&template, &kube_dns, &params, &rendered);
    }
}

fn check_validated(
    template: &str,
    kube_dns: &KubeDnsConfig,
    params: &RenderParams,
    rendered: &corefile::Rendered,
) {
    let corefile = &rendered.corefile;
    for note in &rendered.notes {
        assert!(!note.contains(['\n', '\r']), "not one line: {note:?}");
    }
    for line in corefile.lines() {
        assert_ne!(
            line.split_whitespace().next(),
            Some("reload"),
            "reload left in {line:?}"
        );
    }
    for domain in kube_dns.stub_domains.keys() {
        let head = format!("{domain}:{} {{", params.dns_port);
        assert!(corefile.contains(&head), "no block {head:?}");
    }
    for (at, _) in corefile.match_indices(PLACEHOLDER_PREFIX) {
        let rest = &corefile[at..];
        let len = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let note = format!("template: {} left as written", &rest[..len]);
        assert!(
            rendered.notes.iter().any(|n| n.starts_with(&note)),
            "{:?} not noted: {:?}",
            &rest[..len],
            rendered.notes
        );
    }

    let plain = !template.contains(PLACEHOLDER_PREFIX)
        && !template.contains("__PROMETHEUS__ENDPOINT__")
        && !template
            .lines()
            .any(|line| line.split_whitespace().next() == Some("reload"));
    if plain {
        let stubs_only = render("", kube_dns, params).expect("an empty template renders");
        assert_eq!(*corefile, format!("{template}{}", stubs_only.corefile));
        assert!(rendered.notes.is_empty(), "{:?}", rendered.notes);
    }
}

/// The golden fixtures' `params` lines; what does not parse is left out.
fn render_params(text: &str) -> RenderParams {
    let mut params = RenderParams {
        local_ips: Vec::new(),
        dns_port: 53,
        cluster_dns: None,
        upstream_svc: "kube-dns-upstream".into(),
        prometheus_listen_address: ":9253".into(),
    };
    for (key, value) in text.lines().filter_map(|line| line.split_once('=')) {
        match key {
            "localip" => {
                params.local_ips = value
                    .split(',')
                    .filter_map(|ip| ip.parse::<IpAddr>().ok())
                    .collect();
            }
            "port" => params.dns_port = value.parse().unwrap_or(params.dns_port),
            "cluster_dns" => params.cluster_dns = Some(value.to_owned()),
            "upstream_svc" => params.upstream_svc = value.to_owned(),
            "prometheus" => params.prometheus_listen_address = value.to_owned(),
            _ => {}
        }
    }
    params
}

/// A refused ConfigMap's contents as they are, for the renderer's no-panic checks.
fn unvalidated(stub: Option<&str>, upstream: Option<&str>) -> KubeDnsConfig {
    KubeDnsConfig {
        stub_domains: stub
            .and_then(|json| serde_json::from_str::<BTreeMap<String, Vec<String>>>(json).ok())
            .unwrap_or_default(),
        upstream_nameservers: upstream
            .and_then(|json| serde_json::from_str::<Vec<String>>(json).ok())
            .unwrap_or_default(),
    }
}

/// The plugin check on any template (`corefile::plugins`).
fn check_plugins(template: &str) {
    let found = directives(template);
    // As `str::lines` counts them, which is how a refusal quotes the line.
    let lines = template.lines().count().max(1);
    for d in &found {
        assert!(
            d.line >= 1 && d.line <= lines,
            "{d:?} outside {lines} lines"
        );
    }
    match corefile::check_plugins(template, &PluginSet::from_listing("")) {
        Ok(()) => assert!(found.iter().all(|d| d.name == "import"), "{found:?}"),
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains(['\n', '\r']), "not one line: {message:?}");
            assert_eq!(
                Some(&e.name),
                found.iter().map(|d| &d.name).find(|n| *n != "import")
            );
        }
    }
}
