//! A vbd's frontend directory in xenstore written by a hostile guest (any key, any
//! value, nodes removed, a detach at any time), with the back end's handshake stepped
//! and answered after every change: nothing panics and the backend's `state` node
//! always matches the handshake's phase. The body is
//! `backends::blkif::xenbus::fuzz_one`, which a host test also runs.
#![no_main]

use basalt_dom0::backends::blkif::xenbus;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| xenbus::fuzz_one(data));
