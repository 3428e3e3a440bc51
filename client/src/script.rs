//! What confclient says and does on a schedule: chat (`--say "2:hello,5:@3 private"`) and
//! control lines (`--command "3:mute @bob on,8:lock on"`), each at a time in seconds from
//! joining, and the tone's volume over time (`--volume "0:-30,3:-10"`).
//!
//! A target is a participant id (`@3`, or `3` in a command) or a member's name (`@bob`),
//! looked up in the roster when the line is due, so scripts need not guess the ids the
//! server hands out. Sans-IO: [`Script::due`] takes the time and the roster.

use protocol::ClientMsg;
use std::collections::BTreeMap;

/// One scheduled action, before its target is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Chat: to everyone, or to one member.
    Say {
        to: Option<Target>,
        text: String,
    },
    Mute {
        who: Option<Target>,
        on: bool,
    },
    Kick {
        who: Target,
        reason: String,
    },
    Lock {
        on: bool,
    },
    /// `record on|off`: start or stop recording the conference.
    Record {
        on: bool,
    },
    EndConference,
    Raise {
        on: bool,
    },
}

/// A member, by id or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Id(u32),
    Name(String),
}

impl Target {
    fn parse(s: &str) -> Result<Target, String> {
        let s = s.strip_prefix('@').unwrap_or(s);
        if s.is_empty() {
            return Err("empty target".into());
        }
        Ok(match s.parse() {
            Ok(id) => Target::Id(id),
            Err(_) => Target::Name(s.to_owned()),
        })
    }

    fn resolve(&self, roster: &BTreeMap<u32, String>) -> Option<u32> {
        match self {
            Target::Id(id) => Some(*id),
            Target::Name(n) => roster.iter().find(|(_, m)| *m == n).map(|(&id, _)| id),
        }
    }
}

/// Splits `T:ITEM,T:ITEM` at the commas that start a new timed item, so an item's text may
/// hold commas of its own.
fn timed_items(s: &str) -> Result<Vec<(f64, &str)>, String> {
    let mut starts = vec![0];
    for (i, _) in s.match_indices(',') {
        let rest = &s[i + 1..];
        let head = rest.split(':').next().unwrap_or("");
        if rest.contains(':') && head.trim().parse::<f64>().is_ok() {
            starts.push(i + 1);
        }
    }
    let mut out = Vec::new();
    for (k, &a) in starts.iter().enumerate() {
        let b = starts.get(k + 1).map_or(s.len(), |&n| n - 1);
        let item = s[a..b].trim();
        if item.is_empty() {
            continue;
        }
        let (t, body) = item
            .split_once(':')
            .ok_or_else(|| format!("{item:?}: expected SECONDS:..."))?;
        let t: f64 = t
            .trim()
            .parse()
            .map_err(|_| format!("{item:?}: bad time"))?;
        if !(t.is_finite() && t >= 0.0) {
            return Err(format!("{item:?}: the time must be >= 0"));
        }
        out.push((t, body));
    }
    Ok(out)
}

/// `--say`: `2:hello,5:@3 private` (a leading `@ID` or `@NAME` makes the line private).
pub fn parse_say(s: &str) -> Result<Vec<(f64, Action)>, String> {
    timed_items(s)?
        .into_iter()
        .map(|(t, body)| {
            let body = body.trim_start();
            let (to, text) = match body.strip_prefix('@') {
                Some(rest) => {
                    let (who, text) = rest.split_once(' ').unwrap_or((rest, ""));
                    (Some(Target::parse(who)?), text.trim_start())
                }
                None => (None, body),
            };
            if text.is_empty() {
                return Err(format!("{body:?}: nothing to say"));
            }
            Ok((
                t,
                Action::Say {
                    to,
                    text: text.to_owned(),
                },
            ))
        })
        .collect()
}

/// `on` or `off`; a missing word is `default` when there is one.
fn on_off(s: Option<&str>, default: Option<bool>) -> Result<bool, String> {
    match (s, default) {
        (Some("on"), _) => Ok(true),
        (Some("off"), _) => Ok(false),
        (None, Some(d)) => Ok(d),
        (other, _) => Err(format!("expected on or off, got {other:?}")),
    }
}

