//! The registry's black-box tests, in one binary: fresh sled databases in temporary directories,
//! reopened to check what was made durable, and damaged on purpose to check the typed errors.

mod damage;
mod helpers;
mod lifecycle;
mod membership;
mod sealing;
