//! The Linux kernel log (`::msgbuf`): the lockless printk ring buffer of 5.10 and
//! later, read as makedumpfile and crash read it — every layout fact from the guest's
//! vmcoreinfo (`SYMBOL(prb)`, `OFFSET(prb_desc_ring.descs)`, `SIZE(printk_info)`, ...),
//! none compiled in.
//!
//! The ring: `prb` points at a `printk_ringbuffer` holding a descriptor ring (`descs`,
//! `infos`, `head_id`, `tail_id`, 2^`count_bits` slots) and a text data ring (`data`,
//! 2^`size_bits` bytes). Descriptor `id` lives in slot `id % count`; its `state_var`
//! holds the id in the low bits and the state in the top two (committed and finalized
//! records are readable); its text block `[begin, next)` in logical positions starts
//! with the owning id, then the text; a block that would cross the end of the ring is
//! stored from offset 0 instead.
//!
//! Invariants: at most the ring's slot count of records (and at most
//! [`MAXIMUM_RECORDS`]), text at most the data ring's size (at most
//! [`MAXIMUM_DATA_RING`]); a record whose descriptor or text does not check out is
//! skipped and counted, not fatal.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::dcmd::Debuggee;
use crate::linux::VmcoreInfo;

/// At most this many records are read.
pub const MAXIMUM_RECORDS: u64 = 1 << 20;
/// Data rings larger than this are taken as damaged.
pub const MAXIMUM_DATA_RING: u64 = 64 << 20;
const STATE_SHIFT: u32 = 62;
const ID_MASK: u64 = (1 << STATE_SHIFT) - 1;
const STATE_COMMITTED: u64 = 1;
const STATE_FINALIZED: u64 = 2;

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub sequence: u64,
    pub timestamp_ns: u64,
    pub text: String,
}

impl Record {
    /// The record as dmesg prints it: `[    0.000000] text`.
    pub fn line(&self) -> String {
        let seconds = self.timestamp_ns / 1_000_000_000;
        let micros = (self.timestamp_ns % 1_000_000_000) / 1000;
        alloc::format!("[{seconds:5}.{micros:06}] {}", self.text)
    }
}

/// The log as read: records in sequence order, and notes on records skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Log {
    pub records: Vec<Record>,
    pub skipped: Vec<String>,
}

/// The vmcoreinfo facts the reader needs.
struct Layout {
    ring_pointer: u64,
    desc_ring: u64,
    text_data_ring: u64,
    count_bits: u64,
    descs: u64,
    infos: u64,
    head_id: u64,
    tail_id: u64,
    desc_size: u64,
    state_var: u64,
    text_blk_lpos: u64,
    lpos_begin: u64,
    lpos_next: u64,
    info_size: u64,
    info_seq: u64,
    info_ts_nsec: u64,
    info_text_len: u64,
    size_bits: u64,
    data: u64,
}

impl Layout {
    fn from(info: &VmcoreInfo) -> Result<Layout, String> {
        let need = |value: Option<u64>, key: &str| value.ok_or_else(|| alloc::format!("vmcoreinfo lacks {key}"));
        Ok(Layout {
            ring_pointer: need(info.symbol("prb"), "SYMBOL(prb)")?,
            desc_ring: need(info.offset("printk_ringbuffer.desc_ring"), "OFFSET(printk_ringbuffer.desc_ring)")?,
            text_data_ring: need(
                info.offset("printk_ringbuffer.text_data_ring"),
                "OFFSET(printk_ringbuffer.text_data_ring)",
            )?,
            count_bits: need(info.offset("prb_desc_ring.count_bits"), "OFFSET(prb_desc_ring.count_bits)")?,
            descs: need(info.offset("prb_desc_ring.descs"), "OFFSET(prb_desc_ring.descs)")?,
            infos: need(info.offset("prb_desc_ring.infos"), "OFFSET(prb_desc_ring.infos)")?,
            head_id: need(info.offset("prb_desc_ring.head_id"), "OFFSET(prb_desc_ring.head_id)")?,
            tail_id: need(info.offset("prb_desc_ring.tail_id"), "OFFSET(prb_desc_ring.tail_id)")?,
            desc_size: need(info.size("prb_desc"), "SIZE(prb_desc)")?,
            state_var: need(info.offset("prb_desc.state_var"), "OFFSET(prb_desc.state_var)")?,
            text_blk_lpos: need(info.offset("prb_desc.text_blk_lpos"), "OFFSET(prb_desc.text_blk_lpos)")?,
            lpos_begin: need(info.offset("prb_data_blk_lpos.begin"), "OFFSET(prb_data_blk_lpos.begin)")?,
            lpos_next: need(info.offset("prb_data_blk_lpos.next"), "OFFSET(prb_data_blk_lpos.next)")?,
            info_size: need(info.size("printk_info"), "SIZE(printk_info)")?,
            info_seq: need(info.offset("printk_info.seq"), "OFFSET(printk_info.seq)")?,
            info_ts_nsec: need(info.offset("printk_info.ts_nsec"), "OFFSET(printk_info.ts_nsec)")?,
            info_text_len: need(info.offset("printk_info.text_len"), "OFFSET(printk_info.text_len)")?,
            size_bits: need(info.offset("prb_data_ring.size_bits"), "OFFSET(prb_data_ring.size_bits)")?,
            data: need(info.offset("prb_data_ring.data"), "OFFSET(prb_data_ring.data)")?,
        })
    }
}

