//! The loader against a binary-like flag struct: precedence, files, environment, errors.

use clap::Parser;
use serde::{Deserialize, Deserializer, Serialize};
use settings::SettingsError;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[derive(Debug, Default, Parser, Serialize, Deserialize, PartialEq)]
#[command(name = "demo")]
#[serde(deny_unknown_fields)]
struct Demo {
    #[arg(long)]
    #[serde(skip_deserializing)]
    config: Option<PathBuf>,
    #[arg(long)]
    listen: Option<SocketAddr>,
    #[arg(long)]
    media_host: Option<IpAddr>,
    #[arg(long)]
    workers: Option<usize>,
    #[arg(long)]
    secret: Option<String>,
    #[arg(long)]
    gso: Option<bool>,
    #[arg(long)]
    drain_timeout: Option<f64>,
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    video: bool,
    #[arg(long, default_value_t = 10)]
    conferences: u32,
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    scales: Vec<f64>,
    #[arg(long)]
    dispatcher: Option<Addrs>,
    #[arg(skip)]
    cost: Option<Cost>,
    #[arg(skip)]
    #[serde(default)]
    accounts: Vec<Account>,
}

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct Cost {
    mix: u32,
    composite: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Account {
    code: String,
}

/// `a:1,b:2` or a TOML array.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Addrs(Vec<SocketAddr>);

impl FromStr for Addrs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(|a| a.trim().parse().map_err(|e| format!("address {a:?}: {e}")))
            .collect::<Result<_, _>>()
            .map(Addrs)
    }
}

impl<'de> Deserialize<'de> for Addrs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        settings::comma_list(d)
    }
}

/// A config file that removes itself.
struct File(PathBuf);

