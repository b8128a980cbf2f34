//! The CAs' LDAP certificate directories, in process, and the `E_DS` LDAP URL that points into
//! them (`protocols/no-nhn.md` §3).
//!
//! Promises:
//! - A directory is a set of [`LdapProvider`]s, each a (host, base) with the serial encoding
//!   its CA uses: [`SerialEncoding::Decimal`] (Buypass) or [`SerialEncoding::LowerHex`]
//!   (Commfides). Hosts compare case-insensitively, bases after percent-decoding and
//!   case-insensitively (DN matching).
//! - [`Directory::publish`] stores a certificate under its provider; it is findable only once
//!   the simulator clock reaches `visible_at` (a CA publishes with a delay). Publishing to a
//!   (host, base) that is not configured is an error.
//! - A lookup by serial string matches the provider's encoding: decimal for a `Decimal`
//!   provider; for a `LowerHex` provider the hex form (any case, leading zeros ignored) *or*
//!   the decimal form, as sertifikatsok searches Commfides with both.
//! - [`LdapUrl::parse`] accepts exactly the form AR stores:
//!   `ldap://<host>/<base, spaces as %20>?usercertificate;binary?sub?<filter>` with the filter
//!   `(certificateSerialNumber=<s>)` or `(|(certificateSerialNumber=<s1>)(…=<s2>)…)`, the `|`
//!   not escaped (RFC 4516 would escape it; AR does not). Anything else is an error naming the
//!   part that is wrong. [`LdapUrl::build`] / [`build_ldap_url`] write the same form, so
//!   `parse(build(x)) == x` and a string built here equals AR's spelling.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
use x509_parser::num_bigint::BigUint;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::clock::Clock;
use super::lock;

/// How a CA's directory spells certificate serial numbers in `certificateSerialNumber`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialEncoding {
    /// Decimal digits (Buypass).
    Decimal,
    /// Lowercase hexadecimal without separators (Commfides); decimal lookups are accepted too.
    LowerHex,
}

impl SerialEncoding {
    /// `serial` in this encoding.
    pub fn render(self, serial: &BigUint) -> String {
        match self {
            SerialEncoding::Decimal => serial.to_str_radix(10),
            SerialEncoding::LowerHex => serial.to_str_radix(16),
        }
    }

    /// Whether the lookup string `value` names `serial` in this directory.
    fn matches(self, value: &str, serial: &BigUint) -> bool {
        let decimal = BigUint::parse_bytes(value.as_bytes(), 10).is_some_and(|v| &v == serial);
        match self {
            SerialEncoding::Decimal => decimal,
            SerialEncoding::LowerHex => {
                decimal || BigUint::parse_bytes(value.as_bytes(), 16).is_some_and(|v| &v == serial)
            }
        }
    }
}

/// One CA directory: where AR finds a CA's certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapProvider {
    /// `ldap.test4.buypass.no`.
    pub host: String,
    /// The search base, decoded (spaces as spaces).
    pub base: String,
    pub encoding: SerialEncoding,
    /// What `GetLdapSearchProviders` shows as `DisplayName`.
    pub display_name: String,
}

impl LdapProvider {
    /// Buypass's test directory: `ldap.test4.buypass.no`, base
    /// `dc=Buypass,dc=no,CN=Buypass Class 3 Test4 CA G2` (the base of the real AR sample), decimal.
    pub fn buypass_test4() -> LdapProvider {
        LdapProvider {
            host: "ldap.test4.buypass.no".to_owned(),
            base: "dc=Buypass,dc=no,CN=Buypass Class 3 Test4 CA G2".to_owned(),
            encoding: SerialEncoding::Decimal,
            display_name: "Buypass (test4)".to_owned(),
        }
    }

    /// Commfides's test directory: `ldap.test.commfides.com`, base
    /// `ou=Legal-Person-G3,dc=commfides,dc=com` (SEID 2), lowercase hex.
    pub fn commfides_test() -> LdapProvider {
        LdapProvider {
            host: "ldap.test.commfides.com".to_owned(),
            base: "ou=Legal-Person-G3,dc=commfides,dc=com".to_owned(),
            encoding: SerialEncoding::LowerHex,
            display_name: "Commfides (test)".to_owned(),
        }
    }

