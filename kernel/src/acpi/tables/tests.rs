//! Host tests of `tables`.

use super::*;

/// Physical memory made of (address, bytes) chunks; reads must fall in one chunk.
#[derive(Default)]
struct FakeMemory {
    chunks: Vec<(u64, Vec<u8>)>,
}

impl FakeMemory {
    fn place(&mut self, address: u64, bytes: Vec<u8>) {
        self.chunks.push((address, bytes));
    }
}

impl PhysMemory for FakeMemory {
    fn read(&self, phys: u64, buf: &mut [u8]) -> bool {
        for (start, bytes) in &self.chunks {
            let Some(offset) = phys.checked_sub(*start) else {
                continue;
            };
            let Ok(offset) = usize::try_from(offset) else {
                continue;
            };
            if let Some(source) = offset.checked_add(buf.len()).and_then(|end| bytes.get(offset..end)) {
                buf.copy_from_slice(source);
                return true;
            }
        }
        false
    }
}

fn fix_checksum(bytes: &mut [u8], checksum_offset: usize, length: usize) {
    bytes[checksum_offset] = 0;
    let sum = checksum(&bytes[..length]);
    bytes[checksum_offset] = 0u8.wrapping_sub(sum);
}

/// A table: header with `signature` and a correct checksum, then `body`.
fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let length = TABLE_HEADER_LENGTH + body.len();
    let mut bytes = vec![0u8; TABLE_HEADER_LENGTH];
    bytes[..4].copy_from_slice(signature);
    bytes[4..8].copy_from_slice(&(length as u32).to_le_bytes());
    bytes[8] = revision;
    bytes[10..16].copy_from_slice(b"BOCHS ");
    bytes[16..24].copy_from_slice(b"BXPC    ");
    bytes.extend_from_slice(body);
    fix_checksum(&mut bytes, 9, length);
    bytes
}

fn rsdp_v1(rsdt: u32) -> Vec<u8> {
    let mut bytes = vec![0u8; 20];
    bytes[..8].copy_from_slice(&RSDP_SIGNATURE);
    bytes[9..15].copy_from_slice(b"BOCHS ");
    bytes[16..20].copy_from_slice(&rsdt.to_le_bytes());
    fix_checksum(&mut bytes, 8, 20);
    bytes
}

fn rsdp_v2(rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; 36];
    bytes[..8].copy_from_slice(&RSDP_SIGNATURE);
    bytes[9..15].copy_from_slice(b"OEMOEM");
    bytes[15] = 2;
    bytes[16..20].copy_from_slice(&rsdt.to_le_bytes());
    bytes[20..24].copy_from_slice(&36u32.to_le_bytes());
    bytes[24..32].copy_from_slice(&xsdt.to_le_bytes());
    fix_checksum(&mut bytes, 8, 20);
    fix_checksum(&mut bytes, 32, 36);
    bytes
}

fn madt_body() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0xFEE0_0000u32.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
    body.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // CPU uid 0 apic 0 enabled
    body.extend_from_slice(&[0, 8, 1, 1, 0, 0, 0, 0]); // CPU uid 1 apic 1 disabled
    body.extend_from_slice(&[0, 8, 2, 2, 2, 0, 0, 0]); // CPU uid 2 online capable
    body.extend_from_slice(&[1, 12, 0, 0]); // I/O APIC id 0
    body.extend_from_slice(&0xFEC0_0000u32.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    // QEMU's overrides: IRQ0 -> GSI2; IRQ9 -> GSI9 level, active high.
    body.extend_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
    body.extend_from_slice(&[2, 10, 0, 9, 9, 0, 0, 0, 0x0D, 0]);
    body.extend_from_slice(&[2, 10, 0, 11, 11, 0, 0, 0, 0x0F, 0]); // level, active low
    body.extend_from_slice(&[9, 16, 0, 0]); // x2APIC id 300 uid 7 enabled
    body.extend_from_slice(&300u32.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&7u32.to_le_bytes());
    body.extend_from_slice(&[4, 6, 0xFF, 0, 0, 1]); // local APIC NMI: ignored
    body.extend_from_slice(&[0, 4, 9, 9]); // truncated type 0: ignored
    body
}

