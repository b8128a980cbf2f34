use certvakt_plugin_api::testing::FakeHost;
use certvakt_plugin_api::{
    CertificateContext, CertificateInfo, ErrorKind, PluginError, StepContext, StepOutcome,
};
use certvakt_soap::read;
use certvakt_testkit::{CaShape, LeafSpec, TestCa};
use serde_json::{Value, json};

use crate::DkFmk;
use crate::fmk::FmkFault;
use crate::message::{self, E6, MC, MC160, Operation, Whitelisting};
use crate::settings::{FmkVersion, Settings};

fn settings_value() -> Value {
    json!({
        "cvr": "25450442",
        "fmk_endpoint": "https://fmk.example/fmk12/ws/MedicineCard",
        "sts_endpoint": "https://sts.example/sts/services/NewSecurityTokenService",
        "pharmacy_name": "Hjørring Svane Apotek",
        "pharmacy_address": ["Brogade 111", "9800 Hjørring"],
        "pharmacy_ean": "5790000171248",
        "apoteker_given_name": "Ane",
        "apoteker_surname": "Jensen",
        "apoteker_cpr": "2604276962",
    })
}

fn settings(version: FmkVersion) -> Settings {
    let mut value = settings_value();
    if version == FmkVersion::V160 {
        value["fmk_version"] = json!("1.6.0");
    }
    match Settings::parse(&value) {
        Ok(settings) => settings,
        Err(problems) => panic!("{problems:?}"),
    }
}

fn entry() -> Whitelisting {
    Whitelisting {
        source: "CVR".into(),
        cvr: "25450442".into(),
        foces_id: "9b2e61d0-3c4f-4a8e-b5d7-1f0e2c3a4b5d".into(),
        cert_hash: Some("7FA65D27408F9B0A4A54F650D4D9E4A43941D0A1".into()),
    }
}

#[test]
fn every_settings_problem_is_named_and_the_cpr_is_not_repeated() {
    let mut value = settings_value();
    value["cvr"] = json!("2545044");
    value["apoteker_cpr"] = json!("26042769");
    value["fmk_endpoint"] = json!("http://fmk.example");
    value["mode"] = json!("sometimes");
    value["pharmacy_address"] = json!(["1", "2", "3", "4", "5", "6"]);
    let problems = Settings::parse(&value).err().unwrap_or_default();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "cvr",
        "apoteker_cpr",
        "fmk_endpoint",
        "mode",
        "pharmacy_address",
    ] {
        assert!(keys.contains(&key), "{key} not in {keys:?}");
    }
    let said = format!("{problems:?}");
    assert!(
        !said.contains("26042769"),
        "the CPR number is personal data: {said}"
    );
    assert!(!format!("{:?}", settings(FmkVersion::E6)).contains("2604276962"));
}

