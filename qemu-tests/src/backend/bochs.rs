//! Bochs backend: Debian's `bochs` with an Intel CPU model that emulates VMX + EPT.
//!
//! Facts relied on (/work/shared/docs/emulators.md, checked against Debian's 2.7 build):
//! - Debian's build has no `nogui` display; `display_library: rfb, options="timeout=0"`
//!   never waits for a VNC client (it takes the next free port from 5900).
//! - Its internal debugger is compiled in, so Bochs stops before the first instruction
//!   unless a debugger script says `c`: we run `bochs -q -f bochsrc -rc cont.rc`.
//! - `com1: mode=socket-client` makes Bochs connect to a TCP port during device
//!   initialisation, before the CPU runs; the connection then carries COM1 both ways,
//!   raw. The harness listens first (on a port of its own, bound before Bochs starts,
//!   so no other process can take it and no connect can race Bochs's start-up) and
//!   accepts Bochs's connection.
//! - ACPI S5 works: Bochs's PM device answers SLP_EN with the panic "ACPI control: soft
//!   power off", which with `panic: action=fatal` ends the process with status 1. The
//!   `Shutdown` string on port 0x8900 (the kernel's fallback) ends it the same way,
//!   logging "Shutdown port: shutdown requested". So the exit status says nothing:
//!   [`Control::clean_exit`] judges by Bochs's log, and — like QEMU's isa-debug-exit
//!   status — only the ACPI power-off counts as clean.
//! - Bochs is a good VMCS checker: a failed VM entry is explained in its log
//!   ("VMFAIL: VMCS ...", "VMENTER FAIL: ..."), which is written straight to
//!   `<artifacts>/<test>.bochs.log` and named in every failure message; the bochsrc is
//!   copied beside it (`<test>.bochs.bochsrc`). Before Bochs has read its `log:` line (bochsrc errors)
//!   it reports on stderr, i.e. in `<test>.qemu.stderr.log`.
//!
//! Invariants: the image is never written — a CD-ROM is opened read-only, a disk in
//! `volatile` mode with its journal in the private work directory; stdin is null (the
//! debugger must never wait for a console); Bochs's stdout/stderr (banner, debugger
//! output) go to the `.qemu.stderr.log` the harness names for every emulator.

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{Control, Launched};
use crate::config::{MachineConfig, Medium};
use crate::error::{Error, Result};

/// The Bochs binary (override with `BASALT_BOCHS`). Debian's `/usr/bin/bochs` is a
/// script that `exec`s `bochs-bin`, so killing the child kills Bochs itself.
pub fn bochs_binary() -> String {
    std::env::var("BASALT_BOCHS").unwrap_or_else(|_| "bochs".to_owned())
}

/// The system BIOS (Debian package `bochsbios`).
pub const BIOS_IMAGE: &str = "/usr/share/bochs/BIOS-bochs-latest";
/// The VGA BIOS (Debian package `seabios`; `vgabios`'s VGABIOS-lgpl-latest also works).
pub const VGA_BIOS_IMAGE: &str = "/usr/share/seabios/vgabios-stdvga.bin";
/// Debian packages the backend needs (for error messages and `make test`'s installer).
pub const DEBIAN_PACKAGES: &str = "bochs bochsbios seabios";

/// Files in the machine's work directory.
pub const BOCHSRC: &str = "bochsrc";
/// The debugger script: continue at once.
pub const CONTINUE_SCRIPT: &str = "cont.rc";
/// The disk journal prefix (Bochs appends a random suffix) for [`Medium::IdeDisk`].
pub const DISK_JOURNAL: &str = "disk.journal";

/// Emulated instructions per second: the guest's clocks (TSC, PIT, APIC timer) advance
/// by this many instructions per emulated second (`clock: sync=none`, so emulated time
/// does not depend on the host's load).
pub const INSTRUCTIONS_PER_SECOND: u64 = 100_000_000;

/// How long Bochs may take to start listening on the serial socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Bochs's log line for an ACPI S5 power-off (iodev/acpi.cc).
const ACPI_POWER_OFF: &str = "ACPI control: soft power off";
/// Bochs's log line for the `Shutdown` string on port 0x8900 (iodev/unmapped.cc).
const SHUTDOWN_PORT: &str = "Shutdown port: shutdown requested";
/// How Bochs marks a panic in its log.
const PANIC_TAG: &str = ">>PANIC<<";

