//! The NemLog-in STS: one token request in the system-user ("signature") scenario, and what
//! its answer says about the certificate that signed it.
//!
//! Contract:
//! - [`request`] writes the OIO WS-Trust `RequestSecurityToken` of brief dk-nemlogin.md §5,
//!   quirks included: `wsa:To` with its trailing slash, `AppliesTo` in the WS-Policy 2002/12
//!   namespace, `Lifetime/Expires` and the timestamp without milliseconds, a `Context` and a
//!   `MessageID` unique to the request. The host signs it ([`Credential::key`]); the
//!   certificate goes in twice, as the `wsse:BinarySecurityToken` that the signature's
//!   `KeyInfo` points to and inside `UseKey`.
//! - [`probe`] sends it (whole, with `Content-Length`: [`certvakt_soap::call`]) and sorts the
//!   answer into a [`Probe`]: a token was issued; the STS refused the certificate
//!   (`wst:FailedAuthentication`: not attached to the system user, or not provisioned); the
//!   STS could not be reached. Every other fault is an error that names the fault and what to
//!   check ([`fault_error`]).
//! - The answer's own signature is not verified. The client cannot read the token (it is
//!   encrypted for the web service), and the answer proves nothing that TLS to the configured
//!   `sts_endpoint` (checked against `sts_trust`) does not already prove: that the STS said
//!   it. Verifying it would also mean accepting its known quirks: the signature is not
//!   BSP-compliant (a canonicalisation transform is missing) and `wsa:Action` echoes
//!   `RST/Issue` rather than `RSTR/Issue`. Neither is a reason to reject an answer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use certvakt_plugin_api::{
    ClientIdentity, ErrorKind, Host, HttpRequest, KeyRef, PluginError, SignatureAlgorithm,
};
use certvakt_soap::call::{self, Answer, SoapRequest};
use certvakt_soap::dsig::{self, Reference};
use certvakt_soap::read::{self, Fault};
use certvakt_soap::write::XmlWriter;
use certvakt_soap::{ns, xs_datetime};

use crate::settings::Settings;

/// `wsa:Action` and `SOAPAction` of the request.
pub const ACTION_ISSUE: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue";
/// `wsa:To` of the system-user scenario; the trailing slash belongs to it.
pub const TO_SIGNATURE: &str = "https://signature.sts.nemlog-in.dk/";
/// `wst:KeyType`: holder-of-key with the client's public key.
pub const KEY_TYPE_PUBLIC: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/PublicKey";
/// `wst:RequestType`.
pub const REQUEST_ISSUE: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue";
/// `wst:TokenType`: a SAML 2.0 assertion.
pub const TOKEN_SAML2: &str =
    "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0";
/// `EncodingType` of a binary security token.
pub const BASE64_BINARY: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";
/// How long the request's timestamp and the requested token live: 5 minutes, as the examples.
pub const LIFETIME_SECS: i64 = 300;
/// The clock difference tolerated when judging the token's `Lifetime`.
pub const CLOCK_SKEW_SECS: i64 = 300;

/// The `wsu:Id`s of the signed parts, in the order the signature lists them.
pub mod id {
    pub const ACTION: &str = "action";
    pub const MESSAGE_ID: &str = "messageid";
    pub const TO: &str = "to";
    pub const TIMESTAMP: &str = "timestamp";
    pub const TOKEN: &str = "x509token";
    pub const BODY: &str = "body";
    /// All six.
    pub const SIGNED: [&str; 6] = [ACTION, MESSAGE_ID, TO, TIMESTAMP, TOKEN, BODY];
}

/// The certificate a request is made with: its DER, and the key and TLS identity of the host
/// that go with it (the new certificate before the install, the live one after, the replaced
/// one in retire).
#[derive(Debug, Clone)]
pub struct Credential<'a> {
    pub certificate_der: &'a [u8],
    pub key: KeyRef,
    pub identity: ClientIdentity,
}

/// What the STS said about the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A token was issued: the system user holds the certificate, provisioned. `expires` is
    /// the token's `Lifetime/Expires` as the STS wrote it.
    Issued { expires: String },
    /// `wst:FailedAuthentication`: the STS does not know the certificate (not attached to a
    /// system user, or the change not provisioned).
    Refused(Fault),
    /// No answer, an HTTP 5xx that is not SOAP, or a SOAP `Server` fault: the STS is down or
    /// in trouble. Asking again later may work.
    Unavailable(String),
}

