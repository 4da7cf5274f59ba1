//! basalt-mdb: the debugger on the host, over a dump-core file — or a disk image that
//! holds one (Basalt's `dump-core DOMAIN DISK` writes the core raw onto a disk).
//!
//! `basalt-mdb <core | disk-image[@offset]> [-e 'CMDS']...`: with `-e` runs each
//! argument's lines through the engine and exits (status 0 unless the core could not
//! be opened: then `basalt-mdb: <error>` on standard error and status 1); without, reads
//! commands from standard input (prompt `> ` when it is a terminal) until end of input
//! or `$q`. The offset is decimal or `0x` hex, optionally with a K, M or G suffix
//! (binary multiples). The core is read where it lies, page by page as commands need
//! it (`FileExt::read_exact_at`); nothing GB-sized is loaded.
//!
//! Built for the host only: for the appliance's bare-metal target this file compiles
//! to an empty stub so `cargo build --target x86_64-unknown-none` of the crate works.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[cfg(not(target_os = "none"))]
fn main() -> std::process::ExitCode {
    host::main()
}

#[cfg(not(target_os = "none"))]
mod host {
    use std::fs::File;
    use std::io::{BufRead, IsTerminal, Seek, SeekFrom, Write};
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::process::ExitCode;

    use basalt_debugger::core_file::{CoreFile, CoreSource};
    use basalt_debugger::engine::{Flow, Session, PROMPT};
    use basalt_debugger::target::Target;

    const USAGE: &str = "usage: basalt-mdb <core | disk-image[@offset]> [-e 'CMDS']...";

