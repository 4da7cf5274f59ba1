//! Benchmark output: one aligned markdown table, as `make bench` prints it (and as the
//! README and issue notes quote it).

/// Prints `rows` (label, value) under a `| what | value |` header, columns aligned.
pub fn print_table(rows: &[(String, String)]) {
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0).max("what".len());
    let value_width = rows.iter().map(|(_, value)| value.len()).max().unwrap_or(0).max("value".len());
    println!("| {:width$} | {:value_width$} |", "what", "value");
    println!("|{}|{}|", "-".repeat(width + 2), "-".repeat(value_width + 2));
    for (label, value) in rows {
        println!("| {label:width$} | {value:value_width$} |");
    }
}

/// The command line of a benchmark binary: `--runs N` (default 3) and on/off flags
/// from `flags`. `Err` is the one-line complaint to print before the usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchArgs {
    pub runs: usize,
    /// The flags given, each once, in `flags`' spelling.
    pub flags: Vec<&'static str>,
}

impl BenchArgs {
    pub fn has(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }
}

/// Parses `args` (without the program name) against the known `flags`.
pub fn parse_bench_args(args: impl IntoIterator<Item = String>, flags: &[&'static str]) -> Result<BenchArgs, String> {
    let mut parsed = BenchArgs { runs: 3, flags: Vec::new() };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--runs" {
            parsed.runs = args
                .next()
                .and_then(|count| count.parse().ok())
                .filter(|&count| count > 0)
                .ok_or_else(|| String::from("--runs needs a positive number"))?;
        } else if let Some(&flag) = flags.iter().find(|&&flag| flag == arg) {
            if !parsed.has(flag) {
                parsed.flags.push(flag);
            }
        } else {
            return Err(format!("unknown argument {arg:?}"));
        }
    }
    Ok(parsed)
}

/// [`parse_bench_args`] on the process's arguments; on an error prints it and `usage`
/// and exits with status 2.
pub fn bench_args_or_exit(flags: &[&'static str], usage: &str) -> BenchArgs {
    parse_bench_args(std::env::args().skip(1), flags).unwrap_or_else(|error| {
        eprintln!("{error}\nusage: {usage}");
        std::process::exit(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<BenchArgs, String> {
        parse_bench_args(words.iter().map(|word| word.to_string()), &["--direct-only", "--dd"])
    }

    #[test]
    fn runs_and_flags() {
        assert_eq!(parse(&[]), Ok(BenchArgs { runs: 3, flags: vec![] }));
        let parsed = parse(&["--dd", "--runs", "5", "--dd"]).unwrap();
        assert_eq!(parsed.runs, 5);
        assert!(parsed.has("--dd") && !parsed.has("--direct-only"));
        assert_eq!(parse(&["--runs", "0"]), Err("--runs needs a positive number".into()));
        assert_eq!(parse(&["--runs"]), Err("--runs needs a positive number".into()));
        assert_eq!(parse(&["--fast"]), Err("unknown argument \"--fast\"".into()));
    }
}
