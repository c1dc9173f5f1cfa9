//! Which plugins a Corefile names, and whether the CoreDNS at hand has them.
//!
//! node-cache's CoreDNS has only the plugins of `images/node-cache/coredns-plugins.txt`
//! compiled in. A template naming another one would make CoreDNS exit at start ("Unknown
//! directive") or refuse every reload; we would rather say so ourselves, with the template's
//! line, before CoreDNS is started or the Corefile it serves is replaced.
//!
//! The reading follows the Caddyfile grammar CoreDNS parses: tokens split on white space, `"`
//! quoting (with `\"`), `#` comments to the end of the line; a server block is its keys (a
//! trailing comma continues them on the next line) then `{ … }`, or, braceless, the rest of
//! the file; each line in it starts a directive whose own `{ … }` holds its options. Snippets
//! `(name) { … }` count as server blocks, since they are pasted into one. Anything the reading
//! cannot place is left to CoreDNS's own parser: the check only refuses a name it is sure is a
//! directive.

use std::collections::BTreeSet;

/// The plugins one CoreDNS binary has, as `coredns -plugins` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSet(BTreeSet<String>);

impl PluginSet {
    /// From the output of `coredns -plugins`: one name a line. Older CoreDNS releases printed
    /// `dns.NAME` under section headings; both forms are read.
    pub fn from_listing(text: &str) -> Self {
        Self(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.ends_with(':'))
                .map(|line| line.strip_prefix("dns.").unwrap_or(line).to_owned())
                .collect(),
        )
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// A directive of a server block: the plugin it names and the line (1-based) it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub line: usize,
}

/// A template line naming a plugin the CoreDNS binary does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "line {line}: plugin {name:?} is not in this CoreDNS build (see -plugins): {:?}",
    .text.trim()
)]
pub struct UnknownPlugin {
    pub name: String,
    pub line: usize,
    /// The template's line, as written.
    pub text: String,
}

/// Directives CoreDNS's parser handles itself rather than a plugin.
const BUILT_IN: [&str; 1] = ["import"];

/// The first directive of `corefile` that `available` lacks, if any.
pub fn check_plugins(corefile: &str, available: &PluginSet) -> Result<(), UnknownPlugin> {
    match directives(corefile)
        .into_iter()
        .find(|d| !available.contains(&d.name) && !BUILT_IN.contains(&d.name.as_str()))
    {
        None => Ok(()),
        Some(d) => Err(UnknownPlugin {
            text: corefile
                .lines()
                .nth(d.line - 1)
                .unwrap_or_default()
                .to_owned(),
            name: d.name,
            line: d.line,
        }),
    }
}

/// Every directive of every server block and snippet, in file order. A name that comes from
/// the environment (`{$VAR}`) is unknown until CoreDNS reads it, and left out.
pub fn directives(corefile: &str) -> Vec<Directive> {
    let tokens = tokens(corefile);
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        i = server_block(&tokens, i, &mut found);
    }
    found
}

#[derive(Debug)]
struct Token {
    text: String,
    line: usize,
    /// Line breaks inside the token (a quoted value may span lines).
    breaks: usize,
}

fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => while chars.next_if(|&c| c != '\n').is_some() {},
            '"' => {
                let start = line;
                let mut value = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' if chars.peek() == Some(&'"') => {
                            value.push('"');
                            chars.next();
                        }
                        c => {
                            line += usize::from(c == '\n');
                            value.push(c);
                        }
                    }
                }
                out.push(Token {
                    breaks: line - start,
                    text: value,
                    line: start,
                });
            }
            c => {
                let mut value = String::from(c);
                // A `#` ends the token and starts a comment, even mid-token.
                while let Some(c) = chars.next_if(|&c| !c.is_whitespace() && c != '#') {
                    value.push(c);
                }
                out.push(Token {
                    text: value,
                    line,
                    breaks: 0,
                });
            }
        }
    }
    out
}

/// Whether token `i` is the first on its line.
fn starts_line(tokens: &[Token], i: usize) -> bool {
    i == 0 || tokens[i - 1].line + tokens[i - 1].breaks < tokens[i].line
}

/// Reads one server block (or snippet) from token `i`, its directives into `found`; returns
/// where the next block starts.
fn server_block(tokens: &[Token], mut i: usize, found: &mut Vec<Directive>) -> usize {
    // The keys: to the end of their line, or further while one ends with a comma.
    loop {
        let text = tokens[i].text.as_str();
        if text == "{" {
            break;
        }
        if text == "import" && starts_line(tokens, i) {
            i = end_of_line(tokens, i);
        } else {
            i += 1;
        }
        if i >= tokens.len() {
            return i;
        }
        if !text.ends_with(',') && starts_line(tokens, i) {
            break;
        }
    }
    if tokens[i].text == "{" {
        i += 1;
    }
    // The directives, to the closing brace (or, braceless, the end of the file).
    while i < tokens.len() {
        let text = tokens[i].text.as_str();
        if text == "}" {
            return i + 1;
        }
        if !text.starts_with("{$") && !text.starts_with("{%") {
            found.push(Directive {
                name: text.to_owned(),
                line: tokens[i].line,
            });
        }
        i = directive_end(tokens, i);
    }
    i
}

