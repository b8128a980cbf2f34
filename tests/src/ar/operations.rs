//! The AR operations on a validated request element, and the XML of their answers and faults
//! (step 6 of the [`super`] list).

use base64::Engine as _;
use certvakt_soap::read::{child, child_text, children};
use quick_xml::escape::escape;
use roxmltree::Node;

use super::directory::{DirectoryEntry, LdapUrl, Lookup};
use super::ns::{CERTIFICATE_DETAILS, COMMON, CP, SEARCH_RESULT, SYSTEM, XSI};
use super::parties::{Address, E_DS, FutureAddress, Party, ShownAddress};
use super::{LoggedRequest, ServiceAccount, Shared};
use crate::xmlsec::utc_seconds;

/// One entry of a `ValidationFault`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ValidationError {
    pub property: String,
    pub message: String,
    pub value: String,
}

/// A fault the WSDL declares for the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum OpFault {
    Generic { code: &'static str, message: String },
    Validation(Vec<ValidationError>),
}

impl OpFault {
    fn generic(code: &'static str, message: String) -> OpFault {
        OpFault::Generic { code, message }
    }

    /// `GenericFault` / `ValidationFault` (the WSDL fault names without the trailing `Fault`).
    pub(super) fn name(&self) -> &'static str {
        match self {
            OpFault::Generic { .. } => "GenericFault",
            OpFault::Validation(_) => "ValidationFault",
        }
    }

    /// The fault's reason text.
    pub(super) fn reason(&self) -> String {
        match self {
            OpFault::Generic { message, .. } => message.clone(),
            OpFault::Validation(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.property, e.message))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    /// For the request log.
    pub(super) fn summary(&self) -> String {
        match self {
            OpFault::Generic { code, message } => format!("GenericFault {code}: {message}"),
            OpFault::Validation(_) => format!("ValidationFault: {}", self.reason()),
        }
    }

    /// The detail element (namespace `http://register.nhn.no/Common`).
    pub(super) fn detail(&self) -> String {
        match self {
            OpFault::Generic { code, message } => format!(
                "<GenericFault xmlns=\"{COMMON}\" xmlns:i=\"{XSI}\"><ErrorCode>{}</ErrorCode><Message>{}</Message></GenericFault>",
                escape(*code),
                escape(message)
            ),
            OpFault::Validation(errors) => {
                let list: String = errors
                    .iter()
                    .map(|e| {
                        format!(
                            "<ValidationError><DisplayName>{}</DisplayName><Message>{}</Message><PropertyName>{}</PropertyName><Value>{}</Value></ValidationError>",
                            escape(&e.property),
                            escape(&e.message),
                            escape(&e.property),
                            escape(&e.value)
                        )
                    })
                    .collect();
                format!(
                    "<ValidationFault xmlns=\"{COMMON}\" xmlns:i=\"{XSI}\"><Errors>{list}</Errors><HasErrors>true</HasErrors></ValidationFault>"
                )
            }
        }
    }
}

/// Runs `operation` on its request element.
pub(super) fn run(
    shared: &Shared,
    account: &ServiceAccount,
    operation: &str,
    element: Node<'_, '_>,
    entry: &mut LoggedRequest,
) -> Result<String, OpFault> {
    let her_id = |entry: &mut LoggedRequest| -> Result<i32, OpFault> {
        let value = child_text(element, CP, "herId").unwrap_or("0");
        let id = value.parse::<i32>().map_err(|_| {
            OpFault::generic("InvalidHerId", format!("herId {value:?} is not a number."))
        })?;
        entry.her_id = Some(id);
        Ok(id)
    };
    match operation {
        "GetCommunicationPartyDetails" => {
            let id = her_id(entry)?;
            party_details(shared, id)
        }
        "UpdateOrganizationDetails" => update(shared, account, element, "org", false, entry),
        "UpdateServiceDetails" => update(shared, account, element, "t", true, entry),
        "SearchCertificatesByLdapUrl" => search(shared, element),
        "GetCertificateDetailsForEncryption" => {
            let id = her_id(entry)?;
            certificate_details(shared, id, operation, true)
        }
        "GetCertificateDetailsForValidatingSignature" => {
            let id = her_id(entry)?;
            certificate_details(shared, id, operation, false)
        }
        "GetLdapSearchProviders" => Ok(providers(shared)),
        other => Err(OpFault::generic(
            "NotSupported",
            format!("The operation {other} is not simulated."),
        )),
    }
}

