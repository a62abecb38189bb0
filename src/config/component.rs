//! Reading the component tables (`[sources.<id>]`, `[sinks.<id>]`) and the settings sections, each
//! on its own so one mistake does not hide the next; and [`registry!`](crate::registry), the one
//! place each kind of component lists its types.
//!
//! A new source or sink is one line in its kind's `registry!` (`sources/mod.rs`, `sinks/mod.rs`):
//! the serde enum, the list of type names that hints and errors print, the reader by type and the
//! dispatch to the component's own trait all come from that line.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use super::ConfigError;

/// Declares a kind of component from one list of `"type" => Variant(ConfigType)` lines, each with
/// the Cargo feature it needs: the `#[serde(tag = "type")]` enum, the `TYPES` constant (hints and
/// errors), [`Component`] (read by type, so an error names the key inside the component) and
/// `spec()`/`spec_mut()`, which hand out the variant as the kind's trait object (`&dyn SourceSpec`):
/// every other dispatch goes through the trait, not through another `match`.
#[macro_export]
macro_rules! registry {
    (
        $(#[$emeta:meta])*
        pub enum $Enum:ident: dyn $Spec:ident, types $TYPES:ident, table $table:literal {
            $(
                $(#[$vmeta:meta])*
                $name:literal => $Variant:ident($Config:ty) $(, feature $feat:literal)?;
            )*
        }
    ) => {
        /// The `type` names built in (by Cargo feature): the one list hints and errors use.
        pub const $TYPES: &[&str] = &[
            $( $(#[cfg(feature = $feat)])? $name, )*
        ];

        $(#[$emeta])*
        #[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
        #[serde(tag = "type")]
        #[allow(clippy::large_enum_variant)] // built once at start; boxing would only add noise
        pub enum $Enum {
            $(
                $(#[$vmeta])*
                $(#[cfg(feature = $feat)])?
                #[serde(rename = $name)]
                $Variant($Config),
            )*
        }

        impl $crate::config::Component for $Enum {
            const TABLE: &'static str = $table;
            const TYPES: &'static [&'static str] = $TYPES;
            const LEFT_OUT: &'static [(&'static str, &'static str)] = &[
                $( $( #[cfg(not(feature = $feat))] ($name, $feat), )? )*
            ];

            fn from_type(kind: &str, v: toml::Value) -> Option<$crate::config::Parsed<Self>> {
                Some(match kind {
                    $(
                        $(#[cfg(feature = $feat)])?
                        $name => serde_path_to_error::deserialize(v).map(Self::$Variant),
                    )*
                    _ => return None,
                })
            }
        }

        impl $Enum {
            /// The component's configuration as its trait object.
            pub fn spec(&self) -> &dyn $Spec {
                match self {
                    $( $(#[cfg(feature = $feat)])? Self::$Variant(c) => c, )*
                }
            }

            /// As [`Self::spec`], mutable (paths are made absolute in place).
            pub fn spec_mut(&mut self) -> &mut dyn $Spec {
                match self {
                    $( $(#[cfg(feature = $feat)])? Self::$Variant(c) => c, )*
                }
            }
        }
    };
}

/// A kind of component (`[sources.<id>]`, `[sinks.<id>]`): a table per id, whose `type` picks the
/// variant. Each kind lists its type names once ([`Component::TYPES`]); hints and errors use that
/// list, so adding a type changes no other text.
pub trait Component: Sized {
    /// The top-level table: `sources` or `sinks`.
    const TABLE: &'static str;
    /// The `type` names built in.
    const TYPES: &'static [&'static str];
    /// The `type` names this build left out, with the Cargo feature that builds each.
    const LEFT_OUT: &'static [(&'static str, &'static str)];
    /// Reads the table of the variant `kind` (without its `type` key); `None` for an unknown kind.
    fn from_type(kind: &str, v: toml::Value) -> Option<Parsed<Self>>;
}

/// What reading one component's table gives: the component, or the error with its key path.
pub type Parsed<T> = Result<T, serde_path_to_error::Error<toml::de::Error>>;

pub(crate) fn type_list(types: &[&str]) -> String {
    let quoted: Vec<String> = types.iter().map(|t| format!("\"{t}\"")).collect();
    quoted.join(", ")
}

/// A table of components (`[sinks.<id>]`), each deserialized on its own so one bad component does
/// not hide the problems of the next.
pub(crate) fn components<T: Component>(
    value: Option<toml::Value>,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, T> {
    let name = T::TABLE;
    let hint = || {
        format!(
            "write [{name}.<id>] with type = one of {}",
            type_list(T::TYPES)
        )
    };
    let mut out = BTreeMap::new();
    match value {
        None => {}
        Some(toml::Value::Table(t)) => {
            for (id, v) in t {
                let at = format!("{name}.{id}");
                let mut v = v;
                let kind = match &mut v {
                    toml::Value::Table(t) => t.remove("type"),
                    _ => {
                        errors.push(ConfigError::new(&at, "must be a table").hint(hint()));
                        continue;
                    }
                };
                let kind = match kind {
                    Some(toml::Value::String(k)) => k,
                    Some(other) => {
                        errors.push(
                            ConfigError::new(
                                format!("{at}.type"),
                                format!("must be a string, not {}", other.type_str()),
                            )
                            .hint(hint()),
                        );
                        continue;
                    }
                    None => {
                        errors.push(
                            ConfigError::new(format!("{at}.type"), "missing field `type`")
                                .hint(hint()),
                        );
                        continue;
                    }
                };
                if let Some((_, feature)) = T::LEFT_OUT.iter().find(|(t, _)| *t == kind) {
                    errors.push(
                        ConfigError::new(
                            format!("{at}.type"),
                            format!(
                                "`{kind}` is not in this build: it is the Cargo feature `{feature}`"
                            ),
                        )
                        .hint(format!(
                            "build with `cargo build --release --features {feature}` (see the README's components), or use one of {}",
                            type_list(T::TYPES)
                        )),
                    );
                    continue;
                }
                if !T::TYPES.contains(&kind.as_str()) {
                    errors.push(
                        ConfigError::new(
                            format!("{at}.type"),
                            format!(
                                "unknown {} type `{kind}`; this build has {}",
                                name.trim_end_matches('s'),
                                type_list(T::TYPES)
                            ),
                        )
                        .hint("use one of the types listed; a type behind a Cargo feature needs a build with it"),
                    );
                    continue;
                }
                if let Some(c) = read(v, &at, errors, |v| {
                    T::from_type(&kind, v)
                        .expect("every name in Component::TYPES has a variant (unit test)")
                }) {
                    out.insert(id, c);
                }
            }
        }
        Some(_) => {
            errors.push(ConfigError::new(name, format!("must be a table of {name}")).hint(hint()))
        }
    }
    out
}

/// Deserializes one section, collecting every problem: an unknown key is reported, taken out and
/// the section read again, so a misspelt option does not hide the section's other mistakes (nor
/// make rules that name its tags look wrong). Any other error ends the section.
pub(crate) fn section<T: DeserializeOwned>(
    v: toml::Value,
    at: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    read(v, at, errors, serde_path_to_error::deserialize)
}

/// [`section`] with the deserializer given.
fn read<T>(
    mut v: toml::Value,
    at: &str,
    errors: &mut Vec<ConfigError>,
    parse: impl Fn(toml::Value) -> Parsed<T>,
) -> Option<T> {
    // Bounded: each round removes one key, and a section has few.
    for _ in 0..64 {
        match parse(v.clone()) {
            Ok(t) => return Some(t),
            Err(e) => {
                let message = e.inner().to_string();
                let removed = unknown_field(&message)
                    .is_some_and(|field| remove_key(&mut v, e.path(), field));
                report(e, at, errors);
                if !removed {
                    return None;
                }
            }
        }
    }
    None
}

/// The key a serde "unknown field `x`, expected …" message names.
fn unknown_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split('`').next())
}

/// Removes `field` from the table at `path` (or the table holding the last segment of `path`, when
/// `path` already ends with `field`). False when the path does not lead to a table holding it.
fn remove_key(v: &mut toml::Value, path: &serde_path_to_error::Path, field: &str) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let mut cur = v;
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        cur = match seg {
            Segment::Map { key } if last && key == field => break,
            Segment::Map { key } => match cur {
                toml::Value::Table(t) if t.contains_key(key) => t.get_mut(key).expect("checked"),
                _ => return false,
            },
            Segment::Seq { index } => match cur {
                toml::Value::Array(a) if *index < a.len() => &mut a[*index],
                _ => return false,
            },
            _ => cur,
        };
    }
    match cur {
        toml::Value::Table(t) => t.remove(field).is_some(),
        _ => false,
    }
}

/// Turns a deserialization error into a [`ConfigError`] at its full key path, with a hint.
fn report(e: serde_path_to_error::Error<toml::de::Error>, at: &str, errors: &mut Vec<ConfigError>) {
    let inner = e.path().to_string();
    let raw = e.into_inner().to_string();
    // The TOML deserializer appends "in `key`". serde_path_to_error's path says where, except inside
    // a component (`type = "…"` tables are buffered by serde before the variant reads them): there
    // the TOML key is all that names the faulty key.
    let (message, toml_key) = match raw.split_once("\nin `") {
        Some((m, k)) => (
            m.trim().to_string(),
            k.trim().trim_end_matches('`').to_string(),
        ),
        None => (raw.trim().to_string(), String::new()),
    };
    let mut path = if inner != "." && !inner.is_empty() {
        format!("{at}.{inner}")
    } else if !toml_key.is_empty() {
        format!("{at}.{toml_key}")
    } else {
        at.to_string()
    };
    if let Some(field) = unknown_field(&message) {
        if !path.ends_with(&format!(".{field}")) {
            path = format!("{path}.{field}");
        }
    }
    let hint = if message.starts_with("unknown field") {
        "remove or rename it; config/agent.toml lists every option"
    } else if message.starts_with("missing field") {
        "add it; config/agent.toml shows an example"
    } else if message.starts_with("unknown variant") {
        "use one of the values listed"
    } else {
        "see config/agent.toml for the expected type"
    };
    errors.push(ConfigError::new(path, message).hint(hint));
}

#[cfg(test)]
#[allow(unreachable_pub)] // the registry's enum is `pub`: its parts must be too
mod tests {
    use super::*;

    pub trait Spec {
        fn n(&self) -> u32;
    }
    #[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
    pub struct Plain {
        n: u32,
    }
    impl Spec for Plain {
        fn n(&self) -> u32 {
            self.n
        }
    }

    crate::registry! {
        /// A kind with one type always built and one behind a feature the tests do not enable.
        pub enum Thing: dyn Spec, types THING_TYPES, table "things" {
            /// Always.
            "plain" => Plain(Plain);
            /// Only with the `demo` feature.
            "extra" => Extra(Plain), feature "demo";
        }
    }

    fn read(text: &str) -> (BTreeMap<String, Thing>, Vec<ConfigError>) {
        let v: toml::Value = toml::from_str(text).expect("toml");
        let mut errors = Vec::new();
        let got = components::<Thing>(v.get("things").cloned(), &mut errors);
        (got, errors)
    }

    #[test]
    fn every_listed_type_reads_and_a_type_left_out_names_its_feature() {
        for t in THING_TYPES {
            let (mut got, errors) = read(&format!("[things.a]\ntype = \"{t}\"\nn = 7"));
            assert!(errors.is_empty() && got.len() == 1, "{t}: {errors:?}");
            assert_eq!(got["a"].spec().n(), 7);
            assert_eq!(got.get_mut("a").expect("a").spec_mut().n(), 7);
        }
        let (_, errors) = read("[things.a]\ntype = \"extra\"\nn = 1");
        if cfg!(feature = "demo") {
            assert!(errors.is_empty());
        } else {
            let e = errors[0].to_string();
            assert!(
                e.contains("things.a.type") && e.contains("the Cargo feature `demo`"),
                "{e}"
            );
        }
        let (_, errors) = read("[things.a]\ntype = \"nope\"");
        assert!(errors[0].to_string().contains("unknown thing type `nope`"));
    }
}
