//! Host tests for the AHCI driver against the [`fake_hba`](super::fake_hba) model:
//! probing (which ports become disks, with which geometry), data round trips
//! (including requests split over several chunks), flush, error and timeout recovery,
//! hostile device values, and DMA memory accounting.

extern crate std;

use super::fake_hba::{identify_words, FakeAbar, FakeDisk, FakeHba, FakePort, Faults, PXCMD_CR, PXCMD_FR};
use super::*;
use crate::block::{Completion, Request};
use crate::drivers::fake::{add_msi_capability, TEST_MESSAGE};
use crate::drivers::fake::{FakeMemory, FakePlatform};
use crate::pci::{
    read_command, BarKind, ByteConfigSpace, ClassCode, HeaderType, PciAddress, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY,
};
use alloc::vec;
use core::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Mutex;

const MODEL: &str = "BASALT FAKE DISK";
const SECTORS: u64 = 4096;

struct Rig {
    memory: Arc<FakeMemory>,
    clock: Arc<FakePlatform>,
    platform: Arc<dyn Platform>,
    hba: Arc<Mutex<FakeHba>>,
    config: ByteConfigSpace,
    function: PciFunction,
}

fn address() -> PciAddress {
    PciAddress::new(0, 0, 0x1f, 2).unwrap()
}

fn ahci_function(class: ClassCode) -> PciFunction {
    PciFunction {
        address: address(),
        vendor_id: 0x8086,
        device_id: 0x2922,
        class,
        revision: 2,
        header_type: HeaderType::Endpoint,
        multi_function: true,
        subsystem_vendor_id: 0,
        subsystem_id: 0,
        interrupt_line: 0xFF,
        interrupt_pin: 1,
        bars: vec![Bar { index: 5, kind: BarKind::Memory32, address: 0xFEBF_1000, size: 0x1000, prefetchable: false }],
        capabilities: Vec::new(),
        extended_capabilities: Vec::new(),
        bridge: None,
    }
}

const AHCI_CLASS: ClassCode = ClassCode { class: 0x01, subclass: 0x06, prog_if: 0x01 };

fn rig(ports: Vec<FakePort>) -> Rig {
    let memory = FakeMemory::new();
    let clock = Arc::new(FakePlatform::new(memory.clone()));
    let hba = FakeHba::new(memory.clone(), ports);
    let shared = hba.clone();
    clock.set_bar(5, move || Box::new(FakeAbar(shared.clone())));
    let platform: Arc<dyn Platform> = clock.clone();
    let config = ByteConfigSpace { functions: vec![(address(), vec![0; 256])], extended: false };
    Rig { memory, clock, platform, hba, config, function: ahci_function(AHCI_CLASS) }
}

fn disk_rig() -> Rig {
    rig(vec![FakePort::with_disk(FakeDisk::new(MODEL, SECTORS, 512))])
}

impl Rig {
    fn probe(&mut self) -> Result<AhciProbe, DriverError> {
        probe_ports(ProbeContext { function: &self.function, config: &mut self.config, platform: &self.platform })
    }

    fn only_disk(&mut self) -> AhciDisk {
        let mut probe = self.probe().expect("probe");
        assert!(probe.port_errors.is_empty(), "{:?}", probe.port_errors);
        assert_eq!(probe.disks.len(), 1);
        probe.disks.remove(0)
    }

    fn port(&self, index: usize) -> PortGuard<'_> {
        PortGuard { hba: self.hba.lock().unwrap(), index }
    }

    fn set_faults(&self, port: usize, faults: Faults) {
        self.hba.lock().unwrap().ports[port].faults = faults;
    }

    fn run(&self, port: usize) {
        self.hba.lock().unwrap().run(port);
    }

    fn run_next(&self, port: usize) {
        self.hba.lock().unwrap().run_next(port);
    }

    /// Gives the machine an interrupt message and the controller MSI (as ICH9 has).
    fn with_message_interrupts(&mut self) {
        self.clock.set_interrupt_message(Some(TEST_MESSAGE));
        add_msi_capability(&mut self.config.functions[0].1, 0x80, false, false);
        self.function.capabilities = crate::pci::read_capabilities(&mut self.config, address());
    }

    fn messages(&self) -> u32 {
        self.hba.lock().unwrap().messages
    }
}

/// One fake port, with the model locked.
struct PortGuard<'a> {
    hba: std::sync::MutexGuard<'a, FakeHba>,
    index: usize,
}

impl core::ops::Deref for PortGuard<'_> {
    type Target = FakePort;
    fn deref(&self) -> &FakePort {
        &self.hba.ports[self.index]
    }
}

impl core::ops::DerefMut for PortGuard<'_> {
    fn deref_mut(&mut self) -> &mut FakePort {
        &mut self.hba.ports[self.index]
    }
}

/// Polls until `id` completes (a bounded number of times); returns its completion.
fn wait_for(disk: &mut AhciDisk, id: RequestId) -> Completion {
    let mut completions = Vec::new();
    for _ in 0..16 {
        disk.poll_completions(&mut completions);
        if let Some(index) = completions.iter().position(|completion| completion.id == id) {
            return completions.remove(index);
        }
    }
    panic!("request {id:?} did not complete");
}