fn fadt_body(dsdt: u32, x_dsdt: u64, length: usize) -> Vec<u8> {
    let mut full = vec![0u8; 276];
    full[40..44].copy_from_slice(&dsdt.to_le_bytes());
    full[46..48].copy_from_slice(&9u16.to_le_bytes());
    full[48..52].copy_from_slice(&0xB2u32.to_le_bytes());
    full[52] = 0xF1;
    full[64..68].copy_from_slice(&0x604u32.to_le_bytes());
    full[112..116].copy_from_slice(&(FADT_FLAG_RESET_REG_SUP | 1).to_le_bytes());
    full[116..128].copy_from_slice(&[1, 8, 0, 1, 0xF9, 0x0C, 0, 0, 0, 0, 0, 0]);
    full[128] = 0x06;
    full[140..148].copy_from_slice(&x_dsdt.to_le_bytes());
    // X_PM1a_CNT_BLK: system I/O 0xB004.
    full[172..184].copy_from_slice(&[1, 16, 0, 2, 0x04, 0xB0, 0, 0, 0, 0, 0, 0]);
    full.truncate(length);
    full.drain(..TABLE_HEADER_LENGTH);
    full
}

/// A DSDT body with filler AML, a decoy method named _S5_ and the real Name.
fn dsdt_body(package: &[u8]) -> Vec<u8> {
    let mut body = vec![0x10, 0x05, b'\\', b'_', b'S', b'B', b'_'];
    body.extend_from_slice(&[0x14, 0x06, b'_', b'S', b'5', b'_', 0x00, 0xA4]); // Method
    body.push(AML_NAME_OP);
    body.push(b'\\');
    body.extend_from_slice(b"_S5_");
    body.extend_from_slice(package);
    body.extend_from_slice(&[0xA3, 0xA3]);
    body
}

struct Machine {
    memory: FakeMemory,
    rsdp: Rsdp,
}

/// A QEMU-like machine: RSDP v2 -> XSDT (and RSDT) -> FACP, APIC, HPET; FACP -> DSDT.
fn machine(dsdt_package: &[u8]) -> Machine {
    let mut memory = FakeMemory::default();
    let fadt_address = 0x7FE_1000u64;
    let madt_address = 0x7FE_2000u64;
    let hpet_address = 0x7FE_3000u64;
    let dsdt_address = 0x7FE_0000u64;
    memory.place(dsdt_address, table(b"DSDT", 1, &dsdt_body(dsdt_package)));
    memory.place(fadt_address, table(b"FACP", 3, &fadt_body(0, dsdt_address, 244)));
    memory.place(madt_address, table(b"APIC", 1, &madt_body()));
    memory.place(hpet_address, table(b"HPET", 1, &[0; 20]));
    let mut xsdt_body = Vec::new();
    for address in [fadt_address, madt_address, hpet_address] {
        xsdt_body.extend_from_slice(&address.to_le_bytes());
    }
    memory.place(0x7FE_4000, table(b"XSDT", 1, &xsdt_body));
    let mut rsdt_body = Vec::new();
    for address in [fadt_address, madt_address] {
        rsdt_body.extend_from_slice(&(address as u32).to_le_bytes());
    }
    memory.place(0x7FE_5000, table(b"RSDT", 1, &rsdt_body));
    let rsdp = Rsdp::parse(&rsdp_v2(0x7FE_5000, 0x7FE_4000)).unwrap();
    Machine { memory, rsdp }
}