#[test]
fn the_e6_create_body_keeps_the_namespace_trap() {
    let body = message::create_body(FmkVersion::E6, &settings(FmkVersion::E6), &entry())
        .unwrap_or_default();
    let Ok(doc) = read::parse(&body, "body") else {
        panic!("{body}");
    };
    let root = doc.root_element();
    assert!(root.has_tag_name((E6, "CreateFocesWhitelistingRequest")));
    let created_by = read::child(root, E6, "CreatedBy");
    let other = created_by.and_then(|c| read::child(c, MC, "Other"));
    assert!(other.is_some(), "the modifier is in 2015/06/01: {body}");
    let whitelisting = read::child(root, E6, "FocesWhitelisting");
    let identifier = whitelisting.and_then(|w| read::child(w, E6, "OrganisationIdentifier"));
    assert_eq!(identifier.and_then(|i| i.attribute("source")), Some("CVR"));
    assert_eq!(
        whitelisting.and_then(|w| read::child_text(w, E6, "FocesId")),
        Some(entry().foces_id.as_str())
    );
    let organisation = created_by.and_then(|c| read::child(c, MC, "Organisation"));
    let order: Vec<&str> = organisation
        .map(|o| {
            o.children()
                .filter(|c| c.is_element())
                .map(|c| c.tag_name().name())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        order,
        ["Name", "AddressLine", "AddressLine", "Type", "Identifier"]
    );
}

#[test]
fn the_160_delete_body_orders_the_organisation_the_160_way() {
    let body = message::delete_body(FmkVersion::V160, &settings(FmkVersion::V160), &entry())
        .unwrap_or_default();
    let Ok(doc) = read::parse(&body, "body") else {
        panic!("{body}");
    };
    let root = doc.root_element();
    assert!(root.has_tag_name((MC160, "DeleteFocesWhitelistingRequest")));
    let organisation =
        read::child(root, MC160, "ModifiedBy").and_then(|m| read::child(m, MC160, "Organisation"));
    let order: Vec<&str> = organisation
        .map(|o| {
            o.children()
                .filter(|c| c.is_element())
                .map(|c| c.tag_name().name())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        order,
        ["Identifier", "Type", "Name", "AddressLine", "AddressLine"]
    );
    assert_eq!(
        Operation::Delete.action(FmkVersion::V160),
        "http://fmk-teknik.dk/160#DeleteFocesWhitelisting"
    );
}

#[test]
fn entries_are_read_from_get_and_create_answers() {
    let answer = format!(
        r#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><x:GetFocesWhitelistingsResponse xmlns:x="{E6}"><x:FocesWhitelisting><x:OrganisationIdentifier source="CVR">25450442</x:OrganisationIdentifier><x:FocesId>a</x:FocesId><x:CertHash>Ukendt</x:CertHash></x:FocesWhitelisting><x:FocesWhitelisting><x:OrganisationIdentifier source="CVR">25450442</x:OrganisationIdentifier><x:FocesId>b</x:FocesId></x:FocesWhitelisting></x:GetFocesWhitelistingsResponse></S:Body></S:Envelope>"#
    );
    let listed = message::whitelistings(FmkVersion::E6, &answer).unwrap_or_default();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].cert_hash.as_deref(), Some("Ukendt"));
    assert_eq!(listed[1].cert_hash, None);
    // The same answer is not a 1.6.0 answer.
    assert!(message::whitelistings(FmkVersion::V160, &answer).is_err());
}

#[test]
fn faults_say_what_to_do() {
    let settings = settings(FmkVersion::E6);
    let fault = |code: &str| FmkFault {
        operation: Operation::Create,
        code: code.into(),
        text: "nope".into(),
    };
    let expired = fault("expired_idcard").into_error(&settings);
    assert_eq!(expired.kind, certvakt_plugin_api::ErrorKind::Temporary);
    let syntax = fault("syntax_error").into_error(&settings);
    assert_eq!(syntax.kind, certvakt_plugin_api::ErrorKind::Permanent);
    assert!(syntax.message.contains("fmk_version"), "{}", syntax.message);
    let other = fault("processing_problem").into_error(&settings);
    assert_eq!(other.kind, certvakt_plugin_api::ErrorKind::NeedsPerson);
    assert_eq!(other.fault_code.as_deref(), Some("fmk:processing_problem"));
    assert!(other.message.contains("nope"));
    assert!(fault("not_authorized").not_authorized());
}

#[test]
fn unique_ids_are_uuid_shaped_and_differ() {
    let a = crate::unique_id(1, "x");
    let b = crate::unique_id(1, "x");
    assert_ne!(a, b);
    let parsed = uuid::Uuid::parse_str(&a).expect("a UUID");
    assert_eq!(parsed.get_version_num(), 4, "{a}");
    assert_eq!(parsed.hyphenated().to_string(), a, "lower-case, hyphenated");
}