fn run_one(disk: &mut AhciDisk, request: Request) -> Completion {
    let id = disk.submit(request).expect("submit");
    wait_for(disk, id)
}

fn pattern(length: usize, seed: u8) -> Vec<u8> {
    (0..length).map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn matches_only_ahci_class() {
    assert!(matches(&ahci_function(AHCI_CLASS)));
    assert!(!matches(&ahci_function(ClassCode { class: 0x01, subclass: 0x06, prog_if: 0x00 })));
    assert!(!matches(&ahci_function(ClassCode { class: 0x01, subclass: 0x08, prog_if: 0x02 })));
    let mut rig = disk_rig();
    rig.function = ahci_function(ClassCode { class: 0x01, subclass: 0x01, prog_if: 0x80 });
    assert_eq!(rig.probe().err(), Some(DriverError::NotMine));
}

#[test]
fn probe_without_abar_is_refused() {
    let mut rig = disk_rig();
    rig.function.bars.clear();
    assert_eq!(rig.probe().err(), Some(DriverError::NoBar(5)));
}

#[test]
fn probe_finds_the_sata_disk_and_skips_empty_and_atapi_ports() {
    let mut rig = rig(vec![
        FakePort::empty(),
        FakePort::atapi(),
        FakePort::with_disk(FakeDisk::new(MODEL, SECTORS, 512)),
        FakePort::with_disk(FakeDisk::new("SECOND", 100, 512)),
    ]);
    let probe = rig.probe().unwrap();
    assert!(probe.port_errors.is_empty(), "{:?}", probe.port_errors);
    let ports: Vec<u32> = probe.disks.iter().map(AhciDisk::port_number).collect();
    assert_eq!(ports, [2, 3]);
    let info = probe.disks[0].info();
    assert_eq!(info.model, MODEL);
    assert_eq!(info.capacity, SECTORS);
    assert_eq!(info.logical_block_size, 512);
    assert_eq!(info.physical_block_size, 512);
    assert!(info.supports_flush);
    assert!(info.supports_discard);
    assert!(!info.read_only);
    assert_eq!(info.queue_depth, MAX_SLOTS_USED as u32);
    assert_eq!(probe.disks[1].info().model, "SECOND");
    assert_eq!(probe.disks[1].info().capacity, 100);

    let hba = rig.hba.lock().unwrap();
    assert_ne!(hba.ghc & GHC_AE, 0);
    assert_eq!(hba.ports[2].commands, [ATA_CMD_IDENTIFY_DEVICE]);
    assert!(hba.ports[1].commands.is_empty(), "the ATAPI port is left alone");
    assert_eq!(hba.ports[2].cmd & (PXCMD_ST | PXCMD_FRE), PXCMD_ST | PXCMD_FRE);
    assert_eq!(hba.ports[2].ie, 0);
    drop(hba);
    let command = read_command(&mut rig.config, address());
    assert_eq!(command & (PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY), PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY);
}

#[test]
fn queue_depth_follows_cap_ncs() {
    let mut rig = disk_rig();
    let cap = rig.hba.lock().unwrap().cap;
    rig.hba.lock().unwrap().cap = (cap & !(0x1F << 8)) | 3 << 8;
    assert_eq!(rig.only_disk().info().queue_depth, 4);
}

#[test]
fn probe_takes_over_a_port_firmware_left_running() {
    let mut rig = disk_rig();
    {
        let mut port = rig.port(0);
        port.cmd = PXCMD_ST | PXCMD_FRE | PXCMD_CR | PXCMD_FR;
        port.clb = 0x7000;
        port.fb = 0x8000;
    }
    let mut disk = rig.only_disk();
    assert_ne!(rig.port(0).clb, 0x7000);
    let completion = run_one(&mut disk, Request::read(0, 1, 512).unwrap());
    assert_eq!(completion.result, Ok(()));
}

#[test]
fn read_write_round_trip() {
    let mut rig = disk_rig();
    let mut disk = rig.only_disk();
    let data = pattern(3 * 512, 7);
    let completion = run_one(&mut disk, Request::write(5, 3, data.clone()));
    assert_eq!(completion.result, Ok(()));
    assert_eq!(&rig.port(0).disk.as_ref().unwrap().data[5 * 512..8 * 512], &data[..]);

    let completion = run_one(&mut disk, Request::read(5, 3, 512).unwrap());
    assert_eq!(completion.result, Ok(()));
    assert_eq!(completion.buffer, data);
    let commands = rig.port(0).commands.clone();
    assert_eq!(commands, [ATA_CMD_IDENTIFY_DEVICE, ATA_CMD_WRITE_DMA_EXT, ATA_CMD_READ_DMA_EXT]);
}

#[test]
fn large_requests_are_split_into_chunks_on_one_slot() {
    let mut rig = disk_rig();
    let mut disk = rig.only_disk();
    // 600 blocks: chunks of 256, 256 and 88 blocks.
    let blocks = 600;
    let data = pattern(blocks * 512, 3);
    let completion = run_one(&mut disk, Request::write(10, blocks as u32, data.clone()));
    assert_eq!(completion.result, Ok(()));
    let completion = run_one(&mut disk, Request::read(10, blocks as u32, 512).unwrap());
    assert_eq!(completion.result, Ok(()));
    assert_eq!(completion.buffer, data);
    let port = rig.port(0);
    let writes = port.commands.iter().filter(|&&command| command == ATA_CMD_WRITE_DMA_EXT).count();
    let reads = port.commands.iter().filter(|&&command| command == ATA_CMD_READ_DMA_EXT).count();
    assert_eq!((writes, reads), (3, 3));
    assert_eq!(&port.disk.as_ref().unwrap().data[10 * 512..610 * 512], &data[..]);
}

#[test]
fn four_kib_sectors() {
    let mut rig = rig(vec![FakePort::with_disk(FakeDisk::new("4K DISK", 64, 4096))]);
    let mut disk = rig.only_disk();
    let info = disk.info();
    assert_eq!((info.logical_block_size, info.capacity), (4096, 64));
    let data = pattern(40 * 4096, 9);
    assert_eq!(run_one(&mut disk, Request::write(20, 40, data.clone())).result, Ok(()));
    let completion = run_one(&mut disk, Request::read(20, 40, 4096).unwrap());
    assert_eq!(completion.buffer, data);
}

#[test]
fn flush_issues_flush_cache_ext() {
    let mut rig = disk_rig();
    let mut disk = rig.only_disk();
    let completion = run_one(&mut disk, Request::flush());
    assert_eq!(completion.result, Ok(()));
    assert_eq!(rig.port(0).commands.last(), Some(&ATA_CMD_FLUSH_CACHE_EXT));
}

#[test]
fn discard_trims_the_range() {
    let mut rig = disk_rig();
    let mut disk = rig.only_disk();
    let data = pattern(8 * 512, 5);
    assert_eq!(run_one(&mut disk, Request::write(0, 8, data.clone())).result, Ok(()));
    assert_eq!(run_one(&mut disk, Request::discard(2, 3)).result, Ok(()));
    assert_eq!(rig.port(0).commands.last(), Some(&ATA_CMD_DATA_SET_MANAGEMENT));
    assert_eq!(rig.port(0).disk.as_ref().unwrap().trims, [(2, 3)]);
    let read = run_one(&mut disk, Request::read(0, 8, 512).unwrap()).buffer;
    assert_eq!(read[..2 * 512], data[..2 * 512]);
    assert!(read[2 * 512..5 * 512].iter().all(|&byte| byte == 0));
    assert_eq!(read[5 * 512..], data[5 * 512..]);
}

#[test]
fn a_large_discard_is_split_into_ranges_and_commands() {
    // 9 000 000 sectors from LBA 10: one command carries 64 ranges of 65535 sectors
    // (IDENTIFY word 105 = 1 payload block), so three commands.
    let capacity = 10_000_000;
    let mut rig = rig(vec![FakePort::with_disk(FakeDisk::sparse("BIG", capacity, 16, 512))]);
    let mut disk = rig.only_disk();
    let blocks = 9_000_000;
    assert_eq!(run_one(&mut disk, Request::discard(10, blocks)).result, Ok(()));
    let port = rig.port(0);
    let commands = port.commands.iter().filter(|&&command| command == ATA_CMD_DATA_SET_MANAGEMENT).count();
    assert_eq!(commands, 3);
    let trims = &port.disk.as_ref().unwrap().trims;
    assert_eq!(trims.len(), (blocks as usize).div_ceil(65535));
    let mut next = 10;
    for &(first, sectors) in trims {
        assert_eq!(first, next, "ranges are consecutive");
        assert!((1..=65535).contains(&sectors));
        next += sectors;
    }
    assert_eq!(next, 10 + u64::from(blocks));
}

#[test]
fn discard_is_refused_without_trim() {
    let mut fake = FakeDisk::new(MODEL, SECTORS, 512);
    fake.identify[169] = 0;
    let mut rig = rig(vec![FakePort::with_disk(fake)]);
    let mut disk = rig.only_disk();
    assert!(!disk.info().supports_discard);
    assert_eq!(disk.submit(Request::discard(0, 1)), Err(BlockError::Unsupported(Op::Discard)));
}

#[test]
fn invalid_requests_are_refused_before_reaching_the_device() {
    let mut rig = disk_rig();
    let mut disk = rig.only_disk();
    assert!(matches!(disk.submit(Request::read(SECTORS, 1, 512).unwrap()), Err(BlockError::OutOfRange { .. })));
    assert_eq!(
        disk.submit(Request::write(0, 2, vec![0; 512])),
        Err(BlockError::BufferLength { expected: 1024, actual: 512 })
    );
    assert_eq!(rig.port(0).commands, [ATA_CMD_IDENTIFY_DEVICE]);
}

#[test]
fn queue_full_beyond_the_slots() {
    let mut rig = disk_rig();
    let mut disk = rig.only_disk();
    rig.set_faults(0, Faults { deferred: true, ..Faults::default() });
    let depth = disk.info().queue_depth;
    let ids: Vec<RequestId> =
        (0..depth).map(|lba| disk.submit(Request::read(lba.into(), 1, 512).unwrap()).unwrap()).collect();
    assert_eq!(disk.submit(Request::read(0, 1, 512).unwrap()), Err(BlockError::QueueFull));
    rig.run(0);
    let mut completions = Vec::new();
    disk.poll_completions(&mut completions);
    let mut completed: Vec<RequestId> = completions.iter().map(|completion| completion.id).collect();
    completed.sort();
    assert_eq!(completed, ids);
    assert!(completions.iter().all(|completion| completion.result == Ok(())));
}

#[test]
fn task_file_error_fails_its_request_and_the_port_keeps_working() {
    let mut rig = disk_rig();
    let mut disk = rig.only_disk();
    rig.port(0).disk.as_mut().unwrap().data[..4 * 512].copy_from_slice(&pattern(4 * 512, 1));
    rig.set_faults(0, Faults { fail_lba: Some(2), deferred: true, ..Faults::default() });
    let first = disk.submit(Request::read(1, 1, 512).unwrap()).unwrap();
    let failing = disk.submit(Request::read(2, 1, 512).unwrap()).unwrap();
    let third = disk.submit(Request::read(3, 1, 512).unwrap()).unwrap();

    rig.run_next(0);
    let completion = wait_for(&mut disk, first);
    assert_eq!(completion.result, Ok(()));
    rig.run_next(0);
    let mut completions = Vec::new();
    disk.poll_completions(&mut completions);
    assert_eq!(completions.len(), 1);
    assert_eq!((completions[0].id, completions[0].result), (failing, Err(BlockError::Io)));
    assert_eq!(rig.port(0).ci, 1 << 2, "the request behind it is issued again after the restart");
    rig.run(0);
    let completion = wait_for(&mut disk, third);
    assert_eq!(completion.result, Ok(()));
    assert_eq!(completion.buffer, pattern(4 * 512, 1)[3 * 512..]);
    assert_eq!(rig.port(0).comresets, 0, "a stop sufficed: the device was not busy");

    rig.set_faults(0, Faults::default());
    let completion = run_one(&mut disk, Request::read(2, 1, 512).unwrap());
    assert_eq!(completion.result, Ok(()));
    assert_eq!(completion.buffer, pattern(4 * 512, 1)[2 * 512..3 * 512]);
}

#[test]
fn an_error_is_never_reported_as_success_when_the_hba_does_not_halt() {
    let mut rig = disk_rig();
    let mut disk = rig.only_disk();
    rig.set_faults(
        0,
        Faults { fail_command: Some(ATA_CMD_FLUSH_CACHE_EXT), continue_after_error: true, ..Faults::default() },
    );
    assert_eq!(run_one(&mut disk, Request::flush()).result, Err(BlockError::Io));
    assert_eq!(run_one(&mut disk, Request::read(0, 1, 512).unwrap()).result, Ok(()));

    // Several in flight: the failing one's PxCI bit cleared like the others', so every
    // request finished in the same window fails; none reports a false success.
    rig.set_faults(0, Faults { fail_lba: Some(2), continue_after_error: true, deferred: true, ..Faults::default() });
    let ids: Vec<RequestId> = (1..4).map(|lba| disk.submit(Request::read(lba, 1, 512).unwrap()).unwrap()).collect();
    rig.run(0);
    let mut completions = Vec::new();
    disk.poll_completions(&mut completions);
    assert_eq!(completions.len(), 3);
    assert!(completions.iter().all(|completion| completion.result == Err(BlockError::Io)));
    let mut seen: Vec<RequestId> = completions.iter().map(|completion| completion.id).collect();
    seen.sort();
    assert_eq!(seen, ids);
    rig.set_faults(0, Faults::default());
    assert_eq!(run_one(&mut disk, Request::read(2, 1, 512).unwrap()).result, Ok(()));
}

#[test]
fn every_request_completes_exactly_once_across_errors() {
    let mut rig = disk_rig();
    let mut disk = rig.only_disk();
    rig.set_faults(0, Faults { fail_lba: Some(5), deferred: true, ..Faults::default() });
    let ids: Vec<RequestId> = (0..8).map(|lba| disk.submit(Request::read(lba, 1, 512).unwrap()).unwrap()).collect();
    let mut completions = Vec::new();
    for _ in 0..16 {
        rig.run_next(0);
        disk.poll_completions(&mut completions);
    }
    let mut seen: Vec<RequestId> = completions.iter().map(|completion| completion.id).collect();
    seen.sort();
    assert_eq!(seen, ids);
    let failures: Vec<RequestId> =
        completions.iter().filter(|completion| completion.result.is_err()).map(|completion| completion.id).collect();
    assert_eq!(failures, [ids[5]]);
}

#[test]
fn a_command_that_never_completes_times_out_and_the_port_is_reset() {
    let mut rig = disk_rig();
    let mut disk = rig.only_disk();
    rig.set_faults(0, Faults { hang_lba: Some(7), ..Faults::default() });
    let hung = disk.submit(Request::read(7, 1, 512).unwrap()).unwrap();
    let mut completions = Vec::new();
    disk.poll_completions(&mut completions);
    assert!(completions.is_empty());

    rig.clock.advance(COMMAND_TIMEOUT_NS / 2);
    // Queued behind the hung command; its own deadline is later.
    let behind = disk.submit(Request::write(8, 1, pattern(512, 4))).unwrap();
    disk.poll_completions(&mut completions);
    assert!(completions.is_empty());

    rig.clock.advance(COMMAND_TIMEOUT_NS / 2 + 1);
    rig.set_faults(0, Faults::default());
    disk.poll_completions(&mut completions);
    assert_eq!(completions.len(), 1);
    assert_eq!((completions[0].id, completions[0].result), (hung, Err(BlockError::Timeout)));
    assert_eq!(rig.port(0).comresets, 1, "BSY after the stop calls for a COMRESET");

    let completion = wait_for(&mut disk, behind);
    assert_eq!(completion.result, Ok(()));
    assert_eq!(&rig.port(0).disk.as_ref().unwrap().data[8 * 512..9 * 512], &pattern(512, 4)[..]);
    assert_eq!(run_one(&mut disk, Request::read(7, 1, 512).unwrap()).result, Ok(()));
}

#[test]
fn a_port_that_will_not_stop_gets_a_comreset() {
    let mut rig = disk_rig();
    let mut disk = rig.only_disk();
    rig.set_faults(0, Faults { fail_lba: Some(1), stuck_engine: true, ..Faults::default() });
    assert_eq!(run_one(&mut disk, Request::read(1, 1, 512).unwrap()).result, Err(BlockError::Io));
    assert_eq!(rig.port(0).comresets, 1);
    rig.set_faults(0, Faults::default());
    assert_eq!(run_one(&mut disk, Request::read(1, 1, 512).unwrap()).result, Ok(()));
}

#[test]
fn a_dead_port_fails_requests_and_recovers_later() {
    let mut rig = disk_rig();
    let mut disk = rig.only_disk();
    rig.set_faults(0, Faults { hang_lba: Some(0), ..Faults::default() });
    let id = disk.submit(Request::read(0, 1, 512).unwrap()).unwrap();
    // The device drops off the link: the restart's COMRESET cannot bring it back.
    let saved = rig.port(0).disk.take();
    rig.port(0).ssts = 0;
    rig.clock.advance(COMMAND_TIMEOUT_NS + 1);
    assert_eq!(wait_for(&mut disk, id).result, Err(BlockError::Timeout));
    assert_eq!(disk.submit(Request::read(0, 1, 512).unwrap()), Err(BlockError::Io));

    rig.port(0).disk = saved;
    rig.set_faults(0, Faults::default());
    rig.clock.advance(OUT_OF_SERVICE_RETRY_NS);
    assert_eq!(run_one(&mut disk, Request::read(0, 1, 512).unwrap()).result, Ok(()));
}

#[test]
fn a_wrong_byte_count_from_the_hba_is_an_io_error() {
    let mut rig = disk_rig();
    let mut disk = rig.only_disk();
    for byte_count in [0, 7, 513, u32::MAX] {
        rig.set_faults(0, Faults { byte_count: Some(byte_count), ..Faults::default() });
        assert_eq!(run_one(&mut disk, Request::read(0, 1, 512).unwrap()).result, Err(BlockError::Io));
        assert_eq!(run_one(&mut disk, Request::write(0, 1, vec![1; 512])).result, Err(BlockError::Io));
    }
    rig.set_faults(0, Faults::default());
    assert_eq!(run_one(&mut disk, Request::read(0, 1, 512).unwrap()).result, Ok(()));
}

#[test]
fn a_wrong_byte_count_for_identify_skips_the_port() {
    let mut rig = disk_rig();
    rig.set_faults(0, Faults { byte_count: Some(4096), ..Faults::default() });
    let probe = rig.probe().unwrap();
    assert!(probe.disks.is_empty());
    assert!(matches!(probe.port_errors[..], [(0, DriverError::Device(_))]));
    assert_eq!(rig.memory.allocated(), 0);
}

#[test]
fn zero_capacity_skips_the_port_without_leaking() {
    let mut rig = rig(vec![FakePort::with_disk(FakeDisk::new("EMPTY", 0, 512))]);
    let probe = rig.probe().unwrap();
    assert!(probe.disks.is_empty());
    assert_eq!(probe.port_errors, [(0, DriverError::Device(String::from("zero capacity")))]);
    assert_eq!(rig.memory.allocated(), 0);
    assert_eq!(rig.port(0).cmd & (PXCMD_ST | PXCMD_FRE | PXCMD_CR | PXCMD_FR), 0, "port left stopped");
}

#[test]
fn identify_checks_hostile_words() {
    let good = identify_words("M", 100, 512);
    let bytes = |words: &[u16; 256]| -> Vec<u8> { words.iter().flat_map(|word| word.to_le_bytes()).collect() };
    let parse = |words: &[u16; 256]| identify::parse(&bytes(words));
    assert_eq!(parse(&good).unwrap().capacity, 100);

    let mut atapi = good;
    atapi[0] = 0x8580;
    assert!(matches!(parse(&atapi), Err(DriverError::Unsupported(_))));
    let mut no_lba48 = good;
    no_lba48[83] = 0x4000;
    assert!(matches!(parse(&no_lba48), Err(DriverError::Unsupported(_))));
    let mut invalid_word_83 = good;
    invalid_word_83[83] = 0xFFFF;
    assert!(parse(&invalid_word_83).is_err());
    let mut huge = good;
    huge[103] = 0xFFFF;
    assert!(matches!(parse(&huge), Err(DriverError::Device(_))));
    for sector_words in [0u32, 3, 128, 300, 0x1_0000, u32::MAX] {
        let mut odd = good;
        odd[106] = 0x5000;
        odd[117] = sector_words as u16;
        odd[118] = (sector_words >> 16) as u16;
        assert!(matches!(parse(&odd), Err(DriverError::Unsupported(_))), "{sector_words}");
    }
    let mut physical = good;
    physical[106] = 0x6003;
    assert_eq!(parse(&physical).unwrap().physical_block_size, 4096);
    physical[106] = 0x600F;
    assert_eq!(parse(&physical).unwrap().physical_block_size, 512 << 15);

    let mut checksummed = good;
    checksummed[255] = 0x00A5;
    let sum = bytes(&checksummed).iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
    checksummed[255] |= u16::from(sum.wrapping_neg()) << 8;
    assert!(parse(&checksummed).is_ok());
    checksummed[255] ^= 0x0100;
    assert!(matches!(parse(&checksummed), Err(DriverError::Device(_))));

    let mut nul_padded = good;
    for word in &mut nul_padded[27..47] {
        *word = 0;
    }
    nul_padded[27] = u16::from_be_bytes([b'A', 0x07]);
    assert_eq!(parse(&nul_padded).unwrap().model, "A?");
    assert!(identify::parse(&[0; 100]).is_err());
}

#[test]
fn garbage_identify_data_never_panics() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..200 {
        let mut words = [0u16; 256];
        for word in words.iter_mut() {
            *word = next() as u16;
        }
        if round % 2 == 0 {
            // Keep the parser past the first checks half of the time.
            words[0] &= 0x7FFF;
            words[83] = (words[83] & 0x3FFF) | 0x4400;
            words[255] = 0;
        }
        let mut disk = FakeDisk::new("", 64, 512);
        disk.identify = words;
        let mut rig = rig(vec![FakePort::with_disk(disk)]);
        let probe = rig.probe().unwrap();
        for disk in &probe.disks {
            let info = disk.info();
            assert!(info.capacity > 0 && info.capacity <= 1 << 48);
            assert!(info.logical_block_size.is_power_of_two() && (512..=65536).contains(&info.logical_block_size));
            assert!(info.physical_block_size >= info.logical_block_size);
            assert!(info.model.chars().all(|c| c.is_ascii_graphic() || c == ' '));
        }
        drop(probe);
        assert_eq!(rig.memory.allocated(), 0);
    }
}

