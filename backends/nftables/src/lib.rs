//! Switchyard's nftables dataplane: not implemented yet (issue "nftables backend over native
//! nf_tables netlink"). This crate is empty on purpose, so the workspace has its final shape; it
//! exports nothing, and the agent refuses `--mode nftables` outside `--dry-run` until it lands.
