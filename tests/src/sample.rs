//! Ready-made certificate sets on disk: the demo's realistic set and the benchmark's bulk set.
//!
//! Owns [`write_sample_set`] (one of each national shape, the edge cases in time, a chain,
//! a PKCS#12 bundle, managed cert+key pairs and a few broken files, with a [`Manifest`] that
//! says what each file is and what certvakt should say about it), [`write_many`] (N
//! distinct certificate files, fast) and [`write_many_with_keys`] (the same with a private
//! key file beside each certificate, for managed certificates and other tools).
//!
//! Layout written by [`write_sample_set`] under `DIR`:
//! - `watched/`: files meant for one `[[watch]]` entry with the patterns in
//!   [`Manifest::watch_patterns`] and [`Manifest::pkcs12_password_file`];
//! - `managed/<id>.cert.pem` + `<id>.key.pem` (+ chain, fullchain): one `[[certificate]]` per
//!   entry of [`Manifest::managed`];
//! - `secrets/`: the PKCS#12 password file (outside the watched patterns);
//! - `ca/<shape>-root.pem`: the test roots.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use serde::Serialize;
use time::Duration;

use crate::badfiles;
use crate::ca::{CaShape, KeyType, TestCa, now_seconds};
use crate::leaf::{IssuedCert, LeafSpec, write_file, write_secret};

/// What [`write_sample_set`] wrote. Serialises to the JSON `certvakt-gen sample` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub dir: PathBuf,
    /// Glob patterns for one `[[watch]]` entry covering `watched/`.
    pub watch_patterns: Vec<String>,
    /// The password file for the PKCS#12 bundle(s) in `watched/`.
    pub pkcs12_password_file: PathBuf,
    /// Cert+key pairs for `[[certificate]]` entries.
    pub managed: Vec<ManagedSample>,
    /// Every file written, with what it is.
    pub files: Vec<SampleFile>,
}

/// A managed-style pair.
#[derive(Debug, Clone, Serialize)]
pub struct ManagedSample {
    pub id: String,
    /// The plugin that would renew it (`dk-fmk`, `se-efrikort`, ...).
    pub plugin: String,
    /// The leaf shape (`oces3`, `siths`, ...).
    pub shape: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub chain: PathBuf,
    pub fullchain: PathBuf,
}

/// One file of the set.
#[derive(Debug, Clone, Serialize)]
pub struct SampleFile {
    pub path: PathBuf,
    /// `cert_pem`, `cert_der`, `chain_pem`, `pkcs12`, `password`, `key`, `ca_root`, `broken`.
    pub kind: String,
    /// The leaf shape, for certificates.
    pub shape: Option<String>,
    /// What certvakt should report: for certificates the state of the first one (`ok`,
    /// `expiring` (with the default 30-day window), `expired`, `not_yet_valid`); for broken
    /// files the problem kind (`malformed`, `not_certificate`, ...); empty for support files.
    pub expect: String,
    /// How many certificates the file holds.
    pub certificates: usize,
    /// The national identity the first certificate carries, in words.
    pub identity: Option<String>,
    pub description: String,
}

/// The password of the sample PKCS#12 bundle.
pub const SAMPLE_PKCS12_PASSWORD: &str = "certvakt-demo";

struct Writer {
    files: Vec<SampleFile>,
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    fn cert(
        &mut self,
        path: PathBuf,
        kind: &str,
        issued: &IssuedCert,
        expect: &str,
        certificates: usize,
        identity: Option<&str>,
        description: &str,
    ) {
        self.files.push(SampleFile {
            path,
            kind: kind.into(),
            shape: Some(issued.shape.as_str().into()),
            expect: expect.into(),
            certificates,
            identity: identity.map(str::to_string),
            description: description.into(),
        });
    }

    fn other(&mut self, path: PathBuf, kind: &str, expect: &str, description: &str) {
        self.files.push(SampleFile {
            path,
            kind: kind.into(),
            shape: None,
            expect: expect.into(),
            certificates: 0,
            identity: None,
            description: description.into(),
        });
    }
}

