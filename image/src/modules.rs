//! The multiboot2 modules GRUB loaded (guest kernels, ramdisks, domain configs), by
//! name: a module's name is its GRUB command line (`module2 /boot/modules/demo.elf
//! demo.elf`). Their memory is reserved from the frame allocator at boot, so the bytes
//! stay valid and unchanged for the life of the hypervisor.

use alloc::string::String;
use alloc::vec::Vec;
use basalt_kernel::mm::phys_to_virt;
use multiboot2::BootInformation;

struct Module {
    name: String,
    start: u64,
    length: usize,
}

static MODULES: spin::Once<Vec<Module>> = spin::Once::new();

/// Records every module (called once at boot, while the boot information is valid).
pub fn record(boot_info: &BootInformation<'_>) {
    MODULES.call_once(|| {
        boot_info
            .module_tags()
            .filter_map(|tag| {
                let name = String::from(tag.cmdline().ok()?.trim());
                let start = u64::from(tag.start_address());
                let length = tag.module_size() as usize;
                Some(Module { name, start, length })
            })
            .collect()
    });
}

/// The bytes of the module called `name`.
pub fn find(name: &str) -> Option<&'static [u8]> {
    let module = MODULES.get()?.iter().find(|module| module.name == name)?;
    // SAFETY: GRUB loaded the module at [start, start + length); boot reserved that range
    // from the frame allocator and nothing writes it, so it is valid, immutable memory
    // for the rest of the hypervisor's life, reached through the direct map.
    Some(unsafe { core::slice::from_raw_parts(phys_to_virt(module.start) as *const u8, module.length) })
}

/// Every module name, in load order.
pub fn names() -> Vec<String> {
    MODULES.get().map(|modules| modules.iter().map(|module| module.name.clone()).collect()).unwrap_or_default()
}
