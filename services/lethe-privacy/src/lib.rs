//! Privacy operations: the data subject's rights (erasure, opt-out, withdrawal, access export), the
//! request log with its legal deadlines, erasure certificates and recipient notices, retention
//! sweeps, and the DPO's audit export. Runs inside `lethe serve`; [`configure`] mounts it.
#![forbid(unsafe_code)]

pub mod controller;
pub mod ropa;