    /// `ldap://host/base` with the base's spaces as `%20` (`LdapSearchProvider/BaseUrl`).
    pub fn base_url(&self) -> String {
        format!("ldap://{}/{}", self.host, encode_base(&self.base))
    }

    fn is(&self, host: &str, base: &str) -> bool {
        self.host.eq_ignore_ascii_case(host) && self.base.eq_ignore_ascii_case(base)
    }
}

/// An `E_DS` address, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapUrl {
    pub host: String,
    /// The search base, percent-decoded.
    pub base: String,
    /// The `certificateSerialNumber` values of the filter, in order, as written.
    pub serials: Vec<String>,
}

const ATTRIBUTES: &str = "usercertificate;binary";
const SCOPE: &str = "sub";
const SERIAL_ATTR: &str = "certificateSerialNumber";

impl LdapUrl {
    /// Parses the form AR stores (see the module documentation). `Err` names what is wrong.
    pub fn parse(url: &str) -> Result<LdapUrl> {
        let url = url.trim();
        let rest = url
            .strip_prefix("ldap://")
            .ok_or_else(|| anyhow!("the LDAP URL {url:?} does not start with ldap://"))?;
        let (host, rest) = rest
            .split_once('/')
            .ok_or_else(|| anyhow!("the LDAP URL {url:?} has no / after the host"))?;
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            bail!("the LDAP URL {url:?} has no valid host name before the / (got {host:?})");
        }
        let parts: Vec<&str> = rest.split('?').collect();
        let [base, attributes, scope, filter] = parts.as_slice() else {
            bail!(
                "the LDAP URL {url:?} must have four ?-separated parts after the host \
                 (base?usercertificate;binary?sub?filter), it has {}",
                parts.len()
            );
        };
        if base.contains(' ') {
            bail!("the base of the LDAP URL {url:?} contains a raw space; AR stores it as %20");
        }
        let base =
            decode_base(base).with_context(|| format!("the base of the LDAP URL {url:?}"))?;
        if base.trim().is_empty() {
            bail!("the LDAP URL {url:?} has an empty search base");
        }
        if !attributes.eq_ignore_ascii_case(ATTRIBUTES) {
            bail!(
                "the LDAP URL {url:?} asks for the attributes {attributes:?}, not {ATTRIBUTES:?}"
            );
        }
        if !scope.eq_ignore_ascii_case(SCOPE) {
            bail!("the LDAP URL {url:?} has the scope {scope:?}, not {SCOPE:?}");
        }
        let serials =
            parse_filter(filter).with_context(|| format!("the filter of the LDAP URL {url:?}"))?;
        Ok(LdapUrl {
            host: host.to_owned(),
            base,
            serials,
        })
    }

    /// The URL in AR's spelling.
    pub fn build(&self) -> String {
        build_ldap_url(&self.host, &self.base, &self.serials)
    }
}

/// `ldap://<host>/<base with %20>?usercertificate;binary?sub?<filter>`: one serial gives
/// `(certificateSerialNumber=s)`, several `(|(certificateSerialNumber=s1)(…=s2))`.
pub fn build_ldap_url<S: AsRef<str>>(host: &str, base: &str, serials: &[S]) -> String {
    let terms: String = serials
        .iter()
        .map(|s| format!("({SERIAL_ATTR}={})", s.as_ref()))
        .collect();
    let filter = if serials.len() == 1 {
        terms
    } else {
        format!("(|{terms})")
    };
    format!(
        "ldap://{host}/{}?{ATTRIBUTES}?{SCOPE}?{filter}",
        encode_base(base)
    )
}

fn encode_base(base: &str) -> String {
    base.replace(' ', "%20")
}

