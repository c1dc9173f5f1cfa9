//! Queries with `dig` from inside a namespace.

use anyhow::{bail, Result};

use crate::Netns;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One query's parameters.
pub struct Dig<'a> {
    pub server: &'a str,
    pub name: &'a str,
    pub qtype: &'a str,
    pub transport: Transport,
}

impl Dig<'_> {
    /// The answer records' data (`+short`), failing when dig gets no answer at all.
    pub fn run(&self, ns: &Netns) -> Result<Vec<String>> {
        let server = format!("@{}", self.server);
        let mut args = vec![
            server.as_str(),
            self.name,
            self.qtype,
            "+short",
            "+time=1",
            "+tries=1",
        ];
        if self.transport == Transport::Tcp {
            args.push("+tcp");
        }
        let out = ns.exec("dig", &args)?;
        let lines: Vec<String> = out.lines().map(|l| l.trim().to_string()).collect();
        if lines.iter().any(|l| l.starts_with(";;")) {
            bail!("dig {}: {}", args.join(" "), lines.join(" | "));
        }
        Ok(lines)
    }
}
