use super::*;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;

const LIMITS: Limits = Limits { physical_cpus: 4, max_vcpus: 16, max_memory_mib: 8192 };

fn ok(text: &str) -> Parsed {
    parse(text, &LIMITS).unwrap_or_else(|error| panic!("{error}"))
}

/// The error's one-line message.
fn error(text: &str) -> String {
    let error = parse(text, &LIMITS).expect_err("should be refused");
    let message = error.to_string();
    assert!(!message.contains('\n'), "{message:?}");
    message
}

fn error_with(text: &str, overrides: &[&str]) -> String {
    parse_with_overrides(text, overrides, &LIMITS).expect_err("should be refused").to_string()
}

const DEBIAN: &str = r#"# Debian 12 cloud kernel, PVH
name = "debian"
type = "pvh"
kernel = "vmlinuz"
ramdisk = 'initrd.img'
memory = 512
maxmem = 1024
vcpus = 2
maxvcpus = 4
cmdline = "console=hvc0 root=/dev/xvda1 ro"
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "preserve"
cpus = "0-1"
cpu_weight = 512
cap = 150
disk = [ 'format=raw, vdev=xvda, access=rw, target=/dev/nvme0n1p3',
         "vdev=xvdb, target=/dev/sdb", ]
"#;

#[test]
fn a_full_config() {
    let Parsed { config, warnings } = ok(DEBIAN);
    assert_eq!(config.name, "debian");
    assert_eq!(config.kind, DomainKind::Pvh);
    assert_eq!(config.kernel, "vmlinuz");
    assert_eq!(config.ramdisk.as_deref(), Some("initrd.img"));
    assert_eq!((config.memory_mib, config.maxmem_mib), (512, Some(1024)));
    assert_eq!((config.memory_bytes(), config.max_memory_bytes()), (512 << 20, 1024 << 20));
    assert_eq!((config.vcpus, config.maxvcpus, config.max_vcpus()), (2, Some(4), 4));
    assert_eq!(config.cmdline, "console=hvc0 root=/dev/xvda1 ro");
    assert_eq!(
        config.lifecycle,
        Lifecycle {
            on_poweroff: LifecycleAction::Destroy,
            on_reboot: LifecycleAction::Restart,
            on_crash: LifecycleAction::Preserve,
            on_watchdog: LifecycleAction::Destroy,
        }
    );
    assert_eq!(config.cpus, CpuAffinity::All(parse_cpu_list("0-1", 4).unwrap()));
    assert_eq!((config.weight, config.cap), (512, 150));
    assert_eq!(
        config.disks,
        [
            DiskSpec { source: DiskSource::Phy("nvme0n1p3".into()), vdev: "xvda".into(), writable: true },
            DiskSpec { source: DiskSource::Phy("sdb".into()), vdev: "xvdb".into(), writable: true },
        ]
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    // xl ignores keys it does not know; so do we, and say so with the line.
    let Parsed { warnings, .. } = ok("name='a'\nkernel='k'\nvif=['bridge=br0']\n");
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].to_string(), "line 3: unknown key 'vif' ignored");
}

#[test]
fn defaults_as_xl() {
    let Parsed { config, warnings } = ok("name='a'\nkernel='k'\n");
    assert!(warnings.is_empty());
    assert_eq!(config.kind, DomainKind::Pvh);
    assert_eq!((config.memory_mib, config.maxmem_mib, config.vcpus, config.maxvcpus), (128, None, 1, None));
    assert_eq!(config.ramdisk, None);
    assert_eq!(config.cmdline, "");
    assert_eq!(config.lifecycle.on_poweroff, LifecycleAction::Destroy);
    assert_eq!(config.lifecycle.on_reboot, LifecycleAction::Restart);
    assert_eq!(config.lifecycle.on_crash, LifecycleAction::Destroy);
    assert_eq!(config.cpus, CpuAffinity::Any);
    assert_eq!((config.weight, config.cap), (256, 0));
}

