//! Which source of one input is the newer: the API's value or the mounted volume's. Kubelet
//! updates a ConfigMap volume a minute or more after the API write, so once the API has
//! delivered a value, the volume's is older until it shows that same value. When the API is
//! lost (403 after an RBAC change, apiserver down) the API's last value stays in force until
//! the volume catches up to it, or [`VOLUME_LAG_MAX`] has passed (the volume then holds what
//! was written since): the configuration never moves backwards when the source changes.

use std::time::{Duration, Instant};

/// Kubelet's ConfigMap volume lags the API by its sync period plus its cache TTL (60 s + 60 s
/// with the defaults); after this long without the API, the volume is the newer source.
pub const VOLUME_LAG_MAX: Duration = Duration::from_secs(150);

#[derive(Debug)]
struct Delivered<T> {
    value: T,
    /// When the API stopped answering; None while it does.
    lost_at: Option<Instant>,
}

/// One input's API value, if the API is (or recently was) its source.
#[derive(Debug)]
pub struct Freshest<T> {
    /// The input, for the log.
    name: &'static str,
    api: Option<Delivered<T>>,
}

impl<T: PartialEq + Clone> Freshest<T> {
    pub fn new(name: &'static str) -> Self {
        Self { name, api: None }
    }

    /// The API's current value (a list or a watch event).
    pub fn delivered(&mut self, value: T) {
        self.api = Some(Delivered {
            value,
            lost_at: None,
        });
    }

    /// The API no longer holds this input (the ConfigMap was deleted): the volume is the source.
    pub fn withdrawn(&mut self) {
        self.api = None;
    }

    /// The API stopped answering at `now`; its last value stays until the volume catches up.
    pub fn lost(&mut self, now: Instant) {
        if let Some(d) = &mut self.api {
            d.lost_at.get_or_insert(now);
        }
    }

    /// The value to render from: `Some` (the API's) while it is the newer, `None` when the
    /// volume is. `volume` reads the volume's value, only when it matters.
    pub fn pick(&mut self, volume: impl FnOnce() -> Option<T>, now: Instant) -> Option<T> {
        let d = self.api.as_ref()?;
        let Some(lost_at) = d.lost_at else {
            return Some(d.value.clone());
        };
        let name = self.name;
        if now.duration_since(lost_at) >= VOLUME_LAG_MAX {
            tracing::info!(
                "{name}: no Kubernetes API for {VOLUME_LAG_MAX:?}; the mounted volume is the \
                 source"
            );
            self.api = None;
            return None;
        }
        if volume().as_ref() == Some(&d.value) {
            tracing::info!(
                "{name}: the mounted volume caught up with the Kubernetes API's last value; it \
                 is the source while the API is away"
            );
            self.api = None;
            return None;
        }
        Some(d.value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(v: &'static str) -> impl FnOnce() -> Option<&'static str> {
        move || Some(v)
    }

    #[test]
    fn the_api_wins_while_it_answers_whatever_the_volume_says() {
        let now = Instant::now();
        let mut f = Freshest::new("test");
        assert_eq!(f.pick(vol("old"), now), None, "no API value: the volume");
        f.delivered("new");
        assert_eq!(f.pick(vol("old"), now), Some("new"));
        assert_eq!(f.pick(vol("newer-in-volume?"), now), Some("new"));
    }

    #[test]
    fn a_lost_api_keeps_its_value_until_the_volume_catches_up() {
        let now = Instant::now();
        let mut f = Freshest::new("test");
        f.delivered("new");
        f.lost(now);
        // The volume still lags: switching now would move the configuration backwards.
        assert_eq!(
            f.pick(vol("old"), now + Duration::from_secs(10)),
            Some("new")
        );
        // Caught up: from here on the volume is the source, and its later changes count.
        assert_eq!(f.pick(vol("new"), now + Duration::from_secs(20)), None);
        assert_eq!(f.pick(vol("newest"), now + Duration::from_secs(30)), None);
    }

    #[test]
    fn a_volume_that_never_shows_the_apis_value_wins_after_the_lag_bound() {
        let now = Instant::now();
        let mut f = Freshest::new("test");
        f.delivered("a");
        f.lost(now);
        assert_eq!(f.pick(vol("b"), now + VOLUME_LAG_MAX / 2), Some("a"));
        assert_eq!(f.pick(vol("b"), now + VOLUME_LAG_MAX), None);
    }

    #[test]
    fn a_recovered_api_is_the_source_again_and_a_withdrawn_one_is_not() {
        let now = Instant::now();
        let mut f = Freshest::new("test");
        f.delivered("a");
        f.lost(now);
        f.delivered("b");
        assert_eq!(f.pick(vol("c"), now + VOLUME_LAG_MAX * 2), Some("b"));
        f.withdrawn();
        assert_eq!(f.pick(vol("c"), now), None);
    }
}
