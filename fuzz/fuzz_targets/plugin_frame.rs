//! The bytes a plugin process writes to its socket: a stream of frames.
#![no_main]

use certvakt::plugin_host::frame::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Frame::decode(data);
    let mut stream = data;
    while let Ok(frame) = Frame::read_from(&mut stream) {
        let bytes = frame.encode().expect("a frame that was read encodes");
        let back = Frame::read_from(&mut bytes.as_slice()).expect("an encoded frame reads");
        assert_eq!(back, frame);
    }
});
