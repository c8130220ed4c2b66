//! Black-box tests of `lethe-ml`: one test binary with a module per area.

mod engagement;
mod metrics;
mod recommend;
mod validation;
