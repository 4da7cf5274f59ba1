//! Host tests of `credit`.

use super::*;

const MS: u64 = 1_000_000;

fn key(domain: u16, vcpu: u32) -> VcpuKey {
    VcpuKey { domain, vcpu }
}

fn params(weight: u16, cap: u32) -> DomainParams {
    DomainParams { weight, cap }
}

/// Adds a domain with `vcpus` online vCPUs of affinity `all`.
fn add(sched: &mut CreditScheduler, domain: u16, weight: u16, cap: u32, vcpus: u32) {
    sched.add_domain(domain, params(weight, cap)).unwrap();
    for vcpu in 0..vcpus {
        sched.add_vcpu(key(domain, vcpu), CpuSet::all()).unwrap();
        sched.set_online(key(domain, vcpu), true).unwrap();
    }
}

/// Drives every CPU with a simulated clock until `end_ns`: each CPU runs what it is
/// given for the whole slice (CPU-bound guests), idles 1 ms when given nothing.
/// `check` sees every pick (cpu, key) and may veto it. Checks the invariants after
/// each step.
struct Simulation {
    sched: CreditScheduler,
    cpu_time: Vec<u64>,
    running: Vec<Option<(VcpuKey, u64)>>,
}

impl Simulation {
    fn new(sched: CreditScheduler) -> Self {
        let cpus = sched.physical_cpus() as usize;
        Self { sched, cpu_time: vec![0; cpus], running: vec![None; cpus] }
    }

    fn run_until(&mut self, end_ns: u64, mut check: impl FnMut(u32, VcpuKey)) {
        loop {
            let (cpu, &now) = self.cpu_time.iter().enumerate().min_by_key(|(cpu, time)| (**time, *cpu)).unwrap();
            if now >= end_ns {
                break;
            }
            let cpu_number = cpu as u32;
            if let Some((key, ran)) = self.running[cpu].take() {
                assert!(self.sched.put_back(key, cpu_number, ran, now, AfterRun::Runnable));
            }
            match self.sched.pick_next(cpu_number, now) {
                Some((key, slice)) => {
                    check(cpu_number, key);
                    assert!(slice > 0 && slice <= TIMESLICE_NS);
                    let others = self.running.iter().flatten().filter(|(other, _)| *other == key).count();
                    assert_eq!(others, 0, "{key} handed to a second CPU");
                    assert_eq!(self.sched.vcpu_info(key).unwrap().state, VcpuState::Running { cpu: cpu_number });
                    self.running[cpu] = Some((key, slice));
                    self.cpu_time[cpu] = now + slice;
                }
                None => self.cpu_time[cpu] = now + MS,
            }
        }
    }

    fn run_ns(&self, key: VcpuKey) -> u64 {
        self.sched.vcpu_info(key).unwrap().run_ns
    }
}

fn within(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= expected * tolerance
}

#[test]
fn weights_512_to_256_share_one_cpu_two_to_one() {
    let mut sched = CreditScheduler::new(1);
    add(&mut sched, 1, 512, 0, 1);
    add(&mut sched, 2, 256, 0, 1);
    let mut sim = Simulation::new(sched);
    sim.run_until(3_000 * MS, |_, _| {});
    let heavy = sim.run_ns(key(1, 0)) as f64;
    let light = sim.run_ns(key(2, 0)) as f64;
    assert!(within(heavy / light, 2.0, 0.10), "ratio {}", heavy / light);
    assert!(heavy + light >= 2_950.0 * MS as f64, "work conserving");
}

#[test]
fn a_cap_of_25_percent_holds() {
    for with_competitor in [false, true] {
        let mut sched = CreditScheduler::new(1);
        add(&mut sched, 1, 256, 25, 1);
        if with_competitor {
            add(&mut sched, 2, 256, 0, 1);
        }
        let mut sim = Simulation::new(sched);
        sim.run_until(3_000 * MS, |_, _| {});
        let share = sim.run_ns(key(1, 0)) as f64 / (3_000 * MS) as f64;
        assert!((0.22..=0.27).contains(&share), "capped share {share}");
        if with_competitor {
            assert!(sim.run_ns(key(2, 0)) >= 2_100 * MS);
        }
    }
}

#[test]
fn a_cap_of_150_percent_on_four_cpus() {
    let mut sched = CreditScheduler::new(4);
    add(&mut sched, 1, 256, 150, 4);
    let mut sim = Simulation::new(sched);
    sim.run_until(3_000 * MS, |_, _| {});
    let total = sim.sched.domain_run_ns(1).unwrap() as f64 / (3_000 * MS) as f64;
    assert!((1.35..=1.55).contains(&total), "capped at {total} CPUs");
}

