//! dk-fmk: certvakt's plugin for a Danish pharmacy's FMK system certificate.
//!
//! A pharmacy calls FMK (Fælles Medicinkort) as a system with the role `Apotekersystem`,
//! using an OCES3 system certificate from MitID Erhverv. FMK accepts it once the pharmacy
//! owner (role Apoteker) has linked it to the pharmacy's CVR number: a "FOCES whitelisting",
//! keyed by the certificate's UUID (`FocesId`). The renewal, method by method:
//!
//! - [`Plugin::csr_profile`], [`Plugin::issue`]: MitID Erhverv has no API, so the order is an
//!   operator task ([`certvakt_plugin_common::mitid`]); the renewal comes back as a PKCS#12
//!   download through `certvakt import`, which the daemon checks against the certificate it
//!   replaces (CVR, UUID, key, chain) and flags when the UUID changed.
//! - [`Plugin::register`] (before the new certificate is installed): the push algorithm of
//!   brief dk-fmk.md §7 ([`push`]). `GetFocesWhitelistings` for the CVR; a renewal that kept the
//!   UUID is whitelisted already (FMK does not check `CertHash`), so it is only verified,
//!   never deleted; a new UUID gets `CreateFocesWhitelisting` and is verified with Get. The
//!   old UUID's entry, exactly as Get listed it, is written into the run's state before anything
//!   can delete it.
//! - [`Plugin::verify`] (after the install): Get again, now with the new certificate's own ID
//!   card: the new certificate works with the SOSI STS and FMK lists it.
//! - [`Plugin::retire`] (after the overlap): `DeleteFocesWhitelisting` of the old UUID's entry,
//!   sent as Get listed it, then Get to see it gone. A run's state that does not parse stops
//!   register and retire before they call FMK; it is never read as "nothing recorded", which
//!   would let retire report done and leave the old entry in place.
//!
//! Every call carries a DGWS ID card from the SOSI STS, signed with the certificate in use
//! ([`sosi`]), and the headers FMK requires ([`message`]). In `mode = "automatic"` certvakt
//! creates and deletes whitelistings itself, acting for the Apoteker; when FMK answers
//! `not_authorized`, and always in `mode = "assisted"`, the step becomes a task for the owner
//! with the exact request, and certvakt sees it done by polling Get. Every step looks before
//! it acts, so a step repeated after a crash does no harm.

use certvakt_plugin_api::profile::CsrProfile;
use certvakt_plugin_api::{
    About, CertificateContext, CertificateInfo, ClientIdentity, Completion, Host, IssueOutcome,
    KeyRef, LogLevel, OrderContext, Plugin, PluginError, SettingProblem, StepContext, StepOutcome,
    TaskFile, TaskFileContent, TaskSpec, export_plugin,
};
use certvakt_plugin_common::{mitid, oces3, state};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

pub mod fmk;
pub mod message;
pub mod settings;
pub mod sosi;
#[cfg(test)]
mod tests;

use fmk::Fmk;
use message::Whitelisting;
pub use settings::Settings;
use settings::{CertHash, Mode};
use sosi::Credential;

/// The plugin. Per-renewal data travels in the run's state ([`RunState`]).
#[derive(Debug, Default)]
pub struct DkFmk;

export_plugin!(DkFmk);

/// What a renewal run remembers between calls: the journal of the push. It holds no personal
/// data (the Apoteker's CPR stays in the settings): the error for a state that does not parse
/// may quote it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// The whitelisting of the replaced certificate's UUID, exactly as Get listed it, to be
    /// deleted after the overlap: recorded before anything deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire: Option<Whitelisting>,
    /// The step whose owner's task is open (`register`, `retire`), so it is opened once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_open_for: Option<String>,
    /// Whether register found the UUID already whitelisted (a renewal that kept the UUID).
    #[serde(default)]
    pub kept_uuid: bool,
}

