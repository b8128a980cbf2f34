//! The daemon as a certificate monitor: status, list, show, exit codes, metrics.

use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};
use certvakt::control::protocol::{Health, KeyCheck, NordicIdentity};
use certvakt_testkit::harness;

use crate::common::{Sample, bins, list_ids, problems, stderr, stdout};

#[test]
fn status_list_and_show_report_every_sample_file_as_the_manifest_expects() -> Result<()> {
    let s = Sample::start()?;
    let (code, status) = s.daemon.status()?;
    assert_eq!(status.health, Health::Critical, "{status:#?}");
    assert_eq!(code, 2, "status exits 2 (critical) when something expired");

    let items = s.daemon.list()?;
    let state_of = |id: &str| {
        items
            .iter()
            .find(|i| i.id == id)
            .map(|i| i.state.as_str().to_owned())
    };
    let found = problems(&s.daemon)?;
    let watched = s.watched();
    let mut checked = 0;
    for file in &s.manifest.files {
        if !file.path.starts_with(&watched) || file.expect.is_empty() {
            continue;
        }
        let id = file.path.display().to_string();
        if file.kind == "broken" {
            assert!(
                found
                    .iter()
                    .any(|(pid, kind)| *pid == id && kind.as_str() == file.expect),
                "{id}: expected problem {} in {found:?}",
                file.expect
            );
        } else {
            assert_eq!(state_of(&id).as_deref(), Some(file.expect.as_str()), "{id}");
            for index in 1..file.certificates {
                assert!(
                    state_of(&format!("{id}#{index}")).is_some(),
                    "{id}#{index} missing"
                );
            }
        }
        checked += 1;
    }
    ensure!(
        checked >= 8,
        "the sample set should exercise many files, checked {checked}"
    );
    for managed in &s.manifest.managed {
        assert_eq!(
            state_of(&managed.id).as_deref(),
            Some("ok"),
            "{}",
            managed.id
        );
    }
    let counts = &status.counts;
    assert_eq!(counts.problems, found.len());
    assert!(counts.expired >= 1);
    assert!(counts.expiring >= 1);
    Ok(())
}

#[test]
fn show_names_the_nordic_identity_and_exits_by_that_certificates_health() -> Result<()> {
    let s = Sample::start()?;
    let (code, shown) = s.daemon.show("dk-fmk")?;
    assert_eq!(code, 0, "{shown:#?}");
    let first = shown.entries.first().context("an entry")?;
    assert_eq!(first.id, "dk-fmk");
    assert_eq!(first.key_check, KeyCheck::Matches);
    let Some(NordicIdentity::DkOces3 { cvr, uuid }) = first.cert.identities.first() else {
        anyhow::bail!("dk-fmk carries no OCES3 identity: {first:#?}");
    };
    assert!(
        cvr.len() == 8 && cvr.bytes().all(|b| b.is_ascii_digit()),
        "{cvr}"
    );
    assert!(uuid.as_ref().is_some_and(|u| u.len() == 36), "{uuid:?}");

    let human = s.daemon.cli(&["show", "dk-fmk"])?;
    let text = stdout(&human);
    assert!(text.contains(&format!("DK CVR {cvr}")), "{text}");
    assert!(text.contains("key check:"), "{text}");

    let by_state = |expect: &str| {
        s.manifest
            .files
            .iter()
            .find(|f| f.expect == expect && f.kind != "broken" && f.path.starts_with(s.watched()))
            .map(|f| f.path.display().to_string())
    };
    let expiring = by_state("expiring").context("an expiring sample")?;
    let expired = by_state("expired").context("an expired sample")?;
    assert_eq!(s.daemon.cli(&["show", &expiring])?.status.code(), Some(1));
    assert_eq!(s.daemon.cli(&["show", &expired])?.status.code(), Some(2));

    let unknown = s.daemon.cli(&["show", "no-such-id"])?;
    assert_eq!(unknown.status.code(), Some(5));
    assert!(
        stderr(&unknown).contains("no-such-id"),
        "{}",
        stderr(&unknown)
    );
    Ok(())
}

#[test]
fn human_list_is_a_table_with_identities() -> Result<()> {
    let s = Sample::start()?;
    let out = s.daemon.cli(&["list"])?;
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let header = text.lines().next().unwrap_or_default();
    for column in ["ID", "KIND", "STATE", "EXPIRES", "LEFT", "IDENTITY", "NAME"] {
        assert!(header.contains(column), "{header}");
    }
    for id in ["dk-fmk", "se-efrikort", "fi-kanta", "no-nhn"] {
        assert!(
            text.lines().any(|l| l.starts_with(id)),
            "{id} not in\n{text}"
        );
    }
    for identity in ["DK CVR", "SE HSA-ID", "NO org", "FI Y-tunnus"] {
        assert!(text.contains(identity), "{identity} not in\n{text}");
    }
    assert_eq!(list_ids(&s.daemon)?.len(), text.lines().count() - 1);
    Ok(())
}

fn promtool_check(text: &str) -> Result<()> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("promtool is not installed: run scripts/test, which installs it (Debian package prometheus)")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    Ok(())
}

