//! Host tests of the event-channel tables and 2-level delivery.

use alloc::{vec, vec::Vec};

use super::testing::{check_invariants, fuzz_one};
use super::two_level::{self, Delivery, EventWords, SharedInfoBits};
use super::*;
use basalt_xen_abi::event_channel::{
    VIRQ_CONSOLE, VIRQ_DEBUG, VIRQ_DOM_EXC, VIRQ_MCA, VIRQ_TIMER, VIRQ_XENOPROF, VIRQ_XENPMU,
};

/// dom0 (1 vCPU, 4096 ports), domU 1 (2 vCPUs, 1024 ports), domU 2 (3 vCPUs, 16 ports).
fn three_domains() -> EventChannels {
    let mut channels = EventChannels::new();
    channels.add_domain(0, 1, 4096).unwrap();
    channels.add_domain(1, 2, 1024).unwrap();
    channels.add_domain(2, 3, 16).unwrap();
    channels
}

fn binding(channels: &EventChannels, domid: u16, port: u32) -> Binding {
    channels.status(domid, port).unwrap().binding
}

/// domU `frontend` allocates a port for dom0, which binds to it: (frontend port, dom0 port).
fn connect(channels: &mut EventChannels, frontend: u16) -> (u32, u32) {
    let remote = channels.alloc_unbound(frontend, 0).unwrap();
    let (local, _) = channels.bind_interdomain(0, frontend, remote).unwrap();
    (remote, local)
}

fn errno(result: Result<impl core::fmt::Debug, EvtchnError>) -> i64 {
    result.unwrap_err().errno()
}

#[test]
fn add_domain_checks_limits() {
    let mut channels = EventChannels::new();
    assert_eq!(errno(channels.add_domain(1, 0, 1024)), EINVAL);
    assert_eq!(errno(channels.add_domain(1, MAX_VCPUS + 1, 1024)), EINVAL);
    assert_eq!(errno(channels.add_domain(1, 1, 4097)), EINVAL);
    assert_eq!(errno(channels.add_domain(1, 1, 1)), EINVAL);
    assert_eq!(errno(channels.add_domain(0x7ff0, 1, 1024)), EINVAL);
    channels.add_domain(1, u32::from(u8::MAX), 4096).unwrap();
    assert_eq!(channels.add_domain(1, 1, 1024), Err(EvtchnError::DomainExists(1)));
    assert_eq!(channels.limits(1), Some((4096, 255)));
    assert!(!channels.has_domain(2));
}

#[test]
fn unknown_domain_is_esrch_everywhere() {
    let mut channels = three_domains();
    assert_eq!(errno(channels.alloc_unbound(9, 0)), ESRCH);
    assert_eq!(errno(channels.bind_interdomain(9, 0, 1)), ESRCH);
    assert_eq!(errno(channels.bind_interdomain(0, 9, 1)), ESRCH);
    assert_eq!(errno(channels.bind_virq(9, VIRQ_TIMER, 0)), ESRCH);
    assert_eq!(errno(channels.bind_ipi(9, 0)), ESRCH);
    assert_eq!(errno(channels.close(9, 1)), ESRCH);
    assert_eq!(errno(channels.send(9, 1)), ESRCH);
    assert_eq!(errno(channels.status(9, 1)), ESRCH);
    assert_eq!(errno(channels.bind_vcpu(9, 1, 0)), ESRCH);
    assert_eq!(errno(channels.reset(9)), ESRCH);
    assert_eq!(channels.raise_virq(9, 0, VIRQ_TIMER), None);
    assert_eq!(channels.notify_vcpu(9, 1), None);
    assert_eq!(channels.ports(9).count(), 0);
    assert!(channels.remove_domain(9).is_empty());
}

