//! Arguments of `trustgate policy …`; `main.rs` wires them in and prints the result.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `trustgate policy <check|explain>`
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and print every error with file, line and field.
    Check(CheckArgs),
    /// Print which rule applies to an image, why, and what it requires.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy file.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The policy file.
    pub file: PathBuf,
    /// registry/repository[:tag|@digest], e.g. docker.io/library/alpine:3.20
    pub image: String,
}

/// Runs a policy subcommand: `Ok(text)` → print to stdout, exit 0; `Err(text)` → print to
/// stderr, exit non-zero.
pub fn run(args: &PolicyArgs) -> Result<String, String> {
    match &args.command {
        PolicyCommand::Check(a) => super::check_file(&a.file),
        PolicyCommand::Explain(a) => super::explain_file(&a.file, &a.image),
    }
}
