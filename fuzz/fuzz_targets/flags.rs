//! `node_cache::flags::parse`: any argument vector.
//! The input format and the invariants are in `harness/flags.rs`, which the regression tests
//! replay too.
#![no_main]

#[path = "../harness/flags.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::check(data));
