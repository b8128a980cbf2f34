//! An ACME CA's answers (directory, nonces, account, order, authorizations, challenges,
//! problem documents, the certificate chain, renewal information) as the acme plugin reads
//! them. The first byte picks what runs: an order (`issue`), the CA's renewal window, a
//! revocation (`retire` with `revoke_old`), each with its HTTP requests answered by the parts
//! of the rest in order (a pending order is polled with its state while answers are left), or
//! a raw call to the plugin.
#![no_main]

use certvakt_fuzz::{ScriptedHost, call, oces3, parts, raw_call};
use certvakt_plugin_acme::Acme;
use certvakt_plugin_acme::client::{Directory, Problem};
use std::sync::OnceLock;

use certvakt_plugin_api::messages::{PluginRequest, PluginResponse};
use certvakt_plugin_api::{CertificateContext, IssueOutcome, OrderContext, StepContext};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fn context(with_current: bool) -> CertificateContext {
    CertificateContext {
        roles: Vec::new(),
        current_set: Default::default(),
        role: None,
        certificate_id: "web".into(),
        settings: json!({
            "directory": "https://ca.test/dir",
            "domains": ["apotek.example", "www.apotek.example"],
            "contact": ["mailto:it@apotek.example"],
            "agree_terms": true,
            "revoke_old": true,
        }),
        environment: "production".into(),
        current: with_current
            .then(|| oces3("33257872", "6a1f3c2e-9d4b-4e8a-b1c7-2f5d8e9a0b3c", "Web")),
    }
}

/// A real CSR for the configured domains, made once as the daemon makes it.
fn csr() -> &'static str {
    static CSR: OnceLock<String> = OnceLock::new();
    CSR.get_or_init(|| {
        let host = ScriptedHost::default();
        let request = PluginRequest::CsrProfile(context(false));
        let PluginResponse::CsrProfile(profile) = call(&Acme::default(), &host, &request) else {
            panic!("the acme plugin gives a CSR profile for its settings");
        };
        let key = certvakt::keys::generate(profile.key).expect("a key is made");
        certvakt::keys::csr(&profile, &key)
            .expect("a CSR is made")
            .pem
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let answers = parts(rest);
    let request = match pick % 5 {
        0 => PluginRequest::Issue(OrderContext {
            csr_set: Default::default(),
            certificate: context(false),
            csr_pem: csr().into(),
            state: Value::Null,
        }),
        1 => PluginRequest::RenewalWindow(context(true)),
        2 => PluginRequest::Retire(StepContext {
            new_set: Default::default(),
            certificate: context(true),
            new: Some(oces3(
                "33257872",
                "8d3fa047-5b6c-4d7e-8f90-a1b2c3d4e5f6",
                "Web",
            )),
            state: Value::Null,
        }),
        3 => {
            for part in &answers {
                let _ = serde_json::from_slice::<Directory>(part);
                if let Ok(problem) = serde_json::from_slice::<Problem>(part) {
                    let _ = problem.describe();
                }
                let _ = certvakt_plugin_acme::order::top_issuer(&String::from_utf8_lossy(part));
            }
            return;
        }
        _ => {
            raw_call(
                &Acme::default(),
                &ScriptedHost::from_parts(&answers[1..]),
                answers[0],
            );
            return;
        }
    };
    // A fresh plugin per input: its cache of directories and nonces must not carry over.
    let plugin = Acme::default();
    let host = ScriptedHost::from_parts(&answers);
    let mut response = call(&plugin, &host, &request);
    // An order goes on as the daemon drives it: polled with the state the last call left,
    // while there are answers for it (finalize, the chain).
    for _ in 0..8 {
        let (PluginResponse::Issue(IssueOutcome::Pending { state, .. })
        | PluginResponse::Poll(IssueOutcome::Pending { state, .. })) = response
        else {
            break;
        };
        if host.answers_left() == 0 {
            break;
        }
        let poll = PluginRequest::Poll(OrderContext {
            csr_set: Default::default(),
            certificate: context(false),
            csr_pem: csr().into(),
            state,
        });
        response = call(&plugin, &host, &poll);
    }
});
