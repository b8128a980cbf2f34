//! The NemLog-in STS's answers as the dk-nemlogin plugin reads them. The first byte picks a
//! step of the plugin (register, verify, retire) whose token requests are answered by the
//! parts of the rest, in order (`@CONTEXT@` and `@MESSAGE_ID@` stand for the request's own),
//! or a raw call to the plugin.
#![no_main]

use certvakt_fuzz::{ScriptedHost, call, oces3, parts, raw_call};
use certvakt_plugin_api::messages::PluginRequest;
use certvakt_plugin_api::{CertificateContext, StepContext};
use certvakt_plugin_dk_nemlogin::DkNemlogin;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const CVR: &str = "29189846";
const OLD_UUID: &str = "3f1c2a9e-7b4d-4e2f-9a8b-1c2d3e4f5a6b";
const NEW_UUID: &str = "8d3fa047-5b6c-4d7e-8f90-a1b2c3d4e5f6";
const NAME: &str = "Odense Kommune";

fn step(state: Value) -> StepContext {
    StepContext {
        new_set: Default::default(),
        certificate: CertificateContext {
            roles: Vec::new(),
            current_set: Default::default(),
            role: None,
            certificate_id: "smdb-prod".into(),
            settings: json!({
                "entity_id": "https://wsc.odense.smdb.dk",
                "environment": "production",
                "cvr": CVR,
                "web_service": "Smdb_Sts_Dev",
                "privileges": ["urn:dk:smdb:prod:indberetter"],
                "applies_to": "https://smdb.sundhedsdatastyrelsen.dk",
                "sts_endpoint": "https://sts.example/SecurityTokenService.svc",
                "sts_trust": "nemlogin-sts",
            }),
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
    let request = match pick % 5 {
        0 => PluginRequest::Register(step(Value::Null)),
        1 => PluginRequest::Verify(step(Value::Null)),
        2 => PluginRequest::Retire(step(Value::Null)),
        3 => PluginRequest::Register(step(json!({ "task_open_for": "register" }))),
        _ => {
            raw_call(
                &DkNemlogin,
                &ScriptedHost::from_parts(&answers[1..]),
                answers[0],
            );
            return;
        }
    };
    let _ = call(&DkNemlogin, &ScriptedHost::from_parts(&answers), &request);
});