/// Where Bochs's own log goes for the test whose emulator diagnostics are `stderr_log`
/// (`<artifacts>/<test>.qemu.stderr.log` → `<artifacts>/<test>.bochs.log`).
pub fn log_path(stderr_log: &Path) -> PathBuf {
    let name = stderr_log.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".qemu.stderr.log").unwrap_or(&name);
    stderr_log.with_file_name(format!("{stem}.bochs.log"))
}

/// Writes `path` into a bochsrc line, refusing what Bochs's parser splits on.
fn bochsrc_path(path: &Path) -> Result<String> {
    let text = path.to_string_lossy().into_owned();
    if text.is_empty() || text.chars().any(|character| character.is_whitespace() || ",\"'#=".contains(character)) {
        return Err(Error::new(format!(
            "path {text:?} contains a space, comma, quote, '#' or '=', which a bochsrc cannot hold"
        )));
    }
    Ok(text)
}

/// Builds the bochsrc text for `config` (CPU `cpu_model`, image on `medium`), with COM1
/// on TCP port `serial_port` and the log at `log`.
pub fn bochsrc(
    config: &MachineConfig,
    cpu_model: &str,
    medium: Medium,
    work_dir: &Path,
    serial_port: u16,
    log: &Path,
) -> Result<String> {
    let image = bochsrc_path(&config.image)?;
    let log = bochsrc_path(log)?;
    if cpu_model.is_empty() || !cpu_model.chars().all(|character| character.is_ascii_alphanumeric() || character == '_')
    {
        return Err(Error::new(format!("{cpu_model:?} is not a Bochs CPU model name")));
    }
    let (drive, boot) = match medium {
        Medium::Cdrom => (format!("ata0-master: type=cdrom, path={image}, status=inserted"), "cdrom"),
        Medium::IdeDisk => {
            let journal = bochsrc_path(&work_dir.join(DISK_JOURNAL))?;
            (format!("ata0-master: type=disk, path={image}, mode=volatile, journal={journal}"), "disk")
        }
        Medium::UsbStick => return Err(Error::new("a USB stick is not supported under Bochs (use Cdrom or IdeDisk)")),
    };
    let reset_on_triple_fault = u8::from(config.allow_reset);
    let mut lines = vec![
        "# Written by qemu-tests (backend/bochs.rs) for one test run.".to_owned(),
        r#"display_library: rfb, options="timeout=0, hideIPS""#.to_owned(),
        format!("megs: {}", config.memory_mib),
        format!("romimage: file={BIOS_IMAGE}"),
        format!("vgaromimage: file={VGA_BIOS_IMAGE}"),
        format!(
            "cpu: model={cpu_model}, count={}, ips={INSTRUCTIONS_PER_SECOND}, reset_on_triple_fault={reset_on_triple_fault}",
            config.cpus
        ),
        drive,
        format!("boot: {boot}"),
        format!("com1: enabled=1, mode=socket-client, dev=127.0.0.1:{serial_port}"),
        format!("log: {log}"),
        "panic: action=fatal".to_owned(),
        "clock: sync=none, time0=local".to_owned(),
        "speaker: enabled=0".to_owned(),
        // Without dummy drivers the sound mixer thread aborts on a host without audio.
        "sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy".to_owned(),
    ];
    lines.extend(config.extra_args.iter().cloned());
    Ok(lines.join("\n") + "\n")
}

