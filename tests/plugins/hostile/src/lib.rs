//! A plugin that misbehaves on demand, for certvakt's plugin isolation tests.
//!
//! `[certificate.settings] act = "…"` says what `csr_profile` (the first call of every run)
//! does instead of answering: `panic`, `abort`, `segfault`, `loop` (for ever, using CPU),
//! `allocate` (20 GiB, touched), `stdout` (prints a thousand lines, then answers normally),
//! `socket` (connects to a TCP port), `write_file` (creates a file in /tmp), `read_file` (reads
//! /etc/passwd), `exit` (exits the
//! process with status 0). Without `act`, or with `act = "none"`, it behaves: the certificate
//! is ordered through an operator task, as with the manual plugin. Nothing here is for use
//! outside the tests.

// `segfault` writes through a null pointer on purpose.
#![allow(unsafe_code)]

use certvakt_plugin_api::profile::{
    CsrProfile, KeyAlgorithm, KeyUsage, StringType, SubjectAttribute, oid,
};
use certvakt_plugin_api::{
    About, CertificateContext, Completion, Host, IssueOutcome, OrderContext, Plugin, PluginError,
    TaskFile, TaskFileContent, TaskSpec, export_plugin,
};
use serde_json::Value;

#[derive(Debug, Default)]
pub struct Hostile;

export_plugin!(Hostile);

fn misbehave(act: &str) -> Result<(), PluginError> {
    match act {
        "panic" => panic!("asked to panic"),
        "abort" => std::process::abort(),
        "segfault" => {
            // SAFETY: none; this is the crash under test.
            unsafe { std::ptr::null_mut::<u64>().write_volatile(1) };
            Ok(())
        }
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "allocate" => {
            let size = 20usize << 30;
            let mut block = vec![0u8; size];
            // Touch every page so the memory is really used.
            for i in (0..size).step_by(4096) {
                block[i] = 1;
            }
            Err(PluginError::temporary(format!("allocated {}", block.len())))
        }
        "stdout" => {
            for i in 0..1000 {
                println!("line {i} on standard output");
            }
            Ok(())
        }
        "socket" => std::net::TcpStream::connect("127.0.0.1:9")
            .map(|_| ())
            .map_err(|e| PluginError::temporary(format!("connect: {e}"))),
        "write_file" => std::fs::write("/tmp/certvakt-hostile-plugin-was-here", b"x")
            .map_err(|e| PluginError::temporary(format!("write: {e}"))),
        "read_file" => std::fs::read("/etc/passwd")
            .map(|_| ())
            .map_err(|e| PluginError::temporary(format!("read /etc/passwd: {e}"))),
        "exit" => std::process::exit(0),
        _ => Ok(()),
    }
}

impl Plugin for Hostile {
    const NAME: &'static str = "hostile";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn describe(&self) -> About {
        About {
            summary: "Misbehaves on demand, for the plugin isolation tests.".into(),
            settings: Vec::new(),
            key_policies: Vec::new(),
        }
    }

    fn csr_profile(
        &self,
        _host: &Host<'_>,
        certificate: CertificateContext,
    ) -> Result<CsrProfile, PluginError> {
        let act = certificate
            .settings
            .get("act")
            .and_then(Value::as_str)
            .unwrap_or("none");
        misbehave(act)?;
        Ok(CsrProfile {
            key: KeyAlgorithm::EcP256,
            subject: vec![SubjectAttribute {
                oid: oid::COMMON_NAME.into(),
                value: certificate.certificate_id.clone(),
                string_type: StringType::Utf8,
            }],
            sans: Vec::new(),
            key_usage: vec![KeyUsage::DigitalSignature],
            extended_key_usage: Vec::new(),
        })
    }

    fn issue(&self, _host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        // `title` in the settings: a task title with whatever the test puts in it (newlines,
        // terminal escapes), to see that the daemon passes none of it on raw.
        let title = order
            .certificate
            .settings
            .get("title")
            .and_then(Value::as_str)
            .map_or_else(
                || format!("Order {} by hand", order.certificate.certificate_id),
                str::to_owned,
            );
        Ok(IssueOutcome::Pending {
            poll_after_secs: 3600,
            task: Some(TaskSpec {
                title,
                instructions: "Sign request.csr and import the certificate.".into(),
                files: vec![TaskFile {
                    name: "request.csr".into(),
                    content: TaskFileContent::Csr,
                }],
                completes_by: Completion::Import,
            }),
            state: Value::Null,
        })
    }
}