#[test]
fn no_dma_memory_is_leaked_on_drop() {
    let mut rig = rig(vec![
        FakePort::with_disk(FakeDisk::new(MODEL, SECTORS, 512)),
        FakePort::with_disk(FakeDisk::new(MODEL, SECTORS, 512)),
    ]);
    let probe = rig.probe().unwrap();
    assert_eq!(probe.disks.len(), 2);
    assert!(rig.memory.allocated() > 0);
    let mut disks = probe.disks;
    // A request still in flight when the disk goes away.
    rig.set_faults(0, Faults { deferred: true, ..Faults::default() });
    disks[0].submit(Request::read(0, 1, 512).unwrap()).unwrap();
    drop(disks);
    assert_eq!(rig.memory.allocated(), 0);
    for index in 0..2 {
        assert_eq!(rig.port(index).cmd & (PXCMD_ST | PXCMD_CR | PXCMD_FRE | PXCMD_FR), 0);
    }
}

#[test]
fn memory_of_a_port_that_will_not_stop_is_never_handed_back() {
    let mut rig = disk_rig();
    let disk = rig.only_disk();
    let allocated = rig.memory.allocated();
    rig.set_faults(0, Faults { stuck_engine: true, ..Faults::default() });
    drop(disk);
    assert_eq!(rig.memory.allocated(), allocated);
}

