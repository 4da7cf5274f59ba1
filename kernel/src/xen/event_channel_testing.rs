//! The invariant checker of [`EventChannels`] and the body of the `event_channel_ops`
//! fuzz target, shared with the host tests (event_channel_tests.rs). Compiled only
//! for hosted builds (`cargo test`, cargo-fuzz), never into the image.
//!
//! The fuzz body runs a byte-coded sequence of operations — with hostile ports, vCPUs,
//! VIRQs and domain ids — over three domains (0, 1, 2, plus ids that do not exist),
//! delivers every [`Notify`] into a per-domain [`SharedInfoBits`] through the 2-level
//! functions, and after every step checks the invariants of the module documentation
//! and the postconditions of the step.

use alloc::{collections::BTreeMap, format, string::String, vec::Vec};

use super::two_level::{self, Delivery, EventWords, SharedInfoBits};
use super::{virq_is_global, Binding, EventChannels, EvtchnError, Notify};
use basalt_xen_abi::errno::{EEXIST, EINVAL, ENOENT, ENOSPC, ESRCH};
use basalt_xen_abi::event_channel::{EVTCHN_2L_NR_CHANNELS, NR_VIRQS};

/// Checks the invariants of the module documentation; the first violation found.
pub fn check_invariants(channels: &EventChannels) -> Result<(), String> {
    for (&domid, table) in &channels.domains {
        if table.max_ports > EVTCHN_2L_NR_CHANNELS || table.ports.len() > table.max_ports as usize {
            return Err(format!("d{domid}: {} port slots for a limit of {}", table.ports.len(), table.max_ports));
        }
        if table.ports.first().is_some_and(|info| info.binding != Binding::Free) {
            return Err(format!("d{domid}: port 0 is bound"));
        }
        if table.virq_ports.len() != table.vcpus as usize {
            return Err(format!("d{domid}: VIRQ slots for {} vCPUs, not {}", table.virq_ports.len(), table.vcpus));
        }
        for (port, info) in table.ports.iter().enumerate() {
            let port = port as u32;
            if info.notify_vcpu >= table.vcpus {
                return Err(format!("d{domid} port {port}: notify vCPU {} of {}", info.notify_vcpu, table.vcpus));
            }
            match info.binding {
                Binding::Free if info.notify_vcpu != 0 => {
                    return Err(format!("d{domid} port {port}: closed but notifies vCPU {}", info.notify_vcpu));
                }
                Binding::Interdomain { remote_domain, remote_port } => {
                    let peer = channels
                        .domains
                        .get(&remote_domain)
                        .ok_or_else(|| format!("d{domid} port {port}: peer domain {remote_domain} missing"))?;
                    let back = peer.port(remote_port).binding;
                    if back != (Binding::Interdomain { remote_domain: domid, remote_port: port }) {
                        return Err(format!(
                            "d{domid} port {port} -> d{remote_domain} port {remote_port}, which is {back:?}"
                        ));
                    }
                }
                Binding::Virq { virq } => {
                    let owners: Vec<usize> = table
                        .virq_ports
                        .iter()
                        .enumerate()
                        .filter(|(_, slots)| slots.get(virq as usize) == Some(&port))
                        .map(|(vcpu, _)| vcpu)
                        .collect();
                    let expected = if virq_is_global(virq) { 0 } else { info.notify_vcpu as usize };
                    if owners != [expected] {
                        return Err(format!("d{domid} port {port}: VIRQ {virq} named by vCPU slots {owners:?}"));
                    }
                }
                _ => {}
            }
        }
        for (vcpu, slots) in table.virq_ports.iter().enumerate() {
            for (virq, &port) in slots.iter().enumerate() {
                if port != 0 && table.port(port).binding != (Binding::Virq { virq: virq as u32 }) {
                    return Err(format!("d{domid} vCPU {vcpu} VIRQ {virq} names port {port}, not bound to it"));
                }
            }
        }
    }
    Ok(())
}

/// Reads the input a byte at a time; zeros once it runs out.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.data.split_first() else {
            return 0;
        };
        self.data = rest;
        first
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// Mostly one of the live domains, sometimes ids that never exist.
    fn domain(&mut self) -> u16 {
        match self.byte() % 8 {
            0 | 1 => 0,
            2 | 3 => 1,
            4 | 5 => 2,
            6 => 3,
            _ => 0x7ff0,
        }
    }

    /// Small ports mostly (so operations meet each other), and hostile ones.
    fn port(&mut self) -> u32 {
        match self.byte() % 8 {
            0 => self.u32(),
            1 => EVTCHN_2L_NR_CHANNELS - 1 + u32::from(self.byte() % 3),
            _ => u32::from(self.byte() % 20),
        }
    }

    fn vcpu(&mut self) -> u32 {
        match self.byte() % 8 {
            0 => u32::MAX,
            1 => self.u32(),
            _ => u32::from(self.byte() % 4),
        }
    }

    fn virq(&mut self) -> u32 {
        match self.byte() % 8 {
            0 => self.u32(),
            _ => u32::from(self.byte() % (NR_VIRQS as u8 + 2)),
        }
    }
}

