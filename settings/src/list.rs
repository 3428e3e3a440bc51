//! Lists that a flag gives as `a:1,b:2` and a TOML file as a string or an array.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

/// Deserializes `T` from a comma-separated string, or from an array whose items are joined
/// with commas, through `T`'s `FromStr`: the flag's own parser reads both forms, so the file
/// and the command line accept the same lists with the same errors.
///
/// For `impl Deserialize for T { fn deserialize(d) { settings::comma_list(d) } }`.
pub fn comma_list<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    d.deserialize_any(CommaList(PhantomData))
}

struct CommaList<T>(PhantomData<T>);

impl<'de, T> Visitor<'de> for CommaList<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a comma-separated string or an array of strings")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<String>()? {
            items.push(item);
        }
        self.visit_str(&items.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::net::SocketAddr;

    /// A non-empty list of addresses, as the binaries define theirs.
    #[derive(Debug, PartialEq)]
    struct Addrs(Vec<SocketAddr>);

    impl FromStr for Addrs {
        type Err = String;
        fn from_str(s: &str) -> Result<Self, String> {
            let v = s
                .split(',')
                .map(|a| a.trim().parse().map_err(|e| format!("{a:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Addrs(v))
        }
    }

    impl<'de> Deserialize<'de> for Addrs {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            comma_list(d)
        }
    }

    #[derive(Deserialize)]
    struct File {
        a: Addrs,
    }

    #[test]
    fn a_string_and_an_array_give_the_same_list() {
        let s: File = toml::from_str(r#"a = "127.0.0.1:1,127.0.0.1:2""#).unwrap();
        let v: File = toml::from_str(r#"a = ["127.0.0.1:1", "127.0.0.1:2"]"#).unwrap();
        assert_eq!(s.a, v.a);
        assert_eq!(s.a.0.len(), 2);
        let e = toml::from_str::<File>(r#"a = ["127.0.0.1:1", "nowhere"]"#)
            .err()
            .unwrap();
        assert!(e.to_string().contains("\"nowhere\""), "{e}");
        assert!(toml::from_str::<File>("a = 5").is_err());
    }
}
