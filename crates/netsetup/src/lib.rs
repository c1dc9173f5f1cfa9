//! The node's network state that node-cache owns: the interface holding the local IPs
//! ([`interface`]) and the packet-filter rules that steer DNS traffic to it ([`rules`],
//! applied by a [`filter::PacketFilter`] backend: iptables, both families through
//! [`dual_stack`], or nftables; [`backend_select`] chooses).
pub mod backend_select;
pub mod dual_stack;
pub mod events;
pub mod filter;
pub mod interface;
pub mod iptables_backend;
pub mod nft_backend;
pub mod rules;

pub use backend_select::{select, BackendChoice, Conflict, SelectError, Selected};
pub use dual_stack::DualStack;
pub use events::{NetworkEvent, NetworkEvents};
pub use filter::{CheckReport, EnsureReport, FilterError, PacketFilter};
pub use interface::{Interface, InterfaceError, InterfaceReport};
pub use iptables_backend::IptablesBackend;
pub use nft_backend::{nft_table, NftBackend};
pub use rules::{node_cache_rules, Chain, Rule, Table};
