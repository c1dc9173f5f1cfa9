//! The `reload` plugin comes out of the rendered Corefile: node-cache signals CoreDNS
//! (SIGUSR1) after every change it writes, and the plugin's own poll firing at the same time as
//! the signal can crash CoreDNS (coredns/coredns#6263). With the agent reloading on every
//! change the plugin adds nothing but that race.

/// Drops every line whose directive is `reload` (with or without arguments); notes it once.
pub fn remove_reload_plugin(text: &str, notes: &mut Vec<String>) -> String {
    let mut removed = 0;
    let kept: Vec<&str> = text
        .split_inclusive('\n')
        .filter(|line| {
            let is_reload = line.split_whitespace().next() == Some("reload");
            removed += usize::from(is_reload);
            !is_reload
        })
        .collect();
    if removed > 0 {
        notes.push(format!(
            "template: removed {removed} `reload` directive(s); node-cache reloads CoreDNS with SIGUSR1 after each change"
        ));
    }
    kept.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_lines_go_other_lines_stay() {
        let mut notes = Vec::new();
        let out = remove_reload_plugin(
            ".:53 {\n    errors\n    reload\n    reload 10s 2s\n    reloaded-plugin\n}\n",
            &mut notes,
        );
        assert_eq!(out, ".:53 {\n    errors\n    reloaded-plugin\n}\n");
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("removed 2"), "{notes:?}");
    }

    #[test]
    fn nothing_to_remove_no_note() {
        let mut notes = Vec::new();
        assert_eq!(
            remove_reload_plugin(".:53 {\n}\n", &mut notes),
            ".:53 {\n}\n"
        );
        assert!(notes.is_empty());
    }
}