#[test]
fn rsdp_versions_and_errors() {
    let v1 = Rsdp::parse(&rsdp_v1(0x1234)).unwrap();
    assert_eq!(v1, Rsdp { revision: 0, oem_id: *b"BOCHS ", rsdt_address: 0x1234, xsdt_address: None });
    let v2 = Rsdp::parse(&rsdp_v2(1, 0x1_0000_0000)).unwrap();
    assert_eq!(v2.xsdt_address, Some(0x1_0000_0000));
    assert_eq!(v2.revision, 2);

    assert_eq!(Rsdp::parse(&rsdp_v1(1)[..19]), Err(AcpiError::RsdpTooShort));
    assert_eq!(Rsdp::parse(&rsdp_v2(1, 2)[..35]), Err(AcpiError::RsdpTooShort));
    let mut bad = rsdp_v1(1);
    bad[0] = b'r';
    assert_eq!(Rsdp::parse(&bad), Err(AcpiError::BadRsdpSignature));
    let mut bad = rsdp_v1(1);
    bad[16] ^= 1;
    assert_eq!(Rsdp::parse(&bad), Err(AcpiError::BadRsdpChecksum));
    let mut bad = rsdp_v2(1, 2);
    bad[24] ^= 1;
    assert_eq!(Rsdp::parse(&bad), Err(AcpiError::BadRsdpExtendedChecksum));
    let mut bad = rsdp_v2(1, 2);
    bad[20] = 20;
    fix_checksum(&mut bad, 8, 20);
    assert_eq!(Rsdp::parse(&bad), Err(AcpiError::BadRsdpLength(20)));
}

#[test]
fn find_rsdp_in_bios_area() {
    let mut area = vec![0u8; 0x400];
    // A stray signature with a bad checksum, then an unaligned valid one, then the real one.
    area[0x10..0x18].copy_from_slice(&RSDP_SIGNATURE);
    area[0x28..0x28 + 20].copy_from_slice(&rsdp_v1(5));
    area[0x3E0..0x3E0 + 20].copy_from_slice(&rsdp_v1(7)[..]);
    assert_eq!(find_rsdp(&area), Some(0x3E0));
    // Cut so the last candidate is truncated.
    assert_eq!(find_rsdp(&area[..0x3E0 + 19]), None);
    let mut v2_area = vec![0u8; 0x40];
    v2_area[..36].copy_from_slice(&rsdp_v2(1, 2));
    assert_eq!(find_rsdp(&v2_area), Some(0));
    assert_eq!(find_rsdp(&[]), None);
}

#[test]
fn loads_a_qemu_like_machine() {
    let machine = machine(&[AML_PACKAGE_OP, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00]);
    let tables = load(&machine.memory, &machine.rsdp).unwrap();
    let signatures: Vec<[u8; 4]> = tables.tables.iter().map(|t| t.signature).collect();
    assert_eq!(signatures, [*b"FACP", *b"APIC", *b"HPET", *b"DSDT"]);
    assert!(tables.skipped.is_empty(), "{:?}", tables.skipped);
    assert_eq!(tables.tables[0].oem_id, *b"BOCHS ");
    assert_eq!(tables.tables[0].revision, 3);

    let madt = tables.madt.as_ref().unwrap();
    assert_eq!(madt.local_apic_address, 0xFEE0_0000);
    assert!(madt.pcat_compat);
    assert_eq!(
        madt.cpus,
        [
            MadtCpu { processor_uid: 0, apic_id: 0, enabled: true, online_capable: false, x2apic: false },
            MadtCpu { processor_uid: 1, apic_id: 1, enabled: false, online_capable: false, x2apic: false },
            MadtCpu { processor_uid: 2, apic_id: 2, enabled: false, online_capable: true, x2apic: false },
            MadtCpu { processor_uid: 7, apic_id: 300, enabled: true, online_capable: false, x2apic: true },
        ]
    );
    assert_eq!(madt.ioapics, [MadtIoApic { id: 0, address: 0xFEC0_0000, gsi_base: 0 }]);
    assert_eq!(madt.overrides.len(), 3);
    assert_eq!(madt.isa_irq_to_gsi(0), (2, false, false));
    assert_eq!(madt.isa_irq_to_gsi(9), (9, false, true));
    assert_eq!(madt.isa_irq_to_gsi(11), (11, true, true));
    assert_eq!(madt.isa_irq_to_gsi(4), (4, false, false));

    let fadt = tables.fadt.unwrap();
    assert_eq!(fadt.sci_interrupt, 9);
    assert_eq!(fadt.smi_command_port, 0xB2);
    assert_eq!(fadt.acpi_enable, 0xF1);
    assert_eq!(fadt.pm1a_control_block, 0xB004, "X_PM1a_CNT_BLK preferred");
    assert_eq!(fadt.pm1b_control_block, 0);
    assert_eq!(fadt.dsdt_address, 0x7FE_0000, "X_DSDT used");
    assert_eq!(
        fadt.reset_register,
        Some(GenericAddress { address_space: 1, bit_width: 8, bit_offset: 0, access_size: 1, address: 0xCF9 })
    );
    assert_eq!(fadt.reset_value, 6);
    assert_eq!(tables.s5, Some(SleepTypes { slp_typ_a: 0, slp_typ_b: 0 }));
}

