//! Host tests of the storage commands ([`crate::storage`]) through the whole
//! dispatch path, against [`FakeSystem`]'s [`FakeStorage`]: every table's
//! exact layout (empty machines, partitions, holders, unknown vendors, `-l`),
//! attach and detach acting on the fake, the implementation's refusals passed
//! through as `error:` lines, usage errors, and untrusted text made printable.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::command::Registry;
use crate::storage::{storage_commands, AccessMode, DiskSize};
use crate::testing::{fake_storage_shell, FakeStorage, FakeSystem, XVDA_DEVID};
use crate::Shell;

/// Runs `lines` in order on one fake appliance; returns it and all output.
fn run_lines(lines: &[&str]) -> (FakeSystem, String) {
    run_lines_on(FakeSystem::new(), lines)
}

fn run_lines_on(mut system: FakeSystem, lines: &[&str]) -> (FakeSystem, String) {
    let shell = fake_storage_shell();
    let mut output = String::new();
    for line in lines {
        shell.execute_line(&mut system, line, &mut output);
    }
    (system, output)
}

fn run(line: &str) -> String {
    run_lines(&[line]).1
}

fn run_on(system: FakeSystem, line: &str) -> String {
    run_lines_on(system, &[line]).1
}

fn usage_error(message: &str, usage: &str) -> String {
    format!("error: {message}\nusage: {usage}\n")
}

const STORAGE_COMMAND_NAMES: [&str; 6] = ["block-attach", "block-detach", "block-list", "disk-bench", "disks", "pci"];

const PCI_TABLE: &str = "\
ADDRESS       ID         CLASS                           DRIVER      VENDOR
0000:00:00.0  8086:29c0  Host bridge                     -           Intel Corporation
0000:00:01.0  1234:1111  VGA compatible controller       -
0000:00:03.0  1af4:1001  SCSI storage controller         virtio-blk  Red Hat, Inc.
0000:00:04.0  1b36:0010  Non-Volatile memory controller  nvme        Red Hat, Inc.
0000:00:1f.2  8086:2922  SATA controller                 ahci        Intel Corporation
";

const DISKS_TABLE: &str = "\
NAME          SIZE  MODE  MODEL/TYPE        DRIVER      HOLDERS
sda       20.0 GiB  rw    QEMU HARDDISK     ahci        -
  sda1   512.0 MiB  rw    EFI system                    -
  sda2    19.5 GiB  rw    Linux filesystem              web:xvda rw
nvme0n1    1.0 GiB  rw    QEMU NVMe Ctrl    nvme        -
vda       64.0 MiB  ro    -                 virtio-blk  -
";

const DISKS_LONG_TABLE: &str = "\
NAME          SIZE  MODE  SECTOR    START  PCI           MODEL/TYPE        DRIVER      HOLDERS
sda       20.0 GiB  rw       512           0000:00:1f.2  QEMU HARDDISK     ahci        -
  sda1   512.0 MiB  rw               2048                EFI system                    -
  sda2    19.5 GiB  rw            1050624                Linux filesystem              web:xvda rw
nvme0n1    1.0 GiB  rw      4096           0000:00:04.0  QEMU NVMe Ctrl    nvme        -
vda       64.0 MiB  ro       512           0000:00:03.0  -                 virtio-blk  -
";

const BLOCK_LIST_WEB: &str = "\
VDEV  DEVID  SOURCE    MODE  BE-STATE       FE-STATE          EVT-CH  RING-REF  REQUESTS  ERRORS
xvda  51712  phy:sda2  w     4 (connected)  4 (connected)         14         8      1532       2
xvdc  51744  ram:64M   w     2 (initwait)   1 (initialising)       -         -         0       0
";

#[test]
fn help_lists_the_storage_commands_and_the_table_stands_alone() {
    let shell = fake_storage_shell();
    let output = run("help");
    assert_eq!(output.lines().count(), shell.registry().len(), "{output}");
    for name in STORAGE_COMMAND_NAMES {
        let command = shell.registry().find(name).unwrap();
        let line = output.lines().find(|line| line.split_whitespace().next() == Some(name)).unwrap();
        assert!(line.contains(command.usage) && line.ends_with(command.summary), "{line}");
    }
    assert_eq!(run("help block-detach").lines().next(), Some("usage: block-detach [-f] DOMAIN VDEV"));
    assert_eq!(run("help disks").lines().next(), Some("usage: disks [-l]"));

    // On a context that only does storage, resolving domains itself.
    let registry = Registry::new(&[storage_commands::<FakeStorage>()]).unwrap();
    let names: Vec<&str> = registry.iter().map(|command| command.name).collect();
    assert_eq!(names, STORAGE_COMMAND_NAMES);
    let alone = Shell::new(registry);
    let mut storage = FakeStorage::new();
    let mut output = String::new();
    alone.execute_line(&mut storage, "block-list web", &mut output);
    alone.execute_line(&mut storage, "block-list linux", &mut output);
    assert_eq!(output, format!("{BLOCK_LIST_WEB}error: no domain 'linux'\n"));
}

