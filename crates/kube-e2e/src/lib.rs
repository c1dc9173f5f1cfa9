//! The lab's DNS messages ([`dns`]) and dnsload's report format ([`report`]), shared by the
//! `dnsload` binary (in the test pods) and the `kube-e2e` driver (on the host).

pub mod dns;
pub mod report;
