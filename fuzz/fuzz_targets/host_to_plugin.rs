//! What a plugin reads from the daemon: a call (method on the first line, JSON parameters
//! after it) decoded by the SDK and answered by a plugin (the manual plugin, the SDK's worked
//! example), and the host's answers to its own calls.
#![no_main]

use certvakt_plugin_api::messages::{HostResponse, PluginRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (method, params) = certvakt_fuzz::first_line(data, 64);
    if let Ok(request) = PluginRequest::decode(&method, params) {
        let again = request.encode_params().expect("a decoded request encodes");
        let back = PluginRequest::decode(&method, &again).expect("an encoded request decodes");
        assert_eq!(back, request);
    }
    let host = certvakt_fuzz::ScriptedHost::default();
    certvakt_fuzz::raw_call(&certvakt_plugin_manual::ManualCa, &host, data);
    let _ = serde_json::from_slice::<HostResponse>(data);
});
