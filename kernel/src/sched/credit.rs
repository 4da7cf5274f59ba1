//! The credit scheduler: which vCPU a physical CPU runs next, in the manner of Xen's
//! credit1 (xen/common/sched/credit.c).
//!
//! The algorithm:
//! - Credit is CPU time in nanoseconds. Every [`ACCOUNTING_PERIOD_NS`] the period's CPU
//!   time (physical CPUs × period) is shared among *active* domains in proportion to
//!   their weights, and each domain's share is split equally among its active vCPUs. A
//!   vCPU is active when it is runnable (domain not paused), running, or ran during the
//!   period — a domain whose vCPUs all sleep gets nothing, so idle domains do not hoard.
//!   A domain never receives more than it can use (one CPU per active vCPU, and its cap);
//!   the rest goes to the others (water-filling).
//! - Running burns credit (at [`CreditScheduler::put_back`]). A vCPU's credit stays
//!   within ±one period.
//! - [`CreditScheduler::pick_next`] takes, among the runnable vCPUs whose affinity
//!   includes the CPU and that are not running elsewhere, an UNDER one (credit > 0)
//!   before an OVER one, and within a priority the one that has waited longest (each
//!   vCPU joins the back of the queue when it is put back or woken: round robin). It is
//!   work-conserving: OVER vCPUs run when no UNDER one can.
//! - A cap is a percentage of one physical CPU per period (150 = one and a half CPUs).
//!   A capped domain that used its budget in the current period is not picked until the
//!   next one; its time slices are cut to what is left of the budget, and overruns (its
//!   vCPUs running concurrently) are carried into the next period as debt.
//!
//! Invariants: a vCPU is Running on at most one CPU and a CPU runs at most one vCPU
//! (`current[cpu] == Some(key)` ⇔ that vCPU's `running_on == Some(cpu)`); no operation
//! panics on any input — unknown keys and CPUs are refused with an error or `false`.
//! Cost: `pick_next` scans the vCPUs (O(n)), refills are O(n + domains²); with the
//! tens of vCPUs an appliance runs this is far below one time slice.

use super::{CpuSet, MAX_CPUS};
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Length of a time slice (TCG VM exits are slow, so coarser than Xen's 30 ms default
/// would make no sense and finer costs too much).
pub const TIMESLICE_NS: u64 = 10_000_000;
/// The accounting period: credits are refilled this often.
pub const ACCOUNTING_PERIOD_NS: u64 = 30_000_000;
/// Shortest slice given to a capped domain near the end of its budget.
pub const MIN_TIMESLICE_NS: u64 = 1_000_000;
/// A domain's weight unless told otherwise (xl's default).
pub const DEFAULT_WEIGHT: u16 = 256;

/// The most credit a vCPU holds, and the most it owes.
const CREDIT_LIMIT: i64 = ACCOUNTING_PERIOD_NS as i64;

/// One vCPU of one domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuKey {
    pub domain: u16,
    pub vcpu: u32,
}

/// Xen's spelling: `d1v0`.
impl fmt::Display for VcpuKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "d{}v{}", self.domain, self.vcpu)
    }
}

/// What a vCPU is doing, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuState {
    /// Waiting for a CPU.
    Runnable,
    /// On physical CPU `cpu` now.
    Running { cpu: u32 },
    /// Waiting for an event (HLT, SCHEDOP_block).
    Blocked,
    /// Its domain is paused (it keeps its runnable/blocked state underneath).
    Paused,
    /// Not brought up (or taken down).
    Offline,
}

/// How a vCPU left its CPU, given to [`CreditScheduler::put_back`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRun {
    /// Preempted or yielded: it wants to run again.
    Runnable,
    /// It waits for an event. If [`CreditScheduler::wake`] was called while it was
    /// running, it is runnable instead (no lost wake-up).
    Blocked,
    /// It went down (VCPUOP_down).
    Offline,
}

