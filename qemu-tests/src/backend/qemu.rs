//! QEMU backend: `qemu-system-x86_64 -accel tcg` with an SVM+NPT CPU.
//!
//! Facts relied on (/work/shared/docs/emulators.md): there is no usable KVM, so TCG is
//! forced; `qemu64,+svm,+npt` (or `max`) has SVM with nested paging; OVMF comes from
//! Debian's `ovmf` package as a read-only code flash plus a private writable copy of the
//! variable store; ACPI S5 makes QEMU exit with status 0, while a write of v to the
//! isa-debug-exit port (0xf4) makes it exit with (v << 1) | 1.
//!
//! Invariants: the image is never written — disks use `snapshot=on` (writes go to a
//! temporary overlay), CD-ROMs are read-only; the serial line is the child's
//! stdin/stdout (`-serial stdio`); there is no monitor on stdio (`-monitor none`) and
//! QMP listens on a unix socket in the machine's private work directory.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use super::{Control, Launched};
use crate::config::{Firmware, MachineConfig, Medium};
use crate::error::{Error, Result};
use crate::qmp::QmpClient;

/// The QEMU binary (override with `BASALT_QEMU`).
pub fn qemu_binary() -> String {
    std::env::var("BASALT_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".to_owned())
}

/// Directory holding Debian's OVMF builds (override with `BASALT_OVMF_DIR`).
pub fn ovmf_dir() -> PathBuf {
    std::env::var_os("BASALT_OVMF_DIR").map_or_else(|| PathBuf::from("/usr/share/OVMF"), PathBuf::from)
}

/// OVMF firmware code (read-only flash).
pub const OVMF_CODE: &str = "OVMF_CODE_4M.fd";
/// OVMF variable store template (copied per machine).
pub const OVMF_VARS: &str = "OVMF_VARS_4M.fd";

/// Name of the QMP socket inside the work directory.
pub const QMP_SOCKET: &str = "qmp.sock";

/// Builds QEMU's argument list. Creates the writable OVMF variable store in `work_dir`
/// for UEFI machines.
pub fn arguments(config: &MachineConfig, firmware: Firmware, medium: Medium, work_dir: &Path) -> Result<Vec<String>> {
    let image = config.image.to_string_lossy().into_owned();
    if image.contains(',') {
        return Err(Error::new(format!("image path {image:?} contains ',' which QEMU's -drive cannot take")));
    }
    let qmp = work_dir.join(QMP_SOCKET);
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|item| (*item).to_owned()));
    let machine = match firmware {
        Firmware::Bios => "pc",
        Firmware::Uefi => "q35",
    };
    push(&["-machine", machine, "-accel", "tcg", "-cpu", &config.cpu_model]);
    push(&["-smp", &config.cpus.to_string(), "-m", &config.memory_mib.to_string()]);
    push(&["-nodefaults", "-vga", "std", "-display", "none", "-monitor", "none", "-serial", "stdio"]);
    push(&["-qmp", &format!("unix:{},server=on,wait=off", qmp.display())]);
    push(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    if !config.allow_reset {
        push(&["-no-reboot"]);
    }
    if firmware == Firmware::Uefi {
        let code = ovmf_dir().join(OVMF_CODE);
        let vars_template = ovmf_dir().join(OVMF_VARS);
        for file in [&code, &vars_template] {
            if !file.exists() {
                return Err(Error::new(format!(
                    "{} not found: install Debian's `ovmf` package or set BASALT_OVMF_DIR",
                    file.display()
                )));
            }
        }
        let vars = work_dir.join(OVMF_VARS);
        std::fs::copy(&vars_template, &vars).map_err(|error| {
            Error::new(format!("copying {} to {}: {error}", vars_template.display(), vars.display()))
        })?;
        push(&["-drive", &format!("if=pflash,format=raw,unit=0,readonly=on,file={}", code.display())]);
        push(&["-drive", &format!("if=pflash,format=raw,unit=1,file={}", vars.display())]);
    }
    match medium {
        Medium::IdeDisk => {
            push(&["-drive", &format!("file={image},format=raw,if=ide,index=0,media=disk,snapshot=on")]);
        }
        Medium::UsbStick => {
            push(&["-drive", &format!("if=none,id=stick,file={image},format=raw,snapshot=on")]);
            push(&["-device", "qemu-xhci,id=xhci", "-device", "usb-storage,bus=xhci.0,drive=stick,bootindex=0"]);
        }
        Medium::Cdrom => {
            push(&["-drive", &format!("file={image},format=raw,if=ide,index=0,media=cdrom,readonly=on")]);
            if firmware == Firmware::Bios {
                push(&["-boot", "d"]);
            }
        }
    }
    args.extend(config.extra_args.iter().cloned());
    Ok(args)
}