#[test]
fn s5_encodings() {
    // BytePrefix elements, 2-byte PkgLength.
    let body = dsdt_body(&[AML_PACKAGE_OP, 0x40, 0x00, 0x04, 0x0A, 0x05, 0x0A, 0x07, 0x00, 0x00]);
    assert_eq!(find_s5(&body), Some(SleepTypes { slp_typ_a: 5, slp_typ_b: 7 }));
    // Mixed OneOp and BytePrefix, 4-byte PkgLength, no root prefix.
    let aml = [AML_NAME_OP, b'_', b'S', b'5', b'_', AML_PACKAGE_OP, 0xC0, 0, 0, 0, 2, AML_ONE_OP, 0x0A, 3];
    assert_eq!(find_s5(&aml), Some(SleepTypes { slp_typ_a: 1, slp_typ_b: 3 }));
    // No NameOp before it: only the decoy method.
    assert_eq!(find_s5(&[0x14, 0x06, b'_', b'S', b'5', b'_', 0x12, 0x04, 0x02, 0, 0]), None);
    // Truncated package.
    assert_eq!(find_s5(&[AML_NAME_OP, b'_', b'S', b'5', b'_', AML_PACKAGE_OP, 0x04, 0x02, 0x0A]), None);
    assert_eq!(find_s5(&[]), None);
    assert_eq!(find_s5(b"_S5_"), None);
}

#[test]
fn fadt_versions() {
    // ACPI 1.0 FADT: no reset register, no X_ fields.
    let fadt = Fadt::parse(&table(b"FACP", 1, &fadt_body(0x1234, 0x5678, 116))).unwrap();
    assert_eq!(fadt.reset_register, None);
    assert_eq!(fadt.dsdt_address, 0x1234);
    assert_eq!(fadt.pm1a_control_block, 0x604);
    // X_DSDT zero: DSDT used.
    let fadt = Fadt::parse(&table(b"FACP", 3, &fadt_body(0x1234, 0, 244))).unwrap();
    assert_eq!(fadt.dsdt_address, 0x1234);
    // Reset register not supported by flags.
    let mut body = fadt_body(1, 0, 244);
    body[112 - 36] = 0;
    body[113 - 36] = 0;
    let fadt = Fadt::parse(&table(b"FACP", 3, &body)).unwrap();
    assert_eq!(fadt.reset_register, None);
    assert_eq!(fadt.reset_value, 0);
    // X_PM1a_CNT_BLK in memory space is not used.
    let mut body = fadt_body(1, 0, 244);
    body[172 - 36] = ADDRESS_SPACE_SYSTEM_MEMORY;
    assert_eq!(Fadt::parse(&table(b"FACP", 3, &body)).unwrap().pm1a_control_block, 0x604);
    assert_eq!(Fadt::parse(&table(b"FACP", 1, &fadt_body(1, 0, 115))), None);
}

