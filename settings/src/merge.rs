//! The one merge: defaults, then the TOML file, then what the command line and the
//! environment gave, deserialized together into the binary's struct.

use crate::SettingsError;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::PathBuf;

/// The key of every binary's `--config FILE` flag. It names the file; it is not a setting, so
/// a file that sets it is refused like any unknown key (`#[serde(skip_deserializing)]`).
pub(crate) const CONFIG_KEY: &str = "config";

/// Lays `flags`, a flag struct built in code or parsed by clap without the environment,
/// over the TOML file its `config` field names. Its fields that hold a value win; `None`
/// and empty lists and tables leave the file's value (a switch that is off should skip
/// serializing itself, `#[serde(skip_serializing_if = "std::ops::Not::not")]`).
pub fn load<T: Serialize + DeserializeOwned>(flags: &T) -> Result<T, SettingsError> {
    let mut given = to_dict(flags)?;
    given.retain(|_, v| !unset(v));
    merge(Dict::new(), given)
}

/// Serializes a flag struct into figment's value tree.
pub(crate) fn to_dict<T: Serialize>(v: &T) -> Result<Dict, SettingsError> {
    match Value::serialize(v) {
        Ok(Value::Dict(_, d)) => Ok(d),
        Ok(_) => Err(SettingsError::Invalid(
            "settings must be a struct of named fields".into(),
        )),
        Err(e) => Err(SettingsError::Invalid(e.to_string())),
    }
}

fn unset(v: &Value) -> bool {
    match v {
        Value::Empty(..) => true,
        Value::Array(_, a) => a.is_empty(),
        Value::Dict(_, d) => d.is_empty(),
        _ => false,
    }
}

/// `defaults` < the file `given[config]` names < `given`, into `T`.
pub(crate) fn merge<T: DeserializeOwned>(
    mut defaults: Dict,
    mut given: Dict,
) -> Result<T, SettingsError> {
    defaults.remove(CONFIG_KEY);
    let path = match given.remove(CONFIG_KEY) {
        Some(Value::String(_, p)) => Some(PathBuf::from(p)),
        Some(other) => {
            return Err(SettingsError::Invalid(format!(
                "`{CONFIG_KEY}` must be a file name, not {:?}",
                other.to_actual()
            )))
        }
        None => None,
    };
    let mut figment = Figment::new().merge(Layer {
        name: "defaults",
        file: None,
        dict: defaults,
    });
    if let Some(path) = path {
        let text = std::fs::read_to_string(&path).map_err(|source| SettingsError::Read {
            path: path.clone(),
            source,
        })?;
        let dict = toml::from_str::<Dict>(&text).map_err(|e| SettingsError::Toml {
            path: path.clone(),
            message: e.to_string(),
        })?;
        figment = figment.merge(Layer {
            name: "config file",
            file: Some(path),
            dict,
        });
    }
    figment
        .merge(Layer {
            name: "flags or environment",
            file: None,
            dict: given,
        })
        .extract()
        .map_err(|e| SettingsError::Invalid(e.to_string()))
}

/// One source of values, named in errors: `for key "cost.mix" in FILE config file`.
struct Layer {
    name: &'static str,
    file: Option<PathBuf>,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let md =
            Metadata::named(self.name).interpolater(|_: &Profile, keys: &[&str]| keys.join("."));
        match &self.file {
            Some(p) => md.source(Source::File(p.clone())),
            None => md,
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}