#[test]
fn four_vcpus_on_two_cpus_share_equally() {
    for domains in [1u16, 4] {
        let mut sched = CreditScheduler::new(2);
        let mut keys = Vec::new();
        if domains == 1 {
            add(&mut sched, 7, 256, 0, 4);
            keys.extend((0..4).map(|vcpu| key(7, vcpu)));
        } else {
            for domain in 1..=4 {
                add(&mut sched, domain, 256, 0, 1);
                keys.push(key(domain, 0));
            }
        }
        let mut sim = Simulation::new(sched);
        sim.run_until(3_000 * MS, |_, _| {});
        let expected = (2 * 3_000 * MS / 4) as f64;
        for key in keys {
            let ran = sim.run_ns(key) as f64;
            assert!(within(ran, expected, 0.10), "{key} ran {ran} of {expected}");
        }
    }
}

#[test]
fn a_vcpu_pinned_to_cpu_1_never_runs_on_cpu_0() {
    let mut sched = CreditScheduler::new(2);
    add(&mut sched, 1, 256, 0, 2);
    sched.add_domain(2, params(256, 0)).unwrap();
    sched.add_vcpu(key(2, 0), CpuSet::parse("1").unwrap()).unwrap();
    sched.set_online(key(2, 0), true).unwrap();
    let mut sim = Simulation::new(sched);
    let mut ran_on_1 = false;
    sim.run_until(1_000 * MS, |cpu, picked| {
        if picked == key(2, 0) {
            assert_eq!(cpu, 1, "pinned vCPU picked on CPU {cpu}");
            ran_on_1 = true;
        }
    });
    assert!(ran_on_1);
    assert_eq!(sim.sched.vcpu_info(key(2, 0)).unwrap().cpu, Some(1));
    // Affinity that names no present CPU is refused.
    assert_eq!(sim.sched.set_affinity(key(2, 0), CpuSet::single(5)), Err(SchedError::NoUsableCpu));
}

#[test]
fn a_running_vcpu_is_not_handed_to_a_second_cpu() {
    let mut sched = CreditScheduler::new(2);
    add(&mut sched, 1, 256, 0, 1);
    assert_eq!(sched.pick_next(0, 0), Some((key(1, 0), TIMESLICE_NS)));
    assert_eq!(sched.pick_next(1, 0), None);
    assert_eq!(sched.current(0), Some(key(1, 0)));
    // Put back on the wrong CPU: refused.
    assert!(!sched.put_back(key(1, 0), 1, 5 * MS, 5 * MS, AfterRun::Runnable));
    assert!(sched.put_back(key(1, 0), 0, 5 * MS, 5 * MS, AfterRun::Runnable));
    assert!(!sched.put_back(key(1, 0), 0, 5 * MS, 5 * MS, AfterRun::Runnable), "twice");
    assert_eq!(sched.pick_next(1, 5 * MS), Some((key(1, 0), TIMESLICE_NS)));
    // A CPU that asks again without putting back gets its vCPU put back first.
    assert_eq!(sched.pick_next(1, 6 * MS), Some((key(1, 0), TIMESLICE_NS)));
    assert_eq!(sched.pick_next(0, 6 * MS), None);
    assert_eq!(sched.pick_next(2, 6 * MS), None, "no such CPU");
}

#[test]
fn blocked_vcpus_are_not_picked_until_woken() {
    let mut sched = CreditScheduler::new(1);
    add(&mut sched, 1, 256, 0, 2);
    assert!(sched.block(key(1, 1)));
    let mut sim = Simulation::new(sched);
    sim.run_until(200 * MS, |_, picked| assert_ne!(picked, key(1, 1)));
    assert_eq!(sim.sched.vcpu_info(key(1, 1)).unwrap().state, VcpuState::Blocked);
    assert!(sim.sched.wake(key(1, 1)));
    assert!(!sim.sched.wake(key(1, 1)), "already runnable");
    let mut woken_ran = false;
    sim.run_until(300 * MS, |_, picked| woken_ran |= picked == key(1, 1));
    assert!(woken_ran);

    // A wake-up while running is not lost when the vCPU then blocks.
    let mut sched = CreditScheduler::new(1);
    add(&mut sched, 1, 256, 0, 1);
    let (running, _) = sched.pick_next(0, 0).unwrap();
    assert!(!sched.wake(running));
    assert!(sched.put_back(running, 0, MS, MS, AfterRun::Blocked));
    assert_eq!(sched.vcpu_info(running).unwrap().state, VcpuState::Runnable);
    let (running, _) = sched.pick_next(0, MS).unwrap();
    assert!(sched.put_back(running, 0, MS, 2 * MS, AfterRun::Blocked));
    assert_eq!(sched.vcpu_info(running).unwrap().state, VcpuState::Blocked);
    assert_eq!(sched.pick_next(0, 2 * MS), None);
}

