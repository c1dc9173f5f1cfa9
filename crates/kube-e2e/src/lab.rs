//! The running lab, as the cases see it: kubectl through the lab's wrapper, commands in the
//! node's network namespace, the node's rules and links, and pods' processes seen from the host.

use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

pub const LOCAL_IP: &str = "169.254.20.10";
pub const KUBE_DNS_IP: &str = "10.96.0.10";
pub const NS: &str = "e2e";
pub const SYSTEM: &str = "kube-system";
/// The comment upstream's (and node-cache's) iptables rules carry.
pub const RULE_COMMENT: &str = "NodeLocal DNS Cache";
pub const KUBERNETES_NAME: &str = "kubernetes.default.svc.cluster.local";
pub const KUBERNETES_IP: &str = "10.96.0.1";
pub const EXTERNAL_NAME: &str = "www.example.com";
pub const EXTERNAL_IP: &str = "192.0.2.80";

#[derive(Clone)]
pub struct Lab {
    pub root: PathBuf,
    pub state: PathBuf,
    pub netns: String,
    pub image: String,
    /// Where a failed case leaves its logs (outside the state folder kube-down removes).
    pub logs: PathBuf,
}

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| {
        format!("{name} is not set: run the cases through make kube-e2e (hack/kube-lab/e2e.sh)")
    })
}

/// Runs a command to completion; a non-zero exit is an error carrying the command and stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn output(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {}", describe(cmd)))
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    if s.len() > 200 {
        s.truncate(200);
        s.push_str("...");
    }
    s
}