#[test]
fn short_of_dma_memory_uses_fewer_slots() {
    let mut rig = disk_rig();
    // Control region (three pages) and three bounce regions.
    let limit = 3 * 4096 + 3 * BOUNCE_BYTES_PER_SLOT as u64;
    rig.memory.limit.store(limit, core::sync::atomic::Ordering::Relaxed);
    assert_eq!(rig.only_disk().info().queue_depth, 3);
    rig.memory.limit.store(4096, core::sync::atomic::Ordering::Relaxed);
    let probe = rig.probe().unwrap();
    assert!(probe.disks.is_empty());
    assert_eq!(probe.port_errors, [(0, DriverError::NoMemory)]);
}

#[test]
fn ports_beyond_the_abar_are_reported_not_touched() {
    let mut rig = disk_rig();
    {
        // ICH9's ABAR is 4 KiB: room for ports 0 to 29 only.
        let mut hba = rig.hba.lock().unwrap();
        hba.bar_len = 0x1000;
        hba.pi = 1 | 1 << 31;
    }
    let probe = rig.probe().unwrap();
    assert_eq!(probe.disks.len(), 1);
    assert!(matches!(probe.port_errors[..], [(31, DriverError::Unsupported(_))]));
}

// ---- Interrupts ----

#[test]
fn with_msi_ghc_ie_and_the_disk_ports_interrupts_are_enabled() {
    let mut rig = rig(vec![
        FakePort::with_disk(FakeDisk::new(MODEL, SECTORS, 512)),
        FakePort::atapi(),
        FakePort::with_disk(FakeDisk::new("SECOND", 100, 512)),
    ]);
    rig.with_message_interrupts();
    // Firmware left the ATAPI port signalling.
    rig.port(1).ie = u32::MAX;
    let probe = rig.probe().unwrap();
    assert_eq!(probe.disks.len(), 2);
    assert!(probe.disks.iter().all(|disk| disk.interrupt_mode() == InterruptMode::Msi));
    let hba = rig.hba.lock().unwrap();
    assert_ne!(hba.ghc & GHC_IE, 0);
    assert_eq!(hba.ports[0].ie, PORT_INTERRUPTS);
    assert_eq!(hba.ports[2].ie, PORT_INTERRUPTS);
    assert_eq!(hba.ports[1].ie, 0, "a port without a disk never signals");
    assert_eq!((hba.ports[0].is, hba.ports[2].is, hba.is), (0, 0, 0), "IDENTIFY's status acknowledged");
    drop(hba);
    let command = read_command(&mut rig.config, address());
    assert_ne!(command & crate::pci::PCI_COMMAND_INTX_DISABLE, 0);
}

