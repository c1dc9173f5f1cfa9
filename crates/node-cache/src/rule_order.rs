//! Our rules stay first in their chains (issue 21). Presence is re-checked every
//! `-syncinterval`; position is checked every [`CHECK_EVERY`], because a rule put above ours
//! (a security agent's raw `ACCEPT`, a CNI's jump at position 1) silently brings back the
//! conntrack races NOTRACK avoids. Each check is one `iptables-save` per table (about 2.5 ms
//! for both tables in `crates/netsetup/tests/rule_position.rs`), so a move happens within
//! [`CHECK_EVERY`] plus one `iptables-restore`.
//!
//! One warning per episode: an episode starts with the first move and ends once our rules
//! have stayed first for [`QUIET`], so an agent that keeps re-inserting its rule above ours
//! is one line (with the count when it ends), not one every half second. Every move is
//! counted (`node_cache_setup_errors_total{errortype="iptables"}`).

use std::time::{Duration, Instant};

use crate::node_network::NodeNetwork;

/// How often the position of our rules is checked.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How long our rules must stay first for an episode to end.
const QUIET: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct RuleOrder {
    /// The current episode: when the last move was, and how many moves it had.
    episode: Option<(Instant, u32)>,
    /// A failing check is logged once until one succeeds again.
    failing: bool,
}

impl RuleOrder {
    /// One position check; `expected`: our rules should be in place (not failing open, not
    /// unmanaged), else there is nothing to keep first.
    pub async fn check(&mut self, network: &NodeNetwork, expected: bool) {
        if !expected {
            return;
        }
        match network.keep_rules_first().await {
            Ok(0) => {
                self.failing = false;
                if let Some((last, moves)) = self.episode {
                    if last.elapsed() >= QUIET {
                        tracing::info!(
                            moves,
                            quiet_s = QUIET.as_secs(),
                            "our rules stayed first; episode over"
                        );
                        self.episode = None;
                    }
                }
            }
            Ok(tables) => {
                self.failing = false;
                match &mut self.episode {
                    Some((last, moves)) => {
                        *last = Instant::now();
                        *moves += 1;
                    }
                    None => {
                        tracing::warn!(
                            tables,
                            "a foreign rule was above ours; ours moved back in front (said \
                             once until they stay first for {}s; every move is counted under \
                             errortype=\"iptables\")",
                            QUIET.as_secs()
                        );
                        self.episode = Some((Instant::now(), 1));
                    }
                }
            }
            Err(e) => {
                if !self.failing {
                    tracing::error!("checking our rules' position: {e:#}");
                }
                self.failing = true;
            }
        }
    }
}