/// `--command`: `T:mute @bob on`, `T:mute all off`, `T:mute me on` (oneself),
/// `T:kick @bob REASON`, `T:lock on|off`, `T:record on|off` (or `start|stop`),
/// `T:endconference`, `T:raise [on|off]`.
pub fn parse_commands(s: &str) -> Result<Vec<(f64, Action)>, String> {
    timed_items(s)?
        .into_iter()
        .map(|(t, body)| {
            let mut words = body.split_whitespace();
            let verb = words.next().unwrap_or("");
            let action = match verb {
                "mute" | "unmute" => {
                    let who = words.next().ok_or("mute: whom? (@NAME, ID, all, me)")?;
                    let on = if verb == "unmute" {
                        false
                    } else {
                        on_off(words.next(), None)?
                    };
                    let who = match who {
                        "all" => None,
                        "me" => Some(Target::Name(String::new())),
                        w => Some(Target::parse(w)?),
                    };
                    Action::Mute { who, on }
                }
                "kick" => {
                    let who = Target::parse(words.next().ok_or("kick: whom?")?)?;
                    let reason = words.collect::<Vec<_>>().join(" ");
                    Action::Kick { who, reason }
                }
                "lock" => Action::Lock {
                    on: on_off(words.next(), Some(true))?,
                },
                "record" => Action::Record {
                    on: match words.next() {
                        Some("start") => true,
                        Some("stop") => false,
                        w => on_off(w, Some(true))?,
                    },
                },
                "endconference" => Action::EndConference,
                "raise" => Action::Raise {
                    on: on_off(words.next(), Some(true))?,
                },
                other => return Err(format!("unknown command {other:?}")),
            };
            Ok((t, action))
        })
        .collect()
}

/// `--volume`: `0:-30,3:-10,6:-30`, the tone's level in dBFS from each time on.
pub fn parse_volume(s: &str) -> Result<Vec<(f64, f64)>, String> {
    let mut v: Vec<(f64, f64)> = timed_items(s)?
        .into_iter()
        .map(|(t, db)| {
            let db: f64 = db
                .trim()
                .parse()
                .map_err(|_| format!("{db:?}: bad level"))?;
            if !(-120.0..=0.0).contains(&db) {
                return Err(format!("{db}: levels are -120..=0 dBFS"));
            }
            Ok((t, db))
        })
        .collect::<Result<_, String>>()?;
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(v)
}

/// The level a volume schedule gives at `t` seconds (`default` before its first step).
pub fn volume_at(schedule: &[(f64, f64)], t: f64, default: f64) -> f64 {
    schedule
        .iter()
        .rev()
        .find(|(at, _)| *at <= t)
        .map_or(default, |(_, db)| *db)
}

/// The scheduled actions of one session, in time order.
#[derive(Debug, Clone, Default)]
pub struct Script {
    items: Vec<(f64, Action)>,
    next: usize,
}

