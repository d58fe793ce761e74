//! `salestalk`: validate, generate and process SalesTalk events. The commands live in
//! `salestalk::commands`, one module each; this is only the process's edge.

use std::io;
use std::process::ExitCode;

use clap::Parser;
use salestalk::commands::Cli;

fn main() -> ExitCode {
    match Cli::parse().execute() {
        Ok(code) => code,
        Err(error) => {
            // A closed stdout (`salestalk validate ... | head`) is the reader's choice, not news.
            let broken_pipe = error
                .downcast_ref::<io::Error>()
                .or_else(|| error.root_cause().downcast_ref::<io::Error>())
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe);
            if !broken_pipe {
                eprintln!("error: {error:#}");
            }
            ExitCode::from(2)
        }
    }
}
