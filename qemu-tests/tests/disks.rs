//! The disk tests: a stock Debian Linux domU writes a file system through dom0's blkif
//! back end onto a real (emulated) disk, and what it wrote is checked three ways — by a
//! second Linux domain that mounts the disk read-only, by the guest-visible checksums,
//! and on the host after QEMU exits (`e2fsck -fn` and `debugfs -R "cat /<file>"` on the
//! disk's image file, e2fsprogs).
//!
//! One QEMU machine (TCG, AMD SVM + NPT, 2 CPUs, 1.5 GiB, `build/basalt-test.img`) per
//! disk driver, each booted once with every check on it; each test creates its disk
//! images (64 MiB, zeroed) in a work directory of its own under the system temporary
//! directory, kept only if the test fails:
//! - `linux_disk_integrity_on_virtio_blk` (`vda`, plus `vdb` for the write stream): the
//!   config route — `create linuxdisk` (`disk = ['phy:vda,xvda,w']`);
//! - `linux_disk_integrity_on_ahci` (`sda`) and `linux_disk_integrity_on_nvme`
//!   (`nvme0n1`, plus `nvme1n1` on a second controller for the partitions): the
//!   hot-plug route — `create linux1`, then `block-attach linux1 phy:<disk>,xvda,w`
//!   once its shell is up; Linux's blkfront picks the disk up (the test polls
//!   /proc/partitions).
//!
//! On every machine: `disks` lists the disk with its size and driver and no holder;
//! while the writer holds it, `disks` names `<domain>:xvda rw`; in the writer
//! `blockdev --getsize64 /dev/xvda` is 67108864, `mke2fs`, `mount -t ext4`, five files
//! from /dev/urandom (512 B to 6 MiB: the big ones go out as requests with indirect
//! segments), their sha256, `sync`, `umount`, `poweroff` (the domain goes away, the
//! holder with it). A second domain gets the disk read-only (`block-attach ... ,r`):
//! `/sys/block/xvda/ro` is 1, `mount -o ro`, every file's sha256 matches, and a write to
//! the device (`dd ... conv=fsync`) fails (Linux refuses it itself — blkfront marks the
//! disk read-only from the back end's `mode` = `r` — so this does not reach the back
//! end's own refusal). After the shell's `poweroff`: `e2fsck -fn` is clean and each file
//! read by `debugfs` has the guest's size and sha256. `mem`'s `Free:` after the last
//! domain is gone equals its value before the first `create`; a mismatch is reported
//! with the readings taken whenever no domain ran and dom0's xenstore directory.
//!
//! The virtio-blk machine also carries:
//! - disk claims: while linuxdisk holds vda read-write, `block-attach` of vda to a demo
//!   domain is refused writable and read-only, naming the holder; while the reader
//!   holds it read-only, a writable attach is refused and a read-only one allowed;
//! - `destroy` in the middle of writes: the reader domain also gets vdb (xvdb) and
//!   writes 64 KiB chunks of random data at increasing offsets, each with
//!   `conv=fsync`, printing `COMMITTED <i> <sha256>` once a chunk's fsync returned;
//!   after [`COMMITTED_BEFORE_DESTROY`] of them the test leaves the console and
//!   `destroy`s the domain while it keeps writing. A third Linux domain reads every
//!   chunk it saw committed back (and the host reads them again from the image): each
//!   must match;
//! - a hostile frontend beside a good one: `blkhostile` (configs/blkhostile.cfg, a RAM
//!   disk) runs while the third Linux domain holds vdb; its console must show
//!   `blkhostile: <check> ok` for all [`BLKHOSTILE_CHECKS`] checks and `done 20/20`,
//!   and afterwards the Linux domain's disk still writes and reads back correctly.
//!   blkhostile is created with `on_poweroff=preserve` so its console can be read after
//!   it powered off; the test destroys it. Its config also gives it a read-only RAM
//!   disk (xvdb): a write there must be answered `BLKIF_RSP_ERROR` by the back end
//!   itself (Linux never sends one), a read must succeed.
//!
//! The AHCI machine also carries `block-list` and `block-detach`:
//! - after the writer's file system, `block-list linux1` shows xvda's row
//!   ([`check_connected_row`]: `xvda  51712  phy:sda  w  4 (connected)  4 (connected)
//!   <event channel>  <ring-ref>  <requests>  0`, more than 0 requests);
//! - on the reader, xvda unmounted, `block-detach linux1 xvda` asks the guest to
//!   release it; within [`RELEASE_TIMEOUT`] (before the appliance gives up waiting and
//!   removes it anyway, which is checked not to have happened) `block-list` says `no
//!   virtual block devices`, `disks` shows no holder and xvda leaves the guest's
//!   /proc/partitions; `block-attach` gives it back and the files read back again;
//! - a RAM disk attached as xvdc, once connected, goes at once with `block-detach -f`.
//!
//! The NVMe machine also carries partitions: the test writes an MBR
//! ([`partition_table`]: two type 0x83 partitions, see [`PARTITIONS`]) into the second
//! disk's image before boot. `disks -l` must list `nvme1n1p1` and `nvme1n1p2` right
//! under `nvme1n1` with their sizes and first LBAs; the writer also gets
//! `phy:nvme1n1p2,xvdb,w`, which makes it the partition's holder, refuses the whole
//! disk to another domain even read-only (overlap) and leaves the first partition free
//! for one; in the guest /dev/xvdb has the partition's size, and chunks written at its
//! start and end read back; on the host they are at the partition's offsets, the MBR
//! is unchanged and every other byte, the first partition's included, is still zero.
//!
//! Reading the Linux shell works as in tests/linux.rs (`qemu_tests::linux_console`): a
//! command's output is framed by marker lines the shell prints (busybox ash wraps the
//! echo of long commands), and each command's exit status is printed after it
//! (`status=<n>`).
//!
//! At most [`MAX_MACHINES`] of these machines run at once (the CI box has 2 cores).
//! Failed checks are collected and reported together at the end; a broken conversation
//! (timeout, panic, the emulator exiting, a Linux panic, a crashed domain) stops the
//! test at once. Transcripts are in build/qemu-tests/<test>.serial.log.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use qemu_tests::console_text::output_lines;
use qemu_tests::disk_images::DiskImages;
use qemu_tests::domains::{attach, boot_and_check, detach, free_bytes, PROMPT_QUERY_WAIT};
use qemu_tests::linux_console::{
    linux_command_status, linux_test_config, shut_down_from_inside, LINUX_BOOT_TIMEOUT, LINUX_COMMAND_TIMEOUT,
    SHUTDOWN_TIMEOUT,
};
use qemu_tests::{EmulatorKind, Error, Failures, Machine, MachineConfig, Pattern, Result, COMMAND_TIMEOUT};

/// How long a command that moves megabytes (dd from /dev/urandom, sha256sum, sync,
/// mke2fs) may take: every byte is computed by translated code.
const LINUX_IO_TIMEOUT: Duration = Duration::from_secs(240);
/// How long QEMU may take to exit after the shell's `poweroff` (ACPI S5).
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(120);
/// Machines of this test binary that may run at once.
const MAX_MACHINES: usize = 2;

/// Size of every test disk.
const DISK_BYTES: u64 = 64 << 20;
/// `disks` prints the size like this.
const DISK_SIZE_TEXT: &str = "64.0 MiB";
/// The files the writer creates on the ext2 file system: name, dd block size, count.
/// From one sector to 6 MiB; the large ones are written back as requests with more
/// segments than fit a plain blkif request (indirect descriptors).
const FILES: [(&str, u64, u64); 5] =
    [("sector", 512, 1), ("odd", 1000, 37), ("quarter", 4096, 64), ("mib", 4096, 300), ("big", 65536, 96)];