#[test]
fn ports_are_allocated_lowest_first_from_one() {
    let mut channels = three_domains();
    assert_eq!(channels.alloc_unbound(1, 0), Ok(1));
    assert_eq!(channels.bind_ipi(1, 1), Ok(2));
    assert_eq!(channels.bind_virq(1, VIRQ_TIMER, 0), Ok(3));
    assert!(channels.close(1, 2).is_ok());
    assert_eq!(channels.alloc_unbound(1, 0), Ok(2), "the freed port is reused first");
    assert_eq!(channels.alloc_unbound(1, 0), Ok(4));
    // Port 0 reads as closed and can never be closed, sent to or moved.
    assert_eq!(binding(&channels, 1, 0), Binding::Free);
    assert_eq!(errno(channels.close(1, 0)), EINVAL);
    assert_eq!(errno(channels.send(1, 0)), EINVAL);
    assert_eq!(errno(channels.bind_vcpu(1, 0, 0)), EINVAL);
}

#[test]
fn port_limit_is_enospc() {
    let mut channels = three_domains();
    for expected in 1..16 {
        assert_eq!(channels.bind_ipi(2, 0), Ok(expected));
    }
    assert_eq!(channels.bind_ipi(2, 0), Err(EvtchnError::NoFreePort));
    assert_eq!(errno(channels.alloc_unbound(2, 0)), ENOSPC);
    assert_eq!(errno(channels.bind_virq(2, VIRQ_TIMER, 0)), ENOSPC);
    // bind_interdomain allocates before it looks at the remote port (Xen's order).
    let remote = channels.alloc_unbound(0, 2).unwrap();
    assert_eq!(errno(channels.bind_interdomain(2, 0, remote)), ENOSPC);
    assert_eq!(binding(&channels, 0, remote), Binding::Unbound { remote_domain: 2 }, "remote port untouched");
}

#[test]
fn two_level_limit_of_4096_ports() {
    let mut channels = EventChannels::new();
    channels.add_domain(0, 1, EVTCHN_2L_NR_CHANNELS).unwrap();
    let mut last = 0;
    while let Ok(port) = channels.bind_ipi(0, 0) {
        last = port;
    }
    assert_eq!(last, 4095);
    assert_eq!(channels.ports(0).count(), 4095);
    assert_eq!(errno(channels.status(0, 4096)), EINVAL);
    assert_eq!(errno(channels.close(0, 4096)), EINVAL);
    assert_eq!(errno(channels.send(0, u32::MAX)), EINVAL);
    assert_eq!(channels.notify_vcpu(0, 4096), None);
    check_invariants(&channels).unwrap();
}

#[test]
fn status_reports_every_binding() {
    let mut channels = three_domains();
    let unbound = channels.alloc_unbound(1, 0).unwrap();
    let (frontend, backend) = connect(&mut channels, 1);
    let virq = channels.bind_virq(1, VIRQ_DEBUG, 1).unwrap();
    let ipi = channels.bind_ipi(1, 1).unwrap();

    let status = channels.status(1, unbound).unwrap();
    assert_eq!((status.evtchn_status(), status.notify_vcpu), (EVTCHNSTAT_unbound, 0));
    assert_eq!(status.status_union(), [0, 0, 0, 0, 0, 0, 0, 0]);

    let status = channels.status(1, frontend).unwrap();
    assert_eq!(status.evtchn_status(), EVTCHNSTAT_interdomain);
    assert_eq!(status.status_union(), [0, 0, 0, 0, backend as u8, 0, 0, 0]);
    let status = channels.status(0, backend).unwrap();
    assert_eq!(status.status_union(), [1, 0, 0, 0, frontend as u8, 0, 0, 0]);

    let status = channels.status(1, virq).unwrap();
    assert_eq!((status.evtchn_status(), status.notify_vcpu), (EVTCHNSTAT_virq, 1));
    assert_eq!(status.status_union(), [VIRQ_DEBUG as u8, 0, 0, 0, 0, 0, 0, 0]);

    let status = channels.status(1, ipi).unwrap();
    assert_eq!((status.evtchn_status(), status.notify_vcpu, status.status_union()), (EVTCHNSTAT_ipi, 1, [0; 8]));

    // A closed port below the limit reads as closed; beyond the limit is EINVAL.
    assert_eq!(channels.status(1, 1000).unwrap().evtchn_status(), EVTCHNSTAT_closed);
    assert_eq!(errno(channels.status(1, 1024)), EINVAL);

    let listed: Vec<u32> = channels.ports(1).map(|(port, _)| port).collect();
    assert_eq!(listed, vec![unbound, frontend, virq, ipi]);
}

