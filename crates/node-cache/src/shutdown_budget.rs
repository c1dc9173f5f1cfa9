//! One deadline for the whole way out. Every teardown step (drain, peer lock, CoreDNS stop,
//! queue read) takes the smaller of its own cap and what is left of the budget, less a reserve
//! that keeps the final removal of the rules and the interface possible: whatever the steps
//! before it do, the kubelet's SIGKILL never lands before the node is left clean.

use std::time::Duration;

use tokio::time::Instant;

/// From SIGTERM to exit. The manifest and the chart set `terminationGracePeriodSeconds` to 30:
/// 5 s of margin for the kubelet's own latency and the process exit.
pub const TOTAL: Duration = Duration::from_secs(25);
/// Kept back for removing the rules and the interface (a few netlink/nft calls, ~10 ms each).
pub const RESERVE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug)]
pub struct ShutdownBudget {
    deadline: Instant,
}

impl ShutdownBudget {
    /// Starts the budget now (call on SIGTERM).
    pub fn start() -> Self {
        Self::with_total(TOTAL)
    }

    pub fn with_total(total: Duration) -> Self {
        Self {
            deadline: Instant::now() + total,
        }
    }

    /// What a step whose own cap is `cap` may spend now: never past the reserve.
    pub fn step(&self, cap: Duration) -> Duration {
        let usable = self
            .deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(RESERVE);
        cap.min(usable)
    }

    /// What is left until the deadline, reserve included.
    pub fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Today's caps, each step spending all it may (a peer that never serves, a lock held, a
    /// CoreDNS that ignores SIGTERM): they add up to 36 s, the budget stops them at 23.
    #[tokio::test(start_paused = true)]
    async fn steps_that_spend_their_caps_end_before_the_reserve() {
        let budget = ShutdownBudget::start();
        let caps = [20, 10, 5, 1].map(Duration::from_secs);
        let mut given = Vec::new();
        for cap in caps {
            let d = budget.step(cap);
            given.push(d.as_secs());
            tokio::time::sleep(d).await;
        }
        assert_eq!(given, [20, 3, 0, 0]);
        assert_eq!(budget.left(), RESERVE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quick_step_leaves_the_rest_to_the_next() {
        let budget = ShutdownBudget::start();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            budget.step(Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(budget.step(Duration::from_secs(1)), Duration::ZERO);
        assert_eq!(budget.left(), Duration::ZERO);
    }
}
