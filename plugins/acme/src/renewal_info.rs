//! ACME Renewal Information (RFC 9773): the CA's suggested window for renewing a
//! certificate, and the `replaces` field that ties a new order to the certificate it renews.
//!
//! Contract:
//! - [`cert_id`] is the RFC 9773 §4.1 identifier: base64url of the Authority Key Identifier's
//!   keyIdentifier, a dot, base64url of the serial number's DER content bytes. A certificate
//!   without a keyIdentifier has no identifier, and so no window.
//! - [`window`] asks the directory's `renewalInfo` resource (an unauthenticated GET). A
//!   directory without one, a 404 (the CA does not know the certificate), or a certificate
//!   without an identifier is `None`: the daemon's own schedule applies. `Retry-After` says
//!   when to ask again; without it, in six hours.

use certvakt_plugin_api::{CertificateInfo, HttpRequest, PluginError, RenewalWindow};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::client::{self, Client, Failure};
use crate::jws::b64;

/// When to ask again if the CA does not say (RFC 9773 §4.3.2 suggests six hours).
pub const DEFAULT_CHECK_SECS: u64 = 6 * 3_600;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Info {
    suggested_window: Window,
    #[serde(default, rename = "explanationURL")]
    explanation_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Window {
    start: String,
    end: String,
}

/// The RFC 9773 certificate identifier of a PEM certificate, if it has an AKI key id.
pub fn cert_id(certificate: &CertificateInfo) -> Result<Option<String>, PluginError> {
    let der = pem::parse(&certificate.pem)
        .map_err(|e| PluginError::permanent(format!("the current certificate is not PEM: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.contents()).map_err(|e| {
        PluginError::permanent(format!("the current certificate does not parse: {e}"))
    })?;
    let key_id = cert
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        });
    Ok(key_id.map(|key_id| format!("{}.{}", b64(&key_id), b64(cert.raw_serial()))))
}

/// The CA's suggested window for `current`, if the CA offers renewal information.
pub fn window(
    client: &Client<'_>,
    renewal_info: &str,
    current: &CertificateInfo,
) -> Result<Option<RenewalWindow>, PluginError> {
    let Some(id) = cert_id(current)? else {
        client.host.info(
            "the certificate has no authority key identifier, so the CA cannot be asked for a renewal window",
        );
        return Ok(None);
    };
    let url = format!("{}/{id}", renewal_info.trim_end_matches('/'));
    let response = client
        .host
        .http(client::request(client.settings, HttpRequest::get(&url)))?;
    if response.status == 404 {
        return Ok(None);
    }
    if response.status != 200 {
        return Err(
            match client::refusal(&client.host, &url, &response, "the renewal information") {
                Failure::Later { why, .. } => PluginError::temporary(why),
                other => other.into_error(),
            },
        );
    }
    let info: Info = serde_json::from_slice(&response.body).map_err(|e| {
        PluginError::permanent(format!(
            "the CA's renewal information at {url} does not parse as RFC 9773 says: {e}"
        ))
    })?;
    let parse = |text: &str| {
        OffsetDateTime::parse(text, &Rfc3339)
            .map(|t| t.unix_timestamp())
            .map_err(|e| {
                PluginError::permanent(format!(
                    "the CA's renewal window at {url} has a time that is not RFC 3339 ({text:?}): {e}"
                ))
            })
    };
    let (start, end) = (
        parse(&info.suggested_window.start)?,
        parse(&info.suggested_window.end)?,
    );
    let check_again_secs =
        client::retry_after(&client.host, &response).unwrap_or(DEFAULT_CHECK_SECS);
    Ok(Some(RenewalWindow {
        start,
        end,
        check_again_secs,
        explanation: info.explanation_url,
    }))
}
