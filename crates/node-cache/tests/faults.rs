//! The fault matrix (issue 7): node-cache given bad input or a hostile node, seen from outside.
//! Each test runs the real binary in the node namespace of a throwaway topology with a real
//! CoreDNS, and asserts what a pod sees (answers, failures) and what is left on the node
//! (interface, rules, metrics, log lines). Faults are confined to what the test made: its
//! namespaces, scratch directory, a lock file of its own, a mount namespace of its own thread,
//! a cgroup of its own.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use dns_query::encode_query;
use nix::sys::signal::Signal;
use node_cache::metrics::{ErrorType, ReloadResult, RestartReason};
use testbed::agent::{addon_stub_domains, INTERFACE};
use testbed::faults::{self, XtablesLock};
use testbed::fixture::{series, AgentRun, Node, DEADLINE};
use testbed::process::{self, alive};
use testbed::querier::udp_socket_in;
use testbed::topology::{names, write_configmap_volume};
use testbed::{addrs, wait_until, Transport};

const NODE_CACHE: &str = env!("CARGO_BIN_EXE_node-cache");

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn cluster_answered(node: &Node, server: &str) -> bool {
    node.answers(server, names::CLUSTER, names::CLUSTER_IP)
}

fn stub_answered(node: &Node, server: &str) -> bool {
    node.answers(server, names::STUB, names::STUB_IP)
}

// ─── 1. bad flags ────────────────────────────────────────────────────────────────────────

/// Bad command lines beyond cli.rs's, each on top of the addon's complete, valid flags
/// and files (so anything that got past parsing would set up the node): exit 2, a one-line
/// error naming the flag (then the usage), nothing created.
#[test]
fn bad_flags_exit_2_name_the_flag_and_create_nothing() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let (topo, files) = (&node.topo, &node.files);
    // An unusable -metrics-listen-address and -tls-enabled are no longer among them: metrics
    // never take DNS down (logged, DNS served), as upstream.
    let cases: [(&[&str], &str); 10] = [
        (&["-interfacename", "abcdefghijklmnopq"], "-interfacename"),
        (&["-syncinterval", "soon"], "-syncinterval"),
        (&["-syncinterval", "0"], "-syncinterval"),
        (&["-dns.port", "0"], "-dns.port"),
        (&["-health-port", "70000"], "-health-port"),
        (
            &["-prometheus-listen-address=:x"],
            "-prometheus-listen-address",
        ),
        (&["-setupiptables=maybe"], "-setupiptables"),
        (&["-upstreamsvc="], "-upstreamsvc"),
        (&["-localip", "169.254.20.10,"], "-localip"),
        // A flag that needs a value, given none, last on the line.
        (&["-syncinterval"], "-syncinterval"),
    ];
    for (bad, named) in cases {
        let mut args = files.args(&topo.coredns);
        args.extend(bad.iter().map(|s| s.to_string()));
        let (code, stderr) =
            faults::status_and_stderr(topo.node.command(NODE_CACHE).args(&args).env(
                "KUBE_DNS_UPSTREAM_SERVICE_HOST",
                addrs::KUBE_DNS_UPSTREAM_SVC,
            ))?;
        assert_eq!(code, Some(2), "{bad:?}: expected exit 2\n{stderr}");
        let mut lines = stderr.lines();
        let first = lines.next().unwrap_or_default();
        assert!(
            first.contains(named),
            "{bad:?}: expected the first line to name {named}: {first:?}"
        );
        let second = lines.next().unwrap_or_default();
        assert!(
            second.starts_with("Usage of"),
            "{bad:?}: expected a one-line error, then the usage; second line {second:?}"
        );
        node.check_clean(&format!("after {bad:?}"))?;
        for (what, path) in [("Corefile", &files.conf), ("pidfile", &files.pidfile)] {
            assert!(!path.exists(), "{bad:?}: expected no {what} written");
        }
    }
    // The same flags without the bad one do set up the node: the cases above were refused
    // for the bad flag alone.
    let mut agent = node.agent().start()?;
    agent.finish()
}

// ─── 2. bad kube-dns ConfigMaps ──────────────────────────────────────────────────────────

