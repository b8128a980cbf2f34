//! The real 2025 AR schemas (ks-no/fiks-nhn-client's `nhn-adresseregisteret-sok.wsdl`, kept
//! under `protocols/reference/no-nhn/`), and `xmllint --schema` against them.
//!
//! The WSDL carries its schemas inline, one `xs:schema` per namespace, importing each other by
//! namespace only. Each is written to a file of its own (with the namespace declarations it
//! inherits from the WSDL), every `xs:import` given the `schemaLocation` of the file for its
//! namespace, and the `CommunicationParty` schema (which imports all the others) is the one
//! `xmllint` is run with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use super::ns;
use crate::xmlsec;

const XS: &str = "http://www.w3.org/2001/XMLSchema";

/// The extracted schemas, in a temporary directory that lives as long as this.
pub(crate) struct Schemas {
    _dir: TempDir,
    main: PathBuf,
}

impl Schemas {
    /// Extracts the schemas of `wsdl`.
    pub(crate) fn prepare(wsdl: &Path) -> Result<Schemas> {
        let source = std::fs::read_to_string(wsdl).with_context(|| {
            format!(
                "the AR WSDL is not at {} (expected shared/protocols/reference/no-nhn beside \
                 the repository; set ArConfig::wsdl)",
                wsdl.display()
            )
        })?;
        let doc = roxmltree::Document::parse(&source)
            .with_context(|| format!("{} is not well-formed XML", wsdl.display()))?;
        let dir = tempfile::tempdir().context("a directory for the AR schemas")?;
        let mut files: BTreeMap<String, (PathBuf, String)> = BTreeMap::new();
        for (i, schema) in doc
            .descendants()
            .filter(|n| n.has_tag_name((XS, "schema")))
            .enumerate()
        {
            let namespace = schema
                .attribute("targetNamespace")
                .ok_or_else(|| {
                    anyhow!("an xs:schema in {} has no targetNamespace", wsdl.display())
                })?
                .to_owned();
            let text = xmlsec::standalone(&source, schema)?;
            let path = dir.path().join(format!("schema{i}.xsd"));
            files.insert(namespace, (path, text));
        }
        let locations: BTreeMap<String, PathBuf> = files
            .iter()
            .map(|(namespace, (path, _))| (namespace.clone(), path.clone()))
            .collect();
        for (namespace, (path, text)) in &files {
            let wired = wire_imports(text, &locations)
                .with_context(|| format!("the inline schema for {namespace}"))?;
            std::fs::write(path, wired).with_context(|| format!("writing {}", path.display()))?;
        }
        let main = locations
            .get(ns::CP)
            .cloned()
            .ok_or_else(|| anyhow!("{} has no schema for {}", wsdl.display(), ns::CP))?;
        Ok(Schemas { _dir: dir, main })
    }

    /// Validates an operation element (request or response) as a document of its own.
    pub(crate) fn validate(&self, document: &str) -> Result<()> {
        xmlsec::validate(&self.main, document)
    }
}

/// `text` with a `schemaLocation` on every `xs:import`.
fn wire_imports(text: &str, locations: &BTreeMap<String, PathBuf>) -> Result<String> {
    let doc = roxmltree::Document::parse(text)?;
    let mut out = String::with_capacity(text.len() + 1024);
    let mut at = 0;
    for import in doc.descendants().filter(|n| n.has_tag_name((XS, "import"))) {
        let namespace = import
            .attribute("namespace")
            .ok_or_else(|| anyhow!("an xs:import has no namespace"))?;
        let Some(location) = locations.get(namespace) else {
            bail!("an xs:import names {namespace}, which the WSDL has no schema for");
        };
        let range = import.range();
        out.push_str(&text[at..range.start]);
        out.push_str(&format!(
            "<xs:import xmlns:xs=\"{XS}\" namespace=\"{}\" schemaLocation=\"{}\"/>",
            quick_xml::escape::escape(namespace),
            quick_xml::escape::escape(location.display().to_string())
        ));
        at = range.end;
    }
    out.push_str(&text[at..]);
    Ok(out)
}