/// Size of one chunk of the write stream of the destroy test.
const CHUNK_BYTES: u64 = 64 << 10;
/// Chunks the stream must have committed before the test destroys the domain.
const COMMITTED_BEFORE_DESTROY: u64 = 8;
/// Where (in chunks) the final "disk still works" check writes, past any stream chunk
/// that can be committed before the destroy lands.
const AFTER_STREAM_CHUNK: u64 = 768;
/// Checks blkhostile reports: `connect` and its 18 checks of xvda, `connect xvdb` and
/// its 3 checks of the read-only xvdb, `grants released`.
const BLKHOSTILE_CHECKS: usize = 24;
/// `block-list`'s header (shell/src/storage.rs), split into words.
const BLOCK_LIST_HEADER: [&str; 10] =
    ["VDEV", "DEVID", "SOURCE", "MODE", "BE-STATE", "FE-STATE", "EVT-CH", "RING-REF", "REQUESTS", "ERRORS"];
/// xvda's virtual device number (202 << 8).
const XVDA_DEVID: &str = "51712";
/// How long a guest may take to release a disk after `block-detach` asked it to; well
/// below the appliance's own 30 s, after which it removes the device anyway.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the host polls the hypervisor's shell while it waits for a device.
const SHELL_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// One MiB.
const MIB: u64 = 1 << 20;
/// The NVMe machine's second disk (its second controller), which carries an MBR
/// partition table the test writes before boot.
const PARTITIONED_DISK: &str = "nvme1n1";
/// That table's two primary partitions (type 0x83), as (first MiB, end MiB): of
/// different sizes, so a swapped extent shows; the last MiB stays outside both.
const PARTITIONS: [(u64, u64); 2] = [(1, 24), (24, 63)];
/// The MBR's disk signature (bytes 440..444).
const MBR_DISK_SIGNATURE: u32 = 0xB5A1_7D15;
/// The partition the writer gets as xvdb, and the chunks it writes there: 16 chunks
/// at the partition's start and one as its last chunk.
const WRITTEN_PARTITION: usize = 1;
const PARTITION_HEAD_CHUNKS: u64 = 16;

// --- the machines --------------------------------------------------------------------

/// The disk controller a test puts its disk on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Driver {
    VirtioBlk,
    Ahci,
    Nvme,
}

impl Driver {
    /// The block device's name in dom0.
    fn disk(self) -> &'static str {
        match self {
            Self::VirtioBlk => "vda",
            Self::Ahci => "sda",
            Self::Nvme => "nvme0n1",
        }
    }

    /// The driver name `disks` prints.
    fn driver_name(self) -> &'static str {
        match self {
            Self::VirtioBlk => "virtio-blk",
            Self::Ahci => "ahci",
            Self::Nvme => "nvme",
        }
    }

    /// QEMU arguments attaching `image` (raw) as this controller's disk.
    fn qemu_args(self, image: &Path) -> Vec<String> {
        let drive = format!("file={},format=raw,if=none,id=d0", image.display());
        let words: Vec<String> = match self {
            Self::VirtioBlk => vec!["-drive".into(), drive, "-device".into(), "virtio-blk-pci,drive=d0".into()],
            Self::Ahci => vec![
                "-device".into(),
                "ahci,id=ahci".into(),
                "-drive".into(),
                drive,
                "-device".into(),
                "ide-hd,drive=d0,bus=ahci.0".into(),
            ],
            Self::Nvme => vec!["-drive".into(), drive, "-device".into(), "nvme,serial=basalt0,drive=d0".into()],
        };
        words
    }
}

/// A count of machines running, so no more than [`MAX_MACHINES`] boot at once however
/// many test threads cargo starts.
static RUNNING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// A place among the running machines, given back on drop.
struct MachineSlot;

impl MachineSlot {
    fn take() -> Self {
        let mut running = RUNNING.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while *running >= MAX_MACHINES {
            running = RUNNING.1.wait(running).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *running += 1;
        Self
    }
}

impl Drop for MachineSlot {
    fn drop(&mut self) {
        let mut running = RUNNING.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *running -= 1;
        RUNNING.1.notify_one();
    }
}

/// A [`DISK_BYTES`] image, then [`partition_table`] written into its first sector.
fn create_partitioned(images: &DiskImages, file_name: &str) -> Result<PathBuf> {
    let path = images.create(file_name, DISK_BYTES)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|error| Error::new(format!("opening {}: {error}", path.display())))?;
    std::io::Write::write_all(&mut file, &partition_table())
        .map_err(|error| Error::new(format!("writing the MBR of {}: {error}", path.display())))?;
    Ok(path)
}

/// The 512-byte MBR of [`PARTITIONS`] (UEFI 2.10 §5.2.1, "Legacy MBR"): four 16-byte
/// entries at 446 — status, CHS start, type, CHS end, first LBA (u32), sectors (u32) —
/// and 0x55 0xAA at 510. The CHS fields say "beyond CHS" (0xFE 0xFF 0xFF), as for any
/// disk addressed by LBA only.
fn partition_table() -> [u8; 512] {
    const LINUX: u8 = 0x83;
    const BEYOND_CHS: [u8; 3] = [0xFE, 0xFF, 0xFF];
    let mut sector = [0u8; 512];
    sector[440..444].copy_from_slice(&MBR_DISK_SIGNATURE.to_le_bytes());
    for (index, (first, end)) in PARTITIONS.iter().enumerate() {
        let entry = &mut sector[446 + 16 * index..446 + 16 * (index + 1)];
        entry[1..4].copy_from_slice(&BEYOND_CHS);
        entry[4] = LINUX;
        entry[5..8].copy_from_slice(&BEYOND_CHS);
        let (first_lba, sectors) = (first * MIB / 512, (end - first) * MIB / 512);
        entry[8..12].copy_from_slice(&(first_lba as u32).to_le_bytes());
        entry[12..16].copy_from_slice(&(sectors as u32).to_le_bytes());
    }
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector
}

