//! Command lines the `flags` fuzz target once failed on, replayed through the target's own
//! checks (`fuzz/harness/flags.rs`). Each case is the target's input: the arguments after the
//! program name, NUL-separated.

#[path = "../../../fuzz/harness/flags.rs"]
mod harness;

/// An argument's newline was echoed into the usage error, which was then no longer one line:
/// `flag provided but not defined: -z\n` (likewise `bad flag syntax: ---\n`). Control
/// characters are now escaped as Rust's `escape_debug` writes them.
#[test]
fn undefined_flag_with_a_newline() {
    harness::check(b"-z\n\0\0");
}

#[test]
fn bad_flag_syntax_with_a_newline() {
    harness::check(b"---\n");
}