#[test]
fn bad_tables_are_skipped_not_fatal() {
    let mut machine = machine(&[AML_PACKAGE_OP, 0x04, 0x02, 0x0A, 0x05, 0x0A, 0x05]);
    // Corrupt the HPET's checksum, add a null entry, an unreadable one and a huge one.
    let hpet = machine.memory.chunks.iter_mut().find(|(a, _)| *a == 0x7FE_3000).unwrap();
    hpet.1[20] ^= 0xFF;
    let mut huge = table(b"SSDT", 1, &[]);
    huge[4..8].copy_from_slice(&(MAX_TABLE_LENGTH + 1).to_le_bytes());
    machine.memory.place(0x900_0000, huge);
    let mut xsdt_body = Vec::new();
    for address in [0u64, 0x7FE_3000, 0xDEAD_0000, 0x900_0000, 0x7FE_1000, 0x7FE_2000] {
        xsdt_body.extend_from_slice(&address.to_le_bytes());
    }
    machine.memory.place(0x800_0000, table(b"XSDT", 1, &xsdt_body));
    machine.rsdp.xsdt_address = Some(0x800_0000);
    let tables = load(&machine.memory, &machine.rsdp).unwrap();
    let reasons: Vec<SkipReason> = tables.skipped.iter().map(|s| s.reason).collect();
    assert_eq!(
        reasons,
        [
            SkipReason::NullAddress,
            SkipReason::BadChecksum,
            SkipReason::Unreadable,
            SkipReason::BadLength(MAX_TABLE_LENGTH + 1),
        ]
    );
    assert_eq!(tables.skipped[1].signature, *b"HPET");
    assert!(tables.madt.is_some() && tables.fadt.is_some());
    assert_eq!(tables.s5, Some(SleepTypes { slp_typ_a: 5, slp_typ_b: 5 }));
}

#[test]
fn root_table_choice_and_errors() {
    let mut machine = machine(&[AML_PACKAGE_OP, 0x04, 0x02, 0x00, 0x00]);
    // RSDT only (ACPI 1.0): no HPET in the RSDT.
    let v1 = Rsdp { revision: 0, oem_id: *b"BOCHS ", rsdt_address: 0x7FE_5000, xsdt_address: None };
    let tables = load(&machine.memory, &v1).unwrap();
    assert_eq!(tables.tables.len(), 3);
    // XSDT address 0 falls to the RSDT too.
    let zero_xsdt = Rsdp { xsdt_address: Some(0), ..v1 };
    assert_eq!(load(&machine.memory, &zero_xsdt).unwrap().tables.len(), 3);
    // A corrupt XSDT falls back to the RSDT.
    let xsdt = machine.memory.chunks.iter_mut().find(|(a, _)| *a == 0x7FE_4000).unwrap();
    xsdt.1[40] ^= 1;
    assert_eq!(load(&machine.memory, &machine.rsdp).unwrap().tables.len(), 3);
    // ...but with no RSDT the XSDT's error is reported.
    let xsdt_only = Rsdp { rsdt_address: 0, ..machine.rsdp };
    assert_eq!(load(&machine.memory, &xsdt_only), Err(AcpiError::BadRootTableChecksum));
    let nothing = Rsdp { rsdt_address: 0, xsdt_address: None, ..v1 };
    assert_eq!(load(&machine.memory, &nothing), Err(AcpiError::NoRootTable));
    let unreadable = Rsdp { rsdt_address: 0x10, ..v1 };
    assert_eq!(load(&machine.memory, &unreadable), Err(AcpiError::RootTableUnreadable(0x10)));
    let wrong = Rsdp { rsdt_address: 0x7FE_2000, ..v1 };
    assert_eq!(load(&machine.memory, &wrong), Err(AcpiError::BadRootTableSignature(*b"APIC")));
}

