//! `corefile::render`: any template, any kube-dns ConfigMap, any parameters.
//! The input format and the invariants are in `harness/render.rs`, which the regression tests
//! replay too.
#![no_main]

#[path = "../harness/render.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::check(data));