#[test]
fn the_readme_examples_are_valid_settings() {
    let readme = include_str!("../README.md");
    let mut checked = 0;
    for block in readme.split("```toml").skip(1) {
        let Some((toml_text, _)) = block.split_once("```") else {
            continue;
        };
        let Ok(doc) = toml::from_str::<toml::Table>(toml_text) else {
            panic!("a README TOML block does not parse:\n{toml_text}");
        };
        let certificates = doc.get("certificate").and_then(|c| c.as_array());
        for certificate in certificates.into_iter().flatten() {
            if certificate.get("plugin").and_then(|p| p.as_str()) != Some("dk-fmk") {
                continue;
            }
            let settings = certificate
                .get("settings")
                .cloned()
                .unwrap_or(toml::Value::Table(toml::Table::new()));
            let value = serde_json::to_value(settings).unwrap_or_default();
            if let Err(problems) = Settings::parse(&value) {
                panic!("README settings have problems: {problems:?}\n{toml_text}");
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "the README shows both modes ({checked} checked)"
    );
}

// ---------------------------------------------------------------------------------------------
// The run's state

const CVR: &str = "25450442";
const OLD_UUID: &str = "3f1c2a9e-7b4d-4e2f-9a8b-1c2d3e4f5a6b";
const NEW_UUID: &str = "8d3fa047-5b6c-4d7e-8f90-a1b2c3d4e5f6";

/// A real OCES3 certificate of the pharmacy's CVR, as the daemon describes it.
fn oces3(uuid: &str) -> CertificateInfo {
    let issued = TestCa::new(CaShape::Oces3)
        .and_then(|ca| ca.issue(&LeafSpec::oces3(CVR, uuid, "Hjørring Svane Apotek")))
        .unwrap_or_else(|e| panic!("the test CA cannot issue: {e}"));
    CertificateInfo {
        pem: issued.cert_pem.clone(),
        subject: "CN=Hjørring Svane Apotek,O=Hjørring Svane Apotek,C=DK".into(),
        serial: issued.serial_hex().unwrap_or_default(),
        not_before: issued.not_before.unix_timestamp(),
        not_after: issued.not_after.unix_timestamp(),
        identities: vec![format!("DK CVR {CVR} UUID {uuid}")],
    }
}

/// A step of a run that replaces the `OLD_UUID` certificate by a `NEW_UUID` one.
fn step(state: Value) -> StepContext {
    StepContext {
        new_set: Default::default(),
        certificate: CertificateContext {
            roles: Vec::new(),
            current_set: Default::default(),
            role: None,
            certificate_id: "fmk".into(),
            settings: settings_value(),
            environment: "production".into(),
            current: Some(oces3(OLD_UUID)),
        },
        new: Some(oces3(NEW_UUID)),
        state,
    }
}

/// States a version of this plugin could not have written: each with the place that does
/// not parse.
fn unreadable_states() -> Vec<(Value, &'static str)> {
    vec![
        (json!("retire"), "the whole state"),
        (json!({ "retire": "3f1c2a9e" }), "`retire`"),
        (
            json!({ "retire": { "source": "CVR", "cvr": CVR, "foces_id": 7, "cert_hash": null } }),
            "`retire.foces_id`",
        ),
        (json!({ "kept_uuid": "yes" }), "`kept_uuid`"),
    ]
}

fn assert_stops_the_run(error: &PluginError, step: &str, place: &str, host: &FakeHost) {
    assert_eq!(error.kind, ErrorKind::Permanent, "{error}");
    for expected in ["dk-fmk", step, place, "certvakt show fmk", "state.json"] {
        assert!(
            error.message.contains(expected),
            "{expected:?} not in: {error}"
        );
    }
    assert!(!error.message.contains("2604276962"), "the CPR: {error}");
    assert!(
        host.http_requests().is_empty(),
        "nothing goes to FMK or the STS: {:?}",
        host.http_requests()
    );
    assert!(host.tasks().is_empty(), "no task: {:?}", host.tasks());
}

#[test]
fn retire_stops_on_a_state_that_does_not_parse_and_deletes_nothing() {
    for (state, place) in unreadable_states() {
        let host = FakeHost::new();
        let error = host
            .retire(&DkFmk, step(state.clone()))
            .expect_err(&format!("retire reported done on {state}"));
        assert_stops_the_run(&error, "retire", place, &host);
        // What the owner must check by hand: the replaced certificate's entry.
        assert!(error.message.contains(OLD_UUID), "{error}");
    }
}

#[test]
fn register_stops_on_a_state_that_does_not_parse_before_calling_fmk() {
    for (state, place) in unreadable_states() {
        let host = FakeHost::new();
        let error = host
            .register(&DkFmk, step(state.clone()))
            .expect_err(&format!("register went on with {state}"));
        assert_stops_the_run(&error, "register", place, &host);
    }
}

#[test]
fn no_state_yet_is_the_start_of_a_step() {
    // Null is the first call of a run: retire then has no recorded entry (a kept UUID) and
    // is done without calling FMK, as before.
    let host = FakeHost::new();
    let outcome = host
        .retire(&DkFmk, step(Value::Null))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, StepOutcome::Done { state: Value::Null });
    assert!(host.http_requests().is_empty());
}
