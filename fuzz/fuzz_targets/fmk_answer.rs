//! FMK's and the SOSI STS's answers as the dk-fmk plugin reads them. The first byte picks
//! what runs: a step of the plugin (register, verify, retire; FMK 1.4.6 E6 or 1.6.0) whose
//! HTTP requests (the STS, then FMK) are answered by the parts of the rest, in order; the
//! whitelisting reader on the rest alone; or a raw call to the plugin.
#![no_main]

use certvakt_fuzz::{ScriptedHost, call, oces3, parts, raw_call};
use certvakt_plugin_api::messages::PluginRequest;
use certvakt_plugin_api::{CertificateContext, StepContext};
use certvakt_plugin_dk_fmk::DkFmk;
use certvakt_plugin_dk_fmk::message;
use certvakt_plugin_dk_fmk::settings::FmkVersion;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const CVR: &str = "25450442";
const OLD_UUID: &str = "3f1c2a9e-7b4d-4e2f-9a8b-1c2d3e4f5a6b";
const NEW_UUID: &str = "8d3fa047-5b6c-4d7e-8f90-a1b2c3d4e5f6";
const NAME: &str = "Hjørring Svane Apotek";

fn settings(version: &str) -> Value {
    json!({
        "cvr": CVR,
        "fmk_endpoint": "https://fmk.example/fmk12/ws/MedicineCard",
        "sts_endpoint": "https://sts.example/sts/services/NewSecurityTokenService",
        "pharmacy_name": NAME,
        "pharmacy_address": ["Brogade 111", "9800 Hjørring"],
        "pharmacy_ean": "5790000171248",
        "apoteker_given_name": "Ane",
        "apoteker_surname": "Jensen",
        "apoteker_cpr": "2604276962",
        "fmk_version": version,
    })
}

fn step(version: &str, state: Value) -> StepContext {
    StepContext {
        new_set: Default::default(),
        certificate: CertificateContext {
            roles: Vec::new(),
            current_set: Default::default(),
            role: None,
            certificate_id: "fmk".into(),
            settings: settings(version),
            environment: "production".into(),
            current: Some(oces3(CVR, OLD_UUID, NAME)),
        },
        new: Some(oces3(CVR, NEW_UUID, NAME)),
        state,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let answers = parts(rest);
    let version = if pick & 1 == 0 { "1.4.6-E6" } else { "1.6.0" };
    let retire_state = json!({
        "retire": { "source": "CVR", "cvr": CVR, "foces_id": OLD_UUID, "cert_hash": null }
    });
    let request = match (pick >> 1) % 5 {
        0 => PluginRequest::Register(step(version, Value::Null)),
        1 => PluginRequest::Verify(step(version, Value::Null)),
        2 => PluginRequest::Retire(step(version, retire_state)),
        3 => {
            let text = String::from_utf8_lossy(rest);
            for version in [FmkVersion::E6, FmkVersion::V160] {
                let _ = message::whitelistings(version, &text);
            }
            if let Ok(doc) = certvakt_soap::read::parse(&text, "FMK's answer")
                && let Some(fault) = certvakt_soap::read::fault(&doc)
            {
                let _ = (message::fault_code(&fault), message::fault_text(&fault));
            }
            return;
        }
        _ => {
            raw_call(&DkFmk, &ScriptedHost::from_parts(&answers[1..]), answers[0]);
            return;
        }
    };
    let _ = call(&DkFmk, &ScriptedHost::from_parts(&answers), &request);
});
