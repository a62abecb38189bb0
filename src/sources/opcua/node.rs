//! Node ids written with the namespace URI, and browse paths, resolved on every connect.
//!
//! A numeric namespace index (`ns=2`) is the server's position of a namespace in its
//! `NamespaceArray`; a server may renumber it after a restart or an update, and a tag written with
//! the index would then read a different variable without any error. The configuration therefore
//! names namespaces by URI (`nsu=urn:example:cell1;s=Cell1.Station10.PartSerial`); each connect reads
//! the `NamespaceArray` and maps the URI to today's index. Only namespace 0 (the OPC UA standard
//! namespace, fixed by the specification) may be written as `ns=0` or left out.

use opcua::types::{
    BrowsePath as UaBrowsePath, ByteString, Guid, Identifier, NodeId, QualifiedName, RelativePath,
    RelativePathElement, UAString,
};

/// The identifier part of a node id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ident {
    /// `i=`
    Numeric(u32),
    /// `s=`
    String(String),
    /// `g=`
    Guid(String),
    /// `b=` (base64)
    Opaque(String),
}

/// A node id as configured: namespace by URI (or the standard namespace) and identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    /// Namespace URI; `None` for namespace 0.
    pub namespace: Option<String>,
    /// Identifier.
    pub ident: Ident,
}

/// Why a node id or browse path cannot be read, or cannot be resolved on a server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The text is not a node id or browse path; the message names the text and what is expected.
    #[error("{0}")]
    Syntax(String),
    /// `ns=<n>` with `n` other than 0.
    #[error(
        "{text:?} names namespace {index} by index, which the server may renumber on a restart"
    )]
    NamespaceByIndex {
        /// The node id as written.
        text: String,
        /// The index written.
        index: String,
    },
    /// The server's `NamespaceArray` does not hold the URI.
    #[error("the server has no namespace {uri:?} (it has: {})", .known.join(", "))]
    UnknownNamespace {
        /// The URI configured.
        uri: String,
        /// The server's namespaces.
        known: Vec<String>,
    },
    /// The URI's index does not fit a node id.
    #[error("namespace {uri:?} has index {index}, beyond 65535")]
    IndexBeyondRange {
        /// The URI configured.
        uri: String,
        /// Its position in the server's `NamespaceArray`.
        index: usize,
    },
}

fn syntax(message: String) -> NodeError {
    NodeError::Syntax(message)
}

const IDENT_KEYS: [&str; 4] = [";s=", ";i=", ";g=", ";b="];

fn parse_ident(s: &str) -> Result<Ident, NodeError> {
    let (key, val) = s
        .split_once('=')
        .ok_or_else(|| syntax(format!("{s:?} has no identifier (s=, i=, g= or b=)")))?;
    match key {
        "i" => val
            .parse()
            .map(Ident::Numeric)
            .map_err(|_| syntax(format!("i={val} is not a number"))),
        "s" if !val.is_empty() => Ok(Ident::String(val.to_string())),
        "g" => val
            .parse::<Guid>()
            .map(|_| Ident::Guid(val.to_string()))
            .map_err(|_| syntax(format!("g={val} is not a GUID"))),
        "b" => ByteString::from_base64(val)
            .map(|_| Ident::Opaque(val.to_string()))
            .ok_or_else(|| syntax(format!("b={val} is not base64"))),
        _ => Err(syntax(format!(
            "{s:?}: the identifier must be s=, i=, g= or b= and not empty"
        ))),
    }
}

