//! The unmodified CoreDNS binary as a child process: spawn it, probe it over DNS, signal it,
//! stop it.
pub mod handover;
pub mod memlimit;
pub mod output;
mod owner_identity;
pub mod privileges;
pub mod probe;
pub mod process;
pub mod restart;
pub mod sockets;
pub mod supervisor;
pub mod version;

pub use output::ReloadOutcome;
pub use privileges::{minimal_env, ChildUser};
pub use probe::{probe, ProbeError};
pub use process::{ChildEvent, CorednsChild};
pub use restart::Backoff;
pub use supervisor::{sleep_until_opt, ChildSupervisor, Event, RestartReason, Spec};
pub use version::coredns_version;
