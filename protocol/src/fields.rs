//! Splitting a line into positional fields and trailing `key=value` options.

use crate::ProtoError;
use std::str::FromStr;

/// A line split at TABs: the verb, then fields that [`Fields::args`] sorts into positional
/// fields and trailing `key=value` options.
pub(crate) struct Fields<'a> {
    pub verb: &'a str,
    parts: Vec<&'a str>,
}

impl<'a> Fields<'a> {
    pub fn split(line: &'a str) -> Result<Self, ProtoError> {
        let mut parts = line.split('\t');
        let verb = parts.next().unwrap_or_default();
        if verb.is_empty() {
            return Err(ProtoError::Empty);
        }
        Ok(Fields {
            verb,
            parts: parts.collect(),
        })
    }

    /// Positional fields and options of a verb taking `min..=max` positional fields.
    /// The first `min` fields are positional whatever they hold (a text may contain `=`);
    /// the next, up to `max`, are positional unless they look like `key=value`; all that
    /// follow must be options.
    #[allow(clippy::type_complexity)]
    pub fn args(
        &self,
        verb: &'static str,
        min: usize,
        max: usize,
    ) -> Result<(Vec<&'a str>, Vec<(&'a str, &'a str)>), ProtoError> {
        let mut args = Vec::with_capacity(max);
        let mut opts = Vec::new();
        for (i, &p) in self.parts.iter().enumerate() {
            let opt = p.split_once('=').filter(|(k, _)| is_key(k));
            match opt {
                _ if i < min => args.push(p),
                None if opts.is_empty() && args.len() < max => args.push(p),
                Some(kv) => opts.push(kv),
                None => {
                    return Err(ProtoError::FieldCount {
                        verb,
                        expected: count_text(min, max),
                        got: self.parts.len(),
                    })
                }
            }
        }
        if args.len() < min {
            return Err(ProtoError::FieldCount {
                verb,
                expected: count_text(min, max),
                got: args.len(),
            });
        }
        Ok((args, opts))
    }

    /// Like [`Fields::args`] for verbs that take no options.
    pub fn exact(
        &self,
        verb: &'static str,
        min: usize,
        max: usize,
    ) -> Result<Vec<&'a str>, ProtoError> {
        let (args, opts) = self.args(verb, min, max)?;
        match opts.first() {
            None => Ok(args),
            Some((k, v)) => Err(ProtoError::BadValue {
                verb,
                field: "option",
                value: format!("{k}={v}"),
            }),
        }
    }
}

fn count_text(min: usize, max: usize) -> &'static str {
    match (min, max) {
        (0, 0) => "0",
        (1, 1) => "1",
        (2, 2) => "2",
        (3, 3) => "3",
        (4, 4) => "4",
        (5, 5) => "5",
        (0, 1) => "0 or 1",
        _ => "more",
    }
}

/// Option keys are short lowercase identifiers; anything else is a positional value
/// that happens to contain `=` (a user name like `a=b`).
fn is_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 32
        && k.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Parses a typed value, naming the field on failure.
pub(crate) fn num<T: FromStr>(
    verb: &'static str,
    field: &'static str,
    v: &str,
) -> Result<T, ProtoError> {
    v.parse().map_err(|_| ProtoError::BadValue {
        verb,
        field,
        value: v.to_owned(),
    })
}

/// A name field (conference, account, user): 1..=128 bytes, no control characters.
pub(crate) fn name(verb: &'static str, field: &'static str, v: &str) -> Result<String, ProtoError> {
    if v.is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
        return Err(ProtoError::BadValue {
            verb,
            field,
            value: v.to_owned(),
        });
    }
    Ok(v.to_owned())
}

/// Free text: anything but TAB, CR and LF, which we replace when writing.
pub(crate) fn clean(text: &str) -> String {
    text.replace(['\t', '\n', '\r'], " ")
}

/// `on` or `off`.
pub(crate) fn on_off(verb: &'static str, v: &str) -> Result<bool, ProtoError> {
    match v {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(ProtoError::BadValue {
            verb,
            field: "on|off",
            value: v.to_owned(),
        }),
    }
}
