//! A SOAP answer as `certvakt-soap` reads it: the envelope, its body and payload, a fault, a
//! signed element carried on standalone, and the sorting of an HTTP answer (a part with a
//! status line, see `certvakt_fuzz::http_response`).
#![no_main]

use certvakt_plugin_api::ClientIdentity;
use certvakt_soap::call::{SoapRequest, call};
use certvakt_soap::read;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let answer = certvakt_fuzz::http_response(data);
    let text = String::from_utf8_lossy(&answer.body);
    if let Ok(doc) = read::parse(&text, "the answer") {
        let _ = read::body(&doc);
        let _ = read::header(&doc);
        let _ = read::payload(&doc);
        if let Some(fault) = read::fault(&doc) {
            let _ = fault.detail("FaultCode");
        }
        for node in doc.descendants().filter(|n| n.is_element()).take(32) {
            if let Ok(alone) = read::standalone(&text, node) {
                // Carried into the next request: it must still be XML of its own.
                if let Err(e) = read::parse(&alone, "the standalone element") {
                    panic!("standalone made {alone:?} from {text:?}: {e}");
                }
            }
        }
    }
    let host = certvakt_fuzz::ScriptedHost::new([answer]);
    let table = certvakt_plugin_api::abi::LocalHostTable::new(&host);
    let sdk_host = certvakt_plugin_api::Host::new(table.table());
    let _ = call(
        &sdk_host,
        SoapRequest {
            service: "the fuzzed service",
            url: "https://soap.example/service",
            action: "urn:fuzz",
            envelope: "<x/>".into(),
            identity: ClientIdentity::None,
            trust: None,
            timeout_ms: 1_000,
        },
    );
});
