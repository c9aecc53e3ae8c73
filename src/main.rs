//! The `hestyna-obsd` binary: parse the command line, run, map failures to exit codes.

use clap::Parser;
use std::process::ExitCode;

/// jemalloc by default (see `hestyna_obsd::alloc`).
#[global_allocator]
static ALLOCATOR: hestyna_obsd::alloc::Allocator = hestyna_obsd::alloc::ALLOCATOR;

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