/// Percent-decodes a base (`%20` and any other `%XX`).
fn decode_base(base: &str) -> Result<String> {
    let bytes = base.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| anyhow!("a % at byte {i} is not followed by two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow!("it does not decode to UTF-8"))
}

/// The serials of `(certificateSerialNumber=x)` or `(|(…=x)(…=y)…)`.
fn parse_filter(filter: &str) -> Result<Vec<String>> {
    if filter.contains("%7C") || filter.contains("%7c") {
        bail!("the | is percent-encoded (%7C); AR stores it unescaped");
    }
    let inner = filter
        .strip_prefix('(')
        .and_then(|f| f.strip_suffix(')'))
        .ok_or_else(|| anyhow!("{filter:?} is not enclosed in parentheses"))?;
    let terms: Vec<&str> = match inner.strip_prefix('|') {
        Some(list) => {
            let list = list
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(|| anyhow!("the | list {list:?} is not a list of (…) terms"))?;
            list.split(")(").collect()
        }
        None => vec![inner],
    };
    let mut serials = Vec::new();
    for term in terms {
        let (attr, value) = term
            .split_once('=')
            .ok_or_else(|| anyhow!("the term ({term}) is not attribute=value"))?;
        if !attr.eq_ignore_ascii_case(SERIAL_ATTR) {
            bail!("the term ({term}) tests {attr:?}, not {SERIAL_ATTR}");
        }
        if value.is_empty() || !value.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("the serial {value:?} in ({term}) is not decimal or hexadecimal digits");
        }
        serials.push(value.to_owned());
    }
    Ok(serials)
}

/// A published certificate, as a lookup finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// The serial in the provider's encoding.
    pub serial: String,
    pub cert_der: Vec<u8>,
    /// The subject's CN (empty when it has none).
    pub common_name: String,
    pub not_before: i64,
    pub not_after: i64,
    /// KeyUsage keyEncipherment.
    pub valid_for_encryption: bool,
    /// KeyUsage nonRepudiation.
    pub valid_for_signing: bool,
    /// Simulator time from which it is findable.
    pub visible_at: i64,
}

/// What a lookup of one serial found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Published and visible (one or more certificates; a Commfides lookup may match by hex
    /// and by decimal).
    Found(Vec<DirectoryEntry>),
    /// Published, visible from the given simulator time.
    NotYetVisible(i64),
    /// Nothing published under that serial.
    Unknown,
}

struct Stored {
    provider: usize,
    serial: BigUint,
    entry: DirectoryEntry,
}

#[derive(Default)]
struct State {
    providers: Vec<LdapProvider>,
    certificates: Vec<Stored>,
}

/// The CA directories; clones share them.
#[derive(Clone)]
pub struct Directory {
    clock: Clock,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("providers", &lock(&self.state).providers)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// Empty directories for `providers`, on `clock`.
    pub fn new(providers: Vec<LdapProvider>, clock: Clock) -> Directory {
        Directory {
            clock,
            state: Arc::new(Mutex::new(State {
                providers,
                certificates: Vec::new(),
            })),
        }
    }

    /// The configured (host, base) pairs.
    pub fn providers(&self) -> Vec<LdapProvider> {
        lock(&self.state).providers.clone()
    }

    /// The provider for (host, base), if configured.
    pub fn provider(&self, host: &str, base: &str) -> Option<LdapProvider> {
        lock(&self.state)
            .providers
            .iter()
            .find(|p| p.is(host, base))
            .cloned()
    }

    /// Publishes `cert_der` under (host, base), findable from simulator time `visible_at`.
    /// Returns its serial in the provider's encoding (what goes into the URL).
    pub fn publish(
        &self,
        host: &str,
        base: &str,
        cert_der: &[u8],
        visible_at: i64,
    ) -> Result<String> {
        let (_, cert) = X509Certificate::from_der(cert_der)
            .map_err(|e| anyhow!("the certificate to publish does not parse: {e}"))?;
        let serial = cert.tbs_certificate.serial.clone();
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        let (encryption, signing) = match cert.key_usage() {
            Ok(Some(ku)) => (ku.value.key_encipherment(), ku.value.non_repudiation()),
            _ => (false, false),
        };
        let mut state = lock(&self.state);
        let provider = state
            .providers
            .iter()
            .position(|p| p.is(host, base))
            .ok_or_else(|| {
                anyhow!(
                    "no directory is configured for host {host:?} and base {base:?}; add an \
                     LdapProvider to ArConfig::providers"
                )
            })?;
        let encoding = state.providers[provider].encoding;
        let entry = DirectoryEntry {
            serial: encoding.render(&serial),
            cert_der: cert_der.to_vec(),
            common_name,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            valid_for_encryption: encryption,
            valid_for_signing: signing,
            visible_at,
        };
        let rendered = entry.serial.clone();
        state.certificates.push(Stored {
            provider,
            serial,
            entry,
        });
        Ok(rendered)
    }