/// Twelve invalid kube-dns ConfigMaps (beyond resilience.rs's truncated JSON), swapped in one
/// after another the way kubelet does: each is counted under `configmap` and logged naming
/// the problem; the last good Corefile stays byte for byte, CoreDNS is not reloaded, and a
/// pod's stub-domain query is still answered. A good ConfigMap afterwards is applied.
#[test]
fn bad_configmaps_are_counted_and_the_last_good_corefile_serves() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let files = &node.files;
    let mut agent = node.agent().start()?;
    let good = read(&files.conf);
    ensure!(
        good.contains("corp.internal:53"),
        "expected the stub block rendered:\n{good}"
    );
    let stub = addon_stub_domains();
    let cases: [(&str, &str, &str); 12] = [
        ("not json at all", "[]", "stubDomains: invalid JSON"),
        (
            r#"{"corp.internal": "10.244.2.3"}"#,
            "[]",
            "stubDomains: invalid JSON",
        ),
        (r#"["corp.internal"]"#, "[]", "stubDomains: invalid JSON"),
        (
            r#"{"corp.internal": ["stub.example"]}"#,
            "[]",
            "is not an IP address",
        ),
        (
            r#"{"corp.internal": ["10.244.2.3:99999"]}"#,
            "[]",
            r#"has port "99999""#,
        ),
        (
            r#"{"corp.internal": ["tls://10.244.2.3"]}"#,
            "[]",
            "transport prefix",
        ),
        (
            r#"{"": ["10.244.2.3"]}"#,
            "[]",
            r#""" is not a valid domain name"#,
        ),
        (
            r#"{"Corp_Internal": ["10.244.2.3"]}"#,
            "[]",
            "is not a valid domain name",
        ),
        (r#"{"corp.internal": []}"#, "[]", "lists no servers"),
        (
            &stub,
            r#"["10.244.2.2", "10.244.2.2", "10.244.2.2", "10.244.2.2"]"#,
            "4 servers given, at most 3 allowed",
        ),
        (
            &stub,
            r#"["10.244.2.256"]"#,
            r#"upstreamNameservers: server "10.244.2.256" is not an IP"#,
        ),
        (
            &stub,
            r#""10.244.2.2""#,
            "upstreamNameservers: invalid JSON",
        ),
    ];
    let reloads_before = agent.metric(&series::reloads(ReloadResult::Ok.label()))?
        + agent.metric(&series::reloads(ReloadResult::Failed.label()))?;
    let mut counted = agent.metric(&series::setup_errors(ErrorType::Configmap.label()))?;
    ensure!(counted == 0.0, "expected no configmap error at start");
    for (stub_domains, upstreams, logged) in cases {
        let case = format!("stubDomains {stub_domains} upstreamNameservers {upstreams}");
        let logged_before = error_lines(&agent.log(), logged);
        write_configmap_volume(
            &files.kube_dns,
            &[
                ("stubDomains", stub_domains),
                ("upstreamNameservers", upstreams),
            ],
        )?;
        let before = counted;
        counted = agent.wait_metric(
            &series::setup_errors(ErrorType::Configmap.label()),
            Duration::from_secs(5),
            |v| v > before,
            &format!("counted for {case}"),
        )?;
        wait_until(
            &format!("the error line for {case}"),
            Duration::from_secs(5),
            || Ok(error_lines(&agent.log(), logged) > logged_before),
        )
        .with_context(|| {
            format!(
                "expected an error line with {logged:?}\n{}",
                agent.log_tail()
            )
        })?;
        assert_eq!(
            read(&files.conf),
            good,
            "{case}: expected the last good Corefile kept"
        );
        assert!(
            stub_answered(&node, addrs::LINK_LOCAL) && cluster_answered(&node, addrs::KUBE_DNS_SVC),
            "{case}: expected the pod still answered (stub domain at the link-local IP, cluster \
             name at the kube-dns IP)"
        );
        agent.assert_running(&case)?;
    }
    assert_eq!(
        agent.metric(&series::reloads(ReloadResult::Ok.label()))?
            + agent.metric(&series::reloads(ReloadResult::Failed.label()))?,
        reloads_before,
        "expected no reload for any bad ConfigMap"
    );
    // Changes still flow: a good ConfigMap with one more stub domain is rendered and loaded.
    write_configmap_volume(
        &files.kube_dns,
        &[(
            "stubDomains",
            r#"{"corp.internal": ["10.244.2.3"], "extra.test": ["10.244.2.3"]}"#,
        )],
    )?;
    agent.wait_metric(
        &series::reloads(ReloadResult::Ok.label()),
        Duration::from_secs(5),
        |v| v > reloads_before,
        "up after a good ConfigMap",
    )?;
    assert!(read(&files.conf).contains("extra.test:53"));
    assert!(stub_answered(&node, addrs::LINK_LOCAL));
    agent.finish()
}

/// Error lines of a rejected ConfigMap carrying `message`.
fn error_lines(log: &str, message: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("ERROR") && l.contains(message) && l.contains("last good"))
        .count()
}