/// Delivers `notify` into its domain's event words, checking the 2-level postconditions.
fn deliver(words: &mut BTreeMap<u16, SharedInfoBits>, notify: Notify) {
    let Some(bits) = words.get_mut(&notify.domain) else {
        panic!("{notify:?} for a domain without event words");
    };
    let was_pending = bits.is_pending(notify.port);
    let delivery = two_level::set_pending(bits, notify.port, notify.vcpu);
    assert!(bits.is_pending(notify.port), "{notify:?}: not pending after set_pending");
    match delivery {
        Delivery::InvalidPort => panic!("{notify:?}: a bound port outside the 2-level ABI"),
        Delivery::AlreadyPending => assert!(was_pending),
        Delivery::Pending => assert!(!was_pending),
        Delivery::Upcall => {
            assert!(!was_pending && !bits.is_masked(notify.port));
            assert!(bits.upcall_pending(notify.vcpu) && bits.pending_sel(notify.vcpu) & (1 << (notify.port / 64)) != 0);
        }
    }
}

fn check_error(error: EvtchnError, allowed: &[i64]) {
    assert!(allowed.contains(&error.errno()), "{error:?} (errno {}) not in {allowed:?}", error.errno());
}

/// The fuzz body: a sequence of operations over domains 0 (1 vCPU), 1 (2 vCPUs) and
/// 2 (3 vCPUs) with small port limits taken from the input. Panics on a violated
/// invariant or postcondition; never otherwise.
pub fn fuzz_one(data: &[u8]) {
    let mut input = Input { data };
    let mut channels = EventChannels::new();
    let mut words: BTreeMap<u16, SharedInfoBits> = BTreeMap::new();
    for (domid, vcpus) in [(0u16, 1u32), (1, 2), (2, 3)] {
        let max_ports = match input.byte() % 4 {
            0 => EVTCHN_2L_NR_CHANNELS,
            limit => 2 + u32::from(limit) * 3,
        };
        channels.add_domain(domid, vcpus, max_ports).expect("valid limits");
        words.insert(domid, SharedInfoBits::new());
    }
    let mut steps = 0;
    while !input.data.is_empty() && steps < 4096 {
        steps += 1;
        match input.byte() % 16 {
            0 => {
                let (domid, remote) = (input.domain(), input.domain());
                match channels.alloc_unbound(domid, remote) {
                    Ok(port) => {
                        assert!(port != 0);
                        let status = channels.status(domid, port).expect("a new port");
                        assert_eq!(status.binding, Binding::Unbound { remote_domain: remote });
                    }
                    Err(error) => check_error(error, &[ESRCH, ENOSPC]),
                }
            }
            1 => {
                let (domid, remote, remote_port) = (input.domain(), input.domain(), input.port());
                match channels.bind_interdomain(domid, remote, remote_port) {
                    Ok((port, notify)) => {
                        assert_eq!((notify.domain, notify.port), (domid, port));
                        assert_eq!(
                            channels.status(remote, remote_port).expect("the peer").binding,
                            Binding::Interdomain { remote_domain: domid, remote_port: port }
                        );
                        deliver(&mut words, notify);
                    }
                    Err(error) => check_error(error, &[ESRCH, ENOSPC, EINVAL]),
                }
            }
            2 | 3 => {
                let (domid, virq, vcpu) = (input.domain(), input.virq(), input.vcpu());
                match channels.bind_virq(domid, virq, vcpu) {
                    Ok(port) => {
                        assert_eq!(channels.raise_virq(domid, vcpu, virq).map(|notify| notify.port), Some(port))
                    }
                    Err(error) => check_error(error, &[ESRCH, EINVAL, ENOENT, EEXIST, ENOSPC]),
                }
            }
            4 => {
                let (domid, vcpu) = (input.domain(), input.vcpu());
                if let Err(error) = channels.bind_ipi(domid, vcpu) {
                    check_error(error, &[ESRCH, ENOENT, ENOSPC]);
                }
            }
            5 | 6 => {
                let (domid, port) = (input.domain(), input.port());
                let before = channels.status(domid, port);
                match channels.close(domid, port) {
                    Ok(clear) => {
                        assert!(before.is_ok_and(|info| info.binding != Binding::Free));
                        assert_eq!(channels.status(domid, port).expect("valid").binding, Binding::Free);
                        if let Some(bits) = words.get_mut(&clear.domain) {
                            two_level::clear_pending(bits, clear.port);
                            assert!(!bits.is_pending(clear.port));
                        }
                        if let Ok(Binding::Interdomain { remote_domain, remote_port }) = before.map(|info| info.binding)
                        {
                            if (remote_domain, remote_port) != (domid, port) {
                                assert_eq!(
                                    channels.status(remote_domain, remote_port).expect("the peer").binding,
                                    Binding::Unbound { remote_domain: domid }
                                );
                            }
                        }
                    }
                    Err(error) => check_error(error, &[ESRCH, EINVAL]),
                }
            }
            7 | 8 => {
                let (domid, port) = (input.domain(), input.port());
                match channels.send(domid, port) {
                    Ok(Some(notify)) => deliver(&mut words, notify),
                    Ok(None) => {}
                    Err(error) => check_error(error, &[ESRCH, EINVAL]),
                }
            }
            9 => {
                let (domid, port) = (input.domain(), input.port());
                if let Err(error) = channels.status(domid, port) {
                    check_error(error, &[ESRCH, EINVAL]);
                }
            }
            10 => {
                let (domid, port, vcpu) = (input.domain(), input.port(), input.vcpu());
                match channels.bind_vcpu(domid, port, vcpu) {
                    Ok(()) => assert_eq!(channels.notify_vcpu(domid, port), Some(vcpu)),
                    Err(error) => check_error(error, &[ESRCH, EINVAL, ENOENT]),
                }
            }
            11 => {
                let (domid, vcpu, virq) = (input.domain(), input.vcpu(), input.virq());
                if let Some(notify) = channels.raise_virq(domid, vcpu, virq) {
                    assert_eq!(notify.domain, domid);
                    assert_eq!(channels.status(domid, notify.port).expect("bound").binding, Binding::Virq { virq });
                    deliver(&mut words, notify);
                }
            }
            12 => {
                // The guest masks or unmasks a port itself, or unmasks through the
                // hypercall, or handles its upcall.
                let (domid, port, action) = (input.domain(), input.port(), input.byte() % 4);
                let Some(bits) = words.get_mut(&domid) else { continue };
                match action {
                    0 => bits.set_masked(port, true),
                    1 => bits.set_masked(port, false),
                    2 => {
                        if let Some(vcpu) = channels.notify_vcpu(domid, port) {
                            let upcall = two_level::unmask(bits, port, vcpu);
                            assert!(!bits.is_masked(port));
                            assert!(!upcall || bits.upcall_pending(vcpu));
                        }
                    }
                    _ => {
                        let vcpu = u32::from(input.byte() % 4);
                        bits.take_selector(vcpu);
                    }
                }
            }
            13 => {
                let domid = input.domain();
                let before: Vec<_> = channels.ports(domid).collect();
                match channels.reset(domid) {
                    Ok(cleared) => {
                        assert_eq!(cleared.len(), before.len());
                        assert_eq!(channels.ports(domid).count(), 0);
                        if let Some(bits) = words.get_mut(&domid) {
                            for clear in cleared {
                                two_level::clear_pending(bits, clear.port);
                            }
                        }
                    }
                    Err(error) => check_error(error, &[ESRCH]),
                }
            }
            14 => {
                let domid = input.domain();
                let existed = channels.has_domain(domid);
                let disconnected = channels.remove_domain(domid);
                assert!(!channels.has_domain(domid) && (existed || disconnected.is_empty()));
                for peer in disconnected {
                    assert_eq!(
                        channels.status(peer.domain, peer.port).expect("a live peer").binding,
                        Binding::Unbound { remote_domain: domid }
                    );
                }
                words.remove(&domid);
            }
            _ => {
                let (domid, vcpus, max_ports) = (input.domain(), input.vcpu(), input.port());
                match channels.add_domain(domid, vcpus, max_ports) {
                    Ok(()) => {
                        words.insert(domid, SharedInfoBits::new());
                    }
                    Err(error) => check_error(error, &[EEXIST, EINVAL]),
                }
            }
        }
        if let Err(violation) = check_invariants(&channels) {
            panic!("step {steps}: {violation}");
        }
    }
}
