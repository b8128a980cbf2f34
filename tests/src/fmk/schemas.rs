//! The real FMK schemas (trifork/fmk-schemas, kept under `protocols/reference/dk-fmk/`), and
//! `xmllint --schema` against them.
//!
//! `xmllint` takes one schema per run, and libxml2 imports a namespace only once, so each
//! version gets a small wrapper schema in its own target namespace that *includes* the six
//! operation schemas (requests and responses) and, for 1.6.0, `FMKRequestHeader.xsd` and
//! `FMKDetail.xsd`. The header schemas of other namespaces are used as they are.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use super::FmkVersion;
use crate::xmlsec;

const OPERATIONS: [&str; 6] = [
    "CreateFocesWhitelistingRequest",
    "CreateFocesWhitelistingResponse",
    "DeleteFocesWhitelistingRequest",
    "DeleteFocesWhitelistingResponse",
    "GetFocesWhitelistingsRequest",
    "GetFocesWhitelistingsResponse",
];

/// The wrapper schemas (in a temporary directory that lives as long as this) and the header
/// schemas.
pub(super) struct Schemas {
    _dir: TempDir,
    e6: PathBuf,
    v160: PathBuf,
    medcom: PathBuf,
    whitelisting_e6: PathBuf,
}

impl Schemas {
    /// Finds the tree under `root` (the `fmk-schemas` folder) and writes the wrappers.
    pub(super) fn prepare(root: &Path) -> Result<Schemas> {
        let schemas = root.join("etc/schemas");
        let schemas = schemas.canonicalize().with_context(|| {
            format!(
                "the FMK schemas are not at {} (expected the fmk-schemas tree from \
                 shared/protocols/reference/dk-fmk beside the repository; set \
                 FmkOptions::schema_root)",
                schemas.display()
            )
        })?;
        let e6_dir = schemas.join("2015/06/01/E6");
        let v160_dir = schemas.join("2022/01/01");
        let medcom = schemas.join("medcom/dgws/2006/04/medcom.xsd");
        let whitelisting_e6 = schemas.join("sdsd/2012/06/WhitelistingHeader.xsd");
        let mut v160_extra = vec![v160_dir.join("FMKRequestHeader.xsd")];
        v160_extra.push(v160_dir.join("FMKDetail.xsd"));
        for file in OPERATIONS
            .iter()
            .map(|op| e6_dir.join(format!("{op}.xsd")))
            .chain(
                OPERATIONS
                    .iter()
                    .map(|op| v160_dir.join(format!("{op}.xsd"))),
            )
            .chain(v160_extra.iter().cloned())
            .chain([medcom.clone(), whitelisting_e6.clone()])
        {
            if !file.is_file() {
                bail!("the FMK schema {} is missing", file.display());
            }
        }
        let dir = tempfile::tempdir().context("a directory for the FMK wrapper schemas")?;
        let wrapper = |namespace: &str, files: Vec<PathBuf>, name: &str| -> Result<PathBuf> {
            let mut text = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<schema xmlns=\"http://www.w3.org/2001/XMLSchema\" targetNamespace=\"{namespace}\" elementFormDefault=\"qualified\">\n"
            );
            for file in files {
                text.push_str(&format!(
                    "  <include schemaLocation=\"{}\"/>\n",
                    quick_xml::escape::escape(file.display().to_string())
                ));
            }
            text.push_str("</schema>\n");
            let path = dir.path().join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        let e6 = wrapper(
            super::ns::E6,
            OPERATIONS
                .iter()
                .map(|op| e6_dir.join(format!("{op}.xsd")))
                .collect(),
            "fmk-e6.xsd",
        )?;
        let v160 = wrapper(
            super::ns::MC160,
            OPERATIONS
                .iter()
                .map(|op| v160_dir.join(format!("{op}.xsd")))
                .chain(v160_extra)
                .collect(),
            "fmk-160.xsd",
        )?;
        Ok(Schemas {
            _dir: dir,
            e6,
            v160,
            medcom,
            whitelisting_e6,
        })
    }

    /// Validates an operation body (request or response), or for 1.6.0 also an
    /// `FMKRequestHeader` or `FMKDetail`, as a document of its own.
    pub(super) fn body(&self, version: FmkVersion, document: &str) -> Result<()> {
        let schema = match version {
            FmkVersion::E6 => &self.e6,
            FmkVersion::V160 => &self.v160,
        };
        xmlsec::validate(schema, document)
    }

    /// Validates a `medcom:Header`.
    pub(super) fn medcom_header(&self, document: &str) -> Result<()> {
        xmlsec::validate(&self.medcom, document)
    }

    /// Validates a 1.4.6 E6 `WhitelistingHeader` (sdsd 2012/06).
    pub(super) fn whitelisting_header_e6(&self, document: &str) -> Result<()> {
        xmlsec::validate(&self.whitelisting_e6, document)
    }
}
