//! The mail a plugin prepares for an authority: checked at the boundary, then handed to the
//! daemon's [`MailOut`], which sends it or renders it for a person.
//!
//! Contract:
//! - A plugin's [`Mail`] reaches a [`MailOut`] only through [`clean_mail`]. It refuses, with
//!   [`HostErrorKind::Invalid`] and a message naming the rule, a mail that has no recipient
//!   in `to`, more than [`MAX_RECIPIENTS`] in `to` and `cc` together, an address (`reply_to`
//!   included) that is not a plain ASCII `local@domain` (no name, brackets, spaces, CR or LF;
//!   a domain of dotted letters, digits and hyphens, so an international one in its `xn--`
//!   form), a subject of more than [`MAX_SUBJECT_CHARS`] characters or with a line break or
//!   any other control character, a body over [`MAX_BODY_BYTES`], more than
//!   [`MAX_ATTACHMENTS`] attachments or more than [`MAX_ATTACHMENT_BYTES`] of them together,
//!   an attachment name that is not a plain file name (empty, `/`, `\`, `"`, `..`, a control
//!   character), or a content type that is not a bare `type/subtype`.
//! - Nothing that becomes a mail header is rewritten: what could add a header (a CR or LF in
//!   the subject, an address, a content type or a file name) is refused, never escaped, so a
//!   plugin cannot inject a header and the person sees the mail the plugin meant or none.
//! - The body keeps its lines and tabs; a CR LF becomes LF (whoever writes the mail sets the
//!   line ends), and any other control character becomes a visible escape, as in a task's
//!   instructions ([`super::sanitise_lines`]).
//! - Whether the mail is sent is [`MailOut`]'s decision, told by the caller whether the
//!   operator allowed this certificate's plugin to send mail (`plugin_mail`).

use certvakt_plugin_api::{HostError, HostErrorKind, Mail, MailOutcome};

/// The most recipients, `to` and `cc` together.
pub const MAX_RECIPIENTS: usize = 10;
/// The longest subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 200;
/// The largest body, in bytes of UTF-8.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The most attachments.
pub const MAX_ATTACHMENTS: usize = 8;
/// The most bytes of all attachments together.
pub const MAX_ATTACHMENT_BYTES: usize = 2 * 1024 * 1024;

/// Sends (or renders for a person) the mail a plugin prepared. Blocking: called on the
/// plugin call's thread.
pub trait MailOut: Send + Sync + std::fmt::Debug {
    /// `mail` (already through [`clean_mail`]) for the certificate `cert_id`, whose plugin the
    /// operator allowed to send mail when `allowed`; otherwise the answer is the mail for a
    /// person ([`MailOutcome::ForPerson`]). The same mail asked again is not sent twice.
    fn send(&self, cert_id: &str, allowed: bool, mail: Mail) -> Result<MailOutcome, HostError>;
}

/// `mail` as a plugin asked for it, checked against the rules of the module contract, with
/// its body's control characters made visible; or the first rule it breaks.
pub fn clean_mail(mut mail: Mail) -> Result<Mail, HostError> {
    if mail.to.is_empty() {
        return Err(refused(
            "it has no recipient: name at least one address in `to`".into(),
        ));
    }
    let recipients = mail.to.len() + mail.cc.len();
    if recipients > MAX_RECIPIENTS {
        return Err(refused(format!(
            "it has {recipients} recipients in `to` and `cc` together; at most {MAX_RECIPIENTS} \
             are allowed"
        )));
    }
    for (field, address) in mail
        .to
        .iter()
        .map(|a| ("to", a))
        .chain(mail.cc.iter().map(|a| ("cc", a)))
        .chain(mail.reply_to.iter().map(|a| ("reply_to", a)))
    {
        check_address(field, address)?;
    }
    check_subject(&mail.subject)?;
    if mail.body.len() > MAX_BODY_BYTES {
        return Err(refused(format!(
            "its body is {} bytes; at most {MAX_BODY_BYTES} (64 KiB) are allowed",
            mail.body.len()
        )));
    }
    if mail.attachments.len() > MAX_ATTACHMENTS {
        return Err(refused(format!(
            "it has {} attachments; at most {MAX_ATTACHMENTS} are allowed",
            mail.attachments.len()
        )));
    }
    let total: usize = mail.attachments.iter().map(|a| a.bytes.len()).sum();
    if total > MAX_ATTACHMENT_BYTES {
        return Err(refused(format!(
            "its attachments are {total} bytes together; at most {MAX_ATTACHMENT_BYTES} (2 MiB) \
             are allowed"
        )));
    }
    for attachment in &mail.attachments {
        check_file_name(&attachment.name)?;
        check_content_type(&attachment.name, &attachment.content_type)?;
    }
    // Bounded above, so the escapes (at most a few characters for each byte) are never cut.
    mail.body = super::escape_controls(&mail.body.replace("\r\n", "\n"), &['\n', '\t'], usize::MAX);
    Ok(mail)
}

fn refused(rule: String) -> HostError {
    HostError::new(
        HostErrorKind::Invalid,
        format!("the mail is refused: {rule}"),
    )
}