    /// Publishes `cert_der` under `provider`, findable from `visible_at`.
    pub fn publish_to(
        &self,
        provider: &LdapProvider,
        cert_der: &[u8],
        visible_at: i64,
    ) -> Result<String> {
        self.publish(&provider.host, &provider.base, cert_der, visible_at)
    }

    /// Looks each serial of `url` up, now (by the simulator clock). `Err` when the URL's
    /// (host, base) is not a configured directory.
    pub fn lookup(&self, url: &LdapUrl) -> Result<Vec<(String, Lookup)>> {
        let now = self.clock.now();
        let state = lock(&self.state);
        let provider = state
            .providers
            .iter()
            .position(|p| p.is(&url.host, &url.base))
            .ok_or_else(|| {
                anyhow!(
                    "there is no certificate directory at host {:?} with base {:?}",
                    url.host,
                    url.base
                )
            })?;
        let encoding = state.providers[provider].encoding;
        Ok(url
            .serials
            .iter()
            .map(|value| {
                let matching: Vec<&Stored> = state
                    .certificates
                    .iter()
                    .filter(|s| s.provider == provider && encoding.matches(value, &s.serial))
                    .collect();
                let visible: Vec<DirectoryEntry> = matching
                    .iter()
                    .filter(|s| s.entry.visible_at <= now)
                    .map(|s| s.entry.clone())
                    .collect();
                let lookup = if !visible.is_empty() {
                    Lookup::Found(visible)
                } else if let Some(at) = matching.iter().map(|s| s.entry.visible_at).min() {
                    Lookup::NotYetVisible(at)
                } else {
                    Lookup::Unknown
                };
                (value.clone(), lookup)
            })
            .collect())
    }