#[test]
fn syntax_variants() {
    // Semicolons, comments after values, tabs, CRLF, hex numbers, quoted numbers,
    // escapes, last setting wins, += on lists, lists across lines with comments.
    let text = "name = \"x\" ; kernel = 'k' # the kernel\r\n\tmemory = 0x100\nvcpus = \"3\"\n\
                cmdline = \"a\\tb \\\"q\\\" \\x41\\101\"\nname = \"y\"\n\
                cpus = [ \"0\", # first\n  \"1-2\",\n\n ]\ncpus += [ 3 ]\n";
    let Parsed { config, warnings } = ok(text);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.name, "y");
    assert_eq!(config.memory_mib, 256);
    assert_eq!(config.vcpus, 3);
    assert_eq!(config.cmdline, "a\tb \"q\" AA");
    let CpuAffinity::PerVcpu(sets) = &config.cpus else { panic!("{:?}", config.cpus) };
    assert_eq!(sets.iter().map(|set| set.to_string()).collect::<Vec<_>>(), ["0", "1-2", "3"]);
    // An empty file body with only comments has no name.
    assert_eq!(error("# nothing\n\n"), "no 'name' setting");
}

#[test]
fn command_line_from_root_and_extra() {
    assert_eq!(ok("name='a'\nkernel='k'\nroot='/dev/xvda1'\nextra='quiet'").config.cmdline, "root=/dev/xvda1 quiet");
    assert_eq!(ok("name='a'\nkernel='k'\nroot='/dev/xvda1'").config.cmdline, "root=/dev/xvda1");
    assert_eq!(ok("name='a'\nkernel='k'\nextra='quiet'").config.cmdline, "quiet");
    let parsed = ok("name='a'\nkernel='k'\ncmdline='console=hvc0'\nextra='quiet'");
    assert_eq!(parsed.config.cmdline, "console=hvc0");
    assert_eq!(parsed.warnings[0].to_string(), "line 4: extra ignored in favour of cmdline");
    let long = format!("name='a'\nkernel='k'\ncmdline='{}'", "x".repeat(2048));
    assert_eq!(error(&long), "line 3: command line is 2048 bytes (at most 2047)");
    assert_eq!(error("name='a'\nkernel='k'\ncmdline='a\\0b'"), "line 3: cmdline contains a NUL character");
}

