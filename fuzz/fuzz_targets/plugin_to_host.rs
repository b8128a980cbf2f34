//! What a plugin process sends the daemon: a host call (method on the first line, its JSON
//! parameters after it) answered by the daemon's host services, a reply to a call, a refusal.
//! The host must survive any bytes a plugin returns.
#![no_main]

use std::sync::Arc;

use certvakt::plugin_host::challenges::Http01Responder;
use certvakt::plugin_host::{BasicServices, HostServices, RefusalReason};
use certvakt_plugin_api::messages::{HostRequest, HostResponse, PluginResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (method, params) = certvakt_fuzz::first_line(data, 64);
    if let Ok(request) = HostRequest::decode(&method, params) {
        let dir = certvakt_fuzz::scratch_dir();
        // What one input wrote goes before the next: a long run must not fill the folder.
        for sub in ["state", "webroot"] {
            let _ = std::fs::remove_dir_all(dir.join(sub));
        }
        // A webroot is the operator's folder: keep the files this run writes inside ours.
        let request = match request {
            HostRequest::Http01Publish {
                token,
                key_authorization,
                webroot: Some(_),
            } => HostRequest::Http01Publish {
                token,
                key_authorization,
                webroot: Some(dir.join("webroot").display().to_string()),
            },
            HostRequest::Http01Withdraw {
                token,
                webroot: Some(_),
            } => HostRequest::Http01Withdraw {
                token,
                webroot: Some(dir.join("webroot").display().to_string()),
            },
            other => other,
        };
        let services = BasicServices::new("fuzz", "fuzz-cert", dir.join("state"))
            .with_http01(Arc::new(Http01Responder::new()));
        let response = services.handle(request);
        let bytes = serde_json::to_vec(&response).expect("the host's answer encodes");
        serde_json::from_slice::<HostResponse>(&bytes).expect("the host's answer decodes");
    }
    // A reply to a call, and a refusal while loading: read whole.
    let _ = serde_json::from_slice::<PluginResponse>(data);
    let _ = serde_json::from_slice::<RefusalReason>(data);
    // The plugin API version a loaded library names.
    let _ = certvakt_plugin_api::abi::check_api_version(
        certvakt_plugin_api::PLUGIN_API_VERSION,
        &method,
    );
});