// ─── 3. -basecorefile missing or unreadable ──────────────────────────────────────────────

/// At start, a missing or unreadable (a directory) `-basecorefile` is fatal: without a first
/// Corefile there is nothing to serve, and a crash-looping pod is what tells the operator.
/// Exit 1, one error line naming the flag and the path, nothing left on the node. Later (the
/// ConfigMap volume gone or broken under a running agent) the last good Corefile keeps
/// serving, each failed read is counted under `configmap` (as upstream counts it) and logged.
#[test]
fn basecorefile_missing_is_fatal_at_start_and_survived_later() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let (topo, files) = (&node.topo, &node.files);
    let missing = topo.path("absent/Corefile.base");
    let a_directory = topo.path("a-directory");
    std::fs::create_dir_all(&a_directory)?;
    for base in [&missing, &a_directory] {
        let (status, log) = node
            .agent()
            .name("start-without-base")
            .flags(&["-basecorefile", &base.display().to_string()])
            .run_to_exit()?;
        assert_eq!(
            status.code(),
            Some(1),
            "{}: exit 1 expected\n{log}",
            base.display()
        );
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
        assert!(
            errors.len() == 1
                && errors[0].contains("-basecorefile")
                && errors[0].contains(&base.display().to_string()),
            "expected one error line naming -basecorefile {}:\n{log}",
            base.display()
        );
        node.check_clean(&format!("after a start with {}", base.display()))?;
        assert!(!files.conf.exists(), "expected no Corefile written");
    }

    let mut agent = node.agent().start()?;
    let good = read(&files.conf);
    let original = read(&files.base);
    let mut counted = 0.0;
    // Removed; then replaced by something unreadable (a directory of that name).
    for what in ["removed", "unreadable"] {
        if what == "removed" {
            std::fs::remove_file(&files.base)?;
        } else {
            std::fs::create_dir(&files.base)?;
        }
        let before = counted;
        counted = agent.wait_metric(
            &series::setup_errors(ErrorType::Configmap.label()),
            Duration::from_secs(5),
            |v| v > before,
            &format!("counted with the base Corefile {what}"),
        )?;
        let log = agent.log();
        assert!(
            log.lines().any(|l| l.contains("ERROR")
                && l.contains("reading -basecorefile")
                && l.contains("keeping the last good Corefile")),
            "expected an error line for the {what} base Corefile:\n{}",
            testbed::fixture::tail(&log)
        );
        assert_eq!(
            read(&files.conf),
            good,
            "expected the last good Corefile kept"
        );
        assert!(
            cluster_answered(&node, addrs::LINK_LOCAL) && stub_answered(&node, addrs::KUBE_DNS_SVC),
            "expected the pod answered with the base Corefile {what}"
        );
        agent.assert_running(&format!("the base Corefile was {what}"))?;
    }
    std::fs::remove_dir(&files.base)?;
    std::fs::write(&files.base, &original)?;
    assert_eq!(topo.node_cache_rule_lines()?.len(), 24);
    agent.finish()
}

// ─── 4 and 10b. the xtables lock held; SIGTERM during teardown ───────────────────────────

