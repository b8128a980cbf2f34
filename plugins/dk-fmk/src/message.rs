//! FMK's whitelisting messages, exactly as the schemas say (brief dk-fmk.md §3–§5).
//!
//! - The bodies of `GetFocesWhitelistings`, `CreateFocesWhitelisting` and
//!   `DeleteFocesWhitelisting` in both interface versions. In 1.4.6 E6 the children of
//!   `FocesWhitelisting` are in the E6 namespace while the modifier's are in 2015/06/01 (the
//!   "namespace trap", §4.1); 1.6.0 has one namespace, and its `Organisation` lists
//!   `Identifier, Type, Name` in the reverse order of 1.4.6.
//! - The DGWS envelope: `wsse:Security` with the ID card, `medcom:Header`, and the whitelisting
//!   header (E6: `sdsd 2012/06 WhitelistingHeader` with 2010/08 children; 1.6.0:
//!   `FMKRequestHeader/WhitelistingHeader`).
//! - Reading `FocesWhitelisting` entries and FMK's faults out of the answers.

use certvakt_soap::ns;
use certvakt_soap::read::{self, Fault};
use certvakt_soap::write::XmlWriter;
use serde::{Deserialize, Serialize};

use crate::settings::{FmkVersion, Settings};

/// The 1.4.6 E6 operations' namespace.
pub const E6: &str = "http://www.dkma.dk/medicinecard/xml.schema/2015/06/01/E6";
/// The 1.4.6 shared types' namespace (the modifier).
pub const MC: &str = "http://www.dkma.dk/medicinecard/xml.schema/2015/06/01";
/// FMK 1.6.0's namespace.
pub const MC160: &str = "http://fmk-teknik.dk/160";
/// The 1.4.6 whitelisting header element's namespace.
pub const SDSD_2012: &str = "http://www.sdsd.dk/dgws/2012/06";
/// The 1.4.6 whitelisting header's children's namespace.
pub const SDSD_2010: &str = "http://www.sdsd.dk/dgws/2010/08";

/// The three operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Get,
    Create,
    Delete,
}

impl Operation {
    /// The operation's name, as in `SOAPAction` and the request element.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Get => "GetFocesWhitelistings",
            Operation::Create => "CreateFocesWhitelisting",
            Operation::Delete => "DeleteFocesWhitelisting",
        }
    }

    /// The `SOAPAction` of the operation in `version`.
    pub fn action(self, version: FmkVersion) -> String {
        format!("{}#{}", body_namespace(version), self.name())
    }
}

/// The namespace of the operation elements in `version`.
pub fn body_namespace(version: FmkVersion) -> &'static str {
    match version {
        FmkVersion::E6 => E6,
        FmkVersion::V160 => MC160,
    }
}

/// One whitelisting as FMK lists it: what Delete must send back, exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whitelisting {
    /// `OrganisationIdentifier`'s `source` (`CVR`).
    pub source: String,
    pub cvr: String,
    pub foces_id: String,
    /// As FMK stored it (`Ukendt` when none was sent); `None` when FMK lists none.
    pub cert_hash: Option<String>,
}

/// `GetFocesWhitelistingsRequest` for `cvr`.
pub fn get_body(version: FmkVersion, cvr: &str) -> Result<String, String> {
    let (p, namespace) = prefix(version);
    let mut w = XmlWriter::new();
    w.element(
        &format!("{p}:GetFocesWhitelistingsRequest"),
        &[(&format!("xmlns:{p}"), namespace)],
        |w| {
            w.text_element(
                &format!("{p}:OrganisationIdentifier"),
                &[("source", "CVR")],
                cvr,
            );
        },
    );
    w.finish()
}

/// `CreateFocesWhitelistingRequest`: the owner (the settings' Apoteker) whitelists `entry`.
pub fn create_body(
    version: FmkVersion,
    settings: &Settings,
    entry: &Whitelisting,
) -> Result<String, String> {
    change_body(version, settings, Operation::Create, "CreatedBy", entry)
}

/// `DeleteFocesWhitelistingRequest`: the owner removes `entry`, as Get listed it.
pub fn delete_body(
    version: FmkVersion,
    settings: &Settings,
    entry: &Whitelisting,
) -> Result<String, String> {
    change_body(version, settings, Operation::Delete, "ModifiedBy", entry)
}

