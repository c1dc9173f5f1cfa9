//! node-cache: NodeLocal DNSCache's agent as a supervisor around an unmodified CoreDNS.
//!
//! Read in this order: `flags` (the command line), `corefile_sync` (rendering the Corefile)
//! and `config_watch` (its inputs changing), `node_network` (interface and rules),
//! `supervisor` (start and teardown), `serving` (the event loop: it routes CoreDNS's events
//! from `coredns_child::ChildSupervisor` to `rules_policy` (rules and fail-open), `peers`
//! (other instances on the node, and `peers::handover`) and `readiness`), `metrics` (the
//! agent's Prometheus endpoint). A library so that the fuzz targets reach the parsers;
//! `main.rs` is the binary.
mod config_watch;
mod corefile_sync;
pub mod flags;
pub mod info;
mod kube_api;
pub mod metrics;
mod node_network;
mod peers;
pub mod readiness;
mod reaper;
mod rule_order;
mod rules_policy;
mod serving;
mod shutdown_budget;
mod signals;
pub mod supervisor;
