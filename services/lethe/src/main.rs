//! The `lethe` command: parses arguments, starts telemetry, runs the subcommand.

use clap::Parser;

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