#[test]
fn each_error_names_its_line() {
    let cases: &[(&str, &str)] = &[
        ("name='a'\nkernel\n", "line 2: expected '=' after key"),
        ("name='a'\n\nkernel 'k'\n", "line 3: expected '=' after key"),
        ("name='a'\n= 'k'\n", "line 2: expected a key, found `=`"),
        ("name='a'\nkernel = \n", "line 2: expected a value after '=' (a \"string\", a number or a [list])"),
        ("name='a'\nkernel = vmlinuz\n", "line 2: expected a value after '=' (a \"string\", a number or a [list])"),
        ("name='a'\nkernel = 'k' 'j'\n", "line 2: expected the end of the line after the value, found `'`"),
        ("name='a\nkernel='k'\n", "line 1: string not closed before the end of the line"),
        ("name='a'\ncpus = [ '0',\n '1'\n", "line 4: list opened on line 2 is not closed with ']'"),
        ("name='a'\ncpus = [ '0' '1' ]\n", "line 2: expected ',' or ']' in the list, found `'`"),
        ("name='a'\ncpus = [ [ '0' ] ]\n", "line 2: lists cannot be nested"),
        ("name='a\\q'\n", "line 1: bad escape '\\q' in string"),
        ("name='a\\xff'\n", "line 1: bad escape '\\x' in string"),
        ("name='a'\n", "no 'kernel' setting"),
        ("name=['a']\nkernel='k'", "line 1: name takes a single value, not a list"),
        ("name='a'\nkernel='k'\ntype='hvm'", "line 3: type \"hvm\" is not supported: only pvh guests"),
        ("name='a'\nkernel='k'\ntype='pv'", "line 3: type \"pv\" is not supported: only pvh guests"),
        ("name='a'\nkernel='k'\nbuilder='hvm'", "line 3: type \"hvm\" is not supported: only pvh guests"),
        ("name='a'\nkernel='k'\ntype='xyz'", "line 3: type \"xyz\" is unknown: only pvh guests"),
        ("name='a'\nkernel='k'\nmemory='lots'", "line 3: memory: \"lots\" is not a whole number"),
        ("name='a'\nkernel='k'\nmemory=12abc", "line 3: memory: \"12abc\" is not a whole number"),
        ("name='a'\nkernel='k'\nmemory=-1", "line 3: memory: \"-1\" is not a whole number"),
        ("name='a'\nkernel='k'\nmemory=0", "line 3: memory = 0 is out of range (1 to 8192)"),
        (
            "name='a'\nkernel='k'\nmemory=8193",
            "line 3: not enough memory: memory = 8193 MiB, but only 8192 MiB are free (minimum 1)",
        ),
        (
            "name='a'\nkernel='k'\nmemory=99999999999999999999999",
            "line 3: not enough memory: memory = 18446744073709551615 MiB, but only 8192 MiB are free (minimum 1)",
        ),
        ("name='a'\nkernel='k'\nmemory=512\nmaxmem=256", "line 4: maxmem = 256 is out of range (512 to 8192)"),
        ("name='a'\nkernel='k'\nvcpus=0", "line 3: vcpus = 0 is out of range (1 to 16)"),
        ("name='a'\nkernel='k'\nvcpus=17", "line 3: vcpus = 17 is out of range (1 to 16)"),
        ("name='a'\nkernel='k'\nvcpus=4\nmaxvcpus=2", "line 4: maxvcpus = 2 is out of range (4 to 16)"),
        ("name='a'\nkernel='k'\ncpu_weight=0", "line 3: cpu_weight = 0 is out of range (1 to 65535)"),
        ("name='a'\nkernel='k'\ncap=65536", "line 3: cap = 65536 is out of range (0 to 65535)"),
        (
            "name='a'\nkernel='k'\non_crash='coredump-destroy'",
            "line 3: on_crash \"coredump-destroy\" is not supported (destroy, restart, preserve)",
        ),
        (
            "name='a'\nkernel='k'\non_reboot='rename-restart'",
            "line 3: on_reboot \"rename-restart\" is not supported (destroy, restart, preserve)",
        ),
        (
            "name='a'\nkernel='k'\non_poweroff='explode'",
            "line 3: on_poweroff \"explode\" is not an action (destroy, restart, preserve)",
        ),
        ("name='a'\nkernel='k'\ncpus='^1'", "line 3: cpus: selects no CPU (for all but some, write \"all,^N\")"),
        ("name='a'\nkernel='k'\ncpus='4'", "line 3: cpus: CPU 4 does not exist (this machine has CPUs 0-3)"),
        ("name='a'\nkernel='k'\ncpus=['0', 'x']", "line 3: cpus: \"x\" is not N, N-M or all (^ to exclude)"),
        ("name='a'\nkernel='k'\ncpus='node:0'", "line 3: cpus: NUMA node affinity is not supported"),
        ("name='a'\nkernel='k'\nname += ['b']", "line 3: '+=' on name works only with lists"),
        ("name=''\nkernel='k'", "line 1: name \"\" must be 1 to 64 characters long"),
        ("name='a b'\nkernel='k'", "line 1: name \"a b\" may contain only letters, digits, '_', '.' and '-'"),
        ("name='12'\nkernel='k'", "line 1: name \"12\" is all digits, which would read as a domain id"),
        ("name='Domain-0'\nkernel='k'", "line 1: name \"Domain-0\" is domain 0's"),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), *expected, "config {text:?}");
    }
    let long_name = format!("name='{}'\nkernel='k'", "n".repeat(65));
    assert!(error(&long_name).ends_with("must be 1 to 64 characters long"));
    assert_eq!(ok(&format!("name='{}'\nkernel='k'", "n".repeat(64))).config.name.len(), 64);
}

#[test]
fn overrides_as_xl_create() {
    let Parsed { config, warnings } = parse_with_overrides(
        DEBIAN,
        &[
            "name=d2",
            "vcpus=3",
            "memory=\"256\"",
            "cpus=[\"3\", 2]",
            "cmdline=console=hvc0 quiet",
            "on_crash='destroy'",
        ],
        &LIMITS,
    )
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.name, "d2");
    assert_eq!(config.vcpus, 3);
    assert_eq!(config.memory_mib, 256);
    assert_eq!(config.cmdline, "console=hvc0 quiet");
    assert_eq!(config.lifecycle.on_crash, LifecycleAction::Destroy);
    assert_eq!(
        config.cpus,
        CpuAffinity::PerVcpu(vec![parse_cpu_list("3", 4).unwrap(), parse_cpu_list("2", 4).unwrap()])
    );
    // Overrides are checked like file lines and named in errors.
    assert_eq!(error_with(DEBIAN, &["vcpus=x"]), "override \"vcpus=x\": vcpus: \"x\" is not a whole number");
    assert_eq!(error_with(DEBIAN, &["vcpus"]), "override \"vcpus\": expected '=' after key");
    assert_eq!(error_with(DEBIAN, &["=3"]), "override \"=3\": expected a key, found `=`");
    assert_eq!(error_with(DEBIAN, &[""]), "override \"\": expected key=value");
    assert_eq!(
        error_with(DEBIAN, &["name='a'\nvcpus=2"]),
        "override \"name='a'\\nvcpus=2\": one key=value per override"
    );
    assert_eq!(
        error_with(DEBIAN, &["type=hvm"]),
        "override \"type=hvm\": type \"hvm\" is not supported: only pvh guests"
    );
    // An override can supply what the file lacks, and add to a list.
    let parsed = parse_with_overrides("kernel='k'\ncpus=['0']", &["name=late", "cpus+=[1]"], &LIMITS).unwrap();
    assert_eq!(parsed.config.name, "late");
    assert_eq!(parsed.config.cpus.for_vcpu(0, 4).to_string(), "0");
    let too_many: Vec<&str> = vec!["vcpus=1"; MAX_OVERRIDES + 1];
    assert_eq!(error_with(DEBIAN, &too_many), "65 overrides (at most 64)");
}