#[test]
fn pci_lists_every_function() {
    assert_eq!(run("pci"), PCI_TABLE);
    assert_eq!(run("pci -v"), usage_error("unexpected argument '-v'", "pci"));

    let mut system = FakeSystem::new();
    system.storage.pci_devices.clear();
    assert_eq!(run_on(system, "pci"), "no PCI devices\n");

    // Columns follow the widest cell; ids print as four hex digits.
    let mut system = FakeSystem::new();
    system.storage.pci_devices.truncate(1);
    let device = &mut system.storage.pci_devices[0];
    device.vendor_id = 0xa;
    device.device_id = 0xbeef;
    device.class_name = String::from("Bridge");
    device.driver = Some(String::from("a-long-driver-name"));
    assert_eq!(
        run_on(system, "pci"),
        "ADDRESS       ID         CLASS   DRIVER              VENDOR\n\
         0000:00:00.0  000a:beef  Bridge  a-long-driver-name  Intel Corporation\n"
    );
}

#[test]
fn disks_lists_partitions_under_their_disk() {
    assert_eq!(run("disks"), DISKS_TABLE);
    assert_eq!(run("disks -l"), DISKS_LONG_TABLE);
    assert_eq!(run("disks -l -l"), DISKS_LONG_TABLE);

    let mut system = FakeSystem::new();
    system.storage.disks.clear();
    assert_eq!(run_on(system.clone(), "disks"), "no disks\n");
    assert_eq!(run_on(system, "disks -l"), "no disks\n");

    // Several holders, a disk held whole, a disk without a PCI address.
    let mut system = FakeSystem::new();
    system.storage.disks.truncate(2);
    system.storage.disks[0].partitions.truncate(1);
    system.storage.disks[0].partitions[0].holders =
        Vec::from([String::from("web:xvdb ro"), String::from("db:xvda ro")]);
    let nvme = &mut system.storage.disks[1];
    nvme.holders = Vec::from([String::from("db:xvdc rw")]);
    nvme.pci_address = None;
    nvme.size_bytes = 1000;
    assert_eq!(
        run_on(system, "disks -l"),
        "\
NAME          SIZE  MODE  SECTOR  START  PCI           MODEL/TYPE      DRIVER  HOLDERS
sda       20.0 GiB  rw       512         0000:00:1f.2  QEMU HARDDISK   ahci    -
  sda1   512.0 MiB  rw             2048                EFI system              web:xvdb ro, db:xvda ro
nvme0n1     1000 B  rw      4096         -             QEMU NVMe Ctrl  nvme    db:xvdc rw
"
    );
}

#[test]
fn disks_usage_errors() {
    assert_eq!(run("disks -x"), usage_error("unknown option '-x'", "disks [-l]"));
    assert_eq!(run("disks sda"), usage_error("unexpected argument 'sda'", "disks [-l]"));
    assert_eq!(run("disks -l sda"), usage_error("unexpected argument 'sda'", "disks [-l]"));
}

#[test]
fn disk_sizes_use_one_decimal_in_the_largest_unit_reached() {
    let cases: [(u64, &str); 12] = [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (1024 * 1024 - 1, "1.0 MiB"),
        (64 << 20, "64.0 MiB"),
        (20 << 30, "20.0 GiB"),
        ((39 << 29) + (1 << 20), "19.5 GiB"),
        // 1023.96 GiB would round to 1024.0 GiB: one unit up instead.
        ((1 << 40) - (40 << 20), "1.0 TiB"),
        ((1 << 40) - (200 << 20), "1023.8 GiB"),
        (u64::MAX, "16.0 EiB"),
    ];
    for (bytes, text) in cases {
        assert_eq!(format!("{}", DiskSize(bytes)), text, "{bytes}");
    }
    assert_eq!(format!("{:>10}|", DiskSize(1536)), "   1.5 KiB|");
}