#[test]
fn polling_acknowledges_pxis_and_is_so_messages_stop() {
    let mut rig = disk_rig();
    rig.with_message_interrupts();
    let mut disk = rig.only_disk();
    rig.set_faults(0, Faults { deferred: true, ..Faults::default() });
    let id = disk.submit(Request::read(0, 1, 512).unwrap()).unwrap();
    let before = rig.messages();
    rig.run(0);
    assert!(rig.messages() > before, "the completion sent a message");
    assert_ne!(rig.port(0).is, 0);
    assert_eq!(wait_for(&mut disk, id).result, Ok(()));
    assert_eq!(rig.port(0).is, 0, "PxIS cleared by polling");
    assert_eq!(rig.hba.lock().unwrap().is, 0, "IS.IPS cleared by polling");
    // Nothing is pending: further register traffic sends no message.
    let settled = rig.messages();
    let mut completions = Vec::new();
    disk.poll_completions(&mut completions);
    assert!(completions.is_empty());
    assert_eq!(rig.messages(), settled);
}

#[test]
fn a_completion_between_the_pxci_and_pxis_reads_is_not_left_behind() {
    // The HBA finishes the command right after the driver read PxCI: the poll that
    // acknowledges its PxIS bit must also report it, since no message follows.
    let mut rig = disk_rig();
    rig.with_message_interrupts();
    let mut disk = rig.only_disk();
    rig.set_faults(0, Faults { deferred: true, ..Faults::default() });
    let id = disk.submit(Request::read(0, 1, 512).unwrap()).unwrap();
    let racing = RacingAbar { hba: rig.hba.clone(), armed: AtomicBool::new(true) };
    disk.port.abar = Box::new(racing);
    let mut completions = Vec::new();
    disk.poll_completions(&mut completions);
    assert_eq!(completions.len(), 1);
    assert_eq!((completions[0].id, completions[0].result), (id, Ok(())));
    assert_eq!(rig.port(0).is, 0);
}