/// The agent on legacy iptables (only those take the xtables lock), with a lock file of the
/// test's own. Held for 10 s from before the start: CoreDNS serves through the interface, each
/// bounded wait for the lock is counted under `iptables_lock`, the agent stays responsive, and
/// the rules go in once the lock is free. Then the lock is held again across SIGTERM: teardown
/// waits for it, a second SIGTERM and a SIGINT meanwhile are ignored, and once the lock is
/// free the agent removes everything and exits 0.
#[test]
fn xtables_lock_held_is_counted_then_rules_go_in_and_teardown_ignores_more_signals() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let (topo, files) = (&node.topo, &node.files);
    let path = faults::legacy_iptables_path(&topo.path("legacy-bin"))?;
    let lock = XtablesLock::new(topo.path("xtables.lock"));
    let held = lock.hold()?;
    let held_at = Instant::now();
    let mut agent = node
        .agent()
        .flags(&["-syncinterval", "1s"])
        .env("PATH", path)
        .env("XTABLES_LOCKFILE", lock.path().display().to_string())
        .spawn()?;
    // CoreDNS answers through the interface without the rules, at both IPs (the kube-dns IP
    // through kube-proxy's DNAT while our rules are missing).
    wait_until("CoreDNS to answer at the link-local IP", DEADLINE, || {
        Ok(cluster_answered(&node, addrs::LINK_LOCAL))
    })?;
    agent.wait_metric(
        &series::setup_errors(ErrorType::IptablesLock.label()),
        Duration::from_secs(9),
        |v| v >= 1.0,
        "≥ 1 while the xtables lock is held",
    )?;
    assert_eq!(
        faults::legacy_rule_lines(&topo.node)?.len(),
        0,
        "no rules while the lock is held"
    );
    assert!(
        cluster_answered(&node, addrs::LINK_LOCAL) && cluster_answered(&node, addrs::KUBE_DNS_SVC),
        "expected the pod answered at both IPs while the lock is held"
    );
    agent.assert_running("a held xtables lock")?;
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("xtables lock still held")),
        "expected an error line about the lock:\n{}",
        testbed::fixture::tail(&log)
    );
    // The metrics endpoint answered above; the event loop answers too: a kube-dns ConfigMap
    // change is applied while the lock is held.
    write_configmap_volume(&files.kube_dns, &[("stubDomains", "{}")])?;
    wait_until(
        "the stub domain to be dropped",
        Duration::from_secs(10),
        || Ok(!read(&files.conf).contains("corp.internal:53")),
    )
    .with_context(|| format!("agent log:\n{}", agent.log_tail()))?;

    let remaining = Duration::from_secs(10).saturating_sub(held_at.elapsed());
    wait_until(
        "the lock's 10 s",
        remaining + Duration::from_secs(1),
        || Ok(held_at.elapsed() >= Duration::from_secs(10)),
    )?;
    let counted_while_held =
        agent.metric(&series::setup_errors(ErrorType::IptablesLock.label()))?;
    drop(held);
    let released = Instant::now();
    wait_until("the 24 rules after the lock's release", DEADLINE, || {
        Ok(faults::legacy_rule_lines(&topo.node)?.len() == 24)
    })
    .with_context(|| format!("agent log:\n{}", agent.log_tail()))?;
    eprintln!(
        "figure: xtables lock released → 24 rules = {} ms (iptables_lock counted {counted_while_held})",
        released.elapsed().as_millis()
    );
    let dnat = topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC)?;
    assert!(cluster_answered(&node, addrs::KUBE_DNS_SVC));
    assert_eq!(
        topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC)?,
        dnat,
        "expected the kube-dns IP answered by node-cache once the rules are in"
    );

    // Teardown under the lock.
    let held = lock.hold()?;
    agent.signal(Signal::SIGTERM)?;
    wait_until(
        "teardown to wait for the lock (an iptables child of the agent)",
        Duration::from_secs(10),
        || {
            Ok(agent.log().contains("SIGTERM received; shutting down")
                && !process::children_of(agent.pid()).is_empty())
        },
    )
    .with_context(|| format!("agent log:\n{}", agent.log_tail()))?;
    agent.signal(Signal::SIGTERM)?;
    agent.signal(Signal::SIGINT)?;
    // Still waiting for the lock, not killed by either signal.
    wait_until(
        "the further signals to be taken",
        Duration::from_secs(2),
        || {
            let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid()))?;
            let pending = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .is_some_and(|v| v.trim().trim_start_matches('0').is_empty())
            };
            Ok(pending("ShdPnd:") && pending("SigPnd:"))
        },
    )?;
    agent.assert_running("a second SIGTERM and a SIGINT during teardown")?;
    ensure!(
        faults::legacy_rule_lines(&topo.node)?.len() == 24,
        "expected teardown still waiting for the lock"
    );
    drop(held);
    let status = agent.wait_exit()?;
    assert!(
        status.success(),
        "expected exit 0 after teardown, got {status}:\n{}",
        agent.log_tail()
    );
    node.check_clean("after teardown under the lock")
}

// ─── 5. no iptables binary ───────────────────────────────────────────────────────────────

