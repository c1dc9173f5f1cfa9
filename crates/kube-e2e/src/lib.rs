//! The lab's DNS client ([`dns`], the workspace's `dns-query`) and dnsload's report format
//! ([`report`]), shared by the `dnsload` binary (in the test pods) and the `kube-e2e` driver
//! (on the host).

pub use dns_query as dns;
pub mod report;
