//! Switchyard's conformance suite: not implemented yet (issue "Conformance suite: one scenario
//! table, real packets, every backend"). Its scenario row type, `switchyard_core::PacketFlow`,
//! already exists in core and is checked against `explain` by core's tests.
