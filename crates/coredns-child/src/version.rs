//! The child's own version string, for `-version`, and its plugins, for checking templates.

use std::io;
use std::path::Path;
use std::process::Command;

/// Runs `coredns -version` and returns its first line (e.g. `CoreDNS-1.14.7`).
pub fn coredns_version(binary: &Path) -> io::Result<String> {
    let out = Command::new(binary)
        .arg("-version")
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", binary.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .ok_or_else(|| {
            io::Error::other(format!(
                "{} -version printed nothing ({})",
                binary.display(),
                out.status
            ))
        })
}

/// Runs `coredns -plugins` and reads the plugins this binary has compiled in.
pub fn coredns_plugins(binary: &Path) -> io::Result<corefile::PluginSet> {
    let out = Command::new(binary)
        .arg("-plugins")
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", binary.display())))?;
    let plugins = corefile::PluginSet::from_listing(&String::from_utf8_lossy(&out.stdout));
    if !out.status.success() || plugins.is_empty() {
        return Err(io::Error::other(format!(
            "{} -plugins listed no plugins ({})",
            binary.display(),
            out.status
        )));
    }
    Ok(plugins)
}
