//! What machine to boot: emulator, firmware, boot medium, CPUs, memory, image.
//!
//! A test picks a whole machine with one value, [`MachineConfig`], whose
//! [`Emulator`] variant selects the backend: QEMU (AMD SVM + NPT under TCG) or Bochs
//! (Intel VMX + EPT, Debian's build). A test that should run on either vendor's
//! virtualization takes an [`EmulatorKind`] and builds its machine with
//! [`MachineConfig::standard`].
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
    /// Debian's `bochs` with an Intel CPU model that has VMX + EPT; always legacy BIOS
    /// (Bochs's rombios from `bochsbios`, the VGA BIOS from `seabios`).
    Bochs {
        /// Bochs `cpu: model=` name, e.g. [`BOCHS_DEFAULT_CPU`] or `corei7_skylake_x`.
        cpu_model: String,
        /// Boot medium: [`Medium::Cdrom`] (read-only) or [`Medium::IdeDisk`] (volatile:
        /// writes go to a journal in the work directory). No USB under Bochs.
        medium: Medium,
    },
}

impl Emulator {
    /// Short human-readable name, e.g. "QEMU BIOS IdeDisk".
    pub fn describe(&self) -> String {
        match self {
            Self::Qemu { firmware, medium } => format!("QEMU {} {medium:?}", firmware.shell_name()),
            Self::Bochs { cpu_model, medium } => format!("Bochs {cpu_model} BIOS {medium:?}"),
        }
    }

    /// The firmware this machine boots with.
    pub fn firmware(&self) -> Firmware {
        match self {
            Self::Qemu { firmware, .. } => *firmware,
            Self::Bochs { .. } => Firmware::Bios,
        }
    }

    /// Which emulator this is, without its machine choices.
    pub fn kind(&self) -> EmulatorKind {
        match self {
            Self::Qemu { .. } => EmulatorKind::Qemu,
            Self::Bochs { .. } => EmulatorKind::Bochs,
        }
    }
}

/// The one parameter a test takes to choose its emulator — and with it the CPU vendor's
/// virtualization extensions the hypervisor runs guests with.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum EmulatorKind {
    /// QEMU TCG: AMD SVM with nested paging (NPT).
    Qemu,
    /// Bochs: Intel VMX with EPT (and unrestricted guest, VPID).
    Bochs,
}

impl EmulatorKind {
    /// Every emulator, for tests that loop over both.
    pub const ALL: [Self; 2] = [Self::Qemu, Self::Bochs];

    /// The features the shell's `info` must list under "Virtualization:" on this
    /// emulator (the names the kernel prints).
    pub fn virtualization_features(self) -> [&'static str; 2] {
        match self {
            Self::Qemu => ["SVM", "NPT"],
            Self::Bochs => ["VMX", "EPT"],
        }
    }

    /// Lower-case name for test and artifact names ("qemu", "bochs").
    pub fn name(self) -> &'static str {
        match self {
            Self::Qemu => "qemu",
            Self::Bochs => "bochs",
        }
    }
}

/// Default QEMU CPU model: has SVM and nested paging under TCG (plain `qemu64` has no NPT).
pub const QEMU_DEFAULT_CPU: &str = "qemu64,+svm,+npt";

/// Default Bochs CPU model: Haswell has VMX with EPT, unrestricted guest and VPID
/// (Penryn lacks EPT, Lynnfield unrestricted guest; see /work/shared/docs/emulators.md).
pub const BOCHS_DEFAULT_CPU: &str = "corei7_haswell_4770";

/// How long a Bochs machine may take to reach the first prompt. Bochs interprets every
/// instruction (~100 MIPS); BIOS + GRUB (3 s menu) + boot take ≈35 s on an idle 2-core
/// host, and the boot tests may run QEMU beside it.
pub const BOCHS_BOOT_TIMEOUT: Duration = Duration::from_secs(480);

/// Everything needed to boot one machine.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// Emulator and its machine choices.
    pub emulator: Emulator,
    /// Number of CPUs (QEMU `-smp`, Bochs `cpu: count=`).
    pub cpus: u32,
    /// RAM in MiB (QEMU `-m`, Bochs `megs:`).
    pub memory_mib: u32,
    /// The bootable image; never modified (attached with snapshot=on or read-only).
    pub image: PathBuf,
    /// CPU model string for QEMU's `-cpu`. (Bochs takes its model from
    /// [`Emulator::Bochs`]; [`MachineConfig::bochs`] copies it here for logs.)
    pub cpu_model: String,
    /// Whether a guest reset restarts the machine (needed by `reboot` tests). When false,
    /// QEMU runs with `-no-reboot` and Bochs with `reset_on_triple_fault=0`, so a triple
    /// fault ends the run at once instead of boot-looping until a timeout.
    pub allow_reset: bool,
    /// How long [`crate::Machine::expect_boot_prompt`] waits for the first prompt.
    pub boot_timeout: Duration,
    /// Serial text that means the machine is dead or damaged (a hypervisor panic, a CPU
    /// exception): an `expect` that sees one fails at once instead of waiting for its
    /// timeout.
    pub fatal_markers: Vec<String>,
    /// More emulator arguments, appended last (e.g. `-icount shift=0` for benchmarks
    /// whose cycle counts must not depend on the host's load). For Bochs, each entry is
    /// one more bochsrc line (e.g. `cpuid: ...` overrides).
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

    /// A Bochs machine: [`BOCHS_DEFAULT_CPU`] (Intel VMX + EPT), 2 CPUs, 512 MiB, BIOS,
    /// the default image on `medium`, a [`BOCHS_BOOT_TIMEOUT`] boot timeout.
    pub fn bochs(medium: Medium) -> Self {
        Self {
            emulator: Emulator::Bochs { cpu_model: BOCHS_DEFAULT_CPU.to_owned(), medium },
            cpus: 2,
            memory_mib: 512,
            image: default_image(),
            cpu_model: BOCHS_DEFAULT_CPU.to_owned(),
            allow_reset: false,
            boot_timeout: BOCHS_BOOT_TIMEOUT,
            fatal_markers: vec![PANIC_MARKER.to_owned(), EXCEPTION_MARKER.to_owned()],
            extra_args: Vec::new(),
        }
    }

    /// The standard machine of `kind`, the one most tests use: QEMU BIOS + IDE disk or
    /// Bochs + CD-ROM (Haswell), both with 2 CPUs and 512 MiB.
    pub fn standard(kind: EmulatorKind) -> Self {
        match kind {
            EmulatorKind::Qemu => Self::qemu(Firmware::Bios, Medium::IdeDisk),
            EmulatorKind::Bochs => Self::bochs(Medium::Cdrom),
        }
    }

    /// Uses Bochs CPU model `model` (no effect on QEMU machines; set
    /// [`MachineConfig::cpu_model`] there).
    pub fn with_bochs_cpu(mut self, model: &str) -> Self {
        if let Emulator::Bochs { cpu_model, .. } = &mut self.emulator {
            model.clone_into(cpu_model);
            model.clone_into(&mut self.cpu_model);
        }
        self
    }

    /// Sets the number of CPUs.
    pub fn with_cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }

    /// Sets the memory size in MiB.
    pub fn with_memory_mib(mut self, memory_mib: u32) -> Self {
        self.memory_mib = memory_mib;
        self
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