/// Polls `check` until it returns Some, or fails after `limit` naming `what`.
pub fn wait_for<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    let mut last_err = None;
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            match last_err {
                Some(e) => bail!("no {what} within {limit:?} (last error: {e:#})"),
                None => bail!("no {what} within {limit:?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A pod as the cases care about it.
#[derive(Clone, Debug)]
pub struct Pod {
    pub name: String,
    pub uid: String,
    pub ready: bool,
    pub restarts: u64,
    pub deleting: bool,
}

impl Pod {
    pub fn from_json(p: &Value) -> Pod {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let ready = p["status"]["conditions"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .unwrap_or(false);
        let restarts = p["status"]["containerStatuses"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| c["restartCount"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0);
        Pod {
            name: s(&p["metadata"]["name"]),
            uid: s(&p["metadata"]["uid"]),
            ready,
            restarts,
            deleting: !p["metadata"]["deletionTimestamp"].is_null(),
        }
    }
}

impl Lab {
    pub fn from_env() -> Result<Lab> {
        let root = PathBuf::from(env("KUBE_LAB_ROOT")?);
        let logs = root.join(".cache/kube-lab/e2e-logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        Ok(Lab {
            state: PathBuf::from(env("KUBE_LAB_STATE")?),
            netns: env("KUBE_LAB_NETNS")?,
            image: env("KUBE_LAB_NODE_CACHE_IMAGE")?,
            root,
            logs,
        })
    }

    pub fn wrapper_dir(&self) -> PathBuf {
        self.root.join("hack/kube-lab")
    }

    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.wrapper_dir().join("kubectl"));
        c.args(args);
        c
    }

    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        run(&mut self.kubectl_cmd(args))
    }

    /// kubectl with `input` on its stdin (apply -f -).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<String> {
        let mut cmd = self.kubectl_cmd(args);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", describe(&cmd)))?;
        child
            .stdin
            .take()
            .context("kubectl's stdin")?
            .write_all(input.as_bytes())?;
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "{} failed: {}",
            describe(&cmd),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.kubectl(&all)?;
        serde_json::from_str(&text).with_context(|| format!("kubectl {args:?} printed no JSON"))
    }

    /// A project script with the lab's kubectl first on PATH, as an operator would run it.
    pub fn script(&self, script: &str, args: &[&str]) -> Result<Output> {
        let path = format!(
            "{}:{}",
            self.wrapper_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(self.root.join(script));
        cmd.args(args).env("PATH", path).current_dir(&self.root);
        output(&mut cmd)
    }

    /// `program` to run in the node's network namespace (as a hostNetwork pod sees the node,
    /// and where the API server listens); the caller adds its arguments.
    pub fn node_cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(program);
        c
    }

    /// A command in the node's network namespace.
    pub fn node(&self, cmd: &[&str]) -> Result<String> {
        run(self.node_cmd(cmd[0]).args(&cmd[1..]))
    }

    pub fn node_ok(&self, cmd: &[&str]) -> Result<bool> {
        Ok(output(self.node_cmd(cmd[0]).args(&cmd[1..]))?
            .status
            .success())
    }

    /// A command inside the node's network and mount namespaces (the lab's own /run and
    /// processes), through the process that anchors them.
    pub fn inside(&self, cmd: &[&str]) -> Result<String> {
        let inner = std::fs::read_to_string(self.state.join("inner.pid"))
            .context("reading the lab's inner.pid")?;
        let mut c = Command::new("nsenter");
        c.args(["--target", inner.trim(), "--mount", "--net", "--"])
            .args(cmd);
        run(&mut c)
    }

    /// `kubectl exec` in one of the e2e pods.
    pub fn exec(&self, pod: &str, cmd: &[&str]) -> Result<String> {
        let mut args = vec!["-n", NS, "exec", pod, "--"];
        args.extend(cmd);
        self.kubectl(&args)
    }

    /// One A query from a pod with dnsload: (RCODE, A records).
    pub fn query(&self, pod: &str, server: &str, name: &str) -> Result<(String, Vec<String>)> {
        let out = self.exec(pod, &["dnsload", "query", server, name, "2000"])?;
        let mut words = out.split_whitespace().map(String::from);
        let rcode = words.next().context("dnsload query printed nothing")?;
        Ok((rcode, words.collect()))
    }

    /// Fails unless `pod` gets `want` for `name` from `server`.
    pub fn expect_answer(&self, pod: &str, server: &str, name: &str, want: &str) -> Result<()> {
        let (rcode, a) = self.query(pod, server, name)?;
        ensure!(
            rcode == "NOERROR" && a.iter().any(|x| x == want),
            "pod {pod} asked {server} for {name}: {rcode} {a:?}, wanted {want}"
        );
        Ok(())
    }

    /// Lines of iptables-save and ip6tables-save (every table) that are node-cache's rules.
    pub fn rules(&self) -> Result<usize> {
        let mut n = 0;
        for cmd in ["iptables-save", "ip6tables-save"] {
            n += self
                .node(&[cmd])?
                .lines()
                .filter(|l| l.starts_with("-A") && l.contains(RULE_COMMENT))
                .count();
        }
        Ok(n)
    }

    pub fn nft_table(&self) -> Result<bool> {
        self.node_ok(&["nft", "list", "table", "inet", "node-local-dns"])
    }

    /// The interface index of every link called `name` in the node (none, one, or a bug).
    pub fn links(&self, name: &str) -> Result<Vec<u32>> {
        Ok(self
            .node(&["ip", "-o", "link", "show"])?
            .lines()
            .filter_map(|l| {
                let mut f = l.split(": ");
                let index = f.next()?.trim().parse().ok()?;
                let link = f.next()?.split('@').next()?;
                (link == name).then_some(index)
            })
            .collect())
    }

    /// Packets kube-proxy's iptables rules matched for UDP to `ip`:53 (its Service DNAT path).
    pub fn dnat_packets(&self, ip: &str) -> Result<u64> {
        let dst = format!("-d {ip}/32");
        Ok(self
            .node(&["iptables-save", "-c", "-t", "nat"])?
            .lines()
            .filter(|l| l.contains("-A KUBE-SERVICES") && l.contains(&dst) && l.contains("-p udp"))
            .filter_map(|l| l.strip_prefix('[')?.split(':').next()?.parse::<u64>().ok())
            .sum())
    }

    /// The sum of CoreDNS's `coredns_dns_requests_total` at a metrics address in the node.
    pub fn coredns_requests(&self, addr: &str) -> Result<f64> {
        let text = self.node(&[
            "curl",
            "-sf",
            "--max-time",
            "3",
            &format!("http://{addr}/metrics"),
        ])?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("coredns_dns_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    pub fn pods(&self, namespace: &str, selector: &str) -> Result<Vec<Pod>> {
        let v = self.json(&["-n", namespace, "get", "pods", "-l", selector])?;
        Ok(v["items"]
            .as_array()
            .map(|items| items.iter().map(Pod::from_json).collect())
            .unwrap_or_default())
    }

    /// The one live pod of a DaemonSet on the node (none or two is an error).
    pub fn only_pod(&self, selector: &str) -> Result<Pod> {
        let live: Vec<Pod> = self
            .pods(SYSTEM, selector)?
            .into_iter()
            .filter(|p| !p.deleting)
            .collect();
        ensure!(
            live.len() == 1,
            "{} live pods for {selector}, wanted 1",
            live.len()
        );
        Ok(live.into_iter().next().unwrap())
    }

    /// Waits for a DaemonSet's rollout (every pod updated and Ready).
    pub fn rollout_status(&self, kind_name: &str, limit: Duration) -> Result<()> {
        self.kubectl(&[
            "-n",
            SYSTEM,
            "rollout",
            "status",
            kind_name,
            &format!("--timeout={}s", limit.as_secs()),
        ])
        .map(|_| ())
    }

    /// The logs of every node-cache container on the node, current and previous, for a failure
    /// report: written to a file, and the last lines returned.
    pub fn dump(&self, case: &str) -> String {
        let mut text = String::new();
        let mut add = |title: &str, r: Result<String>| {
            text.push_str(&format!("==== {title}\n"));
            match r {
                Ok(s) => text.push_str(&s),
                Err(e) => text.push_str(&format!("({e:#})\n")),
            }
        };
        add("pods", self.kubectl(&["get", "pods", "-A", "-o", "wide"]));
        add(
            "events",
            self.kubectl(&["-n", SYSTEM, "get", "events", "--sort-by=.lastTimestamp"]),
        );
        let mut tail = String::new();
        for (sel, prev) in [
            ("k8s-app=node-local-dns", false),
            ("k8s-app=node-local-dns", true),
            ("k8s-app=node-local-dns-b", false),
        ] {
            let mut args = vec![
                "-n",
                SYSTEM,
                "logs",
                "-l",
                sel,
                "--prefix",
                "--tail=60",
                "--timestamps",
            ];
            if prev {
                args.push("--previous");
            }
            let r = self.kubectl(&args);
            if let Ok(s) = &r {
                if !prev && sel == "k8s-app=node-local-dns" {
                    let lines: Vec<&str> = s.lines().collect();
                    tail = lines[lines.len().saturating_sub(12)..].join("\n");
                }
            }
            add(&format!("logs {sel} previous={prev}"), r);
        }
        add("node rules", self.node(&["iptables-save"]));
        add("node links", self.node(&["ip", "-br", "addr"]));
        let file = self.logs.join(format!("{case}.log"));
        let _ = File::create(&file).and_then(|mut f| f.write_all(text.as_bytes()));
        format!("(logs: {})\n{tail}", file.display())
    }
}

