//! WCF's DataContractSerializer and member order (`protocols/no-nhn.md` §2.3): members of a
//! data contract are read in their declared order (alphabetical, base type first); a member
//! that arrives after one that follows it is not read — it is silently ignored, and the
//! property keeps its default. [`prune`] removes exactly those members from a request, so
//! that the rest can be validated and applied as WCF would.
//!
//! Elements that are no member of the contract at all are left in place: the schema
//! validation that follows refuses them.

use std::ops::Range;

use anyhow::{Context, Result};

use super::ns::{COMMON, CP};

/// The data contracts whose order is enforced, and what a member's content is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contract {
    UpdateOrganizationDetails,
    UpdateServiceDetails,
    OrganizationUpdate,
    ServiceUpdate,
    ElectronicAddresses,
    FutureElectronicAddresses,
    PhysicalAddresses,
    Codes,
    ElectronicAddress,
    FutureElectronicAddress,
    PhysicalAddress,
    Code,
    Period,
    /// Text, or a contract without order rules here.
    Leaf,
}

type Member = (&'static str, &'static str, Contract);

const ELECTRONIC_ADDRESS: [Member; 5] = [
    (COMMON, "Address", Contract::Leaf),
    (COMMON, "Inherited", Contract::Leaf),
    (COMMON, "LastChanged", Contract::Leaf),
    (COMMON, "Type", Contract::Code),
    (COMMON, "TypeCodeValue", Contract::Leaf),
];

impl Contract {
    /// The members in order (records), or None for arrays and leaves.
    fn members(self) -> Option<Vec<Member>> {
        use Contract::*;
        Some(match self {
            UpdateOrganizationDetails => vec![(CP, "org", OrganizationUpdate)],
            UpdateServiceDetails => vec![(CP, "t", ServiceUpdate)],
            OrganizationUpdate => vec![
                (CP, "BusinessType", Code),
                (CP, "DisplayName", Leaf),
                (CP, "ElectronicAddresses", ElectronicAddresses),
                (CP, "FutureElectronicAddresses", FutureElectronicAddresses),
                (CP, "HerId", Leaf),
                (CP, "PhysicalAddresses", PhysicalAddresses),
                (CP, "Valid", Period),
            ],
            ServiceUpdate => vec![
                (CP, "Description", Leaf),
                (CP, "ElectronicAddresses", ElectronicAddresses),
                (CP, "FutureElectronicAddresses", FutureElectronicAddresses),
                (CP, "HerId", Leaf),
                (CP, "LocationDescription", Leaf),
                (CP, "PhysicalAddresses", PhysicalAddresses),
                (CP, "Properties", Codes),
                (CP, "ServiceCode", Code),
                (CP, "Valid", Period),
            ],
            ElectronicAddress => ELECTRONIC_ADDRESS.to_vec(),
            FutureElectronicAddress => {
                let mut members = ELECTRONIC_ADDRESS.to_vec();
                members.push((COMMON, "ValidFrom", Leaf));
                members
            }
            PhysicalAddress => vec![
                (COMMON, "City", Leaf),
                (COMMON, "Country", Code),
                (COMMON, "Description", Leaf),
                (COMMON, "Inherited", Leaf),
                (COMMON, "LastChanged", Leaf),
                (COMMON, "PostalCode", Leaf),
                (COMMON, "Postbox", Leaf),
                (COMMON, "StreetAddress", Leaf),
                (COMMON, "Type", Code),
                (COMMON, "TypeCodeValue", Leaf),
            ],
            Code => vec![
                (COMMON, "Active", Leaf),
                (COMMON, "CodeText", Leaf),
                (COMMON, "CodeValue", Leaf),
                (COMMON, "LongDescription", Leaf),
                (COMMON, "OID", Leaf),
                (COMMON, "SimpleType", Leaf),
            ],
            Period => vec![(COMMON, "From", Leaf), (COMMON, "To", Leaf)],
            _ => return None,
        })
    }

    /// The item of an array contract.
    fn item(self) -> Option<Member> {
        use Contract::*;
        Some(match self {
            ElectronicAddresses => (COMMON, "ElectronicAddress", ElectronicAddress),
            FutureElectronicAddresses => {
                (COMMON, "FutureElectronicAddress", FutureElectronicAddress)
            }
            PhysicalAddresses => (COMMON, "PhysicalAddress", PhysicalAddress),
            Codes => (COMMON, "Code", Code),
            _ => return None,
        })
    }
}