#[test]
fn per_vcpu_affinity_beyond_the_vcpus_warns() {
    let parsed = ok("name='a'\nkernel='k'\nvcpus=1\ncpus=['0','1','2']");
    assert_eq!(parsed.warnings[0].to_string(), "line 4: cpus has 3 entries for 1 vCPUs; the rest are ignored");
    assert_eq!(parsed.config.cpus, CpuAffinity::PerVcpu(vec![parse_cpu_list("0", 4).unwrap()]));
    assert_eq!(ok("name='a'\nkernel='k'\ncpus=[]").config.cpus, CpuAffinity::Any);
}

#[test]
fn hostile_sizes() {
    let huge = "#".repeat(MAX_CONFIG_BYTES + 1);
    assert_eq!(error(&huge), format!("{} bytes long (at most 65536)", MAX_CONFIG_BYTES + 1));
    let long_line = format!("name='a'\nkernel='k'\n#{}\n", "x".repeat(MAX_LINE_BYTES));
    assert_eq!(error(&long_line), "line 3: longer than 4096 bytes");
    // A list of thousands of entries within the size limit is fine (bounded by it).
    let many = format!("name='a'\nkernel='k'\nx = [{}]", "1,\n".repeat(20000));
    assert_eq!(ok(&many).warnings.len(), 1);
    // Deep brackets, lone quotes, lone escapes, non-ASCII keys and values.
    for text in
        ["[[[[[[", "'", "\"\\", "a=\"\\", "a='\\x", "ñ=1", "name='ñ'\nkernel='k'", "a=[", "a=['x',", "a+", "a+="]
    {
        error(text);
    }
    assert_eq!(error("naïve=1"), "line 1: expected '=' after key");
}

#[test]
fn random_and_mutated_configs_never_panic() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"=[]'\",;#\\\n x0123-^+aeklmnprsuv_.\0\xc3\xb1";
    for _ in 0..3000 {
        let mut data = DEBIAN.as_bytes().to_vec();
        match next() % 3 {
            0 => {
                let length = (next() % 200) as usize;
                data = (0..length).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            }
            1 => {
                for _ in 0..(next() % 8 + 1) {
                    let at = (next() % data.len() as u64) as usize;
                    data[at] = alphabet[(next() % alphabet.len() as u64) as usize];
                }
            }
            _ => {
                data.truncate((next() % data.len() as u64) as usize);
                data.extend_from_slice(b"\0name=z\0vcpus=2\0cpus=[0,1]");
            }
        }
        fuzz_one(&data);
    }
}

fn disk(text: &str) -> DiskSpec {
    parse_disk_spec(text).unwrap_or_else(|error| panic!("{text}: {error}"))
}

fn disk_error(text: &str) -> String {
    let message = parse_disk_spec(text).expect_err(text).to_string();
    assert!(!message.contains('\n'), "{message:?}");
    message
}

fn phy(name: &str, vdev: &str, writable: bool) -> DiskSpec {
    DiskSpec { source: DiskSource::Phy(name.into()), vdev: vdev.into(), writable }
}

