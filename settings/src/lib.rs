//! One settings loader for every NOC binary.
//!
//! Each binary (`dispatcher`, `mediaserver`, `noc`, `confclient`, `loadgen`, `rawfwd`,
//! `dispatchgen`) defines its settings once, as one struct that derives `clap::Parser` (its
//! flags and `--help`) and serde's `Serialize` and `Deserialize` (the keys of its TOML file:
//! the flag names with `_` for `-`). The binaries used to merge flags and file by hand, field
//! by field, each a little differently; this crate merges every source in one place, with one
//! precedence:
//!
//! command-line flag > `NOC_*` environment variable > `--config` TOML file > default.
//!
//! - [`parse`] reads the process's command line and environment. `NOC_MEDIA_HOST=x` stands
//!   for `--media-host x` and goes through the flag's own value parser, so it is checked and
//!   typed exactly as the flag would be. The TOML file named by `--config` (or `NOC_CONFIG`)
//!   fills what neither gave, and clap's defaults what the file leaves out.
//! - [`load`] lays a flag struct built in code (or by `Parser::parse_from` in a test) over its
//!   `config` file. Every field that holds a value counts as given (`None` and empty lists do
//!   not), so it suits flag structs of `Option`s without clap defaults.
//! - [`comma_list`] reads a list given as `"a,b"` or as a TOML array.
//!
//! A flag's clap id must be its serde key (the field name, as both derives make it). An empty
//! variable counts as unset. Tables of the file (`[cost]`, `[[accounts]]`) have no flag and
//! no variable.
//!
//! The file and the flags are deserialized together into the binary's struct, so
//! `deny_unknown_fields` keeps unknown keys errors, and an error names the file, key or
//! variable that is wrong. Each binary keeps its own checks (ranges, required settings) on the
//! merged struct. No I/O but reading the file, and no tokio.

mod cli;
mod list;
mod merge;
mod startup;

pub use cli::{command, env_var, parse, parse_from, ENV_PREFIX};
pub use list::comma_list;
pub use merge::load;
pub use startup::startup;

use std::path::PathBuf;

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Bad flags, or `--help`/`--version`: clap's own error, to print and exit with.
    #[error(transparent)]
    Usage(#[from] clap::Error),
    /// An environment variable whose value the flag it stands for does not accept.
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{}: {message}", path.display())]
    Toml { path: PathBuf, message: String },
    /// A key the binary does not know, or a value of the wrong type; the message names the
    /// key and the file or flags it came from.
    #[error("{0}")]
    Invalid(String),
}

impl SettingsError {
    /// Prints a usage error (or the help and version texts) as clap does and exits; other
    /// errors are returned for the binary to report.
    pub fn exit_on_usage(self) -> Self {
        match self {
            SettingsError::Usage(e) => e.exit(),
            other => other,
        }
    }
}
