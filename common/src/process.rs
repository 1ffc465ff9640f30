//! What every binary needs from its process: the `--config` argument and the stop signal.

use std::path::PathBuf;

/// A command line this program does not understand.
#[derive(Debug, thiserror::Error)]
#[error("{0}; see --help")]
pub struct UsageError(String);

/// Reads `--config FILE` (default: `ENGAGENINJA_CONFIG`); on `--help`, prints `usage` and exits.
#[allow(clippy::print_stdout)]
pub fn config_path(usage: &str) -> Result<Option<PathBuf>, UsageError> {
    let mut args = std::env::args().skip(1);
    let mut path = std::env::var_os("ENGAGENINJA_CONFIG").map(PathBuf::from);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                let value = args
                    .next()
                    .ok_or_else(|| UsageError("--config needs a file path".to_owned()))?;
                path = Some(PathBuf::from(value));
            }
            "--help" | "-h" => {
                println!("{usage}");
                std::process::exit(0);
            }
            other => return Err(UsageError(format!("unknown argument {other:?}"))),
        }
    }
    Ok(path)
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
