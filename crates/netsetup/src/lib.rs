//! The node's network state that node-cache owns: the interface holding the local IPs
//! ([`interface`]) and the packet-filter rules that steer DNS traffic to it ([`rules`],
//! applied by a [`filter::PacketFilter`] backend).
#![forbid(unsafe_code)]

pub mod events;
pub mod filter;
pub mod interface;
pub mod iptables_backend;
pub mod rules;

pub use events::{NetworkEvent, NetworkEvents};
pub use filter::{FilterError, PacketFilter};
pub use interface::{Interface, InterfaceError, InterfaceReport};
pub use iptables_backend::IptablesBackend;
pub use rules::{node_cache_rules, Rule, Table};