impl NodeRef {
    /// Parses `nsu=<uri>;<ident>`, `ns=0;<ident>` or `<ident>`.
    pub fn parse(text: &str) -> Result<NodeRef, NodeError> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("nsu=") {
            let at = IDENT_KEYS
                .iter()
                .filter_map(|k| rest.find(k))
                .min()
                .ok_or_else(|| {
                    syntax(format!(
                        "{text:?}: no ;s=, ;i=, ;g= or ;b= after the namespace URI"
                    ))
                })?;
            let uri = &rest[..at];
            if uri.is_empty() {
                return Err(syntax(format!("{text:?}: empty namespace URI")));
            }
            return Ok(NodeRef {
                namespace: Some(uri.to_string()),
                ident: parse_ident(&rest[at + 1..])?,
            });
        }
        if let Some(rest) = text.strip_prefix("ns=") {
            let (idx, ident) = rest
                .split_once(';')
                .ok_or_else(|| syntax(format!("{text:?}: no identifier after ns=")))?;
            return match idx {
                "0" => Ok(NodeRef {
                    namespace: None,
                    ident: parse_ident(ident)?,
                }),
                _ => Err(NodeError::NamespaceByIndex {
                    text: text.to_string(),
                    index: idx.to_string(),
                }),
            };
        }
        Ok(NodeRef {
            namespace: None,
            ident: parse_ident(text)?,
        })
    }

    /// The node id on a server whose `NamespaceArray` is `namespaces`.
    pub fn resolve(&self, namespaces: &[String]) -> Result<NodeId, NodeError> {
        let ns = namespace_index(self.namespace.as_deref(), namespaces)?;
        let ident = match &self.ident {
            Ident::Numeric(n) => Identifier::Numeric(*n),
            Ident::String(s) => Identifier::String(UAString::from(s.as_str())),
            Ident::Guid(g) => {
                Identifier::Guid(g.parse().map_err(|_| syntax(format!("bad GUID {g}")))?)
            }
            Ident::Opaque(b) => Identifier::ByteString(
                ByteString::from_base64(b).ok_or_else(|| syntax(format!("bad base64 {b}")))?,
            ),
        };
        Ok(NodeId::new(ns, ident))
    }
}

impl std::fmt::Display for NodeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(ns) = &self.namespace {
            write!(f, "nsu={ns};")?;
        }
        match &self.ident {
            Ident::Numeric(n) => write!(f, "i={n}"),
            Ident::String(s) => write!(f, "s={s}"),
            Ident::Guid(g) => write!(f, "g={g}"),
            Ident::Opaque(b) => write!(f, "b={b}"),
        }
    }
}

fn namespace_index(uri: Option<&str>, namespaces: &[String]) -> Result<u16, NodeError> {
    let Some(uri) = uri else { return Ok(0) };
    let i =
        namespaces
            .iter()
            .position(|n| n == uri)
            .ok_or_else(|| NodeError::UnknownNamespace {
                uri: uri.to_string(),
                known: namespaces.to_vec(),
            })?;
    u16::try_from(i).map_err(|_| NodeError::IndexBeyondRange {
        uri: uri.to_string(),
        index: i,
    })
}

/// A browse path from the Objects folder: names, each with its namespace URI (`None`: standard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowsePath {
    /// (namespace URI, browse name) per step.
    pub steps: Vec<(Option<String>, String)>,
}

impl BrowsePath {
    /// Parses `Cell1/Station10/PartSerial` (a leading `Objects/` is allowed); a step written
    /// `<uri>|Name` has its own namespace, the others take `default_ns`.
    pub fn parse(text: &str, default_ns: Option<&str>) -> Result<BrowsePath, NodeError> {
        let text = text.trim().trim_start_matches('/');
        let text = text.strip_prefix("Objects/").unwrap_or(text);
        let mut steps = Vec::new();
        for part in text.split('/') {
            if part.is_empty() {
                return Err(syntax(format!("{text:?} has an empty step")));
            }
            let (ns, name) = match part.rsplit_once('|') {
                Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
                None => (default_ns.map(str::to_string), part.to_string()),
            };
            if ns.is_none() {
                return Err(syntax(format!(
                    "step {part:?} has no namespace: set browse_namespace or write <uri>|{part}"
                )));
            }
            steps.push((ns, name));
        }
        Ok(BrowsePath { steps })
    }

    /// The TranslateBrowsePathsToNodeIds request item for this path.
    pub fn to_request(&self, namespaces: &[String]) -> Result<UaBrowsePath, NodeError> {
        let mut elements = Vec::with_capacity(self.steps.len());
        for (ns, name) in &self.steps {
            let idx = namespace_index(ns.as_deref(), namespaces)?;
            elements.push(RelativePathElement {
                reference_type_id: opcua::types::ReferenceTypeId::HierarchicalReferences.into(),
                is_inverse: false,
                include_subtypes: true,
                target_name: QualifiedName::new(idx, name.as_str()),
            });
        }
        Ok(UaBrowsePath {
            starting_node: opcua::types::ObjectId::ObjectsFolder.into(),
            relative_path: RelativePath {
                elements: Some(elements),
            },
        })
    }
}