#[test]
fn disks_in_a_config() {
    let text = "name='a'\nkernel='k'\ndisk = ['phy:nvme0n1p2,xvda,w', 'phy:sda,xvdb,r', 'ram:64M,xvdc,w']\n";
    let Parsed { config, warnings } = ok(text);
    assert!(warnings.is_empty());
    assert_eq!(
        config.disks,
        [
            phy("nvme0n1p2", "xvda", true),
            phy("sda", "xvdb", false),
            DiskSpec { source: DiskSource::Ram(64 << 20), vdev: "xvdc".into(), writable: true },
        ]
    );
    assert!(ok("name='a'\nkernel='k'\n").config.disks.is_empty());
    assert!(ok("name='a'\nkernel='k'\ndisk=[]\n").config.disks.is_empty());
    // One string alone is one disk; += adds more.
    let parsed = ok("name='a'\nkernel='k'\ndisk='sda,xvda,r'\n");
    assert_eq!(parsed.config.disks, [phy("sda", "xvda", false)]);
    let parsed = ok("name='a'\nkernel='k'\ndisk=['sda,xvda,r']\ndisk+=['sdb,xvdb,w']\n");
    assert_eq!(parsed.config.disks.len(), 2);
    // An override replaces the list, as xl.
    let parsed = parse_with_overrides(text, &["disk=['ram:1G,xvda,w']"], &LIMITS).unwrap();
    assert_eq!(
        parsed.config.disks,
        [DiskSpec { source: DiskSource::Ram(1 << 30), vdev: "xvda".into(), writable: true }]
    );
}

#[test]
fn disk_errors_name_their_line() {
    let head = "name='a'\nkernel='k'\n";
    let cases: &[(&str, &str)] = &[
        ("disk=['sda,xvda,w', 'sdb,xvda,r']", "line 3: disk: vdev xvda is used twice"),
        ("disk=['sda,xvdq9x,w']", "line 3: disk 'sda,xvdq9x,w': vdev \"xvdq9x\" has a bad partition number"),
        (
            "disk=['sda,vda,w']",
            "line 3: disk 'sda,vda,w': vdev \"vda\" is not a virtual disk name (xvda, xvdb, ..., sda or hda)",
        ),
        ("disk=['sda,xvda,rwx']", "line 3: disk 'sda,xvda,rwx': access \"rwx\" is not r, ro, w or rw"),
        (
            "disk=['ram:64X,xvda,w']",
            "line 3: disk 'ram:64X,xvda,w': ram size \"64X\" is not a size (a number with K, M or G)",
        ),
        (
            "disk=['ram:8G,xvda,w']",
            "line 3: disk 'ram:8G,xvda,w': ram size 8589934592 bytes is out of range (512 bytes to 4G)",
        ),
        (
            "disk=['file:/img,xvda,w']",
            "line 3: disk 'file:/img,xvda,w': \"file:\" targets are not supported (phy: or ram:)",
        ),
        ("disk=['']", "line 3: disk '': empty disk specification"),
    ];
    for (line, expected) in cases {
        assert_eq!(error(&format!("{head}{line}\n")), *expected, "{line}");
    }
    let many: Vec<String> =
        (0..33).map(|index| format!("'sda,xvd{},r'", (b'a' + (index % 26) as u8) as char)).collect();
    assert_eq!(error(&format!("{head}disk=[{}]\n", many.join(","))), "line 3: 33 disks (at most 32)");
}

#[test]
fn disk_spec_forms() {
    // Positional: target,vdev,access; target,format,vdev,access; target,vdev; with
    // /dev/ and phy: optional.
    assert_eq!(disk("phy:nvme0n1p2,xvda,w"), phy("nvme0n1p2", "xvda", true));
    assert_eq!(disk("phy:/dev/sda,xvdb,ro"), phy("sda", "xvdb", false));
    assert_eq!(disk("/dev/sda,raw,xvdb,r"), phy("sda", "xvdb", false));
    assert_eq!(disk(" sda , xvdc "), phy("sda", "xvdc", true));
    assert_eq!(disk("sda,xvdc,rw,"), phy("sda", "xvdc", true));
    // Keys, in any order, target last; mixed with positional vdev/access.
    assert_eq!(disk("format=raw, vdev=xvda, access=rw, target=/dev/nvme0n1p3"), phy("nvme0n1p3", "xvda", true));
    assert_eq!(disk("vdev=xvdb, access=r, devtype=disk, backendtype=phy, target=phy:sdb"), phy("sdb", "xvdb", false));
    assert_eq!(disk("xvda,w,target=sda"), phy("sda", "xvda", true));
    assert_eq!(disk("xvda,target=sda"), phy("sda", "xvda", true));
    assert_eq!(disk("r,vdev=xvda,target=sda"), phy("sda", "xvda", false));
    assert_eq!(disk("vdev=xvde,access=ro,sdb"), phy("sdb", "xvde", false));
    // RAM sizes.
    for (size, bytes) in [("64M", 64u64 << 20), ("1g", 1 << 30), ("4G", 4 << 30), ("512K", 512 << 10), ("4096", 4096)] {
        assert_eq!(disk(&format!("ram:{size},xvda,w")).source, DiskSource::Ram(bytes), "{size}");
    }
    // Display reads back.
    for text in ["phy:sda,xvda,w", "ram:64M,xvdb,r", "ram:1536,xvdc,w", "ram:3K,xvdd,w"] {
        assert_eq!(disk(text).to_string(), text);
        assert_eq!(disk(&disk(text).to_string()), disk(text));
    }
}

