//! se-efrikort: certvakt's plugin for a Swedish SITHS function certificate (funktionscertifikat)
//! and its access to eFrikort, CGI's national service for high-cost protection cards.
//!
//! eFrikort knows a calling system by the HSA-ID in its certificate's subject `serialNumber`,
//! over two-way TLS, and grants access per HSA-ID, region (vårdhuvudman) and environment after
//! an e-mail request the region approves. The renewal, method by method:
//!
//! - [`Plugin::csr_profile`]: `C=SE, L, O, CN=<fqdn>, serialNumber=<HSA-ID>` (PrintableString),
//!   SAN dNSName `<fqdn>`, clientAuth; key type from the settings (default RSA 2048).
//! - [`Plugin::issue`]: SITHS has no ordering API, so the order is an operator task for the
//!   SITHS eID portal or the ombud ([`task::order`]), completed by importing the certificate.
//! - [`Plugin::check_issued`]: [`check`] — HSA-ID, CN and SAN, clientAuth, validity.
//! - [`Plugin::register`] (before the install): what eFrikort has granted is kept in the
//!   plugin's state ([`grants`]). A renewal that keeps the HSA-ID, environment and regions is
//!   done at once. Otherwise, for each region without a grant: PRODUKTION is refused without a
//!   proven TEST grant; a proof that can tell a grant from none (a `GetExtendedCardForPerson`
//!   call with the new certificate, [`rivta`]) is tried first; then the access request
//!   ([`mail`]) goes through `host.send_mail` (sent, or an `.eml` for the task) and the step
//!   stays Pending, proving again every `grant_poll`, until eFrikort accepts the new
//!   certificate. So the new certificate does not go live before it has access.
//! - [`Plugin::verify`] (after the install): the same proof with the installed certificate.
//! - [`Plugin::retire`]: nothing to withdraw (eFrikort's grant is per HSA-ID, not per
//!   certificate): done.

use certvakt_plugin_api::profile::{
    CsrProfile, ExtendedKeyUsage, KeyAlgorithm, KeyUsage, StringType, SubjectAltName,
    SubjectAttribute, oid,
};
use certvakt_plugin_api::{
    About, CertificateContext, CheckIssued, ClientIdentity, Host, IssueOutcome, LogLevel,
    OrderContext, Plugin, PluginError, SettingProblem, StepContext, StepOutcome, export_plugin,
};
use certvakt_plugin_common::state;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod cert;
pub mod check;
pub mod grants;
pub mod mail;
pub mod rivta;
pub mod settings;
pub mod task;
#[cfg(test)]
mod tests;

use cert::Cert;
use grants::{Grant, Grants, How};
use rivta::Proof;
pub use settings::Settings;
use settings::{Environment, Region};

/// The plugin. Per-renewal data travels in the run's state ([`RunState`]); what eFrikort
/// granted, in the plugin's state ([`grants`]).
#[derive(Debug, Default)]
pub struct SeEfrikort;

export_plugin!(SeEfrikort);

/// How often the daemon asks about an order that is with a person (the import completes it).
pub const ORDER_POLL_SECS: u64 = 3600;

/// What a renewal run remembers between calls. No secrets, no personal data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// The principal HSA-IDs of the regions an access request went to in this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requested: Vec<String>,
}

impl RunState {
    fn read(step: &StepContext, method: &str) -> Result<RunState, PluginError> {
        state::read(
            &step.state,
            &state::Step {
                plugin: SeEfrikort::NAME,
                method,
                certificate_id: &step.certificate.certificate_id,
                by_hand: "check with each region and CGI which access requests for the HSA-ID \
                          were sent",
            },
        )
    }

    fn value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl Plugin for SeEfrikort {
    const NAME: &'static str = "se-efrikort";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn describe(&self) -> About {
        About {
            summary: "Swedish SITHS function certificates (funktionscertifikat) for eFrikort \
                      (CGI): the certificate is ordered by a person in the SITHS eID portal (an \
                      operator task) and imported; certvakt checks it, keeps eFrikort's access \
                      per HSA-ID, region and environment, prepares (or, with plugin_mail, \
                      sends) the access request (Anslutningsförfrågan) for a new HSA-ID, \
                      environment or region, and installs the new certificate once a RIV-TA \
                      call with it proves the access."
                .into(),
            settings: settings::docs(),
            key_policies: Vec::new(),
        }
    }

