//! Host tests of the debugger helpers' parsers and the QEMU disk arguments.

use super::*;

#[test]
fn hex_numbers_with_or_without_prefix() {
    assert_eq!(parse_hex("0x0000000000101209"), Some(0x10_1209));
    assert_eq!(parse_hex("0XfFfF"), Some(0xffff));
    assert_eq!(parse_hex("deadbeef"), Some(0xdead_beef));
    assert_eq!(parse_hex("0x"), None, "a prefix alone is no number");
    assert_eq!(parse_hex(""), None);
    assert_eq!(parse_hex("0x12g"), None);
    assert_eq!(parse_hex("0x1_0000_0000_0000_0000"), None);
    assert_eq!(parse_hex("10000000000000000"), None, "more than 64 bits");
}

#[test]
fn dump_line_gives_bytes_and_sum_for_its_disk() {
    let sum = "ab".repeat(32);
    let text =
        format!("dump-core: 25 MiB of 33 MiB\n[  1.5] log\ndump-core: wrote 33558528 bytes to vdb, sha256 {sum}\n");
    assert_eq!(parse_dump_line(&text, "vdb"), Some((33_558_528, sum.clone())));
    assert_eq!(parse_dump_line(&text, "vda"), None, "another disk");
    assert_eq!(parse_dump_line(&format!("dump-core: wrote 12 bytes to vdb, sha256 {sum}  "), "vdb"), Some((12, sum)));
    assert_eq!(parse_dump_line("dump-core: wrote 12 bytes to vdb, sha256 abc", "vdb"), None, "a short sum");
    let not_hex = "g".repeat(64);
    assert_eq!(parse_dump_line(&format!("dump-core: wrote 12 bytes to vdb, sha256 {not_hex}"), "vdb"), None);
    let sum = "0".repeat(64);
    assert_eq!(parse_dump_line(&format!("dump-core: wrote many bytes to vdb, sha256 {sum}"), "vdb"), None);
    assert_eq!(parse_dump_line(&format!("dump-core: wrote 5 bytes to vdbx, sha256 {sum}"), "vdb"), None);
    assert_eq!(parse_dump_line("error: vdb is too small", "vdb"), None);
}

#[test]
fn frame_lines_drop_notes_and_log_lines() {
    let stack = "default_idle+0x9()\n[  5.000000] domain 2 (linux1) paused\ndo_idle+0x1f()\n(unwinding by ORC stopped: end)\n0x1234()\nnot a frame\n";
    assert_eq!(frame_lines(stack), ["default_idle+0x9()", "do_idle+0x1f()", "0x1234()"]);
    assert!(frame_lines("(no frame chain: rbp is 0)\n").is_empty());
}

#[test]
fn after_line_pattern_ends_at_either_prompt() {
    let pattern = after_line_pattern();
    assert!(pattern.is_match("%rip = 0x1\n> "));
    assert!(pattern.is_match("session over\nbasalt> "));
    assert!(!pattern.is_match("x -> y"), "the debugger's prompt only counts at a line's start");
}

#[test]
fn virtio_disk_arguments_name_image_and_drive() {
    let args = virtio_disk_args(Path::new("/tmp/core.img"), "core");
    assert_eq!(
        args,
        ["-drive", "file=/tmp/core.img,format=raw,if=none,id=core", "-device", "virtio-blk-pci,drive=core"]
    );
}
