//! Black-box tests of `lethe-features`: one binary, one module per concern.

mod checkpoint;
mod consent;
mod determinism;
mod erasure;
mod fields;
mod helpers;
mod log;
mod malformed;