#[test]
fn block_list_shows_a_domains_devices() {
    assert_eq!(run("block-list web"), BLOCK_LIST_WEB);
    assert_eq!(run("block-list 3"), BLOCK_LIST_WEB);
    assert_eq!(run("block-list Domain-0"), "no virtual block devices\n");
    assert_eq!(run("block-list nope"), "error: no domain 'nope'\n");
    assert_eq!(run("block-list"), usage_error("missing DOMAIN", "block-list DOMAIN"));
    assert_eq!(run("block-list web xvda"), usage_error("unexpected argument 'xvda'", "block-list DOMAIN"));
}

#[test]
fn block_attach_gives_the_domain_a_device_and_marks_the_holder() {
    let (system, output) =
        run_lines(&["block-attach web phy:sda1,xvdb,w", "block-attach 3 ram:16M,xvdd,r", "block-list web", "disks"]);
    let expected_list = "\
VDEV  DEVID  SOURCE    MODE  BE-STATE       FE-STATE          EVT-CH  RING-REF  REQUESTS  ERRORS
xvda  51712  phy:sda2  w     4 (connected)  4 (connected)         14         8      1532       2
xvdb  51728  phy:sda1  w     2 (initwait)   1 (initialising)       -         -         0       0
xvdc  51744  ram:64M   w     2 (initwait)   1 (initialising)       -         -         0       0
xvdd  51760  ram:16M   r     2 (initwait)   1 (initialising)       -         -         0       0
";
    let expected_disks = DISKS_TABLE.replace(
        "  sda1   512.0 MiB  rw    EFI system                    -",
        "  sda1   512.0 MiB  rw    EFI system                    web:xvdb rw",
    );
    assert_eq!(
        output,
        format!(
            "attached sda1 to domain 3 (web) as xvdb (rw)\n\
             attached ram:16M to domain 3 (web) as xvdd (ro)\n\
             {expected_list}{expected_disks}"
        )
    );
    let xvdd = system.storage.list(3).into_iter().find(|vbd| vbd.vdev == "xvdd").unwrap();
    assert_eq!((xvdd.devid, xvdd.mode), (XVDA_DEVID + 3 * 16, AccessMode::ReadOnly));
}

#[test]
fn block_attach_works_on_a_domain_made_by_create() {
    let (_, output) = run_lines(&["create demo", "block-attach demo phy:nvme0n1,xvda,w", "block-list demo"]);
    assert_eq!(
        output,
        "Created domain 4 (demo)\n\
         attached nvme0n1 to domain 4 (demo) as xvda (rw)\n\
         VDEV  DEVID  SOURCE       MODE  BE-STATE      FE-STATE          EVT-CH  RING-REF  REQUESTS  ERRORS\n\
         xvda  51712  phy:nvme0n1  w     2 (initwait)  1 (initialising)       -         -         0       0\n"
    );
}

#[test]
fn block_attach_errors() {
    let usage = "block-attach DOMAIN SPEC";
    assert_eq!(run("block-attach"), usage_error("missing DOMAIN and SPEC", usage));
    assert_eq!(run("block-attach web"), usage_error("missing SPEC", usage));
    assert_eq!(run("block-attach web phy:sda1,xvdb,w extra"), usage_error("unexpected argument 'extra'", usage));
    // The implementation's refusals, one line each, nothing attached.
    let (system, output) = run_lines(&[
        "block-attach nope phy:sda1,xvdb,w",
        "block-attach Domain-0 phy:sda1,xvdb,w",
        "block-attach web phy:sda1",
        "block-attach web phy:sdz,xvdb,w",
        "block-attach web phy:vda,xvdb,w",
        "block-attach web phy:sda2,xvdb,r",
        "block-attach web phy:sda1,xvda,w",
        "block-attach web ram:lots,xvdb,w",
        "block-attach web nbd:host,xvdb,w",
        "block-attach web phy:sda1,hda,w",
    ]);
    assert_eq!(
        output,
        "error: no domain 'nope'\n\
         error: Domain-0 cannot be given virtual disks\n\
         error: bad disk spec 'phy:sda1' (expected TARGET,VDEV,ACCESS)\n\
         error: no disk or partition 'sdz'\n\
         error: vda is read-only\n\
         error: sda2 is in use (web:xvda rw)\n\
         error: domain 3 (web) already has xvda\n\
         error: bad RAM disk size 'lots' (e.g. 64M)\n\
         error: unsupported target 'nbd:host' (phy:NAME or ram:SIZE)\n\
         error: bad vdev 'hda' (xvda to xvdz)\n"
    );
    assert_eq!(system.storage.vbds, FakeStorage::new().vbds);
    assert_eq!(system.storage.disks, FakeStorage::new().disks);
    // A read-only disk may be attached for reading.
    assert_eq!(run("block-attach web phy:vda,xvdb,r"), "attached vda to domain 3 (web) as xvdb (ro)\n");
}