/// An ABAR mapping whose first read of port 0's PxCI is followed at once by the HBA
/// running the issued commands (so they finish between that read and PxIS's).
struct RacingAbar {
    hba: Arc<Mutex<FakeHba>>,
    armed: AtomicBool,
}

impl Registers for RacingAbar {
    fn len(&self) -> u64 {
        FakeAbar(self.hba.clone()).len()
    }
    fn read8(&self, offset: u64) -> u8 {
        FakeAbar(self.hba.clone()).read8(offset)
    }
    fn read16(&self, offset: u64) -> u16 {
        FakeAbar(self.hba.clone()).read16(offset)
    }
    fn read32(&self, offset: u64) -> u32 {
        let value = FakeAbar(self.hba.clone()).read32(offset);
        if offset == PORT_BASE + PXCI && self.armed.swap(false, AtomicOrdering::Relaxed) {
            self.hba.lock().unwrap().run(0);
        }
        value
    }
    fn write8(&self, offset: u64, value: u8) {
        FakeAbar(self.hba.clone()).write8(offset, value)
    }
    fn write16(&self, offset: u64, value: u16) {
        FakeAbar(self.hba.clone()).write16(offset, value)
    }
    fn write32(&self, offset: u64, value: u32) {
        FakeAbar(self.hba.clone()).write32(offset, value)
    }
}