#[test]
fn interdomain_connects_both_ends_and_notifies_the_binder() {
    let mut channels = three_domains();
    let remote = channels.alloc_unbound(1, 0).unwrap();
    channels.bind_vcpu(1, remote, 1).unwrap();
    // Sending on an unbound port is dropped silently.
    assert_eq!(channels.send(1, remote), Ok(None));
    let (local, notify) = channels.bind_interdomain(0, 1, remote).unwrap();
    assert_eq!(notify, Notify { domain: 0, port: local, vcpu: 0 });
    assert_eq!(binding(&channels, 0, local), Binding::Interdomain { remote_domain: 1, remote_port: remote });
    assert_eq!(binding(&channels, 1, remote), Binding::Interdomain { remote_domain: 0, remote_port: local });
    // The frontend's port keeps the notify vCPU it had while unbound.
    assert_eq!(channels.send(0, local), Ok(Some(Notify { domain: 1, port: remote, vcpu: 1 })));
    assert_eq!(channels.send(1, remote), Ok(Some(Notify { domain: 0, port: local, vcpu: 0 })));
    check_invariants(&channels).unwrap();
}

#[test]
fn interdomain_refuses_ports_not_waiting_for_the_caller() {
    let mut channels = three_domains();
    let for_dom2 = channels.alloc_unbound(1, 2).unwrap();
    assert_eq!(channels.bind_interdomain(0, 1, for_dom2), Err(EvtchnError::WrongBinding(for_dom2)));
    let ipi = channels.bind_ipi(1, 0).unwrap();
    assert_eq!(errno(channels.bind_interdomain(0, 1, ipi)), EINVAL);
    assert_eq!(errno(channels.bind_interdomain(0, 1, 500)), EINVAL, "a closed port");
    assert_eq!(errno(channels.bind_interdomain(0, 1, 1024)), EINVAL, "beyond the limit");
    assert_eq!(errno(channels.bind_interdomain(0, 1, u32::MAX)), EINVAL);
    assert_eq!(errno(channels.bind_interdomain(0, 1, 0)), EINVAL);
    // Once connected, the port is no longer available to a second binder.
    let (dom2_port, _) = channels.bind_interdomain(2, 1, for_dom2).unwrap();
    assert_eq!(errno(channels.bind_interdomain(2, 1, for_dom2)), EINVAL);
    assert_eq!(channels.ports(0).count(), 0, "failed binds leave no port behind");
    assert_eq!(channels.ports(2).map(|(port, _)| port).collect::<Vec<_>>(), vec![dom2_port]);
    check_invariants(&channels).unwrap();
}

#[test]
fn a_domain_may_bind_its_own_unbound_port() {
    let mut channels = three_domains();
    let waiting = channels.alloc_unbound(1, 1).unwrap();
    let (local, notify) = channels.bind_interdomain(1, 1, waiting).unwrap();
    assert_ne!(local, waiting);
    assert_eq!(notify, Notify { domain: 1, port: local, vcpu: 0 });
    assert_eq!(channels.send(1, local), Ok(Some(Notify { domain: 1, port: waiting, vcpu: 0 })));
    assert_eq!(channels.send(1, waiting), Ok(Some(Notify { domain: 1, port: local, vcpu: 0 })));
    check_invariants(&channels).unwrap();
    assert!(channels.close(1, waiting).is_ok());
    assert_eq!(binding(&channels, 1, local), Binding::Unbound { remote_domain: 1 });
    // Removing the domain drops both halves and reports nothing to others.
    let (again, _) = channels.bind_interdomain(1, 1, local).unwrap();
    assert_eq!(again, waiting);
    assert!(channels.remove_domain(1).is_empty());
    check_invariants(&channels).unwrap();
}

