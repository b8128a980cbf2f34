//! `certvakt-fuzz-seeds DIR`: writes the seed corpora of the fuzz targets (`fuzz/`), one
//! folder per target, from what the test kit makes: the test CA's certificates, keys and
//! PKCS#12 bundles and the demo's sample set (broken files included), the shipped and
//! documented configurations, every control request, plugin messages and frames, and the
//! authority simulators' answers (FMK and its STS, the NemLog-in STS). `scripts/fuzz seeds`
//! runs it; nothing it writes is committed.
//!
//! Seeds with several parts (a main configuration and a drop-in; an authority's answers in
//! the order a plugin asks) join them with [`SEPARATOR`], the fuzz crate's
//! `certvakt_fuzz::SEPARATOR`; an HTTP answer is a status line, headers, an empty line and
//! the body. The first byte of an `fmk_answer`, `sts_answer` or `acme_answer` seed picks what
//! the target runs (see each target's documentation).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use certvakt::control::protocol::Request;
use certvakt::plugin_host::frame::Frame;
use certvakt_plugin_api::messages::{HostRequest, PluginRequest};
use certvakt_testkit::fmk::{FmkOptions, FmkSimulator};
use certvakt_testkit::nemlogin::{NemLoginOptions, NemLoginSimulator};
use certvakt_testkit::soapd::{self, PostOptions};
use certvakt_testkit::{CaShape, KeyType, LeafSpec, SAMPLE_PKCS12_PASSWORD, TestCa};
use serde_json::{Value, json};

/// Must equal `certvakt_fuzz::SEPARATOR` (the fuzz crate builds on nightly only, so the
/// constant cannot be shared).
const SEPARATOR: &[u8] = b"\n~~~\n";

struct Seeds {
    dir: PathBuf,
    count: usize,
}

impl Seeds {
    fn add(&mut self, target: &str, name: &str, bytes: impl AsRef<[u8]>) -> Result<()> {
        let dir = self.dir.join(target);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        self.count += 1;
        Ok(())
    }