/// PATH without iptables at start: with `-setupiptables` (the default) the agent cannot do its
/// job, says so in one error line naming iptables and exits 1 before touching the node. The
/// binary gone while running (its PATH entry removed): each sync's failure is counted under
/// `iptables` and logged, the rules already in place stay, pods are answered; with the binary
/// back, SIGTERM leaves nothing.
#[test]
fn iptables_missing_fails_at_start_and_is_counted_while_running() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let (topo, files) = (&node.topo, &node.files);
    let bin = topo.path("bin");
    std::fs::create_dir_all(&bin)?;
    let path = bin.display().to_string();

    let (status, log) = node
        .agent()
        .name("no-iptables")
        .env("PATH", &path)
        .run_to_exit()?;
    assert_eq!(status.code(), Some(1), "exit 1 expected:\n{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.len() == 1 && errors[0].contains("iptables"),
        "expected one error line naming iptables:\n{log}"
    );
    node.check_clean("after a start without iptables")?;
    assert!(!files.pidfile.exists(), "expected no CoreDNS started");

    // The machine's iptables through links in a PATH directory of the test's own.
    let tools = ["iptables", "iptables-save", "iptables-restore"];
    let link_tools = || -> Result<()> {
        for tool in tools {
            std::os::unix::fs::symlink(Path::new("/usr/sbin").join(tool), bin.join(tool))?;
        }
        Ok(())
    };
    link_tools()?;
    let mut agent = node
        .agent()
        .flags(&["-syncinterval", "1s"])
        .env("PATH", path)
        .spawn()?;
    agent.wait_rules()?;
    for tool in tools {
        std::fs::remove_file(bin.join(tool))?;
    }
    agent.wait_metric(
        &series::setup_errors(ErrorType::Iptables.label()),
        Duration::from_secs(5),
        |v| v >= 1.0,
        "≥ 1 once iptables is gone",
    )?;
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("iptables") && l.contains("No such file")),
        "expected an error line saying iptables cannot be run:\n{}",
        testbed::fixture::tail(&log)
    );
    assert_eq!(
        topo.node_cache_rule_lines()?.len(),
        24,
        "rules in place stay"
    );
    assert!(
        cluster_answered(&node, addrs::LINK_LOCAL) && cluster_answered(&node, addrs::KUBE_DNS_SVC),
        "expected the pod answered at both IPs without iptables"
    );
    agent.assert_running("iptables went missing")?;
    link_tools()?;
    agent.finish()
}

// ─── 6. health port or metrics port taken ────────────────────────────────────────────────

/// Port 8080 (CoreDNS's `health`) taken on the node: CoreDNS cannot start and is restarted
/// with back-off; the rules never go in (we never answered), so pods reach kube-dns through
/// kube-proxy at the kube-dns IP and get no answer at the link-local IP. Once the port is free
/// the next restart serves and the rules go in.
#[test]
fn health_port_taken_keeps_rules_out_until_it_is_free() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let topo = &node.topo;
    let taker = faults::listen_tcp_in(&topo.node, SocketAddr::from(([0, 0, 0, 0], 8080)))?;
    let mut agent = node.agent().spawn()?;
    agent.wait_metric(
        &series::restarts(RestartReason::Exited.label()),
        Duration::from_secs(10),
        |v| v >= 2.0,
        "≥ 2 while the health port is taken",
    )?;
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains(":8080") && l.contains("address already in use")),
        "expected CoreDNS's bind error in the log:\n{}",
        testbed::fixture::tail(&log)
    );
    assert_eq!(
        topo.node_cache_rule_lines()?.len(),
        0,
        "no rules before we answer"
    );
    assert!(
        topo.node_link_addresses(INTERFACE)?.is_some(),
        "the interface is up for CoreDNS to bind"
    );
    let dnat = topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC)?;
    assert!(cluster_answered(&node, addrs::KUBE_DNS_SVC), "kube-dns IP");
    assert!(
        topo.dnat_packets_from_pods(addrs::KUBE_DNS_SVC)? > dnat,
        "expected the kube-dns IP answered through kube-proxy's DNAT"
    );
    assert!(
        node.query(addrs::LINK_LOCAL, names::CLUSTER, "A", Transport::Udp)
            .is_err(),
        "expected no answer at the link-local IP"
    );
    agent.assert_running("CoreDNS could not start")?;

    drop(taker);
    agent
        .wait_rules()
        .with_context(|| format!("agent log:\n{}", agent.log_tail()))?;
    wait_until("the link-local IP to answer", DEADLINE, || {
        Ok(cluster_answered(&node, addrs::LINK_LOCAL))
    })?;
    agent.finish()
}

/// `-metrics-listen-address`'s port taken on the node. Upstream logs "Failed to start metrics
/// handler" and serves DNS without its metrics; a metrics port must not take a node's DNS
/// cache down. Expected: one error line naming the address, DNS served, rules in place,
/// SIGTERM leaves nothing.
#[test]
fn metrics_port_taken_is_logged_and_dns_still_served() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let topo = &node.topo;
    let _taker = faults::listen_tcp_in(&topo.node, SocketAddr::from(([0, 0, 0, 0], 9353)))?;
    let mut agent = node.agent().spawn()?;
    agent.wait_rules()?;
    assert!(
        cluster_answered(&node, addrs::LINK_LOCAL) && cluster_answered(&node, addrs::KUBE_DNS_SVC)
    );
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("9353")),
        "expected an error line naming the metrics address:\n{}",
        testbed::fixture::tail(&log)
    );
    agent.finish()
}