/// A request's unique values and its clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unique {
    /// `uuid:…`, the `wsa:MessageID`.
    pub message_id: String,
    /// `urn:uuid:…`, the `Context` the answer must echo.
    pub context: String,
    /// The host's clock, Unix seconds.
    pub now: i64,
}

impl Unique {
    /// Fresh random identifiers, at the host's `now`.
    pub fn new(now: i64) -> Result<Unique, PluginError> {
        Ok(Unique {
            message_id: format!("uuid:{}", uuid_v4()?),
            context: format!("urn:uuid:{}", uuid_v4()?),
            now,
        })
    }
}

/// A random (version 4) UUID from the operating system's generator.
pub fn uuid_v4() -> Result<String, PluginError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        PluginError::temporary(format!("the system's random number generator failed: {e}"))
    })?;
    #[cfg(test)]
    predictable::replace(&mut bytes);
    // The crate sets the version (4) and variant bits over the random bytes.
    Ok(uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string())
}

/// The request envelope, signed through the host with `credential.key`.
pub fn request(
    host: &Host<'_>,
    settings: &Settings,
    credential: &Credential<'_>,
    unique: &Unique,
) -> Result<String, PluginError> {
    let unsigned = envelope(settings, credential.certificate_der, unique, None)?;
    let references: Vec<Reference<'_>> = id::SIGNED
        .iter()
        .map(|id| Reference::detached(id))
        .collect();
    let signed_info = dsig::signed_info(&unsigned, &["wsu:Id"], &references)
        .map_err(|e| PluginError::permanent(e.to_string()))?;
    let value = host.sign(
        credential.key.clone(),
        SignatureAlgorithm::RsaPkcs1Sha256,
        signed_info.as_bytes(),
    )?;
    let key_info = dsig::key_info_token_reference(id::TOKEN)
        .map_err(|e| PluginError::permanent(e.to_string()))?;
    let signature = dsig::signature(&signed_info, &value, &key_info, None)
        .map_err(|e| PluginError::permanent(e.to_string()))?;
    envelope(
        settings,
        credential.certificate_der,
        unique,
        Some(&signature),
    )
}

/// The envelope, with the signature in `wsse:Security` when there is one. Written the same
/// way both times, so the digests over the unsigned one hold in the signed one.
fn envelope(
    settings: &Settings,
    certificate_der: &[u8],
    unique: &Unique,
    signature: Option<&str>,
) -> Result<String, PluginError> {
    let certificate = STANDARD.encode(certificate_der);
    let created = xs_datetime(unique.now);
    let expires = xs_datetime(unique.now + LIFETIME_SECS);
    let token_attrs = |with_id: bool| {
        let mut attrs = vec![("ValueType", dsig::X509V3), ("EncodingType", BASE64_BINARY)];
        if with_id {
            attrs.push(("wsu:Id", id::TOKEN));
        }
        attrs
    };
    let mut w = XmlWriter::new();
    w.element(
        "soapenv:Envelope",
        &[
            ("xmlns:soapenv", ns::SOAP11),
            ("xmlns:wsa", ns::WSA_10),
            ("xmlns:wsse", ns::WSSE),
            ("xmlns:wsu", ns::WSU),
            ("xmlns:wst", ns::WST_13),
        ],
        |w| {
            w.element("soapenv:Header", &[], |w| {
                w.text_element("wsa:Action", &[("wsu:Id", id::ACTION)], ACTION_ISSUE);
                w.text_element(
                    "wsa:MessageID",
                    &[("wsu:Id", id::MESSAGE_ID)],
                    &unique.message_id,
                );
                w.text_element("wsa:To", &[("wsu:Id", id::TO)], TO_SIGNATURE);
                w.element("wsse:Security", &[("soapenv:mustUnderstand", "1")], |w| {
                    w.element("wsu:Timestamp", &[("wsu:Id", id::TIMESTAMP)], |w| {
                        w.text_element("wsu:Created", &[], &created);
                        w.text_element("wsu:Expires", &[], &expires);
                    });
                    w.text_element("wsse:BinarySecurityToken", &token_attrs(true), &certificate);
                    if let Some(signature) = signature {
                        w.raw(signature);
                    }
                });
            });
            w.element("soapenv:Body", &[("wsu:Id", id::BODY)], |w| {
                w.element(
                    "wst:RequestSecurityToken",
                    &[("Context", unique.context.as_str())],
                    |w| {
                        w.text_element("wst:KeyType", &[], KEY_TYPE_PUBLIC);
                        w.element("wst:Lifetime", &[], |w| {
                            w.text_element("wsu:Expires", &[], &expires);
                        });
                        w.text_element("wst:RequestType", &[], REQUEST_ISSUE);
                        w.text_element("wst:TokenType", &[], TOKEN_SAML2);
                        w.element("wst:UseKey", &[], |w| {
                            w.text_element(
                                "wsse:BinarySecurityToken",
                                &token_attrs(false),
                                &certificate,
                            );
                        });
                        w.element("wsp:AppliesTo", &[("xmlns:wsp", ns::WSP_2002_12)], |w| {
                            w.element("wsa:EndpointReference", &[], |w| {
                                w.text_element("wsa:Address", &[], &settings.applies_to);
                            });
                        });
                    },
                );
            });
        },
    );
    w.finish().map_err(PluginError::permanent)
}

