//! The vmcoreinfo page of a Linux guest: found in guest-physical memory by its first
//! line, parsed into its `KEY=value` lines.
//!
//! Linux (kernel/crash_core.c) fills one zeroed page at boot with text that starts
//! with `OSRELEASE=`; kdump tools read symbol addresses (`SYMBOL(name)=hex`), structure
//! offsets and sizes (`OFFSET(type.member)=dec`, `SIZE(type)=dec`), constants
//! (`NUMBER(name)=dec`, `LENGTH(name)=dec`) and `KERNELOFFSET=hex` from it, so the
//! debugger does the same instead of hard-coding one kernel's layouts.
//!
//! Invariants: the scan reads only the first bytes of at most
//! [`MAXIMUM_PAGES_SCANNED`] pages; the parse reads at most one page of text and
//! keeps only lines of the `KEY=value` shape.

use alloc::string::String;
use alloc::vec::Vec;

use crate::dcmd::Debuggee;
use crate::target::Target;

const PAGE_SIZE: u64 = 4096;
const MAGIC: &[u8] = b"OSRELEASE=";
/// 16 GiB of guest memory: the scan costs one small read per page.
pub const MAXIMUM_PAGES_SCANNED: u64 = 1 << 22;

/// The parsed vmcoreinfo of a Linux guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmcoreInfo {
    /// Guest-physical address of the page it was read from.
    pub physical_address: u64,
    entries: Vec<(String, String)>,
}

impl VmcoreInfo {
    /// Parses vmcoreinfo text: one `KEY=value` per line, up to the first NUL.
    pub fn parse(text: &[u8]) -> VmcoreInfo {
        let end = text.iter().position(|&byte| byte == 0).unwrap_or(text.len());
        let mut entries = Vec::new();
        for line in text[..end].split(|&byte| byte == b'\n') {
            let Ok(line) = core::str::from_utf8(line) else { continue };
            let Some((key, value)) = line.split_once('=') else { continue };
            if key.is_empty() {
                continue;
            }
            entries.push((String::from(key), String::from(value.trim_end_matches('\r'))));
        }
        VmcoreInfo { physical_address: 0, entries }
    }

    /// The value of `key` exactly as written (the first if repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(name, _)| name == key).map(|(_, value)| value.as_str())
    }

    /// Every line, in page order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|(key, value)| (key.as_str(), value.as_str()))
    }

    fn keyed(&self, kind: &str, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(key, _)| {
                key.len() == kind.len() + name.len() + 2
                    && key.starts_with(kind)
                    && key[kind.len()..].starts_with('(')
                    && key[kind.len() + 1..].starts_with(name)
                    && key.ends_with(')')
            })
            .map(|(_, value)| value.as_str())
    }

    /// `SYMBOL(name)`: a kernel virtual address.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        parse_hex(self.keyed("SYMBOL", name)?)
    }

    /// `OFFSET(type.member)`, e.g. `offset("printk_info.seq")`.
    pub fn offset(&self, type_and_member: &str) -> Option<u64> {
        self.keyed("OFFSET", type_and_member)?.parse().ok()
    }

    /// `SIZE(type)`.
    pub fn size(&self, name: &str) -> Option<u64> {
        self.keyed("SIZE", name)?.parse().ok()
    }

    /// `NUMBER(name)` (signed: some are negative).
    pub fn number(&self, name: &str) -> Option<i64> {
        self.keyed("NUMBER", name)?.parse().ok()
    }

    /// `LENGTH(name)`.
    pub fn length(&self, name: &str) -> Option<u64> {
        self.keyed("LENGTH", name)?.parse().ok()
    }

    /// `OSRELEASE`, e.g. "6.1.0-56-cloud-amd64".
    pub fn os_release(&self) -> Option<&str> {
        self.get("OSRELEASE")
    }

    /// `KERNELOFFSET`: how far KASLR moved the kernel from its link address (0 if absent).
    pub fn kernel_offset(&self) -> u64 {
        self.get("KERNELOFFSET").and_then(parse_hex).unwrap_or(0)
    }

    /// `PAGESIZE`.
    pub fn page_size(&self) -> Option<u64> {
        self.get("PAGESIZE")?.parse().ok()
    }

    /// `BUILD-ID`, as hex text.
    pub fn build_id(&self) -> Option<&str> {
        self.get("BUILD-ID")
    }

    /// The kernel version as (major, minor) from `OSRELEASE`, e.g. (6, 1).
    pub fn version(&self) -> Option<(u32, u32)> {
        let release = self.os_release()?;
        let mut parts = release.split(|character: char| !character.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some((major, minor))
    }
}

