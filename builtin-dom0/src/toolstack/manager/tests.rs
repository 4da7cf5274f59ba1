use super::*;
use crate::toolstack::builder::tests::{bzimage_of, pvh_elf, KERNEL_BASE, KERNEL_ENTRY, MIB};
use crate::toolstack::builder::BackingKind;
use alloc::vec;

struct Modules(Vec<(&'static str, Vec<u8>)>);

impl ModuleSource for Modules {
    fn module(&self, name: &str) -> Option<&[u8]> {
        self.0.iter().find(|(module, _)| *module == name).map(|(_, bytes)| bytes.as_slice())
    }
    fn module_names(&self) -> Vec<String> {
        self.0.iter().map(|(name, _)| name.to_string()).collect()
    }
}

fn modules() -> Modules {
    Modules(vec![
        ("web.cfg", b"name = 'web'\nkernel = 'vmlinuz'\nramdisk = 'initrd'\nmemory = 64\nvcpus = 2\ncpus = ['1', '2-3']\ncmdline = 'console=hvc0'\non_reboot = 'restart'\non_crash = 'preserve'\n".to_vec()),
        ("db.cfg", b"name = 'db'\nkernel = 'bzImage'\nmemory = 32\n".to_vec()),
        ("nokernel.cfg", b"name = 'nk'\nkernel = 'missing'\n".to_vec()),
        ("noramdisk.cfg", b"name = 'nr'\nkernel = 'vmlinuz'\nramdisk = 'gone'\n".to_vec()),
        ("bad.cfg", b"name = 'bad'\nkernel 'vmlinuz'\n".to_vec()),
        ("binary.cfg", vec![b'n', 0xff, 0xfe]),
        ("vmlinuz", pvh_elf()),
        ("bzImage", bzimage_of(&pvh_elf())),
        ("initrd", vec![0x42; 5000]),
    ])
}

#[derive(Debug, Default)]
struct FakeDomain {
    request: Option<CreateRequest>,
    writes: Vec<(u64, Vec<u8>)>,
    vcpu0: Option<(u32, u32)>,
    running: bool,
}

/// Which host call fails (the nth write, counting from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    Create,
    Write(usize),
    Start,
    Unpause,
    Destroy,
}

#[derive(Default)]
struct FakeHost {
    domains: BTreeMap<DomainId, FakeDomain>,
    next_domid: DomainId,
    fail: Vec<Fail>,
    writes: usize,
}

impl FakeHost {
    fn new() -> FakeHost {
        FakeHost { next_domid: 1, ..FakeHost::default() }
    }
    fn failing(fail: &[Fail]) -> FakeHost {
        FakeHost { fail: fail.to_vec(), ..FakeHost::new() }
    }
    fn fails(&self, what: Fail) -> bool {
        self.fail.contains(&what)
    }
}

impl DomainHost for FakeHost {
    fn limits(&self) -> Limits {
        Limits::for_machine(4, 1024)
    }
    fn create_domain(&mut self, request: &CreateRequest) -> Result<DomainId, HostError> {
        if self.fails(Fail::Create) {
            return Err(HostError::OutOfMemory { needed: request.memory_bytes });
        }
        let domid = self.next_domid;
        self.next_domid += 1;
        self.domains.insert(domid, FakeDomain { request: Some(request.clone()), ..FakeDomain::default() });
        Ok(domid)
    }
    fn write_guest(&mut self, domid: DomainId, gpa: u64, bytes: &[u8]) -> Result<(), HostError> {
        let nth = self.writes;
        self.writes += 1;
        if self.fails(Fail::Write(nth)) {
            return Err(HostError::BadGuestRange { gpa, length: bytes.len() as u64 });
        }
        let domain = self.domains.get_mut(&domid).ok_or(HostError::NoSuchDomain(domid))?;
        let request = domain.request.as_ref().unwrap();
        assert!(request.backing.iter().any(|r| r.start <= gpa && gpa + bytes.len() as u64 <= r.end));
        assert!(!domain.running && domain.vcpu0.is_none(), "writes come before the vCPU starts");
        domain.writes.push((gpa, bytes.to_vec()));
        Ok(())
    }
    fn start_vcpu0(&mut self, domid: DomainId, entry: u32, ebx: u32) -> Result<(), HostError> {
        if self.fails(Fail::Start) {
            return Err(HostError::Failed("vCPU setup refused"));
        }
        self.domains.get_mut(&domid).ok_or(HostError::NoSuchDomain(domid))?.vcpu0 = Some((entry, ebx));
        Ok(())
    }
    fn unpause(&mut self, domid: DomainId) -> Result<(), HostError> {
        if self.fails(Fail::Unpause) {
            return Err(HostError::Failed("unpause refused"));
        }
        let domain = self.domains.get_mut(&domid).ok_or(HostError::NoSuchDomain(domid))?;
        assert!(domain.vcpu0.is_some());
        domain.running = true;
        Ok(())
    }
    fn destroy(&mut self, domid: DomainId) -> Result<(), HostError> {
        if self.fails(Fail::Destroy) {
            return Err(HostError::Failed("destroy refused"));
        }
        self.domains.remove(&domid).map(|_| ()).ok_or(HostError::NoSuchDomain(domid))
    }
}

#[test]
fn creates_a_domain_and_writes_its_image() {
    let modules = modules();
    let mut host = FakeHost::new();
    let mut manager = DomainManager::new();
    let created = manager.create(&modules, &mut host, "web", &[]).unwrap();
    assert_eq!((created.domid, created.name.as_str()), (1, "web"));
    assert!(created.warnings.is_empty());
    let domain = &host.domains[&1];
    assert!(domain.running);
    let request = domain.request.as_ref().unwrap();
    assert_eq!((request.name.as_str(), request.memory_bytes, request.max_memory_bytes), ("web", 64 * MIB, 64 * MIB));
    assert_eq!((request.vcpus, request.max_vcpus, request.weight, request.cap), (2, 2, 256, 0));
    let affinity: Vec<String> = request.affinity.iter().map(|set| set.to_string()).collect();
    assert_eq!(affinity, ["1", "2-3"]);
    assert_eq!(request.lifecycle.on_crash, LifecycleAction::Preserve);
    assert_eq!(request.backing[0], BackingRange { start: 0, end: 64 * MIB, kind: BackingKind::Ram });
    assert_eq!(request.backing.len(), 3);
    // The kernel's file bytes at 16 MiB, start info, ramdisk, ACPI: in address order.
    let (entry, ebx) = domain.vcpu0.unwrap();
    assert_eq!(entry, KERNEL_ENTRY);
    assert_eq!(domain.writes.len(), 4);
    assert_eq!(domain.writes[0], (KERNEL_BASE, (0..=255u8).collect::<Vec<_>>()));
    assert_eq!(domain.writes[1].0, u64::from(ebx));
    assert!(domain.writes[1].1.ends_with(b"console=hvc0\0"));
    assert_eq!(domain.writes[2].1, vec![0x42; 5000]);
    assert_eq!(manager.find("web"), Some(1));
    assert_eq!(manager.domain(1).unwrap().config_name, "web");
    // A bzImage kernel, addressed with its .cfg suffix.
    let created = manager.create(&modules, &mut host, "db.cfg", &[]).unwrap();
    assert_eq!(created.domid, 2);
    assert_eq!(host.domains[&2].vcpu0.unwrap().0, KERNEL_ENTRY);
    assert_eq!(manager.domains().count(), 2);
}

#[test]
fn overrides_apply_and_duplicate_names_are_refused() {
    let modules = modules();
    let mut host = FakeHost::new();
    let mut manager = DomainManager::new();
    manager.create(&modules, &mut host, "web", &[]).unwrap();
    let error = manager.create(&modules, &mut host, "web", &[]).unwrap_err();
    assert_eq!(error.to_string(), "a domain named 'web' already exists (domain 1)");
    assert_eq!(host.domains.len(), 1);
    let created = manager.create(&modules, &mut host, "web", &["name=web2", "vcpus=3", "memory=96", "foo=1"]).unwrap();
    assert_eq!(created.name, "web2");
    assert_eq!(created.warnings[0].to_string(), "override \"foo=1\": unknown key 'foo' ignored");
    let request = host.domains[&created.domid].request.as_ref().unwrap();
    assert_eq!((request.vcpus, request.memory_bytes), (3, 96 * MIB));
    // vCPU 2 is beyond the cpus list: anywhere.
    assert_eq!(request.affinity[2].to_string(), "0-3");
    // Once forgotten (destroyed elsewhere), the name is free again.
    host.destroy(1).unwrap();
    assert_eq!(manager.forget(1).unwrap().name, "web");
    assert_eq!(manager.create(&modules, &mut host, "web", &[]).unwrap().name, "web");
}

#[test]
fn errors_before_creation_allocate_nothing() {
    let modules = modules();
    let mut host = FakeHost::new();
    let mut manager = DomainManager::new();
    let mut message = |name: &str, overrides: &[&str]| {
        let error = manager.create(&modules, &mut host, name, overrides).unwrap_err().to_string();
        assert!(!error.contains('\n'));
        error
    };
    assert_eq!(message("nope", &[]), "no config 'nope' (configs: bad, binary, db, nokernel, noramdisk, web)");
    assert_eq!(message("bad", &[]), "bad.cfg: line 2: expected '=' after key");
    assert_eq!(message("binary", &[]), "binary.cfg: not UTF-8 text (bad byte at offset 1)");
    assert_eq!(message("nokernel", &[]), "nokernel.cfg: kernel module 'missing' is not loaded");
    assert_eq!(message("noramdisk", &[]), "noramdisk.cfg: ramdisk module 'gone' is not loaded");
    assert_eq!(message("web", &["vcpus=17"]), "web.cfg: override \"vcpus=17\": vcpus = 17 is out of range (1 to 16)");
    assert_eq!(
        message("web", &["kernel=initrd"]),
        "web.cfg: kernel 'initrd' is neither an ELF with a PVH entry note nor a bzImage"
    );
    assert_eq!(
        message("web", &["memory=2048"]),
        "web.cfg: override \"memory=2048\": not enough memory: memory = 2048 MiB, but only 1024 MiB are free (minimum 1)"
    );
    assert_eq!(
        DomainManager::new().create(&Modules(vec![]), &mut FakeHost::new(), "x", &[]).unwrap_err().to_string(),
        "no config 'x' (no configs loaded)"
    );
    assert!(host.domains.is_empty());
    assert_eq!(manager.domains().count(), 0);
}

#[test]
fn every_failure_after_creation_destroys_the_domain() {
    let modules = modules();
    let cases: &[(Fail, &str)] = &[
        (Fail::Create, "creating the domain: not enough free memory for 64 MiB"),
        (Fail::Write(0), "writing guest memory at 0x1000000: guest range 0x1000000+0x100 is not backed"),
        (Fail::Write(3), "writing guest memory at 0xfc000000: guest range 0xfc000000+0x"),
        (Fail::Start, "starting vCPU 0: vCPU setup refused"),
        (Fail::Unpause, "unpausing: unpause refused"),
    ];
    for (fail, expected) in cases {
        let mut host = FakeHost::failing(&[*fail]);
        let mut manager = DomainManager::new();
        let error = manager.create(&modules, &mut host, "web", &[]).unwrap_err();
        assert!(error.to_string().starts_with(expected), "{fail:?}: {error}");
        assert!(host.domains.is_empty(), "{fail:?} left a domain behind");
        assert_eq!(manager.domains().count(), 0);
        // And the name is free for the next try.
        host.fail.clear();
        manager.create(&modules, &mut host, "web", &[]).unwrap();
    }
    // When the cleanup fails too, the error says which domain may be left.
    let mut host = FakeHost::failing(&[Fail::Start, Fail::Destroy]);
    let error = DomainManager::new().create(&modules, &mut host, "web", &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "starting vCPU 0: vCPU setup refused; destroying the half-built domain 1 failed too: destroy refused"
    );
}

#[test]
fn lifecycle_actions_and_restart() {
    let modules = modules();
    let mut host = FakeHost::new();
    let mut manager = DomainManager::new();
    let created = manager.create(&modules, &mut host, "web", &["memory=80"]).unwrap();
    let domid = created.domid;
    let action = |manager: &DomainManager, code| manager.action_for(domid, ShutdownReason::from_code(code).unwrap());
    assert_eq!(action(&manager, 0), Some(LifecycleAction::Destroy)); // poweroff: default
    assert_eq!(action(&manager, 1), Some(LifecycleAction::Restart));
    assert_eq!(action(&manager, 2), Some(LifecycleAction::Preserve)); // suspend
    assert_eq!(action(&manager, 3), Some(LifecycleAction::Preserve)); // on_crash
    assert_eq!(action(&manager, 4), Some(LifecycleAction::Destroy)); // watchdog
    assert_eq!(ShutdownReason::from_code(99), None);
    assert_eq!(manager.action_for(77, ShutdownReason::Reboot), None);
    // Restart: the old domain goes, a new one comes from the same config and overrides.
    let restarted = manager.restart(&modules, &mut host, domid).unwrap();
    assert_ne!(restarted.domid, domid);
    assert_eq!(restarted.name, "web");
    assert!(!host.domains.contains_key(&domid));
    assert_eq!(host.domains[&restarted.domid].request.as_ref().unwrap().memory_bytes, 80 * MIB);
    assert_eq!(manager.find("web"), Some(restarted.domid));
    assert_eq!(manager.restart(&modules, &mut host, domid).unwrap_err(), CreateError::UnknownDomain(domid));
    // A restart whose creation fails leaves nothing behind either.
    host.fail = vec![Fail::Unpause];
    assert!(manager.restart(&modules, &mut host, restarted.domid).is_err());
    assert!(host.domains.is_empty());
    assert_eq!(manager.domains().count(), 0);
    // destroy() frees and forgets.
    host.fail.clear();
    let again = manager.create(&modules, &mut host, "web", &[]).unwrap();
    manager.destroy(&mut host, again.domid).unwrap();
    assert!(host.domains.is_empty() && manager.find("web").is_none());
}

#[test]
fn a_bzimage_kernel_is_unpacked_written_and_restarted() {
    let mut modules = modules();
    let mut huge = bzimage_of(&pvh_elf());
    let length = huge.len();
    huge[length - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    modules.0.push(("huge", huge));
    let mut host = FakeHost::new();
    let mut manager = DomainManager::new();
    let domid = manager.create(&modules, &mut host, "db", &[]).unwrap().domid;
    // The unpacked ELF's segment, byte for byte, at 16 MiB.
    assert_eq!(host.domains[&domid].writes[0], (KERNEL_BASE, (0..=255u8).collect::<Vec<_>>()));
    let restarted = manager.restart(&modules, &mut host, domid).unwrap().domid;
    assert_eq!(host.domains[&restarted].writes[0].1.len(), 256);
    // A write failing after the unpack: destroyed, nothing left.
    let mut failing = FakeHost::failing(&[Fail::Write(0)]);
    assert!(manager.create(&modules, &mut failing, "db", &["name=db2"]).is_err());
    assert!(failing.domains.is_empty());
    // A payload larger than the domain's memory is refused before anything is made.
    let error = manager.create(&modules, &mut host, "db", &["name=db3", "kernel=huge"]).unwrap_err();
    assert!(error.to_string().starts_with("db.cfg: kernel 'huge': kernel unpacks to 4294967295 bytes"), "{error}");
    assert_eq!(host.domains.len(), 1);
}
