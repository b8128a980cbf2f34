//! A MitID Erhverv stand-in: the portal where a Danish organisation's administrator orders or
//! renews an OCES3 system certificate and downloads it, key included, as PKCS#12.
//!
//! Promises:
//! - Certificates come from an OCES3-shaped test CA ([`CaShape::Oces3`]: the issuer DN in the
//!   real attribute order) with the real profile as [`LeafSpec::oces3`] makes it: RSA 3072,
//!   three years less a second, `CN`, `serialNumber=UI:DK-O:G:<uuid>`, `O`,
//!   `organizationIdentifier=NTRDK-<cvr>`, `C=DK`.
//! - [`MitIdErhverv::order`] issues a certificate for a new system: a new UUID.
//! - [`MitIdErhverv::renew`] renews one: the same CVR, UUID and name, a new key and serial.
//!   It refuses a certificate that has expired, as the portal does (renewal is possible only
//!   before expiry; after it, a new certificate must be ordered), and one it did not issue.
//! - [`Download::write`] writes the bundle as the browser saves it, `<name>.p12` (0600), and
//!   its password beside it as `<name>.pass` (0600), for `certvakt import --password-file`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use x509_parser::prelude::FromDer;

use crate::ca::{CaShape, TestCa};
use crate::leaf::{IssuedCert, LeafSpec};

/// The password the stand-in protects downloads with (the real portal asks the user for one).
pub const DOWNLOAD_PASSWORD: &str = "Erhverv-2026";

/// The stand-in portal. See the module documentation.
#[derive(Debug)]
pub struct MitIdErhverv {
    ca: TestCa,
    orders: AtomicU64,
}

/// What the portal hands out: the certificate (with its key) and the PKCS#12 bundle.
#[derive(Debug)]
pub struct Download {
    pub certificate: IssuedCert,
    pub pkcs12: Vec<u8>,
    pub password: String,
}

/// The OCES3 identity of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oces3Identity {
    pub cvr: String,
    pub uuid: String,
    pub name: String,
}

impl MitIdErhverv {
    pub fn new() -> Result<MitIdErhverv> {
        Ok(MitIdErhverv {
            ca: TestCa::new(CaShape::Oces3)?,
            orders: AtomicU64::new(0),
        })
    }

    /// The CA, for trust sets (`root_pem`) and for signing CSRs.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// A new system certificate for the organisation `cvr`, named `name`, with a new UUID.
    pub fn order(&self, cvr: &str, name: &str) -> Result<Download> {
        let n = self.orders.fetch_add(1, Ordering::Relaxed);
        let uuid = new_uuid(cvr, name, n);
        self.download(&LeafSpec::oces3(cvr, &uuid, name))
    }

    /// The renewal of `current` (PEM): same CVR, UUID and name; a new key.
    pub fn renew(&self, current_pem: &str) -> Result<Download> {
        let der = pem::parse(current_pem)
            .context("the certificate to renew is not PEM")?
            .into_contents();
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der)
            .map_err(|e| anyhow::anyhow!("the certificate to renew does not parse: {e}"))?;
        let issuer_cn = cert
            .issuer()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default();
        if issuer_cn != self.ca.issuer_name() {
            bail!("MitID Erhverv did not issue this certificate (issuer {issuer_cn:?})");
        }
        if cert.validity().not_after.timestamp() <= crate::now_seconds().unix_timestamp() {
            bail!("the certificate has expired and can no longer be renewed: order a new one");
        }
        let identity = identity(&der)?;
        self.download(&LeafSpec::oces3(
            &identity.cvr,
            &identity.uuid,
            &identity.name,
        ))
    }

    fn download(&self, spec: &LeafSpec) -> Result<Download> {
        let certificate = self.ca.issue(spec)?;
        let pkcs12 = certificate.pkcs12_bytes(DOWNLOAD_PASSWORD)?;
        Ok(Download {
            certificate,
            pkcs12,
            password: DOWNLOAD_PASSWORD.into(),
        })
    }
}