fn change_body(
    version: FmkVersion,
    settings: &Settings,
    operation: Operation,
    modifier: &str,
    entry: &Whitelisting,
) -> Result<String, String> {
    let (p, namespace) = prefix(version);
    let mut attrs = vec![(format!("xmlns:{p}"), namespace)];
    if version == FmkVersion::E6 {
        attrs.push(("xmlns:mc".to_owned(), MC));
    }
    let attrs: Vec<(&str, &str)> = attrs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut w = XmlWriter::new();
    w.element(&format!("{p}:{}Request", operation.name()), &attrs, |w| {
        w.element(&format!("{p}:{modifier}"), &[], |w| match version {
            FmkVersion::E6 => modifier_e6(w, settings),
            FmkVersion::V160 => modifier_160(w, settings),
        });
        // The namespace trap: in E6 these children are the E6 namespace's own.
        w.element(&format!("{p}:FocesWhitelisting"), &[], |w| {
            w.text_element(
                &format!("{p}:OrganisationIdentifier"),
                &[("source", &entry.source)],
                &entry.cvr,
            );
            w.text_element(&format!("{p}:FocesId"), &[], &entry.foces_id);
            if let Some(hash) = &entry.cert_hash {
                w.text_element(&format!("{p}:CertHash"), &[], hash);
            }
        });
    });
    w.finish()
}

/// 1.4.6 `ModificatorType`, branch (c): `Other, Role, Organisation` in 2015/06/01.
fn modifier_e6(w: &mut XmlWriter, settings: &Settings) {
    let owner = &settings.owner;
    w.element("mc:Other", &[], |w| {
        w.element("mc:Name", &[], |w| {
            w.text_element("mc:GivenName", &[], &owner.given_name);
            w.text_element("mc:Surname", &[], &owner.surname);
        });
        w.text_element("mc:PersonIdentifier", &[("source", "CPR")], &owner.cpr);
    });
    w.text_element("mc:Role", &[], "Apoteker");
    w.element("mc:Organisation", &[], |w| {
        w.text_element("mc:Name", &[], &settings.pharmacy_name);
        for line in &settings.pharmacy_address {
            w.text_element("mc:AddressLine", &[], line);
        }
        w.text_element("mc:Type", &[], "Apotek");
        w.text_element(
            "mc:Identifier",
            &[("source", "EAN-Lokationsnummer")],
            &settings.pharmacy_ean,
        );
    });
}

/// 1.6.0 `ModificatorType`: `Person, Role, Organisation (Identifier, Type, Name, …)`.
fn modifier_160(w: &mut XmlWriter, settings: &Settings) {
    let owner = &settings.owner;
    w.element("mc160:Person", &[], |w| {
        w.text_element("mc160:PersonIdentifier", &[("source", "CPR")], &owner.cpr);
        w.text_element(
            "mc160:Name",
            &[],
            &format!("{} {}", owner.given_name, owner.surname),
        );
    });
    w.text_element("mc160:Role", &[], "Apoteker");
    w.element("mc160:Organisation", &[], |w| {
        w.text_element(
            "mc160:Identifier",
            &[("source", "EAN-Lokationsnummer")],
            &settings.pharmacy_ean,
        );
        w.text_element("mc160:Type", &[], "Apotek");
        w.text_element("mc160:Name", &[], &settings.pharmacy_name);
        for line in &settings.pharmacy_address {
            w.text_element("mc160:AddressLine", &[], line);
        }
    });
}

fn prefix(version: FmkVersion) -> (&'static str, &'static str) {
    match version {
        FmkVersion::E6 => ("e6", E6),
        FmkVersion::V160 => ("mc160", MC160),
    }
}

/// What the DGWS headers carry besides the ID card.
#[derive(Debug, Clone, Copy)]
pub struct Linking<'a> {
    pub flow_id: &'a str,
    pub message_id: &'a str,
    /// `wsu:Timestamp/Created`, as `xs:dateTime`.
    pub created: &'a str,
}

/// The whole SOAP envelope: DGWS security with `id_card` (an STS-signed `saml:Assertion`,
/// standalone), `medcom:Header`, the version's whitelisting header, and `body`.
pub fn envelope(
    settings: &Settings,
    id_card: &str,
    linking: Linking<'_>,
    body: &str,
) -> Result<String, String> {
    let mut w = XmlWriter::new();
    w.element(
        "soapenv:Envelope",
        &[
            ("xmlns:soapenv", ns::SOAP11),
            ("xmlns:wsse", ns::WSSE),
            ("xmlns:wsu", ns::WSU),
            ("xmlns:medcom", ns::MEDCOM),
        ],
        |w| {
            w.element("soapenv:Header", &[], |w| {
                w.element("wsse:Security", &[], |w| {
                    w.element("wsu:Timestamp", &[], |w| {
                        w.text_element("wsu:Created", &[], linking.created);
                    });
                    w.raw(id_card);
                });
                w.element("medcom:Header", &[], |w| {
                    w.text_element("medcom:SecurityLevel", &[], "3");
                    w.element("medcom:Linking", &[], |w| {
                        w.text_element("medcom:FlowID", &[], linking.flow_id);
                        w.text_element("medcom:MessageID", &[], linking.message_id);
                    });
                    w.text_element("medcom:RequireNonRepudiationReceipt", &[], "no");
                });
                whitelisting_header(w, settings);
            });
            w.element("soapenv:Body", &[], |w| {
                w.raw(body);
            });
        },
    );
    w.finish()
}

