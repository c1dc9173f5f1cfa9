//! When to restart a CoreDNS that exited or hung: at once the first time, then with capped
//! exponential back-off while it keeps failing; a run that served long enough resets it.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    first_retry: Duration,
    max: Duration,
    /// A child that served (answered as ours) this long is considered healthy again: the next
    /// failure restarts it at once.
    healthy_after: Duration,
    failures_in_a_row: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(
            Duration::from_millis(100),
            Duration::from_secs(5),
            Duration::from_secs(2),
        )
    }
}

impl Backoff {
    pub fn new(first_retry: Duration, max: Duration, healthy_after: Duration) -> Self {
        Self {
            first_retry,
            max,
            healthy_after,
            failures_in_a_row: 0,
        }
    }

    /// Records a failure of a child that served for `served_for`; returns how long to wait
    /// before starting the next one.
    pub fn on_failure(&mut self, served_for: Duration) -> Duration {
        if served_for >= self.healthy_after {
            self.failures_in_a_row = 0;
        }
        self.failures_in_a_row += 1;
        match self.failures_in_a_row {
            1 => Duration::ZERO,
            n => {
                let doublings = (n - 2).min(16);
                self.first_retry
                    .saturating_mul(1 << doublings)
                    .min(self.max)
            }
        }
    }

    /// Failures since the last healthy run.
    pub fn failures_in_a_row(&self) -> u32 {
        self.failures_in_a_row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(50);

    #[test]
    fn first_failure_restarts_at_once_then_backs_off_to_the_cap() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..9)
            .map(|_| b.on_failure(SHORT).as_millis() as u64)
            .collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.failures_in_a_row(), 9);
    }

    #[test]
    fn a_healthy_run_resets_the_back_off() {
        let mut b = Backoff::default();
        b.on_failure(SHORT);
        b.on_failure(SHORT);
        assert_eq!(b.on_failure(Duration::from_secs(60)), Duration::ZERO);
        assert_eq!(b.failures_in_a_row(), 1);
    }
}