#[test]
fn block_detach_asks_the_guest_and_forces_with_f() {
    let (system, output) = run_lines(&[
        "block-detach web xvda",
        "block-list web",
        "block-detach web xvda -f",
        "block-detach 3 51744",
        "block-list web",
        "disks",
    ]);
    assert_eq!(
        output,
        format!(
            "error: xvda: the guest did not let go (frontend 4 (connected)); use -f to force\n\
             {BLOCK_LIST_WEB}\
             detached xvda from domain 3 (web)\n\
             detached xvdc from domain 3 (web)\n\
             no virtual block devices\n\
             {}",
            DISKS_TABLE.replace("web:xvda rw", "-")
        )
    );
    assert!(system.storage.vbds.is_empty());
    assert_eq!(run("block-detach -f -f web xvda"), "detached xvda from domain 3 (web)\n");
    assert_eq!(run("block-detach -f web xvdz"), "error: domain 3 (web) has no virtual disk 'xvdz'\n");
    assert_eq!(run("block-detach nope xvda"), "error: no domain 'nope'\n");
}

#[test]
fn block_detach_usage_errors() {
    let usage = "block-detach [-f] DOMAIN VDEV";
    assert_eq!(run("block-detach"), usage_error("missing DOMAIN and VDEV", usage));
    assert_eq!(run("block-detach -f"), usage_error("missing DOMAIN and VDEV", usage));
    assert_eq!(run("block-detach web"), usage_error("missing VDEV", usage));
    assert_eq!(run("block-detach -f web xvda xvdc"), usage_error("unexpected argument 'xvdc'", usage));
    assert_eq!(run("block-detach --force web xvda"), usage_error("unknown option '--force'", usage));
    assert_eq!(run("block-detach web xvda -x"), usage_error("unknown option '-x'", usage));
}

#[test]
fn text_from_devices_and_the_implementation_is_printable() {
    let mut system = FakeSystem::new();
    system.storage.disks[0].model = String::from("EVIL\x1b[2J\u{9b}1m");
    system.storage.disks[0].partitions[0].kind = String::from("\x07bell");
    system.storage.pci_devices[0].vendor_name = Some(String::from("Vendor\x1b]0;title\x07"));
    system.storage.vbds[0].1.frontend_state = String::from("\x1b[6n");
    system.domains.domains[1].name = String::from("w\x1beb");
    system.storage.domains[1].1 = String::from("w\x1beb");
    let (_, output) = run_lines_on(
        system,
        &["disks", "pci", "block-list 3", "block-attach 3 phy:sda1,xvdb,w", "block-attach 3 x", "disks"],
    );
    assert!(!output.contains('\x1b') && !output.contains('\u{9b}') && !output.contains('\x07'), "{output:?}");
    assert!(output.contains("EVIL?[2J?1m"), "{output}");
    assert!(output.contains("?bell"), "{output}");
    assert!(output.contains("Vendor?]0;title?"), "{output}");
    assert!(output.contains("attached sda1 to domain 3 (w?eb) as xvdb (rw)\n"), "{output}");
    assert!(output.contains("\nerror: bad disk spec 'x' (expected TARGET,VDEV,ACCESS)\n"), "{output}");
    assert!(output.contains("  sda1  ") && output.contains("  w?eb:xvdb rw\n"), "{output}");
}

#[test]
fn disk_bench_reports_or_refuses() {
    let output = run("disk-bench nvme0n1 8");
    assert_eq!(
        output,
        "disk-bench nvme0n1: 8 MiB sequential write 10.0 MB/s, sequential read 20.0 MB/s, 4 KiB random read 300 IOPS\n"
    );
    assert_eq!(run("disk-bench nosuch"), "error: no disk named nosuch\n");
    assert_eq!(run("disk-bench"), usage_error("missing DISK", "disk-bench DISK [MIB]"));
    assert_eq!(run("disk-bench sda 0"), usage_error("MIB must be 1..65536, not '0'", "disk-bench DISK [MIB]"));
    assert_eq!(run("disk-bench sda 1 2"), usage_error("unexpected argument '2'", "disk-bench DISK [MIB]"));
}
