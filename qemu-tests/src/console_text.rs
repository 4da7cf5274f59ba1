//! Reading what the serial console said: telling log lines (the hypervisor's and a
//! Linux guest's, `[   12.345678] message`) from command output, and matching one line
//! against a [`Pattern`]. Shared by every test that drives the shell.

use crate::pattern::Pattern;

/// A log line: `[   12.345678] message`.
pub fn is_log_line(line: &str) -> bool {
    Pattern::regex(r"^\[\s*\d+\.\d+\] ").is_match(line)
}

/// The non-empty, trimmed lines of `text` that are not log lines.
pub fn output_lines(text: &str) -> Vec<&str> {
    text.lines().map(str::trim).filter(|line| !line.is_empty() && !is_log_line(line)).collect()
}

/// Whether `line` (one line, no newline) matches `pattern` (which may end in `$`: the
/// harness's `$` only matches before a newline, so one is added).
pub fn line_matches(pattern: &Pattern, line: &str) -> bool {
    pattern.is_match(&format!("{line}\n"))
}

/// `text` with the pattern language's metacharacters escaped.
pub fn regex_escape(text: &str) -> String {
    let mut escaped = String::new();
    for character in text.chars() {
        if "\\.[]()*+?^$|".contains(character) {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_and_output() {
        let text = "[   12.345678] domain 1 (linux) created\n  hello  \n\n[0.5] x\nworld\n";
        assert_eq!(output_lines(text), ["hello", "world"]);
        assert!(is_log_line("[    0.000000] Linux version"));
        assert!(!is_log_line("linux# [1] done"));
    }

    #[test]
    fn escaping_and_line_matching() {
        let escaped = regex_escape("domain 3 (linux) shut down: poweroff.");
        assert!(Pattern::regex(&escaped).is_match("domain 3 (linux) shut down: poweroff."));
        assert!(!Pattern::regex(&escaped).is_match("domain 3 xlinux) shut down: poweroff."));
        assert!(line_matches(&Pattern::regex("^xen$"), "xen"));
        assert!(!line_matches(&Pattern::regex("^xen$"), "xen2"));
    }
}