impl Script {
    pub fn new(mut items: Vec<(f64, Action)>) -> Script {
        items.sort_by(|a, b| a.0.total_cmp(&b.0));
        Script { items, next: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.next >= self.items.len()
    }

    /// Seconds from joining when the next action is due.
    pub fn next_at(&self) -> Option<f64> {
        self.items.get(self.next).map(|(t, _)| *t)
    }

    /// The lines due at `t` seconds, with targets looked up in `roster` (id -> name) and
    /// `me` our own id. A target nobody in the roster answers to is skipped (and named in
    /// the second list).
    pub fn due(
        &mut self,
        t: f64,
        roster: &BTreeMap<u32, String>,
        me: Option<u32>,
    ) -> (Vec<ClientMsg>, Vec<String>) {
        let mut lines = Vec::new();
        let mut missing = Vec::new();
        while let Some((at, a)) = self.items.get(self.next) {
            if *at > t {
                break;
            }
            self.next += 1;
            let find = |w: &Target| match w {
                Target::Name(n) if n.is_empty() => me,
                w => w.resolve(roster),
            };
            let msg = match a {
                Action::Say { to: None, text } => Some(ClientMsg::Text {
                    text: text.clone(),
                    to: None,
                }),
                Action::Say { to: Some(w), text } => find(w).map(|to| ClientMsg::Text {
                    text: text.clone(),
                    to: Some(to),
                }),
                Action::Mute { who: None, on } => Some(ClientMsg::MuteAll { muted: *on }),
                Action::Mute { who: Some(w), on } => find(w).map(|p| ClientMsg::Mute {
                    participant: p,
                    muted: *on,
                }),
                Action::Kick { who, reason } => find(who).map(|p| ClientMsg::Kick {
                    participant: p,
                    reason: reason.clone(),
                }),
                Action::Lock { on } => Some(ClientMsg::Lock { on: *on }),
                Action::Record { on } => Some(ClientMsg::Record { on: *on }),
                Action::EndConference => Some(ClientMsg::EndConference),
                Action::Raise { on } => Some(ClientMsg::Raise { on: *on }),
            };
            match msg {
                Some(m) => lines.push(m),
                None => missing.push(format!("{a:?}")),
            }
        }
        (lines, missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn say_schedules_public_and_private_lines() {
        let s = parse_say("2:hello, world,5:@3 private,6:@bob psst").unwrap();
        assert_eq!(
            s,
            vec![
                (
                    2.0,
                    Action::Say {
                        to: None,
                        text: "hello, world".into()
                    }
                ),
                (
                    5.0,
                    Action::Say {
                        to: Some(Target::Id(3)),
                        text: "private".into()
                    }
                ),
                (
                    6.0,
                    Action::Say {
                        to: Some(Target::Name("bob".into())),
                        text: "psst".into()
                    }
                ),
            ]
        );
        assert!(parse_say("x:hi").is_err());
        assert!(parse_say("2:@3").is_err());
        assert!(parse_say("-1:hi").is_err());
        assert_eq!(parse_say("").unwrap(), vec![]);
    }

    #[test]
    fn commands_parse_and_resolve_names_when_due() {
        let items =
            parse_commands("3:mute @bob on,1:lock on,4:unmute 7,5:mute all off,6:kick @bob spam and abuse,7:raise,8:mute me off,9:endconference")
                .unwrap();
        let mut script = Script::new(items);
        let roster: BTreeMap<u32, String> = [(5, "bob".to_string()), (2, "ann".to_string())]
            .into_iter()
            .collect();
        let (lines, missing) = script.due(3.5, &roster, Some(2));
        assert!(missing.is_empty());
        assert_eq!(
            lines,
            vec![
                ClientMsg::Lock { on: true },
                ClientMsg::Mute {
                    participant: 5,
                    muted: true
                }
            ]
        );
        let (lines, _) = script.due(100.0, &roster, Some(2));
        assert_eq!(
            lines,
            vec![
                ClientMsg::Mute {
                    participant: 7,
                    muted: false
                },
                ClientMsg::MuteAll { muted: false },
                ClientMsg::Kick {
                    participant: 5,
                    reason: "spam and abuse".into()
                },
                ClientMsg::Raise { on: true },
                ClientMsg::Mute {
                    participant: 2,
                    muted: false
                },
                ClientMsg::EndConference,
            ]
        );
        assert!(script.is_empty());
        let mut rec =
            Script::new(parse_commands("1:record on,2:record stop,3:record start").unwrap());
        let (lines, _) = rec.due(10.0, &roster, Some(2));
        assert_eq!(
            lines,
            vec![
                ClientMsg::Record { on: true },
                ClientMsg::Record { on: false },
                ClientMsg::Record { on: true },
            ]
        );
        assert!(parse_commands("1:record maybe").is_err());
        // A name nobody has is reported, not sent.
        let mut s = Script::new(parse_commands("0:kick @zed bye").unwrap());
        let (lines, missing) = s.due(0.0, &roster, None);
        assert!(lines.is_empty());
        assert_eq!(missing.len(), 1);
        for bad in ["1:mute @bob maybe", "1:shout", "1:kick", "x:lock on"] {
            assert!(parse_commands(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volume_steps() {
        let v = parse_volume("3:-10,0:-30,6:-30").unwrap();
        assert_eq!(v, vec![(0.0, -30.0), (3.0, -10.0), (6.0, -30.0)]);
        assert_eq!(volume_at(&v, 2.9, -12.0), -30.0);
        assert_eq!(volume_at(&v, 3.0, -12.0), -10.0);
        assert_eq!(volume_at(&[], 3.0, -12.0), -12.0);
        assert!(parse_volume("0:5").is_err());
        assert!(parse_volume("0:loud").is_err());
    }
}