/// The token after `i`'s line.
fn end_of_line(tokens: &[Token], mut i: usize) -> usize {
    i += 1;
    while i < tokens.len() && !starts_line(tokens, i) {
        i += 1;
    }
    i
}

/// The token after the directive at `i`: its arguments and its `{ … }` options, nested or not.
fn directive_end(tokens: &[Token], mut i: usize) -> usize {
    let mut depth = 0usize;
    i += 1;
    while i < tokens.len() {
        match tokens[i].text.as_str() {
            "{" => depth += 1,
            "}" if depth == 0 => return i,
            "}" => depth -= 1,
            _ if depth == 0 && starts_line(tokens, i) => return i,
            _ => {}
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(corefile: &str) -> Vec<(String, usize)> {
        directives(corefile)
            .into_iter()
            .map(|d| (d.name, d.line))
            .collect()
    }

    fn owned(list: &[(&str, usize)]) -> Vec<(String, usize)> {
        list.iter().map(|(n, l)| (n.to_string(), *l)).collect()
    }

    #[test]
    fn directives_of_blocks_not_their_options() {
        let corefile = "\
# comment
cluster.local:53 {
    errors
    cache {
            success 9984 30
            denial 9984 5
    }
    forward . 10.0.0.10 {
            force_tcp
    }
    prometheus :9253 # metrics
}
.:53 {
    template ANY AAAA {
        rcode NOERROR
    }
}
";
        assert_eq!(
            names(corefile),
            owned(&[
                ("errors", 3),
                ("cache", 4),
                ("forward", 8),
                ("prometheus", 11),
                ("template", 14),
            ])
        );
    }

    #[test]
    fn key_forms_braceless_block_and_brace_on_its_own_line() {
        assert_eq!(
            names("a.local:53,\n  b.local:53 {\n  log\n}\n"),
            owned(&[("log", 3)])
        );
        assert_eq!(names(".:53\n{\n  whoami\n}\n"), owned(&[("whoami", 3)]));
        assert_eq!(
            names(".:53\nerrors\nforward . 1.1.1.1\n"),
            owned(&[("errors", 2), ("forward", 3)])
        );
        assert_eq!(names("{\n  errors\n}\n"), owned(&[("errors", 2)]));
    }

    #[test]
    fn quotes_comments_env_snippets_and_one_line_blocks() {
        let corefile = "\
(common) {
    errors
}
.:53 {
    import common
    template IN A x {
        answer \"{{ .Name }} 60 IN A \\\"1.2.3.4\\\"
and more\"
    }
    {$EXTRA}
    log#comment
    hosts { 1.2.3.4 a.example }
    whoami
}
";
        assert_eq!(
            names(corefile),
            owned(&[
                ("errors", 2),
                ("import", 5),
                ("template", 6),
                ("log", 11),
                ("hosts", 12),
                ("whoami", 13),
            ])
        );
    }

    #[test]
    fn unbalanced_text_is_left_to_coredns() {
        // A stray brace or a missing one must not make us invent directives from options.
        assert_eq!(
            names(".:53 {\n  cache {\n    success 1\n"),
            owned(&[("cache", 2)])
        );
        assert_eq!(names(".:53 {\n  }\n}\n"), owned(&[]));
        assert_eq!(names(""), owned(&[]));
    }

    #[test]
    fn listing_of_either_form_is_read() {
        let new = PluginSet::from_listing("bind\ncache\nprometheus\n\n");
        let old = PluginSet::from_listing(
            "Server types:\n  dns\n\nCaddyfile loaders:\n  flag\n\nOther plugins:\n  dns.bind\n  dns.cache\n  dns.prometheus\n",
        );
        for set in [&new, &old] {
            assert!(set.contains("bind") && set.contains("prometheus"));
            assert!(!set.contains("kubernetes"));
        }
    }

    #[test]
    fn the_first_unknown_plugin_is_named_with_its_line() {
        let available = PluginSet::from_listing("errors\nforward\n");
        let corefile = ".:53 {\n    errors\n    kubernetes cluster.local {\n      pods insecure\n    }\n    etcd\n}\n";
        let e = check_plugins(corefile, &available).unwrap_err();
        assert_eq!((e.name.as_str(), e.line), ("kubernetes", 3));
        assert_eq!(
            e.to_string(),
            "line 3: plugin \"kubernetes\" is not in this CoreDNS build (see -plugins): \"kubernetes cluster.local {\""
        );
        assert!(check_plugins(".:53 {\n  import x\n  errors\n}\n", &available).is_ok());
    }
}