    fn validate_settings(&self, settings: &Value) -> Vec<SettingProblem> {
        Settings::parse(settings).err().unwrap_or_default()
    }

    fn csr_profile(
        &self,
        _host: &Host<'_>,
        certificate: CertificateContext,
    ) -> Result<CsrProfile, PluginError> {
        let settings = Settings::for_call(&certificate.settings)?;
        Ok(profile(&settings))
    }

    fn issue(&self, host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        let settings = Settings::for_call(&order.certificate.settings)?;
        host.info(format!(
            "the SITHS function certificate for {} is ordered by a person: task opened",
            settings.fqdn
        ));
        Ok(IssueOutcome::Pending {
            poll_after_secs: ORDER_POLL_SECS,
            task: Some(task::order(&order.certificate, &settings)),
            state: order.state,
        })
    }

    fn poll(&self, _host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        // The order is with a person; the import completes it.
        Ok(IssueOutcome::Pending {
            poll_after_secs: ORDER_POLL_SECS,
            task: None,
            state: order.state,
        })
    }

    fn check_issued(
        &self,
        host: &Host<'_>,
        check: CheckIssued,
    ) -> Result<Vec<String>, PluginError> {
        let settings = Settings::for_call(&check.certificate.settings)?;
        let now = host.now()?;
        Ok(check::objections(&settings, &check, now))
    }

