//! no-nhn: certvakt's plugin for a Norwegian virksomhetssertifikat set (Buypass or
//! Commfides, SEID 2.0) and its `E_DS` address in NHN Adresseregisteret (AR).
//!
//! Other health actors find an organisation's certificates through AR: its `E_DS` address is
//! an LDAP URL naming the set in the CA's directory ([`ldap`]). The renewal, method by method:
//!
//! - [`Plugin::csr_profile`], [`Plugin::issue`]: neither CA has an ordering API, so the order
//!   is an operator task ([`task::order`]), completed by importing the set (`certvakt import`).
//!   With Commfides and certvakt's own keys the task carries one CSR per role.
//! - [`Plugin::check_issued`] (before the set is staged): [`check`] — organisation number,
//!   SEID 2 enterprise profile, key usage per role, key strength, validity.
//! - [`Plugin::register`] (before the install): every call reads AR first
//!   (`GetCommunicationPartyDetails` for each HER-id) and acts only on what is not done yet:
//!   1. waits (Pending, `publish_poll`) until `SearchCertificatesByLdapUrl` finds the new set
//!      at its URL — the CA publishes with a delay; after `publish_timeout` a task says so;
//!   2. writes the URL as a `FutureElectronicAddresses` entry with `ValidFrom` = the switch
//!      time (fixed in the run's state at the first write attempt), every current address
//!      unchanged, and reads the party back to see AR kept it;
//!   3. waits (Pending) until `ValidFrom`;
//!   4. reads back `GetCertificateDetailsForEncryption` / `…ForValidatingSignature` and
//!      compares them with the new certificates. AR did not promote the future address: with
//!      `fallback_write_current` certvakt writes the current address itself and reads back
//!      again; without it a person is asked ([`task::not_promoted`]).
//!
//!   Done only once every HER-id gives the new set: the daemon installs the new set right
//!   after register is done, so the installed set changes at the switch time.
//! - [`Plugin::verify`] (after the install): one HTTPS GET to `verify_url`, if set, with the new
//!   set as the client certificate.
//! - [`Plugin::retire`]: nothing to withdraw in AR (the new `E_DS` replaced the old); Pending
//!   until `switch time + legacy_decrypt_retention`, because the daemon keeps the old
//!   encryption key readable until the run retires (senders cache AR lookups).
//!
//! The run's state ([`RunState`]) is the journal of what register did per HER-id; a state that
//! does not parse stops the run rather than being read as "nothing written yet".

use std::collections::BTreeMap;

use certvakt_plugin_api::profile::{CsrProfile, KeyAlgorithm, KeyUsage, SubjectAttribute, oid};
use certvakt_plugin_api::{
    About, CertificateContext, CertificateInfo, CheckIssued, ClientIdentity, Host, HttpRequest,
    IssueOutcome, LogLevel, OrderContext, Plugin, PluginError, SettingProblem, StepContext,
    StepOutcome, TaskSpec, export_plugin,
};
use certvakt_plugin_common::state;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod ar;
pub mod cert;
pub mod check;
pub mod ldap;
pub mod settings;
pub mod task;
#[cfg(test)]
mod tests;

use ar::{Address, Ar, Party, Purpose};
use cert::Cert;
pub use settings::Settings;
use settings::{Ca, KeySource, LdapBase, Level};

/// The plugin. Per-renewal data travels in the run's state ([`RunState`]).
#[derive(Debug, Default)]
pub struct NoNhn;

export_plugin!(NoNhn);

/// How often the daemon asks about an order that is with a person (the import completes it).
pub const ORDER_POLL_SECS: u64 = 3600;

/// What a renewal run remembers between calls. No secrets, no personal data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// When register first ran (Unix seconds): `publish_timeout` counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_attempt: Option<i64>,
    /// The new set's `E_DS` URL, once AR found the set there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Whether the task saying the CA has not published is open.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_task_open: bool,
    /// The switch time (`ValidFrom`, Unix seconds), fixed at the first write attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_at: Option<i64>,
    /// Per HER-id (as a string key): what was written there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parties: BTreeMap<String, PartyState>,
    /// Retire's clock when register recorded no switch time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_from: Option<i64>,
}