/// Starts QEMU for `config`.
pub fn launch(
    config: &MachineConfig,
    firmware: Firmware,
    medium: Medium,
    work_dir: &Path,
    stderr_log: &Path,
) -> Result<Launched> {
    let args = arguments(config, firmware, medium, work_dir)?;
    let binary = qemu_binary();
    let stderr = std::fs::File::create(stderr_log)
        .map_err(|error| Error::new(format!("creating {}: {error}", stderr_log.display())))?;
    let mut child =
        Command::new(&binary).args(&args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(stderr).spawn().map_err(
            |error| Error::new(format!("cannot start {binary}: {error} (is the qemu-system-x86 package installed?)")),
        )?;
    let serial_input = child.stdin.take().ok_or_else(|| Error::new("QEMU stdin missing"))?;
    let serial_output = child.stdout.take().ok_or_else(|| Error::new("QEMU stdout missing"))?;
    let command_line = std::iter::once(binary.as_str())
        .chain(args.iter().map(String::as_str))
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Launched {
        child,
        serial_output: Box::new(serial_output),
        serial_input: Box::new(serial_input),
        control: Box::new(QemuControl { qmp_socket: work_dir.join(QMP_SOCKET), qmp: None }),
        command_line,
    })
}

/// Quotes `word` for a POSIX shell when needed (for readable logs only).
fn shell_quote(word: &str) -> String {
    if !word.is_empty() && word.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_=,./:+@".contains(&byte)) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// QMP-backed control; connects lazily on first use and keeps the session.
struct QemuControl {
    qmp_socket: PathBuf,
    qmp: Option<QmpClient>,
}

impl Control for QemuControl {
    fn screendump(&mut self, ppm_path: &Path) -> Result<()> {
        if self.qmp.is_none() {
            self.qmp = Some(QmpClient::connect(&self.qmp_socket, Duration::from_secs(30))?);
        }
        let qmp = self.qmp.as_mut().ok_or_else(|| Error::new("QMP not connected"))?;
        qmp.screendump(ppm_path)
    }

    fn clean_exit(&self, status: ExitStatus) -> bool {
        status.code() == Some(0)
    }

    fn explain_exit(&self, status: ExitStatus) -> String {
        match status.code() {
            Some(0) => "exit status 0 (ACPI power-off)".to_owned(),
            Some(code) if code % 2 == 1 => format!(
                "exit status {code}: the guest wrote {:#x} to isa-debug-exit (port 0xf4) — ACPI power-off did not work",
                code >> 1
            ),
            Some(code) => format!("exit status {code} (QEMU error; see the .qemu.stderr log)"),
            None => format!("{status} (killed by a signal)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(firmware: Firmware, medium: Medium) -> MachineConfig {
        let mut config = MachineConfig::qemu(firmware, medium);
        config.image = PathBuf::from("/images/basalt.img");
        config
    }

    #[test]
    fn bios_ide_never_writes_the_image() {
        let args =
            arguments(&config(Firmware::Bios, Medium::IdeDisk), Firmware::Bios, Medium::IdeDisk, Path::new("/w"))
                .unwrap();
        let line = args.join(" ");
        assert!(line.contains("-accel tcg"));
        assert!(line.contains("-machine pc "));
        assert!(line.contains("-smp 2 -m 512"));
        assert!(line.contains("file=/images/basalt.img,format=raw,if=ide,index=0,media=disk,snapshot=on"));
        assert!(line.contains("-qmp unix:/w/qmp.sock,server=on,wait=off"));
        assert!(line.contains("isa-debug-exit,iobase=0xf4,iosize=0x04"));
        assert!(line.contains("-no-reboot"));
        assert!(line.contains("+svm,+npt"));
    }

    #[test]
    fn usb_stick_is_on_xhci_and_snapshotted() {
        let machine = config(Firmware::Bios, Medium::UsbStick).allow_reset(true);
        let line = arguments(&machine, Firmware::Bios, Medium::UsbStick, Path::new("/w")).unwrap().join(" ");
        assert!(line.contains("if=none,id=stick,file=/images/basalt.img,format=raw,snapshot=on"));
        assert!(line.contains("-device qemu-xhci"));
        assert!(line.contains("usb-storage,bus=xhci.0,drive=stick"));
        assert!(!line.contains("-no-reboot"));
    }

    #[test]
    fn uefi_uses_a_private_vars_copy() {
        if !ovmf_dir().join(OVMF_VARS).exists() {
            return; // Checked for real by the boot tests, which fail loudly without OVMF.
        }
        let work = std::env::temp_dir().join(format!("basalt-qemu-args-{}", std::process::id()));
        std::fs::create_dir_all(&work).unwrap();
        let line =
            arguments(&config(Firmware::Uefi, Medium::Cdrom), Firmware::Uefi, Medium::Cdrom, &work).unwrap().join(" ");
        assert!(work.join(OVMF_VARS).exists());
        assert!(
            line.contains("readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd")
                || std::env::var_os("BASALT_OVMF_DIR").is_some()
        );
        assert!(line.contains(&format!("if=pflash,format=raw,unit=1,file={}", work.join(OVMF_VARS).display())));
        assert!(line.contains("media=cdrom,readonly=on"));
        assert!(line.contains("-machine q35"));
        let _ = std::fs::remove_dir_all(&work);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("-m"), "-m");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