fn not_found(her_id: i32) -> OpFault {
    OpFault::generic(
        "NotFound",
        format!("There is no communication party with HER-id {her_id}."),
    )
}

// ---- GetCommunicationPartyDetails -------------------------------------------------------

/// `CodeText` of the address types (`type_adressekomponeneter`, OID 9044).
fn code_text(type_code: &str) -> &str {
    match type_code {
        "E_DS" => "Digital sertifikat",
        "E_EDI" => "EDI (Standardisert elektronisk melding)",
        other => other,
    }
}

fn type_code_xml(type_code: &str) -> String {
    format!(
        "<b:Type><b:Active>true</b:Active><b:CodeText>{}</b:CodeText><b:CodeValue>{}</b:CodeValue><b:LongDescription i:nil=\"true\"/><b:OID>9044</b:OID><b:SimpleType>type_adressekomponeneter</b:SimpleType></b:Type><b:TypeCodeValue>{}</b:TypeCodeValue>",
        escape(code_text(type_code)),
        escape(type_code),
        escape(type_code)
    )
}

fn address_xml(address: &ShownAddress) -> String {
    format!(
        "<b:ElectronicAddress><b:Address>{}</b:Address><b:Inherited>{}</b:Inherited><b:LastChanged>{}</b:LastChanged>{}</b:ElectronicAddress>",
        escape(&address.address.address),
        address.inherited,
        time_xml(address.address.last_changed),
        type_code_xml(&address.address.type_code)
    )
}

fn future_xml(address: &FutureAddress) -> String {
    format!(
        "<b:FutureElectronicAddress><b:Address>{}</b:Address><b:Inherited>false</b:Inherited><b:LastChanged>{}</b:LastChanged>{}<b:ValidFrom>{}</b:ValidFrom></b:FutureElectronicAddress>",
        escape(&address.address),
        time_xml(address.last_changed),
        type_code_xml(&address.type_code),
        time_xml(address.valid_from)
    )
}

fn time_xml(unix: i64) -> String {
    utc_seconds(super::clock::to_utc(unix))
}

/// The `CommunicationParty` members from `ElectronicAddresses` to `Valid`.
fn party_members(
    shared: &Shared,
    her_id: i32,
    name: &str,
    kind: &str,
    parent: Option<(i32, &str, i32)>,
) -> String {
    let addresses: String = shared
        .parties
        .effective_addresses(her_id)
        .unwrap_or_default()
        .iter()
        .map(address_xml)
        .collect();
    let future: String = shared
        .parties
        .future_addresses(her_id)
        .unwrap_or_default()
        .iter()
        .map(future_xml)
        .collect();
    let last_changed = shared
        .parties
        .effective_addresses(her_id)
        .unwrap_or_default()
        .iter()
        .map(|a| a.address.last_changed)
        .max()
        .unwrap_or(0);
    let (parent_her_id, parent_name, parent_org) = match parent {
        Some((id, name, org)) => (
            id,
            format!("<ParentName>{}</ParentName>", escape(name)),
            org,
        ),
        None => (-1, "<ParentName i:nil=\"true\"/>".to_owned(), -1),
    };
    format!(
        "<Active>true</Active><DisplayName i:nil=\"true\"/><ElectronicAddresses xmlns:b=\"{COMMON}\">{addresses}</ElectronicAddresses><FutureElectronicAddresses xmlns:b=\"{COMMON}\">{future}</FutureElectronicAddresses><HerId>{her_id}</HerId><IsValidCommunicationParty>true</IsValidCommunicationParty><LastChanged>{}</LastChanged><Name>{}</Name><ParentHerId>{parent_her_id}</ParentHerId>{parent_name}<ParentOrganizationNumber>{parent_org}</ParentOrganizationNumber><ServerTime>{}</ServerTime><Type>{kind}</Type>",
        time_xml(last_changed),
        escape(name),
        time_xml(shared.clock.now()),
    )
}