fn parse_hex(text: &str) -> Option<u64> {
    let digits = text.trim();
    let digits = digits.strip_prefix("0x").unwrap_or(digits);
    u64::from_str_radix(digits, 16).ok()
}

/// Finds and parses the vmcoreinfo page: the first page of guest-physical memory whose
/// text starts with `OSRELEASE=` and parses to something with a release.
pub fn find(target: &dyn Target) -> Option<VmcoreInfo> {
    let mut scanned = 0u64;
    for (start, end) in target.memory_ranges() {
        let mut page = start.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1);
        while page < end && page.checked_add(PAGE_SIZE).is_some_and(|next| next <= end) {
            if scanned >= MAXIMUM_PAGES_SCANNED {
                return None;
            }
            scanned += 1;
            let mut head = [0u8; MAGIC.len()];
            if target.read_physical(page, &mut head).is_ok() && head == MAGIC {
                let mut text = alloc::vec![0u8; PAGE_SIZE as usize];
                if target.read_physical(page, &mut text).is_ok() {
                    let mut info = VmcoreInfo::parse(&text);
                    if info.os_release().is_some_and(|release| !release.is_empty()) {
                        info.physical_address = page;
                        return Some(info);
                    }
                }
            }
            page += PAGE_SIZE;
        }
    }
    None
}

/// The guest's operating system for `::status`, e.g. "Linux 6.1.0-56-cloud-amd64",
/// when it is a Linux kernel with a vmcoreinfo page.
pub fn operating_system(debuggee: &Debuggee) -> Option<String> {
    Some(alloc::format!("Linux {}", debuggee.vmcoreinfo()?.os_release()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::testing::FakeTarget;
    use alloc::boxed::Box;

    const TEXT: &[u8] = b"OSRELEASE=6.1.0-56-cloud-amd64\nBUILD-ID=0123abcd\nPAGESIZE=4096\n\
SYMBOL(init_uts_ns)=ffffffff82a13b20\nSYMBOL(_stext)=ffffffff81000000\nOFFSET(printk_info.seq)=0\n\
SIZE(printk_info)=88\nNUMBER(pgtable_l5_enabled)=0\nLENGTH(mem_section)=1024\nKERNELOFFSET=2a00000\n\
NUMBER(negative)=-5\nnot a line\n";

    #[test]
    fn parse_reads_every_kind_of_line() {
        let info = VmcoreInfo::parse(TEXT);
        assert_eq!(info.os_release(), Some("6.1.0-56-cloud-amd64"));
        assert_eq!(info.version(), Some((6, 1)));
        assert_eq!(info.build_id(), Some("0123abcd"));
        assert_eq!(info.page_size(), Some(4096));
        assert_eq!(info.symbol("_stext"), Some(0xffff_ffff_8100_0000));
        assert_eq!(info.symbol("_stex"), None);
        assert_eq!(info.offset("printk_info.seq"), Some(0));
        assert_eq!(info.size("printk_info"), Some(88));
        assert_eq!(info.number("pgtable_l5_enabled"), Some(0));
        assert_eq!(info.number("negative"), Some(-5));
        assert_eq!(info.length("mem_section"), Some(1024));
        assert_eq!(info.kernel_offset(), 0x2a0_0000);
        assert_eq!(info.get("not a line"), None);
    }

    #[test]
    fn find_scans_page_starts_and_operating_system_names_it() {
        let mut target = FakeTarget::new();
        target.write_physical(0x1000, b"OSRELEASE");
        target.write_physical(0x2010, TEXT);
        target.write_physical(0x5000, TEXT);
        target.write_physical(0x5000 + TEXT.len() as u64, &[0]);
        let info = find(&target).unwrap();
        assert_eq!(info.physical_address, 0x5000);
        let debuggee = Debuggee::new(Box::new(target));
        assert_eq!(operating_system(&debuggee).as_deref(), Some("Linux 6.1.0-56-cloud-amd64"));
        assert_eq!(operating_system(&Debuggee::new(Box::new(FakeTarget::new()))), None);
    }
}
