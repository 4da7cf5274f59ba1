//! The appliance command table: commands whose context is both the machine
//! ([`System`]) and its domains ([`DomainControl`]). Today that is `reboot`:
//! alone it restarts the machine, with a DOMAIN it is xl's `reboot DOMAIN`
//! (plus `-t SECONDS`, as `shutdown` takes it).
//!
//! Why a third table: one name cannot live in both [`crate::builtin`] (which
//! knows only [`System`]) and [`crate::domains`] (only [`DomainControl`]),
//! because a [`crate::Registry`] rejects duplicate names; so a command that
//! needs both lives here, generic over `C: System + DomainControl`. The
//! operator gets xl's names, and the other tables still stand alone on
//! contexts that implement only their own trait.
//!
//! The two meanings are told apart by the argument count alone: no argument
//! is the machine; with any argument it means a domain, and the words must
//! be `[-t SECONDS] DOMAIN` or it is a usage error (`reboot -t 5` lacks its
//! DOMAIN). No word (not even `Domain-0`) means the machine, so a typo in a
//! domain name or an option can only fail, never restart the host.
//!
//! Same generic-table trick as [`crate::builtin`]: image/ adds
//! `appliance_commands::<Appliance>()` to its `Registry::new(&[...])` beside
//! `builtin_commands::<Appliance>()` and `domain_commands::<Appliance>()`.

use core::marker::PhantomData;

use crate::builtin::power_action_failed;
use crate::command::{Command, CommandError, Invocation};
use crate::domains::{failed, stop_timeout_and_domain, DomainControl};
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
        usage: "reboot [[-t SECONDS] DOMAIN]",
        summary: "restart the machine, or ask DOMAIN to reboot; stopped if still up after SECONDS (0-3600, default 60)",
        run: run_reboot::<C>,
    }];
}

/// `reboot`: prints `Rebooting...`; if the system returns, `error: reboot
/// failed: <reason>`.
///
/// `reboot [-t SECONDS] DOMAIN`: asks the domain to reboot
/// ([`DomainControl::reboot`], `None` without `-t`); silent once the guest
/// has been asked, as xl is.
fn run_reboot<C: System + DomainControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    if invocation.args.is_empty() {
        writeln!(invocation.out, "Rebooting...")?;
        return power_action_failed("reboot", System::reboot(invocation.context));
    }
    let (timeout_seconds, domain) = stop_timeout_and_domain(invocation.args)?;
    DomainControl::reboot(invocation.context, domain, timeout_seconds).map_err(failed)
}