/// What register did for one HER-id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyState {
    pub level: Level,
    /// Where the new URL was written: `future` (with `valid_from`) or `current`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<Written>,
    /// `ValidFrom` as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    /// The read-back gave the new set.
    #[serde(default)]
    pub confirmed: bool,
    /// A person was asked to make the address current.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub task_open: bool,
}

/// Which list the new URL went into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Written {
    Future,
    Current,
}

impl RunState {
    fn read(step: &StepContext, method: &str) -> Result<RunState, PluginError> {
        state::read(
            &step.state,
            &state::Step {
                plugin: NoNhn::NAME,
                method,
                certificate_id: &step.certificate.certificate_id,
                by_hand: "look up the organisation's E_DS address in Adresseregisteret \
                          (current and future) and note what is there; register reads AR again \
                          and writes only what is missing",
            },
        )
    }

    fn value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The new set's certificates AR publishes: the encryption one and the signing one.
#[derive(Debug)]
struct NewSet {
    encryption: Cert,
    signing: Cert,
}

impl NewSet {
    fn of(step: &StepContext, ca: Ca, method: &str) -> Result<NewSet, PluginError> {
        let primary = step.new.as_ref().ok_or_else(|| {
            PluginError::permanent(format!("{method} was called without a new certificate"))
        })?;
        let role = |name: &str| -> Result<&CertificateInfo, PluginError> {
            if name == "authentication" {
                return Ok(primary);
            }
            step.new_set.get(name).ok_or_else(|| {
                PluginError::configuration(format!(
                    "the new {} set has no {name} certificate: a {} set has the roles {}; \
                     configure them as [certificate.set.*] tables",
                    ca.name(),
                    ca.name(),
                    ca.roles().join(", ")
                ))
            })
        };
        let read = |name: &str| -> Result<Cert, PluginError> {
            let info = role(name)?;
            Cert::read(&info.pem, &format!("the new {name} certificate"))
                .map_err(PluginError::permanent)
        };
        Ok(NewSet {
            encryption: read(ca.encryption_role())?,
            signing: read("signing")?,
        })
    }

    fn serials(&self) -> [&[u8]; 2] {
        [&self.encryption.serial, &self.signing.serial]
    }
}

impl Plugin for NoNhn {
    const NAME: &'static str = "no-nhn";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn describe(&self) -> About {
        About {
            summary: "Norwegian virksomhetssertifikat sets (Buypass, Commfides; SEID 2.0) \
                      and NHN Adresseregisteret: the set is ordered by a person (an operator \
                      task) and imported; certvakt checks it, waits until the CA has \
                      published it, writes the new E_DS address to AR as a future address \
                      with a switch time, reads it back after the switch, and keeps the old \
                      encryption key for a retention period."
                .into(),
            settings: settings::docs(),
            // Buypass and Commfides make the keys (key_source = "ca", the default); every renewal has new ones.
            key_policies: vec![certvakt_plugin_api::profile::KeyPolicy::Rotate],
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
        let role = certificate.role.as_deref().unwrap_or("authentication");
        let key_usage = match (role, settings.ca) {
            ("authentication", Ca::Buypass) => {
                vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment]
            }
            ("authentication", Ca::Commfides) => vec![KeyUsage::DigitalSignature],
            ("encryption", _) => vec![KeyUsage::KeyEncipherment, KeyUsage::DataEncipherment],
            ("signing", _) => vec![KeyUsage::NonRepudiation],
            (other, ca) => {
                return Err(PluginError::configuration(format!(
                    "a {} set has no role \"{other}\"; its roles are {}",
                    ca.name(),
                    ca.roles().join(", ")
                )));
            }
        };
        let (organization, common_name) = names(&certificate, &settings)?;
        let attribute = |oid: &str, value: &str, string_type| SubjectAttribute {
            oid: oid.to_owned(),
            value: value.to_owned(),
            string_type,
        };
        use certvakt_plugin_api::profile::StringType::{Printable, Utf8};
        Ok(CsrProfile {
            key: KeyAlgorithm::Rsa3072,
            subject: vec![
                attribute(oid::COUNTRY, "NO", Printable),
                attribute(oid::ORGANIZATION, &organization, Utf8),
                attribute(oid::COMMON_NAME, &common_name, Utf8),
                attribute(
                    oid::ORGANIZATION_IDENTIFIER,
                    &format!("NTRNO-{}", settings.organization_number),
                    Utf8,
                ),
            ],
            sans: Vec::new(),
            key_usage,
            extended_key_usage: Vec::new(),
        })
    }

