//! Choosing the packet-filter backend from a flag value (`auto`, `iptables`, `nftables`).
//!
//! `iptables` is upstream's behaviour: the `iptables` / `ip6tables` commands on PATH, whatever
//! mode they run in. `nftables` is our own table ([`crate::NftBackend`]). `auto` looks at the
//! node the way kubernetes-sigs/iptables-wrappers does, so our rules land where kube-proxy's
//! are; [`decide`] holds the whole policy as a pure function of what [`observe`] saw:
//!
//! 1. Our rules in more than one place (iptables-legacy, iptables-nft, our nft table): error.
//!    Picking one would leave the other copy behind, and teardown would not remove it.
//! 2. kube-proxy's nftables tables (`ip`/`ip6 kube-proxy`) and no iptables rule in either
//!    mode (kubelet's empty canary chains allowed): nftables. The node runs kube-proxy in
//!    nftables mode and nothing else uses iptables; we would be the only iptables user.
//! 3. kubelet's canary chains (`KUBE-IPTABLES-HINT`, `KUBE-KUBELET-CANARY`) in iptables-nft,
//!    else in iptables-legacy: that mode (nft first, as the wrapper checks it first; chains in
//!    both are named in the reason).
//! 4. No sign of kubernetes: where our rules already are (a restart after SIGKILL), else the
//!    mode with more rules (legacy only when strictly more, as the wrapper does), else
//!    nftables when no iptables command runs at all.
//!
//! Whenever a kubernetes mode is found (2, 3) and our rules are elsewhere, that is an error too:
//! following kubernetes would double our rules, keeping ours would split the node.

use std::fmt;
use std::net::IpAddr;
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;

use crate::dual_stack::DualStack;
use crate::filter::{FilterError, PacketFilter};
use crate::iptables_backend::IptablesBackend;
use crate::nft_backend::{self, NftBackend};

mod decide;

pub use decide::{decide, Conflict, Decision, NftState, Observed, XtablesState};

/// Why [`select`] gave no backend.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// The node's packet-filter state does not allow a safe choice of backend (our rules in
    /// two places, say): acting would double them or leave a copy behind.
    #[error("choosing a firewall backend: {0}")]
    Conflict(#[from] Conflict),
    /// The chosen backend cannot be used (its tool does not run).
    #[error(transparent)]
    Filter(#[from] FilterError),
}

/// The value of `-firewall-backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Iptables,
    Nftables,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid -firewall-backend {value:?}: want auto, iptables or nftables")]
pub struct UnknownBackend {
    value: String,
}

impl FromStr for BackendChoice {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "iptables" => Ok(BackendChoice::Iptables),
            "nftables" => Ok(BackendChoice::Nftables),
            _ => Err(UnknownBackend {
                value: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Iptables => "iptables",
            BackendChoice::Nftables => "nftables",
        })
    }
}

/// The backend and, for the log, why it was chosen.
pub struct Selected {
    pub filter: Arc<dyn PacketFilter>,
    pub reason: String,
}

/// Where rules can go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `iptables` / `ip6tables` on PATH, in whatever mode they run.
    Iptables,
    IptablesLegacy,
    IptablesNft,
    Nftables,
}

impl Mode {
    /// (IPv4 command, IPv6 command, both as one name) for the iptables modes.
    fn commands(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Mode::Iptables => Some(("iptables", "ip6tables", "iptables+ip6tables")),
            Mode::IptablesLegacy => Some((
                "iptables-legacy",
                "ip6tables-legacy",
                "iptables-legacy+ip6tables-legacy",
            )),
            Mode::IptablesNft => Some((
                "iptables-nft",
                "ip6tables-nft",
                "iptables-nft+ip6tables-nft",
            )),
            Mode::Nftables => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Iptables => "iptables",
            Mode::IptablesLegacy => "iptables-legacy",
            Mode::IptablesNft => "iptables-nft",
            Mode::Nftables => "nftables",
        })
    }
}

