//! loadgen binary: parses the command line and runs one workload (see `loadgen --help`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = loadgen::cli::Cli::parse();
    loadgen::runner::install_sigint();
    if let loadgen::cli::Cmd::Sink(args) = &cli.cmd {
        return match loadgen::sink::run(args) {
            Ok(summary) if summary.succeeded() => ExitCode::SUCCESS,
            Ok(_) => ExitCode::from(1),
            Err(e) => {
                eprintln!("loadgen sink: {e}");
                ExitCode::from(2)
            }
        };
    }
    match loadgen::app::run(cli) {
        Ok(summary) if loadgen::app::succeeded(&summary) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
