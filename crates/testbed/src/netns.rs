//! A named network namespace (`ip netns`), deleted on drop with everything in it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::run;

pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace and brings its loopback up.
    pub fn create(name: &str) -> Result<Self> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Self { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec <ns> program`: the program sees this namespace's network and, through
    /// `ip`'s bind mounts, `/etc/netns/<ns>/*` over `/etc/*` (its own resolv.conf).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `program args` in the namespace; returns stdout, fails on a non-zero exit.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        run(self.command(program).args(args))
    }

    /// `ip -n <ns> args...`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    pub fn sysctl(&self, key_value: &str) -> Result<()> {
        self.exec("sysctl", &["-q", "-w", key_value]).map(|_| ())
    }

    /// The directory `ip netns exec` overlays on `/etc`.
    pub fn etc_dir(&self) -> PathBuf {
        PathBuf::from("/etc/netns").join(&self.name)
    }

    /// Writes `/etc/netns/<ns>/resolv.conf`, which processes started with [`Netns::command`] see
    /// as `/etc/resolv.conf`.
    pub fn set_resolv_conf(&self, nameserver: &str) -> Result<()> {
        std::fs::create_dir_all(self.etc_dir())?;
        std::fs::write(
            self.etc_dir().join("resolv.conf"),
            format!("nameserver {nameserver}\n"),
        )?;
        Ok(())
    }

    /// `iptables-save` of one table in this namespace.
    pub fn iptables_save(&self, table: &str) -> Result<String> {
        self.exec("iptables-save", &["-t", table])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}
