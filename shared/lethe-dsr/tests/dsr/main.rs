//! Black-box tests of `lethe-dsr` for requirement R-DSR-1: requests carry state, timestamps and
//! deadlines — GDPR one month (+2 with notice); CCPA acknowledge in 10 business days, complete in 45
//! (+45), opt-out within 15 business days, no verification.

mod ccpa;
mod gdpr;
mod golden;
mod helpers;
mod lifecycle;
mod props;
mod store;
