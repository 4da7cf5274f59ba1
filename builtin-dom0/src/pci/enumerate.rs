//! Enumeration: a depth-first walk of the bus hierarchy from bus 0, in the order Linux
//! numbers devices (a bridge's subtree is listed right after the bridge).
//!
//! Firmware has already numbered the buses; we read, never reprogram, the bridges'
//! secondary/subordinate numbers, and distrust them: a bridge's secondary bus is
//! followed only if it is above the bridge's own bus, inside the parent's
//! [secondary, subordinate] window and not visited before. So no bus is scanned twice,
//! at most 256 buses are scanned, and loops (or a secondary bus 0) end the walk.
//! The walk keeps its own stack (no recursion) and stops at 256 × 32 × 8 functions.
//!
//! Spec: PCI Local Bus Specification 3.0 §6.1 (vendor 0xFFFF = absent, header type
//! bit 7 = multi-function); PCI-to-PCI Bridge Architecture Specification 1.2 §3.2.5.

use alloc::vec::Vec;

use super::bars::{size_bars, Bar};
use super::capabilities::{read_capabilities, read_extended_capabilities, Capability, ExtendedCapability};
use super::config::{
    read16, read8, read_dword, ConfigSpace, PciAddress, PCI_DEVICE_ID, PCI_HEADER_TYPE, PCI_INTERRUPT_LINE,
    PCI_PRIMARY_BUS, PCI_REVISION_ID, PCI_SUBSYSTEM_VENDOR_ID, PCI_VENDOR_ID,
};
use super::ids;

/// Header type bits 6:0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderType {
    /// Type 0: a device (endpoint), six BARs.
    Endpoint,
    /// Type 1: a PCI-to-PCI bridge, two BARs and bus numbers.
    PciBridge,
    /// Type 2: a CardBus bridge (not walked, no BARs decoded).
    CardBusBridge,
    /// Anything else (reserved): nothing past the common header is decoded.
    Unknown(u8),
}

impl HeaderType {
    fn from_register(value: u8) -> Self {
        match value & 0x7F {
            0 => Self::Endpoint,
            1 => Self::PciBridge,
            2 => Self::CardBusBridge,
            other => Self::Unknown(other),
        }
    }

    /// BAR slots in this layout.
    pub fn bar_count(self) -> u8 {
        match self {
            Self::Endpoint => 6,
            Self::PciBridge => 2,
            Self::CardBusBridge | Self::Unknown(_) => 0,
        }
    }
}

/// Class code register: base class, sub-class, programming interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassCode {
    pub class: u8,
    pub subclass: u8,
    pub prog_if: u8,
}

impl ClassCode {
    /// Human name from [`ids::class_name`].
    pub fn name(&self) -> &'static str {
        ids::class_name(self.class, self.subclass, self.prog_if)
    }
}

/// A type-1 header's bus numbers, as firmware left them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeBuses {
    pub primary: u8,
    pub secondary: u8,
    pub subordinate: u8,
    /// Whether the walk went below this bridge (false when the numbers were rejected
    /// as a loop, out of the parent's window, or already visited).
    pub scanned: bool,
}

/// One function found by [`enumerate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciFunction {
    pub address: PciAddress,
    pub vendor_id: u16,
    pub device_id: u16,
    pub class: ClassCode,
    pub revision: u8,
    pub header_type: HeaderType,
    /// Header type bit 7 (of this function's own header).
    pub multi_function: bool,
    /// Type 0 only (0 otherwise).
    pub subsystem_vendor_id: u16,
    /// Type 0 only (0 otherwise).
    pub subsystem_id: u16,
    /// IRQ line firmware routed INTx to (0xFF = none).
    pub interrupt_line: u8,
    /// 0 = no INTx, 1..=4 = INTA#..INTD#.
    pub interrupt_pin: u8,
    pub bars: Vec<Bar>,
    pub capabilities: Vec<Capability>,
    pub extended_capabilities: Vec<ExtendedCapability>,
    /// Type 1 only.
    pub bridge: Option<BridgeBuses>,
}

impl PciFunction {
    /// True for a virtio block device (see [`ids::is_virtio_blk`]).
    pub fn is_virtio_blk(&self) -> bool {
        ids::is_virtio_blk(self.vendor_id, self.device_id)
    }

    /// The sized BAR in slot `index`, if implemented.
    pub fn bar(&self, index: u8) -> Option<&Bar> {
        self.bars.iter().find(|bar| bar.index == index)
    }

    /// The first capability with ID `id`.
    pub fn capability(&self, id: u8) -> Option<&Capability> {
        self.capabilities.iter().find(|capability| capability.id == id)
    }
}

