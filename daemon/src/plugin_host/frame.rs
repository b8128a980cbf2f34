//! The frames between certvaktd and a plugin process, over the socket pair that is the
//! process's standard input.
//!
//! Contract:
//! - A frame is a little-endian `u32` length (of what follows), a kind byte, and the kind's
//!   body. Names (a method, a plugin's name and versions) are a `u16` length and UTF-8 bytes;
//!   the payload is the rest. Every length is checked against what is left, and a frame is at
//!   most [`MAX_FRAME`] bytes: any bytes at all, from a plugin process or a damaged pipe, give
//!   a [`Frame`] or a [`FrameError`], never a panic or an allocation larger than the cap.
//! - The daemon sends `Call`, and `HostReply` to each `HostCall`; the plugin process sends
//!   `Loaded` or `Refused` once, after loading, then `HostCall`s and one `Reply` per `Call`.

use std::io::{self, Read, Write};

/// The largest frame either side sends or accepts (the plugin API caps its own messages well
/// below this).
pub const MAX_FRAME: usize = 32 * 1024 * 1024;

/// One message between the daemon and a plugin process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The daemon asks the plugin to run `method` with `params` (the plugin API's JSON).
    Call { method: String, params: Vec<u8> },
    /// The plugin asks the host for a service during a call.
    HostCall { method: String, params: Vec<u8> },
    /// The host's answer to the last `HostCall`.
    HostReply(Vec<u8>),
    /// The plugin's answer to the `Call`.
    Reply(Vec<u8>),
    /// The library loaded and its descriptor reads.
    Loaded {
        name: String,
        version: String,
        api_version: String,
    },
    /// The library was refused while loading: the reason, as JSON.
    Refused(Vec<u8>),
}

/// Why bytes are not a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The other side closed the socket between frames.
    #[error("the other side closed the connection")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("a frame of {0} bytes is larger than the {MAX_FRAME} allowed")]
    TooLarge(usize),
    #[error("a frame is malformed: {0}")]
    Malformed(&'static str),
}

const CALL: u8 = 1;
const HOST_CALL: u8 = 2;
const HOST_REPLY: u8 = 3;
const REPLY: u8 = 4;
const LOADED: u8 = 5;
const REFUSED: u8 = 6;

