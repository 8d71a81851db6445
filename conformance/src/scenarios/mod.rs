//! The scenario table, and small builders that write its Kubernetes objects as YAML.
//!
//! Pods (see `topology`): pod-a1..a3 on the node under test (node-a, 10.244.1.10-12), pod-b1..b3
//! on node-b (10.244.2.10-12); every pod serves TCP and UDP on 8080, 8081 and 9100. The outside
//! client is 192.168.0.20, the node 192.168.0.10.

mod basics;
mod conntrack;
mod dualstack;
mod hardening;
mod lifecycle;
mod policies;

use crate::scenario::Scenario;
use crate::topology::{NODE_NAME, PODS, REMOTE_NODE_NAME};
use std::fmt::Write as _;

/// Every scenario, in table order.
pub fn all() -> Vec<Scenario> {
    let mut out = basics::scenarios();
    out.extend(policies::scenarios());
    out.extend(lifecycle::scenarios());
    out.extend(hardening::scenarios());
    out.extend(conntrack::scenarios());
    out.extend(dualstack::scenarios());
    out
}

/// Endpoint conditions.
#[derive(Debug, Clone, Copy)]
pub enum Cond {
    Ready,
    NotReady,
    /// Serving and terminating (the fallback set).
    Terminating,
}

/// A Service under construction.
#[derive(Debug, Clone)]
pub struct Svc {
    name: &'static str,
    cluster_ip: &'static str,
    type_: &'static str,
    ports: Vec<String>,
    spec: Vec<String>,
    ingress: Option<&'static str>,
    selector: bool,
    created: Option<&'static str>,
}

/// A ClusterIP Service `default/<name>`; add ports with `port`.
pub fn svc(name: &'static str, cluster_ip: &'static str) -> Svc {
    Svc {
        name,
        cluster_ip,
        type_: "ClusterIP",
        ports: Vec::new(),
        spec: Vec::new(),
        ingress: None,
        selector: true,
        created: None,
    }
}

impl Svc {
    /// A port: `name` (may be empty), protocol, port, target port, optional NodePort.
    pub fn port(
        mut self,
        name: &str,
        proto: &str,
        port: u16,
        target: u16,
        node_port: Option<u16>,
    ) -> Self {
        let mut p = format!(
            "  - {{name: \"{name}\", protocol: {proto}, port: {port}, targetPort: {target}"
        );
        if let Some(np) = node_port {
            let _ = write!(p, ", nodePort: {np}");
        }
        p.push('}');
        self.ports.push(p);
        self
    }
    /// The common case: unnamed TCP 80 → 8080.
    pub fn http(self) -> Self {
        self.port("", "TCP", 80, 8080, None)
    }
    pub fn type_(mut self, t: &'static str) -> Self {
        self.type_ = t;
        self
    }
    /// An extra `spec` line, e.g. `externalTrafficPolicy: Local`.
    pub fn spec(mut self, line: &str) -> Self {
        self.spec.push(line.to_string());
        self
    }
    /// A LoadBalancer with this ingress IP.
    pub fn lb(mut self, ip: &'static str) -> Self {
        self.type_ = "LoadBalancer";
        self.ingress = Some(ip);
        self
    }
    /// `metadata.creationTimestamp` (RFC 3339), to order claims between Services.
    pub fn created(mut self, at: &'static str) -> Self {
        self.created = Some(at);
        self
    }
    pub fn selectorless(mut self) -> Self {
        self.selector = false;
        self
    }
    pub fn yaml(&self) -> String {
        let created = self
            .created
            .map(|t| format!(", creationTimestamp: '{t}'"))
            .unwrap_or_default();
        let mut y = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {}, namespace: default{created}}}\nspec:\n  type: {}\n  clusterIP: {}\n",
            self.name, self.type_, self.cluster_ip
        );
        if self.type_ == "ExternalName" {
            y.push_str("  externalName: example.invalid\n");
        }
        if self.selector {
            let _ = writeln!(y, "  selector: {{app: {}}}", self.name);
        }
        for line in &self.spec {
            let _ = writeln!(y, "  {line}");
        }
        if !self.ports.is_empty() {
            y.push_str("  ports:\n");
            for p in &self.ports {
                let _ = writeln!(y, "  {p}");
            }
        }
        if let Some(ip) = self.ingress {
            let _ = writeln!(y, "status:\n  loadBalancer:\n    ingress:\n    - ip: {ip}");
        }
        y
    }
}

/// An EndpointSlice for `default/<service>` with one port (`name`, protocol, target port).
pub fn slice(service: &str, ports: &[(&str, &str, u16)], eps: &[(&str, Cond)]) -> String {
    let mut y = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-x\n  namespace: default\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\nports:\n"
    );
    for (name, proto, port) in ports {
        let _ = writeln!(y, "- {{name: \"{name}\", protocol: {proto}, port: {port}}}");
    }
    y.push_str("endpoints:\n");
    if eps.is_empty() {
        y.truncate(y.len() - "endpoints:\n".len());
        y.push_str("endpoints: []\n");
    }
    for (pod, cond) in eps {
        let (ip, local) = pod_info(pod);
        let node = if local { NODE_NAME } else { REMOTE_NODE_NAME };
        let (ready, serving, terminating) = match cond {
            Cond::Ready => (true, true, false),
            Cond::NotReady => (false, false, false),
            Cond::Terminating => (false, true, true),
        };
        let _ = writeln!(
            y,
            "- addresses: [{ip}]\n  nodeName: {node}\n  conditions: {{ready: {ready}, serving: {serving}, terminating: {terminating}}}"
        );
    }
    y
}

/// The usual slice: unnamed TCP port 8080.
pub fn http_slice(service: &str, eps: &[(&str, Cond)]) -> String {
    slice(service, &[("", "TCP", 8080)], eps)
}

/// Ready endpoints on these pods.
pub fn ready<'a>(pods: &[&'a str]) -> Vec<(&'a str, Cond)> {
    pods.iter().map(|p| (*p, Cond::Ready)).collect()
}

/// Joins objects into one multi-document manifest, with this node's Node object first.
pub fn manifest(objects: &[String]) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {NODE_NAME}}}\nstatus:\n  addresses: [{{type: InternalIP, address: {}}}]\n",
        crate::topology::NODE_IP
    );
    for o in objects {
        y.push_str("---\n");
        y.push_str(o);
    }
    y
}

fn pod_info(name: &str) -> (std::net::Ipv4Addr, bool) {
    PODS.iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ip, local)| (*ip, *local))
        .unwrap_or_else(|| panic!("scenario table names unknown pod {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::plans_for;
    use crate::scenario::Step;

    /// The table itself, without root: at least 30 rows, unique names, every manifest parses
    /// without warnings, and every check agrees with `explain` is verified at run time.
    #[test]
    fn table_is_well_formed() {
        let all = all();
        assert!(all.len() >= 30, "only {} scenarios", all.len());
        let mut names = std::collections::HashSet::new();
        for s in &all {
            assert!(names.insert(s.name), "duplicate scenario {}", s.name);
            assert!(
                s.steps
                    .iter()
                    .any(|st| matches!(st, Step::Check(c) if !c.is_empty())),
                "{} checks nothing",
                s.name
            );
            for st in &s.steps {
                if let Step::Apply(y) = st {
                    for column in crate::family::Family::ALL {
                        if s.node.families.excludes(column).is_none() {
                            plans_for(y, s.node, column)
                                .unwrap_or_else(|e| panic!("{} [{column}]: {e:#}", s.name));
                        }
                    }
                }
            }
        }
    }
}
