//! The scenario row type: Kubernetes objects, then steps that change them and checks that send
//! real packets. Every check's expectation is also checked against `explain` on the same plan,
//! so the table cannot drift from the semantics in `core`.

use crate::family::Families;
use crate::topology::From;

/// One scenario of the table.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    /// What it proves, in one line.
    pub about: &'static str,
    /// Node settings beyond the defaults (`--cluster-cidr 10.244.0.0/16`, NodePorts on the
    /// node's primary address).
    pub node: NodeSettings,
    pub steps: Vec<Step>,
    /// A kernel feature the scenario needs; without it the cell is "n/a" with the reason.
    pub requires: Option<Requirement>,
}

/// Node-level flags for a scenario.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeSettings {
    pub masquerade_all: bool,
    /// `--nodeport-addresses` matching every local address, instead of the node's primary one.
    pub nodeports_on_all_addresses: bool,
    /// `--nodeport-addresses` CIDRs (comma-separated; translated per family like every
    /// address): NodePorts on the node's addresses inside them only.
    pub nodeport_addresses: Option<&'static str>,
    /// `--service-cluster-ip-range`: unowned addresses inside it are dropped.
    pub service_cidr: Option<&'static str>,
    /// How many planner warnings the manifests must produce: hostile objects (a collision is
    /// skipped with a warning); any other count fails the scenario (counted per family's plan).
    pub warnings: usize,
    /// The address-family columns the scenario runs in (default: all three, by translation;
    /// see [`crate::family`]).
    pub families: Families,
}

/// Kernel features some scenarios need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    Sctp,
    /// The backend filters in iptables' own `filter FORWARD` chain, where a host's policy of
    /// DROP (Docker sets it) applies: only `iptables-nft` and `iptables-legacy`. A drop in
    /// any netfilter base chain is final, so a backend in its own nftables table cannot accept
    /// what iptables' FORWARD policy drops (as with kube-proxy's nftables mode).
    IptablesForward,
}

/// One step.
#[derive(Debug, Clone)]
pub enum Step {
    /// Make the cluster state exactly these manifests (multi-document YAML) and sync: full the
    /// first time, incremental afterwards, as the agent does.
    Apply(String),
    /// Send probes and compare.
    Check(Vec<Check>),
    /// Run a command in the node's namespace (to plant foreign rules); it must succeed.
    NodeCommand(Vec<&'static str>),
    /// Run a command in the node's namespace; its output must contain each of `contains`.
    NodeOutput {
        command: Vec<&'static str>,
        contains: Vec<&'static str>,
    },
    /// `Dataplane::cleanup`, then the backend's own leftover check must find nothing of ours.
    CleanupAndVerify,
    /// Clean up with the current backend, then continue with a different one (mode switch).
    SwitchBackend,
    /// Sync the last plan again in full on the same backend (the periodic and after-error
    /// resync): what the kernel learned (affinity) must survive it.
    FullResync,
    /// A new backend instance, as after an agent restart, probes and syncs the last plan in
    /// full over the rules the old one left in place.
    Restart,
    /// Sets the node's iptables `filter FORWARD` policy to DROP, with the iptables variant the
    /// backend uses (scenarios with [`Requirement::IptablesForward`]).
    ForwardPolicyDrop,
}

/// One expectation: `count` connections from `from` to `to` (`ip:port/proto`).
#[derive(Debug, Clone)]
pub struct Check {
    pub from: From,
    pub to: &'static str,
    pub count: usize,
    pub expect: Expect,
    /// UDP only: every probe of this (source, destination) in the scenario goes out of one
    /// socket, bound once — a client that keeps its source port (a DNS resolver, a statsd
    /// sender), so each probe meets the conntrack entry the previous one left.
    pub pinned: bool,
}

/// What the connections must see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Every connection answered by one of these pods; `masq`: the pod saw the node's address
    /// instead of the source.
    Pods { pods: Vec<&'static str>, masq: bool },
    /// Like `Pods`, and every listed pod answered at least once, with a spread a chi-square test
    /// (p = 0.001) does not call uneven.
    Spread { pods: Vec<&'static str>, masq: bool },
    /// Like `Pods`, and every connection answered by the *same* pod.
    Sticky { pods: Vec<&'static str>, masq: bool },
    /// Refused at once (TCP RST / ICMP port unreachable), not a timeout.
    Reject,
    /// Silently dropped (timeout).
    Drop,
    /// Not a service address, but a pod's own: that pod answers, untranslated, seeing the
    /// real source (proves the rules leave non-service traffic alone).
    Direct(&'static str),
    /// Not a service address: no pod answers through the proxy (the node's own stack may refuse,
    /// or the packet is routed away and dies).
    NotProxied,
}

impl Check {
    pub fn new(from: From, to: &'static str, expect: Expect) -> Self {
        let count = match &expect {
            Expect::Spread { .. } => 300,
            Expect::Sticky { .. } => 20,
            Expect::Pods { pods, .. } if pods.len() > 1 => 20,
            Expect::Reject | Expect::Drop | Expect::NotProxied | Expect::Direct(_) => 1,
            Expect::Pods { .. } => 3,
        };
        Self {
            from,
            to,
            count,
            expect,
            pinned: false,
        }
    }

    /// A check whose probes keep their source port across the scenario (see `pinned`).
    pub fn pinned(from: From, to: &'static str, expect: Expect) -> Self {
        Self {
            pinned: true,
            ..Self::new(from, to, expect)
        }
    }
}