    /// The visible certificates `url` names (no duplicates), in filter order.
    pub fn search(&self, url: &LdapUrl) -> Result<Vec<DirectoryEntry>> {
        let mut found: Vec<DirectoryEntry> = Vec::new();
        for (_, lookup) in self.lookup(url)? {
            if let Lookup::Found(entries) = lookup {
                for entry in entries {
                    if !found.iter().any(|f| f.cert_der == entry.cert_der) {
                        found.push(entry);
                    }
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CaShape, KeyType, TestCa};
    use crate::leaf::LeafSpec;
    use rcgen::KeyUsagePurpose;

    const SAMPLE: &str = "ldap://ldap.test4.buypass.no/dc=Buypass,dc=no,CN=Buypass%20Class%203%20Test4%20CA%20G2?usercertificate;binary?sub?(|(certificateSerialNumber=1978614801669301597418371)(certificateSerialNumber=1978620698775221943443289))";

    #[test]
    fn the_real_sample_parses_and_builds_back_to_the_same_string() -> Result<()> {
        let url = LdapUrl::parse(SAMPLE)?;
        assert_eq!(url.host, "ldap.test4.buypass.no");
        assert_eq!(url.base, "dc=Buypass,dc=no,CN=Buypass Class 3 Test4 CA G2");
        assert_eq!(
            url.serials,
            ["1978614801669301597418371", "1978620698775221943443289"]
        );
        assert_eq!(url.build(), SAMPLE);
        assert_eq!(
            build_ldap_url(&url.host, &url.base, &url.serials),
            SAMPLE,
            "the free builder"
        );
        // The sample's whitespace around the address (pretty-printed XML) does not matter.
        assert_eq!(LdapUrl::parse(&format!("\n   {SAMPLE}\n  "))?, url);
        Ok(())
    }

    #[test]
    fn a_single_serial_filter_has_no_or() -> Result<()> {
        let url = build_ldap_url(
            "ldap.test.commfides.com",
            "ou=Legal-Person-G3,dc=commfides,dc=com",
            &["1a2b"],
        );
        assert_eq!(
            url,
            "ldap://ldap.test.commfides.com/ou=Legal-Person-G3,dc=commfides,dc=com?usercertificate;binary?sub?(certificateSerialNumber=1a2b)"
        );
        assert_eq!(LdapUrl::parse(&url)?.serials, ["1a2b"]);
        Ok(())
    }

    #[test]
    fn malformed_urls_are_refused_naming_the_part() {
        let cases = [
            (
                SAMPLE.replace("ldap://", "ldaps://"),
                "does not start with ldap://",
            ),
            (SAMPLE.replace("%20", " "), "raw space"),
            (SAMPLE.replace("(|", "(%7C"), "%7C"),
            (SAMPLE.replace("?sub?", "?one?"), "scope"),
            (SAMPLE.replace("usercertificate;binary", "cn"), "attributes"),
            (
                SAMPLE.replace("certificateSerialNumber=1978614801669301597418371", "cn=x"),
                "tests \"cn\"",
            ),
            (
                SAMPLE.replace("1978614801669301597418371", "12x4"),
                "not decimal or hexadecimal",
            ),
            (
                SAMPLE.replace("?usercertificate;binary", ""),
                "four ?-separated parts",
            ),
            (SAMPLE.replace("%20Class", "%2"), "two hex digits"),
            (SAMPLE.trim_end_matches(')').to_owned(), "parentheses"),
        ];
        for (url, expected) in cases {
            let error = format!("{:#}", LdapUrl::parse(&url).expect_err(&url));
            assert!(error.contains(expected), "{url}: {error}");
        }
    }

    #[test]
    fn a_certificate_is_findable_only_after_its_visibility_time_and_by_the_directorys_encoding()
    -> Result<()> {
        let clock = Clock::frozen(1_000_000);
        let buypass = LdapProvider::buypass_test4();
        let commfides = LdapProvider::commfides_test();
        let directory = Directory::new(vec![buypass.clone(), commfides.clone()], clock.clone());
        let ca = TestCa::new(CaShape::BuypassSeid2)?;
        let serial = [
            0x01, 0xa2, 0xfc, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80,
        ];
        let cert = ca.issue(
            &LeafSpec::seid2("100101696", "TESTVIRKSOMHET")
                .key_type(KeyType::EcP256)
                .key_usage(vec![KeyUsagePurpose::ContentCommitment])
                .serial(&serial),
        )?;
        let decimal = directory.publish_to(&buypass, &cert.cert_der, 1_000_600)?;
        let number = BigUint::from_bytes_be(&serial);
        assert_eq!(decimal, number.to_str_radix(10));
        let url = LdapUrl {
            host: "LDAP.test4.buypass.no".to_owned(),
            base: buypass.base.to_lowercase(),
            serials: vec![decimal.clone()],
        };
        assert_eq!(
            directory.lookup(&url)?[0].1,
            Lookup::NotYetVisible(1_000_600)
        );
        clock.advance(600);
        let found = directory.search(&url)?;
        assert_eq!(found.len(), 1);
        assert!(found[0].valid_for_signing && !found[0].valid_for_encryption);
        assert_eq!(found[0].common_name, "TESTVIRKSOMHET");
        // Buypass is searched by decimal only.
        let hex_url = LdapUrl {
            serials: vec![number.to_str_radix(16)],
            ..url.clone()
        };
        assert_eq!(directory.lookup(&hex_url)?[0].1, Lookup::Unknown);

        // Commfides: hex, and decimal too.
        let hex = directory.publish_to(&commfides, &cert.cert_der, 0)?;
        assert_eq!(hex, "1a2fc1020304050607080");
        for value in [hex.clone(), hex.to_uppercase(), format!("0{hex}"), decimal] {
            let url = LdapUrl {
                host: commfides.host.clone(),
                base: commfides.base.clone(),
                serials: vec![value.clone()],
            };
            assert_eq!(directory.search(&url)?.len(), 1, "{value}");
        }
        let elsewhere = LdapUrl {
            host: "ldap.example.com".to_owned(),
            ..url
        };
        assert!(directory.lookup(&elsewhere).is_err());
        assert!(
            directory
                .publish("ldap.example.com", "dc=x", &cert.cert_der, 0)
                .is_err()
        );
        Ok(())
    }
}