#[test]
fn under_before_over_and_idle_domains_do_not_hoard() {
    let mut sched = CreditScheduler::new(1);
    add(&mut sched, 1, 256, 0, 1);
    add(&mut sched, 2, 256, 0, 1);
    // Domain 2 sleeps for a second while domain 1 runs alone.
    assert!(sched.block(key(2, 0)));
    let mut sim = Simulation::new(sched);
    sim.run_until(1_000 * MS, |_, _| {});
    let credit = sim.sched.vcpu_info(key(2, 0)).unwrap().credit_ns;
    assert!(credit <= CREDIT_LIMIT, "idle vCPU holds {credit}");
    // After waking it shares fairly instead of monopolising the CPU.
    let before = (sim.run_ns(key(1, 0)), sim.run_ns(key(2, 0)));
    sim.sched.wake(key(2, 0));
    sim.run_until(2_000 * MS, |_, _| {});
    let ran_1 = (sim.run_ns(key(1, 0)) - before.0) as f64;
    let ran_2 = (sim.run_ns(key(2, 0)) - before.1) as f64;
    assert!(within(ran_2, ran_1, 0.10), "{ran_1} vs {ran_2}");
}

#[test]
fn removing_a_domain_while_its_vcpu_runs() {
    let mut sched = CreditScheduler::new(2);
    add(&mut sched, 1, 256, 0, 1);
    add(&mut sched, 2, 256, 0, 1);
    let (first, _) = sched.pick_next(0, 0).unwrap();
    let cpus = sched.remove_domain(first.domain).unwrap();
    assert_eq!(cpus, CpuSet::single(0));
    assert!(!sched.put_back(first, 0, 10 * MS, 10 * MS, AfterRun::Runnable));
    assert_eq!(sched.vcpu_info(first), None);
    assert_eq!(sched.current(0), None);
    let (other, _) = sched.pick_next(0, 10 * MS).unwrap();
    assert_ne!(other.domain, first.domain);
    assert_eq!(sched.remove_domain(first.domain), Err(SchedError::UnknownDomain));
    assert_eq!(sched.domain_vcpus(first.domain).count(), 0);
}

#[test]
fn pause_offline_and_queries() {
    let mut sched = CreditScheduler::new(2);
    sched.add_domain(3, params(256, 0)).unwrap();
    assert_eq!(sched.add_domain(3, params(256, 0)), Err(SchedError::DomainExists));
    assert_eq!(sched.add_domain(4, params(0, 0)), Err(SchedError::ZeroWeight));
    assert_eq!(sched.add_vcpu(key(9, 0), CpuSet::all()), Err(SchedError::UnknownDomain));
    sched.add_vcpu(key(3, 0), CpuSet::all()).unwrap();
    sched.add_vcpu(key(3, 1), CpuSet::parse("0-1").unwrap()).unwrap();
    assert_eq!(sched.add_vcpu(key(3, 1), CpuSet::all()), Err(SchedError::VcpuExists));
    assert_eq!(sched.vcpu_info(key(3, 0)).unwrap().state, VcpuState::Offline);
    assert_eq!(sched.pick_next(0, 0), None, "offline vCPUs do not run");

    sched.set_online(key(3, 0), true).unwrap();
    sched.set_online(key(3, 1), true).unwrap();
    let (running, _) = sched.pick_next(0, 0).unwrap();
    assert_eq!(sched.set_domain_paused(3, true), Ok(CpuSet::single(0)));
    assert_eq!(sched.pick_next(1, 0), None, "paused domain");
    let other = key(3, 1 - running.vcpu);
    assert_eq!(sched.vcpu_info(other).unwrap().state, VcpuState::Paused);
    assert!(sched.put_back(running, 0, 4 * MS, 4 * MS, AfterRun::Runnable));
    assert_eq!(sched.vcpu_info(running).unwrap().state, VcpuState::Paused);
    assert_eq!(sched.set_domain_paused(3, false), Ok(CpuSet::empty()));
    assert_eq!(sched.vcpu_info(running).unwrap().state, VcpuState::Runnable);

    // Taking down a running vCPU takes effect when it is put back.
    let (running, _) = sched.pick_next(1, 4 * MS).unwrap();
    sched.set_online(running, false).unwrap();
    assert!(sched.put_back(running, 1, MS, 5 * MS, AfterRun::Runnable));
    assert_eq!(sched.vcpu_info(running).unwrap().state, VcpuState::Offline);
    assert!(!sched.wake(running));

    sched.set_weight(3, 1024).unwrap();
    sched.set_cap(3, 50).unwrap();
    assert_eq!(sched.domain_params(3), Some(params(1024, 50)));
    assert_eq!(sched.set_weight(3, 0), Err(SchedError::ZeroWeight));
    assert_eq!(sched.set_cap(8, 1), Err(SchedError::UnknownDomain));
    let listed: Vec<_> = sched.domain_vcpus(3).map(|(key, status)| (key.vcpu, status.affinity.to_string())).collect();
    assert_eq!(listed, [(0, "all".into()), (1, "0-1".into())]);
    assert_eq!(sched.domain_run_ns(3), Some(5 * MS));
    assert_eq!(sched.domain_run_ns(8), None);
    assert_eq!(key(3, 1).to_string(), "d3v1");
    assert!(sched.next_accounting_ns().is_some());
}

