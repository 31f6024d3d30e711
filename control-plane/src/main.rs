//! `tokenward`: parse the command line, run it, map the outcome to an exit code (0 done,
//! 1 the operation failed, 2 the command line is wrong).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = tokenward_control_plane::cli::Cli::parse();
    tokenward_control_plane::logging::init(cli.log_format, cli.log_level);
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    match tokenward_control_plane::cli::run(&cli, &mut out, &mut err) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "tokenward: {}",
                tokenward_control_plane::cli::error_message(&error)
            );
            // Refused before doing anything, like clap's own errors.
            let usage = error
                .downcast_ref::<tokenward_control_plane::cli::UsageError>()
                .is_some();
            std::process::ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