impl File {
    fn new(name: &str, text: &str) -> File {
        let dir = std::env::temp_dir().join(format!("settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        File(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for File {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Demo, SettingsError> {
    settings::parse_from(
        std::iter::once("demo").chain(args.iter().copied()),
        env.iter().copied(),
    )
}

#[test]
fn flags_alone_and_defaults() {
    let d = parse(&["--workers", "3", "--listen", "127.0.0.1:5"], &[]).unwrap();
    assert_eq!(d.workers, Some(3));
    assert_eq!(d.listen, Some(([127, 0, 0, 1], 5).into()));
    assert_eq!(d.conferences, 10);
    assert!(!d.video);
    assert_eq!(d.config, None);
    assert_eq!(d.cost, None);
}

#[test]
fn the_file_fills_what_flags_leave_unset() {
    let f = File::new(
        "under",
        "workers = 2\nlisten = \"127.0.0.1:7\"\nconferences = 20\nvideo = true\n\
         scales = [1, 8]\n",
    );
    let d = parse(&["--config", f.path(), "--workers", "5"], &[]).unwrap();
    // The flag wins; an Option the command line left out does not blank the file's value.
    assert_eq!(d.workers, Some(5));
    assert_eq!(d.listen, Some(([127, 0, 0, 1], 7).into()));
    // The file wins over clap's defaults, and a switch left off keeps the file's `true`.
    assert_eq!(d.conferences, 20);
    assert!(d.video);
    assert_eq!(d.scales, [1.0, 8.0]);
    let d = parse(&["--config", f.path(), "--conferences", "10"], &[]).unwrap();
    assert_eq!(d.conferences, 10, "a flag equal to the default still wins");
}

#[test]
fn the_environment_overrides_the_file() {
    let f = File::new("env", "workers = 2\nmedia_host = \"127.0.0.2\"\n");
    let d = parse(
        &["--config", f.path()],
        &[("NOC_WORKERS", "4"), ("NOC_DRAIN_TIMEOUT", "0.1")],
    )
    .unwrap();
    assert_eq!(d.workers, Some(4));
    assert_eq!(d.drain_timeout, Some(0.1));
    assert_eq!(d.media_host, Some([127, 0, 0, 2].into()));
    // NOC_CONFIG names the file when the flag does not.
    let d = parse(&[], &[("NOC_CONFIG", f.path())]).unwrap();
    assert_eq!(d.workers, Some(2));
}

#[test]
fn a_flag_overrides_the_environment() {
    let env = [("NOC_WORKERS", "4"), ("NOC_LISTEN", "127.0.0.1:9")];
    let d = parse(&["--workers", "5"], &env).unwrap();
    assert_eq!(d.workers, Some(5));
    assert_eq!(d.listen, Some(([127, 0, 0, 1], 9).into()));
    let d = parse(&["--workers=6"], &env).unwrap();
    assert_eq!(d.workers, Some(6));
}

#[test]
fn environment_values_are_read_as_the_flag_reads_them() {
    let d = parse(
        &[],
        &[
            ("NOC_SECRET", "123456"),
            ("NOC_LISTEN", "[::1]:3450"),
            ("NOC_DISPATCHER", "127.0.0.1:1,127.0.0.1:2"),
            ("NOC_SCALES", "1,8"),
            ("NOC_GSO", "false"),
            ("NOC_VIDEO", "yes"),
            ("NOC_UNRELATED", "x"),
            ("NOC_WORKERS", ""),
        ],
    )
    .unwrap();
    assert_eq!(d.secret.as_deref(), Some("123456"), "digits stay a string");
    assert_eq!(d.listen, Some("[::1]:3450".parse().unwrap()));
    assert_eq!(d.dispatcher.unwrap().0.len(), 2);
    assert_eq!(d.scales, [1.0, 8.0]);
    assert_eq!(d.gso, Some(false));
    assert!(d.video);
    assert_eq!(d.workers, None, "an empty variable is unset");
    let d = parse(&[], &[("NOC_VIDEO", "off")]).unwrap();
    assert!(!d.video);
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let e = parse(&[], &[("NOC_WORKERS", "many")]).unwrap_err();
    match &e {
        SettingsError::Env { var, message } => {
            assert_eq!(var, "NOC_WORKERS");
            assert!(message.contains("many"), "{message}");
        }
        other => panic!("wanted an environment error, got {other:?}"),
    }
    assert!(e.to_string().contains("NOC_WORKERS"), "{e}");
    let e = parse(&[], &[("NOC_VIDEO", "maybe")]).unwrap_err();
    assert!(
        matches!(&e, SettingsError::Env { var, .. } if var == "NOC_VIDEO"),
        "{e}"
    );
    // A bad flag stays a usage error.
    assert!(matches!(
        parse(&["--workers", "many"], &[]),
        Err(SettingsError::Usage(_))
    ));
}

#[test]
fn an_unknown_key_in_the_file_is_an_error_naming_key_and_file() {
    let f = File::new("unknown", "workerz = 2\n");
    let e = parse(&["--config", f.path()], &[]).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, SettingsError::Invalid(_)), "{e:?}");
    assert!(text.contains("workerz"), "{text}");
    assert!(text.contains(f.path()), "{text}");
    // `config` names the file; it is not a key of it.
    let f = File::new("nested-config", "config = \"other.toml\"\n");
    assert!(parse(&["--config", f.path()], &[]).is_err());
    // A wrong type names the key too.
    let f = File::new("bad-type", "[cost]\nmix = \"lots\"\n");
    let text = parse(&["--config", f.path()], &[]).unwrap_err().to_string();
    assert!(text.contains("cost.mix"), "{text}");
}

#[test]
fn missing_and_broken_files_name_the_file() {
    let e = parse(&["--config", "/nonexistent/demo.toml"], &[]).unwrap_err();
    assert!(matches!(e, SettingsError::Read { .. }), "{e:?}");
    assert!(e.to_string().starts_with("/nonexistent/demo.toml: "), "{e}");
    let f = File::new("broken", "workers = \n");
    let e = parse(&["--config", f.path()], &[]).unwrap_err();
    assert!(matches!(e, SettingsError::Toml { .. }), "{e:?}");
    assert!(e.to_string().contains(f.path()), "{e}");
}

#[test]
fn nested_tables_and_lists_from_the_file() {
    let f = File::new(
        "nested",
        "dispatcher = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n[cost]\nmix = 7\n\
         [[accounts]]\ncode = \"a\"\n[[accounts]]\ncode = \"b\"\n",
    );
    let d = parse(&["--config", f.path()], &[]).unwrap();
    assert_eq!(
        d.cost,
        Some(Cost {
            mix: 7,
            composite: 0
        })
    );
    assert_eq!(d.accounts.len(), 2);
    assert_eq!(d.dispatcher.clone().unwrap().0.len(), 2);
    let f = File::new("one-string", "dispatcher = \"127.0.0.1:1, 127.0.0.1:3\"\n");
    let s = parse(&["--config", f.path()], &[]).unwrap();
    assert_eq!(s.dispatcher.unwrap().0[1].port(), 3);
}

#[test]
fn a_struct_built_in_code_goes_over_its_file() {
    let f = File::new(
        "load",
        "workers = 2\nsecret = \"file\"\n[[accounts]]\ncode = \"file\"\n",
    );
    let d = settings::load(&Demo {
        config: Some(f.0.clone()),
        secret: Some("code".into()),
        ..Demo::default()
    })
    .unwrap();
    assert_eq!(d.secret.as_deref(), Some("code"));
    assert_eq!(d.workers, Some(2));
    assert_eq!(
        d.accounts,
        [Account {
            code: "file".into()
        }]
    );
    let d = settings::load(&Demo {
        config: Some(f.0.clone()),
        accounts: vec![Account {
            code: "code".into(),
        }],
        ..Demo::default()
    })
    .unwrap();
    assert_eq!(
        d.accounts,
        [Account {
            code: "code".into()
        }]
    );
    // Without a file it is the struct itself.
    let plain = Demo {
        workers: Some(1),
        ..Demo::default()
    };
    assert_eq!(settings::load(&plain).unwrap(), plain);
    assert!(settings::load(&Demo {
        config: Some(Path::new("/nonexistent.toml").into()),
        ..Demo::default()
    })
    .is_err());
}

#[test]
fn help_mentions_the_environment() {
    let help = settings::command::<Demo>().render_help().to_string();
    assert!(help.contains("NOC_LISTEN for --listen"), "{help}");
    assert_eq!(settings::env_var("media_host"), "NOC_MEDIA_HOST");
}
