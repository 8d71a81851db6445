//! Switchyard's iptables dataplane: not implemented yet (issue "iptables backend:
//! iptables-restore transactions"). This crate is empty on purpose, so the workspace has its
//! final shape; it exports nothing, and the agent refuses `--mode iptables` outside `--dry-run`
//! until it lands.