/// E6: `sdsd2012:WhitelistingHeader` with 2010/08 children; 1.6.0: inside `FMKRequestHeader`.
/// The caller is the pharmacy (`OrgUsingID` its EAN location number) in the role Apoteker.
fn whitelisting_header(w: &mut XmlWriter, settings: &Settings) {
    let children = |w: &mut XmlWriter, p: &str| {
        w.text_element(
            &format!("{p}:SystemOwnerName"),
            &[],
            &settings.system_owner_name,
        );
        w.text_element(&format!("{p}:SystemName"), &[], &settings.system_name);
        w.text_element(&format!("{p}:SystemVersion"), &[], &settings.system_version);
        w.text_element(
            &format!("{p}:OrgResponsibleName"),
            &[],
            &settings.pharmacy_name,
        );
        w.text_element(&format!("{p}:OrgUsingName"), &[], &settings.pharmacy_name);
        w.text_element(
            &format!("{p}:OrgUsingID"),
            &[("NameFormat", "medcom:locationnumber")],
            &settings.pharmacy_ean,
        );
        w.text_element(&format!("{p}:RequestedRole"), &[], "Apoteker");
    };
    match settings.version {
        FmkVersion::E6 => {
            w.element(
                "sdsd12:WhitelistingHeader",
                &[("xmlns:sdsd12", SDSD_2012), ("xmlns:sdsd", SDSD_2010)],
                |w| children(w, "sdsd"),
            );
        }
        FmkVersion::V160 => {
            w.element("mc160:FMKRequestHeader", &[("xmlns:mc160", MC160)], |w| {
                w.element("mc160:WhitelistingHeader", &[], |w| children(w, "mc160"));
            });
        }
    }
}

/// The `FocesWhitelisting` entries of a Get, Create or Delete answer.
pub fn whitelistings(version: FmkVersion, answer: &str) -> Result<Vec<Whitelisting>, String> {
    let doc = read::parse(answer, "FMK's answer")?;
    let payload = read::payload(&doc)?;
    let namespace = body_namespace(version);
    if payload.tag_name().namespace() != Some(namespace) {
        return Err(format!(
            "FMK answered with {{{}}}{}, not an FMK {} answer",
            payload.tag_name().namespace().unwrap_or(""),
            payload.tag_name().name(),
            match version {
                FmkVersion::E6 => "1.4.6 E6",
                FmkVersion::V160 => "1.6.0",
            }
        ));
    }
    // A Create or Delete answer is the entry itself; a Get answer lists them.
    let entries: Vec<_> = if payload.has_tag_name((namespace, "GetFocesWhitelistingsResponse")) {
        read::children(payload, namespace, "FocesWhitelisting").collect()
    } else {
        read::child(payload, namespace, "FocesWhitelisting")
            .into_iter()
            .collect()
    };
    entries
        .into_iter()
        .map(|entry| {
            let identifier = read::child(entry, namespace, "OrganisationIdentifier")
                .ok_or("a FocesWhitelisting without OrganisationIdentifier")?;
            Ok(Whitelisting {
                source: identifier.attribute("source").unwrap_or("CVR").to_owned(),
                cvr: identifier
                    .text()
                    .map(str::trim)
                    .unwrap_or_default()
                    .to_owned(),
                foces_id: read::child_text(entry, namespace, "FocesId")
                    .ok_or("a FocesWhitelisting without FocesId")?
                    .to_owned(),
                cert_hash: read::child_text(entry, namespace, "CertHash").map(str::to_owned),
            })
        })
        .collect()
}

/// FMK's fault code: E6 `detail/medcom:FaultCode`, 1.6.0 `detail/FMKDetail/FaultCode`; the
/// SOAP `faultcode` when neither is there.
pub fn fault_code(fault: &Fault) -> String {
    fault
        .detail("FaultCode")
        .map(str::to_owned)
        .unwrap_or_else(|| fault.code_local.clone())
}

/// FMK's words: 1.6.0 `FaultText`, else `faultstring`.
pub fn fault_text(fault: &Fault) -> String {
    fault
        .detail("FaultText")
        .filter(|t| !t.is_empty())
        .unwrap_or(&fault.string)
        .to_owned()
}
