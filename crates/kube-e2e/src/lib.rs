//! dnsload's report format ([`report`]), shared by the `dnsload` binary (in the test pods) and
//! the `kube-e2e` driver (on the host). Both speak DNS through the workspace's `dns-query`.

pub mod report;