fn party_details(shared: &Shared, her_id: i32) -> Result<String, OpFault> {
    let party = shared
        .parties
        .get(her_id)
        .ok_or_else(|| not_found(her_id))?;
    let result = match party {
        Party::Organization(org) => {
            let services: String = org
                .services
                .iter()
                .map(|s| {
                    format!(
                        "<Service>{}<Description i:nil=\"true\"/><LocationDescription i:nil=\"true\"/></Service>",
                        party_members(
                            shared,
                            s.her_id,
                            &s.name,
                            "Service",
                            Some((org.her_id, &org.name, org.organization_number))
                        )
                    )
                })
                .collect();
            format!(
                "<GetCommunicationPartyDetailsResult i:type=\"Organization\">{}<OrganizationNumber>{}</OrganizationNumber><Services>{services}</Services></GetCommunicationPartyDetailsResult>",
                party_members(shared, org.her_id, &org.name, "Organization", None),
                org.organization_number
            )
        }
        Party::Service(service, org) => format!(
            "<GetCommunicationPartyDetailsResult i:type=\"Service\">{}<Description i:nil=\"true\"/><LocationDescription i:nil=\"true\"/></GetCommunicationPartyDetailsResult>",
            party_members(
                shared,
                service.her_id,
                &service.name,
                "Service",
                Some((org.her_id, &org.name, org.organization_number))
            )
        ),
    };
    Ok(format!(
        "<GetCommunicationPartyDetailsResponse xmlns=\"{CP}\" xmlns:i=\"{XSI}\">{result}</GetCommunicationPartyDetailsResponse>"
    ))
}

// ---- UpdateOrganizationDetails / UpdateServiceDetails -------------------------------------

/// An address as received.
struct Received {
    type_code: String,
    address: String,
    valid_from: Option<i64>,
}

fn update(
    shared: &Shared,
    account: &ServiceAccount,
    element: Node<'_, '_>,
    member: &str,
    service: bool,
    entry: &mut LoggedRequest,
) -> Result<String, OpFault> {
    let operation = element.tag_name().name();
    let update = child(element, CP, member)
        .filter(|u| u.attribute((XSI, "nil")) != Some("true"))
        .ok_or_else(|| {
            OpFault::generic(
                "InvalidRequest",
                format!("{operation} has no {member} element."),
            )
        })?;
    let her_id = match child_text(update, CP, "HerId") {
        None => 0,
        Some(value) => value.parse::<i32>().map_err(|_| {
            OpFault::generic("InvalidHerId", format!("HerId {value:?} is not a number."))
        })?,
    };
    entry.her_id = Some(her_id);
    if !account.may_write.contains(&her_id) {
        return Err(OpFault::generic(
            "AccessDenied",
            format!(
                "The service account {} has no right to update the communication party with \
                 HER-id {her_id}.",
                account.username
            ),
        ));
    }
    match (shared.parties.get(her_id), service) {
        (Some(Party::Organization(_)), false) | (Some(Party::Service(..)), true) => {}
        (Some(_), _) => {
            return Err(OpFault::generic(
                "NotFound",
                format!(
                    "HER-id {her_id} is not {} ({operation}).",
                    if service {
                        "a service"
                    } else {
                        "an organisation"
                    }
                ),
            ));
        }
        (None, _) => return Err(not_found(her_id)),
    }
    let mut errors = Vec::new();
    let current = received_list(
        shared,
        update,
        "ElectronicAddresses",
        "ElectronicAddress",
        false,
        &mut errors,
    );
    let future = received_list(
        shared,
        update,
        "FutureElectronicAddresses",
        "FutureElectronicAddress",
        true,
        &mut errors,
    );
    if let Some(list) = &current {
        for (i, a) in list.iter().enumerate() {
            if list[..i].iter().any(|b| b.type_code == a.type_code) {
                errors.push(ValidationError {
                    property: format!("ElectronicAddresses[{i}].TypeCodeValue"),
                    message: format!(
                        "There may be only one current address of type {}.",
                        a.type_code
                    ),
                    value: a.type_code.clone(),
                });
            }
        }
    }
    if !errors.is_empty() {
        return Err(OpFault::Validation(errors));
    }
    let now = shared.clock.now();
    let merge = shared.knobs().merge_addresses;
    shared.parties.edit(her_id, |stored, stored_future| {
        if let Some(list) = current {
            let new: Vec<Address> = list
                .into_iter()
                .map(|r| {
                    let unchanged = stored
                        .iter()
                        .find(|s| s.type_code == r.type_code && s.address == r.address);
                    Address {
                        last_changed: unchanged.map_or(now, |s| s.last_changed),
                        type_code: r.type_code,
                        address: r.address,
                    }
                })
                .collect();
            if merge {
                for address in new {
                    stored.retain(|s| s.type_code != address.type_code);
                    stored.push(address);
                }
            } else {
                *stored = new;
            }
        }
        if let Some(list) = future {
            let new: Vec<FutureAddress> = list
                .into_iter()
                .map(|r| FutureAddress {
                    type_code: r.type_code,
                    address: r.address,
                    last_changed: now,
                    valid_from: r.valid_from.unwrap_or(now),
                })
                .collect();
            if merge {
                for address in new {
                    stored_future.retain(|s| s.type_code != address.type_code);
                    stored_future.push(address);
                }
            } else {
                *stored_future = new;
            }
        }
    });
    Ok(format!("<{operation}Response xmlns=\"{CP}\"/>"))
}