/// A bus being scanned: its number, the next device number to look at, and the
/// highest bus number its subtree may contain.
struct BusCursor {
    bus: u8,
    next_device: u8,
    subordinate: u8,
}

/// Finds every function under bus 0 of `segment`, depth-first. BARs are sized (see
/// [`size_bars`]); nothing else is written. Never panics and always terminates,
/// whatever the configuration space says.
pub fn enumerate<C: ConfigSpace + ?Sized>(config: &mut C, segment: u16) -> Vec<PciFunction> {
    let mut functions = Vec::new();
    let mut visited = [false; 256];
    visited[0] = true;
    let mut stack = alloc::vec![BusCursor { bus: 0, next_device: 0, subordinate: u8::MAX }];

    while let Some(cursor) = stack.last_mut() {
        if cursor.next_device >= 32 {
            stack.pop();
            continue;
        }
        let bus = cursor.bus;
        let device = cursor.next_device;
        let window_end = cursor.subordinate;
        cursor.next_device += 1;

        let mut children = Vec::new();
        let mut function_count = 1;
        let mut function = 0;
        while function < function_count {
            let address = PciAddress { segment, bus, device, function };
            function += 1;
            let Some(mut found) = probe_function(config, address) else {
                if address.function == 0 {
                    break; // No function 0: no device (§6.1).
                }
                continue;
            };
            if address.function == 0 && found.multi_function {
                function_count = 8;
            }
            if let Some(buses) = found.bridge.as_mut() {
                let secondary = buses.secondary;
                if secondary > bus && secondary <= window_end && !visited[usize::from(secondary)] {
                    visited[usize::from(secondary)] = true;
                    buses.scanned = true;
                    children.push(BusCursor {
                        bus: secondary,
                        next_device: 0,
                        // An absurd subordinate (below secondary, or past the parent's
                        // window) is clamped into [secondary, parent's subordinate].
                        subordinate: buses.subordinate.clamp(secondary, window_end),
                    });
                }
            }
            functions.push(found);
        }
        // Children of later functions are scanned after earlier ones: push in reverse.
        stack.extend(children.into_iter().rev());
    }
    functions
}

/// Reads one function's header, or `None` if nothing answers there.
fn probe_function<C: ConfigSpace + ?Sized>(config: &mut C, address: PciAddress) -> Option<PciFunction> {
    let vendor_id = read16(config, address, PCI_VENDOR_ID);
    // 0xFFFF: master abort. 0x0000 is not a valid vendor either (a dead link, or a
    // device in reset on some chipsets).
    if vendor_id == 0xFFFF || vendor_id == 0 {
        return None;
    }
    let device_id = read16(config, address, PCI_DEVICE_ID);
    let class_register = read_dword(config, address, PCI_REVISION_ID);
    let header_register = read8(config, address, PCI_HEADER_TYPE);
    let header_type = HeaderType::from_register(header_register);
    let interrupt = read_dword(config, address, PCI_INTERRUPT_LINE);

    let (subsystem_vendor_id, subsystem_id) = if header_type == HeaderType::Endpoint {
        let subsystem = read_dword(config, address, PCI_SUBSYSTEM_VENDOR_ID);
        (subsystem as u16, (subsystem >> 16) as u16)
    } else {
        (0, 0)
    };
    let bridge = (header_type == HeaderType::PciBridge).then(|| {
        let buses = read_dword(config, address, PCI_PRIMARY_BUS);
        BridgeBuses {
            primary: buses as u8,
            secondary: (buses >> 8) as u8,
            subordinate: (buses >> 16) as u8,
            scanned: false,
        }
    });
    let (capabilities, extended_capabilities) = match header_type {
        HeaderType::Endpoint | HeaderType::PciBridge => {
            (read_capabilities(config, address), read_extended_capabilities(config, address))
        }
        HeaderType::CardBusBridge | HeaderType::Unknown(_) => (Vec::new(), Vec::new()),
    };
    let bars = size_bars(config, address, header_type.bar_count());

    Some(PciFunction {
        address,
        vendor_id,
        device_id,
        class: ClassCode {
            class: (class_register >> 24) as u8,
            subclass: (class_register >> 16) as u8,
            prog_if: (class_register >> 8) as u8,
        },
        revision: class_register as u8,
        header_type,
        multi_function: header_register & 0x80 != 0,
        subsystem_vendor_id,
        subsystem_id,
        interrupt_line: interrupt as u8,
        interrupt_pin: (interrupt >> 8) as u8,
        bars,
        capabilities,
        extended_capabilities,
        bridge,
    })
}
