//! The blocks appended for the kube-dns ConfigMap's `stubDomains`, from
//! `templates/stubdomain.hbs`: one per domain, in sorted order (upstream's is random).

use std::collections::BTreeMap;
use std::net::IpAddr;

use handlebars::Handlebars;
use serde::Serialize;

use crate::error::RenderError;

const TEMPLATE_NAME: &str = "stubdomain";
const TEMPLATE: &str = include_str!("../../../templates/stubdomain.hbs");

#[derive(Serialize)]
struct StubDomains<'a> {
    stub_domains: Vec<StubDomain<'a>>,
}

#[derive(Serialize)]
struct StubDomain<'a> {
    domain: &'a str,
    port: u16,
    bind: &'a str,
    servers: String,
}

pub(crate) fn render_stub_blocks(
    stub_domains: &BTreeMap<String, Vec<String>>,
    local_ips: &[IpAddr],
    port: u16,
) -> Result<String, RenderError> {
    if stub_domains.is_empty() {
        return Ok(String::new());
    }
    let bind = local_ips
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let data = StubDomains {
        stub_domains: stub_domains
            .iter()
            .map(|(domain, servers)| StubDomain {
                domain,
                port,
                bind: &bind,
                servers: servers.join(" "),
            })
            .collect(),
    };
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(handlebars::no_escape);
    registry
        .register_template_string(TEMPLATE_NAME, TEMPLATE)
        .map_err(|e| template_error(&e))?;
    registry
        .render(TEMPLATE_NAME, &data)
        .map_err(|e| template_error(&e))
}

fn template_error(e: &dyn std::fmt::Display) -> RenderError {
    RenderError::StubTemplate(
        e.to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_block_as_upstream_writes_it() {
        let stubs = BTreeMap::from([("acme.local".to_string(), vec!["1.2.3.4:53".to_string()])]);
        let ips = [
            "169.254.20.10".parse().unwrap(),
            "10.96.0.10".parse().unwrap(),
        ];
        assert_eq!(
            render_stub_blocks(&stubs, &ips, 53).unwrap(),
            "\nacme.local:53 {\n    errors\n    cache 30\n    bind 169.254.20.10 10.96.0.10\n    forward . 1.2.3.4:53\n}\n"
        );
    }

    #[test]
    fn none_is_empty() {
        let ips = ["169.254.20.10".parse().unwrap()];
        assert_eq!(render_stub_blocks(&BTreeMap::new(), &ips, 53).unwrap(), "");
    }
}
