//! What is sent: one [`Message`] per event, the same for every channel and every attempt.
//!
//! Contract:
//! - `id` is the event's idempotency key: the same for every attempt and every restart, so a
//!   receiver can drop a repeat (mail `Message-ID`, webhook `Idempotency-Key` and `id`).
//! - `subject` is one line; `body` is plain text, in the operator's language where the plugin
//!   wrote its task in it. Neither ever holds key material.
//! - `details` holds the machine-readable facts (stable keys, see the webhook schema in
//!   docs/renewal.md); channels put them in the webhook payload and the command's stdin.

use serde::{Deserialize, Serialize};

use crate::config::NotifyEvent;

/// The version of the JSON schema of [`Message`] as webhooks and commands get it.
pub const SCHEMA_VERSION: u32 = 1;

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The idempotency key: 32 lowercase hex digits, stable across attempts and restarts.
    pub id: String,
    pub event: NotifyEvent,
    /// The certificate it is about, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_id: Option<String>,
    /// The operator task it is about (task events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The plugin it is about (a refused plugin, a plugin's own mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// When the event happened (Unix seconds).
    pub created_at: i64,
    /// When it must be done by, if anything must (the certificate's expiry, Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<i64>,
    /// One line.
    pub subject: String,
    /// Plain text.
    pub body: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Facts for programs: stable keys per event (see the webhook schema in docs/renewal.md).
    #[serde(default)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// A file that goes with a message (a task's CSR, the certificate an authority wants).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// A plain file name (no folders).
    pub name: String,
    /// A MIME type, e.g. `application/pkix-cert`.
    pub content_type: String,
    #[serde(with = "base64_bytes")]
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Attachment({}, {}, {} bytes)",
            self.name,
            self.content_type,
            self.bytes.len()
        )
    }
}

/// The MIME type of a task file, from its name.
pub fn content_type(name: &str) -> &'static str {
    let lower = name.to_ascii_lowercase();
    let ext = lower.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "txt" => "text/plain; charset=utf-8",
        "pem" | "crt" => "application/x-pem-file",
        "cer" | "der" => "application/pkix-cert",
        "csr" | "p10" => "application/pkcs10",
        "eml" => "message/rfc822",
        "json" => "application/json",
        "xml" => "application/xml",
        "p12" | "pfx" => "application/pkcs12",
        _ => "application/octet-stream",
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
