//! `corefile::parse_kube_dns` and `load_kube_dns_dir`: the kube-dns ConfigMap values.
//! The input format and the invariants are in `harness/kube_dns.rs`, which the regression tests
//! replay too.
#![no_main]

#[path = "../harness/kube_dns.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::check(data));