#[test]
fn close_returns_the_peer_to_unbound_and_it_can_reconnect() {
    let mut channels = three_domains();
    let (frontend, backend) = connect(&mut channels, 1);
    assert_eq!(channels.close(0, backend), Ok(ClearPending { domain: 0, port: backend }));
    assert_eq!(binding(&channels, 0, backend), Binding::Free);
    assert_eq!(binding(&channels, 1, frontend), Binding::Unbound { remote_domain: 0 });
    assert_eq!(channels.send(1, frontend), Ok(None));
    assert_eq!(errno(channels.send(0, backend)), EINVAL);
    assert_eq!(errno(channels.close(0, backend)), EINVAL, "closing twice");
    // The backend reconnects to the same frontend port.
    let (backend, notify) = channels.bind_interdomain(0, 1, frontend).unwrap();
    assert_eq!(notify.port, backend);
    // Now the frontend closes: dom0's port waits for domain 1.
    assert!(channels.close(1, frontend).is_ok());
    assert_eq!(binding(&channels, 0, backend), Binding::Unbound { remote_domain: 1 });
    // Domain 1 binds back to dom0's waiting port (the other direction).
    let (frontend, _) = channels.bind_interdomain(1, 0, backend).unwrap();
    assert_eq!(binding(&channels, 0, backend), Binding::Interdomain { remote_domain: 1, remote_port: frontend });
    check_invariants(&channels).unwrap();
}

#[test]
fn remove_domain_unbinds_its_peers() {
    let mut channels = three_domains();
    let (_, backend_1) = connect(&mut channels, 1);
    let (_, backend_2) = connect(&mut channels, 2);
    let waiting_for_1 = channels.alloc_unbound(0, 1).unwrap();
    channels.bind_vcpu(0, backend_1, 0).unwrap();
    let disconnected = channels.remove_domain(1);
    assert_eq!(disconnected, vec![Disconnected { domain: 0, port: backend_1 }]);
    assert!(!channels.has_domain(1));
    assert_eq!(binding(&channels, 0, backend_1), Binding::Unbound { remote_domain: 1 });
    assert_eq!(binding(&channels, 0, waiting_for_1), Binding::Unbound { remote_domain: 1 });
    assert!(matches!(binding(&channels, 0, backend_2), Binding::Interdomain { remote_domain: 2, .. }));
    assert_eq!(channels.send(0, backend_1), Ok(None));
    check_invariants(&channels).unwrap();
    // A new domain 1 can pick up the waiting ports.
    channels.add_domain(1, 1, 64).unwrap();
    let (port, _) = channels.bind_interdomain(1, 0, backend_1).unwrap();
    assert_eq!(port, 1);
    check_invariants(&channels).unwrap();
}

#[test]
fn per_vcpu_virqs_bind_once_per_vcpu() {
    let mut channels = three_domains();
    let timer0 = channels.bind_virq(1, VIRQ_TIMER, 0).unwrap();
    let timer1 = channels.bind_virq(1, VIRQ_TIMER, 1).unwrap();
    assert_eq!(channels.bind_virq(1, VIRQ_TIMER, 1), Err(EvtchnError::VirqBound { virq: 0, vcpu: 1, port: timer1 }));
    assert_eq!(errno(channels.bind_virq(1, VIRQ_TIMER, 0)), EEXIST);
    assert_eq!(channels.raise_virq(1, 0, VIRQ_TIMER), Some(Notify { domain: 1, port: timer0, vcpu: 0 }));
    assert_eq!(channels.raise_virq(1, 1, VIRQ_TIMER), Some(Notify { domain: 1, port: timer1, vcpu: 1 }));
    assert_eq!(channels.raise_virq(1, 2, VIRQ_TIMER), None, "no vCPU 2");
    assert_eq!(channels.raise_virq(1, u32::MAX, VIRQ_TIMER), None);
    assert_eq!(channels.raise_virq(1, 0, VIRQ_DEBUG), None, "not bound");
    // Per-vCPU VIRQs cannot move; IPIs neither.
    assert_eq!(errno(channels.bind_vcpu(1, timer0, 1)), EINVAL);
    let ipi = channels.bind_ipi(1, 1).unwrap();
    assert_eq!(errno(channels.bind_vcpu(1, ipi, 0)), EINVAL);
    // A VIRQ port cannot be sent to.
    assert_eq!(errno(channels.send(1, timer0)), EINVAL);
    // Closing frees the slot for a new binding.
    assert!(channels.close(1, timer1).is_ok());
    assert_eq!(channels.raise_virq(1, 1, VIRQ_TIMER), None);
    assert_eq!(channels.bind_virq(1, VIRQ_TIMER, 1), Ok(timer1));
    for virq in [VIRQ_DEBUG, VIRQ_XENOPROF, VIRQ_XENPMU] {
        assert_eq!(channels.bind_virq(1, virq, 1).map(|_| ()), Ok(()), "VIRQ {virq} is per vCPU");
    }
    check_invariants(&channels).unwrap();
}