/// One vCPU as `vcpu-list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuStatus {
    pub state: VcpuState,
    /// The physical CPU it runs or last ran on; None if it never ran.
    pub cpu: Option<u32>,
    /// Total time run, nanoseconds.
    pub run_ns: u64,
    /// Hard affinity.
    pub affinity: CpuSet,
    /// Current credit, nanoseconds (negative = OVER).
    pub credit_ns: i64,
}

/// A domain's scheduling parameters (`sched-credit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainParams {
    /// Relative share, 1..=65535.
    pub weight: u16,
    /// Percent of one physical CPU per period; 0 = uncapped.
    pub cap: u32,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedError {
    UnknownDomain,
    DomainExists,
    UnknownVcpu,
    VcpuExists,
    /// Weights are 1..=65535.
    ZeroWeight,
    /// The affinity names no CPU this machine has.
    NoUsableCpu,
}

impl fmt::Display for SchedError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            SchedError::UnknownDomain => "no such domain",
            SchedError::DomainExists => "domain already known to the scheduler",
            SchedError::UnknownVcpu => "no such vcpu",
            SchedError::VcpuExists => "vcpu already exists",
            SchedError::ZeroWeight => "weight must be 1..65535",
            SchedError::NoUsableCpu => "affinity contains no present cpu",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activity {
    Runnable,
    Blocked,
    Offline,
}

#[derive(Debug)]
struct Domain {
    params: DomainParams,
    paused: bool,
    /// Run time charged against the cap in this period (may start with carried debt).
    cap_used_ns: u64,
}

impl Domain {
    /// The cap as nanoseconds per period, None when uncapped.
    fn cap_budget_ns(&self) -> Option<u64> {
        (self.params.cap != 0).then(|| u64::from(self.params.cap) * ACCOUNTING_PERIOD_NS / 100)
    }

    fn capped_out(&self) -> bool {
        self.cap_budget_ns().is_some_and(|budget| self.cap_used_ns >= budget)
    }
}

#[derive(Debug)]
struct Vcpu {
    /// What it does when not running; while running, Runnable unless taken down.
    activity: Activity,
    running_on: Option<u32>,
    last_cpu: Option<u32>,
    /// A wake-up arrived while it was running.
    wake_pending: bool,
    affinity: CpuSet,
    credit: i64,
    run_ns: u64,
    ran_in_period_ns: u64,
    /// Position in the round-robin order: smaller has waited longer.
    queue_order: u64,
}

impl Vcpu {
    fn state(&self, domain_paused: bool) -> VcpuState {
        match (self.running_on, self.activity) {
            (Some(cpu), _) => VcpuState::Running { cpu },
            (None, Activity::Offline) => VcpuState::Offline,
            (None, _) if domain_paused => VcpuState::Paused,
            (None, Activity::Runnable) => VcpuState::Runnable,
            (None, Activity::Blocked) => VcpuState::Blocked,
        }
    }

    fn active(&self, domain_paused: bool) -> bool {
        self.running_on.is_some()
            || self.ran_in_period_ns > 0
            || (self.activity == Activity::Runnable && !domain_paused)
    }
}

/// The scheduler state for the whole machine. Plain data: the caller serialises access.
#[derive(Debug)]
pub struct CreditScheduler {
    physical_cpus: u32,
    domains: BTreeMap<u16, Domain>,
    vcpus: BTreeMap<VcpuKey, Vcpu>,
    /// What each physical CPU runs.
    current: Vec<Option<VcpuKey>>,
    next_queue_order: u64,
    /// When the next refill is due; None before the first pick or put-back.
    next_accounting_ns: Option<u64>,
}

fn domain_vcpu_range(domain: u16) -> core::ops::RangeInclusive<VcpuKey> {
    VcpuKey { domain, vcpu: 0 }..=VcpuKey { domain, vcpu: u32::MAX }
}

impl CreditScheduler {
    /// A scheduler for CPUs `0..physical_cpus` (clamped to 1..=[`MAX_CPUS`]).
    pub fn new(physical_cpus: u32) -> Self {
        let physical_cpus = physical_cpus.clamp(1, MAX_CPUS);
        Self {
            physical_cpus,
            domains: BTreeMap::new(),
            vcpus: BTreeMap::new(),
            current: vec![None; physical_cpus as usize],
            next_queue_order: 0,
            next_accounting_ns: None,
        }
    }

