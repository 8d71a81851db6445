//! Leaving IPVS mode for another mode without breaking IPVS mode's connections.
//!
//! A connection IPVS scheduled lives in IPVS's own connection table, not in a conntrack NAT
//! binding: its packets are translated by IPVS at `LOCAL_IN`, so they need the virtual
//! address to stay local (on `swyd-ipvs0`) and the destination to stay in its virtual
//! service. Deleting the service moves the destination out, and with `expire_nodest_conn=1`
//! the next packet expires the connection and its conntrack entry; the retransmission is then
//! a new flow that the new mode translates afresh, usually to another endpoint or another
//! masquerade port, and the endpoint answers with a reset (the restart-under-load test saw
//! held connections break this way at every ipvs → nftables switch).
//!
//! So a node that switched away retires IPVS mode in two steps (DESIGN-NOTES 266):
//! 1. at once, the helper table `switchyard-ipvs` goes: it only marks and filters new
//!    connections, and the new mode's nat chains translate those before routing, so they
//!    never reach IPVS (without a mark no firewall-mark service matches anyway);
//! 2. the virtual services, their destinations and the addresses stay while any destination
//!    has established connections, and go at the first step that finds none, or once
//!    `IpvsConfig::drain_bound` has passed since the retirement began — the bound a removed
//!    endpoint gets in IPVS mode itself.

use super::{io_step, IpvsDataplane};
use crate::link::Rtnl;
use crate::listing;
use crate::ops::Op;
use std::time::Instant;
use switchyard_core::{Dataplane as _, DataplaneError};

/// What retiring IPVS mode has left to do in one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retirement {
    /// Nothing of IPVS mode is left in this family.
    Done,
    /// Virtual services stay for their established connections.
    Draining { services: usize, established: u64 },
}

impl IpvsDataplane {
    /// One step of retiring IPVS mode in this family, `since` being when the retirement
    /// began (see the module comment).
    pub async fn retire(&mut self, since: Instant) -> Result<Retirement, DataplaneError> {
        let may_wait = since.elapsed() < self.config.drain_bound;
        self.remove(may_wait).await
    }

    /// Removes the helper table, then — unless `wait_for_established` and a destination has
    /// established connections — our virtual services and this family's addresses on
    /// `swyd-ipvs0` (the interface too once no other family's are left). A kernel without
    /// IPVS has only the interface and the helper table to remove.
    pub(super) async fn remove(
        &mut self,
        wait_for_established: bool,
    ) -> Result<Retirement, DataplaneError> {
        self.synced = false;
        self.helpers.cleanup().await?;
        let family = self.family;
        let listed = match self.socket() {
            Ok(socket) => {
                listing::ours(socket, family).map_err(io_step("listing IPVS services to remove"))?
            }
            Err(DataplaneError::Unsupported { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let established: u64 = listed
            .iter()
            .flat_map(|l| &l.dests)
            .map(|d| u64::from(d.active))
            .sum();
        if wait_for_established && established > 0 {
            return Ok(Retirement::Draining {
                services: listed.len(),
                established,
            });
        }
        let ops: Vec<_> = listed
            .iter()
            .map(|l| {
                let op = Op::DelService {
                    family,
                    fwmark: l.spec.fwmark,
                };
                (op, None)
            })
            .collect();
        self.perform(&ops).await?;
        if self.rtnl.is_none() {
            self.rtnl = Some(Rtnl::open()?);
        }
        if let Some(r) = &self.rtnl {
            r.release_dummy(self.family).await?;
        }
        self.dummy = None;
        self.kernel = Default::default();
        self.marks.reset();
        Ok(Retirement::Done)
    }
}