/// The listener Bochs's COM1 connects to, on a free port of 127.0.0.1.
fn serial_listener() -> Result<TcpListener> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|error| Error::new(format!("cannot listen on a TCP port for Bochs's COM1: {error}")))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Starts Bochs for `config`.
pub fn launch(
    config: &MachineConfig,
    cpu_model: &str,
    medium: Medium,
    work_dir: &Path,
    stderr_log: &Path,
) -> Result<Launched> {
    for (file, package) in [(BIOS_IMAGE, "bochsbios"), (VGA_BIOS_IMAGE, "seabios")] {
        if !Path::new(file).is_file() {
            return Err(Error::new(format!("{file} not found: install Debian's `{package}` package")));
        }
    }
    let log = log_path(stderr_log);
    let listener = serial_listener()?;
    let port = listener.local_addr()?.port();
    let rc_path = work_dir.join(BOCHSRC);
    let script_path = work_dir.join(CONTINUE_SCRIPT);
    let rc_text = bochsrc(config, cpu_model, medium, work_dir, port, &log)?;
    std::fs::write(&rc_path, &rc_text)
        .map_err(|error| Error::new(format!("writing {}: {error}", rc_path.display())))?;
    // A copy beside the log, for rerunning the machine by hand (COM1 connects to a
    // listener: `nc -l 127.0.0.1 PORT` first); the work directory is removed after the test.
    let _ = std::fs::write(log.with_extension("bochsrc"), &rc_text);
    std::fs::write(&script_path, "c\n")
        .map_err(|error| Error::new(format!("writing {}: {error}", script_path.display())))?;
    // A log from an earlier run must not be mistaken for this one's.
    let _ = std::fs::remove_file(&log);
    let stderr = std::fs::File::create(stderr_log)
        .map_err(|error| Error::new(format!("creating {}: {error}", stderr_log.display())))?;
    let stdout = stderr.try_clone()?;
    let binary = bochs_binary();
    let args = [
        "-q".to_owned(),
        "-f".to_owned(),
        rc_path.display().to_string(),
        "-rc".to_owned(),
        script_path.display().to_string(),
    ];
    let mut child = Command::new(&binary)
        .args(&args)
        .current_dir(work_dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|error| {
            Error::new(format!("cannot start {binary}: {error} (install Debian's {DEBIAN_PACKAGES} packages)"))
        })?;
    let stream = match accept(&mut child, &listener, &log, stderr_log) {
        Ok(stream) => stream,
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
    };
    let serial_input = stream.try_clone()?;
    let command_line = format!("{binary} {} (COM1 on 127.0.0.1:{port}, log {})", args.join(" "), log.display());
    Ok(Launched {
        child,
        serial_output: Box::new(stream),
        serial_input: Box::new(serial_input),
        control: Box::new(BochsControl { log }),
        command_line,
    })
}