/// `disks`' size text of `bytes` (binary units, one decimal) for sizes in MiB.
fn mib_text(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// Boots QEMU with `extra_args`, runs `checks` and reports every failed check at the
/// end; the disk images are kept (and named in the error) if anything failed.
fn run_disk_test(
    name: &str,
    images: &mut DiskImages,
    extra_args: Vec<String>,
    checks: impl FnOnce(&mut Machine, &mut Failures) -> Result<()>,
) -> Result<()> {
    let mut config = linux_test_config(MachineConfig::standard(EmulatorKind::Qemu).with_cpus(2).with_memory_mib(1536))?;
    config.extra_args.extend(extra_args);
    let _slot = MachineSlot::take();
    boot_and_check(config, name, checks).map_err(|error| {
        images.keep = true;
        error.context(format!("disk images kept in {}", images.directory.display()))
    })
}

// --- the hypervisor's shell ----------------------------------------------------------

/// A committed chunk of the write stream: its index and the sha256 of its data.
type Chunk = (u64, String);

/// A domain: its id and name.
type Domain = (u32, &'static str);

/// `create <arguments>` of domain `name`, which stays a domain of this test.
fn create(machine: &mut Machine, arguments: &str, name: &'static str) -> Result<(Domain, String)> {
    let (id, output) = qemu_tests::domains::create(machine, arguments, name)?;
    Ok(((id, name), output))
}

/// [`qemu_tests::domains::await_log`] waiting up to [`SHUTDOWN_TIMEOUT`].
fn await_log(machine: &mut Machine, seen: &str, domain: Domain, event: &str) -> Result<String> {
    qemu_tests::domains::await_log(machine, seen, domain, event, SHUTDOWN_TIMEOUT)
}

/// [`qemu_tests::domains::destroy`] waiting up to [`SHUTDOWN_TIMEOUT`] for the log line.
fn destroy(machine: &mut Machine, domain: Domain, failures: &mut Failures) -> Result<()> {
    qemu_tests::domains::destroy(machine, domain, SHUTDOWN_TIMEOUT, failures)
}

/// `disks`' row of `disk` and the whole table. The row is laid out as
/// `NAME SIZE MODE MODEL/TYPE DRIVER HOLDERS`, the model may have spaces; the holders
/// are what follows the driver (`-` for none, else `<domain>:<vdev> <rw|ro>, ...`).
fn disk_row(machine: &mut Machine, disk: &str) -> Result<(Option<String>, String)> {
    let table = machine.run_command("disks")?;
    let row = output_lines(&table).into_iter().find(|line| line.split_whitespace().next() == Some(disk));
    Ok((row.map(str::to_owned), table))
}

/// `disks` lists `driver`'s disk with [`DISK_SIZE_TEXT`], its driver, and `holders`
/// (`-` for none).
fn check_disk(machine: &mut Machine, driver: Driver, disk: &str, holders: &str, failures: &mut Failures) -> Result<()> {
    let (row, table) = disk_row(machine, disk)?;
    let found = row.as_deref().and_then(|row| {
        // The last match: a virtio disk's model column says `virtio-blk` too.
        let (before, after) = row.rsplit_once(&format!("  {}  ", driver.driver_name()))?;
        Some((before.contains(&format!(" {DISK_SIZE_TEXT} ")), after.trim()))
    });
    failures.soft(machine.check(found == Some((true, holders)), || {
        format!(
            "`disks` should list {disk} as {DISK_SIZE_TEXT}, driver {}, holders {holders:?}:\n{table}",
            driver.driver_name()
        )
    }))
}

/// `block-attach <domain> <spec>` must print `attached <disk> to domain <id> (<name>)
/// as <vdev> (<rw|ro>)` (the line shell/src/storage.rs documents). A refusal (an
/// `error:` line) stops the test: nothing after it works without the disk.
fn block_attach(machine: &mut Machine, (id, name): Domain, spec: &str, failures: &mut Failures) -> Result<()> {
    let command = format!("block-attach {name} {spec}");
    let output = machine.run_command(&command)?;
    let mut words = spec.trim_start_matches("phy:").split(',');
    let (disk, vdev, mode) = (words.next().unwrap_or_default(), words.next().unwrap_or_default(), words.next());
    let mode = if mode == Some("r") { "ro" } else { "rw" };
    let expected = format!("attached {disk} to domain {id} ({name}) as {vdev} ({mode})");
    let lines = output_lines(&output);
    if !matches!(&lines[..], [line] if line.starts_with("attached ")) {
        return Err(machine.fail(format!("`{command}` should print {expected:?}, printed:\n{output}")));
    }
    failures.soft(
        machine.check(lines == [expected.as_str()], || {
            format!("`{command}` should print {expected:?}, printed:\n{output}")
        }),
    )
}

/// `block-attach <domain> <spec>` must be refused with `error: <disk> is in use
/// <how> by domain <id> (<name>)`.
fn check_attach_refused(
    machine: &mut Machine,
    (domain, spec): (&str, &str),
    (disk, how, (holder_id, holder)): (&str, &str, Domain),
    failures: &mut Failures,
) -> Result<()> {
    let command = format!("block-attach {domain} {spec}");
    let output = machine.run_command(&command)?;
    let expected = format!("error: {disk} is in use {how} by domain {holder_id} ({holder})");
    failures.soft(machine.check(output_lines(&output) == [expected.as_str()], || {
        format!("`{command}` should be refused with {expected:?}, printed:\n{output}")
    }))
}

// --- block-list, block-detach and partitions -----------------------------------------

/// `block-list <domain>` must show its header and `vdev` connected:
/// `<vdev>  <devid>  <source>  <mode>  4 (connected)  4 (connected)  <event channel>
/// <ring-ref>  <requests>  0` with more than 0 requests served.
fn check_connected_row(
    machine: &mut Machine,
    (_, name): Domain,
    (vdev, devid, source, mode): (&str, &str, &str, &str),
    failures: &mut Failures,
) -> Result<()> {
    let command = format!("block-list {name}");
    let output = machine.run_command(&command)?;
    let lines = output_lines(&output);
    let header = lines.first().is_some_and(|header| header.split_whitespace().eq(BLOCK_LIST_HEADER));
    let row = lines.iter().skip(1).find(|line| line.split_whitespace().next() == Some(vdev));
    let connected = row.is_some_and(|row| match row.split_whitespace().collect::<Vec<_>>()[..] {
        [_, row_devid, row_source, row_mode, "4", "(connected)", "4", "(connected)", event_channel, ring_ref, requests, "0"] => {
            (row_devid, row_source, row_mode) == (devid, source, mode)
                && event_channel.parse::<u32>().is_ok()
                && ring_ref.parse::<u32>().is_ok()
                && requests.parse::<u64>().is_ok_and(|requests| requests > 0)
        }
        _ => false,
    });
    failures.soft(machine.check(header && connected, || {
        format!(
            "`{command}` should list {vdev} as \"{vdev}  {devid}  {source}  {mode}  4 (connected)  4 (connected)  <event channel>  <ring-ref>  <requests, more than 0>  0\" under its header, printed:\n{output}"
        )
    }))
}

/// Polls `block-list <domain>` until `done` accepts its output lines or `timeout`
/// passed; returns whether it did, how long it took and the last output.
fn await_block_list(
    machine: &mut Machine,
    (_, name): Domain,
    timeout: Duration,
    done: impl Fn(&[&str]) -> bool,
) -> Result<(bool, Duration, String)> {
    let started = Instant::now();
    loop {
        let output = machine.run_command(&format!("block-list {name}"))?;
        if done(&output_lines(&output)) {
            return Ok((true, started.elapsed(), output));
        }
        if started.elapsed() >= timeout {
            return Ok((false, started.elapsed(), output));
        }
        std::thread::sleep(SHELL_POLL_INTERVAL);
    }
}

/// Attached to the reader's shell, its read-only xvda unmounted: `block-detach` asks
/// the guest to release the disk, which it does (Linux's blkfront lets an unused disk
/// go when the back end goes Closing) well before the appliance's own timeout —
/// `block-list` empty, no holder in `disks`, xvda gone from /proc/partitions; then
/// `block-attach` gives it back and the files read back again. Ends attached.
fn check_detach_and_reattach(
    machine: &mut Machine,
    reader: Domain,
    driver: Driver,
    sums: &[String],
    failures: &mut Failures,
) -> Result<()> {
    let (id, name) = reader;
    let disk = driver.disk();
    detach(machine, name)?;
    let command = format!("block-detach {name} xvda");
    let output = machine.run_command(&command)?;
    let expected = format!("detaching xvda from domain {id}: asked the guest to release it");
    failures.soft(machine.check(output_lines(&output) == [expected.as_str()], || {
        format!("`{command}` should print {expected:?}, printed:\n{output}")
    }))?;
    let (released, took, last) =
        await_block_list(machine, reader, RELEASE_TIMEOUT, |lines| lines == ["no virtual block devices"])?;
    eprintln!("[{}] {name} released xvda {:.1} s after block-detach", machine.name(), took.as_secs_f64());
    failures.soft(machine.check(released, || {
        format!(
            "after `{command}`, `block-list {name}` should print \"no virtual block devices\" within {} s, printed:\n{last}",
            RELEASE_TIMEOUT.as_secs()
        )
    }))?;
    let timed_out = machine.transcript_text().contains("xvda detached (the guest did not release it in time)");
    failures
        .soft(machine.check(!timed_out, || {
            "the appliance removed xvda because the guest did not release it in time".to_owned()
        }))?;
    check_disk(machine, driver, disk, "-", failures)?;
    attach(machine, name)?;
    let poll = "i=0; while grep -q ' xvda$' /proc/partitions && [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done; grep -c ' xvda$' /proc/partitions";
    let (_, lines) = linux_command_status(machine, poll, Duration::from_secs(90))?;
    failures.soft(machine.check(lines == ["0"], || {
        format!("after `{command}` xvda should leave the guest's /proc/partitions; `grep -c` printed {lines:?}")
    }))?;
    detach(machine, name)?;
    block_attach(machine, reader, &format!("phy:{disk},xvda,r"), failures)?;
    check_disk(machine, driver, disk, &format!("{name}:xvda ro"), failures)?;
    attach(machine, name)?;
    await_partition(machine, "xvda", DISK_BYTES, failures)?;
    compare_files(machine, sums, "after block-detach and block-attach", failures)
}

/// Attached to a domain's shell: a RAM disk attached as xvdc, once connected, is taken
/// away at once by `block-detach -f` (whatever the guest does) and is gone from
/// `block-list`. Ends attached.
fn check_forced_detach(machine: &mut Machine, domain: Domain, failures: &mut Failures) -> Result<()> {
    let (id, name) = domain;
    detach(machine, name)?;
    let command = format!("block-attach {name} ram:1M,xvdc,w");
    let output = machine.run_command(&command)?;
    let suffix = format!(" to domain {id} ({name}) as xvdc (rw)");
    if !matches!(&output_lines(&output)[..], [line] if line.starts_with("attached ram:") && line.ends_with(&suffix)) {
        return Err(
            machine.fail(format!("`{command}` should print \"attached ram:<size>{suffix}\", printed:\n{output}"))
        );
    }
    // The source column of a RAM disk has a space in it (`ram:1.0 MiB`): match the states.
    let xvdc_connected = |lines: &[&str]| {
        lines.iter().any(|line| line.starts_with("xvdc ") && line.matches("4 (connected)").count() == 2)
    };
    let (connected, _, last) = await_block_list(machine, domain, RELEASE_TIMEOUT, xvdc_connected)?;
    failures.soft(machine.check(connected, || {
        format!("after `{command}`, `block-list {name}` should show xvdc connected, printed:\n{last}")
    }))?;
    let command = format!("block-detach -f {name} xvdc");
    let output = machine.run_command(&command)?;
    let expected = format!("detached xvdc from domain {id}");
    failures.soft(machine.check(output_lines(&output) == [expected.as_str()], || {
        format!("`{command}` should print {expected:?}, printed:\n{output}")
    }))?;
    let list = machine.run_command(&format!("block-list {name}"))?;
    let listed = output_lines(&list).iter().any(|line| line.split_whitespace().next() == Some("xvdc"));
    failures.soft(
        machine.check(!listed, || {
            format!("after `{command}`, `block-list {name}` should not list xvdc, printed:\n{list}")
        }),
    )?;
    attach(machine, name).map(drop)
}

/// Bytes of partition `index` of [`PARTITIONS`].
fn partition_bytes(index: usize) -> u64 {
    PARTITIONS.get(index).map_or(0, |(first, end)| (end - first) * MIB)
}

/// `disks -l` must list [`PARTITIONED_DISK`] and right under it each of
/// [`PARTITIONS`]: `<disk>p<n>  <size>  rw  <first LBA>  type 0x83  <holders>`.
fn check_partitions(machine: &mut Machine, holders: [&str; 2], failures: &mut Failures) -> Result<()> {
    let table = machine.run_command("disks -l")?;
    let lines = output_lines(&table);
    let disk_at = lines.iter().position(|line| line.split_whitespace().next() == Some(PARTITIONED_DISK));
    let expected: Vec<String> = PARTITIONS
        .iter()
        .zip(holders)
        .enumerate()
        .map(|(index, ((first, _), holders))| {
            let name = format!("{PARTITIONED_DISK}p{}", index + 1);
            format!("{name}  {}  rw  {}  type 0x83  {holders}", mib_text(partition_bytes(index)), first * MIB / 512)
        })
        .collect();
    let listed = disk_at.is_some_and(|at| {
        expected.iter().enumerate().all(|(index, row)| {
            lines.get(at + 1 + index).is_some_and(|line| line.split_whitespace().eq(row.split_whitespace()))
        })
    });
    failures.soft(machine.check(listed, || {
        format!("`disks -l` should list right under {PARTITIONED_DISK}:\n{}\nprinted:\n{table}", expected.join("\n"))
    }))
}

/// The writer, detached, gets the second partition as xvdb (writable): `disks -l`
/// names it as the holder; the whole disk is then refused even read-only (it
/// overlaps), while the first partition may go to another domain.
fn check_partition_claims(machine: &mut Machine, writer: Domain, failures: &mut Failures) -> Result<()> {
    let partition = format!("{PARTITIONED_DISK}p{}", WRITTEN_PARTITION + 1);
    block_attach(machine, writer, &format!("phy:{partition},xvdb,w"), failures)?;
    let holder = format!("{}:xvdb rw", writer.1);
    check_partitions(machine, ["-", &holder], failures)?;
    check_disk(machine, Driver::Nvme, PARTITIONED_DISK, "-", failures)?;
    let (demo, _) = create(machine, "demo", "demo")?;
    let whole = format!("phy:{PARTITIONED_DISK},xvdc,r");
    check_attach_refused(machine, ("demo", &whole), (&partition, "read-write", writer), failures)?;
    block_attach(machine, demo, &format!("phy:{PARTITIONED_DISK}p1,xvdc,w"), failures)?;
    check_partitions(machine, ["demo:xvdc rw", &holder], failures)?;
    destroy(machine, demo, failures)?;
    check_partitions(machine, ["-", &holder], failures)
}

/// The sha256 of what the writer wrote to the partition: its first
/// [`PARTITION_HEAD_CHUNKS`] chunks, and its last chunk.
struct PartitionWrites {
    head: String,
    tail: String,
}

/// Attached to the writer's shell with the partition as xvdb: its size is the
/// partition's; random chunks written at its start and as its last chunk (`fsync`ed)
/// read back with the same sha256 after the caches are dropped.
fn write_partition(machine: &mut Machine, failures: &mut Failures) -> Result<PartitionWrites> {
    let bytes = partition_bytes(WRITTEN_PARTITION);
    await_partition(machine, "xvdb", bytes, failures)?;
    let (_, lines) = linux_command_status(machine, "blockdev --getsize64 /dev/xvdb", LINUX_COMMAND_TIMEOUT)?;
    failures.soft(machine.check(lines == [bytes.to_string()], || {
        format!("`blockdev --getsize64 /dev/xvdb` (a partition) should print {bytes}, printed {lines:?}")
    }))?;
    let tail_chunk = bytes / CHUNK_BYTES - 1;
    let write = format!(
        "dd if=/dev/urandom of=/tmp/head bs={CHUNK_BYTES} count={PARTITION_HEAD_CHUNKS} 2>/dev/null && dd if=/dev/urandom of=/tmp/tail bs={CHUNK_BYTES} count=1 2>/dev/null && dd if=/tmp/head of=/dev/xvdb bs={CHUNK_BYTES} conv=fsync 2>/dev/null && dd if=/tmp/tail of=/dev/xvdb bs={CHUNK_BYTES} seek={tail_chunk} conv=fsync 2>/dev/null && sha256sum /tmp/head /tmp/tail"
    );
    let lines = linux_must(machine, &write, LINUX_IO_TIMEOUT)?;
    let paths = ["/tmp/head".to_owned(), "/tmp/tail".to_owned()];
    let written = match parse_sha256sums(&lines, &paths).as_deref() {
        Some([head, tail]) => PartitionWrites { head: head.clone(), tail: tail.clone() },
        _ => return Err(machine.fail(format!("sha256sum printed no sum for one of {paths:?}:\n{}", lines.join("\n")))),
    };
    let read = format!(
        "blockdev --flushbufs /dev/xvdb && echo 3 > /proc/sys/vm/drop_caches && echo \"HEAD $(dd if=/dev/xvdb bs={CHUNK_BYTES} count={PARTITION_HEAD_CHUNKS} 2>/dev/null | sha256sum)\" && echo \"TAIL $(dd if=/dev/xvdb bs={CHUNK_BYTES} skip={tail_chunk} count=1 2>/dev/null | sha256sum)\""
    );
    let lines = linux_must(machine, &read, LINUX_IO_TIMEOUT)?;
    let sum = |label: &str| {
        let prefix = format!("{label} ");
        lines.iter().find_map(|line| Some(line.strip_prefix(&prefix)?.split_whitespace().next()?.to_owned()))
    };
    let (head, tail) = (sum("HEAD"), sum("TAIL"));
    failures.soft(machine.check(
        head.as_ref() == Some(&written.head) && tail.as_ref() == Some(&written.tail),
        || {
            format!(
                "the partition (xvdb) read back as head {head:?}, tail {tail:?}; written head {}, tail {}",
                written.head, written.tail
            )
        },
    ))?;
    Ok(written)
}

// --- the Linux shell -----------------------------------------------------------------

/// `create <arguments>`, the console, Linux up to its shell; stays attached.
fn boot_linux(machine: &mut Machine, arguments: &str, name: &'static str) -> Result<Domain> {
    let (id, took) = qemu_tests::linux_console::boot_linux(machine, arguments, name, LINUX_BOOT_TIMEOUT)?;
    eprintln!("[{}] {name} (domain {id}): create to shell {:.1} s", machine.name(), took.as_secs_f64());
    Ok((id, name))
}

/// [`linux_command_status`] for a step the rest of the test builds on: a non-zero status
/// stops the test.
fn linux_must(machine: &mut Machine, command: &str, timeout: Duration) -> Result<Vec<String>> {
    let (status, lines) = linux_command_status(machine, command, timeout)?;
    if status != 0 {
        return Err(machine.fail(format!("`{command}` in Linux failed with status {status}:\n{}", lines.join("\n"))));
    }
    Ok(lines)
}

/// Polls /proc/partitions (up to a minute) until `vdev` is there — blkfront connects
/// to a hot-plugged disk in the background — and checks its size, `bytes` (in 1 KiB
/// blocks there).
fn await_partition(machine: &mut Machine, vdev: &str, bytes: u64, failures: &mut Failures) -> Result<()> {
    let poll = format!(
        "i=0; while ! grep -q ' {vdev}$' /proc/partitions && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done; grep ' {vdev}$' /proc/partitions"
    );
    let lines = linux_must(machine, &poll, Duration::from_secs(120))?;
    let blocks = (bytes / 1024).to_string();
    failures.soft(
        machine.check(matches!(&lines[..], [line] if line.split_whitespace().nth(2) == Some(blocks.as_str())), || {
            format!("/proc/partitions should list {vdev} with {blocks} blocks, has {lines:?}")
        }),
    )
}

/// The sha256 of each path in `lines` of `sha256sum`'s output, in the order of `paths`.
fn parse_sha256sums(lines: &[String], paths: &[String]) -> Option<Vec<String>> {
    paths
        .iter()
        .map(|path| {
            lines.iter().find_map(|line| {
                let (sum, name) = line.split_once("  ")?;
                (name == path && sum.len() == 64 && sum.bytes().all(|byte| byte.is_ascii_hexdigit()))
                    .then(|| sum.to_owned())
            })
        })
        .collect()
}

/// `sha256sum` of [`FILES`] under /mnt, in their order.
fn guest_file_sums(machine: &mut Machine) -> Result<Vec<String>> {
    let paths: Vec<String> = FILES.iter().map(|(name, _, _)| format!("/mnt/{name}")).collect();
    let lines = linux_must(machine, &format!("sha256sum {}", paths.join(" ")), LINUX_IO_TIMEOUT)?;
    parse_sha256sums(&lines, &paths)
        .ok_or_else(|| machine.fail(format!("sha256sum printed no sum for one of {paths:?}:\n{}", lines.join("\n"))))
}

/// Types `poweroff` at the attached shell of `domain`; waits for the console to end
/// because the domain is gone, and for its `destroyed` log line.
fn poweroff_linux(machine: &mut Machine, (id, name): Domain) -> Result<()> {
    let text = shut_down_from_inside(machine, (id, name), "poweroff")?;
    await_log(machine, &text, (id, name), "destroyed").map(drop)
}

// --- the host side -------------------------------------------------------------------

/// An e2fsprogs tool: /usr/sbin's copy (not on every user's PATH), else by name.
fn e2fsprogs_tool(name: &str) -> PathBuf {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.is_file() {
        sbin
    } else {
        PathBuf::from(name)
    }
}

/// The lower-case hex sha256 of `bytes`, by coreutils' `sha256sum`.
fn host_sha256(bytes: &[u8]) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| Error::new(format!("cannot run sha256sum: {error}")))?;
    let mut stdin = child.stdin.take().ok_or_else(|| Error::new("sha256sum has no stdin"))?;
    let data = bytes.to_vec();
    // Fed from a thread: sha256sum's output is tiny, but the pipe must not fill up.
    let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    let output = child.wait_with_output().map_err(|error| Error::new(format!("sha256sum: {error}")))?;
    let fed = feeder.join().map_err(|_| Error::new("feeding sha256sum panicked"))?;
    fed.map_err(|error| Error::new(format!("writing to sha256sum: {error}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.split_whitespace().next() {
        Some(sum) if output.status.success() && sum.len() == 64 => Ok(sum.to_owned()),
        _ => Err(Error::new(format!("sha256sum printed {text:?} ({})", output.status))),
    }
}

/// After QEMU exited: `e2fsck -fn` finds the file system clean and each of [`FILES`],
/// read with `debugfs -R "cat /<file>"`, has its size and the guest's sha256.
fn check_image_on_host(image: &Path, sums: &[String], failures: &mut Failures) -> Result<()> {
    let fsck = Command::new(e2fsprogs_tool("e2fsck"))
        .arg("-fn")
        .arg(image)
        .output()
        .map_err(|error| Error::new(format!("cannot run e2fsck (install e2fsprogs): {error}")))?;
    failures.soft(qemu_tests::ensure(fsck.status.success(), || {
        format!(
            "`e2fsck -fn {}` should find the file system clean, exited with {}:\n{}{}",
            image.display(),
            fsck.status,
            String::from_utf8_lossy(&fsck.stdout),
            String::from_utf8_lossy(&fsck.stderr)
        )
    }))?;
    for ((name, block, count), guest_sum) in FILES.iter().zip(sums) {
        let cat = Command::new(e2fsprogs_tool("debugfs"))
            .arg("-R")
            .arg(format!("cat /{name}"))
            .arg(image)
            .output()
            .map_err(|error| Error::new(format!("cannot run debugfs (install e2fsprogs): {error}")))?;
        let host_sum = host_sha256(&cat.stdout)?;
        failures.soft(qemu_tests::ensure(
            cat.status.success() && cat.stdout.len() as u64 == block * count && host_sum == *guest_sum,
            || {
                format!(
                    "debugfs read /{name} from {} as {} bytes with sha256 {host_sum}; the guest wrote {} bytes with sha256 {guest_sum} ({}; {})",
                    image.display(),
                    cat.stdout.len(),
                    block * count,
                    cat.status,
                    String::from_utf8_lossy(&cat.stderr).trim()
                )
            },
        ))?;
    }
    Ok(())
}

/// After QEMU exited: each committed chunk of the write stream is in `image` as the
/// guest wrote it.
fn check_stream_on_host(image: &Path, committed: &[Chunk], failures: &mut Failures) -> Result<()> {
    if committed.is_empty() {
        return Ok(());
    }
    let data = std::fs::read(image).map_err(|error| Error::new(format!("reading {}: {error}", image.display())))?;
    for (index, guest_sum) in committed {
        let start = (index * CHUNK_BYTES) as usize;
        let chunk = data.get(start..start + CHUNK_BYTES as usize).unwrap_or_default();
        let host_sum = host_sha256(chunk)?;
        failures.soft(qemu_tests::ensure(host_sum == *guest_sum, || {
            format!(
                "chunk {index} of {} has sha256 {host_sum} on the host; the guest committed {guest_sum}",
                image.display()
            )
        }))?;
    }
    Ok(())
}

/// After QEMU exited: the partitioned disk's image still starts with the MBR the test
/// wrote; the writer's chunks are at the partition's offsets with the guest's sha256;
/// every other byte is still zero (the first partition untouched).
fn check_partitions_on_host(image: &Path, written: &PartitionWrites, failures: &mut Failures) -> Result<()> {
    let data = std::fs::read(image).map_err(|error| Error::new(format!("reading {}: {error}", image.display())))?;
    let table = partition_table();
    failures.soft(qemu_tests::ensure(data.get(..table.len()) == Some(&table[..]), || {
        format!("{}: the MBR the test wrote changed", image.display())
    }))?;
    let start = PARTITIONS[WRITTEN_PARTITION].0 * MIB;
    let end = start + partition_bytes(WRITTEN_PARTITION);
    let head = start..start + PARTITION_HEAD_CHUNKS * CHUNK_BYTES;
    let tail = end - CHUNK_BYTES..end;
    for (what, range, guest_sum) in [("head", &head, &written.head), ("tail", &tail, &written.tail)] {
        let bytes = data.get(range.start as usize..range.end as usize).unwrap_or_default();
        let host_sum = host_sha256(bytes)?;
        failures.soft(qemu_tests::ensure(host_sum == *guest_sum, || {
            format!(
                "{}: the partition's {what} (bytes {range:?}) has sha256 {host_sum} on the host; the guest wrote {guest_sum}",
                image.display()
            )
        }))?;
    }
    for range in [table.len() as u64..head.start, head.end..tail.start, tail.end..DISK_BYTES] {
        let bytes = data.get(range.start as usize..range.end as usize).unwrap_or_default();
        let written_at = bytes.iter().position(|&byte| byte != 0).map(|at| range.start + at as u64);
        failures.soft(qemu_tests::ensure(written_at.is_none() && bytes.len() as u64 == range.end - range.start, || {
            format!(
                "{}: bytes {range:?} should still be zero (nothing wrote there; the first partition is {:?} MiB), byte {written_at:?} is not",
                image.display(),
                PARTITIONS[0]
            )
        }))?;
    }
    Ok(())
}

/// The shell's `poweroff`: QEMU must exit cleanly (ACPI S5), so the disk images are
/// complete.
fn power_off_machine(machine: &mut Machine) -> Result<()> {
    machine.wait_prompt_query(PROMPT_QUERY_WAIT);
    machine.skip_pending_output();
    machine.send_line("poweroff")?;
    let status = machine.wait_exit(POWEROFF_TIMEOUT)?;
    if machine.is_clean_exit(status) {
        Ok(())
    } else {
        Err(machine.fail(format!("`poweroff` did not power off cleanly: {}", machine.explain_exit(status))))
    }
}

// --- the checks ----------------------------------------------------------------------

/// Attached to the writer's shell with the disk as xvda: size, file system, files,
/// their sums, sync and umount. Returns the sums in [`FILES`]' order.
fn write_files(machine: &mut Machine, failures: &mut Failures) -> Result<Vec<String>> {
    let (_, lines) = linux_command_status(machine, "blockdev --getsize64 /dev/xvda", LINUX_COMMAND_TIMEOUT)?;
    failures.soft(machine.check(lines == [DISK_BYTES.to_string()], || {
        format!("`blockdev --getsize64 /dev/xvda` should print {DISK_BYTES}, printed {lines:?}")
    }))?;
    linux_must(machine, "mke2fs /dev/xvda >/dev/null", LINUX_IO_TIMEOUT)?;
    linux_must(machine, "mkdir -p /mnt && mount -t ext4 /dev/xvda /mnt", LINUX_COMMAND_TIMEOUT)?;
    let writes: Vec<String> = FILES
        .iter()
        .map(|(name, block, count)| format!("dd if=/dev/urandom of=/mnt/{name} bs={block} count={count} 2>/dev/null"))
        .collect();
    linux_must(machine, &writes.join(" && "), LINUX_IO_TIMEOUT)?;
    let sums = guest_file_sums(machine)?;
    linux_must(machine, "sync && umount /mnt", LINUX_IO_TIMEOUT)?;
    Ok(sums)
}

/// Attached to the reader's shell with the disk read-only as xvda: the files read back
/// with `sums`, and writing to the device fails.
fn verify_files(machine: &mut Machine, sums: &[String], failures: &mut Failures) -> Result<()> {
    let (_, lines) = linux_command_status(machine, "cat /sys/block/xvda/ro", LINUX_COMMAND_TIMEOUT)?;
    failures.soft(machine.check(lines == ["1"], || format!("/sys/block/xvda/ro should be 1, is {lines:?}")))?;
    compare_files(machine, sums, "read-only", failures)?;
    let (status, lines) =
        linux_command_status(machine, "dd if=/dev/zero of=/dev/xvda bs=512 count=1 conv=fsync", LINUX_COMMAND_TIMEOUT)?;
    failures.soft(machine.check(status != 0, || {
        format!(
            "writing to the read-only /dev/xvda (dd ... conv=fsync) should fail, exited with 0:\n{}",
            lines.join("\n")
        )
    }))
}

/// Attached to a shell with the disk as xvda: mounted read-only, every file has the
/// sha256 of `sums`; unmounted again. `when` says which reading it was in messages.
fn compare_files(machine: &mut Machine, sums: &[String], when: &str, failures: &mut Failures) -> Result<()> {
    linux_must(machine, "mkdir -p /mnt && mount -o ro -t ext4 /dev/xvda /mnt", LINUX_COMMAND_TIMEOUT)?;
    let read = guest_file_sums(machine)?;
    for (((name, _, _), written), read) in FILES.iter().zip(sums).zip(&read) {
        failures.soft(machine.check(written == read, || {
            format!("/mnt/{name} read back ({when}) with sha256 {read}, written with {written}")
        }))?;
    }
    linux_must(machine, "umount /mnt", LINUX_COMMAND_TIMEOUT).map(drop)
}

/// The reader, attached, has the stream disk as xvdb: starts the chunk stream, waits
/// for [`COMMITTED_BEFORE_DESTROY`] chunks, leaves the console and destroys the domain
/// while it writes. Returns the chunks seen committed (index, sha256).
fn destroy_mid_stream(machine: &mut Machine, domain: Domain, failures: &mut Failures) -> Result<Vec<Chunk>> {
    let chunks = DISK_BYTES / CHUNK_BYTES;
    let stream = format!(
        "i=0; while [ $i -lt {chunks} ]; do dd if=/dev/urandom of=/tmp/chunk bs={CHUNK_BYTES} count=1 2>/dev/null && dd if=/tmp/chunk of=/dev/xvdb bs={CHUNK_BYTES} seek=$i count=1 conv=fsync 2>/dev/null || break; echo \"COMMITTED $i $(sha256sum < /tmp/chunk)\"; i=$((i+1)); done; echo STREAM-\"ENDED $i\""
    );
    machine.skip_pending_output();
    machine.send_line(&stream)?;
    let last = COMMITTED_BEFORE_DESTROY - 1;
    let text = machine
        .expect(Pattern::regex(&format!(r"COMMITTED {last} [0-9a-f]+  -\n")), LINUX_IO_TIMEOUT)
        .map_err(|error| error.context("the write stream's committed chunks"))?;
    let committed: Vec<Chunk> = output_lines(&text)
        .into_iter()
        .filter_map(|line| match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["COMMITTED", index, sum, "-"] if sum.len() == 64 => Some((index.parse().ok()?, sum.to_owned())),
            _ => None,
        })
        .collect();
    let indices: Vec<u64> = committed.iter().map(|(index, _)| *index).collect();
    failures.soft(machine.check(indices == (0..COMMITTED_BEFORE_DESTROY).collect::<Vec<_>>(), || {
        format!("the stream should have printed COMMITTED 0..{last} in order, printed:\n{text}")
    }))?;
    detach(machine, domain.1)?;
    let started = Instant::now();
    destroy(machine, domain, failures)?;
    eprintln!("[{}] destroyed {} mid-stream in {:.1} s", machine.name(), domain.1, started.elapsed().as_secs_f64());
    let ended = machine.transcript_text().contains("STREAM-ENDED");
    failures.soft(machine.check(!ended, || {
        "the write stream ended before the domain was destroyed: the destroy did not land mid-write".to_owned()
    }))?;
    Ok(committed)
}

/// Attached to a domain with the stream disk as xvda: every committed chunk reads back
/// with its sha256.
fn verify_chunks(machine: &mut Machine, committed: &[Chunk], failures: &mut Failures) -> Result<()> {
    let indices: Vec<String> = committed.iter().map(|(index, _)| index.to_string()).collect();
    let read = format!(
        "for i in {}; do echo \"CHUNK $i $(dd if=/dev/xvda bs={CHUNK_BYTES} skip=$i count=1 2>/dev/null | sha256sum)\"; done",
        indices.join(" ")
    );
    let lines = linux_must(machine, &read, LINUX_IO_TIMEOUT)?;
    for (index, written) in committed {
        let prefix = format!("CHUNK {index} ");
        let read = lines.iter().find_map(|line| line.strip_prefix(&prefix)?.split_whitespace().next());
        failures.soft(machine.check(read == Some(written.as_str()), || {
            format!("committed chunk {index} (sha256 {written}) read back as {read:?} after the writer was destroyed")
        }))?;
    }
    Ok(())
}

/// Attached to a Linux domain with a writable xvda: 1 MiB written past the stream's
/// chunks reads back (after dropping the caches) with the same sha256.
fn check_disk_still_works(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let write = format!(
        "dd if=/dev/urandom of=/tmp/probe bs={CHUNK_BYTES} count=16 2>/dev/null && dd if=/tmp/probe of=/dev/xvda bs={CHUNK_BYTES} seek={AFTER_STREAM_CHUNK} conv=fsync 2>/dev/null && sha256sum < /tmp/probe"
    );
    let written = linux_must(machine, &write, LINUX_IO_TIMEOUT)?;
    let read = format!(
        "blockdev --flushbufs /dev/xvda && echo 3 > /proc/sys/vm/drop_caches && dd if=/dev/xvda bs={CHUNK_BYTES} skip={AFTER_STREAM_CHUNK} count=16 2>/dev/null | sha256sum"
    );
    let read = linux_must(machine, &read, LINUX_IO_TIMEOUT)?;
    let sum = |lines: &[String]| lines.first().and_then(|line| line.split_whitespace().next().map(str::to_owned));
    let (written, read) = (sum(&written), sum(&read));
    failures.soft(machine.check(written.is_some() && written == read, || {
        format!("after blkhostile, 1 MiB written to xvda had sha256 {written:?} and read back as {read:?}")
    }))
}

/// `create blkhostile` (kept after it powers off: `on_poweroff=preserve`), beside the
/// running Linux domain: every check ok, `done 20/20`; then destroyed.
fn check_blkhostile(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let (hostile, output) = create(machine, "blkhostile on_poweroff=preserve", "blkhostile")?;
    let reason = await_log(machine, &output, hostile, "shut down:")?;
    failures.soft(
        machine.check(reason == "poweroff", || format!("blkhostile should power off, shut down with {reason:?}")),
    )?;
    attach(machine, "blkhostile")?;
    let console = machine
        .expect(Pattern::regex(r"blkhostile: done \d+/\d+\n"), COMMAND_TIMEOUT)
        .map_err(|error| error.context("blkhostile's console replay"))?;
    detach(machine, "blkhostile")?;
    let lines: Vec<&str> = console.lines().filter(|line| line.starts_with("blkhostile: ")).collect();
    let passed = lines.iter().filter(|line| line.ends_with(" ok")).count();
    let failed: Vec<&&str> = lines.iter().filter(|line| line.contains(" FAILED")).collect();
    let done = format!("blkhostile: done {BLKHOSTILE_CHECKS}/{BLKHOSTILE_CHECKS}");
    failures.soft(
        machine.check(passed == BLKHOSTILE_CHECKS && failed.is_empty() && lines.last() == Some(&done.as_str()), || {
            format!("blkhostile should pass all {BLKHOSTILE_CHECKS} checks and print {done:?}; its console:\n{console}")
        }),
    )?;
    destroy(machine, hostile, failures)
}

/// `mem`'s `Free:` readings at the moments no domain was running, so a mismatch at
/// the end says after which phase memory went missing.
type FreeTrace = Vec<(&'static str, u64)>;

/// Reads `mem`'s `Free:` into `trace` after `phase`.
fn trace_free(machine: &mut Machine, trace: &mut FreeTrace, phase: &'static str) -> Result<()> {
    let (free, _) = free_bytes(machine)?;
    trace.push((phase, free));
    Ok(())
}

/// `mem`'s `Free:` must be exactly `initial` again. A mismatch is reported with the
/// readings of `trace` and dom0's xenstore directory (nodes left behind cost memory).
fn check_free(
    machine: &mut Machine,
    (initial, initial_output): (u64, &str),
    trace: &FreeTrace,
    failures: &mut Failures,
) -> Result<()> {
    let (free, output) = free_bytes(machine)?;
    if free == initial {
        return Ok(());
    }
    let phases: String = trace
        .iter()
        .map(|(phase, free)| format!("\n  {phase}: Free {free} ({:+})", *free as i128 - initial as i128))
        .collect();
    let store = machine.run_command("xenstore-ls /local/domain/0")?;
    failures.soft(machine.check(false, || {
        format!(
            "after destroying every domain `mem` says Free: {free} bytes, expected exactly {initial} (difference {}); readings with no domain running:{phases}\nbefore the first create:\n{initial_output}\nnow:\n{output}\nxenstore-ls /local/domain/0:\n{store}",
            free as i128 - initial as i128
        )
    }))
}

/// One machine: the disk integrity checks on `driver`'s disk (see the module doc);
/// the virtio-blk machine also runs the claims, destroy-mid-write and blkhostile checks.
/// After the guests, the shell's `poweroff` and the checks of the images on the host.
fn disk_integrity(driver: Driver, name: &str) -> Result<()> {
    let mut images = DiskImages::new("disks", name)?;
    let disk_image = images.create("disk.img", DISK_BYTES)?;
    let mut extra_args = driver.qemu_args(&disk_image);
    let second_image = match driver {
        Driver::VirtioBlk => {
            let stream_image = images.create("stream.img", DISK_BYTES)?;
            let drive = format!("file={},format=raw,if=none,id=d1", stream_image.display());
            extra_args.extend(["-drive".into(), drive, "-device".into(), "virtio-blk-pci,drive=d1".into()]);
            Some(stream_image)
        }
        Driver::Nvme => {
            // After the first controller on the command line, so it is nvme1n1.
            let partitioned_image = create_partitioned(&images, "partitioned.img")?;
            let drive = format!("file={},format=raw,if=none,id=d1", partitioned_image.display());
            extra_args.extend(["-drive".into(), drive, "-device".into(), "nvme,serial=basalt1,drive=d1".into()]);
            Some(partitioned_image)
        }
        Driver::Ahci => None,
    };
    run_disk_test(name, &mut images, extra_args, |machine, failures| {
        let (initial, initial_output) = free_bytes(machine)?;
        let mut trace = FreeTrace::new();
        let results = guest_checks(machine, driver, &mut trace, failures)?;
        check_free(machine, (initial, &initial_output), &trace, failures)?;
        power_off_machine(machine)?;
        check_image_on_host(&disk_image, &results.sums, failures)?;
        if let Some(image) = &second_image {
            check_stream_on_host(image, &results.committed, failures)?;
            if let Some(written) = &results.partition {
                check_partitions_on_host(image, written, failures)?;
            }
        }
        Ok(())
    })
}

/// What the guests wrote, for the checks on the host.
struct GuestResults {
    /// The sha256 of each of [`FILES`].
    sums: Vec<String>,
    /// The stream's committed chunks (virtio-blk only).
    committed: Vec<Chunk>,
    /// What the writer wrote to the partition (NVMe only).
    partition: Option<PartitionWrites>,
}

/// Everything done through the guests. Leaves no domain behind.
fn guest_checks(
    machine: &mut Machine,
    driver: Driver,
    trace: &mut FreeTrace,
    failures: &mut Failures,
) -> Result<GuestResults> {
    let disk = driver.disk();
    let virtio = driver == Driver::VirtioBlk;
    check_disk(machine, driver, disk, "-", failures)?;
    match driver {
        Driver::VirtioBlk => check_disk(machine, driver, "vdb", "-", failures)?,
        Driver::Nvme => {
            check_disk(machine, driver, PARTITIONED_DISK, "-", failures)?;
            check_partitions(machine, ["-", "-"], failures)?;
        }
        Driver::Ahci => {}
    }

    // The writer: the config route on virtio-blk, hot-plug on the others.
    let writer = if virtio {
        let writer = boot_linux(machine, "linuxdisk", "linuxdisk")?;
        await_partition(machine, "xvda", DISK_BYTES, failures)?;
        detach(machine, writer.1)?;
        writer
    } else {
        let writer = boot_linux(machine, "linux1", "linux1")?;
        detach(machine, writer.1)?;
        block_attach(machine, writer, &format!("phy:{disk},xvda,w"), failures)?;
        if driver == Driver::Nvme {
            check_partition_claims(machine, writer, failures)?;
        }
        writer
    };
    check_disk(machine, driver, disk, &format!("{}:xvda rw", writer.1), failures)?;
    if virtio {
        let (demo, _) = create(machine, "demo", "demo")?;
        for mode in ["w", "r"] {
            let spec = format!("phy:{disk},xvda,{mode}");
            check_attach_refused(machine, ("demo", &spec), (disk, "read-write", writer), failures)?;
        }
        destroy(machine, demo, failures)?;
    }
    attach(machine, writer.1)?;
    if !virtio {
        await_partition(machine, "xvda", DISK_BYTES, failures)?;
    }
    let partition = match driver {
        Driver::Nvme => Some(write_partition(machine, failures)?),
        _ => None,
    };
    let started = Instant::now();
    let sums = write_files(machine, failures)?;
    eprintln!("[{}] file system written in {:.1} s", machine.name(), started.elapsed().as_secs_f64());
    if driver == Driver::Ahci {
        detach(machine, writer.1)?;
        check_connected_row(machine, writer, ("xvda", XVDA_DEVID, &format!("phy:{disk}"), "w"), failures)?;
        attach(machine, writer.1)?;
    }
    poweroff_linux(machine, writer)?;
    check_disk(machine, driver, disk, "-", failures)?;
    if driver == Driver::Nvme {
        check_partitions(machine, ["-", "-"], failures)?;
    }
    trace_free(machine, trace, "after the writer's poweroff")?;

    // The reader: read-only, by hot-plug.
    let reader = boot_linux(machine, "linux1", "linux1")?;
    detach(machine, reader.1)?;
    block_attach(machine, reader, &format!("phy:{disk},xvda,r"), failures)?;
    check_disk(machine, driver, disk, "linux1:xvda ro", failures)?;
    if virtio {
        let (demo, _) = create(machine, "demo", "demo")?;
        let writable = format!("phy:{disk},xvda,w");
        check_attach_refused(machine, ("demo", &writable), (disk, "read-only", reader), failures)?;
        block_attach(machine, demo, &format!("phy:{disk},xvda,r"), failures)?;
        check_disk(machine, driver, disk, "linux1:xvda ro, demo:xvda ro", failures)?;
        destroy(machine, demo, failures)?;
        check_disk(machine, driver, disk, "linux1:xvda ro", failures)?;
    }
    attach(machine, reader.1)?;
    await_partition(machine, "xvda", DISK_BYTES, failures)?;
    verify_files(machine, &sums, failures)?;
    if driver == Driver::Ahci {
        check_detach_and_reattach(machine, reader, driver, &sums, failures)?;
        check_forced_detach(machine, reader, failures)?;
    }
    if !virtio {
        poweroff_linux(machine, reader)?;
        check_disk(machine, driver, disk, "-", failures)?;
        return Ok(GuestResults { sums, committed: Vec::new(), partition });
    }

    // Destroy in the middle of a write stream, on vdb.
    detach(machine, reader.1)?;
    block_attach(machine, reader, "phy:vdb,xvdb,w", failures)?;
    attach(machine, reader.1)?;
    await_partition(machine, "xvdb", DISK_BYTES, failures)?;
    let committed = destroy_mid_stream(machine, reader, failures)?;
    check_disk(machine, driver, disk, "-", failures)?;
    check_disk(machine, driver, "vdb", "-", failures)?;
    trace_free(machine, trace, "after the reader's destroy mid-stream")?;

    // A third domain reads the chunks back, then serves beside blkhostile.
    let checker = boot_linux(machine, "linux1", "linux1")?;
    detach(machine, checker.1)?;
    block_attach(machine, checker, "phy:vdb,xvda,w", failures)?;
    attach(machine, checker.1)?;
    await_partition(machine, "xvda", DISK_BYTES, failures)?;
    verify_chunks(machine, &committed, failures)?;
    detach(machine, checker.1)?;
    check_blkhostile(machine, failures)?;
    attach(machine, checker.1)?;
    check_disk_still_works(machine, failures)?;
    poweroff_linux(machine, checker)?;
    check_disk(machine, driver, "vdb", "-", failures)?;
    Ok(GuestResults { sums, committed, partition })
}

#[test]
fn linux_disk_integrity_on_virtio_blk() -> Result<()> {
    disk_integrity(Driver::VirtioBlk, "linux_disk_integrity_on_virtio_blk")
}

#[test]
fn linux_disk_integrity_on_ahci() -> Result<()> {
    disk_integrity(Driver::Ahci, "linux_disk_integrity_on_ahci")
}

#[test]
fn linux_disk_integrity_on_nvme() -> Result<()> {
    disk_integrity(Driver::Nvme, "linux_disk_integrity_on_nvme")
}