    /// What the command line asked for.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Arguments {
        /// The file as given (possibly with `@offset`).
        pub location: String,
        /// The file's path without the offset.
        pub path: String,
        /// Where the core starts in the file.
        pub offset: u64,
        /// The `-e` arguments in order; empty means interactive.
        pub commands: Vec<String>,
    }

    /// Parses the arguments after the program name.
    pub fn parse_arguments(arguments: &[String]) -> Result<Arguments, String> {
        let mut location: Option<&str> = None;
        let mut commands = Vec::new();
        let mut words = arguments.iter();
        while let Some(word) = words.next() {
            match word.as_str() {
                "-e" => {
                    let text = words.next().ok_or_else(|| String::from("-e needs commands"))?;
                    commands.push(text.clone());
                }
                "-h" | "--help" => return Err(String::from(USAGE)),
                flag if flag.starts_with('-') && flag.len() > 1 => {
                    return Err(format!("unknown option {flag}\n{USAGE}"));
                }
                file => {
                    if location.replace(file).is_some() {
                        return Err(format!("more than one core named\n{USAGE}"));
                    }
                }
            }
        }
        let location = location.ok_or_else(|| String::from(USAGE))?;
        let (path, offset) = split_location(location)?;
        Ok(Arguments { location: location.to_string(), path: path.to_string(), offset, commands })
    }

    /// `image@offset` → (image, offset); a name without `@` starts at 0.
    pub fn split_location(location: &str) -> Result<(&str, u64), String> {
        match location.rsplit_once('@') {
            Some((path, offset)) if !path.is_empty() => Ok((path, parse_offset(offset)?)),
            _ => Ok((location, 0)),
        }
    }

    /// Decimal or `0x` hex, with an optional K/M/G (×1024ⁿ) suffix.
    pub fn parse_offset(text: &str) -> Result<u64, String> {
        let bad = || format!("bad offset '{text}' (decimal or 0x hex, optional K, M or G)");
        let (digits, multiplier) = match text.char_indices().last() {
            Some((index, 'K' | 'k')) => (&text[..index], 1u64 << 10),
            Some((index, 'M' | 'm')) => (&text[..index], 1 << 20),
            Some((index, 'G' | 'g')) => (&text[..index], 1 << 30),
            _ => (text, 1),
        };
        let value = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => digits.parse::<u64>(),
        }
        .map_err(|_| bad())?;
        value.checked_mul(multiplier).ok_or_else(bad)
    }

    /// A core inside a file (or block device) from `base` on.
    pub struct FileSource {
        file: File,
        base: u64,
        length: u64,
    }

    impl FileSource {
        pub fn open(path: &Path, base: u64) -> Result<FileSource, String> {
            let mut file = File::open(path).map_err(|error| format!("{}: {error}", path.display()))?;
            // Seeking to the end also sizes a block device (its metadata length is 0).
            let size = file.seek(SeekFrom::End(0)).map_err(|error| format!("{}: {error}", path.display()))?;
            let length = size
                .checked_sub(base)
                .ok_or_else(|| format!("{}: offset {base:#x} is past its end ({size:#x} bytes)", path.display()))?;
            Ok(FileSource { file, base, length })
        }
    }

    impl CoreSource for FileSource {
        fn len(&self) -> u64 {
            self.length
        }

        fn read_at(&self, offset: u64, buffer: &mut [u8]) -> Result<(), String> {
            let end = offset.checked_add(buffer.len() as u64).filter(|&end| end <= self.length);
            if end.is_none() {
                return Err(format!("read of {} bytes at {offset:#x} is past the end", buffer.len()));
            }
            self.file.read_exact_at(buffer, self.base + offset).map_err(|error| error.to_string())
        }
    }

    /// Runs one line and prints what it wrote.
    fn run_line(session: &mut Session<'_>, line: &str) -> Flow {
        let mut output = String::new();
        let flow = session.execute(line, &mut output);
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(output.as_bytes());
        let _ = stdout.flush();
        flow
    }

    pub fn main() -> ExitCode {
        let arguments: Vec<String> = std::env::args().skip(1).collect();
        let arguments = match parse_arguments(&arguments) {
            Ok(arguments) => arguments,
            Err(message) => {
                eprintln!("basalt-mdb: {message}");
                return ExitCode::from(2);
            }
        };
        // A file whose own name contains `@` wins over the offset reading of it.
        let (path, offset) = if arguments.offset != 0 && Path::new(&arguments.location).exists() {
            (arguments.location.as_str(), 0)
        } else {
            (arguments.path.as_str(), arguments.offset)
        };
        let core = FileSource::open(Path::new(path), offset)
            .and_then(|source| CoreFile::open(source, &arguments.location).map_err(|error| error.to_string()));
        let core = match core {
            Ok(core) => core,
            Err(error) => {
                eprintln!("basalt-mdb: {error}");
                return ExitCode::from(1);
            }
        };
        let interactive = std::io::stdin().is_terminal();
        if interactive && arguments.commands.is_empty() {
            let info = core.info();
            println!(
                "core file {}: domain {} ({}), {} vCPU{}, {}",
                arguments.location,
                info.domain_id,
                info.domain_name,
                info.vcpus,
                if info.vcpus == 1 { "" } else { "s" },
                info.hypervisor
            );
        }
        let mut session = Session::new(Box::new(core));

        if !arguments.commands.is_empty() {
            for text in &arguments.commands {
                for line in text.lines() {
                    if run_line(&mut session, line) == Flow::Quit {
                        return ExitCode::SUCCESS;
                    }
                }
            }
            return ExitCode::SUCCESS;
        }

        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        let mut line = String::new();
        loop {
            if interactive {
                print!("{PROMPT}");
                let _ = std::io::stdout().flush();
            }
            line.clear();
            match input.read_line(&mut line) {
                Ok(0) => {
                    if interactive {
                        println!();
                    }
                    return ExitCode::SUCCESS;
                }
                Ok(_) => {
                    if run_line(&mut session, line.trim_end_matches(['\n', '\r'])) == Flow::Quit {
                        return ExitCode::SUCCESS;
                    }
                }
                Err(error) => {
                    eprintln!("basalt-mdb: standard input: {error}");
                    return ExitCode::SUCCESS;
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn words(text: &[&str]) -> Vec<String> {
            text.iter().map(|word| word.to_string()).collect()
        }

        #[test]
        fn a_core_and_commands() {
            let parsed =
                parse_arguments(&words(&["vda.img", "-e", "::status", "-e", "::cpuregs\n::cpustack"])).unwrap();
            assert_eq!(
                parsed,
                Arguments {
                    location: String::from("vda.img"),
                    path: String::from("vda.img"),
                    offset: 0,
                    commands: words(&["::status", "::cpuregs\n::cpustack"]),
                }
            );
            let interactive = parse_arguments(&words(&["core"])).unwrap();
            assert!(interactive.commands.is_empty());
            // Options may come first.
            let first = parse_arguments(&words(&["-e", "$q", "core"])).unwrap();
            assert_eq!((first.path.as_str(), first.commands.len()), ("core", 1));
        }

        #[test]
        fn offsets() {
            let parsed = parse_arguments(&words(&["disk.img@0x100000"])).unwrap();
            assert_eq!((parsed.path.as_str(), parsed.offset), ("disk.img", 0x10_0000));
            assert_eq!(parse_offset("4096"), Ok(4096));
            assert_eq!(parse_offset("0X10"), Ok(16));
            assert_eq!(parse_offset("64K"), Ok(64 << 10));
            assert_eq!(parse_offset("0x2M"), Ok(2 << 20));
            assert_eq!(parse_offset("1G"), Ok(1 << 30));
            assert!(parse_offset("").is_err());
            assert!(parse_offset("12Q").is_err());
            assert!(parse_offset("0x").is_err());
            assert!(parse_offset("-1").is_err());
            assert!(parse_offset("99999999999999G").is_err());
            assert_eq!(split_location("a@b@8K"), Ok(("a@b", 8192)));
            assert_eq!(split_location("@5"), Ok(("@5", 0)));
            assert!(parse_arguments(&words(&["disk.img@junk"])).is_err());
        }

        #[test]
        fn usage_errors() {
            assert!(parse_arguments(&[]).is_err());
            assert!(parse_arguments(&words(&["core", "-e"])).unwrap_err().contains("-e needs"));
            assert!(parse_arguments(&words(&["core", "other"])).unwrap_err().contains("more than one"));
            assert!(parse_arguments(&words(&["core", "-x"])).unwrap_err().contains("unknown option -x"));
        }

        #[test]
        fn a_file_source_reads_from_its_base_and_stops_at_the_end() {
            let directory = std::env::temp_dir().join(format!("basalt-mdb-test-{}", std::process::id()));
            std::fs::create_dir_all(&directory).unwrap();
            let path = directory.join("image");
            std::fs::write(&path, b"0123456789").unwrap();
            let source = FileSource::open(&path, 4).unwrap();
            assert_eq!(source.len(), 6);
            let mut buffer = [0u8; 3];
            source.read_at(1, &mut buffer).unwrap();
            assert_eq!(&buffer, b"567");
            assert!(source.read_at(4, &mut buffer).is_err());
            assert!(source.read_at(u64::MAX, &mut buffer).is_err());
            assert!(FileSource::open(&path, 11).is_err());
            std::fs::remove_dir_all(&directory).unwrap();
        }
    }
}
