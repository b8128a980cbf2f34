//! Reading answers: SOAP 1.1 envelopes with a namespace-aware tree (roxmltree). Elements are
//! matched by namespace and local name, never by prefix; text is trimmed.

use roxmltree::{Document, Node};

use crate::ns;

/// Parses `text` as XML, naming `what` (`the FMK answer`) in the error.
pub fn parse<'a>(text: &'a str, what: &str) -> Result<Document<'a>, String> {
    Document::parse(text).map_err(|e| format!("{what} is not XML: {e}"))
}

/// The first element child of `node` named `{ns}local`.
pub fn child<'a, 'i>(node: Node<'a, 'i>, ns: &str, local: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.has_tag_name((ns, local)))
}

/// Every element child of `node` named `{ns}local`, in order.
pub fn children<'a, 'i>(
    node: Node<'a, 'i>,
    ns: &'a str,
    local: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a
where
    'i: 'a,
{
    node.children()
        .filter(move |c| c.is_element() && c.has_tag_name((ns, local)))
}

/// The trimmed text of the first `{ns}local` child, if there is one with text.
pub fn child_text<'a>(node: Node<'a, '_>, ns: &str, local: &str) -> Option<&'a str> {
    child(node, ns, local)
        .and_then(|c| c.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The first element, at any depth under `node` (itself included), named `{ns}local`.
pub fn find<'a, 'i>(node: Node<'a, 'i>, ns: &str, local: &str) -> Option<Node<'a, 'i>> {
    node.descendants()
        .find(|d| d.is_element() && d.has_tag_name((ns, local)))
}

/// The SOAP 1.1 `Body` of an envelope, or why `doc` is not one.
pub fn body<'a, 'i>(doc: &'a Document<'i>) -> Result<Node<'a, 'i>, String> {
    let envelope = doc.root_element();
    if !envelope.has_tag_name((ns::SOAP11, "Envelope")) {
        return Err(format!(
            "not a SOAP 1.1 envelope (the root element is {{{}}}{})",
            envelope.tag_name().namespace().unwrap_or(""),
            envelope.tag_name().name()
        ));
    }
    child(envelope, ns::SOAP11, "Body").ok_or_else(|| "the envelope has no Body".to_owned())
}

/// The SOAP 1.1 `Header`, if the envelope has one.
pub fn header<'a, 'i>(doc: &'a Document<'i>) -> Option<Node<'a, 'i>> {
    child(doc.root_element(), ns::SOAP11, "Header")
}

/// The first element in the body: the operation's answer (or a `Fault`).
pub fn payload<'a, 'i>(doc: &'a Document<'i>) -> Result<Node<'a, 'i>, String> {
    body(doc)?
        .children()
        .find(Node::is_element)
        .ok_or_else(|| "the SOAP body is empty".to_owned())
}

/// A SOAP 1.1 fault: `faultcode` (as written, e.g. `wst:FailedAuthentication`), its
/// namespace-resolved local part, `faultstring`, and every leaf element of `detail` as
/// (local name, text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: String,
    /// `faultcode`'s local part (`FailedAuthentication`), with its namespace, if it has one.
    pub code_local: String,
    pub code_namespace: Option<String>,
    pub string: String,
    pub detail: Vec<(String, String)>,
}

impl Fault {
    /// The text of the first detail leaf named `local`.
    pub fn detail(&self, local: &str) -> Option<&str> {
        self.detail
            .iter()
            .find(|(name, _)| name == local)
            .map(|(_, text)| text.as_str())
    }
}

/// The fault in the envelope's body, if it holds one.
pub fn fault(doc: &Document<'_>) -> Option<Fault> {
    let fault = child(body(doc).ok()?, ns::SOAP11, "Fault")?;
    // SOAP 1.1 fault children are unqualified.
    let text = |name: &str| {
        fault
            .children()
            .find(|c| c.is_element() && c.tag_name().name() == name)
            .and_then(|c| c.text())
            .map(|t| t.trim().to_owned())
            .unwrap_or_default()
    };
    let code = text("faultcode");
    let (code_namespace, code_local) = match code.split_once(':') {
        Some((prefix, local)) => (fault_node_namespace(fault, prefix), local.to_owned()),
        None => (None, code.clone()),
    };
    let detail = fault
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "detail")
        .map(|detail| {
            detail
                .descendants()
                .filter(|d| d.is_element() && !d.children().any(|c| c.is_element()))
                .map(|d| {
                    (
                        d.tag_name().name().to_owned(),
                        d.text().map(str::trim).unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Fault {
        code_local,
        code_namespace,
        string: text("faultstring"),
        detail,
        code,
    })
}

fn fault_node_namespace(node: Node<'_, '_>, prefix: &str) -> Option<String> {
    node.lookup_namespace_uri(Some(prefix)).map(str::to_owned)
}

/// `node` exactly as it was written in `source`, with the namespace declarations it inherits
/// added to its start tag, so it stands alone: a signed token carried from an STS answer into
/// the next request. The signature still holds: exclusive canonicalisation does not see
/// declarations, only the namespaces elements use.
pub fn standalone(source: &str, node: Node<'_, '_>) -> Result<String, String> {
    let range = node.range();
    let text = source
        .get(range.clone())
        .ok_or_else(|| "the element's text is out of range".to_owned())?;
    // Declarations the start tag makes itself stay as they are; quick-xml reads them.
    let mut reader = quick_xml::Reader::from_str(text);
    let (name_len, declared) = match reader.read_event() {
        Ok(quick_xml::events::Event::Start(start) | quick_xml::events::Event::Empty(start)) => {
            let declared: Vec<Option<String>> = start
                .attributes()
                .filter_map(Result::ok)
                .filter_map(|a| {
                    let key: &str = a.key.as_ref();
                    match key.strip_prefix("xmlns") {
                        Some("") => Some(None),
                        Some(rest) => rest.strip_prefix(':').map(|p| Some(p.to_owned())),
                        None => None,
                    }
                })
                .collect();
            (start.name().as_ref().len(), declared)
        }
        _ => return Err("the element has no complete start tag".to_owned()),
    };
    let inherited = node
        .namespaces()
        .filter(|n| n.name() != Some("xml") && !declared.iter().any(|d| d.as_deref() == n.name()));
    let name_end = 1 + name_len;
    let mut out = String::with_capacity(text.len() + 256);
    out.push_str(&text[..name_end]);
    for namespace in inherited {
        let value = quick_xml::escape::escape(namespace.uri());
        match namespace.name() {
            Some(prefix) => out.push_str(&format!(" xmlns:{prefix}=\"{value}\"")),
            None => out.push_str(&format!(" xmlns=\"{value}\"")),
        }
    }
    out.push_str(&text[name_end..]);
    Ok(out)
}
