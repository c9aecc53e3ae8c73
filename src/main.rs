//! The `hestyna-obsd` binary: parse the command line, run, map failures to exit codes.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hestyna-obsd: {error:#}");
            let code = error
                .downcast_ref::<hestyna_obsd::app::AppError>()
                .map_or(1, |e| e.exit_code());
            ExitCode::from(code)
        }
    }
}

fn try_main() -> anyhow::Result<()> {
    let cli = hestyna_obsd::cli::Cli::parse();
    hestyna_obsd::cli::run(cli)?;
    Ok(())
}