#[test]
fn errors_are_recovered_as_before_and_leave_nothing_pending() {
    let mut rig = disk_rig();
    rig.with_message_interrupts();
    let mut disk = rig.only_disk();
    rig.set_faults(0, Faults { fail_lba: Some(2), continue_after_error: true, ..Faults::default() });
    assert_eq!(run_one(&mut disk, Request::read(2, 1, 512).unwrap()).result, Err(BlockError::Io));
    assert_eq!(rig.port(0).is, 0);
    assert_eq!(rig.hba.lock().unwrap().is, 0);
    assert_eq!(rig.port(0).ie, PORT_INTERRUPTS);
    rig.set_faults(0, Faults::default());
    assert_eq!(run_one(&mut disk, Request::read(2, 1, 512).unwrap()).result, Ok(()));
}

#[test]
fn a_restart_with_a_comreset_enables_the_port_interrupts_again() {
    let mut rig = disk_rig();
    rig.with_message_interrupts();
    let mut disk = rig.only_disk();
    rig.set_faults(0, Faults { hang_lba: Some(7), comreset_clears_interrupt_enable: true, ..Faults::default() });
    let hung = disk.submit(Request::read(7, 1, 512).unwrap()).unwrap();
    rig.clock.advance(COMMAND_TIMEOUT_NS + 1);
    assert_eq!(wait_for(&mut disk, hung).result, Err(BlockError::Timeout));
    assert_eq!(rig.port(0).comresets, 1);
    assert_eq!(rig.port(0).ie, PORT_INTERRUPTS);
}

