//! The hypervisor command line: parses the options GRUB passes into [`BootOptions`].
//!
//! Why: the user of an appliance cannot fix a typo from a serial console that does not come
//! up, so parsing never fails: every bad or unknown option becomes a [`CmdlineWarning`]
//! (printed once the log is up) and the option keeps its default.
//!
//! Syntax (a subset of Xen's, docs/misc/xen-command-line.pandoc): whitespace-separated
//! tokens, each `key` or `key=value`. A first token that starts with `/` is the kernel path
//! GRUB's `multiboot2 /boot/basalt.elf ...` puts there and is ignored. Later options
//! override earlier ones.
//!
//! | option                     | values                                               |
//! |----------------------------|------------------------------------------------------|
//! | `console=`                 | `com1` (or `serial`), `vga`, `both`                  |
//! | `com1=`                    | `BAUD` or `BAUD,8n1`; BAUD a standard rate 1200..=115200 |
//! | `loglvl=`                  | a level name, see [`Level::parse`]                   |
//! | `maxcpus=`                 | 1..=4096                                             |
//! | `verbose`                  | verbose output; log level `debug` unless `loglvl=` given |

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::console::logring::Level;

/// Where the hypervisor console goes.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum ConsoleSelection {
    Com1,
    Vga,
    Both,
}

/// Everything the command line controls, with the documented defaults.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BootOptions {
    pub console: ConsoleSelection,
    /// Baud rate of the COM1 UART.
    pub com1_baud: u32,
    /// Least severe level that is printed on the consoles.
    pub log_level: Level,
    /// Upper bound on the CPUs started (None: all the firmware reports).
    pub max_cpus: Option<u32>,
    pub verbose: bool,
}

impl Default for BootOptions {
    fn default() -> Self {
        BootOptions {
            console: ConsoleSelection::Both,
            com1_baud: 115_200,
            log_level: Level::Info,
            max_cpus: None,
            verbose: false,
        }
    }
}

/// Baud rates accepted by `com1=`.
pub const STANDARD_BAUD_RATES: [u32; 8] = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115_200];

/// Largest value accepted by `maxcpus=`.
pub const MAX_CPUS_LIMIT: u32 = 4096;

/// A problem with one command-line token; the option kept its default.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum CmdlineWarning {
    /// An option name we do not know.
    UnknownOption(String),
    /// A known option with a value we cannot use.
    BadValue { option: &'static str, value: String },
    /// A known option that needs `=value` but had none.
    MissingValue(&'static str),
}

impl fmt::Display for CmdlineWarning {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineWarning::UnknownOption(name) => write!(formatter, "unknown option '{name}'"),
            CmdlineWarning::BadValue { option, value } => {
                write!(formatter, "bad value '{value}' for {option}")
            }
            CmdlineWarning::MissingValue(option) => write!(formatter, "missing value for {option}"),
        }
    }
}

/// Parses a command line; never fails (see the module documentation).
pub fn parse(cmdline: &str) -> (BootOptions, Vec<CmdlineWarning>) {
    let mut options = BootOptions::default();
    let mut warnings = Vec::new();
    let mut log_level_given = false;

    for (index, token) in cmdline.split_whitespace().enumerate() {
        if index == 0 && token.starts_with('/') {
            continue;
        }
        let (key, value) = match token.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (token, None),
        };
        let bad_value =
            |option: &'static str, value: &str| CmdlineWarning::BadValue { option, value: value.to_string() };
        match (key, value) {
            ("console", Some(value)) => match parse_console(value) {
                Some(console) => options.console = console,
                None => warnings.push(bad_value("console", value)),
            },
            ("com1", Some(value)) => match parse_com1(value) {
                Some(baud) => options.com1_baud = baud,
                None => warnings.push(bad_value("com1", value)),
            },
            ("loglvl", Some(value)) => match Level::parse(value) {
                Some(level) => {
                    options.log_level = level;
                    log_level_given = true;
                }
                None => warnings.push(bad_value("loglvl", value)),
            },
            ("maxcpus", Some(value)) => match value.parse::<u32>() {
                Ok(count) if (1..=MAX_CPUS_LIMIT).contains(&count) => options.max_cpus = Some(count),
                _ => warnings.push(bad_value("maxcpus", value)),
            },
            ("verbose", None) => options.verbose = true,
            ("verbose", Some(value)) => match parse_boolean(value) {
                Some(verbose) => options.verbose = verbose,
                None => warnings.push(bad_value("verbose", value)),
            },
            ("console", None) => warnings.push(CmdlineWarning::MissingValue("console")),
            ("com1", None) => warnings.push(CmdlineWarning::MissingValue("com1")),
            ("loglvl", None) => warnings.push(CmdlineWarning::MissingValue("loglvl")),
            ("maxcpus", None) => warnings.push(CmdlineWarning::MissingValue("maxcpus")),
            (unknown, _) => warnings.push(CmdlineWarning::UnknownOption(unknown.to_string())),
        }
    }

    if options.verbose && !log_level_given {
        options.log_level = Level::Debug;
    }
    (options, warnings)
}