impl Download {
    /// Writes `<name>.p12` and `<name>.pass` into `dir` (0600); returns both paths.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::create_dir_all(dir)?;
        let bundle = dir.join(format!("{name}.p12"));
        let password = dir.join(format!("{name}.pass"));
        for (path, bytes) in [
            (&bundle, self.pkcs12.as_slice()),
            (&password, self.password.as_bytes()),
        ] {
            std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok((bundle, password))
    }
}

/// The CVR, UUID and name (CN) of an OCES3 certificate (DER).
pub fn identity(der: &[u8]) -> Result<Oces3Identity> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| anyhow::anyhow!("the certificate does not parse: {e}"))?;
    let subject = cert.subject();
    let attribute = |oid: &str| {
        subject
            .iter_attributes()
            .find(|a| a.attr_type().to_id_string() == oid)
            .and_then(|a| a.as_str().ok())
            .map(str::to_owned)
    };
    let cvr = attribute("2.5.4.97")
        .and_then(|v| v.strip_prefix("NTRDK-").map(str::to_owned))
        .context("no organizationIdentifier NTRDK-<cvr>: not an OCES3 organisation certificate")?;
    let uuid = attribute("2.5.4.5")
        .and_then(|v| v.rsplit(':').next().map(str::to_owned))
        .context("no serialNumber UI:DK-…:<uuid>")?;
    let name = attribute("2.5.4.3").context("no CN")?;
    Ok(Oces3Identity { cvr, uuid, name })
}

/// A version-4-shaped UUID, lowercase as in every public OCES3 example; distinct per order.
fn new_uuid(cvr: &str, name: &str, order: u64) -> String {
    use sha2::{Digest as _, Sha256};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let digest = Sha256::digest(format!("{cvr}/{name}/{order}/{nanos}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    // Version 4 bits over the hash, as over random bytes.
    uuid::Builder::from_random_bytes(b)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_keeps_the_identity_and_an_order_makes_a_new_one() -> Result<()> {
        let portal = MitIdErhverv::new()?;
        let first = portal.order("25450442", "Hjørring Apotek FMK")?;
        let first_id = identity(&first.certificate.cert_der)?;
        assert_eq!(first_id.cvr, "25450442");
        assert_eq!(first_id.name, "Hjørring Apotek FMK");
        assert_eq!(first_id.uuid.len(), 36);
        assert_eq!(first_id.uuid, first_id.uuid.to_lowercase());

        let renewed = portal.renew(&first.certificate.cert_pem)?;
        assert_eq!(identity(&renewed.certificate.cert_der)?, first_id);
        assert_ne!(renewed.certificate.cert_der, first.certificate.cert_der);
        assert_ne!(
            renewed.certificate.key_pkcs8_der,
            first.certificate.key_pkcs8_der
        );

        let other = portal.order("25450442", "Hjørring Apotek FMK")?;
        assert_ne!(identity(&other.certificate.cert_der)?.uuid, first_id.uuid);

        let dir = tempfile::tempdir()?;
        let (bundle, password) = renewed.write(dir.path(), "fmk-2026")?;
        assert_eq!(std::fs::read(&bundle)?, renewed.pkcs12);
        assert_eq!(std::fs::read_to_string(&password)?, DOWNLOAD_PASSWORD);
        Ok(())
    }

    #[test]
    fn an_expired_or_foreign_certificate_is_not_renewed() -> Result<()> {
        let portal = MitIdErhverv::new()?;
        let expired = portal.ca().issue(
            &LeafSpec::oces3(
                "25450442",
                "9b2e61d0-3c4f-4a8e-b5d7-1f0e2c3a4b5d",
                "Hjørring Apotek FMK",
            )
            .expired_days_ago(2),
        )?;
        let err = portal.renew(&expired.cert_pem).expect_err("expired");
        assert!(err.to_string().contains("order a new one"), "{err}");
        let stranger = TestCa::new(CaShape::Tls)?.issue(&LeafSpec::tls_server(&["a.example"]))?;
        let err = portal.renew(&stranger.cert_pem).expect_err("foreign");
        assert!(err.to_string().contains("did not issue"), "{err}");
        Ok(())
    }
}