    fn register(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let settings = Settings::for_call(&step.certificate.settings)?;
        let id = step.certificate.certificate_id.as_str();
        let hsa = new_hsa_id(&step, &settings)?;
        let environment = settings.environment;
        let mut grants = Grants::load(host, id)?;
        let now = host.now()?;

        // The first run certvakt makes for a certificate already in use with this HSA-ID: its
        // access is a fact, not something to ask the regions for again. Only the first: once
        // grants are recorded, a new environment (TEST → PRODUKTION) or region is asked for,
        // even though the certificate in use has the same HSA-ID.
        if grants.grants.is_empty()
            && current_hsa_id(&step.certificate).as_deref() == Some(hsa.as_str())
        {
            for region in &settings.regions {
                grants.record(host, grant(&hsa, region, environment, How::InUse, now))?;
            }
            host.info(format!(
                "no eFrikort grant recorded for HSA-ID {hsa} in {}: the certificate in use has \
                 this HSA-ID, so its access for {} is taken as given",
                environment.label(),
                names(settings.regions.iter())
            ));
        }

        let missing: Vec<&Region> = settings
            .regions
            .iter()
            .filter(|r| !grants.has(&hsa, &r.principal_hsa_id, environment))
            .collect();
        if missing.is_empty() {
            host.info(format!(
                "eFrikort has granted HSA-ID {hsa} {} access for every configured region: \
                 nothing to ask for",
                environment.label()
            ));
            return Ok(StepOutcome::Done { state: step.state });
        }
        if environment == Environment::Production {
            let untested: Vec<&Region> = missing
                .iter()
                .copied()
                .filter(|r| !grants.has(&hsa, &r.principal_hsa_id, Environment::Test))
                .collect();
            if !untested.is_empty() {
                return Err(PluginError::configuration(format!(
                    "eFrikort grants PRODUKTION only after TEST, and certvakt has no proven TEST \
                     grant for HSA-ID {hsa} and {}: it does not ask for production access. Run \
                     this certificate with environment = \"test\" (and the TEST endpoint) first, \
                     until certvakt proves the TEST access; then switch environment to \
                     \"production\"",
                    names(untested.into_iter())
                )));
            }
        }

        let mut run = RunState::read(&step, "register")?;
        let mut waiting: Vec<&Region> = Vec::new();
        let mut unreachable: Option<String> = None;
        let mut wsdl: Option<Proof> = None;
        for region in missing {
            // The WSDL answers whether or not access was granted: it is no proof before the
            // request went out.
            let can_prove =
                settings.full_probe() || run.requested.contains(&region.principal_hsa_id);
            if !can_prove {
                waiting.push(region);
                continue;
            }
            let proof = if settings.full_probe() {
                rivta::prove(
                    host,
                    &settings,
                    &region.principal_hsa_id,
                    ClientIdentity::Pending,
                )?
            } else {
                match &wsdl {
                    Some(proof) => proof.clone(),
                    None => {
                        let proof = rivta::prove_wsdl(host, &settings, ClientIdentity::Pending)?;
                        wsdl = Some(proof.clone());
                        proof
                    }
                }
            };
            match proof {
                Proof::Granted(said) => {
                    grants.record(host, grant(&hsa, region, environment, How::Proven, now))?;
                    host.log_with(
                        LogLevel::Info,
                        "eFrikort accepts the new certificate for this region",
                        &[
                            ("region", &region.name),
                            ("hsa_id", &hsa),
                            ("environment", environment.as_str()),
                            ("answer", &said),
                        ],
                    );
                }
                Proof::Denied(said) => {
                    host.log_with(
                        LogLevel::Info,
                        "eFrikort does not accept the new certificate for this region yet",
                        &[("region", &region.name), ("answer", &said)],
                    );
                    waiting.push(region);
                }
                Proof::Unreachable(why) => {
                    host.warn(format!(
                        "eFrikort did not answer the proof with the new certificate for {}: {why}",
                        region.name
                    ));
                    unreachable.get_or_insert(why);
                    waiting.push(region);
                }
            }
        }
        if waiting.is_empty() {
            host.info(format!(
                "eFrikort grants HSA-ID {hsa} {} access for every configured region: the new \
                 certificate may be installed",
                environment.label()
            ));
            return Ok(StepOutcome::Done { state: run.value() });
        }

        let to_ask: Vec<&Region> = waiting
            .iter()
            .copied()
            .filter(|r| !run.requested.contains(&r.principal_hsa_id))
            .collect();
        let mut task = None;
        if to_ask.is_empty() {
            if let Some(why) = unreachable {
                return Err(PluginError::temporary(format!(
                    "eFrikort did not answer the proof with the new certificate at {} ({why}): \
                     the TLS handshake failed or the service is down. If eFrikort does not take \
                     the new SITHS certificate, or endpoint / endpoint_trust are wrong, correct \
                     them; certvakt tries again later",
                    settings.endpoint
                )));
            }
        } else {
            let mut sent = Vec::new();
            for region in to_ask {
                let mail = mail::access_request(&settings, &hsa, environment, region);
                let outcome = host.send_mail(mail)?;
                run.requested.push(region.principal_hsa_id.clone());
                sent.push((region, outcome));
            }
            host.info(format!(
                "access request (Anslutningsförfrågan) for HSA-ID {hsa} in {} prepared for {}",
                environment.label(),
                names(sent.iter().map(|(r, _)| *r))
            ));
            task = Some(task::access(id, &settings, &hsa, &sent));
        }
        Ok(StepOutcome::Pending {
            poll_after_secs: settings.grant_poll.as_secs(),
            task,
            state: run.value(),
        })
    }