impl Frame {
    /// The frame's bytes, length prefix included.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut body = Vec::new();
        match self {
            Frame::Call { method, params } => {
                body.push(CALL);
                name(&mut body, method)?;
                body.extend_from_slice(params);
            }
            Frame::HostCall { method, params } => {
                body.push(HOST_CALL);
                name(&mut body, method)?;
                body.extend_from_slice(params);
            }
            Frame::HostReply(bytes) => {
                body.push(HOST_REPLY);
                body.extend_from_slice(bytes);
            }
            Frame::Reply(bytes) => {
                body.push(REPLY);
                body.extend_from_slice(bytes);
            }
            Frame::Loaded {
                name: plugin,
                version,
                api_version,
            } => {
                body.push(LOADED);
                name(&mut body, plugin)?;
                name(&mut body, version)?;
                name(&mut body, api_version)?;
            }
            Frame::Refused(reason) => {
                body.push(REFUSED);
                body.extend_from_slice(reason);
            }
        }
        if body.len() > MAX_FRAME {
            return Err(FrameError::TooLarge(body.len()));
        }
        let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len()))?;
        let mut bytes = Vec::with_capacity(body.len() + 4);
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&body);
        Ok(bytes)
    }

    /// Reads a frame's body (after its length prefix).
    pub fn decode(body: &[u8]) -> Result<Frame, FrameError> {
        let (&kind, mut rest) = body
            .split_first()
            .ok_or(FrameError::Malformed("it is empty"))?;
        let frame = match kind {
            CALL => Frame::Call {
                method: take_name(&mut rest)?,
                params: rest.to_vec(),
            },
            HOST_CALL => Frame::HostCall {
                method: take_name(&mut rest)?,
                params: rest.to_vec(),
            },
            HOST_REPLY => Frame::HostReply(rest.to_vec()),
            REPLY => Frame::Reply(rest.to_vec()),
            LOADED => {
                let frame = Frame::Loaded {
                    name: take_name(&mut rest)?,
                    version: take_name(&mut rest)?,
                    api_version: take_name(&mut rest)?,
                };
                if !rest.is_empty() {
                    return Err(FrameError::Malformed("bytes after a Loaded frame's names"));
                }
                frame
            }
            REFUSED => Frame::Refused(rest.to_vec()),
            _ => return Err(FrameError::Malformed("an unknown kind")),
        };
        Ok(frame)
    }

    /// Writes the frame whole.
    pub fn write_to(&self, out: &mut impl Write) -> Result<(), FrameError> {
        out.write_all(&self.encode()?)?;
        out.flush()?;
        Ok(())
    }

    /// Reads one frame; [`FrameError::Closed`] when the stream ends before its first byte.
    pub fn read_from(input: &mut impl Read) -> Result<Frame, FrameError> {
        let mut prefix = [0u8; 4];
        let mut got = 0;
        while got < prefix.len() {
            match input.read(&mut prefix[got..]) {
                Ok(0) if got == 0 => return Err(FrameError::Closed),
                Ok(0) => return Err(FrameError::Malformed("the stream ended inside a length")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let len = u32::from_le_bytes(prefix) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        let mut body = Vec::new();
        input.take(len as u64).read_to_end(&mut body)?;
        if body.len() < len {
            return Err(FrameError::Malformed("the stream ended inside a frame"));
        }
        Frame::decode(&body)
    }
}

fn name(body: &mut Vec<u8>, text: &str) -> Result<(), FrameError> {
    let len = u16::try_from(text.len()).map_err(|_| FrameError::Malformed("a name over 64 KiB"))?;
    body.extend_from_slice(&len.to_le_bytes());
    body.extend_from_slice(text.as_bytes());
    Ok(())
}

fn take_name(rest: &mut &[u8]) -> Result<String, FrameError> {
    let (len, after) = rest
        .split_first_chunk::<2>()
        .ok_or(FrameError::Malformed("a name's length is cut off"))?;
    let len = usize::from(u16::from_le_bytes(*len));
    if after.len() < len {
        return Err(FrameError::Malformed("a name is cut off"));
    }
    let (text, after) = after.split_at(len);
    let text =
        std::str::from_utf8(text).map_err(|_| FrameError::Malformed("a name is not UTF-8"))?;
    *rest = after;
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame) {
        let bytes = frame.encode().unwrap();
        let back = Frame::read_from(&mut bytes.as_slice()).unwrap();
        assert_eq!(back, frame);
    }

    #[test]
    fn every_kind_round_trips() {
        round_trip(Frame::Call {
            method: "issue".into(),
            params: br#"{"a":1}"#.to_vec(),
        });
        round_trip(Frame::HostCall {
            method: "log".into(),
            params: Vec::new(),
        });
        round_trip(Frame::HostReply(b"x".to_vec()));
        round_trip(Frame::Reply(Vec::new()));
        round_trip(Frame::Loaded {
            name: "acme".into(),
            version: "1.0.0".into(),
            api_version: "1.0".into(),
        });
        round_trip(Frame::Refused(b"{}".to_vec()));
    }

    #[test]
    fn damaged_bytes_are_errors_not_panics() {
        assert!(matches!(
            Frame::read_from(&mut [].as_slice()),
            Err(FrameError::Closed)
        ));
        assert!(matches!(
            Frame::read_from(&mut [1u8, 0].as_slice()),
            Err(FrameError::Malformed(_))
        ));
        let huge = (u32::MAX).to_le_bytes();
        assert!(matches!(
            Frame::read_from(&mut huge.as_slice()),
            Err(FrameError::TooLarge(_))
        ));
        // A name longer than what follows.
        let mut cut = vec![4, 0, 0, 0, CALL, 200, 0, b'x'];
        assert!(matches!(
            Frame::read_from(&mut cut.as_slice()),
            Err(FrameError::Malformed(_))
        ));
        cut[4] = 99;
        assert!(Frame::read_from(&mut cut.as_slice()).is_err());
        // A length that promises more than arrives.
        assert!(Frame::read_from(&mut [9u8, 0, 0, 0, REPLY].as_slice()).is_err());
    }
}
