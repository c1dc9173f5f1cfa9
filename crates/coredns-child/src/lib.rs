//! The unmodified CoreDNS binary as a child process: spawn it, probe it over DNS, signal it,
//! stop it.
// One `unsafe` block, in `process.rs`: the pre-exec hook that ties CoreDNS's life to ours.
#![deny(unsafe_code)]

pub mod memlimit;
pub mod output;
pub mod probe;
pub mod process;
pub mod restart;
pub mod sockets;
pub mod version;

pub use output::ReloadOutcome;
pub use probe::{probe, ProbeError};
pub use process::{ChildEvent, CorednsChild};
pub use restart::Backoff;
pub use version::coredns_version;
