//! Writing XML: a small layer over quick-xml's writer, shaped like the messages themselves
//! (an element, its attributes, then its children), so a message reads top to bottom as it
//! goes on the wire. Text and attribute values are escaped by quick-xml.

use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};

/// Builds one XML document in memory.
pub struct XmlWriter {
    inner: quick_xml::Writer<Vec<u8>>,
    failed: Option<String>,
}

impl std::fmt::Debug for XmlWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmlWriter")
            .field("written", &self.inner.get_ref().len())
            .field("failed", &self.failed)
            .finish()
    }
}

impl Default for XmlWriter {
    fn default() -> Self {
        XmlWriter::new()
    }
}

impl XmlWriter {
    pub fn new() -> XmlWriter {
        XmlWriter {
            inner: quick_xml::Writer::new(Vec::new()),
            failed: None,
        }
    }

    /// `<name attrs…>`, what `children` writes, `</name>`.
    pub fn element(
        &mut self,
        name: &str,
        attrs: &[(&str, &str)],
        children: impl FnOnce(&mut XmlWriter),
    ) -> &mut XmlWriter {
        let start = BytesStart::new(name).with_attributes(attrs.iter().copied());
        self.event(Event::Start(start));
        children(self);
        self.event(Event::End(BytesEnd::new(name)));
        self
    }

    /// `<name attrs…>text</name>`.
    pub fn text_element(
        &mut self,
        name: &str,
        attrs: &[(&str, &str)],
        text: &str,
    ) -> &mut XmlWriter {
        self.element(name, attrs, |w| {
            w.event(Event::Text(BytesText::new(text)));
        })
    }

    /// `<name attrs…/>`.
    pub fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) -> &mut XmlWriter {
        let start = BytesStart::new(name).with_attributes(attrs.iter().copied());
        self.event(Event::Empty(start));
        self
    }

    /// A fragment that is already XML and must go out byte for byte: a signature, or a token
    /// signed by someone else. Only for fragments this crate made or read as well-formed XML.
    pub fn raw(&mut self, xml: &str) -> &mut XmlWriter {
        use std::io::Write as _;
        if let Err(e) = self.inner.get_mut().write_all(xml.as_bytes()) {
            self.failed.get_or_insert(e.to_string());
        }
        self
    }

    /// The document, or why it could not be written.
    pub fn finish(self) -> Result<String, String> {
        if let Some(e) = self.failed {
            return Err(format!("cannot write the XML message: {e}"));
        }
        String::from_utf8(self.inner.into_inner())
            .map_err(|e| format!("the XML message is not UTF-8: {e}"))
    }

    fn event(&mut self, event: Event<'_>) {
        if let Err(e) = self.inner.write_event(event) {
            self.failed.get_or_insert(e.to_string());
        }
    }
}
