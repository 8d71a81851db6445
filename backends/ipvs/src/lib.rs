//! Switchyard's IPVS dataplane: not implemented yet (roadmap round 2). This crate is empty on
//! purpose, so the workspace has its final shape; it exports nothing, and the agent refuses
//! `--mode ipvs` outside `--dry-run` until it lands.