#[test]
fn virq_arguments_are_checked_in_xens_order() {
    let mut channels = three_domains();
    assert_eq!(channels.bind_virq(1, NR_VIRQS, 0), Err(EvtchnError::InvalidVirq(NR_VIRQS)));
    assert_eq!(errno(channels.bind_virq(1, u32::MAX, u32::MAX)), EINVAL, "bad VIRQ before bad vCPU");
    assert_eq!(errno(channels.bind_virq(1, VIRQ_CONSOLE, 1)), EINVAL, "global VIRQ on vCPU 1");
    assert_eq!(errno(channels.bind_virq(1, VIRQ_MCA, u32::MAX)), EINVAL, "global check before the vCPU");
    assert_eq!(channels.bind_virq(1, VIRQ_TIMER, 2), Err(EvtchnError::NoSuchVcpu(2)));
    assert_eq!(errno(channels.bind_virq(1, VIRQ_TIMER, u32::MAX)), ENOENT);
    // VIRQ numbers below NR_VIRQS that name nothing are global and bindable, as in Xen.
    assert!(channels.bind_virq(1, 5, 0).is_ok());
    assert!(channels.raise_virq(1, 0, NR_VIRQS).is_none());
    assert!(channels.raise_virq(1, 0, u32::MAX).is_none());
}

#[test]
fn global_virqs_bind_on_vcpu0_and_move_with_bind_vcpu() {
    let mut channels = three_domains();
    let console = channels.bind_virq(2, VIRQ_CONSOLE, 0).unwrap();
    assert_eq!(errno(channels.bind_virq(2, VIRQ_CONSOLE, 0)), EEXIST);
    assert_eq!(channels.raise_virq(2, 0, VIRQ_CONSOLE), Some(Notify { domain: 2, port: console, vcpu: 0 }));
    channels.bind_vcpu(2, console, 2).unwrap();
    // The vCPU argument of raise_virq does not matter for a global VIRQ.
    for vcpu in [0, 1, 7, u32::MAX] {
        assert_eq!(channels.raise_virq(2, vcpu, VIRQ_CONSOLE), Some(Notify { domain: 2, port: console, vcpu: 2 }));
    }
    // It stays bound on vCPU 0's slot: binding it again is still EEXIST.
    assert_eq!(errno(channels.bind_virq(2, VIRQ_CONSOLE, 0)), EEXIST);
    let dom_exc = channels.bind_virq(2, VIRQ_DOM_EXC, 0).unwrap();
    assert_ne!(dom_exc, console);
    check_invariants(&channels).unwrap();
    assert!(channels.close(2, console).is_ok());
    assert_eq!(channels.raise_virq(2, 0, VIRQ_CONSOLE), None);
    check_invariants(&channels).unwrap();
}

