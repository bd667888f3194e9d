//! The `edgemon` binary: parses the command line, sets up logging, calls the
//! library, and alone decides the exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = edgemon::cli::Cli::parse();
    edgemon::logging::init(cli.log_json);
    match edgemon::cli::execute(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("edgemon: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