/// Accepts Bochs's COM1 connection; fails early if Bochs exits first (a bochsrc error,
/// a missing plugin).
fn accept(child: &mut Child, listener: &TcpListener, log: &Path, stderr_log: &Path) -> Result<TcpStream> {
    let address = listener.local_addr()?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                // Keystrokes should not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(Error::new(format!("accepting Bochs's COM1 on {address}: {error}"))),
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Bochs reports bochsrc errors on stderr: the `log:` line is not read yet.
            let reasons: String =
                [stderr_log, log].into_iter().filter_map(panic_lines).map(|lines| format!("\n{lines}")).collect();
            return Err(Error::new(format!(
                "Bochs exited ({status}) before it connected COM1 to {address}: see {} and {}{reasons}",
                stderr_log.display(),
                log.display(),
            )));
        }
        if Instant::now() >= deadline {
            return Err(Error::new(format!(
                "Bochs did not connect COM1 to {address} within {CONNECT_TIMEOUT:?}: see {}",
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The log's panic and error lines (at most a few), if any.
fn panic_lines(log: &Path) -> Option<String> {
    let text = read_log(log)?;
    // Lines look like "00854801105p[ACPI  ] >>PANIC<< ..." (level letter after the tick).
    let serious = |line: &&str| {
        let rest = line.trim_start_matches(|character: char| character.is_ascii_digit());
        let noise = line.contains("no bxevent_callback function is registered");
        (rest.starts_with("p[") || rest.starts_with("e[") || line.contains(PANIC_TAG)) && !noise
    };
    let lines: Vec<&str> = text.lines().filter(serious).take(8).collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// Reads Bochs's log (lossily: guest-controlled bytes may appear in it).
fn read_log(log: &Path) -> Option<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(log).ok()?.read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Control of a running Bochs: no screen dumps; exits judged by its log.
struct BochsControl {
    log: PathBuf,
}

impl Control for BochsControl {
    fn screendump(&mut self, _ppm_path: &Path) -> Result<()> {
        Err(Error::new("screen dumps are not supported under Bochs (its display is an RFB server)"))
    }

    fn clean_exit(&self, _status: ExitStatus) -> bool {
        // Bochs exits with status 1 however it stops; only ACPI S5 counts as clean.
        read_log(&self.log).is_some_and(|text| text.contains(ACPI_POWER_OFF))
    }

    fn explain_exit(&self, status: ExitStatus) -> String {
        let Some(text) = read_log(&self.log) else {
            return format!("{status}; Bochs's log {} is missing", self.log.display());
        };
        if text.contains(ACPI_POWER_OFF) {
            format!("{status} after ACPI power-off (\"{ACPI_POWER_OFF}\")")
        } else if text.contains(SHUTDOWN_PORT) {
            format!(
                "{status}: the guest wrote \"Shutdown\" to port 0x8900 — ACPI power-off did not work (see {})",
                self.log.display()
            )
        } else if status.code().is_none() {
            format!("{status} (killed by a signal)")
        } else {
            let panics = panic_lines(&self.log).unwrap_or_else(|| "no panic or error lines".to_owned());
            format!("{status}; Bochs's log {} says:\n{panics}", self.log.display())
        }
    }

    fn diagnostic_files(&self) -> Vec<PathBuf> {
        vec![self.log.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(medium: Medium) -> MachineConfig {
        let mut config = MachineConfig::bochs(medium);
        config.image = PathBuf::from("/images/basalt.img");
        config
    }

    #[test]
    fn cdrom_machine_is_headless_and_read_only() {
        let text = bochsrc(
            &config(Medium::Cdrom),
            "corei7_haswell_4770",
            Medium::Cdrom,
            Path::new("/w"),
            4321,
            Path::new("/a/t.bochs.log"),
        )
        .unwrap();
        assert!(text.contains("display_library: rfb, options=\"timeout=0, hideIPS\"\n"));
        assert!(text.contains("megs: 512\n"));
        assert!(text.contains("cpu: model=corei7_haswell_4770, count=2, ips=100000000, reset_on_triple_fault=0\n"));
        assert!(text.contains("ata0-master: type=cdrom, path=/images/basalt.img, status=inserted\nboot: cdrom\n"));
        assert!(text.contains("com1: enabled=1, mode=socket-client, dev=127.0.0.1:4321\n"));
        assert!(text.contains("log: /a/t.bochs.log\npanic: action=fatal\n"));
        assert!(text.contains("sound: waveoutdrv=dummy"));
    }

    #[test]
    fn disk_is_volatile_and_extra_lines_come_last() {
        let machine = config(Medium::IdeDisk).allow_reset(true).with_cpus(1).with_extra_args(&["cpuid: x2apic=0"]);
        let text = bochsrc(&machine, "corei7_skylake_x", Medium::IdeDisk, Path::new("/w"), 1, Path::new("/l")).unwrap();
        assert!(
            text.contains("type=disk, path=/images/basalt.img, mode=volatile, journal=/w/disk.journal\nboot: disk\n")
        );
        assert!(text.contains("model=corei7_skylake_x, count=1,"));
        assert!(text.contains("reset_on_triple_fault=1"));
        assert!(text.ends_with("cpuid: x2apic=0\n"));
    }

    #[test]
    fn unsupported_choices_are_refused() {
        let error = bochsrc(
            &config(Medium::UsbStick),
            "corei7_haswell_4770",
            Medium::UsbStick,
            Path::new("/w"),
            1,
            Path::new("/l"),
        )
        .unwrap_err();
        assert!(error.message().contains("USB"), "{error}");
        let spaced = config(Medium::Cdrom).with_image(PathBuf::from("/my images/basalt.img"));
        assert!(bochsrc(&spaced, "corei7_haswell_4770", Medium::Cdrom, Path::new("/w"), 1, Path::new("/l")).is_err());
        assert!(bochsrc(&config(Medium::Cdrom), "x, y", Medium::Cdrom, Path::new("/w"), 1, Path::new("/l")).is_err());
    }

    #[test]
    fn log_sits_beside_the_transcripts() {
        assert_eq!(log_path(Path::new("/b/qemu-tests/t.qemu.stderr.log")), PathBuf::from("/b/qemu-tests/t.bochs.log"));
        assert_eq!(log_path(Path::new("/b/other")), PathBuf::from("/b/other.bochs.log"));
    }
}
