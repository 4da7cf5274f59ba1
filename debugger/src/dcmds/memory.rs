//! dcmds and walkers of this area (placeholder until filled in).

use crate::dcmd::{Dcmd, Walker};

pub const DCMDS: &[Dcmd] = &[];
pub const WALKERS: &[Walker] = &[];
