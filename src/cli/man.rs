//! `cutover man`: the manual page in roff, generated from the command definitions
//! (clap_mangen), so it lists exactly the commands and options this build has.

use clap::CommandFactory;

use super::{Cli, ExitCode, Output};

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: &Args, output: &mut Output<'_>) -> ExitCode {
    match clap_mangen::Man::new(Cli::command()).render(output.out) {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            let _ = writeln!(output.err, "error: cannot write the manual page: {e}");
            ExitCode::Failure
        }
    }
}
