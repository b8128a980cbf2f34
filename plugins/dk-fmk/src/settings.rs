//! The dk-fmk plugin's settings: one parser, used to validate and to act.
//!
//! The CPR number of the pharmacy owner is personal data: it goes into the whitelisting
//! request FMK asks for, and nowhere else (not into logs, errors or `Debug` output).

use certvakt_plugin_api::{PluginError, SettingDoc, SettingProblem};
use certvakt_plugin_common::settings::{SettingsReader, digits, https_url, refuse, text};
use serde_json::Value;

/// The FMK interface version the messages follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FmkVersion {
    /// FMK 1.4.6 "E6" (the default: its FocesId takes a UUID on every server since 2023).
    E6,
    /// FMK 1.6.0 (servers older than July 2026 cut FocesId at 10 characters).
    V160,
}

/// Who sends `CreateFocesWhitelisting` and `DeleteFocesWhitelisting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// certvakt, with the configured credential acting for the Apoteker.
    Automatic,
    /// The pharmacy owner, from a task with the exact request; certvakt sees it done.
    Assisted,
}

/// How `CertHash` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertHash {
    Sha1HexUpper,
    Sha256HexUpper,
    /// Left out: FMK stores `Ukendt`.
    None,
}

/// The pharmacy owner (role Apoteker), who whitelists the certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct Owner {
    pub given_name: String,
    pub surname: String,
    pub cpr: String,
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owner")
            .field("given_name", &self.given_name)
            .field("surname", &self.surname)
            .field("cpr", &"(not shown)")
            .finish()
    }
}

/// Everything the plugin reads from `[certificate.settings]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub cvr: String,
    pub fmk_endpoint: String,
    pub fmk_trust: Option<String>,
    pub sts_endpoint: String,
    pub sts_trust: Option<String>,
    pub version: FmkVersion,
    pub mode: Mode,
    pub pharmacy_name: String,
    pub pharmacy_address: Vec<String>,
    pub pharmacy_ean: String,
    pub owner: Owner,
    pub system_owner_name: String,
    pub system_name: String,
    pub system_version: String,
    pub cert_hash: CertHash,
    pub refresh_hash_on_same_uuid: bool,
    pub poll_seconds: u64,
}

/// Every setting, documented; the parser refuses keys not listed here.
pub fn docs() -> Vec<SettingDoc> {
    vec![
        SettingDoc::required("cvr", "The pharmacy's CVR number (8 digits); the certificate's CVR must be the same.")
            .example("\"25450442\""),
        SettingDoc::required("fmk_endpoint", "FMK's MedicineCard service (https URL) of the environment.")
            .example("\"https://test1.fmk.netic.dk/fmk12/ws/MedicineCard\""),
        SettingDoc::optional("fmk_trust", "The [trust] set FMK's TLS certificate must chain to; left out: the system's roots.")
            .example("\"fmk-test\""),
        SettingDoc::required("sts_endpoint", "The SOSI STS (https URL) that issues the ID card for FMK calls.")
            .example("\"https://sts.example/sts/services/NewSecurityTokenService\""),
        SettingDoc::optional("sts_trust", "The [trust] set the STS's TLS certificate must chain to; left out: the system's roots.")
            .example("\"fmk-test\""),
        SettingDoc::optional("fmk_version", "\"1.4.6-E6\" (default) or \"1.6.0\": the FMK interface the messages follow.")
            .example("\"1.4.6-E6\""),
        SettingDoc::optional("mode", "\"automatic\" (default): certvakt creates and deletes whitelistings itself, acting for the Apoteker; \"assisted\": the pharmacy owner sends the request certvakt prepares, and certvakt sees it done.")
            .example("\"automatic\""),
        SettingDoc::required("pharmacy_name", "The pharmacy (Organisation/Name in the request).")
            .example("\"Hjørring Svane Apotek\""),
        SettingDoc::optional("pharmacy_address", "Up to 5 address lines.")
            .example("[\"Brogade 111\", \"9800 Hjørring\"]"),
        SettingDoc::required("pharmacy_ean", "The pharmacy's EAN location number (EAN-Lokationsnummer, 13 digits).")
            .example("\"5790000171248\""),
        SettingDoc::required("apoteker_given_name", "Given name of the pharmacy owner (role Apoteker), who whitelists the certificate.")
            .example("\"Ane\""),
        SettingDoc::required("apoteker_surname", "Surname of the pharmacy owner.")
            .example("\"Jensen\""),
        SettingDoc::required("apoteker_cpr", "CPR number of the pharmacy owner (10 digits). Personal data: sent to FMK in the request, never logged.")
            .example("\"2604276962\""),
        SettingDoc::optional("system_owner_name", "Whitelisting header: who owns the calling system; default: pharmacy_name.")
            .example("\"Hjørring Svane Apotek\""),
        SettingDoc::optional("system_name", "Whitelisting header and ID card: the calling system's name; default \"certvakt\".")
            .example("\"certvakt\""),
        SettingDoc::optional("system_version", "Whitelisting header: the calling system's version; default: certvakt's.")
            .example("\"1.0\""),
        SettingDoc::optional("cert_hash", "CertHash sent with a new whitelisting: \"sha1-hex-upper\" (default), \"sha256-hex-upper\" or \"none\" (FMK stores Ukendt). FMK does not check it.")
            .example("\"sha1-hex-upper\""),
        SettingDoc::optional("refresh_hash_on_same_uuid", "true: when a renewal keeps the UUID, send CreateFocesWhitelisting again to store the new CertHash. Default false: the entry stands as it is.")
            .example("false"),
        SettingDoc::optional("poll_seconds", "How often an assisted step asks FMK whether the owner has acted (5 to 86400; default 900).")
            .example("900"),
    ]
}