/// Writes the demo set into `dir` (created if needed) and says what it wrote.
///
/// Takes a few seconds: the RSA keys of the real profiles (3072 bits for OCES3 and SEID 2)
/// are generated once and shared by the watched certificates; each managed pair has its own.
pub fn write_sample_set(dir: &Path) -> Result<Manifest> {
    let watched = dir.join("watched");
    let managed_dir = dir.join("managed");
    let secrets = dir.join("secrets");
    let ca_dir = dir.join("ca");
    for d in [&watched, &managed_dir, &secrets, &ca_dir] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }

    let oces3 = TestCa::new(CaShape::Oces3)?;
    let siths = TestCa::new(CaShape::Siths)?;
    let dvv = TestCa::new(CaShape::Dvv)?;
    let buypass = TestCa::new(CaShape::BuypassSeid2)?;
    let buypass1 = TestCa::new(CaShape::BuypassSeid1)?;
    let commfides = TestCa::new(CaShape::Commfides)?;
    let tls = TestCa::new(CaShape::Tls)?;

    let rsa3072 = Arc::new(KeyType::Rsa3072.generate()?);
    let rsa2048 = Arc::new(KeyType::Rsa2048.generate()?);

    let mut w = Writer { files: Vec::new() };

    for ca in [&oces3, &siths, &dvv, &buypass, &buypass1, &commfides, &tls] {
        let path = ca_dir.join(format!("{:?}-root.pem", ca.shape()).to_lowercase());
        write_file(&path, ca.root_pem().as_bytes())?;
        w.other(
            path,
            "ca_root",
            "",
            &format!("root of {}", ca.issuer_name()),
        );
    }

    // --- watched: one of each national shape ---
    let c = oces3.issue(
        &LeafSpec::oces3(
            "25450442",
            "0443b8ae-dfd0-48c1-8af4-b9993cbce492",
            "Hjørring Apotek",
        )
        .with_key(Arc::clone(&rsa3072)),
    )?;
    let p = watched.join("dk-oces3-apotek.pem");
    write_file(&p, c.cert_pem.as_bytes())?;
    w.cert(
        p,
        "cert_pem",
        &c,
        "ok",
        1,
        Some("DK OCES3 CVR 25450442, UUID 0443b8ae-dfd0-48c1-8af4-b9993cbce492"),
        "Danish OCES3 organisation certificate (FMK pharmacy system)",
    );

    let c = oces3.issue(
        &LeafSpec::oces2_function("30808460", "94731315", "Hjørring Apotek FMK")
            .with_key(Arc::clone(&rsa2048))
            .expired_days_ago(30),
    )?;
    let p = watched.join("dk-oces2-function-expired.pem");
    write_file(&p, c.cert_pem.as_bytes())?;
    w.cert(
        p,
        "cert_pem",
        &c,
        "expired",
        1,
        Some("DK OCES2 CVR 30808460, FID 94731315"),
        "Danish OCES2 function certificate, expired 30 days ago",
    );

    let c = siths.issue(
        &LeafSpec::siths(
            "SE2321000016-39KJ",
            "Region Testland",
            "efrikort.region-testland.se",
        )
        .locality("Stockholm"),
    )?;
    let p = watched.join("se-siths-efrikort.pem");
    write_file(&p, c.cert_pem.as_bytes())?;
    w.cert(
        p,
        "cert_pem",
        &c,
        "ok",
        1,
        Some("SE HSA-ID SE2321000016-39KJ"),
        "Swedish SITHS function certificate (eFrikort)",
    );

    let c = siths.issue(
        &LeafSpec::siths(
            "SE2321000016-39KJ",
            "Region Testland",
            "efrikort.region-testland.se",
        )
        .not_yet_valid_for_days(5),
    )?;
    let p = watched.join("se-siths-next-not-yet-valid.pem");
    write_file(&p, c.cert_pem.as_bytes())?;
    w.cert(
        p,
        "cert_pem",
        &c,
        "not_yet_valid",
        1,
        Some("SE HSA-ID SE2321000016-39KJ"),
        "the next SITHS certificate, valid from 5 days on",
    );

    let c = dvv.issue(
        &LeafSpec::dvv("1234567-1", "Apteekki Testi Oy")
            .with_key(Arc::clone(&rsa2048))
            .org_unit("Helsingin Testi apteekki")
            .server_name("kanta.apteekki-testi.fi"),
    )?;
    let p = watched.join("fi-dvv-kanta.pem");
    write_file(&p, c.cert_pem.as_bytes())?;
    w.cert(
        p,
        "cert_pem",
        &c,
        "ok",
        1,
        Some("FI business ID 1234567-1"),
        "Finnish DVV sote server certificate (Kanta)",
    );

    let c = buypass.issue(
        &LeafSpec::seid2("100101696", "TESTVIRKSOMHET")
            .with_key(Arc::clone(&rsa3072))
            .expires_in_days(10),
    )?;
    let p = watched.join("no-seid2-buypass-expiring-10d.pem");
    write_file(&p, c.cert_pem.as_bytes())?;
    w.cert(
        p,
        "cert_pem",
        &c,
        "expiring",
        1,
        Some("NO orgnr 100101696 (SEID 2)"),
        "Norwegian Buypass SEID 2 enterprise certificate, expires in 10 days",
    );

    let c = commfides.issue(
        &LeafSpec::seid2("100101688", "TESTVIRKSOMHET APOTEK").with_key(Arc::clone(&rsa3072)),
    )?;
    let p = watched.join("no-seid2-commfides.pem");
    write_file(&p, c.cert_pem.as_bytes())?;
    w.cert(
        p,
        "cert_pem",
        &c,
        "ok",
        1,
        Some("NO orgnr 100101688 (SEID 2)"),
        "Norwegian Commfides SEID 2 enterprise certificate",
    );

    let c = buypass1.issue(
        &LeafSpec::seid1("983544622", "HELSEDIREKTORATET")
            .org_unit("IT")
            .common_name("TEST helsenorge.no tjenester")
            .with_key(Arc::clone(&rsa2048)),
    )?;
    let p = c.write_der(&watched, "no-seid1-buypass")?;
    w.cert(
        p,
        "cert_der",
        &c,
        "ok",
        1,
        Some("NO orgnr 983544622 (SEID 1)"),
        "Norwegian Buypass SEID 1 certificate, DER",
    );

    let c = tls.issue(&LeafSpec::tls_server(&[
        "www.apotek-test.example",
        "apotek-test.example",
    ]))?;
    let p = watched.join("web-fullchain.pem");
    write_file(&p, c.fullchain_pem().as_bytes())?;
    w.cert(
        p,
        "chain_pem",
        &c,
        "ok",
        3,
        None,
        "TLS server certificate followed by its issuing CA and root (3 certificates)",
    );

    let c = oces3.issue(
        &LeafSpec::oces3(
            "25450442",
            "5f0c2a3e-8d4b-4c7a-9e21-7b1d3f6a9c40",
            "Hjørring Apotek NemLog-in",
        )
        .with_key(Arc::clone(&rsa3072)),
    )?;
    let bundle = c.write_pkcs12(
        &watched.join("dk-oces3-nemlogin.p12"),
        SAMPLE_PKCS12_PASSWORD,
    )?;
    // The password file goes to secrets/, outside the watched patterns.
    let password_file = secrets.join("pkcs12.pass");
    fs::rename(&bundle.password_file, &password_file)
        .with_context(|| format!("moving {}", bundle.password_file.display()))?;
    w.cert(
        bundle.bundle,
        "pkcs12",
        &c,
        "ok",
        3,
        Some("DK OCES3 CVR 25450442, UUID 5f0c2a3e-8d4b-4c7a-9e21-7b1d3f6a9c40"),
        "PKCS#12 bundle as MitID Erhverv delivers it: key, certificate, issuing CA, root",
    );
    w.other(
        password_file.clone(),
        "password",
        "",
        "password of the PKCS#12 bundle",
    );

    // --- watched: broken files ---
    let p = badfiles::write_truncated_pem(&watched.join("broken-truncated.pem"), &c.cert_pem)?;
    w.other(
        p,
        "broken",
        "malformed",
        "a certificate PEM cut off in the middle of its base64",
    );
    let p = badfiles::write_key_only_pem(&watched.join("broken-key-only.pem"), &c.key_pem)?;
    w.other(
        p,
        "broken",
        "not_certificate",
        "a private key where a certificate was expected",
    );
    let p = badfiles::write_empty(&watched.join("broken-empty.pem"))?;
    w.other(p, "broken", "not_certificate", "an empty file");

    // --- managed pairs, one per shape ---
    let mut managed = Vec::new();
    let pairs: [(&str, &str, &TestCa, LeafSpec); 5] = [
        (
            "dk-fmk",
            "dk-fmk",
            &oces3,
            LeafSpec::oces3(
                "25450442",
                "9b2e61d0-3c4f-4a8e-b5d7-1f0e2c3a4b5d",
                "Hjørring Apotek FMK",
            ),
        ),
        (
            "se-efrikort",
            "se-efrikort",
            &siths,
            LeafSpec::siths(
                "SE2321000016-39KJ",
                "Region Testland",
                "efrikort-klient.region-testland.se",
            ),
        ),
        (
            "fi-kanta",
            "fi-kanta",
            &dvv,
            LeafSpec::dvv("1234567-1", "Apteekki Testi Oy")
                .server_name("kanta-klient.apteekki-testi.fi"),
        ),
        (
            "no-nhn",
            "no-nhn",
            &buypass,
            LeafSpec::seid2("100101696", "TESTVIRKSOMHET"),
        ),
        (
            "web",
            "acme",
            &tls,
            LeafSpec::tls_server(&["apotek-test.example"]),
        ),
    ];
    for (id, plugin, ca, spec) in pairs {
        let c = ca.issue(&spec)?;
        let paths = c.write_pem(&managed_dir, id)?;
        w.cert(
            paths.cert.clone(),
            "cert_pem",
            &c,
            "ok",
            1,
            None,
            &format!("managed certificate {id}"),
        );
        w.other(
            paths.key.clone(),
            "key",
            "",
            &format!("private key of {id}"),
        );
        w.cert(
            paths.chain.clone(),
            "chain_pem",
            &c,
            "ok",
            c.chain_der.len(),
            None,
            &format!("issuing chain of {id}"),
        );
        w.cert(
            paths.fullchain.clone(),
            "chain_pem",
            &c,
            "ok",
            1 + c.chain_der.len(),
            None,
            &format!("certificate and chain of {id}"),
        );
        managed.push(ManagedSample {
            id: id.into(),
            plugin: plugin.into(),
            shape: c.shape.as_str().into(),
            cert: paths.cert,
            key: paths.key,
            chain: paths.chain,
            fullchain: paths.fullchain,
        });
    }

    let w_dir = watched.display();
    Ok(Manifest {
        dir: dir.to_path_buf(),
        watch_patterns: vec![
            format!("{w_dir}/*.pem"),
            format!("{w_dir}/*.der"),
            format!("{w_dir}/*.p12"),
        ],
        pkcs12_password_file: password_file,
        managed,
        files: w.files,
    })
}

