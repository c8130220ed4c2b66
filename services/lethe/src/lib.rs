//! The `lethe` service: the command line, the HTTP application, and the glue that opens the store.
//! `main.rs` only parses arguments and calls [`cli::run`]; tests start [`app::Application`] in-process.
#![forbid(unsafe_code)]

pub mod app;
pub mod background;
pub mod cli;
pub mod guard;
pub mod replay;
pub mod telemetry;
