use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = sla_planner::cli::Cli::parse();
    match sla_planner::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // Input and usage errors are the user's to fix: exit code 2, like clap's.
            if e.downcast_ref::<sla_planner::error::InputError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