fn sample_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            if !rest.is_empty() && !rest.starts_with('{') {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse().ok())?
        })
}

#[test]
fn metrics_pass_promtool_and_carry_each_certificate() -> Result<()> {
    let s = Sample::start()?;
    let addr = s.daemon.metrics_addr()?;
    let (code, text) = harness::http_get(&addr, "/metrics")?;
    assert_eq!(code, 200);
    ensure!(
        text.contains("# TYPE certvakt_"),
        "no certvakt metrics:\n{text}"
    );
    promtool_check(&text)?;

    let (_, shown) = s.daemon.show("dk-fmk")?;
    let not_after = shown.entries.first().context("an entry")?.cert.not_after as f64;
    let fmk = [
        ("id", "dk-fmk"),
        ("source", "managed"),
        ("plugin", "dk-fmk"),
    ];
    assert_eq!(
        sample_value(
            &text,
            "certvakt_certificate_not_after_timestamp_seconds",
            &fmk
        ),
        Some(not_after)
    );
    assert_eq!(
        sample_value(&text, "certvakt_certificate_expired", &fmk),
        Some(0.0)
    );
    assert_eq!(
        sample_value(&text, "certvakt_certificate_key_matches", &fmk),
        Some(1.0)
    );
    let left =
        sample_value(&text, "certvakt_certificate_expiry_seconds", &fmk).context("expiry")?;
    let now = certvakt::now_unix() as f64;
    assert!(
        (left - (not_after - now)).abs() < 60.0,
        "expiry_seconds {left} vs {}",
        not_after - now
    );

    let expired = s
        .manifest
        .files
        .iter()
        .find(|f| f.expect == "expired" && f.path.starts_with(s.watched()))
        .context("an expired sample")?;
    let id = expired.path.display().to_string();
    assert_eq!(
        sample_value(
            &text,
            "certvakt_certificate_expired",
            &[("id", &id), ("source", "watched")]
        ),
        Some(1.0)
    );
    let broken = s
        .manifest
        .files
        .iter()
        .find(|f| f.kind == "broken" && f.path.starts_with(s.watched()))
        .context("a broken sample")?;
    let id = broken.path.display().to_string();
    assert_eq!(
        sample_value(
            &text,
            "certvakt_source_problem",
            &[("id", &id), ("problem", &broken.expect)]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample_value(
            &text,
            "certvakt_build_info",
            &[("version", certvakt::VERSION)]
        ),
        Some(1.0)
    );
    // Serial numbers (and CNs) name certificates on the one info series only.
    ensure!(
        text.lines()
            .filter(|l| l.contains("serial"))
            .all(|l| l.starts_with("certvakt_certificate_info{") || l.starts_with('#')),
        "serial numbers outside certvakt_certificate_info:\n{text}"
    );

    let (code, _) = harness::http_get(&addr, "/nope")?;
    assert_eq!(code, 404);
    Ok(())
}

#[test]
fn the_demo_runs_once_and_stops_cleanly() -> Result<()> {
    let bins = bins()?;
    let demo = bins.certvakt.with_file_name("certvakt-demo");
    let out = Command::new(&demo)
        .args(["--once", "--listen", "127.0.0.1:0"])
        .output()
        .with_context(|| format!("running {}", demo.display()))?;
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("certvakt demo: certvaktd"), "{text}");
    assert!(text.contains("operator: task fmk-demo-"), "{text}");
    assert!(
        text.contains("renewed in MitID Erhverv, the .p12 imported"),
        "{text}"
    );
    // The FMK renewal kept the UUID: FMK was asked, nothing was created.
    assert!(text.contains("CreateFocesWhitelisting x0"), "{text}");
    assert!(
        text.contains("the renewal kept the UUID, so nothing was created"),
        "{text}"
    );
    assert!(
        text.contains("all six certificates were issued and installed"),
        "{text}"
    );
    // The Norwegian set: ordered by the operator, written to AR once, read back.
    assert!(text.contains("operator: task nhn-demo-"), "{text}");
    assert!(text.contains("UpdateOrganizationDetails x1"), "{text}");
    assert!(
        text.contains("E_DS now: ldap://ldap.test4.buypass.no/"),
        "{text}"
    );
    // The Swedish certificate, proven against eFrikort; the Finnish one's revocation seen.
    assert!(text.contains("operator: task efrikort-demo-"), "{text}");
    assert!(text.contains("eFrikort saw:"), "{text}");
    assert!(text.contains("operator: task kanta-demo-"), "{text}");
    assert!(
        text.contains("revocation requested in DVV's e-service"),
        "{text}"
    );
    assert!(text.contains("/metrics answered HTTP 200"), "{text}");
    assert!(text.contains("health:"), "{text}");
    // web-demo's service was probed after its install and served the new certificate.
    assert!(
        text.contains("verified deploy: web-demo's service at 127.0.0.1:"),
        "{text}"
    );
    // The status table printed once everything was issued lists the ACME certificate too.
    assert!(text.contains("shop-web"), "{text}");
    Ok(())
}