/// Asks the STS for a token with `credential`, and says what the answer means.
pub fn probe(
    host: &Host<'_>,
    settings: &Settings,
    credential: &Credential<'_>,
) -> Result<Probe, PluginError> {
    let unique = Unique::new(host.now()?)?;
    let envelope = request(host, settings, credential, &unique)?;
    let answer = call::call(
        host,
        SoapRequest {
            service: "the NemLog-in STS",
            url: &settings.sts_endpoint,
            action: ACTION_ISSUE,
            envelope,
            identity: credential.identity.clone(),
            trust: settings.sts_trust.clone(),
            timeout_ms: HttpRequest::DEFAULT_TIMEOUT_MS,
        },
    );
    match answer {
        Ok(Answer::Envelope(text)) => {
            token(&text, &unique, settings).map(|expires| Probe::Issued { expires })
        }
        Ok(Answer::Fault { fault, .. }) if is_wst(&fault, "FailedAuthentication") => {
            Ok(Probe::Refused(fault))
        }
        Ok(Answer::Fault { fault, status })
            if fault.code_local == "Server" && !is_wst_any(&fault) =>
        {
            Ok(Probe::Unavailable(format!(
                "the NemLog-in STS answered HTTP {status} with a server fault ({}: {})",
                fault.code, fault.string
            )))
        }
        Ok(Answer::Fault { fault, .. }) => Err(fault_error(&fault, settings)),
        Err(e) if e.kind == ErrorKind::Temporary => Ok(Probe::Unavailable(e.message)),
        Err(e) => Err(e),
    }
}

/// A `wst:` fault with this local name. A fault code without a namespace declaration but
/// written `wst:…` counts too: what matters is what the STS meant.
fn is_wst(fault: &Fault, local: &str) -> bool {
    fault.code_local == local && is_wst_any(fault)
}

fn is_wst_any(fault: &Fault) -> bool {
    match &fault.code_namespace {
        Some(namespace) => namespace == ns::WST_13,
        None => fault.code.starts_with("wst:"),
    }
}

/// The error for a fault other than `FailedAuthentication`: its code and text, and what to
/// check. Which condition gives which code is not published (brief §9 question 5), so the
/// hints name the likely causes.
pub fn fault_error(fault: &Fault, settings: &Settings) -> PluginError {
    let said = format!(
        "the NemLog-in STS ({}) refused the token request with {}: \"{}\"",
        settings.sts_endpoint, fault.code, fault.string
    );
    let wst = is_wst_any(fault);
    let (kind, check) = match fault.code_local.as_str() {
        "InvalidRequest" | "BadRequest" if wst => (
            ErrorKind::Permanent,
            format!(
                "check applies_to (\"{}\"): it must be the web service's entity ID exactly as \
                 NemLog-in registered it, and the web service must be known in {}; and that \
                 the system user has been granted access to {} and provisioned since",
                settings.applies_to,
                settings.environment.as_str(),
                settings.web_service
            ),
        ),
        "InvalidSecurityToken" if wst => (
            ErrorKind::Permanent,
            format!(
                "the STS does not accept the certificate itself: it must be a valid, \
                 unrevoked OCES organisation or system certificate from MitID Erhverv for CVR \
                 {}, from the {} CA (integration test takes test certificates)",
                settings.cvr,
                settings.environment.as_str()
            ),
        ),
        "ExpiredData" | "InvalidTimeRange" if wst => (
            ErrorKind::Temporary,
            "the request's timestamp was outside the STS's window: check this server's clock \
             (NTP); certvakt tries again"
                .to_owned(),
        ),
        "RequestFailed" if wst => (
            ErrorKind::Temporary,
            "the STS gives no reason; if it persists, check applies_to, the system user's \
             access to the web service, and that the last change was provisioned"
                .to_owned(),
        ),
        _ => (
            ErrorKind::Permanent,
            "check sts_endpoint and applies_to; the fault does not come from the WS-Trust \
             profile the STS speaks"
                .to_owned(),
        ),
    };
    PluginError::new(kind, format!("{said}. What to check: {check}")).with_fault_code(&fault.code)
}

