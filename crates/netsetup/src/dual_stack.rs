//! One [`PacketFilter`] over two per-family backends (iptables for IPv4 rules, ip6tables for
//! IPv6 rules), so one agent serves IPv4 and IPv6 local IPs. A family without rules is never
//! touched, so a single-family rule set behaves exactly as the plain backend would.

use crate::filter::{all_removals, CheckReport, EnsureReport, FilterError, PacketFilter};
use crate::rules::Rule;

pub struct DualStack {
    name: &'static str,
    v4: Box<dyn PacketFilter>,
    v6: Box<dyn PacketFilter>,
}

impl DualStack {
    /// `name` is what [`PacketFilter::name`] reports, e.g. `iptables+ip6tables`.
    pub fn new(name: &'static str, v4: Box<dyn PacketFilter>, v6: Box<dyn PacketFilter>) -> Self {
        Self { name, v4, v6 }
    }

    /// (IPv4 rules, IPv6 rules), each in the order given.
    fn split(rules: &[Rule]) -> (Vec<Rule>, Vec<Rule>) {
        rules.iter().cloned().partition(|r| r.ip().is_ipv4())
    }

    /// The families that have rules, with their backend.
    fn per_family<'a>(
        &'a self,
        v4: &'a [Rule],
        v6: &'a [Rule],
    ) -> impl Iterator<Item = (&'a dyn PacketFilter, &'a [Rule])> {
        [(&*self.v4, v4), (&*self.v6, v6)]
            .into_iter()
            .filter(|(_, rules)| !rules.is_empty())
    }
}

impl PacketFilter for DualStack {
    fn name(&self) -> &'static str {
        self.name
    }

    /// Both families are tried even when the first fails (the other family's clients still
    /// deserve their rules); the first error is returned, a second one logged.
    fn ensure(&self, rules: &[Rule]) -> Result<EnsureReport, FilterError> {
        let (v4, v6) = Self::split(rules);
        let mut total = EnsureReport::default();
        let mut first_error = None;
        for (backend, rules) in self.per_family(&v4, &v6) {
            match backend.ensure(rules) {
                Ok(report) => {
                    total.checked += report.checked;
                    total.inserted += report.inserted;
                }
                Err(e) if first_error.is_none() => first_error = Some(e),
                Err(e) => tracing::warn!(backend = backend.name(), error = %e, "ensure failed"),
            }
        }
        first_error.map_or(Ok(total), Err)
    }

    fn check(&self, rules: &[Rule]) -> Result<CheckReport, FilterError> {
        let (v4, v6) = Self::split(rules);
        let mut total = CheckReport::default();
        for (backend, rules) in self.per_family(&v4, &v6) {
            total = total + backend.check(rules)?;
        }
        Ok(total)
    }

    fn displaced(&self, rules: &[Rule]) -> Result<bool, FilterError> {
        let (v4, v6) = Self::split(rules);
        for (backend, rules) in self.per_family(&v4, &v6) {
            if backend.displaced(rules)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn put_first(&self, rules: &[Rule]) -> Result<usize, FilterError> {
        let (v4, v6) = Self::split(rules);
        let mut tables = 0;
        for (backend, rules) in self.per_family(&v4, &v6) {
            tables += backend.put_first(rules)?;
        }
        Ok(tables)
    }

    fn retain(&self, keep: &[Rule], all: &[Rule]) -> Result<usize, Vec<FilterError>> {
        let ((keep4, keep6), (all4, all6)) = (Self::split(keep), Self::split(all));
        all_removals(
            [(&*self.v4, keep4, all4), (&*self.v6, keep6, all6)]
                .into_iter()
                .filter(|(_, _, all)| !all.is_empty())
                .map(|(backend, keep, all)| backend.retain(&keep, &all)),
        )
    }

    fn remove(&self, rules: &[Rule]) -> Result<usize, Vec<FilterError>> {
        let (v4, v6) = Self::split(rules);
        all_removals(
            self.per_family(&v4, &v6)
                .map(|(backend, rules)| backend.remove(rules)),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use std::net::IpAddr;

    use super::*;
    use crate::rules::node_cache_rules;

    /// Records each call and how many rules it got.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<(&'static str, usize)>>,
        fail: bool,
    }

    impl PacketFilter for std::sync::Arc<Recorder> {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn ensure(&self, rules: &[Rule]) -> Result<EnsureReport, FilterError> {
            self.calls.lock().unwrap().push(("ensure", rules.len()));
            if self.fail {
                return Err(FilterError::Unavailable {
                    tool: "recorder",
                    reason: "told to fail".to_string(),
                });
            }
            Ok(EnsureReport {
                checked: rules.len(),
                inserted: rules.len(),
            })
        }
        fn check(&self, rules: &[Rule]) -> Result<CheckReport, FilterError> {
            self.calls.lock().unwrap().push(("check", rules.len()));
            Ok(CheckReport {
                present: rules.len(),
                ..CheckReport::default()
            })
        }
        fn remove(&self, rules: &[Rule]) -> Result<usize, Vec<FilterError>> {
            self.calls.lock().unwrap().push(("remove", rules.len()));
            Ok(rules.len())
        }
    }

    fn dual(
        fail_v4: bool,
    ) -> (
        DualStack,
        std::sync::Arc<Recorder>,
        std::sync::Arc<Recorder>,
    ) {
        let v4 = std::sync::Arc::new(Recorder {
            fail: fail_v4,
            ..Recorder::default()
        });
        let v6 = std::sync::Arc::new(Recorder::default());
        let d = DualStack::new("both", Box::new(v4.clone()), Box::new(v6.clone()));
        (d, v4, v6)
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn each_family_goes_to_its_backend() {
        let (d, v4, v6) = dual(false);
        let rules = node_cache_rules(&ips(&["169.254.20.10", "fd00::10", "10.96.0.10"]), 53, 8080);
        assert_eq!(d.ensure(&rules).unwrap().inserted, 36);
        assert_eq!(d.check(&rules).unwrap().present, 36);
        assert_eq!(d.remove(&rules).unwrap(), 36);
        let want4 = vec![("ensure", 24), ("check", 24), ("remove", 24)];
        let want6 = vec![("ensure", 12), ("check", 12), ("remove", 12)];
        assert_eq!(*v4.calls.lock().unwrap(), want4);
        assert_eq!(*v6.calls.lock().unwrap(), want6);
    }

    #[test]
    fn a_family_without_rules_is_not_touched() {
        let (d, v4, v6) = dual(false);
        let rules = node_cache_rules(&ips(&["169.254.20.10"]), 53, 8080);
        d.ensure(&rules).unwrap();
        d.remove(&rules).unwrap();
        assert_eq!(v4.calls.lock().unwrap().len(), 2);
        assert!(v6.calls.lock().unwrap().is_empty());
    }

    #[test]
    fn one_family_failing_does_not_stop_the_other() {
        let (d, _, v6) = dual(true);
        let rules = node_cache_rules(&ips(&["169.254.20.10", "fd00::10"]), 53, 8080);
        assert!(d.ensure(&rules).is_err());
        assert_eq!(*v6.calls.lock().unwrap(), vec![("ensure", 12)]);
    }
}