    pub fn physical_cpus(&self) -> u32 {
        self.physical_cpus
    }

    /// Registers a domain (not paused, no vCPUs).
    pub fn add_domain(&mut self, domain: u16, params: DomainParams) -> Result<(), SchedError> {
        if params.weight == 0 {
            return Err(SchedError::ZeroWeight);
        }
        if self.domains.contains_key(&domain) {
            return Err(SchedError::DomainExists);
        }
        self.domains.insert(domain, Domain { params, paused: false, cap_used_ns: 0 });
        Ok(())
    }

    /// Forgets a domain and its vCPUs. Returns the CPUs that were running them: the
    /// caller must stop those (a later `put_back` for them returns false).
    pub fn remove_domain(&mut self, domain: u16) -> Result<CpuSet, SchedError> {
        self.domains.remove(&domain).ok_or(SchedError::UnknownDomain)?;
        let cpus = self.cpus_running(domain);
        for cpu in cpus.iter() {
            if let Some(slot) = self.current.get_mut(cpu as usize) {
                *slot = None;
            }
        }
        self.vcpus.retain(|key, _| key.domain != domain);
        // An emptied map keeps its root node; a fresh one holds no heap, so `mem` reads
        // the same after the last domain is gone as before the first was made.
        if self.domains.is_empty() {
            self.domains = BTreeMap::new();
            self.vcpus = BTreeMap::new();
        }
        Ok(cpus)
    }

    /// Adds a vCPU to a known domain, Offline, with hard affinity `affinity`.
    pub fn add_vcpu(&mut self, key: VcpuKey, affinity: CpuSet) -> Result<(), SchedError> {
        if !self.domains.contains_key(&key.domain) {
            return Err(SchedError::UnknownDomain);
        }
        if self.vcpus.contains_key(&key) {
            return Err(SchedError::VcpuExists);
        }
        self.check_affinity(&affinity)?;
        let queue_order = self.take_queue_order();
        self.vcpus.insert(
            key,
            Vcpu {
                activity: Activity::Offline,
                running_on: None,
                last_cpu: None,
                wake_pending: false,
                affinity,
                credit: 0,
                run_ns: 0,
                ran_in_period_ns: 0,
                queue_order,
            },
        );
        Ok(())
    }

    /// Brings a vCPU up (Offline → Runnable) or takes it down. Taking down a Running
    /// vCPU takes effect when it is put back.
    pub fn set_online(&mut self, key: VcpuKey, online: bool) -> Result<(), SchedError> {
        let queue_order = self.take_queue_order();
        let vcpu = self.vcpus.get_mut(&key).ok_or(SchedError::UnknownVcpu)?;
        if !online {
            vcpu.activity = Activity::Offline;
        } else if vcpu.activity == Activity::Offline {
            vcpu.activity = Activity::Runnable;
            vcpu.queue_order = queue_order;
        }
        Ok(())
    }

    /// An event for the vCPU: Blocked → Runnable. True if it became runnable (the
    /// caller may kick an idle CPU of its affinity). For a Running vCPU the wake-up is
    /// remembered, so a following `put_back(.., AfterRun::Blocked)` leaves it runnable.
    pub fn wake(&mut self, key: VcpuKey) -> bool {
        let queue_order = self.take_queue_order();
        let Some(vcpu) = self.vcpus.get_mut(&key) else {
            return false;
        };
        if vcpu.running_on.is_some() {
            vcpu.wake_pending = vcpu.activity != Activity::Offline;
            return false;
        }
        if vcpu.activity != Activity::Blocked {
            return false;
        }
        vcpu.activity = Activity::Runnable;
        vcpu.queue_order = queue_order;
        true
    }