/// The addresses of the list `list` (None when the list was omitted; an empty list when it was
/// sent empty or nil), checking each; problems go to `errors`.
fn received_list(
    shared: &Shared,
    update: Node<'_, '_>,
    list: &str,
    item: &str,
    future: bool,
    errors: &mut Vec<ValidationError>,
) -> Option<Vec<Received>> {
    let node = child(update, CP, list)?;
    let mut out = Vec::new();
    for (i, address) in children(node, COMMON, item).enumerate() {
        let at = format!("{list}[{i}]");
        let mut error = |property: &str, message: String, value: &str| {
            errors.push(ValidationError {
                property: format!("{at}.{property}"),
                message,
                value: value.to_owned(),
            });
        };
        let type_value = child_text(address, COMMON, "TypeCodeValue");
        let code_value =
            child(address, COMMON, "Type").and_then(|t| child_text(t, COMMON, "CodeValue"));
        let type_code = match (type_value, code_value) {
            (Some(a), Some(b)) if a != b => {
                error(
                    "TypeCodeValue",
                    format!("TypeCodeValue {a} differs from Type/CodeValue {b}."),
                    a,
                );
                continue;
            }
            (Some(a), _) | (None, Some(a)) => a.to_owned(),
            (None, None) => {
                error(
                    "TypeCodeValue",
                    "The address has no type (TypeCodeValue or Type/CodeValue).".to_owned(),
                    "",
                );
                continue;
            }
        };
        let Some(value) = child_text(address, COMMON, "Address") else {
            error("Address", format!("The {type_code} address is empty."), "");
            continue;
        };
        let valid_from = if future {
            match child_text(address, COMMON, "ValidFrom").map(parse_time) {
                Some(Ok(t)) => Some(t),
                Some(Err(e)) => {
                    error("ValidFrom", e, "");
                    continue;
                }
                None => {
                    error(
                        "ValidFrom",
                        format!("The future {type_code} address has no ValidFrom."),
                        value,
                    );
                    continue;
                }
            }
        } else {
            None
        };
        if type_code == E_DS
            && let Err(message) = resolve(shared, value)
        {
            error("Address", message, value);
            continue;
        }
        out.push(Received {
            type_code,
            address: value.to_owned(),
            valid_from,
        });
    }
    Some(out)
}

/// An `xs:dateTime`; without a zone it is read as UTC.
fn parse_time(text: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let zoned = text.ends_with('Z')
        || text
            .rsplit_once('T')
            .is_some_and(|(_, t)| t.contains('+') || t.contains('-'));
    let text_z = if zoned {
        text.to_owned()
    } else {
        format!("{text}Z")
    };
    time::OffsetDateTime::parse(&text_z, &Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| format!("ValidFrom {text:?} is not an xs:dateTime: {e}"))
}

/// Checks that an `E_DS` URL parses and every serial it names is published and visible now.
fn resolve(shared: &Shared, url: &str) -> Result<Vec<DirectoryEntry>, String> {
    let parsed = LdapUrl::parse(url)
        .map_err(|e| format!("The E_DS address is not a valid LDAP URL: {e:#}"))?;
    let lookups = shared
        .directory
        .lookup(&parsed)
        .map_err(|e| format!("The E_DS address {url} cannot be resolved: {e:#}"))?;
    let mut found = Vec::new();
    for (serial, lookup) in lookups {
        match lookup {
            Lookup::Found(entries) => found.extend(entries),
            Lookup::NotYetVisible(_) => {
                return Err(format!(
                    "The E_DS address {url} names the certificate serial {serial}, which is not \
                     (yet) published in the directory at {}.",
                    parsed.host
                ));
            }
            Lookup::Unknown => {
                return Err(format!(
                    "The E_DS address {url} names the certificate serial {serial}, which the \
                     directory at {} does not have.",
                    parsed.host
                ));
            }
        }
    }
    Ok(found)
}

// ---- SearchCertificatesByLdapUrl ---------------------------------------------------------