// ─── 7. the Corefile's directory read-only or full ───────────────────────────────────────

fn temp_files(dir: &Path) -> Result<Vec<String>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".tmp-"))
        .collect())
}

/// The rendered Corefile on a 64 KiB tmpfs in a mount namespace of the test's own. Read-only
/// at start: exit 1 naming the path, nothing left. Read-only, then full, under a running agent:
/// a ConfigMap change cannot be written; each try is counted under `configmap` and logged, no
/// temporary file is left, the last good Corefile serves. Writable again: the pending change
/// is applied at the next sync.
#[test]
fn corefile_directory_read_only_or_full() -> Result<()> {
    faults::in_private_mounts(|| {
        let mut node = Node::addon(NODE_CACHE)?;
        let out = node.topo.path("out");
        // Declared after the topology: unmounted before its scratch directory goes.
        let _tmpfs = faults::mount_tmpfs(&out, 64)?;
        node.files.conf = out.join("Corefile");
        let files = &node.files;

        faults::set_read_only(&out, true)?;
        let (status, log) = node.agent().name("start-read-only").run_to_exit()?;
        assert_eq!(status.code(), Some(1), "exit 1 expected:\n{log}");
        assert!(
            log.lines().any(|l| l.contains("ERROR")
                && l.contains(&files.conf.display().to_string())
                && l.contains("Read-only file system")),
            "expected an error line naming the Corefile and why:\n{log}"
        );
        node.check_clean("after a start with a read-only Corefile directory")?;
        faults::set_read_only(&out, false)?;

        let mut agent = node.agent().flags(&["-syncinterval", "1s"]).start()?;
        let good = read(&files.conf);
        let reloads = agent.metric(&series::reloads(ReloadResult::Ok.label()))?;
        faults::set_read_only(&out, true)?;
        // A change that would drop the stub domain.
        write_configmap_volume(&files.kube_dns, &[("stubDomains", "{}")])?;
        let mut counted = agent.wait_metric(
            &series::setup_errors(ErrorType::Configmap.label()),
            Duration::from_secs(5),
            |v| v >= 1.0,
            "counted with the Corefile's directory read-only",
        )?;
        for (what, why) in [
            ("read-only", "Read-only file system"),
            ("full", "No space left"),
        ] {
            if what == "full" {
                faults::set_read_only(&out, false)?;
                fill(&out)?;
                let before = counted;
                counted = agent.wait_metric(
                    &series::setup_errors(ErrorType::Configmap.label()),
                    Duration::from_secs(5),
                    |v| v > before,
                    "counted with the Corefile's directory full",
                )?;
            }
            let log = agent.log();
            assert!(
                log.lines().any(|l| l.contains("ERROR")
                    && l.contains(&format!("writing {}", files.conf.display()))
                    && l.contains(why)
                    && l.contains("keeping the last good Corefile")),
                "{what}: expected an error line with {why:?}:\n{}",
                testbed::fixture::tail(&log)
            );
            assert_eq!(read(&files.conf), good, "{what}: last good Corefile kept");
            assert_eq!(
                temp_files(&out)?,
                Vec::<String>::new(),
                "{what}: temp files"
            );
            assert!(
                stub_answered(&node, addrs::LINK_LOCAL),
                "{what}: expected the last good config's stub domain answered"
            );
        }
        assert_eq!(
            agent.metric(&series::reloads(ReloadResult::Ok.label()))?,
            reloads,
            "no reload while unwritable"
        );
        std::fs::remove_file(out.join("filler"))?;
        wait_until(
            "the pending change to be written",
            Duration::from_secs(5),
            || Ok(!read(&files.conf).contains("corp.internal:53")),
        )
        .with_context(|| format!("agent log:\n{}", agent.log_tail()))?;
        agent.wait_metric(
            &series::reloads(ReloadResult::Ok.label()),
            Duration::from_secs(5),
            |v| v > reloads,
            "up once the change is written",
        )?;
        wait_until("the stub domain to be gone", Duration::from_secs(5), || {
            Ok(!stub_answered(&node, addrs::LINK_LOCAL))
        })?;
        assert_eq!(temp_files(&out)?, Vec::<String>::new());
        agent.finish()
    })
}

/// Fills the filesystem holding `dir` with `dir/filler`.
fn fill(dir: &Path) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join("filler"))?;
    let chunk = vec![0u8; 4096];
    loop {
        match file.write_all(&chunk).and_then(|()| file.sync_all()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => return Ok(()),
            Err(e) => return Err(e).context("filling the tmpfs"),
        }
    }
}

// ─── 8. a thousand ConfigMap swaps ───────────────────────────────────────────────────────

