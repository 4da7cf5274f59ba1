//! A dump-core file from anywhere: opening never panics, and a core that opens answers
//! every Target method without panicking, with ranges ascending and disjoint, every
//! listed page readable, and no vCPU past the count it reports.
#![no_main]

use basalt_debugger::core_file::CoreFile;
use basalt_debugger::target::{Target, TargetError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(core) = CoreFile::open(data, "fuzz") else {
        return;
    };
    let info = core.info();
    for vcpu in 0..info.vcpus.min(8) {
        assert!(core.registers(vcpu).is_ok());
    }
    assert_eq!(core.registers(info.vcpus), Err(TargetError::NoSuchVcpu(info.vcpus)));

    let ranges = core.memory_ranges();
    assert!(ranges.iter().all(|&(start, end)| start < end));
    assert!(ranges.windows(2).all(|pair| pair[0].1 < pair[1].0));
    let mut buffer = [0u8; 64];
    for &(start, end) in ranges.iter().take(8) {
        assert!(core.read_physical(start, &mut buffer[..1]).is_ok());
        assert!(core.read_physical(end - 1, &mut buffer[..1]).is_ok());
        // Crosses into whatever follows the range (unmapped, by construction).
        assert!(core.read_physical(end - 8, &mut buffer).is_err());
    }
    // An address taken from the input itself.
    if let Some(bytes) = data.get(..8) {
        let address = u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8]));
        let _ = core.read_physical(address, &mut buffer);
        let _ = core.physical_to_machine(address);
        let _ = core.read_machine(address, &mut buffer);
    }
    let _ = core.event_channels();
    let _ = core.grants();
    let _ = core.xenstore();
    if let Ok(Some(page)) = core.shared_info() {
        assert_eq!(page.len(), 4096);
    }
    let _ = core.kernel_symbol_file();
});
