//! What every binary needs from its process: the `--config` argument and the stop signal.

use std::path::PathBuf;

/// A command line this program does not understand.
#[derive(Debug, thiserror::Error)]
#[error("{0}; see --help")]
pub struct UsageError(String);

impl UsageError {
    /// A usage error saying `what` is wrong.
    pub fn new(what: impl Into<String>) -> Self {
        Self(what.into())
    }
}

/// A command line: its words that are not options (a subcommand such as `credentials
/// reseal`) and the settings file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// The subcommand's words; empty to run the service.
    pub command: Vec<String>,
    /// `--config FILE` (default: `ENGAGENINJA_CONFIG`).
    pub config: Option<PathBuf>,
}

/// Reads the command line: subcommand words and `--config FILE`; on `--help`, prints `usage`
/// and exits.
#[allow(clippy::print_stdout)]
pub fn command_line(usage: &str) -> Result<CommandLine, UsageError> {
    let mut args = std::env::args().skip(1);
    let mut line = CommandLine {
        command: Vec::new(),
        config: std::env::var_os("ENGAGENINJA_CONFIG").map(PathBuf::from),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                let value = args
                    .next()
                    .ok_or_else(|| UsageError("--config needs a file path".to_owned()))?;
                line.config = Some(PathBuf::from(value));
            }
            "--help" | "-h" => {
                println!("{usage}");
                std::process::exit(0);
            }
            word if !word.starts_with('-') => line.command.push(word.to_owned()),
            other => return Err(UsageError(format!("unknown argument {other:?}"))),
        }
    }
    Ok(line)
}

/// Reads `--config FILE` (default: `ENGAGENINJA_CONFIG`) of a program without subcommands; on
/// `--help`, prints `usage` and exits.
pub fn config_path(usage: &str) -> Result<Option<PathBuf>, UsageError> {
    let line = command_line(usage)?;
    match line.command.first() {
        Some(word) => Err(UsageError(format!("unknown argument {word:?}"))),
        None => Ok(line.config),
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