/// Host PIDs of a pod's processes, found by the pod's UID in their cgroup path, with their names.
pub fn pod_processes(uid: &str) -> Result<Vec<(i32, String)>> {
    let dashed = format!("pod{uid}");
    let underscored = format!("pod{}", uid.replace('-', "_"));
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let entry = entry?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cgroup) = std::fs::read_to_string(entry.path().join("cgroup")) else {
            continue;
        };
        if cgroup.contains(&dashed) || cgroup.contains(&underscored) {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.push((pid, comm.trim().to_string()));
        }
    }
    Ok(found)
}

pub fn pids_named(uid: &str, comm: &str) -> Result<Vec<i32>> {
    Ok(pod_processes(uid)?
        .into_iter()
        .filter(|(_, c)| c == comm)
        .map(|(p, _)| p)
        .collect())
}

impl Lab {
    /// PIDs of the processes holding a UDP socket bound to `ip`:53 in the node.
    pub fn udp53_owners(&self, ip: &str) -> Result<Vec<i32>> {
        let local = format!("{ip}:53");
        let out = self.node(&["ss", "-H", "-u", "-l", "-n", "-p"])?;
        let mut pids = Vec::new();
        for line in out
            .lines()
            .filter(|l| l.split_whitespace().any(|w| w == local))
        {
            for part in line.split("pid=").skip(1) {
                if let Ok(p) = part.split(',').next().unwrap_or_default().parse() {
                    pids.push(p);
                }
            }
        }
        Ok(pids)
    }

    /// A UDP socket in the node's network namespace: the driver's own client, for timing how
    /// fast the node answers again with a finer grain than a pod exec allows.
    pub fn node_socket(&self) -> Result<UdpSocket> {
        let path = format!("/run/netns/{}", self.netns);
        std::thread::spawn(move || -> Result<UdpSocket> {
            let f = File::open(&path).with_context(|| format!("opening {path}"))?;
            // SAFETY: setns on this thread only, with a valid namespace descriptor; the thread
            // ends right after making the socket.
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            ensure!(
                rc == 0,
                "setns({path}): {}",
                std::io::Error::last_os_error()
            );
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("binding a UDP socket in the node")
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread entering {} panicked", self.netns))?
    }
}

pub fn dns_addr(ip: &str) -> SocketAddr {
    SocketAddr::from((ip.parse::<Ipv4Addr>().expect("a literal IPv4 address"), 53))
}

pub fn kill(pid: i32, what: &str) -> Result<()> {
    // SAFETY: kill(2) with a PID read from /proc just before; no memory is involved.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    ensure!(
        rc == 0,
        "SIGKILL to {what} (pid {pid}): {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