/// `source` (a whole envelope) without the members WCF would ignore in the body's operation
/// element, and the paths of what was removed. Operations without ordered contracts come back
/// unchanged.
pub(super) fn prune(source: &str, body_ns: &str) -> Result<(String, Vec<String>)> {
    let doc = roxmltree::Document::parse(source).context("the request is not well-formed XML")?;
    let Some(operation) = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name((body_ns, "Body")))
        .and_then(|body| body.children().find(roxmltree::Node::is_element))
    else {
        return Ok((source.to_owned(), Vec::new()));
    };
    let contract = match (
        operation.tag_name().namespace(),
        operation.tag_name().name(),
    ) {
        (Some(CP), "UpdateOrganizationDetails") => Contract::UpdateOrganizationDetails,
        (Some(CP), "UpdateServiceDetails") => Contract::UpdateServiceDetails,
        _ => return Ok((source.to_owned(), Vec::new())),
    };
    let mut cuts = Vec::new();
    let mut dropped = Vec::new();
    walk(operation, contract, "", &mut cuts, &mut dropped);
    cuts.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(source.len());
    let mut at = 0;
    for cut in cuts {
        out.push_str(&source[at..cut.start]);
        at = cut.end;
    }
    out.push_str(&source[at..]);
    Ok((out, dropped))
}

fn walk(
    node: roxmltree::Node<'_, '_>,
    contract: Contract,
    path: &str,
    cuts: &mut Vec<Range<usize>>,
    dropped: &mut Vec<String>,
) {
    let join = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}/{name}")
        }
    };
    if let Some((namespace, name, item)) = contract.item() {
        for (i, child) in node
            .children()
            .filter(|c| c.has_tag_name((namespace, name)))
            .enumerate()
        {
            walk(child, item, &join(&format!("{name}[{i}]")), cuts, dropped);
        }
        return;
    }
    let Some(members) = contract.members() else {
        return;
    };
    let mut next = 0;
    for child in node.children().filter(roxmltree::Node::is_element) {
        let name = child.tag_name().name();
        let position = members
            .iter()
            .position(|(namespace, member, _)| child.has_tag_name((*namespace, *member)));
        match position {
            Some(at) if at >= next => {
                next = at + 1;
                walk(child, members[at].2, &join(name), cuts, dropped);
            }
            Some(_) => {
                cuts.push(child.range());
                dropped.push(join(name));
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_after_a_later_one_are_dropped_and_unknown_ones_kept() -> Result<()> {
        let source = concat!(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>"#,
            r#"<UpdateOrganizationDetails xmlns="http://register.nhn.no/CommunicationParty" xmlns:c="http://register.nhn.no/Common">"#,
            r#"<org><HerId>1</HerId><ElectronicAddresses><c:ElectronicAddress>"#,
            r#"<c:TypeCodeValue>E_DS</c:TypeCodeValue><c:Address>x</c:Address></c:ElectronicAddress>"#,
            r#"</ElectronicAddresses><Unknown/><Valid/></org></UpdateOrganizationDetails></s:Body></s:Envelope>"#,
        );
        let (pruned, dropped) = prune(source, crate::ar::ns::SOAP11)?;
        assert_eq!(dropped, ["org/ElectronicAddresses"]);
        assert!(
            pruned.contains("<org><HerId>1</HerId><Unknown/><Valid/></org>"),
            "{pruned}"
        );

        let in_order = source
            .replace(
                "<HerId>1</HerId><ElectronicAddresses>",
                "<ElectronicAddresses>",
            )
            .replace(
                "</ElectronicAddresses>",
                "</ElectronicAddresses><HerId>1</HerId>",
            );
        let (pruned, dropped) = prune(&in_order, crate::ar::ns::SOAP11)?;
        assert_eq!(
            dropped,
            ["org/ElectronicAddresses/ElectronicAddress[0]/Address"]
        );
        assert!(
            pruned.contains(
                "<c:ElectronicAddress><c:TypeCodeValue>E_DS</c:TypeCodeValue></c:ElectronicAddress>"
            ),
            "{pruned}"
        );
        Ok(())
    }
}