impl Settings {
    /// The settings, or every problem in them.
    pub fn parse(value: &Value) -> Result<Settings, Vec<SettingProblem>> {
        let mut r = SettingsReader::new(value, "dk-fmk", &docs())?;
        let cvr = r.required("cvr", |v| digits(v, 8));
        let fmk_endpoint = r.required("fmk_endpoint", https_url);
        let fmk_trust = r.optional("fmk_trust", |v| text(v, 100));
        let sts_endpoint = r.required("sts_endpoint", https_url);
        let sts_trust = r.optional("sts_trust", |v| text(v, 100));
        let version = match r
            .one_of("fmk_version", &["1.4.6-E6", "1.6.0"], "1.4.6-E6")
            .as_str()
        {
            "1.6.0" => FmkVersion::V160,
            _ => FmkVersion::E6,
        };
        let mode = match r
            .one_of("mode", &["automatic", "assisted"], "automatic")
            .as_str()
        {
            "assisted" => Mode::Assisted,
            _ => Mode::Automatic,
        };
        let pharmacy_name = r.required("pharmacy_name", |v| text(v, 200));
        let pharmacy_address = r.list("pharmacy_address", 5, |v| text(v, 200));
        let pharmacy_ean = r.required("pharmacy_ean", |v| digits(v, 13));
        let owner = Owner {
            given_name: r.required("apoteker_given_name", |v| text(v, 50)),
            surname: r.required("apoteker_surname", |v| text(v, 40)),
            // The value is not repeated in the problem: it is personal data.
            cpr: r.required("apoteker_cpr", |v| {
                digits(v, 10).map_err(|_| "must be 10 digits (the value is not shown)".into())
            }),
        };
        let system_owner_name = r
            .optional("system_owner_name", |v| text(v, 200))
            .unwrap_or_else(|| pharmacy_name.clone());
        let system_name = r
            .optional("system_name", |v| text(v, 200))
            .unwrap_or_else(|| "certvakt".into());
        let system_version = r
            .optional("system_version", |v| text(v, 50))
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").into());
        let cert_hash = match r
            .one_of(
                "cert_hash",
                &["sha1-hex-upper", "sha256-hex-upper", "none"],
                "sha1-hex-upper",
            )
            .as_str()
        {
            "sha256-hex-upper" => CertHash::Sha256HexUpper,
            "none" => CertHash::None,
            _ => CertHash::Sha1HexUpper,
        };
        let refresh_hash_on_same_uuid = r.flag("refresh_hash_on_same_uuid", false);
        let poll_seconds = r.number("poll_seconds", 5..=86_400, 900);
        r.finish(Settings {
            cvr,
            fmk_endpoint,
            fmk_trust,
            sts_endpoint,
            sts_trust,
            version,
            mode,
            pharmacy_name,
            pharmacy_address,
            pharmacy_ean,
            owner,
            system_owner_name,
            system_name,
            system_version,
            cert_hash,
            refresh_hash_on_same_uuid,
            poll_seconds,
        })
    }

    /// The settings, or a configuration error listing every problem.
    pub fn for_call(value: &Value) -> Result<Settings, PluginError> {
        Settings::parse(value).map_err(|problems| refuse("dk-fmk", &problems))
    }
}
