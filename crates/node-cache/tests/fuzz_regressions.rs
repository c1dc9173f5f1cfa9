//! Command lines the `flags` fuzz target once failed on, replayed through the target's own
//! checks (`fuzz/harness/flags.rs`). Each case is the target's input: the arguments after the
//! program name, NUL-separated.

#[path = "../../../fuzz/harness/flags.rs"]
mod harness;

/// An argument's newline is echoed into the usage error, which is no longer one line:
/// `flag provided but not defined: -z\n` (likewise `bad flag syntax: ---\n`).
#[test]
#[ignore = "open: flags.rs echoes a raw argument into the one-line usage error (fuzz finding)"]
fn undefined_flag_with_a_newline() {
    harness::check(b"-z\n\0\0");
}

#[test]
#[ignore = "open: flags.rs echoes a raw argument into the one-line usage error (fuzz finding)"]
fn bad_flag_syntax_with_a_newline() {
    harness::check(b"---\n");
}
