//! The tag table: the latest sample and the origin of every tag of every source.
//!
//! Tags are registered once (by name `source.tag`) and then addressed by [`TagId`], so the hot path of
//! an update is an index, not a string lookup.

use std::collections::HashMap;

use super::observation::{Origin, Sample, TagId};

/// A registered tag.
#[derive(Debug, Clone)]
pub struct Tag {
    /// `source.tag`.
    pub name: String,
    /// Source id.
    pub source: String,
    /// Where its values come from.
    pub origin: Origin,
    /// The latest sample.
    pub latest: Option<Sample>,
}

/// Every tag, by id and by name.
#[derive(Debug, Default)]
pub struct TagTable {
    by_name: HashMap<String, TagId>,
    tags: Vec<Tag>,
}

impl TagTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `source.tag` (or finds it) and returns its id. A later registration with an origin
    /// fills in the origin of a tag first seen by reference.
    pub fn register(&mut self, source: &str, tag: &str, origin: Option<Origin>) -> TagId {
        let name = format!("{source}.{tag}");
        if let Some(&id) = self.by_name.get(&name) {
            if let Some(o) = origin {
                self.tags[id].origin = o;
            }
            return id;
        }
        let id = self.tags.len();
        self.tags.push(Tag {
            name: name.clone(),
            source: source.to_string(),
            origin: origin.unwrap_or_default(),
            latest: None,
        });
        self.by_name.insert(name, id);
        id
    }

    /// The id of `source.tag`, if registered.
    pub fn id(&self, name: &str) -> Option<TagId> {
        self.by_name.get(name).copied()
    }

    /// Stores a sample; returns the previous one.
    pub fn update(&mut self, id: TagId, sample: Sample) -> Option<Sample> {
        self.tags.get_mut(id).and_then(|t| t.latest.replace(sample))
    }

    /// The tag.
    pub fn get(&self, id: TagId) -> Option<&Tag> {
        self.tags.get(id)
    }

    /// Every tag, by id order.
    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.tags.iter()
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// Whether there are no tags.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }
}