    /// [`Self::wake`], and the CPUs that must notice it: the CPU running the vCPU (it
    /// has to leave the guest for an interrupt to be injected), or, when the vCPU just
    /// became runnable, the idle CPUs of its affinity (one of them will pick it).
    pub fn wake_with_kicks(&mut self, key: VcpuKey) -> CpuSet {
        let became_runnable = self.wake(key);
        let mut kicks = CpuSet::empty();
        let Some(vcpu) = self.vcpus.get(&key) else { return kicks };
        if let Some(cpu) = vcpu.running_on {
            kicks.insert(cpu);
        } else if became_runnable {
            for cpu in vcpu.affinity.iter() {
                if self.current.get(cpu as usize).is_some_and(Option::is_none) {
                    kicks.insert(cpu);
                }
            }
        }
        kicks
    }

    /// Runnable → Blocked for a vCPU that is not running (a running one blocks through
    /// `put_back`). True if it changed.
    pub fn block(&mut self, key: VcpuKey) -> bool {
        match self.vcpus.get_mut(&key) {
            Some(vcpu) if vcpu.running_on.is_none() && vcpu.activity == Activity::Runnable => {
                vcpu.activity = Activity::Blocked;
                true
            }
            _ => false,
        }
    }

    /// Pauses or unpauses a domain. Returns the CPUs running its vCPUs now: when
    /// pausing, the caller stops those for the pause to take effect.
    pub fn set_domain_paused(&mut self, domain: u16, paused: bool) -> Result<CpuSet, SchedError> {
        self.domains.get_mut(&domain).ok_or(SchedError::UnknownDomain)?.paused = paused;
        Ok(self.cpus_running(domain))
    }

    /// Replaces a vCPU's hard affinity. A running vCPU moves at its next `put_back`.
    pub fn set_affinity(&mut self, key: VcpuKey, affinity: CpuSet) -> Result<(), SchedError> {
        self.check_affinity(&affinity)?;
        self.vcpus.get_mut(&key).ok_or(SchedError::UnknownVcpu)?.affinity = affinity;
        Ok(())
    }

    /// Changes a domain's weight; it counts from the next accounting period.
    pub fn set_weight(&mut self, domain: u16, weight: u16) -> Result<(), SchedError> {
        if weight == 0 {
            return Err(SchedError::ZeroWeight);
        }
        self.domains.get_mut(&domain).ok_or(SchedError::UnknownDomain)?.params.weight = weight;
        Ok(())
    }

    /// Changes a domain's cap (percent of one CPU, 0 = none); it counts at once for
    /// eligibility and from the next period for credit.
    pub fn set_cap(&mut self, domain: u16, cap: u32) -> Result<(), SchedError> {
        self.domains.get_mut(&domain).ok_or(SchedError::UnknownDomain)?.params.cap = cap;
        Ok(())
    }

    /// The vCPU physical CPU `cpu` should run next and its time slice in nanoseconds,
    /// or None (idle). The vCPU is marked Running on `cpu`. If the caller did not put
    /// back the vCPU `cpu` was running, it is put back first with no time charged.
    pub fn pick_next(&mut self, cpu: u32, now_ns: u64) -> Option<(VcpuKey, u64)> {
        if cpu >= self.physical_cpus {
            return None;
        }
        if let Some(previous) = self.current[cpu as usize] {
            self.put_back(previous, cpu, 0, now_ns, AfterRun::Runnable);
        }
        self.account(now_ns);

        // (OVER?, queue order) — smallest wins: UNDER first, then longest waiting.
        let mut best: Option<((bool, u64), VcpuKey, u64)> = None;
        for (&domain_id, domain) in &self.domains {
            if domain.paused || domain.capped_out() {
                continue;
            }
            let slice = match domain.cap_budget_ns() {
                Some(budget) => (budget - domain.cap_used_ns).clamp(MIN_TIMESLICE_NS, TIMESLICE_NS),
                None => TIMESLICE_NS,
            };
            for (key, vcpu) in self.vcpus.range(domain_vcpu_range(domain_id)) {
                if vcpu.activity != Activity::Runnable || vcpu.running_on.is_some() || !vcpu.affinity.contains(cpu) {
                    continue;
                }
                let rank = (vcpu.credit <= 0, vcpu.queue_order);
                if best.is_none_or(|(best_rank, _, _)| rank < best_rank) {
                    best = Some((rank, *key, slice));
                }
            }
        }

        let (_, key, slice) = best?;
        let vcpu = self.vcpus.get_mut(&key)?;
        vcpu.running_on = Some(cpu);
        vcpu.last_cpu = Some(cpu);
        vcpu.wake_pending = false;
        self.current[cpu as usize] = Some(key);
        Some((key, slice))
    }