    fn issue(&self, host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        let settings = Settings::for_call(&order.certificate.settings)?;
        if settings.key_source == KeySource::Certvakt {
            let missing: Vec<&str> = settings
                .ca
                .roles()
                .iter()
                .skip(1)
                .filter(|r| !order.csr_set.contains_key(**r))
                .copied()
                .collect();
            if !missing.is_empty() {
                return Err(PluginError::configuration(format!(
                    "key_source = \"certvakt\", but the daemon made no CSR for the role(s) {}: \
                     configure the set's roles as [certificate.set.*] tables",
                    missing.join(", ")
                )));
            }
        }
        host.info(format!(
            "the {} set is ordered by a person: task opened",
            settings.ca.name()
        ));
        Ok(IssueOutcome::Pending {
            poll_after_secs: ORDER_POLL_SECS,
            task: Some(task::order(&order.certificate, &settings, &order.csr_set)),
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
        let set = NewSet::of(&step, settings.ca, "register")?;
        let mut state = RunState::read(&step, "register")?;
        let now = host.now()?;
        let first_attempt = *state.first_attempt.get_or_insert(now);
        let mut ar = Ar::new(host, &settings);

        // Look first: what AR has for every HER-id.
        let mut parties = Vec::new();
        for (her_id, level) in settings.her_ids() {
            parties.push((level, ar.details(her_id)?));
        }

        // 1. The CA must have published the set, or AR cannot resolve the URL.
        let url = match state.url.clone() {
            Some(url) => url,
            None => match published_url(&mut ar, &settings, &set)? {
                Some(url) => {
                    host.log_with(
                        LogLevel::Info,
                        "AR finds the new set in the CA's directory",
                        &[("ldap_url", &url)],
                    );
                    state.publish_task_open = false;
                    state.url = Some(url.clone());
                    url
                }
                None => {
                    let waited = now - first_attempt;
                    let mut task = None;
                    if waited >= settings.publish_timeout.as_secs_i64() && !state.publish_task_open
                    {
                        let url = expected_url(&settings, &set);
                        task = Some(task::not_published(
                            &step.certificate.certificate_id,
                            &settings,
                            &url,
                        ));
                        state.publish_task_open = true;
                    }
                    host.info(format!(
                        "{} has not published the new set to its directory yet; certvakt asks \
                         AR again in {}",
                        settings.ca.name(),
                        settings.publish_poll
                    ));
                    return Ok(StepOutcome::Pending {
                        poll_after_secs: settings.publish_poll.as_secs(),
                        task,
                        state: state.value(),
                    });
                }
            },
        };

        // 2. The switch time: fixed once; a future address AR already lists (a write whose
        //    answer was lost) is adopted.
        let switch_at = match state.switch_at {
            Some(at) => at,
            None => parties
                .iter()
                .filter_map(|(_, p)| p.future_certificate(&url))
                .filter_map(|a| a.valid_from().and_then(parse_xs_datetime))
                .min()
                .unwrap_or(now + settings.switch_after.as_secs_i64()),
        };
        state.switch_at = Some(switch_at);
        let valid_from = certvakt_soap::xs_datetime(switch_at);

        for (level, party) in &parties {
            let key = party.her_id.to_string();
            let entry = state.parties.entry(key).or_insert(PartyState {
                level: *level,
                written: None,
                valid_from: None,
                confirmed: false,
                task_open: false,
            });
            if entry.confirmed {
                continue;
            }
            // The new URL is the party's address already (its own, or for a service inherited
            // from the organisation written just before).
            if party
                .electronic
                .iter()
                .any(|a| a.is_certificate() && a.address() == url)
            {
                entry.written.get_or_insert(Written::Current);
                continue;
            }
            if let Some(future) = party.future_certificate(&url) {
                entry.written.get_or_insert(Written::Future);
                if entry.valid_from.is_none() {
                    entry.valid_from = future.valid_from().map(str::to_owned);
                }
                continue;
            }
            if entry.written == Some(Written::Current) {
                // Written as current before, and no longer there: someone changed it since.
                return Err(PluginError::needs_person(format!(
                    "certvakt wrote the new E_DS address for HER-id {} as its current address, \
                     but AR no longer has it: someone changed it since. Check the address in \
                     AR, then `certvakt renew {}`",
                    party.her_id, step.certificate.certificate_id
                )));
            }
            write_future(host, &mut ar, *level, party, &url, &valid_from)?;
            entry.written = Some(Written::Future);
            entry.valid_from = Some(valid_from.clone());
        }

        // 3. Until the switch time, the old set stays in use.
        if now < switch_at {
            let wait = u64::try_from(switch_at - now).unwrap_or(0).max(1);
            host.info(format!(
                "the new E_DS address is written for {valid_from}; certvakt reads AR back then \
                 and installs the new set"
            ));
            return Ok(StepOutcome::Pending {
                poll_after_secs: wait,
                task: None,
                state: state.value(),
            });
        }

        // 4. After the switch time: AR must give the new set.
        let mut task: Option<TaskSpec> = None;
        let mut waiting = false;
        for (level, party) in &parties {
            let id = party.her_id;
            let Some(entry) = state.parties.get_mut(&id.to_string()) else {
                continue;
            };
            if entry.confirmed {
                continue;
            }
            if read_back(&mut ar, id, &set)? {
                host.log_with(
                    LogLevel::Info,
                    "AR gives the new set for this HER-id",
                    &[("her_id", &id.to_string())],
                );
                entry.confirmed = true;
                continue;
            }
            // AR may promote a future address a little after ValidFrom.
            if now < switch_at + settings.publish_poll.as_secs_i64() {
                waiting = true;
                continue;
            }
            if settings.fallback_write_current {
                if entry.written == Some(Written::Current) {
                    return Err(PluginError::needs_person(format!(
                        "certvakt wrote the new E_DS address for HER-id {id} as its current \
                         address, but AR still does not give the new certificates for it \
                         (GetCertificateDetailsForEncryption / …ForValidatingSignature). Check \
                         HER-id {id} in AR, then `certvakt renew {}`",
                        step.certificate.certificate_id
                    )));
                }
                host.warn(format!(
                    "AR did not make the future E_DS address current for HER-id {id} at \
                     {valid_from}; certvakt writes the current address (fallback_write_current)"
                ));
                let fresh = ar.details(id)?;
                write_current(&mut ar, *level, &fresh, &url)?;
                entry.written = Some(Written::Current);
                if read_back(&mut ar, id, &set)? {
                    entry.confirmed = true;
                    continue;
                }
                waiting = true;
                continue;
            }
            if !entry.task_open {
                let spec = task::not_promoted(
                    &step.certificate.certificate_id,
                    id,
                    &url,
                    entry.valid_from.as_deref().unwrap_or(&valid_from),
                );
                if task.is_none() {
                    task = Some(spec);
                } else {
                    host.open_task(spec)?;
                }
                entry.task_open = true;
            }
            waiting = true;
        }
        if waiting {
            return Ok(StepOutcome::Pending {
                poll_after_secs: settings.publish_poll.as_secs(),
                task,
                state: state.value(),
            });
        }
        host.info("AR gives the new set for every HER-id: the switch is done");
        Ok(StepOutcome::Done {
            state: state.value(),
        })
    }

    fn verify(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let settings = Settings::for_call(&step.certificate.settings)?;
        let Some(url) = &settings.verify_url else {
            return Ok(StepOutcome::Done { state: step.state });
        };
        // After the install the new set is the current one.
        let mut request = HttpRequest::get(url.as_str()).identity(ClientIdentity::Current);
        if let Some(trust) = &settings.verify_trust {
            request = request.trust(trust.as_str());
        }
        let response = host.http(request).map_err(|e| {
            PluginError::temporary(format!(
                "the call to verify_url {url} with the new certificate failed ({}): the TLS \
                 handshake failed or the service did not answer. If the service does not \
                 accept the new virksomhetssertifikat, or its address changed (\"new URLs\"), \
                 correct verify_url / verify_trust; certvakt tries again later",
                e.message
            ))
        })?;
        match response.status {
            401 | 403 => Err(PluginError::needs_person(format!(
                "{url} refuses the new virksomhetssertifikat (HTTP {}): the service does not \
                 (yet) accept the new set. Ask its operator, or check verify_url",
                response.status
            ))
            .with_fault_code(format!("http_{}", response.status))),
            status => {
                host.log_with(
                    LogLevel::Info,
                    "verify_url answers with the new set as client certificate",
                    &[("url", url), ("status", &status.to_string())],
                );
                Ok(StepOutcome::Done { state: step.state })
            }
        }
    }

    fn retire(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let settings = Settings::for_call(&step.certificate.settings)?;
        let mut state = RunState::read(&step, "retire")?;
        let now = host.now()?;
        let switch = match state.switch_at {
            Some(at) => at,
            None => *state.retire_from.get_or_insert(now),
        };
        let until = switch + settings.legacy_decrypt_retention.as_secs_i64();
        if now < until {
            return Ok(StepOutcome::Pending {
                poll_after_secs: u64::try_from(until - now).unwrap_or(0).max(1),
                task: None,
                state: state.value(),
            });
        }
        host.info(
            "the legacy decryption period is over: the old encryption key is no longer kept \
             (nothing to withdraw in AR; the new E_DS address replaced the old)",
        );
        Ok(StepOutcome::Done {
            state: state.value(),
        })
    }
}

/// O and CN for the CSR: the certificate in use's, else `organization_name`.
fn names(
    certificate: &CertificateContext,
    settings: &Settings,
) -> Result<(String, String), PluginError> {
    if let Some(current) = &certificate.current {
        let subject = certvakt_plugin_common::current::subject(current)?;
        let get = |oid: &str| {
            subject
                .iter()
                .find(|a| a.oid == oid)
                .map(|a| a.value.clone())
        };
        if let (Some(o), Some(cn)) = (get(oid::ORGANIZATION), get(oid::COMMON_NAME)) {
            return Ok((o, cn));
        }
    }
    match &settings.organization_name {
        Some(name) => Ok((name.clone(), name.clone())),
        None => Err(PluginError::configuration(
            "there is no certificate in use to copy O and CN from: write organization_name \
             in [certificate.settings]",
        )),
    }
}

/// The URL of the new set under the configured (or default) base.
fn expected_url(settings: &Settings, set: &NewSet) -> String {
    let base = match &settings.ldap_base {
        LdapBase::Fixed(base) => base.as_str(),
        LdapBase::Lookup => settings::default_ldap_base(settings.ca, settings.environment),
    };
    ldap::url(
        &settings.ldap_host,
        base,
        ldap::SerialForm::of(settings.ca),
        &set.serials(),
    )
}

/// The URL at which AR finds the new set, or `None` while it does not (not published yet).
fn published_url(
    ar: &mut Ar<'_, '_>,
    settings: &Settings,
    set: &NewSet,
) -> Result<Option<String>, PluginError> {
    let form = ldap::SerialForm::of(settings.ca);
    let urls: Vec<String> = match &settings.ldap_base {
        LdapBase::Fixed(_) => vec![expected_url(settings, set)],
        LdapBase::Lookup => {
            let providers = ar.providers()?;
            let urls: Vec<String> = providers
                .iter()
                .filter_map(|p| ldap::split_base_url(&p.base_url))
                .filter(|(host, _)| host.eq_ignore_ascii_case(&settings.ldap_host))
                .map(|(host, base)| ldap::url(&host, &base, form, &set.serials()))
                .collect();
            if urls.is_empty() {
                return Err(PluginError::configuration(format!(
                    "ldap_base = \"lookup\", but AR lists no LDAP search provider on {} \
                     (GetLdapSearchProviders gave: {}): write ldap_base (and ldap_host) \
                     yourself",
                    settings.ldap_host,
                    providers
                        .iter()
                        .map(|p| format!("{} ({})", p.base_url, p.display_name))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            urls
        }
    };
    for url in urls {
        let found = ar.search(&url, settings.her_id)?;
        let has = |serial: &[u8], encryption: bool| {
            found.candidates.iter().any(|c| {
                ldap::same_serial(&c.serial, serial)
                    && if encryption { c.encryption } else { c.signing }
            })
        };
        if has(&set.encryption.serial, true) && has(&set.signing.serial, false) {
            return Ok(Some(url));
        }
    }
    Ok(None)
}

/// Writes `url` as `party`'s future `E_DS` address valid from `valid_from`, every other address
/// unchanged, and reads the party back to see that AR kept it.
fn write_future(
    host: &Host<'_>,
    ar: &mut Ar<'_, '_>,
    level: Level,
    party: &Party,
    url: &str,
    valid_from: &str,
) -> Result<(), PluginError> {
    let mut updated = party.clone();
    let type_code = type_code(party);
    for stale in updated.future.iter().filter(|a| a.is_certificate()) {
        host.warn(format!(
            "HER-id {} had another future E_DS address ({}, from {}); certvakt replaces it \
             with the new set's",
            party.her_id,
            stale.address(),
            stale.valid_from().unwrap_or("?")
        ));
    }
    updated.future.retain(|a| !a.is_certificate());
    updated.future.push(Address::certificate(
        url,
        type_code.as_ref(),
        Some(valid_from),
    ));
    ar.update(level, &updated)?;
    let after = ar.details(party.her_id)?;
    if after.future_certificate(url).is_none()
        && after.current_certificate().map(Address::address) != Some(url)
    {
        return Err(PluginError::permanent(format!(
            "AR accepted the update of HER-id {} but does not list the new E_DS address among \
             its future addresses: this AR may not support FutureElectronicAddresses (the \
             2018–2024 contract), or dropped it. Set fallback_write_current = true to write \
             the address at the switch time instead, or write it in AR by hand",
            party.her_id
        )));
    }
    host.log_with(
        LogLevel::Info,
        "wrote the new E_DS address to AR as a future address",
        &[
            ("her_id", &party.her_id.to_string()),
            ("valid_from", valid_from),
        ],
    );
    Ok(())
}

/// Writes `url` as `party`'s current `E_DS` address (the fallback), every other address
/// unchanged, and drops the future entry for it that AR did not promote.
fn write_current(
    ar: &mut Ar<'_, '_>,
    level: Level,
    party: &Party,
    url: &str,
) -> Result<(), PluginError> {
    let mut updated = party.clone();
    let type_code = type_code(party);
    let new = Address::certificate(url, type_code.as_ref(), None);
    let mut replaced = false;
    for address in updated.electronic.iter_mut() {
        if address.is_certificate() && !address.inherited() {
            *address = new.clone();
            replaced = true;
        }
    }
    if !replaced {
        updated.electronic.push(new);
    }
    updated
        .future
        .retain(|a| !(a.is_certificate() && a.address() == url));
    ar.update(level, &updated)
}

/// The `Type` code object AR shows on an `E_DS` address of this party, if any.
fn type_code(party: &Party) -> Option<ar::Element> {
    party
        .electronic
        .iter()
        .chain(party.future.iter())
        .find(|a| a.is_certificate())
        .and_then(|a| a.element.child("Type").cloned())
}

/// Whether AR gives the new set for `her_id`: the encryption and the signature certificate.
fn read_back(ar: &mut Ar<'_, '_>, her_id: u32, set: &NewSet) -> Result<bool, PluginError> {
    let encryption = ar.certificate(her_id, Purpose::Encryption)?;
    let signing = ar.certificate(her_id, Purpose::ValidatingSignature)?;
    Ok(
        encryption.certificate_der.as_deref() == Some(set.encryption.der.as_slice())
            && signing.certificate_der.as_deref() == Some(set.signing.der.as_slice()),
    )
}

/// `xs:dateTime` as AR writes it (`2026-12-01T06:00:00`, fractions and a zone optional), in
/// Unix seconds. Without a zone it is read as UTC: Norway is ahead of UTC, so the time read is
/// never before the real one, and certvakt never reads back too early.
pub fn parse_xs_datetime(text: &str) -> Option<i64> {
    let text = text.trim();
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let head = text.get(..19)?;
    let base = time::PrimitiveDateTime::parse(head, &format).ok()?;
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "" | "Z" => 0,
        zone => {
            let sign = match zone.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let (h, m) = zone[1..].split_once(':')?;
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    Some(base.assume_utc().unix_timestamp() - offset)
}
