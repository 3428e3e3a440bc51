//! The command line and the `NOC_*` environment: a variable stands for its flag and is
//! parsed by the flag's own value parser; clap records which values were given and which are
//! its defaults, so the file can go between them.

use crate::merge::{merge, to_dict, CONFIG_KEY};
use crate::SettingsError;
use clap::builder::{BoolishValueParser, TypedValueParser};
use clap::error::{ContextKind, ContextValue};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches};
use figment::value::Dict;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};

/// Every variable this crate reads starts with this.
pub const ENV_PREFIX: &str = "NOC_";

/// The environment variable standing for the flag with id `key` (`media_host`):
/// `NOC_MEDIA_HOST`.
pub fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase().replace('-', "_"))
}

/// `T`'s command, with a note in `--help` on the environment and the file, its example
/// taken from the command's own first flag.
pub fn command<T: CommandFactory>() -> Command {
    let cmd = T::command();
    let key = cmd
        .get_arguments()
        .filter(|a| a.get_long().is_some_and(|l| l != CONFIG_KEY))
        .find(|a| a.get_action().takes_values())
        .map_or("name", |a| a.get_id().as_str())
        .to_owned();
    let help = format!(
        "Every flag can also be set by an environment variable, {ENV_PREFIX} and its name in \
         upper case with `_` for `-` ({var} for --{flag}), or as a key of the --config TOML \
         file ({key} = ...; {config} names the file too). A flag wins over the environment, \
         and the environment over the file.",
        var = env_var(&key),
        flag = key.replace('_', "-"),
        config = env_var(CONFIG_KEY),
    );
    cmd.after_help(help)
}

/// Reads `T` from the process's command line, `NOC_*` environment and `--config` file.
pub fn parse<T>() -> Result<T, SettingsError>
where
    T: CommandFactory + FromArgMatches + Serialize + DeserializeOwned,
{
    let env = std::env::vars_os().filter(|(k, _)| {
        k.to_str()
            .is_some_and(|k| k.starts_with(ENV_PREFIX) && k.len() > ENV_PREFIX.len())
    });
    parse_from(std::env::args_os(), env)
}

/// [`parse`] with the command line (program name first) and the environment given.
pub fn parse_from<T, I, A, E, K, V>(args: I, env: E) -> Result<T, SettingsError>
where
    T: CommandFactory + FromArgMatches + Serialize + DeserializeOwned,
    I: IntoIterator<Item = A>,
    A: Into<OsString>,
    E: IntoIterator<Item = (K, V)>,
    K: Into<OsString>,
    V: Into<OsString>,
{
    let mut cmd = command::<T>();
    cmd.build();
    let mut argv: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let env: HashMap<OsString, OsString> =
        env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    let from_env = env_flags(&cmd, &argv, &env)?;
    argv.extend(from_env.iter().map(|f| f.token.clone()));
    let matches = cmd
        .try_get_matches_from_mut(argv)
        .map_err(|e| blame_env(e, &from_env))?;
    let parsed = T::from_arg_matches(&matches)?;
    let ids: Vec<&str> = cmd.get_arguments().map(|a| a.get_id().as_str()).collect();
    let (mut defaults, mut given) = (Dict::new(), Dict::new());
    for (key, value) in to_dict(&parsed)? {
        if !ids.contains(&key.as_str()) {
            continue;
        }
        match matches.value_source(&key) {
            Some(ValueSource::DefaultValue) => defaults.insert(key, value),
            Some(_) => given.insert(key, value),
            None => None,
        };
    }
    merge(defaults, given)
}

/// A flag made from an environment variable.
struct EnvFlag {
    var: String,
    long: String,
    token: OsString,
}

/// The flags the environment stands for, as `--long=value`, for those the command line does
/// not give itself.
fn env_flags(
    cmd: &Command,
    argv: &[OsString],
    env: &HashMap<OsString, OsString>,
) -> Result<Vec<EnvFlag>, SettingsError> {
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        let action = arg.get_action();
        if matches!(
            action,
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        ) {
            continue;
        }
        let var = env_var(arg.get_id().as_str());
        // An empty variable counts as unset, as `NOC_X=${X:-}` in a compose file means.
        let Some(value) = env.get(OsStr::new(&var)).filter(|v| !v.is_empty()) else {
            continue;
        };
        if on_command_line(argv, long) {
            continue;
        }
        let token = if action.takes_values() {
            let mut t = OsString::from(format!("--{long}="));
            t.push(value);
            t
        } else {
            // A switch: the variable says whether it is on.
            let on = switch_value(cmd, arg, value).map_err(|message| SettingsError::Env {
                var: var.clone(),
                message,
            })?;
            let wanted = !matches!(action, ArgAction::SetFalse);
            if on != wanted {
                continue;
            }
            OsString::from(format!("--{long}"))
        };
        out.push(EnvFlag {
            var,
            long: long.to_owned(),
            token,
        });
    }
    Ok(out)
}

fn switch_value(cmd: &Command, arg: &Arg, value: &OsStr) -> Result<bool, String> {
    BoolishValueParser::new()
        .parse_ref(cmd, Some(arg), value)
        .map_err(|e| first_line(&e))
}

/// Whether `--long` or `--long=...` is among the arguments (before a `--`).
fn on_command_line(argv: &[OsString], long: &str) -> bool {
    let flag = format!("--{long}");
    let with_value = format!("--{long}=");
    argv.iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .take_while(|a| *a != "--")
        .any(|a| a == flag || a.starts_with(&with_value))
}

/// A clap error about a value that came from the environment names the variable.
fn blame_env(e: clap::Error, from_env: &[EnvFlag]) -> SettingsError {
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return e.into();
    };
    let flag = arg.split([' ', '=']).next().unwrap_or_default();
    match from_env.iter().find(|f| flag == format!("--{}", f.long)) {
        Some(f) => SettingsError::Env {
            var: f.var.clone(),
            message: first_line(&e),
        },
        None => e.into(),
    }
}

/// clap's message without its `error: ` prefix and the usage lines.
fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}