/// Random operations (a fixed-seed generator) never panic and keep the
/// one-vCPU-per-CPU invariant.
#[test]
fn random_operations_keep_the_invariants() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |limit: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % limit
    };
    let mut sched = CreditScheduler::new(3);
    let mut now = 0u64;
    for _ in 0..20_000 {
        let domain = next(4) as u16;
        let vcpu = next(3) as u32;
        let target = key(domain, vcpu);
        let cpu = next(4) as u32;
        now += next(3 * MS);
        match next(12) {
            0 => drop(sched.add_domain(domain, params(next(3) as u16 * 300, next(3) as u32 * 60))),
            1 => drop(sched.add_vcpu(target, CpuSet::first(next(4) as u32))),
            2 => drop(sched.set_online(target, next(2) == 0)),
            3 => drop(sched.wake(target)),
            4 => drop(sched.block(target)),
            5 => drop(sched.set_domain_paused(domain, next(2) == 0)),
            6 if next(10) == 0 => drop(sched.remove_domain(domain)),
            7 => drop(sched.set_affinity(target, CpuSet::single(next(4) as u32))),
            8 => drop(sched.put_back(target, cpu, next(20 * MS), now, AfterRun::Blocked)),
            9 => {
                if let Some(running) = sched.current(cpu) {
                    let after = [AfterRun::Runnable, AfterRun::Blocked, AfterRun::Offline][next(3) as usize];
                    assert!(sched.put_back(running, cpu, next(u64::MAX), now, after));
                }
            }
            _ => {
                if let Some((picked, slice)) = sched.pick_next(cpu, now) {
                    assert!((MIN_TIMESLICE_NS..=TIMESLICE_NS).contains(&slice));
                    assert!(sched.vcpu_info(picked).unwrap().affinity.contains(cpu));
                }
            }
        }
        for cpu in 0..sched.physical_cpus() {
            if let Some(running) = sched.current(cpu) {
                assert_eq!(sched.vcpu_info(running).unwrap().state, VcpuState::Running { cpu });
            }
        }
        let running = sched.vcpus.values().filter(|vcpu| vcpu.running_on.is_some()).count();
        let occupied = sched.current.iter().flatten().count();
        assert_eq!(running, occupied);
    }
}

#[test]
fn wake_ups_name_the_cpus_to_kick() {
    let mut sched = CreditScheduler::new(3);
    add(&mut sched, 1, 256, 0, 2);
    sched.set_affinity(key(1, 1), CpuSet::first(2)).unwrap();
    let cpus = |set: CpuSet| set.iter().collect::<Vec<u32>>();
    // vCPU 0 runs on CPU 0: waking it kicks CPU 0 (to exit and inject).
    assert_eq!(sched.pick_next(0, 0), Some((key(1, 0), TIMESLICE_NS)));
    assert_eq!(cpus(sched.wake_with_kicks(key(1, 0))), [0]);
    // vCPU 1 is blocked; CPU 0 is busy, so of its affinity {0, 1} only idle CPU 1.
    assert!(sched.block(key(1, 1)));
    assert_eq!(cpus(sched.wake_with_kicks(key(1, 1))), [1]);
    // Already runnable: nobody to kick.
    assert!(cpus(sched.wake_with_kicks(key(1, 1))).is_empty());
    assert!(cpus(sched.wake_with_kicks(key(9, 0))).is_empty(), "unknown vCPU");
}