    /// The vCPU `key` stopped running on `cpu` after `ran_ns` nanoseconds: charge the
    /// time (credit, run time, cap) and give it state `after`. Returns false and does
    /// nothing if `key` is not Running on `cpu` (unknown, removed, or put back twice).
    pub fn put_back(&mut self, key: VcpuKey, cpu: u32, ran_ns: u64, now_ns: u64, after: AfterRun) -> bool {
        let queue_order = self.take_queue_order();
        let Some(vcpu) = self.vcpus.get_mut(&key) else {
            return false;
        };
        if vcpu.running_on != Some(cpu) {
            return false;
        }
        vcpu.running_on = None;
        if let Some(slot) = self.current.get_mut(cpu as usize) {
            *slot = None;
        }
        let charge = i64::try_from(ran_ns).unwrap_or(i64::MAX).min(2 * CREDIT_LIMIT);
        vcpu.credit = (vcpu.credit - charge).max(-CREDIT_LIMIT);
        vcpu.run_ns = vcpu.run_ns.saturating_add(ran_ns);
        vcpu.ran_in_period_ns = vcpu.ran_in_period_ns.saturating_add(ran_ns);
        vcpu.activity = match (vcpu.activity, after) {
            (Activity::Offline, _) | (_, AfterRun::Offline) => Activity::Offline,
            (_, AfterRun::Blocked) if !vcpu.wake_pending => Activity::Blocked,
            _ => Activity::Runnable,
        };
        vcpu.wake_pending = false;
        vcpu.queue_order = queue_order;
        if let Some(domain) = self.domains.get_mut(&key.domain) {
            domain.cap_used_ns = domain.cap_used_ns.saturating_add(ran_ns);
        }
        self.account(now_ns);
        true
    }

    /// When the next credit refill is due (an idle CPU with a capped-out domain waiting
    /// may sleep until then). None before the scheduler first ran.
    pub fn next_accounting_ns(&self) -> Option<u64> {
        self.next_accounting_ns
    }

    /// The vCPU `cpu` runs, if any.
    pub fn current(&self, cpu: u32) -> Option<VcpuKey> {
        self.current.get(cpu as usize).copied().flatten()
    }

    pub fn vcpu_info(&self, key: VcpuKey) -> Option<VcpuStatus> {
        let vcpu = self.vcpus.get(&key)?;
        let paused = self.domains.get(&key.domain).is_some_and(|domain| domain.paused);
        Some(VcpuStatus {
            state: vcpu.state(paused),
            cpu: vcpu.last_cpu,
            run_ns: vcpu.run_ns,
            affinity: vcpu.affinity,
            credit_ns: vcpu.credit,
        })
    }

    pub fn domain_params(&self, domain: u16) -> Option<DomainParams> {
        self.domains.get(&domain).map(|domain| domain.params)
    }