/// Characters that could end a header, forge one, or read as something else in a terminal.
fn hostile(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A plain `local@domain`: the local part of RFC 5321's atext and single dots, the domain
/// of dotted LDH labels with at least one dot.
fn check_address(field: &str, address: &str) -> Result<(), HostError> {
    let plain = || {
        refused(format!(
            "{field} address {:?} is not a plain mail address: write local@domain only, no \
             name, brackets, spaces or line breaks (an international domain in its xn-- form)",
            super::sanitise(address)
        ))
    };
    let Some((local, domain)) = address.split_once('@') else {
        return Err(plain());
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let domain_ok = domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if local_ok && domain_ok {
        Ok(())
    } else {
        Err(plain())
    }
}

fn check_subject(subject: &str) -> Result<(), HostError> {
    if subject.contains(['\r', '\n']) {
        return Err(refused(
            "its subject holds a line break (CR or LF): a subject is one line, and a line break \
             would start another mail header"
                .into(),
        ));
    }
    if let Some(c) = subject.chars().find(|c| hostile(*c)) {
        return Err(refused(format!(
            "its subject holds the control character {}: write plain text",
            c.escape_unicode()
        )));
    }
    let chars = subject.chars().count();
    if chars > MAX_SUBJECT_CHARS {
        return Err(refused(format!(
            "its subject is {chars} characters long; at most {MAX_SUBJECT_CHARS} are allowed"
        )));
    }
    Ok(())
}

fn check_file_name(name: &str) -> Result<(), HostError> {
    let plain = !name.is_empty()
        && name.len() <= 255
        && !name.contains(['/', '\\', '"'])
        && !name.contains("..")
        && !name.chars().any(hostile);
    if plain {
        return Ok(());
    }
    Err(refused(format!(
        "attachment name {:?} is not a plain file name: no folders (/ or \\), no .., no quotes \
         or control characters, 1 to 255 bytes",
        super::sanitise(name)
    )))
}

/// A bare `type/subtype` of RFC 6838's restricted-name characters, without parameters.
fn check_content_type(name: &str, content_type: &str) -> Result<(), HostError> {
    let token = |part: &str| {
        !part.is_empty()
            && part.len() <= 127
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    match content_type.split_once('/') {
        Some((kind, subtype)) if token(kind) && token(subtype) => Ok(()),
        _ => Err(refused(format!(
            "attachment {name}: content type {:?} is not a bare type/subtype (e.g. \
             application/pdf)",
            super::sanitise(content_type)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certvakt_plugin_api::MailAttachment;

    fn mail() -> Mail {
        Mail {
            to: vec!["efrikort.behorighet@region.example".into()],
            cc: vec!["support@cgi.example".into()],
            reply_to: Some("it@vardcentral.example".into()),
            subject: "Behörighet till eFrikort för SE2321000016-39KJ".into(),
            body: "Hej,\r\nvi ansöker om behörighet.\n\tMvh\n".into(),
            attachments: vec![MailAttachment {
                name: "request.csr".into(),
                content_type: "application/pkcs10".into(),
                bytes: vec![1, 2, 3],
            }],
        }
    }

    /// The message of the refusal of `mail`, which must be refused as invalid.
    fn refusal(mail: Mail) -> String {
        let error = clean_mail(mail).expect_err("the mail was accepted");
        assert_eq!(error.kind, HostErrorKind::Invalid, "{error:?}");
        assert!(
            error.message.starts_with("the mail is refused: "),
            "{error:?}"
        );
        error.message
    }

    #[test]
    fn a_plain_mail_passes_with_its_body_lines_kept() {
        let cleaned = clean_mail(mail()).unwrap();
        assert_eq!(cleaned.body, "Hej,\nvi ansöker om behörighet.\n\tMvh\n");
        assert_eq!(
            Mail {
                body: mail().body,
                ..cleaned
            },
            mail()
        );
        // The limits themselves are allowed.
        let at_limits = Mail {
            to: (0..MAX_RECIPIENTS - 1)
                .map(|i| format!("r{i}@region.example"))
                .collect(),
            cc: vec!["support@cgi.example".into()],
            subject: "s".repeat(MAX_SUBJECT_CHARS),
            body: "b".repeat(MAX_BODY_BYTES),
            attachments: (0..MAX_ATTACHMENTS)
                .map(|i| MailAttachment {
                    name: format!("part-{i}.bin"),
                    content_type: "application/octet-stream".into(),
                    bytes: vec![0; MAX_ATTACHMENT_BYTES / MAX_ATTACHMENTS],
                })
                .collect(),
            ..mail()
        };
        assert!(clean_mail(at_limits).is_ok());
    }

    #[test]
    fn other_control_characters_in_the_body_become_visible() {
        let cleaned = clean_mail(Mail {
            body: "a\u{1b}[31mb\rc\u{0}".into(),
            ..mail()
        })
        .unwrap();
        assert_eq!(cleaned.body, "a\\u{1b}[31mb\\rc\\u{0}");
    }

    #[test]
    fn each_rule_is_refused_with_its_message() {
        let cases: Vec<(Mail, &str)> = vec![
            (
                Mail {
                    to: Vec::new(),
                    ..mail()
                },
                "it has no recipient",
            ),
            (
                Mail {
                    to: (0..MAX_RECIPIENTS)
                        .map(|i| format!("r{i}@region.example"))
                        .collect(),
                    ..mail()
                },
                "it has 11 recipients in `to` and `cc` together; at most 10",
            ),
            (
                Mail {
                    cc: vec!["Support <support@cgi.example>".into()],
                    ..mail()
                },
                "cc address \"Support <support@cgi.example>\" is not a plain mail address",
            ),
            (
                Mail {
                    subject: "s".repeat(MAX_SUBJECT_CHARS + 1),
                    ..mail()
                },
                "its subject is 201 characters long; at most 200",
            ),
            (
                Mail {
                    subject: "Bell\u{7}".into(),
                    ..mail()
                },
                "its subject holds the control character \\u{7}",
            ),
            (
                Mail {
                    body: "b".repeat(MAX_BODY_BYTES + 1),
                    ..mail()
                },
                "its body is 65537 bytes; at most 65536",
            ),
            (
                Mail {
                    attachments: vec![mail().attachments[0].clone(); MAX_ATTACHMENTS + 1],
                    ..mail()
                },
                "it has 9 attachments; at most 8",
            ),
            (
                Mail {
                    attachments: vec![
                        MailAttachment {
                            name: "a.bin".into(),
                            content_type: "application/octet-stream".into(),
                            bytes: vec![0; MAX_ATTACHMENT_BYTES / 2],
                        },
                        MailAttachment {
                            name: "b.bin".into(),
                            content_type: "application/octet-stream".into(),
                            bytes: vec![0; MAX_ATTACHMENT_BYTES / 2 + 1],
                        },
                    ],
                    ..mail()
                },
                "its attachments are 2097153 bytes together; at most 2097152",
            ),
        ];
        for (mail, expected) in cases {
            let message = refusal(mail);
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn addresses_must_be_plain() {
        for bad in [
            "support",
            "@cgi.example",
            "support@",
            "support@localhost",
            "support@cgi..example",
            "support@-cgi.example",
            "a@b@cgi.example",
            "sup port@cgi.example",
            ".support@cgi.example",
            "sup..port@cgi.example",
            "support@cgi.example>",
            "support@cgi.exämple",
            "\"support\"@cgi.example",
            "support@[192.0.2.1]",
        ] {
            let message = refusal(Mail {
                to: vec![bad.into()],
                ..mail()
            });
            assert!(
                message.contains("is not a plain mail address"),
                "{bad}: {message}"
            );
        }
        for good in [
            "support@cgi.example",
            "efrikort.behorighet+sll@region.stockholm.example",
            "it@xn--skne-loa.example",
        ] {
            assert!(
                clean_mail(Mail {
                    to: vec![good.into()],
                    ..mail()
                })
                .is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn attachment_names_must_be_plain_file_names_and_types_bare() {
        for bad in [
            "",
            "../etc/passwd",
            "forms/request.csr",
            "..",
            "a..b.pdf",
            "c:\\request.csr",
            "request\".csr",
            "request\n.csr",
            "evil\u{202e}fdp.exe",
        ] {
            let message = refusal(Mail {
                attachments: vec![MailAttachment {
                    name: bad.into(),
                    ..mail().attachments[0].clone()
                }],
                ..mail()
            });
            assert!(
                message.contains("is not a plain file name"),
                "{bad:?}: {message}"
            );
        }
        for bad in [
            "application",
            "application/",
            "text/plain; charset=utf-8",
            "text/plain\r\nBcc: x@evil.example",
        ] {
            let message = refusal(Mail {
                attachments: vec![MailAttachment {
                    content_type: bad.into(),
                    ..mail().attachments[0].clone()
                }],
                ..mail()
            });
            assert!(
                message.contains("is not a bare type/subtype"),
                "{bad:?}: {message}"
            );
        }
    }

    #[test]
    fn a_header_injection_is_refused_not_rewritten() {
        for subject in [
            "Access\r\nBcc: everyone@evil.example",
            "Access\nBcc: everyone@evil.example",
            "Access\rBcc: everyone@evil.example",
        ] {
            let message = refusal(Mail {
                subject: subject.into(),
                ..mail()
            });
            assert!(
                message.contains("its subject holds a line break (CR or LF)"),
                "{message}"
            );
        }
        for address in [
            "support@cgi.example\r\nBcc: everyone@evil.example",
            "support@cgi.example\nBcc: everyone@evil.example",
        ] {
            for mail in [
                Mail {
                    to: vec![address.into()],
                    ..mail()
                },
                Mail {
                    cc: vec![address.into()],
                    ..mail()
                },
                Mail {
                    reply_to: Some(address.into()),
                    ..mail()
                },
            ] {
                let message = refusal(mail);
                assert!(message.contains("is not a plain mail address"), "{message}");
                // The refusal quotes the address without the line break itself.
                assert!(
                    !message.contains('\n') && !message.contains('\r'),
                    "{message}"
                );
            }
        }
    }
}