#[test]
fn madt_walk_stops_safely() {
    let mut body = madt_body();
    body.truncate(8 + 8 + 3); // one CPU, then a cut entry
    let madt = Madt::parse(&table(b"APIC", 1, &body)).unwrap();
    assert_eq!(madt.cpus.len(), 1);
    let mut body = madt_body();
    body[8 + 8 + 1] = 0; // second entry has length 0
    let madt = Madt::parse(&table(b"APIC", 1, &body)).unwrap();
    assert_eq!(madt.cpus.len(), 1);
    assert!(madt.ioapics.is_empty());
    assert_eq!(Madt::parse(&table(b"APIC", 1, &[0; 7])), None);
    // Local APIC address override (type 5).
    let mut body = madt_body();
    body.extend_from_slice(&[5, 12, 0, 0]);
    body.extend_from_slice(&0x1_FEE0_0000u64.to_le_bytes());
    let madt = Madt::parse(&table(b"APIC", 1, &body)).unwrap();
    assert_eq!(madt.local_apic_address, 0x1_FEE0_0000);
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_and_truncated_inputs_never_panic() {
    let mut state = 0x5151_7777_abcd_0001u64;
    for _ in 0..2000 {
        let length = (xorshift(&mut state) % 400) as usize;
        let mut bytes: Vec<u8> = (0..length).map(|_| xorshift(&mut state) as u8).collect();
        let _ = Rsdp::parse(&bytes);
        let _ = find_rsdp(&bytes);
        let _ = find_s5(&bytes);
        let _ = Fadt::parse(&bytes);
        if let Some(madt) = Madt::parse(&bytes) {
            let _ = madt.isa_irq_to_gsi(xorshift(&mut state) as u8);
        }
        // Sprinkle _S5_ patterns so the package decoder sees random tails.
        if bytes.len() > 8 {
            let at = (xorshift(&mut state) as usize) % (bytes.len() - 6);
            bytes[at..at + 6].copy_from_slice(&[AML_NAME_OP, b'_', b'S', b'5', b'_', AML_PACKAGE_OP]);
            let _ = find_s5(&bytes);
        }
    }
    // Whole machines with random tables behind valid root tables.
    for _ in 0..300 {
        let mut memory = FakeMemory::default();
        let mut xsdt_body = Vec::new();
        for index in 0..4u64 {
            let address = 0x10_0000 * (index + 1);
            let signature = [*b"APIC", *b"FACP", *b"DSDT", *b"SSDT"][index as usize];
            let length = (xorshift(&mut state) % 300) as usize;
            let body: Vec<u8> = (0..length).map(|_| xorshift(&mut state) as u8).collect();
            let mut bytes = table(&signature, 1, &body);
            if index == 1 && bytes.len() >= 148 {
                // Point X_DSDT at the random DSDT and keep the checksum valid.
                bytes[140..148].copy_from_slice(&0x30_0000u64.to_le_bytes());
                let total = bytes.len();
                fix_checksum(&mut bytes, 9, total);
            }
            if xorshift(&mut state).is_multiple_of(4) {
                // Random length field: truncated or overlong tables.
                let bogus = xorshift(&mut state) as u32 % 600;
                bytes[4..8].copy_from_slice(&bogus.to_le_bytes());
                let total = bytes.len();
                fix_checksum(&mut bytes, 9, total);
            }
            memory.place(address, bytes);
            xsdt_body.extend_from_slice(&address.to_le_bytes());
        }
        memory.place(0x1000, table(b"XSDT", 1, &xsdt_body));
        let rsdp = Rsdp { revision: 2, oem_id: [0; 6], rsdt_address: 0, xsdt_address: Some(0x1000) };
        let tables = load(&memory, &rsdp).unwrap();
        assert!(tables.tables.len() + tables.skipped.len() >= 4);
    }
}

#[test]
fn mcfg_windows_are_parsed_and_bad_ones_dropped() {
    let mut body = vec![0u8; 8];
    // A q35-like window: base 0xb000_0000, segment 0, buses 0..=255.
    body.extend_from_slice(&0xb000_0000u64.to_le_bytes());
    body.extend_from_slice(&[0, 0, 0, 255, 0, 0, 0, 0]);
    // A zero base and an inverted bus range are dropped.
    body.extend_from_slice(&0u64.to_le_bytes());
    body.extend_from_slice(&[0, 0, 0, 255, 0, 0, 0, 0]);
    body.extend_from_slice(&0xc000_0000u64.to_le_bytes());
    body.extend_from_slice(&[1, 0, 9, 3, 0, 0, 0, 0]);
    // A truncated trailing entry is ignored.
    body.extend_from_slice(&[1, 2, 3]);
    let bytes = table(b"MCFG", 1, &body);
    assert_eq!(parse_mcfg(&bytes), vec![EcamWindow { base: 0xb000_0000, segment: 0, start_bus: 0, end_bus: 255 }]);
    assert!(parse_mcfg(&bytes[..20]).is_empty());
}
