//! The `lethe` command: parses arguments, starts telemetry, runs the subcommand.

use clap::Parser;

// The log's writer and the request threads allocate and free across threads at a high rate: with
// glibc's allocator a fifth of the CPU went to malloc and free at full load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = lethe::cli::Cli::parse();
    lethe::telemetry::init();
    match lethe::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