#[test]
fn bind_vcpu_moves_delivery_of_interdomain_and_unbound_ports() {
    let mut channels = three_domains();
    let (frontend, backend) = connect(&mut channels, 2);
    assert_eq!(channels.send(0, backend).unwrap().unwrap().vcpu, 0);
    channels.bind_vcpu(2, frontend, 2).unwrap();
    assert_eq!(channels.send(0, backend), Ok(Some(Notify { domain: 2, port: frontend, vcpu: 2 })));
    assert_eq!(channels.notify_vcpu(2, frontend), Some(2));
    // Order of checks: vCPU first (ENOENT), then the port (EINVAL).
    assert_eq!(errno(channels.bind_vcpu(2, u32::MAX, 3)), ENOENT);
    assert_eq!(errno(channels.bind_vcpu(2, u32::MAX, 1)), EINVAL);
    assert_eq!(errno(channels.bind_vcpu(2, 15, 1)), EINVAL, "a closed port");
    let unbound = channels.alloc_unbound(2, 0).unwrap();
    channels.bind_vcpu(2, unbound, 1).unwrap();
    assert_eq!(channels.notify_vcpu(2, unbound), Some(1));
    // A closed port notifies vCPU 0 again (Xen's free_evtchn).
    assert!(channels.close(2, frontend).is_ok());
    assert_eq!(channels.notify_vcpu(2, frontend), Some(0));
    check_invariants(&channels).unwrap();
}

#[test]
fn ipi_notifies_its_own_port() {
    let mut channels = three_domains();
    let ipi = channels.bind_ipi(2, 2).unwrap();
    assert_eq!(channels.send(2, ipi), Ok(Some(Notify { domain: 2, port: ipi, vcpu: 2 })));
    assert_eq!(errno(channels.bind_ipi(2, 3)), ENOENT);
    assert_eq!(errno(channels.bind_ipi(2, u32::MAX)), ENOENT);
}

#[test]
fn reset_closes_everything_and_unbinds_peers() {
    let mut channels = three_domains();
    let (frontend, backend) = connect(&mut channels, 1);
    let timer = channels.bind_virq(1, VIRQ_TIMER, 1).unwrap();
    let self_waiting = channels.alloc_unbound(1, 1).unwrap();
    let (self_bound, _) = channels.bind_interdomain(1, 1, self_waiting).unwrap();
    let mut cleared = channels.reset(1).unwrap();
    cleared.sort_by_key(|clear| clear.port);
    let ports: Vec<u32> = cleared.iter().map(|clear| clear.port).collect();
    let mut expected = vec![frontend, timer, self_waiting, self_bound];
    expected.sort();
    assert_eq!(ports, expected);
    assert_eq!(channels.ports(1).count(), 0);
    assert_eq!(binding(&channels, 0, backend), Binding::Unbound { remote_domain: 1 });
    assert_eq!(channels.raise_virq(1, 1, VIRQ_TIMER), None);
    assert_eq!(channels.bind_virq(1, VIRQ_TIMER, 1), Ok(1));
    check_invariants(&channels).unwrap();
}

#[test]
fn errors_map_to_xen_errnos() {
    assert_eq!(EvtchnError::NoSuchDomain(3).errno(), ESRCH);
    assert_eq!(EvtchnError::DomainExists(3).errno(), EEXIST);
    assert_eq!(EvtchnError::VirqBound { virq: 0, vcpu: 0, port: 1 }.errno(), EEXIST);
    assert_eq!(EvtchnError::NoSuchVcpu(3).errno(), ENOENT);
    assert_eq!(EvtchnError::NoFreePort.errno(), ENOSPC);
    for error in [
        EvtchnError::BadDomainLimits,
        EvtchnError::InvalidPort(9),
        EvtchnError::WrongBinding(9),
        EvtchnError::InvalidVirq(99),
        EvtchnError::GlobalVirqNotOnVcpu0 { virq: 2, vcpu: 1 },
    ] {
        assert_eq!(error.errno(), EINVAL);
    }
    assert_eq!(alloc::format!("{}", EvtchnError::InvalidPort(4096)), "port 4096 out of range");
}

// ---------------------------------------------------------------------------------
// 2-level delivery

/// Records every call, and answers from a [`SharedInfoBits`].
struct RecordingWords {
    bits: SharedInfoBits,
    calls: Vec<&'static str>,
}

