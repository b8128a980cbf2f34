//! Nordic identities: which organisation a certificate belongs to, read from its subject.
//!
//! Owns the rules that turn subject attributes into [`NordicIdentity`] values. The rules work
//! on attribute *values* (never on a printed DN, which tools print differently), so they are
//! unit-tested with literal strings.
//!
//! Promises, per scheme (sources: `shared/protocols/*.md`):
//! - DK OCES3: `organizationIdentifier` = `NTRDK-<8 digits>`; the UUID comes from
//!   `serialNumber` = `UI:DK-<O|E|P>:<type>:<uuid>` (organisation, employee, person), kept as
//!   written in the certificate.
//! - DK OCES2: `serialNumber` = `CVR:<8 digits>-FID:<id>` / `-UID:<id>` / `-RID:<id>`; when
//!   the serialNumber says nothing, `O` = `<name> // CVR:<8 digits>` still gives the CVR.
//! - SE: an HSA-ID in `serialNumber`. In a certificate SITHS issued, whatever `serialNumber`
//!   holds (up to 32 characters, eFrikort's HsaId type) is the HSA-ID, whatever its shape.
//!   Elsewhere the shape must say so: `SE` + 10 or more digits, optionally `-` +
//!   letters and digits (`SE2321000016-39KJ`, `SE13813023981`), the test form
//!   `TSTNMT2321000156-B02`, either after a service-tree prefix ending in `_`
//!   (`T_SERVICES_SE121212121212-121A`). A certificate without `serialNumber` has none.
//! - NO: `organizationIdentifier` = `NTRNO-<9 digits>` (SEID 2), or a `serialNumber` of
//!   exactly 9 digits (SEID 1) when the subject's country is NO or absent and the subject is
//!   not a person's: a subject with a given name or surname (a personal certificate, whose
//!   `serialNumber` identifies the person) carries no organisation number.
//! - FI: `organizationIdentifier` = `NTRFI-<Y-tunnus>` (`1234567-8`); a `serialNumber` that is
//!   a Y-tunnus, or a SOTE organisation OID under Finland's arc `1.2.246.`, when the country is
//!   FI or absent. fi-kanta.md could not confirm where DVV puts these, so all three are read;
//!   `identifier` is the SOTE OID when there is one, else the raw attribute value.
//! - At most one identity per scheme; a value that fits no rule gives none.

use x509_parser::x509::X509Name;

use super::NordicIdentity;

const OID_ORGANIZATION_IDENTIFIER: &str = "2.5.4.97";
const OID_SERIAL_NUMBER: &str = "2.5.4.5";
const OID_ORGANIZATION: &str = "2.5.4.10";
const OID_COUNTRY: &str = "2.5.4.6";
const OID_GIVEN_NAME: &str = "2.5.4.42";
const OID_SURNAME: &str = "2.5.4.4";

/// The subject attributes the identity rules look at (first value of each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubjectIds<'a> {
    /// `organizationIdentifier` (2.5.4.97).
    pub organization_identifier: Option<&'a str>,
    /// `serialNumber` (2.5.4.5) — the subject attribute, not the certificate serial.
    pub serial_number: Option<&'a str>,
    /// `O` (2.5.4.10).
    pub organization: Option<&'a str>,
    /// `C` (2.5.4.6).
    pub country: Option<&'a str>,
    /// Whether the subject names a person: it has a `givenName` (2.5.4.42) or `surname`
    /// (2.5.4.4).
    pub person: bool,
    /// Whether SITHS issued the certificate (its issuer's CN or O names SITHS).
    pub siths: bool,
}

