//! Calls to FMK's MedicineCard service: an ID card from the SOSI STS (one per plugin call),
//! the DGWS envelope around each body, and FMK's faults turned into what the daemon and the
//! operator can act on.

use certvakt_plugin_api::{Host, PluginError};
use certvakt_soap::call::{Answer, SoapRequest, call};
use certvakt_soap::xs_datetime;

use crate::message::{self, Linking, Operation, Whitelisting};
use crate::settings::Settings;
use crate::sosi::{self, Credential};

/// FMK refused a request: its fault code (`not_authorized`) and words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FmkFault {
    pub operation: Operation,
    pub code: String,
    pub text: String,
}

impl FmkFault {
    /// FMK says the caller may not do this: the owner has to.
    pub fn not_authorized(&self) -> bool {
        self.code.eq_ignore_ascii_case("not_authorized")
    }

    /// The fault as an error that says what to do.
    pub fn into_error(self, settings: &Settings) -> PluginError {
        let FmkFault {
            operation,
            code,
            text,
        } = self;
        let said = format!("FMK refused {} ({code}: {text})", operation.name());
        let error = match code.as_str() {
            "expired_idcard" | "invalid_idcard" => PluginError::temporary(format!(
                "{said}; certvakt fetches a new ID card from the SOSI STS at the next attempt"
            )),
            "syntax_error" | "missing_required_header" | "signature_not_supported" => {
                PluginError::permanent(format!(
                    "{said}. The request does not have the form this FMK expects: check that \
                     fmk_version = \"{}\" is the interface the endpoint serves",
                    match settings.version {
                        crate::settings::FmkVersion::E6 => "1.4.6-E6",
                        crate::settings::FmkVersion::V160 => "1.6.0",
                    }
                ))
            }
            "invalid_signature" | "invalid_certificate" => PluginError::needs_person(format!(
                "{said}. FMK does not accept the certificate that signed the ID card: check \
                 that it is whitelisted for the pharmacy's CVR {} and at the SOSI STS",
                settings.cvr
            )),
            "not_authorized" => PluginError::needs_person(format!(
                "{said}. The certificate certvakt calls with may not do this for CVR {}: check \
                 the certificate's CVR and that the pharmacy owner (Apoteker) is the one \
                 configured",
                settings.cvr
            )),
            _ => PluginError::needs_person(format!(
                "{said}. Look at what FMK says; when it is fixed, let certvakt try again with \
                 `certvakt renew <id>`"
            )),
        };
        error.with_fault_code(format!("fmk:{code}"))
    }
}

/// An FMK session for one plugin call.
#[derive(Debug)]
pub struct Fmk<'h, 'a> {
    host: &'h Host<'a>,
    settings: &'h Settings,
    credential: Credential<'h>,
    card: Option<String>,
    sequence: u32,
}

impl<'h, 'a> Fmk<'h, 'a> {
    pub fn new(host: &'h Host<'a>, settings: &'h Settings, credential: Credential<'h>) -> Self {
        Fmk {
            host,
            settings,
            credential,
            card: None,
            sequence: 0,
        }
    }

    /// The whitelistings FMK has for the settings' CVR.
    pub fn list(&mut self) -> Result<Vec<Whitelisting>, PluginError> {
        let body = message::get_body(self.settings.version, &self.settings.cvr)
            .map_err(PluginError::permanent)?;
        match self.send(Operation::Get, &body)? {
            Ok(answer) => message::whitelistings(self.settings.version, &answer)
                .map_err(PluginError::permanent),
            Err(fault) => Err(fault.into_error(self.settings)),
        }
    }

    /// Creates `entry`; `Err(fault)` when FMK refuses.
    pub fn create(&mut self, entry: &Whitelisting) -> Result<Result<(), FmkFault>, PluginError> {
        let body = message::create_body(self.settings.version, self.settings, entry)
            .map_err(PluginError::permanent)?;
        Ok(self.send(Operation::Create, &body)?.map(drop))
    }

    /// Deletes `entry`, sent exactly as FMK listed it; `Err(fault)` when FMK refuses.
    pub fn delete(&mut self, entry: &Whitelisting) -> Result<Result<(), FmkFault>, PluginError> {
        let body = message::delete_body(self.settings.version, self.settings, entry)
            .map_err(PluginError::permanent)?;
        Ok(self.send(Operation::Delete, &body)?.map(drop))
    }

    fn send(
        &mut self,
        operation: Operation,
        body: &str,
    ) -> Result<Result<String, FmkFault>, PluginError> {
        let now = self.host.now()?;
        self.sequence += 1;
        let message_id = crate::unique_id(now, &format!("message-{}", self.sequence));
        let card = match &self.card {
            Some(card) => card.clone(),
            None => {
                let card = sosi::id_card(
                    self.host,
                    self.settings,
                    self.credential,
                    &crate::unique_id(now, "idcard"),
                )?;
                self.card = Some(card.clone());
                card
            }
        };
        let envelope = message::envelope(
            self.settings,
            &card,
            Linking {
                flow_id: &message_id,
                message_id: &message_id,
                created: &xs_datetime(now),
            },
            body,
        )
        .map_err(PluginError::permanent)?;
        let answer = call(
            self.host,
            SoapRequest {
                service: "FMK",
                url: &self.settings.fmk_endpoint,
                action: &operation.action(self.settings.version),
                envelope,
                identity: self.credential.identity.clone(),
                trust: self.settings.fmk_trust.clone(),
                timeout_ms: 30_000,
            },
        )?;
        Ok(match answer {
            Answer::Envelope(text) => Ok(text),
            Answer::Fault { fault, .. } => Err(FmkFault {
                operation,
                code: message::fault_code(&fault),
                text: message::fault_text(&fault),
            }),
        })
    }
}