/// The token's `Lifetime/Expires`, if the answer is a token response for this request.
fn token(text: &str, unique: &Unique, settings: &Settings) -> Result<String, PluginError> {
    let bad = |why: String| {
        PluginError::permanent(format!(
            "the NemLog-in STS ({}) answered, but not with a token for this request: {why}",
            settings.sts_endpoint
        ))
    };
    let doc = read::parse(text, "the STS's answer").map_err(bad)?;
    let payload = read::payload(&doc).map_err(bad)?;
    let response = if payload.has_tag_name((ns::WST_13, "RequestSecurityTokenResponseCollection")) {
        read::child(payload, ns::WST_13, "RequestSecurityTokenResponse").ok_or_else(|| {
            bad(
                "the RequestSecurityTokenResponseCollection holds no RequestSecurityTokenResponse"
                    .into(),
            )
        })?
    } else if payload.has_tag_name((ns::WST_13, "RequestSecurityTokenResponse")) {
        payload
    } else {
        return Err(bad(format!(
            "the body holds {{{}}}{}, not a RequestSecurityTokenResponse",
            payload.tag_name().namespace().unwrap_or(""),
            payload.tag_name().name()
        )));
    };
    match response.attribute("Context") {
        Some(context) if context == unique.context => {}
        Some(other) => {
            return Err(bad(format!(
                "its Context is \"{other}\", the request's was \"{}\"",
                unique.context
            )));
        }
        None => return Err(bad("it does not echo the request's Context".into())),
    }
    let requested = read::child(response, ns::WST_13, "RequestedSecurityToken")
        .ok_or_else(|| bad("it has no RequestedSecurityToken".into()))?;
    // The token is a saml:EncryptedAssertion for the web service: present is all the client
    // can see of it.
    if !requested.children().any(|c| c.is_element()) {
        return Err(bad("its RequestedSecurityToken is empty".into()));
    }
    let expires = read::child(response, ns::WST_13, "Lifetime")
        .and_then(|lifetime| read::child_text(lifetime, ns::WSU, "Expires"))
        .ok_or_else(|| bad("it has no Lifetime/Expires".into()))?;
    let at = time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            bad(format!(
                "its Lifetime/Expires \"{expires}\" is not a date and time: {e}"
            ))
        })?
        .unix_timestamp();
    if at < unique.now - CLOCK_SKEW_SECS {
        return Err(bad(format!(
            "the token expired at {expires}, before it was asked for ({}); check this \
             server's clock",
            xs_datetime(unique.now)
        )));
    }
    Ok(expires.to_owned())
}

/// Tests answer with canned STS responses, which must echo the request's `Context`: a test
/// can make this thread's UUIDs a count (1, 2, 3, …) instead of random.
#[cfg(test)]
pub mod predictable {
    use std::cell::Cell;

    thread_local! {
        static COUNT: Cell<Option<u64>> = const { Cell::new(None) };
    }

    /// From now on, this thread's UUIDs count up from 1.
    pub fn start() {
        COUNT.with(|c| c.set(Some(0)));
    }

    /// The `n`th UUID after [`start`] (from 1).
    pub fn uuid(n: u64) -> String {
        format!("00000000-0000-4000-8000-{n:012x}")
    }

    pub(super) fn replace(bytes: &mut [u8; 16]) {
        COUNT.with(|c| {
            if let Some(n) = c.get() {
                let n = n + 1;
                c.set(Some(n));
                *bytes = [0; 16];
                // The version and variant bits go on top, as for random bytes.
                bytes[8..].copy_from_slice(&n.to_be_bytes());
            }
        });
    }
}
