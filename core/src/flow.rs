//! `PacketFlow`: one expected packet outcome, the row type shared by the unit tests (checked
//! against [`crate::explain`]) and the conformance suite (checked with real packets).

use crate::explain::{explain, Verdict};
use crate::plan::{Protocol, ProxyPlan};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};

/// What a flow expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Expect {
    /// DNAT to one of exactly these endpoints.
    Dnat(Vec<SocketAddr>),
    Reject,
    Drop,
    /// Not proxied.
    Accept,
}

/// One connection attempt and its expected outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PacketFlow {
    pub name: String,
    pub src: IpAddr,
    pub proto: Protocol,
    pub dst: IpAddr,
    pub dport: u16,
    pub expect: Expect,
    /// Whether the endpoint sees the node's address instead of `src` (only meaningful with
    /// `Expect::Dnat`; hairpin masquerade is not counted here).
    pub masq: bool,
}

impl PacketFlow {
    /// Checks the flow against the plan; `Err` says what `explain` answered instead.
    pub fn check(&self, plan: &ProxyPlan) -> Result<(), String> {
        let answer = explain(plan, self.src, self.dst, self.dport, self.proto);
        let (expect, masq) = match &answer.verdict {
            Verdict::Dnat {
                endpoints,
                masquerade,
                ..
            } => {
                let mut eps: Vec<SocketAddr> = endpoints
                    .iter()
                    .map(|e| SocketAddr::new(e.ip, e.port))
                    .collect();
                eps.sort();
                (Expect::Dnat(eps), *masquerade)
            }
            Verdict::Reject => (Expect::Reject, false),
            Verdict::Drop => (Expect::Drop, false),
            Verdict::Accept => (Expect::Accept, false),
        };
        let mut wanted = self.expect.clone();
        if let Expect::Dnat(eps) = &mut wanted {
            eps.sort();
        }
        if expect == wanted && masq == self.masq {
            Ok(())
        } else {
            Err(format!(
                "{}: expected {:?} masq={}, explain says {:?} masq={} ({})",
                self.name, wanted, self.masq, expect, masq, answer.reason
            ))
        }
    }
}
