//! Random sequences of event-channel operations over three domains (alloc_unbound,
//! bind_interdomain/virq/ipi, close, send, status, bind_vcpu, raise_virq, reset,
//! add/remove_domain) with hostile ports, vCPUs and VIRQs, every resulting event
//! delivered through the 2-level functions into a shared_info image, and guest
//! mask/unmask/upcall handling interleaved. After every step the tables' invariants
//! hold (every interdomain port's peer points back, VIRQ slots and ports agree, no
//! port 0, nothing beyond the limits). The body is `event_channel::fuzz_one`, which a
//! host test also runs.
#![no_main]

use basalt_kernel::xen::event_channel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| event_channel::fuzz_one(data));