impl<'a> SubjectIds<'a> {
    /// Picks the attributes out of a parsed subject. Values that are not strings (or not
    /// valid UTF-8) are skipped.
    pub fn from_name(name: &'a X509Name<'a>) -> SubjectIds<'a> {
        let mut ids = SubjectIds::default();
        for attr in name.iter_attributes() {
            let oid = attr.attr_type().to_id_string();
            if oid == OID_GIVEN_NAME || oid == OID_SURNAME {
                ids.person = true;
                continue;
            }
            let Ok(value) = attr.as_str() else { continue };
            let slot = match oid.as_str() {
                OID_ORGANIZATION_IDENTIFIER => &mut ids.organization_identifier,
                OID_SERIAL_NUMBER => &mut ids.serial_number,
                OID_ORGANIZATION => &mut ids.organization,
                OID_COUNTRY => &mut ids.country,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        ids
    }
}

/// The identities in a parsed subject.
pub fn identities_in_name(name: &X509Name<'_>) -> Vec<NordicIdentity> {
    identities(&SubjectIds::from_name(name))
}

/// The identities in a certificate's subject, read knowing its issuer (a SITHS-issued
/// certificate's `serialNumber` is its HSA-ID whatever its shape).
pub fn identities_in_certificate(
    subject: &X509Name<'_>,
    issuer: &X509Name<'_>,
) -> Vec<NordicIdentity> {
    let siths = issuer
        .iter_common_name()
        .chain(issuer.iter_organization())
        .filter_map(|a| a.as_str().ok())
        .any(|v| v.to_ascii_uppercase().contains("SITHS"));
    identities(&SubjectIds {
        siths,
        ..SubjectIds::from_name(subject)
    })
}

/// The identities these attributes carry (usually zero or one).
pub fn identities(ids: &SubjectIds<'_>) -> Vec<NordicIdentity> {
    let org_id = ids.organization_identifier.map(str::trim);
    let serial = ids.serial_number.map(str::trim);
    let country = ids.country.map(str::trim);
    let country_is = |c: &str| country.is_none_or(|v| v.eq_ignore_ascii_case(c));
    let mut found = Vec::new();

    // Denmark.
    if let Some(cvr) = org_id
        .and_then(|v| v.strip_prefix("NTRDK-"))
        .filter(|c| is_digits(c, 8))
    {
        found.push(NordicIdentity::DkOces3 {
            cvr: cvr.to_string(),
            uuid: serial.and_then(oces3_uuid).map(str::to_string),
        });
    } else if let Some(oces2) = serial.and_then(oces2) {
        found.push(oces2);
    } else if let Some(cvr) = ids.organization.and_then(cvr_in_organization) {
        found.push(NordicIdentity::DkOces2 {
            cvr: cvr.to_string(),
            fid: None,
            uid: None,
            rid: None,
        });
    }

    // Sweden.
    let siths_serial =
        |s: &&str| ids.siths && !s.is_empty() && s.len() <= 32 && !s.contains(char::is_whitespace);
    if let Some(hsa_id) = serial.filter(|s| siths_serial(s) || is_hsa_id(s)) {
        found.push(NordicIdentity::SeHsaId {
            hsa_id: hsa_id.to_string(),
        });
    }

    // Norway.
    if let Some(orgnr) = org_id
        .and_then(|v| v.strip_prefix("NTRNO-"))
        .filter(|n| is_digits(n, 9))
    {
        found.push(NordicIdentity::NoOrgNumber {
            orgnr: orgnr.to_string(),
            seid: 2,
        });
    } else if let Some(orgnr) =
        serial.filter(|s| is_digits(s, 9) && country_is("NO") && !ids.person)
    {
        found.push(NordicIdentity::NoOrgNumber {
            orgnr: orgnr.to_string(),
            seid: 1,
        });
    }

    // Finland.
    let fi_org_id = org_id.filter(|v| v.strip_prefix("NTRFI-").is_some_and(is_y_tunnus));
    let fi_serial = serial.filter(|s| country_is("FI") && (is_y_tunnus(s) || is_finnish_oid(s)));
    if fi_org_id.is_some() || fi_serial.is_some() {
        let business_id = fi_org_id
            .and_then(|v| v.strip_prefix("NTRFI-"))
            .or(fi_serial.filter(|s| is_y_tunnus(s)))
            .map(str::to_string);
        let identifier = fi_serial
            .filter(|s| is_finnish_oid(s))
            .or(fi_org_id)
            .or(fi_serial)
            .unwrap_or_default()
            .to_string();
        found.push(NordicIdentity::FiOrganisation {
            business_id,
            identifier,
        });
    }

    found
}

fn is_digits(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
}

/// `UI:DK-O:G:<uuid>` (and `-E:`, `-P:`) → the UUID, as written.
fn oces3_uuid(serial: &str) -> Option<&str> {
    let rest = serial.strip_prefix("UI:DK-")?;
    let mut parts = rest.splitn(3, ':');
    let role = parts.next()?;
    let _kind = parts.next()?;
    let uuid = parts.next()?;
    (matches!(role, "O" | "E" | "P") && is_uuid(uuid)).then_some(uuid)
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `CVR:<8 digits>-FID:<id>` / `-UID:` / `-RID:`.
fn oces2(serial: &str) -> Option<NordicIdentity> {
    let rest = serial.strip_prefix("CVR:")?;
    let (cvr, tail) = rest.split_once('-')?;
    if !is_digits(cvr, 8) {
        return None;
    }
    let (kind, id) = tail.split_once(':')?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let id = Some(id.to_string());
    let (fid, uid, rid) = match kind {
        "FID" => (id, None, None),
        "UID" => (None, id, None),
        "RID" => (None, None, id),
        _ => return None,
    };
    Some(NordicIdentity::DkOces2 {
        cvr: cvr.to_string(),
        fid,
        uid,
        rid,
    })
}

/// `<name> // CVR:<8 digits>` → the CVR.
fn cvr_in_organization(o: &str) -> Option<&str> {
    let (_, tail) = o.rsplit_once("// CVR:")?;
    let cvr = tail.trim();
    is_digits(cvr, 8).then_some(cvr)
}

/// An HSA-ID: `SE` or the test prefix `TSTNMT`, then at least 10 digits, then optionally
/// `-` and letters/digits; at most 32 characters (eFrikort's HsaId type).
fn is_hsa_id(s: &str) -> bool {
    if s.len() > 32 {
        return false;
    }
    // A service-tree prefix (`T_SERVICES_`) before the country code.
    let s = match s.rsplit_once('_') {
        Some((prefix, rest))
            if prefix
                .split('_')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric())) =>
        {
            rest
        }
        Some(_) => return false,
        None => s,
    };
    let Some(rest) = s.strip_prefix("SE").or_else(|| s.strip_prefix("TSTNMT")) else {
        return false;
    };
    let (digits, suffix) = match rest.split_once('-') {
        Some((d, suffix)) => (d, Some(suffix)),
        None => (rest, None),
    };
    let digits_ok = digits.len() >= 10 && digits.bytes().all(|b| b.is_ascii_digit());
    let suffix_ok =
        suffix.is_none_or(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_alphanumeric()));
    digits_ok && suffix_ok
}