impl EventWords for RecordingWords {
    fn test_and_set_pending(&mut self, port: u32) -> bool {
        self.calls.push("set_pending");
        self.bits.test_and_set_pending(port)
    }
    fn clear_pending(&mut self, port: u32) {
        self.calls.push("clear_pending");
        self.bits.clear_pending(port)
    }
    fn is_pending(&self, port: u32) -> bool {
        self.bits.is_pending(port)
    }
    fn is_masked(&self, port: u32) -> bool {
        self.bits.is_masked(port)
    }
    fn test_and_clear_mask(&mut self, port: u32) -> bool {
        self.calls.push("clear_mask");
        self.bits.test_and_clear_mask(port)
    }
    fn test_and_set_selector(&mut self, vcpu: u32, word: u32) -> bool {
        self.calls.push("set_selector");
        self.bits.test_and_set_selector(vcpu, word)
    }
    fn test_and_set_upcall_pending(&mut self, vcpu: u32) -> bool {
        self.calls.push("set_upcall");
        self.bits.test_and_set_upcall_pending(vcpu)
    }
}

fn recording() -> RecordingWords {
    RecordingWords { bits: SharedInfoBits::new(), calls: Vec::new() }
}

#[test]
fn set_pending_raises_one_upcall_per_batch() {
    let mut words = recording();
    assert_eq!(two_level::set_pending(&mut words, 70, 1), Delivery::Upcall);
    assert_eq!(words.calls, ["set_pending", "set_selector", "set_upcall"]);
    assert!(words.bits.upcall_pending(1));
    assert_eq!(words.bits.pending_sel(1), 1 << 1);
    // Same port again: already pending, nothing else touched.
    words.calls.clear();
    assert_eq!(two_level::set_pending(&mut words, 70, 1), Delivery::AlreadyPending);
    assert_eq!(words.calls, ["set_pending"]);
    // Another port of the same word: selector already set.
    assert_eq!(two_level::set_pending(&mut words, 71, 1), Delivery::Pending);
    // A port of another word: selector bit new, but the upcall is still pending.
    assert_eq!(two_level::set_pending(&mut words, 5, 1), Delivery::Pending);
    assert_eq!(words.bits.pending_sel(1), 0b11);
    // The guest handles the upcall: clears the flag and takes the selector.
    assert_eq!(words.bits.take_selector(1), 0b11);
    assert!(!words.bits.upcall_pending(1));
    assert_eq!(two_level::set_pending(&mut words, 4095, 1), Delivery::Upcall);
    assert_eq!(words.bits.pending_sel(1), 1 << 63);
    assert!(Delivery::Upcall.raise_upcall() && Delivery::Upcall.newly_pending());
    assert!(!Delivery::Pending.raise_upcall() && Delivery::Pending.newly_pending());
    assert!(!Delivery::AlreadyPending.newly_pending() && !Delivery::InvalidPort.newly_pending());
}

#[test]
fn masked_port_becomes_pending_without_upcall_until_unmasked() {
    let mut words = recording();
    words.bits.set_masked(9, true);
    assert_eq!(two_level::set_pending(&mut words, 9, 0), Delivery::Pending);
    assert!(words.bits.is_pending(9));
    assert_eq!(words.bits.pending_sel(0), 0);
    assert!(!words.bits.upcall_pending(0));
    // Unmask through the hypercall: the pending event is delivered now.
    assert!(two_level::unmask(&mut words, 9, 0));
    assert!(!words.bits.is_masked(9));
    assert!(words.bits.upcall_pending(0) && words.bits.pending_sel(0) == 1);
    // Unmasking an unmasked port does nothing.
    words.calls.clear();
    assert!(!two_level::unmask(&mut words, 9, 0));
    assert_eq!(words.calls, ["clear_mask"]);
    // Unmasking a masked port that is not pending raises nothing.
    words.bits.set_masked(10, true);
    assert!(!two_level::unmask(&mut words, 10, 0));
    assert!(!words.bits.is_masked(10));
}

#[test]
fn unmask_delivers_to_the_notify_vcpu_given() {
    let mut words = recording();
    words.bits.set_masked(200, true);
    assert_eq!(two_level::set_pending(&mut words, 200, 2), Delivery::Pending);
    assert!(two_level::unmask(&mut words, 200, 3));
    assert!(words.bits.upcall_pending(3) && !words.bits.upcall_pending(2));
    assert_eq!(words.bits.pending_sel(3), 1 << 3);
}

