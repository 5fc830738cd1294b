//! The binary: parse, run, map the outcome to an exit status. Everything else is the library.

use clap::Parser;
use servebench::app;
use servebench::cli::Cli;

fn main() {
    let cli = Cli::parse();
    let code = app::main(cli);
    std::process::exit(code.into());
}