/// Writes `n` distinct certificate PEM files `cert-00000.pem` … into `dir`: one CA, one EC
/// P-256 key for all, distinct serials and CNs, validity spread over the next two years.
/// Returns the paths in order. 10,000 take a few seconds in a debug build, well under one in
/// release.
pub fn write_many(dir: &Path, n: usize) -> Result<Vec<PathBuf>> {
    Ok(mint_many(dir, n, false)?
        .into_iter()
        .map(|pair| pair.cert)
        .collect())
}

/// A certificate file and the file of its private key, written by [`write_many_with_keys`].
#[derive(Debug, Clone)]
pub struct CertKeyPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Like [`write_many`], and beside each `cert-00000.pem` its private key as
/// `cert-00000.key` (PKCS#8 PEM, mode 0600), for tools that manage or track a certificate
/// together with its key. All certificates share the one key (a copy per file), which is
/// what keeps this as fast as [`write_many`]; nothing that reads them needs distinct keys.
/// The `.key` files stay outside a `*.pem` watch pattern over `dir`.
pub fn write_many_with_keys(dir: &Path, n: usize) -> Result<Vec<CertKeyPair>> {
    mint_many(dir, n, true)
}

fn mint_many(dir: &Path, n: usize, with_keys: bool) -> Result<Vec<CertKeyPair>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = TestCa::root_only(CaShape::Tls)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("bulk key")?;
    let key_pem = key.serialize_pem();
    let width = n.saturating_sub(1).to_string().len().max(5);
    let now = now_seconds();

    let mint = |i: usize| -> Result<CertKeyPair> {
        let name = format!("bulk-{i:0width$}.certvakt.test");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, name.as_str());
        params.subject_alt_names = vec![SanType::DnsName(name.as_str().try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(30 + (i % 700) as i64);
        params.serial_number = Some(ca.next_serial());
        let cert = params.signed_by(&key, ca.signing_issuer())?;
        let path = dir.join(format!("cert-{i:0width$}.pem"));
        write_file(&path, cert.pem().as_bytes())?;
        let key_path = dir.join(format!("cert-{i:0width$}.key"));
        if with_keys {
            write_secret(&key_path, key_pem.as_bytes())?;
        }
        Ok(CertKeyPair {
            cert: path,
            key: key_path,
        })
    };

    // Two workers: the machines this runs on have two cores, and signing dominates.
    let workers = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1)
        .clamp(1, 4);
    let chunk = n.div_ceil(workers).max(1);
    let results: Vec<Result<Vec<CertKeyPair>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| {
                let end = (start + chunk).min(n);
                let mint = &mint;
                scope.spawn(move || (start..end).map(mint).collect::<Result<Vec<_>>>())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a bulk worker panicked")))
            })
            .collect()
    });
    let mut pairs = Vec::with_capacity(n);
    for r in results {
        pairs.extend(r?);
    }
    Ok(pairs)
}
