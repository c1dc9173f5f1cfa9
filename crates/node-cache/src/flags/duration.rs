//! `-syncinterval`: Go's duration syntax plus upstream's quirk.
//!
//! Upstream parses the flag as a Go `time.Duration` and then multiplies it by one second, so
//! there `60ns` means sixty seconds and `5s` overflows into nonsense. We accept, in order:
//! a single `<integer>ns` term as that many seconds (compatibility), a bare integer as seconds,
//! and any other Go duration (`500ms`, `5s`, `1m`, `1h30m`, `1.5s`) as itself.

use std::time::Duration;

/// Nanoseconds per Go duration unit.
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // µ MICRO SIGN, as Go accepts
    ("\u{3bc}s", 1_000), // μ GREEK SMALL LETTER MU, as Go accepts
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go caps durations at i64::MAX nanoseconds (about 292 years).
const MAX_NANOS: u128 = i64::MAX as u128;

/// The shortest re-check we run: each one reads the interface and lists the rules, so a
/// microsecond interval is a busy loop. One second is also upstream's shortest (`1ns`).
pub const SYNC_INTERVAL_FLOOR: Duration = Duration::from_secs(1);

/// Parses a `-syncinterval` value; the error is the reason, for the caller to wrap.
pub fn parse_sync_interval(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Some(n) = text.strip_suffix("ns").filter(|n| is_digits(n)) {
        return seconds(n);
    }
    if is_digits(text) {
        return seconds(text);
    }
    let duration = parse_go_duration(text)?;
    if duration.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(duration)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn seconds(digits: &str) -> Result<Duration, String> {
    let n: u64 = digits.parse().map_err(|_| "out of range".to_string())?;
    if n == 0 {
        return Err("must be greater than zero".into());
    }
    if u128::from(n) * 1_000_000_000 > MAX_NANOS {
        return Err("out of range".into());
    }
    Ok(Duration::from_secs(n))
}

/// Go's `time.ParseDuration`, for non-negative results: a sequence of decimal numbers, each
/// with an optional fraction and a unit suffix. A leading `-` is refused (an interval cannot
/// be negative); `+` is accepted as Go does.
fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || "not a duration (examples: 60, 60ns, 500ms, 30s, 1m, 1h30m)".to_string();
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.starts_with('-') {
        return Err("must be greater than zero".into());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let per_unit = match UNITS.iter().find(|(name, _)| *name == unit) {
            Some((_, n)) => *n,
            None if unit.is_empty() => return Err(format!("missing unit in {text:?}")),
            None => return Err(format!("unknown unit {unit:?} (use h, m, s, ms, us, ns)")),
        };
        let out_of_range = || "out of range".to_string();
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| out_of_range())?
        };
        let mut nanos = whole.checked_mul(per_unit).ok_or_else(out_of_range)?;
        // The fraction contributes digit by digit, truncated to whole nanoseconds as Go does.
        let mut scale = per_unit;
        for digit in frac_part.bytes().map(|b| u128::from(b - b'0')) {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos += digit * scale;
        }
        total = total.checked_add(nanos).ok_or_else(out_of_range)?;
        if total > MAX_NANOS {
            return Err(out_of_range());
        }
        rest = after;
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Duration {
        parse_sync_interval(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn upstream_nanosecond_spelling_means_seconds() {
        assert_eq!(ok("60ns"), Duration::from_secs(60));
        assert_eq!(ok("1ns"), Duration::from_secs(1));
    }

    #[test]
    fn bare_integer_means_seconds() {
        assert_eq!(ok("5"), Duration::from_secs(5));
        assert_eq!(ok("60"), Duration::from_secs(60));
    }

    #[test]
    fn go_units_mean_themselves() {
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("5s"), Duration::from_secs(5));
        assert_eq!(ok("1m"), Duration::from_secs(60));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("2.s"), Duration::from_secs(2));
        assert_eq!(ok("+10s"), Duration::from_secs(10));
        assert_eq!(ok("250us"), Duration::from_micros(250));
        assert_eq!(ok("250\u{b5}s"), Duration::from_micros(250));
        assert_eq!(ok("250\u{3bc}s"), Duration::from_micros(250));
        assert_eq!(ok("1s500ms"), Duration::from_millis(1500));
        // Mixed terms are a Go duration, not the seconds quirk.
        assert_eq!(ok("1s5ns"), Duration::new(1, 5));
    }

    #[test]
    fn zero_negative_and_garbage_are_refused() {
        for (text, reason) in [
            ("0", "greater than zero"),
            ("0ns", "greater than zero"),
            ("0s", "greater than zero"),
            ("-5s", "greater than zero"),
            ("", "empty"),
            ("s", "not a duration"),
            ("5x", "unknown unit"),
            ("1d", "unknown unit"),
            ("1.5", "missing unit"),
            ("5s3", "missing unit"),
            ("ten", "not a duration"),
            ("99999999999999999999", "out of range"),
            ("3000000h", "out of range"),
        ] {
            let err = parse_sync_interval(text).expect_err(text);
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }
}