/// A Y-tunnus: 7 digits, `-`, 1 digit (the check digit is not verified: test identities
/// often have a wrong one, and the prefix or country already says it is Finnish).
fn is_y_tunnus(s: &str) -> bool {
    match s.split_once('-') {
        Some((body, check)) => is_digits(body, 7) && is_digits(check, 1),
        None => false,
    }
}

/// An OID under Finland's arc 1.2.246 (SOTE organisation register OIDs live there).
fn is_finnish_oid(s: &str) -> bool {
    s.strip_prefix("1.2.246.").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .split('.')
                .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids<'a>(
        organization_identifier: Option<&'a str>,
        serial_number: Option<&'a str>,
        organization: Option<&'a str>,
        country: Option<&'a str>,
    ) -> Vec<NordicIdentity> {
        identities(&SubjectIds {
            organization_identifier,
            serial_number,
            organization,
            country,
            person: false,
            siths: false,
        })
    }

    #[test]
    fn a_personal_norwegian_certificate_is_not_an_organisation() {
        let person = SubjectIds {
            organization_identifier: None,
            serial_number: Some("983544622"),
            organization: None,
            country: Some("NO"),
            person: true,
            siths: false,
        };
        assert_eq!(identities(&person), vec![]);
        // The same subject without a name of a person is a SEID 1 enterprise certificate.
        assert_eq!(
            identities(&SubjectIds {
                person: false,
                ..person
            }),
            vec![NordicIdentity::NoOrgNumber {
                orgnr: "983544622".into(),
                seid: 1
            }]
        );
    }

    #[test]
    fn oces3_organisation_certificate() {
        assert_eq!(
            ids(
                Some("NTRDK-33257872"),
                Some("UI:DK-O:G:8d3fa047-c77e-47e4-bdd2-e91488610ce6"),
                Some("Sundhedsdatastyrelsen"),
                Some("DK")
            ),
            vec![NordicIdentity::DkOces3 {
                cvr: "33257872".into(),
                uuid: Some("8d3fa047-c77e-47e4-bdd2-e91488610ce6".into()),
            }]
        );
    }

    #[test]
    fn oces3_employee_and_person_keep_the_uuid_as_written() {
        for role in ["E", "P"] {
            let serial = format!("UI:DK-{role}:G:0443B8AE-dfd0-48c1-8af4-b9993cbce492");
            assert_eq!(
                ids(Some("NTRDK-12345678"), Some(&serial), None, Some("DK")),
                vec![NordicIdentity::DkOces3 {
                    cvr: "12345678".into(),
                    uuid: Some("0443B8AE-dfd0-48c1-8af4-b9993cbce492".into()),
                }]
            );
        }
    }

    #[test]
    fn oces3_without_a_uuid_still_has_the_cvr() {
        assert_eq!(
            ids(
                Some("NTRDK-12345678"),
                Some("UI:DK-X:G:not-a-uuid"),
                None,
                None
            ),
            vec![NordicIdentity::DkOces3 {
                cvr: "12345678".into(),
                uuid: None
            }]
        );
        assert_eq!(ids(Some("NTRDK-1234567"), None, None, None), vec![]);
    }

    #[test]
    fn oces2_fid_uid_rid() {
        assert_eq!(
            ids(
                None,
                Some("CVR:30808460-FID:94731315"),
                Some("DANID A/S // CVR:30808460"),
                Some("DK")
            ),
            vec![NordicIdentity::DkOces2 {
                cvr: "30808460".into(),
                fid: Some("94731315".into()),
                uid: None,
                rid: None,
            }]
        );
        assert_eq!(
            ids(None, Some("CVR:30808460-UID:1234567890"), None, None),
            vec![NordicIdentity::DkOces2 {
                cvr: "30808460".into(),
                fid: None,
                uid: Some("1234567890".into()),
                rid: None,
            }]
        );
        assert_eq!(
            ids(None, Some("CVR:30808460-RID:45162355"), None, None),
            vec![NordicIdentity::DkOces2 {
                cvr: "30808460".into(),
                fid: None,
                uid: None,
                rid: Some("45162355".into()),
            }]
        );
        assert_eq!(ids(None, Some("CVR:3080846-FID:1"), None, None), vec![]);
        assert_eq!(ids(None, Some("CVR:30808460-XID:1"), None, None), vec![]);
    }

    #[test]
    fn oces2_cvr_from_the_organisation_name() {
        assert_eq!(
            ids(
                None,
                None,
                Some("TRIFORK SERVICES A/S // CVR:25520041"),
                Some("DK")
            ),
            vec![NordicIdentity::DkOces2 {
                cvr: "25520041".into(),
                fid: None,
                uid: None,
                rid: None,
            }]
        );
        assert_eq!(ids(None, None, Some("Apoteket // CVR:123"), None), vec![]);
    }

    #[test]
    fn swedish_hsa_ids() {
        for hsa in [
            "SE2321000016-39KJ",
            "SE5565594230-BCQ",
            "SE13813023981",
            "TSTNMT2321000156-B02",
            "T_SERVICES_SE121212121212-121A",
        ] {
            assert_eq!(
                ids(None, Some(hsa), Some("Inera AB"), Some("SE")),
                vec![NordicIdentity::SeHsaId { hsa_id: hsa.into() }],
                "{hsa}"
            );
        }
        for not_hsa in [
            "SE232100-39KJ",
            "SE2321000016-",
            "SE2321000016-39_K",
            "_SE121212121212-121A",
            "T__SE121212121212-121A",
            "se2321000016-39KJ",
        ] {
            assert_eq!(
                ids(None, Some(not_hsa), None, Some("SE")),
                vec![],
                "{not_hsa}"
            );
        }
    }

    #[test]
    fn a_siths_issued_certificate_s_serial_number_is_its_hsa_id_whatever_its_shape() {
        let siths = |serial: Option<&'static str>| {
            identities(&SubjectIds {
                organization_identifier: None,
                serial_number: serial,
                organization: Some("Region Testland"),
                country: Some("se"),
                person: false,
                siths: true,
            })
        };
        for hsa in [
            "SE2321000016-SERVICES-FK1",
            "HSASERVICES-106J",
            "se2321000016-39KJ",
        ] {
            assert_eq!(
                siths(Some(hsa)),
                vec![NordicIdentity::SeHsaId { hsa_id: hsa.into() }],
                "{hsa}"
            );
        }
        // Nothing is invented: no serialNumber, or one longer than eFrikort's 32 characters.
        assert_eq!(siths(None), vec![]);
        assert_eq!(siths(Some("SE2321000016-0123456789012345678901")), vec![]);
        // The same odd shapes from another issuer are not taken for HSA-IDs.
        assert_eq!(
            ids(None, Some("HSASERVICES-106J"), None, Some("SE")),
            vec![]
        );
    }

    #[test]
    fn norwegian_seid2_and_seid1() {
        assert_eq!(
            ids(
                Some("NTRNO-100101696"),
                None,
                Some("TESTVIRKSOMHET"),
                Some("NO")
            ),
            vec![NordicIdentity::NoOrgNumber {
                orgnr: "100101696".into(),
                seid: 2
            }]
        );
        assert_eq!(
            ids(
                None,
                Some("983544622"),
                Some("HELSEDIREKTORATET"),
                Some("NO")
            ),
            vec![NordicIdentity::NoOrgNumber {
                orgnr: "983544622".into(),
                seid: 1
            }]
        );
        assert_eq!(
            ids(None, Some("983544622"), None, None),
            vec![NordicIdentity::NoOrgNumber {
                orgnr: "983544622".into(),
                seid: 1
            }]
        );
        // Nine digits in a Danish certificate are not a Norwegian organisation number.
        assert_eq!(ids(None, Some("983544622"), None, Some("DK")), vec![]);
        assert_eq!(
            ids(Some("NTRNO-98354462"), Some("98354462"), None, Some("NO")),
            vec![]
        );
    }

    #[test]
    fn finnish_business_id_and_sote_oid() {
        assert_eq!(
            ids(
                Some("NTRFI-0245437-2"),
                None,
                Some("Apteekki Oy"),
                Some("FI")
            ),
            vec![NordicIdentity::FiOrganisation {
                business_id: Some("0245437-2".into()),
                identifier: "NTRFI-0245437-2".into(),
            }]
        );
        assert_eq!(
            ids(
                Some("NTRFI-0245437-2"),
                Some("1.2.246.10.12345678.10.0"),
                None,
                Some("FI")
            ),
            vec![NordicIdentity::FiOrganisation {
                business_id: Some("0245437-2".into()),
                identifier: "1.2.246.10.12345678.10.0".into(),
            }]
        );
        assert_eq!(
            ids(None, Some("1.2.246.10.12345678.10.0"), None, Some("FI")),
            vec![NordicIdentity::FiOrganisation {
                business_id: None,
                identifier: "1.2.246.10.12345678.10.0".into(),
            }]
        );
        assert_eq!(
            ids(None, Some("1234567-1"), None, Some("FI")),
            vec![NordicIdentity::FiOrganisation {
                business_id: Some("1234567-1".into()),
                identifier: "1234567-1".into(),
            }]
        );
        assert_eq!(ids(Some("NTRFI-123456-7"), None, None, Some("FI")), vec![]);
        assert_eq!(ids(None, Some("1.2.246."), None, Some("FI")), vec![]);
        assert_eq!(ids(None, Some("1234567-1"), None, Some("SE")), vec![]);
    }

    #[test]
    fn values_that_fit_no_rule_give_no_identity() {
        for serial in [
            "",
            "12345",
            "ABC-123",
            "PID:9208-2002-2-123456789012",
            "UI:DK-O:G:",
            "1.2.840.113549",
            "12345678901",
        ] {
            assert_eq!(ids(None, Some(serial), None, None), vec![], "{serial:?}");
        }
        for org_id in [
            "NTRSE-5565594230",
            "VATDK-33257872",
            "NTRDK-",
            "ntrdk-33257872",
        ] {
            assert_eq!(ids(Some(org_id), None, None, None), vec![], "{org_id:?}");
        }
        assert_eq!(ids(None, None, None, None), vec![]);
    }
}
