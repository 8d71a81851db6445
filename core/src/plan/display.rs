//! Human-readable text of a plan: what `--dry-run` prints when asked for the plan itself, and
//! what logs show. One line per decision, stable order, so two plans can be diffed with `diff`.

use super::{
    ClusterMasquerade, NodePortListen, PathPlan, ProxyPlan, ServicePortPlan, SourceClass, Target,
};
use std::fmt::{self, Display, Formatter, Write as _};

impl Display for ProxyPlan {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "# ProxyPlan {} for node {:?}",
            self.family, self.node_name
        )?;
        writeln!(f, "node-ips: {}", list(&self.node_ips))?;
        match &self.node_port_addresses {
            NodePortListen::AllLocal => writeln!(f, "nodeports-listen-on: all local addresses")?,
            NodePortListen::Addresses(a) => writeln!(f, "nodeports-listen-on: {}", list(a))?,
        }
        match &self.cluster_masquerade {
            ClusterMasquerade::All => writeln!(f, "cluster-ip-masquerade: all")?,
            ClusterMasquerade::FromOutside(pods) => {
                writeln!(f, "cluster-ip-masquerade: all but pods ({pods})")?
            }
            ClusterMasquerade::HairpinOnly => {
                writeln!(f, "cluster-ip-masquerade: hairpin only (no --cluster-cidr)")?
            }
        }
        writeln!(f, "service-ports: {}", self.services.len())?;
        for (name, svc) in &self.services {
            writeln!(f, "\n{name}")?;
            write_service(f, svc)?;
        }
        for w in &self.warnings {
            writeln!(f, "\nwarning: {w}")?;
        }
        Ok(())
    }
}

fn write_service(f: &mut Formatter<'_>, s: &ServicePortPlan) -> fmt::Result {
    writeln!(
        f,
        "  cluster-ip: {}:{}/{}",
        s.cluster_ip, s.port, s.protocol
    )?;
    if !s.external_ips.is_empty() {
        writeln!(f, "  external-ips: {}", list(&s.external_ips))?;
    }
    if !s.load_balancer_ips.is_empty() {
        writeln!(f, "  load-balancer-ips: {}", list(&s.load_balancer_ips))?;
    }
    if let Some(p) = s.node_port {
        writeln!(f, "  node-port: {p}")?;
    }
    if let Some(r) = &s.source_ranges {
        let extra = if r.allow_from_load_balancer_ips {
            " + load-balancer IPs"
        } else {
            ""
        };
        writeln!(f, "  source-ranges: [{}]{extra}", list(&r.allow))?;
    }
    if let Some(t) = s.affinity_timeout_seconds {
        writeln!(f, "  affinity: ClientIP {t}s")?;
    }
    for (label, set) in [
        ("cluster", &s.endpoints.cluster),
        ("local", &s.endpoints.local),
    ] {
        if let Some(set) = set {
            writeln!(f, "  {label}-endpoints: [{}]", list(set))?;
        }
    }
    write_path(f, "internal", &s.internal)?;
    if let Some(e) = &s.external {
        write_path(f, "external", e)?;
    }
    Ok(())
}

/// `  internal: 10.96.0.10:80/tcp -> pod: cluster-endpoints; any: cluster-endpoints, masquerade`
fn write_path(f: &mut Formatter<'_>, label: &str, p: &PathPlan) -> fmt::Result {
    let keys: Vec<String> = p.keys.iter().map(|k| k.key.to_string()).collect();
    write!(f, "  {label}: [{}] ->", keys.join(", "))?;
    for (i, r) in p.rules.iter().enumerate() {
        let from = match r.from {
            SourceClass::Pod => "from pods",
            SourceClass::Host => "from host",
            SourceClass::Any => "from any",
        };
        let sep = if i == 0 { " " } else { "; " };
        let masq = if r.masquerade { ", masquerade" } else { "" };
        write!(f, "{sep}{from}: {}{masq}", target(r.target))?;
    }
    writeln!(f)
}

fn target(t: Target) -> &'static str {
    match t {
        Target::Cluster => "cluster-endpoints",
        Target::Local => "local-endpoints",
        Target::Reject => "reject (no endpoints)",
        Target::Drop => "drop (no local endpoints)",
    }
}

fn list<T: Display>(items: &[T]) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{item}");
    }
    out
}
