//! A pull reader over the elements of an XML document: the stack of open elements (local name,
//! `id`, `xId`), each element's text, and the refusals that keep a hostile document bounded (no
//! DTD, no undefined entity, text, nesting and encoding checked).

use std::io::BufRead;

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::{QifError, MAX_DEPTH, MAX_TEXT, NAMESPACE};

/// One open element: its local name and its `id` / `xId` attributes.
#[derive(Debug, Clone)]
pub(super) struct Frame {
    pub(super) name: String,
    pub(super) id: Option<String>,
    pub(super) xid: Option<String>,
}

/// What the walker saw.
pub(super) enum Step {
    /// An element was opened (it is the top of the stack).
    Open,
    /// An element was closed (popped), with its text.
    Close(Frame, String),
    /// The end of the document.
    End,
}

/// A pull reader over elements: the stack of open elements and each element's text.
pub(super) struct Walker<R: BufRead> {
    reader: Reader<R>,
    buf: Vec<u8>,
    pub(super) stack: Vec<Frame>,
    text: String,
    /// An empty element was opened: close it on the next step.
    close_empty: bool,
}

impl<R: BufRead> Walker<R> {
    pub(super) fn new(input: R) -> Walker<R> {
        let mut reader = Reader::from_reader(input);
        // Not trimmed here: a text split by an entity (`OD-1 &amp; bore`) keeps its blanks; values
        // are trimmed where they are read.
        reader.config_mut().trim_text(false);
        Walker {
            reader,
            buf: Vec::new(),
            stack: Vec::new(),
            text: String::new(),
            close_empty: false,
        }
    }

    pub(super) fn position(&self) -> u64 {
        self.reader.buffer_position()
    }

    fn push_text(&mut self, s: &str) -> Result<(), QifError> {
        if self.text.len() + s.len() > MAX_TEXT {
            return Err(QifError::TooLarge {
                what: "element text",
                limit: MAX_TEXT,
                position: self.position(),
            });
        }
        self.text.push_str(s);
        Ok(())
    }

