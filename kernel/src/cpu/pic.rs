//! The legacy 8259 PICs: remapped away from the exception vectors and masked, since
//! the hypervisor uses the local APICs and IOAPICs.

use pic8259::ChainedPics;

/// Remaps both PICs to `super::VECTOR_LEGACY_PIC_BASE` and masks every line.
pub fn remap_and_mask() {
    let base = super::VECTOR_LEGACY_PIC_BASE;
    // SAFETY: the PICs sit at their fixed ports 0x20/0xa0 on PC-compatible machines; the
    // offsets chosen do not overlap CPU exceptions, and every line is masked right after.
    unsafe {
        let mut pics = ChainedPics::new(base, base + 8);
        pics.initialize();
        pics.disable();
    }
}