fn offset_time(name: &str, unix: i64) -> String {
    format!(
        "<b:{name} xmlns:c=\"{SYSTEM}\"><c:DateTime>{}</c:DateTime><c:OffsetMinutes>0</c:OffsetMinutes></b:{name}>",
        time_xml(unix)
    )
}

fn search(shared: &Shared, element: Node<'_, '_>) -> Result<String, OpFault> {
    let url = child_text(element, CP, "ldapUrl").unwrap_or_default();
    let invalid = |message: String| {
        OpFault::Validation(vec![ValidationError {
            property: "ldapUrl".to_owned(),
            message,
            value: url.to_owned(),
        }])
    };
    let parsed = LdapUrl::parse(url).map_err(|e| invalid(format!("{e:#}")))?;
    let found = shared
        .directory
        .search(&parsed)
        .map_err(|e| invalid(format!("{e:#}")))?;
    let candidates: String = found
        .iter()
        .map(|c| {
            format!(
                "<b:CertificateCandidate><b:CertificateSerialNumber>{}</b:CertificateSerialNumber><b:CnName>{}</b:CnName><b:FallbackSource>None</b:FallbackSource>{}{}<b:ValidForEncryption>{}</b:ValidForEncryption><b:ValidForSigning>{}</b:ValidForSigning></b:CertificateCandidate>",
                escape(&c.serial),
                escape(&c.common_name),
                offset_time("NotAfter", c.not_after),
                offset_time("NotBefore", c.not_before),
                c.valid_for_encryption,
                c.valid_for_signing
            )
        })
        .collect();
    Ok(format!(
        "<SearchCertificatesByLdapUrlResponse xmlns=\"{CP}\"><SearchCertificatesByLdapUrlResult xmlns:b=\"{SEARCH_RESULT}\" xmlns:i=\"{XSI}\"><b:ActualLdapUrl>{}</b:ActualLdapUrl><b:MatchingCertificates>{candidates}</b:MatchingCertificates></SearchCertificatesByLdapUrlResult></SearchCertificatesByLdapUrlResponse>",
        escape(parsed.build())
    ))
}

// ---- GetCertificateDetailsFor* -----------------------------------------------------------

fn certificate_details(
    shared: &Shared,
    her_id: i32,
    operation: &str,
    encryption: bool,
) -> Result<String, OpFault> {
    if shared.parties.get(her_id).is_none() {
        return Err(not_found(her_id));
    }
    let url = shared
        .parties
        .current_address(her_id, E_DS)
        .ok_or_else(|| {
            OpFault::generic(
                "NotFound",
                format!("The communication party {her_id} has no E_DS address."),
            )
        })?;
    let entries = resolve(shared, &url).map_err(|e| OpFault::generic("CertificateNotFound", e))?;
    let use_name = if encryption {
        "encryption (keyEncipherment)"
    } else {
        "signature validation (nonRepudiation)"
    };
    let chosen = entries
        .iter()
        .find(|e| {
            if encryption {
                e.valid_for_encryption
            } else {
                e.valid_for_signing
            }
        })
        .ok_or_else(|| {
            OpFault::generic(
                "CertificateNotFound",
                format!(
                    "The E_DS address of {her_id} ({url}) names no certificate valid for \
                     {use_name}."
                ),
            )
        })?;
    Ok(format!(
        "<{operation}Response xmlns=\"{CP}\"><{operation}Result xmlns:b=\"{CERTIFICATE_DETAILS}\" xmlns:i=\"{XSI}\"><b:Certificate>{}</b:Certificate><b:LdapUrl>{}</b:LdapUrl></{operation}Result></{operation}Response>",
        base64::engine::general_purpose::STANDARD.encode(&chosen.cert_der),
        escape(&url)
    ))
}

// ---- GetLdapSearchProviders --------------------------------------------------------------

fn providers(shared: &Shared) -> String {
    let list: String = shared
        .directory
        .providers()
        .iter()
        .map(|p| {
            format!(
                "<b:LdapSearchProvider><b:BaseUrl>{}</b:BaseUrl><b:DisplayName>{}</b:DisplayName><b:DistinguishedName>{}</b:DistinguishedName></b:LdapSearchProvider>",
                escape(p.base_url()),
                escape(&p.display_name),
                escape(&p.base)
            )
        })
        .collect();
    format!(
        "<GetLdapSearchProvidersResponse xmlns=\"{CP}\"><GetLdapSearchProvidersResult xmlns:b=\"{SEARCH_RESULT}\" xmlns:i=\"{XSI}\">{list}</GetLdapSearchProvidersResult></GetLdapSearchProvidersResponse>"
    )
}