/// 1000 kubelet-style swaps of the kube-dns ConfigMap in 10 s, in bursts of 50 (5 ms apart)
/// with 250 ms pauses so renders and reloads also happen mid-churn. No crash (the agent and
/// its CoreDNS run on), reloads bounded by the bursts, not the swaps, and the final state is
/// the last ConfigMap written: only it holds the stub domain.
#[test]
fn a_thousand_configmap_swaps_end_in_the_last_one() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let files = &node.files;
    write_configmap_volume(&files.kube_dns, &[("stubDomains", "{}")])?;
    let mut agent = node.agent().start()?;
    ensure!(
        !stub_answered(&node, addrs::LINK_LOCAL),
        "no stub domain at first"
    );
    let coredns = agent.coredns_pid()?;
    let reloads_before = agent.metric(&series::reloads(ReloadResult::Ok.label()))?;

    const SWAPS: u32 = 1000;
    const BURST: u32 = 50;
    let started = Instant::now();
    let mut due = started;
    for i in 0..SWAPS {
        let json = if i == SWAPS - 1 {
            addon_stub_domains()
        } else {
            format!(r#"{{"n{i}.test": ["{}"]}}"#, addrs::STUB_SERVER)
        };
        write_configmap_volume(&files.kube_dns, &[("stubDomains", &json)])?;
        // Pacing a load generator, not waiting for the agent.
        due += if (i + 1) % BURST == 0 {
            Duration::from_millis(250)
        } else {
            Duration::from_millis(5)
        };
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let took = started.elapsed();
    ensure!(took < Duration::from_secs(12), "the swaps took {took:?}");

    wait_until(
        "the last ConfigMap's stub domain to answer",
        Duration::from_secs(5),
        || Ok(stub_answered(&node, addrs::LINK_LOCAL)),
    )
    .with_context(|| format!("agent log:\n{}", agent.log_tail()))?;
    let conf = read(&files.conf);
    assert!(
        conf.contains("corp.internal:53") && !conf.contains(".test:53"),
        "expected exactly the last ConfigMap rendered:\n{conf}"
    );
    agent.assert_running("1000 swaps")?;
    assert_eq!(agent.coredns_pid()?, coredns, "CoreDNS was not restarted");
    assert!(alive(coredns));
    assert_eq!(
        agent.metric(&series::restarts(RestartReason::Exited.label()))?,
        0.0
    );
    assert_eq!(
        agent.metric(&series::reloads(ReloadResult::Failed.label()))?,
        0.0,
        "no failed reload"
    );
    let reloads = agent.wait_metric(
        &series::reloads(ReloadResult::Ok.label()),
        Duration::from_secs(5),
        |v| v > reloads_before,
        "up after the swaps",
    )? - reloads_before;
    eprintln!("figure: 1000 ConfigMap swaps in {took:?} → {reloads} reloads");
    assert!(
        reloads <= f64::from(SWAPS / BURST) * 3.0,
        "expected reloads bounded by the {} bursts, got {reloads}",
        SWAPS / BURST
    );
    assert!(cluster_answered(&node, addrs::KUBE_DNS_SVC));
    agent.finish()
}

// ─── 9. CoreDNS OOM-killed ───────────────────────────────────────────────────────────────

/// CoreDNS moved into a memory cgroup (v1 here) of the test's own with a 4 MiB limit and
/// driven by a flood of unique names until the kernel's OOM killer takes it. The agent counts
/// the exit, restarts CoreDNS (outside that cgroup), the pod is answered again and the rules
/// stayed. Where the machine allows no such cgroup, a SIGKILL stands in (noted).
#[test]
fn coredns_oom_killed_is_restarted_and_answers_again() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let topo = &node.topo;
    let mut agent = node.agent().start()?;
    let old = agent.coredns_pid()?;
    match faults::MemoryCgroup::create(&format!("{}-oom", topo.tag)) {
        Ok(cgroup) => {
            cgroup.set_limit_bytes(4 << 20)?;
            cgroup.add(old)?;
            let socket = udp_socket_in(&topo.pod)?;
            let server: SocketAddr = format!("{}:53", addrs::LINK_LOCAL).parse()?;
            let mut n: u32 = 0;
            wait_until(
                "the kernel to OOM-kill CoreDNS",
                Duration::from_secs(15),
                || {
                    for _ in 0..200 {
                        n += 1;
                        let name = format!("q{n}.oom.{}", names::EXTERNAL);
                        let _ = socket.send_to(&encode_query(n as u16, &name)?, server);
                    }
                    Ok(cgroup.oom_kills()? >= 1 && !alive(old))
                },
            )
            .with_context(|| format!("agent log:\n{}", agent.log_tail()))?;
            eprintln!("note: CoreDNS OOM-killed after {n} queries under a 4 MiB memory cgroup");
        }
        Err(e) => {
            eprintln!("note: no memory cgroup here ({e:#}); SIGKILL stands in for the OOM kill");
            process::send(old, Signal::SIGKILL)?;
        }
    }
    let killed = Instant::now();
    // Short per-query timeouts (dig's minimum is 1 s) so the figure is the agent's.
    wait_until("a new CoreDNS to answer", DEADLINE, || {
        Ok(
            node.a(addrs::LINK_LOCAL, names::CLUSTER) == [names::CLUSTER_IP]
                && agent.coredns_pid().is_ok_and(|p| p != old),
        )
    })
    .with_context(|| format!("agent log:\n{}", agent.log_tail()))?;
    eprintln!(
        "figure: CoreDNS OOM kill → answering again = {} ms",
        killed.elapsed().as_millis()
    );
    assert!(cluster_answered(&node, addrs::KUBE_DNS_SVC));
    agent.wait_metric(
        &series::restarts(RestartReason::Exited.label()),
        Duration::from_secs(5),
        |v| v >= 1.0,
        "≥ 1 after the OOM kill",
    )?;
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("CoreDNS exited") && l.contains("SIGKILL")),
        "expected the kill logged:\n{}",
        testbed::fixture::tail(&log)
    );
    assert_eq!(topo.node_cache_rule_lines()?.len(), 24, "rules stayed");
    agent.assert_running("CoreDNS was OOM-killed")?;
    agent.finish()
}