impl std::fmt::Display for BrowsePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Objects")?;
        for (_, name) in &self.steps {
            write!(f, "/{name}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> Vec<String> {
        vec![
            "http://opcfoundation.org/UA/".into(),
            "urn:server".into(),
            "urn:example:cell1".into(),
        ]
    }

    #[test]
    fn node_ids_by_namespace_uri_resolve_against_the_array_of_the_day() {
        let r =
            NodeRef::parse("nsu=urn:example:cell1;s=Cell1.Station10.PartSerial").expect("valid");
        assert_eq!(r.namespace.as_deref(), Some("urn:example:cell1"));
        assert_eq!(
            r.resolve(&ns()).expect("valid"),
            NodeId::new(2, "Cell1.Station10.PartSerial")
        );
        let mut reordered = ns();
        reordered.swap(1, 2);
        assert_eq!(
            r.resolve(&reordered).expect("valid"),
            NodeId::new(1, "Cell1.Station10.PartSerial")
        );
        assert_eq!(
            r.to_string(),
            "nsu=urn:example:cell1;s=Cell1.Station10.PartSerial"
        );
    }

    #[test]
    fn every_identifier_kind_and_the_standard_namespace() {
        assert_eq!(
            NodeRef::parse("i=2258")
                .expect("valid")
                .resolve(&ns())
                .expect("valid"),
            NodeId::new(0, 2258u32)
        );
        assert_eq!(
            NodeRef::parse("ns=0;i=85")
                .expect("valid")
                .resolve(&ns())
                .expect("valid"),
            NodeId::new(0, 85u32)
        );
        let g =
            NodeRef::parse("nsu=urn:server;g=72962b91-fa75-4ae6-8d28-b404dc7daf63").expect("valid");
        assert!(matches!(g.ident, Ident::Guid(_)));
        assert!(g.resolve(&ns()).is_ok());
        let b = NodeRef::parse("nsu=urn:server;b=AQID").expect("valid");
        assert!(b.resolve(&ns()).is_ok());
        // A semicolon inside a string identifier stays in the identifier.
        let s = NodeRef::parse("nsu=urn:server;s=A;B").expect("valid");
        assert_eq!(s.ident, Ident::String("A;B".into()));
    }

    #[test]
    fn an_index_other_than_zero_and_bad_identifiers_are_refused_with_the_reason() {
        assert_eq!(
            NodeRef::parse("ns=2;s=X"),
            Err(NodeError::NamespaceByIndex {
                text: "ns=2;s=X".into(),
                index: "2".into()
            })
        );
        assert!(NodeRef::parse("ns=2;s=X")
            .expect_err("refused")
            .to_string()
            .contains("renumber"));
        assert!(NodeRef::parse("nsu=urn:x")
            .expect_err("refused")
            .to_string()
            .contains("no ;s="));
        assert!(NodeRef::parse("i=abc")
            .expect_err("refused")
            .to_string()
            .contains("not a number"));
        assert!(NodeRef::parse("g=nope")
            .expect_err("refused")
            .to_string()
            .contains("GUID"));
        assert!(NodeRef::parse("x=1").is_err());
        assert!(NodeRef::parse("s=").is_err());
        let missing = NodeRef::parse("nsu=urn:gone;i=1")
            .expect("valid")
            .resolve(&ns());
        assert!(missing
            .expect_err("refused")
            .to_string()
            .contains("no namespace \"urn:gone\""));
    }

    #[test]
    fn browse_paths_name_their_namespaces() {
        let p = BrowsePath::parse(
            "Objects/Cell1/Station10/PartSerial",
            Some("urn:example:cell1"),
        )
        .expect("valid");
        assert_eq!(p.steps.len(), 3);
        assert_eq!(p.to_string(), "Objects/Cell1/Station10/PartSerial");
        let req = p.to_request(&ns()).expect("valid");
        let els = req.relative_path.elements.expect("valid");
        assert_eq!(els[2].target_name, QualifiedName::new(2, "PartSerial"));
        let mixed =
            BrowsePath::parse("urn:server|Server/Name", Some("urn:example:cell1")).expect("valid");
        assert_eq!(mixed.steps[0].0.as_deref(), Some("urn:server"));
        assert!(BrowsePath::parse("Cell1/Station10", None)
            .expect_err("refused")
            .to_string()
            .contains("browse_namespace"));
        assert!(BrowsePath::parse("Cell1//X", Some("u")).is_err());
    }
}
