//! The log output of both binaries: `tracing` to stderr, at `info` by
//! default, `-v` for debug and `-vv` for trace; `RUST_LOG` overrides.
//! Colour only on a terminal, so log files stay plain text.

/// Install the subscriber; `verbose` counts the `-v` flags.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
