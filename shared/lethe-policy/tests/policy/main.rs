//! Black-box tests of `lethe-policy`: the repository's policies, every validation rule, and notice
//! hashing.

mod helpers;
mod notice_hash;
mod repo;
mod validation;
