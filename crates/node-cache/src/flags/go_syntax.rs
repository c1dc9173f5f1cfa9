//! Go `flag` syntax. Go accepts `-name value`, `-name=value`, `--name value` and
//! `--name=value`; a boolean takes its value only as `-name=false`. Flag parsing ends at `--`
//! or at the first argument that is not a flag. The names, aliases and which flags are
//! booleans come from the table the caller passes (the real one is [`super::table::FLAGS`]).

use std::ffi::OsString;

use super::table::{Flag, Kind};
use super::FlagError;

/// Go's `strconv.ParseBool`.
pub(super) fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn stray(arg: &str, after_bool: Option<&str>) -> FlagError {
    FlagError::Usage(match after_bool {
        Some(flag) => format!(
            "unexpected argument {arg:?} after -{flag}: a boolean flag takes its value as \
             -{flag}={}",
            arg.escape_debug()
        ),
        None => format!("unexpected argument {arg:?}: node-cache takes only flags"),
    })
}

/// The assignments Go-style `args` make, in order, as (index in `flags`, value); a boolean's
/// value is `true` or `false`. `-h`, `-help` and `--help` (unless defined) give
/// [`FlagError::Help`].
pub(super) fn assignments(
    flags: &[Flag],
    args: impl IntoIterator<Item = OsString>,
) -> Result<Vec<(usize, String)>, FlagError> {
    let args = args
        .into_iter()
        .map(|a| {
            a.into_string().map_err(|a| {
                FlagError::Usage(format!(
                    "argument {:?} is not valid UTF-8",
                    a.to_string_lossy()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(args.len());
    let mut rest = args.iter();
    // The last flag, when it was a boolean written without `=`: `-setupinterface false`.
    let mut bare_bool: Option<&str> = None;
    while let Some(arg) = rest.next() {
        if arg == "--" {
            return match rest.next() {
                Some(extra) => Err(stray(extra, None)),
                None => Ok(out),
            };
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(stray(arg, bare_bool));
        };
        if body.is_empty() {
            // A lone `-` is an argument, not a flag, in Go.
            return Err(stray(arg, bare_bool));
        }
        if body.starts_with('-') || body.starts_with('=') {
            return Err(FlagError::Usage(format!(
                "bad flag syntax: {}",
                arg.escape_debug()
            )));
        }
        let (name, value) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        let Some(index) = flags
            .iter()
            .position(|f| f.name == name || f.alias == Some(name))
        else {
            if name == "h" || name == "help" {
                return Err(FlagError::Help(super::usage()));
            }
            return Err(FlagError::Usage(format!(
                "flag provided but not defined: -{}",
                name.escape_debug()
            )));
        };
        bare_bool = None;
        let value = if flags[index].kind == Kind::Bool {
            match value {
                None => {
                    bare_bool = Some(name);
                    "true"
                }
                Some(v) => match parse_go_bool(v) {
                    Some(true) => "true",
                    Some(false) => "false",
                    None => {
                        return Err(FlagError::Usage(format!(
                            "invalid value {v:?} for flag -{name}: not a boolean (true or false)"
                        )))
                    }
                },
            }
        } else {
            match value {
                Some(v) => v,
                // Go takes the next argument whatever it looks like, even `-x`.
                None => rest
                    .next()
                    .ok_or_else(|| FlagError::Usage(format!("flag needs an argument: -{name}")))?,
            }
        };
        out.push((index, value.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::table::Origin;

    const FLAGS: [Flag; 3] = [
        Flag {
            name: "str",
            alias: None,
            kind: Kind::Value("string"),
            default: "",
            origin: Origin::Ours,
            help: "",
        },
        Flag {
            name: "dns.port",
            alias: Some("p"),
            kind: Kind::Value("string"),
            default: "53",
            origin: Origin::CoreDns,
            help: "",
        },
        Flag {
            name: "flag",
            alias: None,
            kind: Kind::Bool,
            default: "false",
            origin: Origin::Ours,
            help: "",
        },
    ];

    /// The assignments, spelt as `--name=value`.
    fn norm(args: &[&str]) -> Result<Vec<String>, FlagError> {
        let set = assignments(&FLAGS, args.iter().map(OsString::from))?;
        Ok(set
            .into_iter()
            .map(|(i, value)| format!("--{}={value}", FLAGS[i].name))
            .collect())
    }

    fn usage_err(args: &[&str]) -> String {
        match norm(args) {
            Err(FlagError::Usage(m)) => m,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn every_spelling_of_a_value() {
        for args in [
            &["-str", "v"][..],
            &["-str=v"],
            &["--str", "v"],
            &["--str=v"],
        ] {
            assert_eq!(norm(args).unwrap(), ["--str=v"], "{args:?}");
        }
        assert_eq!(norm(&["-str="]).unwrap(), ["--str="]);
        assert_eq!(norm(&["-str", "a=b"]).unwrap(), ["--str=a=b"]);
        assert_eq!(norm(&["-str=a=b"]).unwrap(), ["--str=a=b"]);
    }

    #[test]
    fn values_starting_with_a_dash_are_values() {
        assert_eq!(norm(&["-str", "-flag"]).unwrap(), ["--str=-flag"]);
        assert_eq!(norm(&["-str", "--"]).unwrap(), ["--str=--"]);
    }

    #[test]
    fn aliases_map_to_the_long_name() {
        assert_eq!(norm(&["-p", "5353"]).unwrap(), ["--dns.port=5353"]);
        assert_eq!(norm(&["--dns.port=5353"]).unwrap(), ["--dns.port=5353"]);
    }

    #[test]
    fn booleans() {
        assert_eq!(norm(&["-flag"]).unwrap(), ["--flag=true"]);
        assert_eq!(norm(&["--flag"]).unwrap(), ["--flag=true"]);
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(norm(&[&format!("-flag={t}")]).unwrap(), ["--flag=true"]);
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(norm(&[&format!("-flag={f}")]).unwrap(), ["--flag=false"]);
        }
        let m = usage_err(&["-flag=yes"]);
        assert_eq!(
            m,
            "invalid value \"yes\" for flag -flag: not a boolean (true or false)"
        );
        assert!(usage_err(&["-flag="]).contains("-flag"));
    }

    #[test]
    fn a_boolean_does_not_take_the_next_argument() {
        let m = usage_err(&["-flag", "false"]);
        assert!(m.contains("\"false\" after -flag"), "{m}");
        assert!(m.contains("-flag=false"), "{m}");
    }

    #[test]
    fn unknown_flags_and_positionals() {
        assert_eq!(usage_err(&["-foo"]), "flag provided but not defined: -foo");
        assert_eq!(
            usage_err(&["--foo=1"]),
            "flag provided but not defined: -foo"
        );
        assert!(usage_err(&["stray"]).contains("\"stray\""));
        assert!(usage_err(&["-str", "v", "stray", "-flag"]).contains("\"stray\""));
        assert!(usage_err(&["-"]).contains("\"-\""));
        assert_eq!(usage_err(&["---str"]), "bad flag syntax: ---str");
        assert_eq!(usage_err(&["-=v"]), "bad flag syntax: -=v");
        assert_eq!(usage_err(&["-str"]), "flag needs an argument: -str");
    }

    #[test]
    fn double_dash_ends_flags() {
        assert_eq!(norm(&["-flag", "--"]).unwrap(), ["--flag=true"]);
        assert!(usage_err(&["--", "-flag"]).contains("\"-flag\""));
    }

    #[test]
    fn help_in_every_spelling() {
        for h in ["-h", "-help", "--help", "--h", "-help=true"] {
            assert!(matches!(norm(&[h]), Err(FlagError::Help(_))), "{h}");
        }
        // Errors before the help flag win, as in Go.
        assert!(matches!(norm(&["-foo", "-h"]), Err(FlagError::Usage(_))));
    }
}