    /// A domain's vCPUs in vCPU order (empty for an unknown domain).
    pub fn domain_vcpus(&self, domain: u16) -> impl Iterator<Item = (VcpuKey, VcpuStatus)> + '_ {
        self.vcpus.range(domain_vcpu_range(domain)).filter_map(|(key, _)| Some((*key, self.vcpu_info(*key)?)))
    }

    /// Total run time of a domain's vCPUs, nanoseconds (`list`'s Time column).
    pub fn domain_run_ns(&self, domain: u16) -> Option<u64> {
        self.domains.get(&domain)?;
        Some(self.vcpus.range(domain_vcpu_range(domain)).fold(0u64, |sum, (_, vcpu)| sum.saturating_add(vcpu.run_ns)))
    }

    fn take_queue_order(&mut self) -> u64 {
        self.next_queue_order += 1;
        self.next_queue_order
    }

    fn check_affinity(&self, affinity: &CpuSet) -> Result<(), SchedError> {
        if affinity.intersection(&CpuSet::first(self.physical_cpus)).is_empty() {
            return Err(SchedError::NoUsableCpu);
        }
        Ok(())
    }

    fn cpus_running(&self, domain: u16) -> CpuSet {
        let mut cpus = CpuSet::empty();
        for (_, vcpu) in self.vcpus.range(domain_vcpu_range(domain)) {
            if let Some(cpu) = vcpu.running_on {
                cpus.insert(cpu);
            }
        }
        cpus
    }

    /// Refills credits when a period has ended (once per call: after a long idle
    /// stretch one refill is all the clamped credits can hold anyway).
    fn account(&mut self, now_ns: u64) {
        let due = match self.next_accounting_ns {
            None => true,
            Some(next) => now_ns >= next,
        };
        if !due {
            return;
        }
        self.refill();
        self.next_accounting_ns = Some(match self.next_accounting_ns {
            Some(next) if now_ns - next < ACCOUNTING_PERIOD_NS => next + ACCOUNTING_PERIOD_NS,
            _ => now_ns.saturating_add(ACCOUNTING_PERIOD_NS),
        });
    }

    fn refill(&mut self) {
        struct Share {
            domain: u16,
            weight: u64,
            active_vcpus: u64,
            limit: u64,
            share: Option<u64>,
        }
        let mut shares: Vec<Share> = Vec::new();
        for (&domain_id, domain) in &self.domains {
            let active_vcpus =
                self.vcpus.range(domain_vcpu_range(domain_id)).filter(|(_, vcpu)| vcpu.active(domain.paused)).count()
                    as u64;
            if active_vcpus == 0 {
                continue;
            }
            let usable = active_vcpus.min(u64::from(self.physical_cpus)) * ACCOUNTING_PERIOD_NS;
            let limit = domain.cap_budget_ns().map_or(usable, |budget| budget.min(usable));
            shares.push(Share {
                domain: domain_id,
                weight: u64::from(domain.params.weight),
                active_vcpus,
                limit,
                share: None,
            });
        }

        // Water-filling: a domain whose proportional share exceeds what it can use gets
        // its limit, and the remainder is shared among the others. A domain saturated
        // in one pass stays saturated (the others' shares only grow), so at most one
        // pass per domain.
        let mut remaining = u64::from(self.physical_cpus) * ACCOUNTING_PERIOD_NS;
        loop {
            let weight_sum: u64 = shares.iter().filter(|share| share.share.is_none()).map(|share| share.weight).sum();
            if weight_sum == 0 {
                break;
            }
            let fair = |weight: u64| (u128::from(remaining) * u128::from(weight) / u128::from(weight_sum)) as u64;
            let mut saturated = 0;
            for share in shares.iter_mut().filter(|share| share.share.is_none()) {
                if fair(share.weight) >= share.limit {
                    share.share = Some(share.limit);
                    saturated += share.limit;
                }
            }
            if saturated == 0 {
                for share in shares.iter_mut().filter(|share| share.share.is_none()) {
                    share.share = Some(fair(share.weight));
                }
                break;
            }
            remaining = remaining.saturating_sub(saturated);
        }

        for share in &shares {
            let paused = self.domains.get(&share.domain).is_some_and(|domain| domain.paused);
            let per_vcpu = (share.share.unwrap_or(0) / share.active_vcpus) as i64;
            for (_, vcpu) in self.vcpus.range_mut(domain_vcpu_range(share.domain)) {
                if vcpu.active(paused) {
                    vcpu.credit = (vcpu.credit + per_vcpu).min(CREDIT_LIMIT);
                }
            }
        }
        for vcpu in self.vcpus.values_mut() {
            vcpu.ran_in_period_ns = 0;
        }
        for domain in self.domains.values_mut() {
            domain.cap_used_ns = match domain.cap_budget_ns() {
                Some(budget) => domain.cap_used_ns.saturating_sub(budget),
                None => 0,
            };
        }
    }
}

#[cfg(test)]
mod tests;