fn parse_console(value: &str) -> Option<ConsoleSelection> {
    const NAMES: [(&str, ConsoleSelection); 4] = [
        ("com1", ConsoleSelection::Com1),
        ("serial", ConsoleSelection::Com1),
        ("vga", ConsoleSelection::Vga),
        ("both", ConsoleSelection::Both),
    ];
    NAMES.iter().find(|(name, _)| name.eq_ignore_ascii_case(value)).map(|&(_, console)| console)
}

/// `BAUD` or Xen's `BAUD,8n1` (the only data format the UART driver programs).
fn parse_com1(value: &str) -> Option<u32> {
    let (baud, format) = match value.split_once(',') {
        Some((baud, format)) => (baud, Some(format)),
        None => (value, None),
    };
    if let Some(format) = format {
        if !format.eq_ignore_ascii_case("8n1") {
            return None;
        }
    }
    let baud: u32 = baud.parse().ok()?;
    STANDARD_BAUD_RATES.contains(&baud).then_some(baud)
}

fn parse_boolean(value: &str) -> Option<bool> {
    const TRUE: [&str; 4] = ["1", "true", "yes", "on"];
    const FALSE: [&str; 4] = ["0", "false", "no", "off"];
    if TRUE.iter().any(|word| word.eq_ignore_ascii_case(value)) {
        Some(true)
    } else if FALSE.iter().any(|word| word.eq_ignore_ascii_case(value)) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn empty_line_gives_defaults() {
        let (options, warnings) = parse("");
        assert_eq!(options, BootOptions::default());
        assert_eq!(options.console, ConsoleSelection::Both);
        assert_eq!(options.com1_baud, 115_200);
        assert_eq!(options.log_level, Level::Info);
        assert!(warnings.is_empty());
    }

    #[test]
    fn grub_line_with_kernel_path() {
        let (options, warnings) = parse("/boot/basalt.elf console=com1 com1=9600,8n1 loglvl=WARNING maxcpus=4");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            options,
            BootOptions {
                console: ConsoleSelection::Com1,
                com1_baud: 9600,
                log_level: Level::Warn,
                max_cpus: Some(4),
                verbose: false,
            }
        );
    }

    #[test]
    fn path_only_ignored_as_first_token() {
        let (_, warnings) = parse("console=vga /boot/x");
        assert_eq!(warnings, [CmdlineWarning::UnknownOption("/boot/x".to_string())]);
    }

    #[test]
    fn serial_alias_and_plain_baud() {
        let (options, warnings) = parse("console=serial com1=57600");
        assert!(warnings.is_empty());
        assert_eq!(options.console, ConsoleSelection::Com1);
        assert_eq!(options.com1_baud, 57600);
    }

    #[test]
    fn verbose_sets_debug_unless_loglvl_given() {
        let (options, _) = parse("verbose");
        assert!(options.verbose);
        assert_eq!(options.log_level, Level::Debug);
        let (options, _) = parse("loglvl=error verbose");
        assert_eq!(options.log_level, Level::Error);
        let (options, _) = parse("verbose loglvl=all");
        assert_eq!(options.log_level, Level::Trace);
        let (options, _) = parse("verbose=off");
        assert!(!options.verbose);
        assert_eq!(options.log_level, Level::Info);
    }

    #[test]
    fn bad_values_warn_and_keep_defaults() {
        let (options, warnings) = parse(
            "console=tty com1=9601 com1=9600,7e1 com1= loglvl=loud maxcpus=0 maxcpus=4097 \
             maxcpus=x maxcpus=-1 foo bar=baz maxcpus verbose=maybe",
        );
        assert_eq!(options, BootOptions::default());
        let text: Vec<String> = warnings.iter().map(|w| format!("{w}")).collect();
        assert_eq!(
            text,
            [
                "bad value 'tty' for console",
                "bad value '9601' for com1",
                "bad value '9600,7e1' for com1",
                "bad value '' for com1",
                "bad value 'loud' for loglvl",
                "bad value '0' for maxcpus",
                "bad value '4097' for maxcpus",
                "bad value 'x' for maxcpus",
                "bad value '-1' for maxcpus",
                "unknown option 'foo'",
                "unknown option 'bar'",
                "missing value for maxcpus",
                "bad value 'maybe' for verbose",
            ]
        );
    }

    #[test]
    fn limits_and_later_options_win() {
        let (options, warnings) = parse("maxcpus=1 maxcpus=4096 console=vga console=BOTH");
        assert!(warnings.is_empty());
        assert_eq!(options.max_cpus, Some(4096));
        assert_eq!(options.console, ConsoleSelection::Both);
        for rate in STANDARD_BAUD_RATES {
            assert_eq!(parse(&format!("com1={rate}")).0.com1_baud, rate);
        }
    }

    #[test]
    fn random_input_never_panics() {
        let alphabet = "ab=/,c1 \t\n0verbose=console=com1maxcpus=é\u{0}";
        let chars: Vec<char> = alphabet.chars().collect();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut line = String::new();
            for _ in 0..(state % 40) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                line.push(chars[(state % chars.len() as u64) as usize]);
            }
            state = state.wrapping_add(1);
            let _ = parse(&line);
        }
    }
}