    fn open(&mut self, e: &BytesStart<'_>) -> Result<(), QifError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(QifError::TooLarge {
                what: "element nesting",
                limit: MAX_DEPTH,
                position: self.position(),
            });
        }
        let name = e.local_name().as_ref().to_string();
        let mut id = None;
        let mut xid = None;
        for a in e.attributes() {
            let a = a.map_err(|err| xml_error(&self.reader, err))?;
            let key = a.key.local_name();
            if key.as_ref() == "id" || key.as_ref() == "xId" {
                let v = a
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|err| xml_error(&self.reader, err))?
                    .trim()
                    .to_string();
                if key.as_ref() == "id" {
                    id = Some(v);
                } else {
                    xid = Some(v);
                }
            }
        }
        self.stack.push(Frame { name, id, xid });
        self.text.clear();
        Ok(())
    }

    /// The root element's namespace and `versionQIF`, read from its attributes.
    fn root_attributes(
        &self,
        e: &BytesStart<'_>,
    ) -> Result<(Option<String>, Option<String>), QifError> {
        let prefix = e.name().prefix().map(|p| p.as_ref().to_string());
        let mut namespace = None;
        let mut version = None;
        for a in e.attributes() {
            let a = a.map_err(|err| xml_error(&self.reader, err))?;
            let key = a.key.as_ref();
            let value = || -> Result<String, QifError> {
                Ok(a.normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|err| xml_error(&self.reader, err))?
                    .trim()
                    .to_string())
            };
            let declares = match &prefix {
                None => key == "xmlns",
                Some(p) => key.strip_prefix("xmlns:") == Some(p.as_str()),
            };
            if declares {
                namespace = Some(value()?);
            } else if a.key.local_name().as_ref() == "versionQIF" {
                version = Some(value()?);
            }
        }
        Ok((namespace, version))
    }

    /// Checks the root element: a `QIFDocument` of QIF 3.
    fn check_root(&self, e: &BytesStart<'_>) -> Result<(), QifError> {
        let found = e.local_name().as_ref().to_string();
        let (namespace, version) = self.root_attributes(e)?;
        if found != "QIFDocument" {
            return Err(QifError::NotQif { found, namespace });
        }
        match namespace.as_deref() {
            Some(NAMESPACE) => {}
            Some(ns) if ns.starts_with("http://qifstandards.org/xsd/qif") => {
                return Err(QifError::Version {
                    found: version.unwrap_or_else(|| ns.to_string()),
                })
            }
            _ => return Err(QifError::NotQif { found, namespace }),
        }
        match version {
            Some(v) if !v.starts_with("3.") && v != "3" => Err(QifError::Version { found: v }),
            _ => Ok(()),
        }
    }

    pub(super) fn next(&mut self) -> Result<Step, QifError> {
        if std::mem::take(&mut self.close_empty) {
            return Ok(self.close());
        }
        loop {
            self.buf.clear();
            let event = self
                .reader
                .read_event_into(&mut self.buf)
                .map_err(|e| xml_error(&self.reader, e))?;
            match event {
                Event::Start(e) => {
                    let e = e.into_owned();
                    if self.stack.is_empty() {
                        self.check_root(&e)?;
                    }
                    self.open(&e)?;
                    return Ok(Step::Open);
                }
                Event::Empty(e) => {
                    let e = e.into_owned();
                    if self.stack.is_empty() {
                        self.check_root(&e)?;
                    }
                    self.open(&e)?;
                    self.close_empty = true;
                    return Ok(Step::Open);
                }
                Event::End(_) => return Ok(self.close()),
                Event::Text(t) => {
                    let s = t.xml_content(XmlVersion::Implicit1_0).into_owned();
                    self.push_text(&s)?;
                }
                Event::CData(c) => {
                    let s = c.xml_content(XmlVersion::Implicit1_0).into_owned();
                    self.push_text(&s)?;
                }
                Event::GeneralRef(r) => {
                    let resolved = match r
                        .resolve_char_ref()
                        .map_err(|e| xml_error(&self.reader, e))?
                    {
                        Some(c) => c.to_string(),
                        None => {
                            let name = r.as_ref().to_string();
                            match quick_xml::escape::resolve_predefined_entity(&name) {
                                Some(s) => s.to_string(),
                                None => {
                                    return Err(QifError::UnknownEntity {
                                        name,
                                        position: self.reader.buffer_position(),
                                    })
                                }
                            }
                        }
                    };
                    self.push_text(&resolved)?;
                }
                Event::DocType(_) => {
                    return Err(QifError::DocType {
                        position: self.position(),
                    })
                }
                Event::Decl(d) => {
                    if let Some(enc) = d.encoding() {
                        let enc = enc.map_err(|e| xml_error(&self.reader, e))?.into_owned();
                        if !enc.eq_ignore_ascii_case("utf-8") && !enc.eq_ignore_ascii_case("utf8") {
                            return Err(QifError::Encoding(enc));
                        }
                    }
                }
                Event::Eof => {
                    return match self.stack.last() {
                        Some(open) => Err(QifError::Truncated {
                            open: open.name.clone(),
                            position: self.position(),
                        }),
                        None => Ok(Step::End),
                    };
                }
                Event::Comment(_) | Event::PI(_) => {}
            }
        }
    }

    fn close(&mut self) -> Step {
        match self.stack.pop() {
            Some(frame) => Step::Close(frame, std::mem::take(&mut self.text)),
            // `check_end_names` (on by default) makes an unmatched end tag an error first.
            None => Step::End,
        }
    }

    /// The frames from the one directly under the nearest `container` to the top, if the stack
    /// is inside a `container`.
    pub(super) fn inside(&self, container: &str) -> Option<&[Frame]> {
        let at = self.stack.iter().rposition(|f| f.name == container)?;
        Some(&self.stack[at + 1..])
    }

    /// Whether the open elements end with `tail`.
    pub(super) fn open_ends_with(&self, tail: &[&str]) -> bool {
        self.stack.len() >= tail.len()
            && self.stack[self.stack.len() - tail.len()..]
                .iter()
                .zip(tail)
                .all(|(f, t)| f.name == *t)
    }

    /// Whether the open elements are exactly `names`, from the root.
    pub(super) fn open_is(&self, names: &[&str]) -> bool {
        self.stack.len() == names.len() && self.open_ends_with(names)
    }

    /// An XPath of the open elements, then `closed` if given: `/QIFDocument/…/X[@id='7']/Value`.
    pub(super) fn xpath(&self, closed: Option<&Frame>) -> String {
        // QIF ids are unique in a document: the path starts at the nearest element with one
        // (`//DiameterCharacteristicMeasurement[@id='50']/Value`), which names the place exactly
        // in a fraction of the full path's length (each record field carries one).
        let frames: Vec<&Frame> = self.stack.iter().chain(closed).collect();
        let from = frames.iter().rposition(|f| f.id.is_some());
        let mut out = String::new();
        for (i, f) in frames.iter().enumerate().skip(from.unwrap_or(0)) {
            out.push_str(if Some(i) == from { "//" } else { "/" });
            out.push_str(&f.name);
            if let (Some(id), true) = (&f.id, Some(i) == from) {
                out.push_str("[@id='");
                out.push_str(id);
                out.push_str("']");
            }
        }
        out
    }
}

/// The names of `frames` then `closed`: the path below an entity.
pub(super) fn path<'a>(frames: &'a [Frame], closed: &'a Frame) -> Vec<&'a str> {
    frames
        .iter()
        .map(|f| f.name.as_str())
        .chain(std::iter::once(closed.name.as_str()))
        .collect()
}

/// A parser error at the reader's error position.
fn xml_error<R>(reader: &Reader<R>, e: impl std::fmt::Display) -> QifError {
    QifError::Xml {
        position: reader.error_position(),
        message: e.to_string(),
    }
}