#[test]
fn a_port_out_of_service_stops_signalling_and_signals_again_once_back() {
    let mut rig = disk_rig();
    rig.with_message_interrupts();
    let mut disk = rig.only_disk();
    rig.set_faults(0, Faults { hang_lba: Some(0), ..Faults::default() });
    let id = disk.submit(Request::read(0, 1, 512).unwrap()).unwrap();
    let saved = rig.port(0).disk.take();
    rig.port(0).ssts = 0;
    rig.clock.advance(COMMAND_TIMEOUT_NS + 1);
    assert_eq!(wait_for(&mut disk, id).result, Err(BlockError::Timeout));
    assert_eq!(rig.port(0).ie, 0);
    // Whatever the dead port still reports cannot wake anyone.
    rig.port(0).is |= 1 << 30;
    let settled = rig.messages();
    let mut completions = Vec::new();
    disk.poll_completions(&mut completions);
    assert_eq!(rig.messages(), settled);

    rig.port(0).disk = saved;
    rig.set_faults(0, Faults::default());
    rig.clock.advance(OUT_OF_SERVICE_RETRY_NS);
    assert_eq!(run_one(&mut disk, Request::read(0, 1, 512).unwrap()).result, Ok(()));
    assert_eq!(rig.port(0).ie, PORT_INTERRUPTS);
}

#[test]
fn dropping_a_disk_clears_its_interrupt_enables_first() {
    let mut rig = disk_rig();
    rig.with_message_interrupts();
    let disk = rig.only_disk();
    assert_eq!(rig.port(0).ie, PORT_INTERRUPTS);
    // Even a port that will not stop no longer signals.
    rig.set_faults(0, Faults { stuck_engine: true, ..Faults::default() });
    drop(disk);
    assert_eq!(rig.port(0).ie, 0);
}

#[test]
fn polled_controllers_have_ghc_ie_and_every_pxie_cleared() {
    let mut rig = disk_rig();
    rig.hba.lock().unwrap().ghc = GHC_AE | GHC_IE; // Left by firmware.
    rig.port(0).ie = u32::MAX;
    let mut disk = rig.only_disk();
    assert_eq!(disk.interrupt_mode(), InterruptMode::Polled);
    assert_eq!(rig.hba.lock().unwrap().ghc & GHC_IE, 0);
    assert_eq!(rig.port(0).ie, 0);
    assert_eq!(run_one(&mut disk, Request::read(0, 1, 512).unwrap()).result, Ok(()));
    assert_eq!(rig.port(0).is, 0, "polling acknowledges PxIS either way");
    assert_eq!(rig.messages(), 0);

    // A function with MSI but no message from the platform.
    let mut rig = disk_rig();
    rig.with_message_interrupts();
    rig.clock.set_interrupt_message(None);
    assert_eq!(rig.only_disk().interrupt_mode(), InterruptMode::Polled);
    assert_eq!(rig.hba.lock().unwrap().ghc & GHC_IE, 0);
}
