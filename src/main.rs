//! The packaged binary: the core with the interpreter it was built with embedded.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(unitcorn::run(unitcorn::program::Program::binary()))
}