impl RunState {
    /// The run's state for `method`: nothing yet at the run's first call; a state that does
    /// not parse stops the run ([`state::read`]), since read as "nothing done" it would make
    /// retire forget the old whitelisting it must delete. `by_hand` is what the owner checks
    /// in FMK before the step may start afresh.
    fn read(step: &StepContext, method: &str, by_hand: &str) -> Result<RunState, PluginError> {
        state::read(
            &step.state,
            &state::Step {
                plugin: DkFmk::NAME,
                method,
                certificate_id: &step.certificate.certificate_id,
                by_hand,
            },
        )
    }

    fn value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl Plugin for DkFmk {
    const NAME: &'static str = "dk-fmk";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn describe(&self) -> About {
        About {
            summary: "FMK FOCES whitelisting for a Danish pharmacy's Apotekersystem \
                      certificate: the renewal is ordered in MitID Erhverv by a person (an \
                      operator task), then certvakt whitelists the new certificate's UUID for \
                      the pharmacy's CVR in FMK (CreateFocesWhitelisting, acting for the \
                      Apoteker, or as a prepared request for the owner), verifies it, and \
                      removes the old entry after the overlap."
                .into(),
            settings: settings::docs(),
            // MitID Erhverv makes the key: a kept or pre-staged one would never be used.
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
        Settings::for_call(&certificate.settings)?;
        mitid::csr_profile(&certificate)
    }

    fn issue(&self, host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        Settings::for_call(&order.certificate.settings)?;
        host.info("the renewal is ordered in MitID Erhverv by a person: task opened");
        Ok(mitid::ordered(
            order,
            "FMK calls as Apotekersystem",
            "certvakt then whitelists the certificate in FMK for the pharmacy's CVR \
             (FOCES whitelisting), checks that FMK lists it, installs it, and removes the \
             old certificate's whitelisting when the overlap is over.",
        ))
    }

    fn poll(&self, _host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        Ok(mitid::still_ordered(order))
    }

    fn register(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let settings = Settings::for_call(&step.certificate.settings)?;
        let new = step.new.as_ref().ok_or_else(|| {
            PluginError::permanent("register was called without a new certificate")
        })?;
        let new_id = identity_of(new, "the new certificate")?;
        if new_id.cvr != settings.cvr {
            return Err(PluginError::configuration(format!(
                "wrong CVR: the new certificate is for CVR {}, but the settings say cvr = \
                 \"{}\". FMK whitelists a certificate for the pharmacy's own CVR only: import \
                 the pharmacy's certificate, or correct cvr",
                new_id.cvr, settings.cvr
            ))
            .with_fault_code("wrong_cvr"));
        }
        // Before the install, the certificate in use is the old one: it still works at FMK.
        let old = step.certificate.current.as_ref().ok_or_else(|| {
            PluginError::needs_person(
                "there is no certificate in use to call FMK with: whitelist the first \
                 certificate in FMK by hand (CreateFocesWhitelisting, as the Apoteker)",
            )
        })?;
        let old_id = identity_of(old, "the certificate in use")?;
        let mut state = RunState::read(
            &step,
            "register",
            "nothing needs doing in FMK first (register lists FMK's whitelistings again before \
             it creates anything, and records the old entry anew)",
        )?;
        let credential = Credential {
            certificate_pem: &old.pem,
            key: &KeyRef::Current,
            identity: &ClientIdentity::Current,
        };
        let mut fmk = Fmk::new(host, &settings, credential);
        let listed = fmk.list()?;
        if !new_id.same_uuid(&old_id.uuid) {
            host.log_with(
                LogLevel::Warn,
                "the new certificate has a new UUID: FMK must whitelist it before it is used",
                &[("old_uuid", &old_id.uuid), ("new_uuid", &new_id.uuid)],
            );
            // The journal: the old entry, as FMK lists it, before anything may delete it.
            state.retire = find(&listed, &old_id.uuid).cloned();
        }
        let wanted = Whitelisting {
            source: "CVR".into(),
            cvr: settings.cvr.clone(),
            foces_id: new_id.uuid.clone(),
            cert_hash: cert_hash(&settings, new)?,
        };
        match find(&listed, &new_id.uuid) {
            Some(entry) => {
                state.kept_uuid = true;
                let stale = entry.cert_hash != wanted.cert_hash && wanted.cert_hash.is_some();
                if settings.refresh_hash_on_same_uuid && stale && settings.mode == Mode::Automatic {
                    // Create with the same FocesId is the only way to store a new hash; what
                    // FMK does with it is read back rather than assumed.
                    if let Err(fault) = fmk.create(&wanted)? {
                        host.warn(format!(
                            "FMK did not take the refreshed CertHash ({}: {}); the \
                             whitelisting stands as it was",
                            fault.code, fault.text
                        ));
                    }
                    fmk.list()?;
                }
                host.log_with(
                    LogLevel::Info,
                    "FMK whitelists this UUID already: nothing to create",
                    &[("uuid", &new_id.uuid)],
                );
                state.task_open_for = None;
                Ok(StepOutcome::Done {
                    state: state.value(),
                })
            }
            None => {
                if settings.mode == Mode::Automatic && state.task_open_for.is_none() {
                    match fmk.create(&wanted)? {
                        Ok(()) => {
                            let after = fmk.list()?;
                            if find(&after, &new_id.uuid).is_none() {
                                return Err(PluginError::permanent(format!(
                                    "FMK accepted CreateFocesWhitelisting for UUID {}, but \
                                     GetFocesWhitelistings does not list it",
                                    new_id.uuid
                                )));
                            }
                            host.log_with(
                                LogLevel::Info,
                                "whitelisted the new certificate in FMK",
                                &[("uuid", &new_id.uuid)],
                            );
                            return Ok(StepOutcome::Done {
                                state: state.value(),
                            });
                        }
                        Err(fault) if fault.not_authorized() => {
                            host.warn(format!(
                                "FMK does not let certvakt whitelist for the Apoteker \
                                 ({}): the owner gets the prepared request",
                                fault.text
                            ));
                        }
                        Err(fault) => return Err(fault.into_error(&settings)),
                    }
                }
                owner_step(&settings, &step, state, "register", &wanted)
            }
        }
    }

    fn verify(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let settings = Settings::for_call(&step.certificate.settings)?;
        // After the install, the certificate in use is the new one.
        let new = step
            .new
            .as_ref()
            .ok_or_else(|| PluginError::permanent("verify was called without a new certificate"))?;
        let new_id = identity_of(new, "the new certificate")?;
        let credential = Credential {
            certificate_pem: &new.pem,
            key: &KeyRef::Current,
            identity: &ClientIdentity::Current,
        };
        let listed = Fmk::new(host, &settings, credential).list()?;
        if find(&listed, &new_id.uuid).is_none() {
            return Err(PluginError::needs_person(format!(
                "FMK lists no whitelisting of UUID {} for CVR {} any more: it was whitelisted \
                 before the install. Whitelist it again (CreateFocesWhitelisting, as the \
                 Apoteker), then `certvakt renew {}`",
                new_id.uuid, settings.cvr, step.certificate.certificate_id
            ))
            .with_fault_code("not_whitelisted"));
        }
        host.info("FMK lists the new certificate, called with its own ID card");
        Ok(StepOutcome::Done { state: step.state })
    }

    fn retire(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let settings = Settings::for_call(&step.certificate.settings)?;
        let mut state = RunState::read(&step, "retire", &retire_by_hand(&settings, &step))?;
        let Some(recorded) = state.retire.clone() else {
            // The UUID was kept: the one entry serves the new certificate too.
            return Ok(StepOutcome::Done { state: step.state });
        };
        let new = step
            .new
            .as_ref()
            .ok_or_else(|| PluginError::permanent("retire was called without a new certificate"))?;
        let credential = Credential {
            certificate_pem: &new.pem,
            key: &KeyRef::Current,
            identity: &ClientIdentity::Current,
        };
        let mut fmk = Fmk::new(host, &settings, credential);
        let listed = fmk.list()?;
        // Delete what FMK lists now (the recorded entry, unless its hash changed since).
        let Some(entry) = find(&listed, &recorded.foces_id).cloned() else {
            host.log_with(
                LogLevel::Info,
                "the old certificate's whitelisting is gone",
                &[("uuid", &recorded.foces_id)],
            );
            state.retire = None;
            state.task_open_for = None;
            return Ok(StepOutcome::Done {
                state: state.value(),
            });
        };
        if settings.mode == Mode::Automatic && state.task_open_for.is_none() {
            match fmk.delete(&entry)? {
                Ok(()) => {
                    if find(&fmk.list()?, &entry.foces_id).is_some() {
                        return Err(PluginError::permanent(format!(
                            "FMK accepted DeleteFocesWhitelisting for UUID {}, but still lists it",
                            entry.foces_id
                        )));
                    }
                    host.log_with(
                        LogLevel::Info,
                        "removed the old certificate's whitelisting from FMK",
                        &[("uuid", &entry.foces_id)],
                    );
                    state.retire = None;
                    return Ok(StepOutcome::Done {
                        state: state.value(),
                    });
                }
                Err(fault) if fault.not_authorized() => {
                    host.warn(format!(
                        "FMK does not let certvakt delete for the Apoteker ({}): the owner \
                         gets the prepared request",
                        fault.text
                    ));
                }
                Err(fault) => return Err(fault.into_error(&settings)),
            }
        }
        owner_step(&settings, &step, state, "retire", &entry)
    }
}

/// The step goes to the pharmacy owner: a task with the exact request, opened once, and a
/// poll that sees it done.
fn owner_step(
    settings: &Settings,
    step: &StepContext,
    mut state: RunState,
    name: &str,
    entry: &Whitelisting,
) -> Result<StepOutcome, PluginError> {
    let task = if state.task_open_for.as_deref() == Some(name) {
        None
    } else {
        state.task_open_for = Some(name.to_owned());
        Some(owner_task(settings, &step.certificate, name, entry)?)
    };
    Ok(StepOutcome::Pending {
        poll_after_secs: settings.poll_seconds,
        task,
        state: state.value(),
    })
}

/// The owner's task: which request, as whom, and how certvakt notices.
fn owner_task(
    settings: &Settings,
    certificate: &CertificateContext,
    step: &str,
    entry: &Whitelisting,
) -> Result<TaskSpec, PluginError> {
    let id = &certificate.certificate_id;
    let creating = step == "register";
    let (operation, body) = if creating {
        (
            "CreateFocesWhitelisting",
            message::create_body(settings.version, settings, entry),
        )
    } else {
        (
            "DeleteFocesWhitelisting",
            message::delete_body(settings.version, settings, entry),
        )
    };
    let body = body.map_err(PluginError::permanent)?;
    let file = format!("{operation}Request.xml");
    let what = if creating {
        format!(
            "link the new certificate (UUID {}) to the pharmacy's CVR {}",
            entry.foces_id, entry.cvr
        )
    } else {
        format!(
            "remove the link of the replaced certificate (UUID {}) to CVR {}",
            entry.foces_id, entry.cvr
        )
    };
    let instructions = format!(
        "FMK must {what}, and only the pharmacy owner ({} {}, role Apoteker) may do that.\n\n\
         1. Send the attached {file} to FMK's {operation} service ({}, FMK {}) with the \
            owner's own FMK access, as the Apoteker of {} (EAN {}). It is the request body \
            exactly as FMK's schema wants it; your pharmacy system or FMK supplier can send \
            it as it is.\n\
         2. That is all: certvakt asks FMK (GetFocesWhitelistings) every {} seconds and goes \
            on by itself when FMK {}. `certvakt show {id}` shows where the renewal is.\n",
        settings.owner.given_name,
        settings.owner.surname,
        settings.fmk_endpoint,
        match settings.version {
            settings::FmkVersion::E6 => "1.4.6 E6",
            settings::FmkVersion::V160 => "1.6.0",
        },
        settings.pharmacy_name,
        settings.pharmacy_ean,
        settings.poll_seconds,
        if creating {
            "lists the new UUID"
        } else {
            "no longer lists the old UUID"
        },
    );
    Ok(TaskSpec {
        title: if creating {
            format!("Whitelist {id}'s new certificate in FMK (as the Apoteker)")
        } else {
            format!("Remove {id}'s old certificate's FMK whitelisting (as the Apoteker)")
        },
        instructions,
        files: vec![TaskFile {
            name: file,
            content: TaskFileContent::Text(body),
        }],
        completes_by: Completion::Poll,
    })
}

/// What the owner does in FMK when retire cannot read the run's state: cleared, the state
/// says there is nothing to delete (as for a kept UUID), so a changed UUID's old entry must be
/// deleted by hand first.
fn retire_by_hand(settings: &Settings, step: &StepContext) -> String {
    let old = step.certificate.current.as_ref().and_then(oces3::identity);
    let new = step.new.as_ref().and_then(oces3::identity);
    match (old, new) {
        (Some(old), Some(new)) if new.same_uuid(&old.uuid) => {
            "nothing needs deleting in FMK: the new certificate kept the old one's UUID, whose \
             whitelisting serves it"
                .into()
        }
        (Some(old), Some(new)) => format!(
            "the new certificate has another UUID ({}), so list FMK's whitelistings of CVR {} \
             (GetFocesWhitelistings) and delete the replaced certificate's entry, UUID {}, as \
             the Apoteker (DeleteFocesWhitelisting), because with the state cleared retire \
             deletes nothing",
            new.uuid, settings.cvr, old.uuid
        ),
        _ => format!(
            "list FMK's whitelistings of CVR {} (GetFocesWhitelistings) and, if the new \
             certificate has another UUID than the replaced one, delete the replaced one's \
             entry as the Apoteker (DeleteFocesWhitelisting), because with the state cleared \
             retire deletes nothing",
            settings.cvr
        ),
    }
}

fn find<'a>(listed: &'a [Whitelisting], uuid: &str) -> Option<&'a Whitelisting> {
    listed
        .iter()
        .find(|e| e.foces_id.eq_ignore_ascii_case(uuid))
}