fn read_u64(debuggee: &Debuggee, address: u64) -> Result<u64, String> {
    debuggee.read_virtual_u64(address).map_err(|error| alloc::format!("{error}"))
}

fn read_u32(debuggee: &Debuggee, address: u64) -> Result<u32, String> {
    let mut bytes = [0u8; 4];
    debuggee.read_virtual(address, &mut bytes).map_err(|error| alloc::format!("{error}"))?;
    Ok(u32::from_le_bytes(bytes))
}

fn read_u16(debuggee: &Debuggee, address: u64) -> Result<u16, String> {
    let mut bytes = [0u8; 2];
    debuggee.read_virtual(address, &mut bytes).map_err(|error| alloc::format!("{error}"))?;
    Ok(u16::from_le_bytes(bytes))
}

/// Reads the kernel log of the Linux guest `debuggee` (through the current vCPU's page
/// tables). Errors say why there is no log at all (no vmcoreinfo, no ring).
pub fn read_log(debuggee: &Debuggee) -> Result<Log, String> {
    let info = debuggee.vmcoreinfo().ok_or_else(|| String::from("not a Linux guest (no vmcoreinfo found)"))?;
    let layout = Layout::from(info)?;
    let ring = read_u64(debuggee, layout.ring_pointer)?;
    let desc_ring = ring.wrapping_add(layout.desc_ring);
    let data_ring = ring.wrapping_add(layout.text_data_ring);
    let count_bits = read_u32(debuggee, desc_ring.wrapping_add(layout.count_bits))?;
    let size_bits = read_u32(debuggee, data_ring.wrapping_add(layout.size_bits))?;
    if count_bits >= 32 || (1u64 << count_bits) > MAXIMUM_RECORDS {
        return Err(alloc::format!("descriptor ring of 2^{count_bits} entries is not credible"));
    }
    if size_bits >= 40 || (1u64 << size_bits) > MAXIMUM_DATA_RING {
        return Err(alloc::format!("data ring of 2^{size_bits} bytes is not credible"));
    }
    let count = 1u64 << count_bits;
    let data_size = 1u64 << size_bits;
    let descs = read_u64(debuggee, desc_ring.wrapping_add(layout.descs))?;
    let infos = read_u64(debuggee, desc_ring.wrapping_add(layout.infos))?;
    let head_id = read_u64(debuggee, desc_ring.wrapping_add(layout.head_id))? & ID_MASK;
    let tail_id = read_u64(debuggee, desc_ring.wrapping_add(layout.tail_id))? & ID_MASK;
    let data = read_u64(debuggee, data_ring.wrapping_add(layout.data))?;
    // One read of the whole text ring is cheaper than one per record.
    let mut text_ring = vec![0u8; data_size as usize];
    debuggee.read_virtual(data, &mut text_ring).map_err(|error| alloc::format!("text ring: {error}"))?;

    let mut log = Log::default();
    let span = head_id.wrapping_sub(tail_id) & ID_MASK;
    let (first, records) =
        if span < count { (tail_id, span + 1) } else { (head_id.wrapping_sub(count - 1) & ID_MASK, count) };
    for step in 0..records {
        let id = first.wrapping_add(step) & ID_MASK;
        match read_record(debuggee, &layout, id, count, descs, infos, &text_ring) {
            Ok(Some(record)) => log.records.push(record),
            Ok(None) => {}
            Err(why) => log.skipped.push(alloc::format!("record id {id:#x}: {why}")),
        }
    }
    log.records.sort_by_key(|record| record.sequence);
    Ok(log)
}

