//! The Linux kernel log (`::msgbuf`): placeholder until the ring reader lands.