fn identity_of(info: &CertificateInfo, what: &str) -> Result<oces3::Oces3Identity, PluginError> {
    oces3::identity(info).ok_or_else(|| {
        PluginError::permanent(format!(
            "{what} (serial {}, {}) is not an OCES3 certificate with a CVR and a UUID, which \
             FMK whitelists by",
            info.serial, info.subject
        ))
    })
}

/// `CertHash` for a new whitelisting, as the settings say.
fn cert_hash(settings: &Settings, new: &CertificateInfo) -> Result<Option<String>, PluginError> {
    let der = oces3::der(&new.pem).map_err(PluginError::permanent)?;
    Ok(match settings.cert_hash {
        CertHash::Sha1HexUpper => Some(oces3::sha1_hex_upper(&der)),
        CertHash::Sha256HexUpper => Some(oces3::sha256_hex_upper(&der)),
        CertHash::None => None,
    })
}

/// An identifier no other message of this process or this time has: UUID-shaped, from a hash
/// of the time, `salt`, the process and a counter. Unique is what DGWS needs of it (message
/// and ID card ids), not unpredictable.
pub fn unique_id(now: i64, salt: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let digest = Sha256::new()
        .chain_update(now.to_be_bytes())
        .chain_update(salt.as_bytes())
        .chain_update(std::process::id().to_be_bytes())
        .chain_update(n.to_be_bytes())
        .chain_update(format!("{:?}", std::time::Instant::now()).as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // Version 4 bits over the hash, as over random bytes.
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}