/// One record: Ok(None) for a slot not (or no longer) holding readable text.
fn read_record(
    debuggee: &Debuggee,
    layout: &Layout,
    id: u64,
    count: u64,
    descs: u64,
    infos: u64,
    text_ring: &[u8],
) -> Result<Option<Record>, String> {
    let slot = id % count;
    let desc = descs.wrapping_add(slot * layout.desc_size);
    let state_var = read_u64(debuggee, desc.wrapping_add(layout.state_var))?;
    let state = state_var >> STATE_SHIFT;
    if state_var & ID_MASK != id || (state != STATE_COMMITTED && state != STATE_FINALIZED) {
        // Reserved, reusable or already overwritten by a newer record.
        return Ok(None);
    }
    let lpos = desc.wrapping_add(layout.text_blk_lpos);
    let begin = read_u64(debuggee, lpos.wrapping_add(layout.lpos_begin))?;
    let next = read_u64(debuggee, lpos.wrapping_add(layout.lpos_next))?;
    let info = infos.wrapping_add(slot * layout.info_size);
    let sequence = read_u64(debuggee, info.wrapping_add(layout.info_seq))?;
    let timestamp_ns = read_u64(debuggee, info.wrapping_add(layout.info_ts_nsec))?;
    let text_length = u64::from(read_u16(debuggee, info.wrapping_add(layout.info_text_len))?);
    if begin & 1 != 0 && next & 1 != 0 {
        // A data-less record (e.g. one that lost its text): nothing to show.
        return Ok(Some(Record { sequence, timestamp_ns, text: String::new() }));
    }
    let size = text_ring.len() as u64;
    let (begin_offset, next_offset) = (begin % size, next % size);
    let same_wrap = begin / size == next / size;
    let (start, length) = if same_wrap && begin_offset < next_offset {
        (begin_offset, next_offset - begin_offset)
    } else if next / size == begin / size + 1 {
        // The block would have crossed the end of the ring: it was stored from 0.
        (0, next_offset)
    } else {
        return Err(alloc::format!("text block {begin:#x}..{next:#x} is not in the ring"));
    };
    if next.wrapping_sub(begin) > size || length < 8 {
        return Err(alloc::format!("text block {begin:#x}..{next:#x} is not credible"));
    }
    let block = text_ring.get(start as usize..(start + length) as usize).ok_or("text block outside the ring")?;
    let owner = u64::from_le_bytes(block[..8].try_into().map_err(|_| "short text block")?);
    if owner & ID_MASK != id {
        return Err(alloc::format!("text block belongs to id {owner:#x}"));
    }
    let text = &block[8..];
    let text = &text[..(text_length as usize).min(text.len())];
    let mut printable = String::new();
    for &byte in text {
        if byte == b'\n' || byte == b'\t' || (0x20..0x7f).contains(&byte) {
            printable.push(char::from(byte));
        } else {
            let _ = write!(printable, "\\x{byte:02x}");
        }
    }
    Ok(Some(Record { sequence, timestamp_ns, text: printable }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::target::testing::FakeTarget;
    use alloc::boxed::Box;

    const VMCOREINFO: &str = "OSRELEASE=6.1.0-test\nSYMBOL(prb)=ffffffff82a622c0\n\
OFFSET(printk_ringbuffer.desc_ring)=0\nOFFSET(printk_ringbuffer.text_data_ring)=48\n\
OFFSET(prb_desc_ring.count_bits)=0\nOFFSET(prb_desc_ring.descs)=8\nOFFSET(prb_desc_ring.infos)=16\n\
OFFSET(prb_desc_ring.head_id)=24\nOFFSET(prb_desc_ring.tail_id)=32\nSIZE(prb_desc)=24\n\
OFFSET(prb_desc.state_var)=0\nOFFSET(prb_desc.text_blk_lpos)=8\nOFFSET(prb_data_blk_lpos.begin)=0\n\
OFFSET(prb_data_blk_lpos.next)=8\nSIZE(printk_info)=88\nOFFSET(printk_info.seq)=0\n\
OFFSET(printk_info.ts_nsec)=8\nOFFSET(printk_info.text_len)=16\nOFFSET(prb_data_ring.size_bits)=0\n\
OFFSET(prb_data_ring.data)=8\n";

    const PRB: u64 = 0xffff_ffff_82a6_22c0;
    const RING: u64 = 0xffff_ffff_82b0_0000;
    const DESCS: u64 = 0xffff_ffff_82b1_0000;
    const INFOS: u64 = 0xffff_ffff_82b2_0000;
    const DATA: u64 = 0xffff_ffff_82b3_0000;
    const COUNT_BITS: u32 = 2; // 4 descriptors
    const SIZE_BITS: u32 = 7; // 128 bytes of text

    fn record(target: &mut FakeTarget, id: u64, state: u64, begin: u64, next: u64, sequence: u64, text: &str) {
        let slot = id % (1 << COUNT_BITS);
        let desc = DESCS + slot * 24;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&((state << 62) | id).to_le_bytes());
        bytes.extend_from_slice(&begin.to_le_bytes());
        bytes.extend_from_slice(&next.to_le_bytes());
        target.write_virtual(desc, 0x50_1000 + (desc - DESCS), &bytes);
        let info = INFOS + slot * 88;
        let mut bytes = vec![0u8; 88];
        bytes[0..8].copy_from_slice(&sequence.to_le_bytes());
        bytes[8..16].copy_from_slice(&(sequence * 1_500_000 + 12_345).to_le_bytes());
        bytes[16..18].copy_from_slice(&(text.len() as u16).to_le_bytes());
        target.write_virtual(info, 0x50_2000 + (info - INFOS), &bytes);
        let size = 1u64 << SIZE_BITS;
        let start = if begin / size == next / size { begin % size } else { 0 };
        let mut block = id.to_le_bytes().to_vec();
        block.extend_from_slice(text.as_bytes());
        if next - begin <= size {
            target.write_virtual(DATA + start, 0x50_3000 + start, &block);
        }
    }

    pub(crate) fn ring_target() -> FakeTarget {
        let mut target = FakeTarget::new();
        target.write_physical(0x7000, VMCOREINFO.as_bytes());
        target.write_virtual(PRB, 0x50_0000 + (PRB & 0xfff), &RING.to_le_bytes());
        let mut ring = vec![0u8; 64];
        ring[0..4].copy_from_slice(&COUNT_BITS.to_le_bytes());
        ring[8..16].copy_from_slice(&DESCS.to_le_bytes());
        ring[16..24].copy_from_slice(&INFOS.to_le_bytes());
        ring[24..32].copy_from_slice(&13u64.to_le_bytes()); // head id
        ring[32..40].copy_from_slice(&10u64.to_le_bytes()); // tail id
        ring[48..52].copy_from_slice(&SIZE_BITS.to_le_bytes());
        ring[56..64].copy_from_slice(&DATA.to_le_bytes());
        target.write_virtual(RING, 0x50_4000, &ring);
        target.write_virtual(DATA, 0x50_3000, &[0u8; 128]);
        // id 10 and 11 regular, 12 wraps (stored from 0), 13 points outside the ring.
        record(&mut target, 10, STATE_FINALIZED, 256 + 40, 256 + 40 + 8 + 20, 7, "Linux version 6.1.0-");
        record(&mut target, 11, STATE_COMMITTED, 256 + 68, 256 + 68 + 8 + 13, 8, "second record");
        record(&mut target, 12, STATE_FINALIZED, 256 + 100, 384 + 20, 9, "wrapped text");
        record(&mut target, 13, STATE_FINALIZED, 256 + 8, 1024 + 64, 10, "bad");
        target
    }

    #[test]
    fn ring_records_come_out_in_order_and_the_corrupt_one_is_noted() {
        let debuggee = Debuggee::new(Box::new(ring_target()));
        let log = read_log(&debuggee).unwrap();
        let lines: Vec<String> = log.records.iter().map(Record::line).collect();
        assert_eq!(
            lines,
            vec![
                String::from("[    0.010512] Linux version 6.1.0-"),
                String::from("[    0.012012] second record"),
                String::from("[    0.013512] wrapped text"),
            ]
        );
        assert_eq!(log.skipped.len(), 1);
        assert!(log.skipped[0].contains("0xd"), "{:?}", log.skipped);
    }

    #[test]
    fn without_vmcoreinfo_there_is_no_log() {
        let debuggee = Debuggee::new(Box::new(FakeTarget::new()));
        assert!(read_log(&debuggee).is_err());
    }
}
