//! What machine to boot: emulator, firmware, boot medium, CPUs, memory, image.
//!
//! A test picks a whole machine with one value, [`MachineConfig`], whose
//! [`Emulator`] variant selects the backend. QEMU (AMD SVM + NPT under TCG) is
//! implemented; Bochs (Intel VMX + EPT) is the planned second variant — see
//! `backend/mod.rs` and the README for where it plugs in.
//!
//! Paths: the workspace root is this crate's parent directory; the image defaults to
//! `<workspace>/build/basalt.img` and the `BASALT_IMAGE` environment variable overrides
//! it; transcripts go to `<workspace>/build/qemu-tests/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which firmware boots the image.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Firmware {
    /// Legacy BIOS (SeaBIOS under QEMU).
    Bios,
    /// UEFI (OVMF under QEMU).
    Uefi,
}

impl Firmware {
    /// The word the shell's `info` prints after "Firmware: ".
    pub fn shell_name(self) -> &'static str {
        match self {
            Self::Bios => "BIOS",
            Self::Uefi => "UEFI",
        }
    }
}

/// What the image is attached as.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Medium {
    /// A hard disk on the machine's IDE/AHCI controller.
    IdeDisk,
    /// A USB mass-storage stick on an xHCI controller.
    UsbStick,
    /// A CD-ROM (El Torito boot of the hybrid image).
    Cdrom,
}

/// The emulator, with its emulator-specific machine choices.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Emulator {
    /// `qemu-system-x86_64 -accel tcg` with an SVM+NPT CPU model.
    Qemu {
        /// BIOS or UEFI.
        firmware: Firmware,
        /// Boot medium.
        medium: Medium,
    },
    // Planned: `Bochs { cpu_model: &'static str, medium: Medium }` (Intel VMX + EPT,
    // e.g. corei7_haswell_4770) — see backend/mod.rs.
}

impl Emulator {
    /// Short human-readable name, e.g. "QEMU BIOS IdeDisk".
    pub fn describe(&self) -> String {
        match self {
            Self::Qemu { firmware, medium } => format!("QEMU {} {medium:?}", firmware.shell_name()),
        }
    }

    /// The firmware this machine boots with.
    pub fn firmware(&self) -> Firmware {
        match self {
            Self::Qemu { firmware, .. } => *firmware,
        }
    }
}

/// Default QEMU CPU model: has SVM and nested paging under TCG (plain `qemu64` has no NPT).
pub const QEMU_DEFAULT_CPU: &str = "qemu64,+svm,+npt";

/// Everything needed to boot one machine.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// Emulator and its machine choices.
    pub emulator: Emulator,
    /// Number of CPUs (`-smp`).
    pub cpus: u32,
    /// RAM in MiB (`-m`).
    pub memory_mib: u32,
    /// The bootable image; never modified (attached with snapshot=on or read-only).
    pub image: PathBuf,
    /// CPU model string for QEMU's `-cpu`.
    pub cpu_model: String,
    /// Whether a guest reset restarts the machine (needed by `reboot` tests). When false,
    /// QEMU runs with `-no-reboot`, so a triple fault ends the run at once instead of
    /// boot-looping until a timeout.
    pub allow_reset: bool,
    /// How long [`crate::Machine::expect_boot_prompt`] waits for the first prompt.
    pub boot_timeout: Duration,
    /// Serial text that means the machine is dead or damaged (a hypervisor panic, a CPU
    /// exception): an `expect` that sees one fails at once instead of waiting for its
    /// timeout.
    pub fatal_markers: Vec<String>,
    /// More emulator arguments, appended last (e.g. `-icount shift=0` for benchmarks
    /// whose cycle counts must not depend on the host's load).
    pub extra_args: Vec<String>,
}

/// The kernel's panic banner (`*** HYPERVISOR PANIC on CPU n: ...`).
pub const PANIC_MARKER: &str = "*** HYPERVISOR PANIC";
/// The kernel's CPU-exception banner (`*** HYPERVISOR EXCEPTION on CPU n: vector ...`);
/// the CPU that prints it halts. Fatal unless a test expects it (the `fault` command):
/// see [`crate::Machine::expect_allowing`].
pub const EXCEPTION_MARKER: &str = "*** HYPERVISOR EXCEPTION";

impl MachineConfig {
    /// A QEMU machine with 2 CPUs, 512 MiB and the default image.
    pub fn qemu(firmware: Firmware, medium: Medium) -> Self {
        Self {
            emulator: Emulator::Qemu { firmware, medium },
            cpus: 2,
            memory_mib: 512,
            image: default_image(),
            cpu_model: QEMU_DEFAULT_CPU.to_owned(),
            allow_reset: false,
            // TCG on a loaded 2-core machine; OVMF adds its own start-up time.
            boot_timeout: match firmware {
                Firmware::Bios => Duration::from_secs(180),
                Firmware::Uefi => Duration::from_secs(300),
            },
            fatal_markers: vec![PANIC_MARKER.to_owned(), EXCEPTION_MARKER.to_owned()],
            extra_args: Vec::new(),
        }
    }

    /// Boots `image` instead of the default image.
    pub fn with_image(mut self, image: PathBuf) -> Self {
        self.image = image;
        self
    }

    /// Appends emulator arguments (see [`MachineConfig::extra_args`]).
    pub fn with_extra_args(mut self, args: &[&str]) -> Self {
        self.extra_args.extend(args.iter().map(|arg| (*arg).to_owned()));
        self
    }

    /// Sets [`MachineConfig::allow_reset`].
    pub fn allow_reset(mut self, allow: bool) -> Self {
        self.allow_reset = allow;
        self
    }
}

/// The cargo workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `$BASALT_IMAGE`, else `<workspace>/build/basalt.img`.
pub fn default_image() -> PathBuf {
    match std::env::var_os("BASALT_IMAGE") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => workspace_root().join("build").join("basalt.img"),
    }
}

/// `<workspace>/build/basalt.elf`, the hypervisor binary inside the image.
pub fn hypervisor_elf() -> PathBuf {
    workspace_root().join("build").join("basalt.elf")
}

/// `<workspace>/build/qemu-tests`, where transcripts are saved.
pub fn artifacts_dir() -> PathBuf {
    workspace_root().join("build").join("qemu-tests")
}