#[test]
fn bad_disk_specs() {
    let cases: &[(&str, &str)] = &[
        ("", "empty disk specification"),
        ("  ", "empty disk specification"),
        ("xvda,w", "no target (phy:NAME or ram:SIZE)"),
        ("vdev=xvda", "no target (phy:NAME or ram:SIZE)"),
        ("phy:,xvda,w", "\"\" is not a disk name (1 to 32 of letters, digits, '_', '.', '-')"),
        ("target=", "no target (phy:NAME or ram:SIZE)"),
        // As in xl, the target takes the rest, commas included.
        ("xvda,target=sda,w", "\"sda,w\" is not a disk name (1 to 32 of letters, digits, '_', '.', '-')"),
        ("sda", "no vdev (xvda, xvdb, ...)"),
        ("sda,,xvda", "empty item between commas"),
        ("sda,xvda,w,extra,more", "too many items (target, vdev, access)"),
        ("sda,xvda,w,vdev=xvdb", "vdev given twice"),
        ("vdev=xvda,vdev=xvdb,target=sda", "vdev given twice"),
        ("sda,xvda,w,access=r", "access given twice"),
        ("sda,qcow2,xvda,w", "format \"qcow2\" is not supported (only raw)"),
        ("format=vhd,sda,xvda", "format \"vhd\" is not supported (only raw)"),
        ("devtype=cdrom,sda,xvda", "devtype \"cdrom\" is not supported (only disk)"),
        ("backendtype=qdisk,sda,xvda", "backendtype \"qdisk\" is not supported (only phy)"),
        ("script=block-iscsi,sda,xvda", "unknown key 'script'"),
        ("tap:aio:/img,xvda,w", "\"tap:\" targets are not supported (phy: or ram:)"),
        ("phy:/dev/vg/root,xvda,w", "\"vg/root\" is not a disk name (1 to 32 of letters, digits, '_', '.', '-')"),
        ("phy:sda\u{1b}[2J,xvda,w", "\"sda\\u{1b}[2J\" is not a disk name (1 to 32 of letters, digits, '_', '.', '-')"),
        ("sda,xvda0,w", "vdev \"xvda0\" has a bad partition number"),
        ("sda,sdq,w", "vdev \"sdq\" names a disk beyond the naming scheme's range"),
        ("ram:,xvda,w", "ram size \"\" is not a size (a number with K, M or G)"),
        ("ram:M,xvda,w", "ram size \"M\" is not a size (a number with K, M or G)"),
        ("ram:-1M,xvda,w", "ram size \"-1M\" is not a size (a number with K, M or G)"),
        ("ram:0,xvda,w", "ram size 0 bytes is out of range (512 bytes to 4G)"),
        ("ram:4097M,xvda,w", "ram size 4296015872 bytes is out of range (512 bytes to 4G)"),
        ("ram:100,xvda,w", "ram size 100 bytes is not a multiple of 512"),
        ("ram:99999999999999999999G,xvda,w", "ram size 18446744073709551615 bytes is out of range (512 bytes to 4G)"),
        ("ram:17179869184G,xvda,w", "ram size 18446744073709551615 bytes is out of range (512 bytes to 4G)"),
    ];
    for (text, expected) in cases {
        assert_eq!(disk_error(text), *expected, "{text:?}");
    }
    assert_eq!(disk_error(&"s".repeat(MAX_DISK_SPEC_BYTES + 1)), "disk specification longer than 1024 bytes");
    let long_name = format!("phy:{},xvda,w", "a".repeat(MAX_DISK_NAME_LENGTH + 1));
    assert!(disk_error(&long_name).starts_with("\"aaaa"));
}