    fn add_parts(&mut self, target: &str, name: &str, pick: u8, parts: &[Vec<u8>]) -> Result<()> {
        let mut bytes = vec![pick];
        bytes.extend(parts.join(SEPARATOR));
        self.add(target, name, bytes)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir] = args.as_slice() else {
        eprintln!("usage: certvakt-fuzz-seeds DIR");
        return ExitCode::from(2);
    };
    let mut seeds = Seeds {
        dir: PathBuf::from(dir),
        count: 0,
    };
    match write_all(&mut seeds) {
        Ok(()) => {
            println!("{} seeds in {}", seeds.count, seeds.dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("certvakt-fuzz-seeds: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(seeds: &mut Seeds) -> Result<()> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    control(seeds)?;
    config(seeds, &repo)?;
    certificates(seeds)?;
    frames(seeds)?;
    plugin_messages(seeds)?;
    // The FMK simulator needs the FMK schemas from shared/ beside the checkout; without them
    // the other seeds are still worth having.
    if let Err(e) = fmk(seeds) {
        eprintln!("certvakt-fuzz-seeds: no FMK seeds: {e:#}");
    }
    nemlogin(seeds)?;
    acme(seeds)?;
    Ok(())
}

fn control(seeds: &mut Seeds) -> Result<()> {
    seeds.add(
        "control_line",
        "hello",
        format!(
            r#"{{"hello":{{"protocol":1,"version":"{}","program":"certvakt"}}}}"#,
            certvakt::VERSION
        ),
    )?;
    seeds.add(
        "control_line",
        "hello-other-protocol",
        r#"{"hello":{"protocol":2,"version":"9.0.0","program":"certvakt"}}"#,
    )?;
    let pem = TestCa::new(CaShape::Tls)?
        .issue(&LeafSpec::tls_server(&["apotek.example"]))?
        .cert_pem;
    let data = base64::engine::general_purpose::STANDARD.encode(pem);
    let requests = [
        Request::Status,
        Request::List {
            offset: 0,
            limit: None,
        },
        Request::List {
            offset: 2_000,
            limit: Some(2_000),
        },
        Request::Show { id: "fmk".into() },
        Request::Reload,
        Request::Renew {
            id: "web".into(),
            force: true,
        },
        Request::Rollback { id: "web".into() },
        Request::Tasks,
        Request::TaskShow { id: "fmk.1".into() },
        Request::TaskDone { id: "fmk.1".into() },
        Request::Import {
            more: Vec::new(),
            id: "kanta".into(),
            data,
            password: Some("secret".into()),
        },
        Request::Plugins,
    ];
    for (n, request) in requests.iter().enumerate() {
        seeds.add(
            "control_line",
            &format!("request-{n}-{}", request.name()),
            serde_json::to_vec(request)?,
        )?;
    }
    Ok(())
}

fn config(seeds: &mut Seeds, repo: &Path) -> Result<()> {
    let shipped = std::fs::read(repo.join("packaging/certvakt.toml"))
        .context("reading packaging/certvakt.toml")?;
    seeds.add("config", "shipped", &shipped)?;
    // Every TOML example of the README and the docs/ pages, alone and as a drop-in to the
    // shipped file.
    let mut pages = vec![repo.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo.join("docs"))
        .context("reading docs/")?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .context("reading docs/")?;
    docs.retain(|path| path.extension().is_some_and(|ext| ext == "md"));
    docs.sort();
    pages.extend(docs);
    let mut examples = Vec::new();
    for page in &pages {
        let text =
            std::fs::read_to_string(page).with_context(|| format!("reading {}", page.display()))?;
        let mut current: Option<String> = None;
        for line in text.lines() {
            match (&mut current, line.trim_start()) {
                (None, "```toml") => current = Some(String::new()),
                (Some(block), "```") => {
                    examples.push(std::mem::take(block));
                    current = None;
                }
                (Some(block), _) => {
                    block.push_str(line);
                    block.push('\n');
                }
                (None, _) => {}
            }
        }
    }
    if examples.is_empty() {
        bail!("the README and docs/*.md have no ```toml examples");
    }
    for (n, example) in examples.iter().enumerate() {
        seeds.add("config", &format!("readme-{n}"), example)?;
        let mut both = shipped.clone();
        both.extend_from_slice(SEPARATOR);
        both.extend_from_slice(example.as_bytes());
        seeds.add("config", &format!("shipped-and-readme-{n}"), both)?;
    }
    // The end-to-end tests' configuration around a managed certificate.
    let dir = Path::new("/var/lib/certvakt-fuzz");
    let body = "[[watch]]\npaths = [\"/etc/certvakt/watched/*.pem\"]\n\n[[certificate]]\nid = \"web\"\ncert = \"/etc/certvakt/web.pem\"\nkey = \"/etc/certvakt/web.key\"\nplugin = \"manual\"\n[certificate.settings]\nca_name = \"Test CA\"\n";
    seeds.add(
        "config",
        "harness",
        certvakt_testkit::harness::config_toml(dir, "127.0.0.1:0", body),
    )?;
    Ok(())
}

fn certificates(seeds: &mut Seeds) -> Result<()> {
    let sample = tempfile::tempdir()?;
    let manifest = certvakt_testkit::write_sample_set(sample.path())?;
    for (n, file) in manifest.files.iter().enumerate() {
        if !file.path.is_file() {
            continue; // folders, symlink loops
        }
        let Ok(bytes) = std::fs::read(&file.path) else {
            continue; // the unreadable file
        };
        if bytes.len() > 256 * 1024 {
            continue; // the huge file: big seeds only slow the fuzzer down
        }
        let name = format!("sample-{n}-{}", file.kind);
        seeds.add("cert_file", &name, &bytes)?;
        match file.kind.as_str() {
            "pkcs12" => {
                let mut with_password = format!("{SAMPLE_PKCS12_PASSWORD}\n").into_bytes();
                with_password.extend(&bytes);
                seeds.add("pkcs12", &name, with_password)?;
            }
            "key" => seeds.add("private_key", &name, &bytes)?,
            _ => {}
        }
    }
    for managed in &manifest.managed {
        if let Ok(bytes) = std::fs::read(&managed.key) {
            seeds.add("private_key", &format!("managed-{}", managed.id), bytes)?;
        }
    }

    let leaves = [
        (
            CaShape::Oces3,
            LeafSpec::oces3(
                "25450442",
                "8d3fa047-5b6c-4d7e-8f90-a1b2c3d4e5f6",
                "Svane Apotek",
            )
            .key_type(KeyType::Rsa2048),
        ),
        (
            CaShape::Tls,
            LeafSpec::tls_server(&["apotek.example", "www.apotek.example"])
                .key_type(KeyType::EcP256),
        ),
        (
            CaShape::Tls,
            LeafSpec::tls_server(&["kanta.apotek.example"]).key_type(KeyType::EcP384),
        ),
    ];
    for (n, (shape, spec)) in leaves.into_iter().enumerate() {
        let issued = TestCa::new(shape)?.issue(&spec)?;
        seeds.add("cert_file", &format!("leaf-{n}.pem"), &issued.cert_pem)?;
        seeds.add("cert_file", &format!("leaf-{n}.der"), &issued.cert_der)?;
        seeds.add(
            "cert_file",
            &format!("leaf-{n}-fullchain.pem"),
            issued.fullchain_pem(),
        )?;
        seeds.add("private_key", &format!("leaf-{n}.pem"), &issued.key_pem)?;
        seeds.add(
            "private_key",
            &format!("leaf-{n}.der"),
            &issued.key_pkcs8_der,
        )?;
        // A bundle as certvakt writes it (PBES2, AES-256, HMAC-SHA256).
        let key = certvakt::keys::PrivateKey::from_pem(&issued.key_pem)?;
        let bundle = certvakt::keys::write_pkcs12(
            &key,
            &issued.cert_der,
            &issued.chain_der,
            "fuzz password",
            "leaf",
        )?;
        let mut with_password = b"fuzz password\n".to_vec();
        with_password.extend(bundle.iter());
        seeds.add("pkcs12", &format!("leaf-{n}.p12"), with_password)?;
        seeds.add("cert_file", &format!("leaf-{n}.p12"), bundle.as_slice())?;
        // The same bundle in BER, as Windows and older Java write it.
        let ber = certvakt_testkit::ber::pkcs12_to_ber(&bundle)?;
        let mut with_password = b"fuzz password\n".to_vec();
        with_password.extend(&ber);
        seeds.add("pkcs12", &format!("leaf-{n}-ber.p12"), with_password)?;
    }
    // Bundles without a MAC and with bags in the clear (valid PKCS#12, and what lets the
    // fuzzer change the bags: a mutated MACed bundle stops at its MAC).
    let ca = TestCa::new(CaShape::Oces3)?;
    let leaf = ca.issue(
        &LeafSpec::oces3(
            "25450442",
            "6a1f3c2e-9d4b-4e8a-b1c7-2f5d8e9a0b3c",
            "Svane Apotek",
        )
        .key_type(KeyType::EcP256),
    )?;
    let key_id = b"fuzz-key-id".as_slice();
    let with_key = clear_pkcs12(&[
        key_bag(&leaf.key_pkcs8_der, Some(key_id)),
        cert_bag(&leaf.cert_der, Some(key_id)),
        cert_bag(&leaf.chain_der[0], None),
    ]);
    let unpaired = clear_pkcs12(&[
        cert_bag(&leaf.chain_der[0], None),
        key_bag(&leaf.key_pkcs8_der, None),
        cert_bag(&leaf.cert_der, None),
    ]);
    let certificates_only = clear_pkcs12(
        &std::iter::once(cert_bag(&leaf.cert_der, None))
            .chain(leaf.chain_der.iter().map(|der| cert_bag(der, None)))
            .collect::<Vec<_>>(),
    );
    for (name, bundle) in [
        ("clear-with-key.p12", with_key),
        ("clear-unpaired.p12", unpaired),
        ("clear-certificates.p12", certificates_only),
    ] {
        seeds.add("cert_file", name, &bundle)?;
        let ber = certvakt_testkit::ber::pkcs12_to_ber(&bundle)?;
        let mut with_password = b"\n".to_vec();
        with_password.extend(bundle);
        seeds.add("pkcs12", name, with_password)?;
        let mut with_password = b"\n".to_vec();
        with_password.extend(ber);
        seeds.add("pkcs12", &name.replace(".p12", "-ber.p12"), with_password)?;
    }
    // A MitID Erhverv download, as `certvakt import` gets it.
    let mitid = certvakt_testkit::mitid::MitIdErhverv::new()?;
    let download = mitid.order("25450442", "Svane Apotek")?;
    let mut with_password = format!("{}\n", download.password).into_bytes();
    with_password.extend(&download.pkcs12);
    seeds.add("pkcs12", "mitid-download.p12", with_password)?;
    Ok(())
}

fn frames(seeds: &mut Seeds) -> Result<()> {
    let frames = [
        Frame::Loaded {
            name: "acme".into(),
            version: certvakt::VERSION.into(),
            api_version: certvakt_plugin_api::PLUGIN_API_VERSION.into(),
        },
        Frame::Refused(br#"{"not_loadable":"the library has no certvakt_plugin_v1"}"#.to_vec()),
        Frame::Call {
            method: "describe".into(),
            params: b"null".to_vec(),
        },
        Frame::HostCall {
            method: "now".into(),
            params: b"null".to_vec(),
        },
        Frame::HostReply(br#"{"response":"now","result":{"unix_seconds":1767225600}}"#.to_vec()),
        Frame::Reply(br#"{"response":"validate_settings","result":[]}"#.to_vec()),
    ];
    let mut stream = Vec::new();
    for (n, frame) in frames.iter().enumerate() {
        let bytes = frame.encode()?;
        seeds.add("plugin_frame", &format!("frame-{n}"), &bytes)?;
        stream.extend(bytes);
    }
    seeds.add("plugin_frame", "a-whole-call", stream)?;
    Ok(())
}

fn plugin_messages(seeds: &mut Seeds) -> Result<()> {
    // What plugins ask of the host, one of each method.
    let host_calls = [
        json!({"method": "log", "params": {"level": "info", "message": "ordering", "fields": {"order": "1"}}}),
        json!({"method": "now", "params": null}),
        json!({"method": "state_get", "params": {"key": "account"}}),
        json!({"method": "state_put", "params": {"key": "account", "value": {"url": "https://ca.test/acct/1"}}}),
        json!({"method": "open_task", "params": {"title": "Renew in MitID Erhverv", "instructions": "Download the .p12", "files": [{"name": "request.csr", "content": {"type": "csr"}}], "completes_by": "import"}}),
        json!({"method": "sign", "params": {"key": {"type": "current"}, "algorithm": "rsa_pkcs1_sha256", "data": "aGVsbG8="}}),
        json!({"method": "http", "params": {"method": "POST", "url": "https://ca.test/new-order", "headers": [["content-type", "application/jose+json"]], "body": "e30=", "identity": {"type": "current"}, "trust": "oces3", "timeout_ms": 30000}}),
        json!({"method": "plugin_key", "params": {"name": "account", "algorithm": "ec-p256"}}),
        json!({"method": "http01_publish", "params": {"token": "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0", "key_authorization": "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"}}),
        json!({"method": "http01_publish", "params": {"token": "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", "key_authorization": "x.y", "webroot": "/srv/www"}}),
        json!({"method": "http01_withdraw", "params": {"token": "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"}}),
        json!({"method": "run_command", "params": {"argv": ["/usr/local/bin/dns-hook", "present"], "env": {"TOKEN": "x"}, "timeout_ms": 60000}}),
        json!({"method": "read_secret", "params": {"path": "/etc/certvakt/eab.key"}}),
    ];
    for (n, call) in host_calls.iter().enumerate() {
        let request: HostRequest = serde_json::from_value(call.clone())
            .with_context(|| format!("host call seed {n} is not a host request: {call}"))?;
        let mut bytes = format!("{}\n", request.method()).into_bytes();
        bytes.extend(request.encode_params()?);
        seeds.add(
            "plugin_to_host",
            &format!("{n}-{}", request.method()),
            bytes,
        )?;
    }
    let replies = [
        json!({"response": "describe", "result": {"name": "manual", "version": "0.1.0", "summary": "Manual CA", "settings": []}}),
        json!({"response": "issue", "result": {"status": "pending", "poll_after_secs": 60, "state": {"step": 1}}}),
        json!({"response": "error", "result": {"kind": "temporary", "message": "the CA is down"}}),
    ];
    for (n, reply) in replies.iter().enumerate() {
        seeds.add(
            "plugin_to_host",
            &format!("reply-{n}"),
            serde_json::to_vec(reply)?,
        )?;
    }

    // What the daemon asks of a plugin (the manual plugin's settings from its README).
    let settings = json!({
        "ca_name": "DVV (Digi- ja väestötietovirasto)",
        "submit_url": "https://dvv.example/e-service/server-certificate",
        "sans": ["DNS:kanta.apotek.example"],
        "subject": [
            {"attribute": "C", "value": "FI"},
            {"attribute": "O", "value": "Esimerkin Apteekki Oy"},
            {"attribute": "CN", "value": "kanta.apotek.example"},
        ],
    });
    let current = {
        let issued =
            TestCa::new(CaShape::Tls)?.issue(&LeafSpec::tls_server(&["kanta.apotek.example"]))?;
        json!({
            "pem": issued.cert_pem,
            "subject": "CN=kanta.apotek.example",
            "serial": issued.serial_hex()?,
            "not_before": issued.not_before.unix_timestamp(),
            "not_after": issued.not_after.unix_timestamp(),
            "identities": [],
        })
    };
    let certificate = json!({
        "certificate_id": "kanta",
        "settings": settings,
        "environment": "production",
        "current": current,
    });
    // Orders and steps carry the certificate's fields flattened beside their own.
    let with = |extra: Value| {
        let mut params = certificate.clone();
        if let (Some(params), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
            params.extend(extra.clone());
        }
        params
    };
    let calls = [
        json!({"method": "describe", "params": null}),
        json!({"method": "validate_settings", "params": {"settings": settings}}),
        json!({"method": "csr_profile", "params": certificate}),
        json!({"method": "issue", "params": with(json!({"csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n", "state": null}))}),
        json!({"method": "poll", "params": with(json!({"csr_pem": "", "state": {"task": "kanta.1"}}))}),
        json!({"method": "register", "params": with(json!({"new": current, "state": null}))}),
        json!({"method": "retire", "params": with(json!({"new": current, "state": null}))}),
        json!({"method": "renewal_window", "params": certificate}),
    ];
    for (n, call) in calls.iter().enumerate() {
        let method = call["method"].as_str().unwrap_or_default();
        let params = serde_json::to_vec(&call["params"])?;
        PluginRequest::decode(method, &params)
            .with_context(|| format!("plugin call seed {n} does not decode"))?;
        let mut bytes = format!("{method}\n").into_bytes();
        bytes.extend(params);
        seeds.add("host_to_plugin", &format!("{n}-{method}"), bytes)?;
    }
    let answers = [
        json!({"response": "now", "result": {"unix_seconds": 1767225600}}),
        json!({"response": "http", "result": {"status": 200, "headers": [["content-type", "application/json"]], "body": "e30="}}),
        json!({"response": "error", "result": {"kind": "not_available", "message": "no HTTP here"}}),
    ];
    for (n, answer) in answers.iter().enumerate() {
        seeds.add(
            "host_to_plugin",
            &format!("answer-{n}"),
            serde_json::to_vec(answer)?,
        )?;
    }
    Ok(())
}

/// An HTTP answer in the fuzz targets' form.
fn http(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    format!("{status}\ncontent-type: {content_type}\n\n{body}").into_bytes()
}

fn envelope(header: &str, body: &str) -> String {
    format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header>{header}</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"#
    )
}

/// Answers of the FMK simulator and its SOSI STS: the operations' answers (applied to the
/// simulator as the pharmacy owner's own client would), and the faults it sends to requests
/// it refuses.
fn fmk(seeds: &mut Seeds) -> Result<()> {
    const CVR: &str = "96908409";
    let ca = TestCa::new(CaShape::Oces3)?;
    let client = ca.issue(
        &LeafSpec::oces3(
            CVR,
            "0443b8ae-dfd0-48c1-8af4-b9993cbce492",
            "Svane Apotek FMK",
        )
        .key_type(KeyType::Rsa2048),
    )?;
    let sim = FmkSimulator::start(FmkOptions {
        client_roots: vec![ca.root_der()],
        ..FmkOptions::default()
    })?;
    let e6 = "http://www.dkma.dk/medicinecard/xml.schema/2015/06/01/E6";
    let mc = "http://www.dkma.dk/medicinecard/xml.schema/2015/06/01";
    let created_by = String::from(
        r#"<e6:CreatedBy><mc:Other><mc:Name><mc:GivenName>Ane</mc:GivenName><mc:Surname>Apoteker</mc:Surname></mc:Name><mc:PersonIdentifier source="CPR">2604276962</mc:PersonIdentifier></mc:Other><mc:Role>Apoteker</mc:Role><mc:Organisation><mc:Name>Svane apoteket</mc:Name><mc:AddressLine>Brogade 111</mc:AddressLine><mc:AddressLine>5412 Gl. Kogle</mc:AddressLine><mc:Type>Apotek</mc:Type><mc:Identifier source="EAN-Lokationsnummer">5790000171248</mc:Identifier></mc:Organisation></e6:CreatedBy>"#,
    );
    let entry = format!(
        r#"<e6:FocesWhitelisting><e6:OrganisationIdentifier source="CVR">{CVR}</e6:OrganisationIdentifier><e6:FocesId>0443b8ae-dfd0-48c1-8af4-b9993cbce492</e6:FocesId><e6:CertHash>7FA65D27408F9B0A4A54F650D4D9E4A43941D0A1</e6:CertHash></e6:FocesWhitelisting>"#
    );
    let create = format!(
        r#"<e6:CreateFocesWhitelistingRequest xmlns:e6="{e6}" xmlns:mc="{mc}">{created_by}{entry}</e6:CreateFocesWhitelistingRequest>"#
    );
    let get = format!(
        r#"<e6:GetFocesWhitelistingsRequest xmlns:e6="{e6}"><e6:OrganisationIdentifier source="CVR">{CVR}</e6:OrganisationIdentifier></e6:GetFocesWhitelistingsRequest>"#
    );
    sim.insert_whitelisting(CVR, "7d2c9e41-5b3a-4f18-9c6d-0e8f1a2b3c4d", None);
    let mut answers = Vec::new();
    for (name, body) in [("create", &create), ("get", &get)] {
        let answer = sim
            .submit_as_owner(body)
            .with_context(|| format!("the FMK simulator refused the owner's {name}"))?;
        answers.push((
            name,
            http(200, "text/xml; charset=utf-8", &envelope("", &answer)),
        ));
    }
    // Refusals, as the simulator sends them: an unsigned request to FMK in either version,
    // and a request without an ID card to the STS.
    let options = PostOptions {
        soap_action: None,
        chunked: false,
        identity: Some(&client),
    };
    let root = sim.server_root_pem();
    for (name, action) in [
        (
            "fault-e6",
            "\"http://www.dkma.dk/medicinecard/xml.schema/2015/06/01/E6#GetFocesWhitelistings\"",
        ),
        (
            "fault-160",
            "\"http://fmk-teknik.dk/160#GetFocesWhitelistings\"",
        ),
    ] {
        let (status, body) = soapd::post(
            &sim.fmk_url(),
            &root,
            &envelope("", &get),
            &PostOptions {
                soap_action: Some(action),
                ..options.clone()
            },
        )?;
        answers.push((name, http(status, "text/xml; charset=utf-8", &body)));
    }
    let (status, body) = soapd::post(
        &sim.sts_url(),
        &root,
        &envelope(
            "",
            "<wst:RequestSecurityToken xmlns:wst=\"http://schemas.xmlsoap.org/ws/2005/02/trust\"/>",
        ),
        &PostOptions {
            soap_action: Some("\"http://schemas.xmlsoap.org/ws/2005/02/trust/Issue\""),
            ..options.clone()
        },
    )?;
    let sts_fault = http(status, "text/xml; charset=utf-8", &body);
    // An ID card answer in the form the simulated STS signs (the fuzzer cannot forge the
    // signature, and the plugin does not check it: FMK does).
    let card = format!(
        r#"<wst:RequestSecurityTokenResponse xmlns:wst="http://schemas.xmlsoap.org/ws/2005/02/trust"><wst:TokenType>urn:oasis:names:tc:SAML:2.0:assertion:</wst:TokenType><wst:RequestedSecurityToken><saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" IssueInstant="2026-01-01T00:00:00Z" Version="2.0" id="IDCard"><saml:Issuer>TESTSTS</saml:Issuer><saml:Subject><saml:NameID Format="medcom:other">SvaneApotek</saml:NameID></saml:Subject><saml:Conditions NotBefore="2026-01-01T00:00:00Z" NotOnOrAfter="2026-01-02T00:00:00Z"/><saml:AttributeStatement id="SystemLog"><saml:Attribute Name="medcom:CareProviderID" NameFormat="medcom:cvrnumber"><saml:AttributeValue>{CVR}</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion></wst:RequestedSecurityToken></wst:RequestSecurityTokenResponse>"#
    );
    let card = http(200, "text/xml; charset=utf-8", &envelope("", &card));

    for (name, answer) in &answers {
        seeds.add("soap_answer", &format!("fmk-{name}"), answer)?;
        // The whitelisting reader alone (pick 3 or 6 of fmk_answer's "pick >> 1 % 5").
        let body = answer.splitn(2, |&b| b == b'\n').nth(1).unwrap_or_default();
        seeds.add_parts("fmk_answer", &format!("reader-{name}"), 6, &[body.to_vec()])?;
    }
    seeds.add("soap_answer", "sts-fault", &sts_fault)?;
    seeds.add("soap_answer", "sts-card", &card)?;
    // Whole steps: the STS's card, then FMK's answers in the order register asks.
    let get_answer = answers[1].1.clone();
    let create_answer = answers[0].1.clone();
    for (pick, name) in [
        (0u8, "register-e6"),
        (1, "register-160"),
        (2, "verify-e6"),
        (4, "retire-e6"),
    ] {
        seeds.add_parts(
            "fmk_answer",
            name,
            pick,
            &[
                card.clone(),
                get_answer.clone(),
                create_answer.clone(),
                get_answer.clone(),
            ],
        )?;
    }
    seeds.add_parts("fmk_answer", "register-sts-refuses", 0, &[sts_fault])?;
    seeds.add_parts(
        "fmk_answer",
        "register-fmk-refuses",
        0,
        &[card, answers[2].1.clone()],
    )?;
    Ok(())
}

/// Answers of the NemLog-in STS simulator to requests it refuses, and a token answer in its
/// form with the request's own identifiers left as `@CONTEXT@` and `@MESSAGE_ID@`.
fn nemlogin(seeds: &mut Seeds) -> Result<()> {
    let ca = TestCa::new(CaShape::Oces3)?;
    let client = ca.issue(
        &LeafSpec::oces3(
            "29189846",
            "3f1c2a9e-7b4d-4e2f-9a8b-1c2d3e4f5a6b",
            "Odense SMDB",
        )
        .key_type(KeyType::Rsa2048),
    )?;
    let sim = NemLoginSimulator::start(NemLoginOptions {
        client_roots: vec![ca.root_der()],
        client_intermediates: ca.chain_der(),
        ..NemLoginOptions::default()
    })?;
    let url = sim.sts_url(certvakt_testkit::nemlogin::Environment::Production);
    let root = sim.server_root_pem();
    let options = PostOptions {
        soap_action: Some("\"http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue\""),
        chunked: false,
        identity: Some(&client),
    };
    let mut faults = Vec::new();
    for (name, body) in [
        ("empty-body", envelope("", "")),
        (
            "unsigned",
            envelope(
                "",
                r#"<wst:RequestSecurityToken xmlns:wst="http://docs.oasis-open.org/ws-sx/ws-trust/200512" Context="urn:uuid:1"><wst:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</wst:RequestType></wst:RequestSecurityToken>"#,
            ),
        ),
        ("not-xml", "this is not XML".to_owned()),
    ] {
        let (status, answer) = soapd::post(&url, &root, &body, &options)?;
        faults.push((name, http(status, "text/xml; charset=utf-8", &answer)));
    }
    let token = http(
        200,
        "text/xml; charset=utf-8",
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action>http://docs.oasis-open.org/ws-sx/ws-trust/200512/RSTRC/IssueFinal</a:Action><a:RelatesTo>@MESSAGE_ID@</a:RelatesTo></s:Header><s:Body><trust:RequestSecurityTokenResponseCollection xmlns:trust="http://docs.oasis-open.org/ws-sx/ws-trust/200512"><trust:RequestSecurityTokenResponse Context="@CONTEXT@"><trust:Lifetime><wsu:Created xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">2026-01-01T00:00:00.000Z</wsu:Created><wsu:Expires xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">2026-01-01T08:00:00.000Z</wsu:Expires></trust:Lifetime><trust:RequestedSecurityToken><saml:EncryptedAssertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"/></saml:EncryptedAssertion></trust:RequestedSecurityToken></trust:RequestSecurityTokenResponse></trust:RequestSecurityTokenResponseCollection></s:Body></s:Envelope>"#,
    );
    seeds.add("soap_answer", "nemlogin-token", &token)?;
    for pick in 0..4u8 {
        seeds.add_parts(
            "sts_answer",
            &format!("token-{pick}"),
            pick,
            std::slice::from_ref(&token),
        )?;
    }
    for (name, answer) in &faults {
        seeds.add("soap_answer", &format!("nemlogin-{name}"), answer)?;
        for pick in 0..3u8 {
            seeds.add_parts(
                "sts_answer",
                &format!("{name}-{pick}"),
                pick,
                std::slice::from_ref(answer),
            )?;
        }
    }
    Ok(())
}

/// An ACME CA's answers in the order the acme plugin asks for them when it orders a
/// certificate (RFC 8555 §7 and the examples there), its renewal information (RFC 9773) and a
/// problem document; the chain is the test CA's.
fn acme(seeds: &mut Seeds) -> Result<()> {
    let json = |status: u16, headers: &[(&str, &str)], body: &Value| -> Vec<u8> {
        let mut text = format!("{status}\ncontent-type: application/json\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\n"));
        }
        text.push('\n');
        text.push_str(&body.to_string());
        text.into_bytes()
    };
    let nonce = [("replay-nonce", "oFvnlFP1wIhRlYS2jTaXbA")];
    let directory = json(
        200,
        &[],
        &json!({
            "newNonce": "https://ca.test/nonce",
            "newAccount": "https://ca.test/new-account",
            "newOrder": "https://ca.test/new-order",
            "revokeCert": "https://ca.test/revoke",
            "keyChange": "https://ca.test/key-change",
            "renewalInfo": "https://ca.test/renewal-info",
            "meta": {"termsOfService": "https://ca.test/terms", "externalAccountRequired": false},
        }),
    );
    let new_nonce = b"200\nreplay-nonce: oFvnlFP1wIhRlYS2jTaXbA\n\n".to_vec();
    let account = json(
        201,
        &[nonce[0], ("location", "https://ca.test/acct/1")],
        &json!({"status": "valid", "contact": ["mailto:it@apotek.example"], "orders": "https://ca.test/acct/1/orders"}),
    );
    let order = |status: &str| {
        json(
            201,
            &[nonce[0], ("location", "https://ca.test/order/1")],
            &json!({
                "status": status,
                "expires": "2026-01-08T00:00:00Z",
                "identifiers": [{"type": "dns", "value": "apotek.example"}, {"type": "dns", "value": "www.apotek.example"}],
                "authorizations": ["https://ca.test/authz/1", "https://ca.test/authz/2"],
                "finalize": "https://ca.test/order/1/finalize",
                "certificate": "https://ca.test/cert/1",
            }),
        )
    };
    let authz = |n: u32, name: &str, status: &str| {
        json(
            200,
            &nonce,
            &json!({
                "status": status,
                "identifier": {"type": "dns", "value": name},
                "challenges": [
                    {"type": "http-01", "url": format!("https://ca.test/chall/{n}"), "status": status, "token": "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"},
                    {"type": "dns-01", "url": format!("https://ca.test/chall/{n}d"), "status": status, "token": "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"},
                ],
            }),
        )
    };
    let challenge = json(
        200,
        &nonce,
        &json!({"type": "http-01", "url": "https://ca.test/chall/1", "status": "processing", "token": "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"}),
    );
    let issued = TestCa::new(CaShape::Tls)?.issue(&LeafSpec::tls_server(&[
        "apotek.example",
        "www.apotek.example",
    ]))?;
    let chain = format!(
        "200\ncontent-type: application/pem-certificate-chain\nreplay-nonce: oFvnlFP1wIhRlYS2jTaXbA\nlink: <https://ca.test/cert/1/1>;rel=\"alternate\"\n\n{}",
        issued.fullchain_pem()
    )
    .into_bytes();
    let problem = json(
        429,
        &[nonce[0], ("retry-after", "3600")],
        &json!({"type": "urn:ietf:params:acme:error:rateLimited", "detail": "too many certificates", "subproblems": [{"type": "urn:ietf:params:acme:error:rejectedIdentifier", "detail": "no", "identifier": {"type": "dns", "value": "x"}}]}),
    );
    let bad_nonce = json(
        400,
        &nonce,
        &json!({"type": "urn:ietf:params:acme:error:badNonce", "detail": "JWS has an invalid anti-replay nonce"}),
    );
    let window = json(
        200,
        &[("retry-after", "21600")],
        &json!({"suggestedWindow": {"start": "2026-02-01T00:00:00Z", "end": "2026-02-02T00:00:00Z"}, "explanationURL": "https://ca.test/why"}),
    );

    let flow = vec![
        directory.clone(),
        new_nonce.clone(),
        account.clone(),
        // The account read back by its URL.
        account.clone(),
        order("pending"),
        // The order read back by its URL.
        order("pending"),
        authz(1, "apotek.example", "pending"),
        authz(2, "www.apotek.example", "pending"),
        challenge.clone(),
        challenge,
        // The next poll: the order is ready, finalized, valid; then the chain.
        order("ready"),
        order("processing"),
        order("valid"),
        chain,
    ];
    seeds.add_parts("acme_answer", "issue-whole-order", 0, &flow)?;
    seeds.add_parts(
        "acme_answer",
        "issue-rate-limited",
        0,
        &[directory.clone(), new_nonce.clone(), problem.clone()],
    )?;
    seeds.add_parts(
        "acme_answer",
        "issue-bad-nonce",
        0,
        &[
            directory.clone(),
            new_nonce.clone(),
            bad_nonce,
            account.clone(),
            order("pending"),
        ],
    )?;
    seeds.add_parts(
        "acme_answer",
        "renewal-window",
        1,
        &[directory.clone(), window.clone()],
    )?;
    seeds.add_parts(
        "acme_answer",
        "retire-revoke",
        2,
        &[
            directory.clone(),
            new_nonce,
            account,
            b"200\nreplay-nonce: x\n\n".to_vec(),
        ],
    )?;
    seeds.add_parts("acme_answer", "documents", 3, &[directory, window, problem])?;
    Ok(())
}

/// DER: a tag, its length, its content.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend(&bytes[skip..]);
    }
    out.extend(content);
    out
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OCTET_STRING: u8 = 0x04;
const EXPLICIT_0: u8 = 0xa0;
/// pkcs7-data, 1.2.840.113549.1.7.1
const OID_DATA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01,
];
/// keyBag, 1.2.840.113549.1.12.10.1.1
const OID_KEY_BAG: &[u8] = &[
    0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x01,
];
/// certBag, 1.2.840.113549.1.12.10.1.3
const OID_CERT_BAG: &[u8] = &[
    0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x03,
];
/// x509Certificate, 1.2.840.113549.1.9.22.1
const OID_X509: &[u8] = &[
    0x06, 0x0a, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x16, 0x01,
];
/// localKeyId, 1.2.840.113549.1.9.21
const OID_LOCAL_KEY_ID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x15,
];

fn bag(kind: &[u8], value: &[u8], local_key_id: Option<&[u8]>) -> Vec<u8> {
    let mut content = kind.to_vec();
    content.extend(tlv(EXPLICIT_0, value));
    if let Some(id) = local_key_id {
        let mut attribute = OID_LOCAL_KEY_ID.to_vec();
        attribute.extend(tlv(SET, &tlv(OCTET_STRING, id)));
        content.extend(tlv(SET, &tlv(SEQUENCE, &attribute)));
    }
    tlv(SEQUENCE, &content)
}

/// A keyBag: the PKCS#8 key in the clear.
fn key_bag(pkcs8: &[u8], local_key_id: Option<&[u8]>) -> Vec<u8> {
    bag(OID_KEY_BAG, pkcs8, local_key_id)
}

/// A certBag with an X.509 certificate.
fn cert_bag(der: &[u8], local_key_id: Option<&[u8]>) -> Vec<u8> {
    let mut cert = OID_X509.to_vec();
    cert.extend(tlv(EXPLICIT_0, &tlv(OCTET_STRING, der)));
    bag(OID_CERT_BAG, &tlv(SEQUENCE, &cert), local_key_id)
}

/// `PFX { version 3, authSafe data { SafeContents of bags } }`: no encryption, no MAC.
fn clear_pkcs12(bags: &[Vec<u8>]) -> Vec<u8> {
    let data = |content: &[u8]| {
        let mut info = OID_DATA.to_vec();
        info.extend(tlv(EXPLICIT_0, &tlv(OCTET_STRING, content)));
        tlv(SEQUENCE, &info)
    };
    let safe_contents = tlv(SEQUENCE, &bags.concat());
    let auth_safe = tlv(SEQUENCE, &data(&safe_contents));
    let mut pfx = vec![0x02, 0x01, 0x03];
    pfx.extend(data(&auth_safe));
    tlv(SEQUENCE, &pfx)
}