#[test]
fn ports_outside_the_two_level_abi_are_ignored() {
    let mut words = recording();
    for port in [4096, 4097, u32::MAX] {
        assert_eq!(two_level::set_pending(&mut words, port, 0), Delivery::InvalidPort);
        assert!(!two_level::unmask(&mut words, port, 0));
        two_level::clear_pending(&mut words, port);
    }
    assert!(words.calls.is_empty());
    assert!(words.bits.as_bytes().iter().all(|&byte| byte == 0));
}

#[test]
fn vcpus_without_a_legacy_vcpu_info_get_no_upcall() {
    let mut bits = SharedInfoBits::new();
    assert_eq!(two_level::set_pending(&mut bits, 1, 32), Delivery::Pending);
    assert_eq!(two_level::set_pending(&mut bits, 2, u32::MAX), Delivery::Pending);
    assert!(bits.is_pending(1) && bits.is_pending(2));
    assert!(!bits.upcall_pending(32));
    assert_eq!(bits.pending_sel(u32::MAX), 0);
    assert_eq!(bits.take_selector(40), 0);
    assert!(bits.test_and_set_selector(0, 64), "a selector bit beyond the word");
}

#[test]
fn shared_info_bits_use_xens_layout() {
    let mut bits = SharedInfoBits::new();
    assert_eq!(two_level::set_pending(&mut bits, 65, 1), Delivery::Upcall);
    bits.set_masked(130, true);
    let page = bits.as_bytes();
    assert_eq!(page.len(), 4096);
    // evtchn_pending[1] bit 1 → byte 2048 + 8, bit 1.
    assert_eq!(page[2048 + 8], 0b10);
    // evtchn_mask[2] bit 2 → byte 2560 + 16, bit 2.
    assert_eq!(page[2560 + 16], 0b100);
    // vcpu_info[1]: upcall_pending at 64, pending_sel at 72 (bit 1).
    assert_eq!(page[64], 1);
    assert_eq!(page[72], 0b10);
    let copy = SharedInfoBits::from_bytes(page);
    assert!(copy.is_pending(65) && copy.is_masked(130) && copy.upcall_pending(1));
    let mut cleared = copy.clone();
    two_level::clear_pending(&mut cleared, 65);
    assert!(!cleared.is_pending(65));
    assert!(SharedInfoBits::from_bytes(&[0xff; 3]).as_bytes()[3..].iter().all(|&byte| byte == 0));
}

#[test]
fn end_to_end_frontend_and_backend() {
    let mut channels = three_domains();
    let mut guest = SharedInfoBits::new();
    // The guest masks everything at boot, then binds and unmasks its ports.
    for port in 0..EVTCHN_2L_NR_CHANNELS {
        guest.set_masked(port, true);
    }
    let timer = channels.bind_virq(1, VIRQ_TIMER, 1).unwrap();
    let (frontend, backend) = connect(&mut channels, 1);
    let notify = channels.raise_virq(1, 1, VIRQ_TIMER).unwrap();
    assert_eq!(two_level::set_pending(&mut guest, notify.port, notify.vcpu), Delivery::Pending);
    assert!(two_level::unmask(&mut guest, timer, channels.notify_vcpu(1, timer).unwrap()));
    assert!(guest.upcall_pending(1));
    guest.set_masked(frontend, false);
    let notify = channels.send(0, backend).unwrap().unwrap();
    assert_eq!(two_level::set_pending(&mut guest, notify.port, notify.vcpu), Delivery::Upcall);
    assert!(guest.upcall_pending(0));
    // Closing clears the stale pending bit.
    let clear = channels.close(1, frontend).unwrap();
    two_level::clear_pending(&mut guest, clear.port);
    assert!(!guest.is_pending(frontend));
}

// ---------------------------------------------------------------------------------
// random operation sequences (the fuzz body)

#[test]
fn fuzz_body_over_random_inputs() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2_000 {
        let length = (next() % 2048) as usize;
        let input: Vec<u8> = (0..length).map(|_| next() as u8).collect();
        fuzz_one(&input);
    }
    for length in 0..16 {
        fuzz_one(&vec![0xff; length]);
        fuzz_one(&vec![0; length]);
    }
}