    fn verify(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let settings = Settings::for_call(&step.certificate.settings)?;
        if !settings.verify_after_install {
            return Ok(StepOutcome::Done { state: step.state });
        }
        let id = step.certificate.certificate_id.as_str();
        let hsa = new_hsa_id(&step, &settings)?;
        let environment = settings.environment;
        let mut grants = Grants::load(host, id)?;
        let now = host.now()?;
        let wsdl = if settings.full_probe() {
            None
        } else {
            Some(rivta::prove_wsdl(host, &settings, ClientIdentity::Current)?)
        };
        for region in &settings.regions {
            let proof = match &wsdl {
                Some(proof) => proof.clone(),
                None => rivta::prove(
                    host,
                    &settings,
                    &region.principal_hsa_id,
                    ClientIdentity::Current,
                )?,
            };
            match proof {
                Proof::Granted(said) => {
                    grants.record(host, grant(&hsa, region, environment, How::Proven, now))?;
                    host.log_with(
                        LogLevel::Info,
                        "eFrikort accepts the installed certificate",
                        &[("region", &region.name), ("answer", &said)],
                    );
                }
                Proof::Denied(said) => {
                    return Err(PluginError::needs_person(format!(
                        "eFrikort refuses the installed certificate (HSA-ID {hsa}) for {} in {}: \
                         {said}. Ask CGI ({}) and the region whether the access was granted for \
                         this HSA-ID; `certvakt rollback {id}` puts the previous certificate back",
                        region.name,
                        environment.label(),
                        settings.support_address
                    ))
                    .with_fault_code(rivta::ACCESS_DENIED));
                }
                Proof::Unreachable(why) => {
                    return Err(PluginError::temporary(format!(
                        "eFrikort did not answer the call with the installed certificate at {} \
                         ({why}): the TLS handshake failed or the service is down; certvakt \
                         tries again later",
                        settings.endpoint
                    )));
                }
            }
        }
        Ok(StepOutcome::Done { state: step.state })
    }
}

/// The CSR profile of a SITHS function certificate, in DER order (`C, L, O, CN,
/// serialNumber`: the RFC 2253 form `SERIALNUMBER=…, CN=…, O=…, L=…, C=SE` read backwards).
pub fn profile(settings: &Settings) -> CsrProfile {
    let attribute = |oid: &str, value: &str, string_type| SubjectAttribute {
        oid: oid.to_owned(),
        value: value.to_owned(),
        string_type,
    };
    let rsa = matches!(
        settings.key_type,
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
    );
    CsrProfile {
        key: settings.key_type,
        subject: vec![
            attribute(oid::COUNTRY, "SE", StringType::Printable),
            attribute(oid::LOCALITY, &settings.locality, StringType::Utf8),
            attribute(oid::ORGANIZATION, &settings.organization, StringType::Utf8),
            attribute(oid::COMMON_NAME, &settings.fqdn, StringType::Utf8),
            attribute(oid::SERIAL_NUMBER, &settings.hsa_id, StringType::Printable),
        ],
        sans: vec![SubjectAltName::Dns(settings.fqdn.clone())],
        key_usage: if rsa {
            vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment]
        } else {
            vec![KeyUsage::DigitalSignature]
        },
        extended_key_usage: vec![ExtendedKeyUsage::ClientAuth],
    }
}

/// The new certificate's HSA-ID, which must be the configured one.
fn new_hsa_id(step: &StepContext, settings: &Settings) -> Result<String, PluginError> {
    let new = step
        .new
        .as_ref()
        .ok_or_else(|| PluginError::permanent("the step was called without the new certificate"))?;
    let cert = Cert::read(&new.pem, "the new certificate").map_err(PluginError::permanent)?;
    match cert.hsa_id {
        Some(hsa) if hsa == settings.hsa_id => Ok(hsa),
        other => Err(PluginError::configuration(format!(
            "the new certificate is for HSA-ID {}, but the settings say hsa_id = \"{}\": \
             eFrikort's access is asked for and proved per HSA-ID. Import the certificate for \
             {}, or correct hsa_id",
            other.as_deref().unwrap_or("(none)"),
            settings.hsa_id,
            settings.hsa_id
        ))),
    }
}

/// The HSA-ID of the certificate in use, if it has one.
fn current_hsa_id(certificate: &CertificateContext) -> Option<String> {
    let current = certificate.current.as_ref()?;
    Cert::read(&current.pem, "the certificate in use")
        .ok()?
        .hsa_id
}

fn grant(hsa: &str, region: &Region, environment: Environment, how: How, at: i64) -> Grant {
    Grant {
        hsa_id: hsa.to_owned(),
        principal_hsa_id: region.principal_hsa_id.clone(),
        environment,
        region: region.name.clone(),
        how,
        at,
    }
}

/// "Region A, Region B".
fn names<'a>(regions: impl Iterator<Item = &'a Region>) -> String {
    regions
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