/// Runs `cmd args`; its stdout when it ran and succeeded.
fn output_of(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Both families' `-save` output of one mode; `None` when the IPv4 one cannot run (the IPv6
/// one may be missing on an IPv4-only host). No `-t`: legacy `-t mangle` would create the
/// table, changing what the next look sees.
fn observe_xtables(v4_save: &str, v6_save: &str) -> Option<XtablesState> {
    let mut state = XtablesState::default();
    state.add_saved(&output_of(v4_save, &[])?);
    if let Some(v6) = output_of(v6_save, &[]) {
        state.add_saved(&v6);
    }
    Some(state)
}

/// Gathers the facts [`decide`] needs, from this network namespace. Changes nothing.
pub fn observe() -> Observed {
    let nft = output_of("nft", &["-j", "list", "tables"]).map(|json| {
        let names = nft_backend::table_names(&json).unwrap_or_default();
        NftState {
            kube_proxy: names
                .iter()
                .any(|(f, n)| (f == "ip" || f == "ip6") && n == "kube-proxy"),
            ours: names
                .iter()
                .any(|(f, n)| f == nft_backend::FAMILY && n == nft_backend::TABLE),
        }
    });
    Observed {
        legacy: observe_xtables("iptables-legacy-save", "ip6tables-legacy-save"),
        nft_compat: observe_xtables("iptables-nft-save", "ip6tables-nft-save"),
        iptables: output_of("iptables", &["--version"]).is_some(),
        nft,
    }
}

/// The filter for `mode`, touching only the families `local_ips` has.
fn build(mode: Mode, local_ips: &[IpAddr]) -> Result<(Arc<dyn PacketFilter>, String), FilterError> {
    let Some((v4_cmd, v6_cmd, both)) = mode.commands() else {
        let nft = NftBackend::new()?;
        let table = format!("table {} {}", nft_backend::FAMILY, nft_backend::TABLE);
        return Ok((Arc::new(nft), table));
    };
    let backend = |ipv6: bool| {
        let cmd = if ipv6 { v6_cmd } else { v4_cmd };
        if mode == Mode::Iptables {
            IptablesBackend::new(ipv6)
        } else {
            IptablesBackend::with_command(cmd)
        }
    };
    let has_v6 = local_ips.iter().any(IpAddr::is_ipv6);
    let has_v4 = local_ips.iter().any(IpAddr::is_ipv4);
    Ok(match (has_v4, has_v6) {
        (true, true) => (
            Arc::new(DualStack::new(
                both,
                Box::new(backend(false)?),
                Box::new(backend(true)?),
            )),
            format!("{v4_cmd} for IPv4, {v6_cmd} for IPv6"),
        ),
        (false, true) => (
            Arc::new(backend(true)?),
            format!("{v6_cmd} (IPv6 local IPs)"),
        ),
        _ => (
            Arc::new(backend(false)?),
            format!("{v4_cmd} (IPv4 local IPs)"),
        ),
    })
}

/// The backend for `-firewall-backend=choice`.
pub fn select(choice: BackendChoice, local_ips: &[IpAddr]) -> Result<Selected, SelectError> {
    let (mode, why) = match choice {
        BackendChoice::Iptables => (Mode::Iptables, "asked for".to_string()),
        BackendChoice::Nftables => (Mode::Nftables, "asked for".to_string()),
        BackendChoice::Auto => {
            let decision = decide(&observe())?;
            (decision.mode(), decision.to_string())
        }
    };
    let (filter, what) = build(mode, local_ips)?;
    Ok(Selected {
        filter,
        reason: format!("-firewall-backend={choice}: {what}: {why}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_parses_and_names_the_choices_when_wrong() {
        assert_eq!(
            "auto".parse::<BackendChoice>().unwrap(),
            BackendChoice::Auto
        );
        assert_eq!(
            "iptables".parse::<BackendChoice>().unwrap(),
            BackendChoice::Iptables
        );
        assert_eq!(
            "nftables".parse::<BackendChoice>().unwrap(),
            BackendChoice::Nftables
        );
        let e = "nft".parse::<BackendChoice>().unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid -firewall-backend \"nft\": want auto, iptables or nftables"
        );
        for c in [
            BackendChoice::Auto,
            BackendChoice::Iptables,
            BackendChoice::Nftables,
        ] {
            assert_eq!(c.to_string().parse::<BackendChoice>().unwrap(), c);
        }
    }
}
