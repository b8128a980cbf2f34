//! A line from the control socket, as a hello and as a request (any local user can send one).
#![no_main]

use certvakt::control::protocol::{Hello, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (hello, request) = certvakt::control::server::read_client_line(data);
    if let Some(sentence) = hello {
        // The peer's strings reach the journal: no line breaks or other control characters.
        assert!(!sentence.chars().any(char::is_control), "{sentence:?}");
    }
    if let Ok(request) = request {
        let _ = (request.needs(), request.name());
        let text = serde_json::to_string(&request).expect("a request encodes");
        let back: Request = serde_json::from_str(&text).expect("an encoded request decodes");
        assert_eq!(back, request);
    }
    // What the CLI reads from the daemon's side of the same socket.
    let _ = serde_json::from_slice::<Hello>(data);
    let _ = serde_json::from_slice::<Response>(data);
});
