//! The appliance command table: commands whose context is both the machine
//! ([`System`]) and its domains ([`DomainControl`]). Today that is `reboot`:
//! alone it restarts the machine, with a DOMAIN it is xl's `reboot DOMAIN`.
//!
//! Why a third table: one name cannot live in both [`crate::builtin`] (which
//! knows only [`System`]) and [`crate::domains`] (only [`DomainControl`]),
//! because a [`crate::Registry`] rejects duplicate names; so a command that
//! needs both lives here, generic over `C: System + DomainControl`. The
//! operator gets xl's names, and the other tables still stand alone on
//! contexts that implement only their own trait.
//!
//! The two meanings are told apart by the argument count alone: no argument
//! is the machine, exactly one is a domain, more is a usage error. No word
//! (not even `Domain-0`) means the machine, so a typo in a domain name can
//! only fail to resolve, never restart the host.
//!
//! Same generic-table trick as [`crate::builtin`]: image/ adds
//! `appliance_commands::<Appliance>()` to its `Registry::new(&[...])` beside
//! `builtin_commands::<Appliance>()` and `domain_commands::<Appliance>()`.

use core::marker::PhantomData;

use crate::builtin::power_action_failed;
use crate::command::{Command, CommandError, Invocation};
use crate::domains::{failed, unexpected, DomainControl};
use crate::system::System;

/// The appliance commands for context type `C`.
pub fn appliance_commands<C: System + DomainControl + 'static>() -> &'static [Command<C>] {
    ApplianceTable::<C>::COMMANDS
}

/// Carrier of the generic table (see [`crate::builtin`]).
struct ApplianceTable<C>(PhantomData<C>);

impl<C: System + DomainControl + 'static> ApplianceTable<C> {
    const COMMANDS: &'static [Command<C>] = &[Command {
        name: "reboot",
        usage: "reboot [DOMAIN]",
        summary: "restart the machine, or with DOMAIN ask that domain to reboot",
        run: run_reboot::<C>,
    }];
}

/// `reboot`: prints `Rebooting...`; if the system returns, `error: reboot
/// failed: <reason>`.
///
/// `reboot DOMAIN`: asks the domain to reboot ([`DomainControl::reboot`]);
/// silent once the guest has been asked, as xl is.
fn run_reboot<C: System + DomainControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    match *invocation.args {
        [] => {
            writeln!(invocation.out, "Rebooting...")?;
            power_action_failed("reboot", System::reboot(invocation.context))
        }
        [domain] => DomainControl::reboot(invocation.context, domain).map_err(failed),
        [_, extra, ..] => Err(unexpected(extra)),
    }
}