// ─── 10a. SIGTERM during start-up ────────────────────────────────────────────────────────

/// SIGTERM before the rules are in place: deterministically (CoreDNS cannot start, the health
/// port being taken) and at the earliest moment a test can see (the interface just made).
/// Either way: exit 0, no interface, no rules, no CoreDNS left.
#[test]
fn sigterm_during_startup_exits_0_and_leaves_nothing() -> Result<()> {
    let node = Node::addon(NODE_CACHE)?;
    let topo = &node.topo;
    let coredns_children = |agent: &AgentRun| -> Vec<u32> {
        process::children_of(agent.pid())
            .into_iter()
            .filter(|(_, comm)| comm == "coredns")
            .map(|(pid, _)| pid)
            .collect()
    };

    // CoreDNS unable to start: the agent is still starting when the signal comes.
    let taker = faults::listen_tcp_in(&topo.node, SocketAddr::from(([0, 0, 0, 0], 8080)))?;
    let mut agent = node.agent().spawn()?;
    agent.wait_metric(
        &series::restarts(RestartReason::Exited.label()),
        Duration::from_secs(10),
        |v| v >= 1.0,
        "≥ 1 (CoreDNS failing to start)",
    )?;
    ensure!(
        topo.node_link_addresses(INTERFACE)?.is_some(),
        "interface made"
    );
    ensure!(topo.node_cache_rule_lines()?.is_empty(), "no rules yet");
    let mut seen_children: Vec<u32> = coredns_children(&agent);
    agent.signal(Signal::SIGTERM)?;
    let status = agent.wait_exit()?;
    assert!(
        status.success(),
        "exit 0 expected, got {status}:\n{}",
        agent.log()
    );
    node.check_clean("after SIGTERM during start-up")?;
    drop(taker);

    // As early as the interface appears.
    let mut agent = node.agent().spawn()?;
    wait_until("the interface", DEADLINE, || {
        Ok(topo.node_link_addresses(INTERFACE)?.is_some() || agent.try_status()?.is_some())
    })?;
    let rules_at_signal = topo.node_cache_rule_lines()?.len();
    seen_children.extend(coredns_children(&agent));
    agent.signal(Signal::SIGTERM)?;
    let status = agent.wait_exit()?;
    eprintln!("note: early SIGTERM came with {rules_at_signal} rules in place");
    assert!(
        status.success(),
        "exit 0 expected, got {status}:\n{}",
        agent.log()
    );
    node.check_clean("after an early SIGTERM")?;
    for pid in seen_children {
        assert!(!alive(pid), "CoreDNS {pid} left running");
    }
    assert!(
        node.query(addrs::LINK_LOCAL, names::CLUSTER, "A", Transport::Udp)
            .is_err(),
        "nothing answers at the link-local IP any more"
    );
    assert!(
        cluster_answered(&node, addrs::KUBE_DNS_SVC),
        "kube-dns through kube-proxy"
    );
    Ok(())
}
