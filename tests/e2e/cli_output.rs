//! What `certvakt` prints for people, pipes and monitors, through the real CLI against the real
//! daemon: the verdict line of `status` and its exit code, `list` through a pipe keeping whole
//! ids, `list`'s filters and order, and the versioned JSON with the identity as fields, checked
//! against the example docs/cli.md documents.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use certvakt_testkit::harness::{Daemon, config_toml};
use certvakt_testkit::{CaShape, LeafSpec, TestCa};
use serde_json::Value;

use crate::common::{bins, stderr, stdout};

const CVR: &str = "25450442";
const UUID: &str = "3f0f4a52-7d0e-4c55-9a57-1c3e2b8d9a10";

/// A daemon watching one folder: an OCES3 certificate with a long file name (an id longer
/// than the 40 characters tables used to cut at), and a TLS certificate expiring in 5 days.
struct Watching {
    _dir: tempfile::TempDir,
    daemon: Daemon,
    long_id: String,
    expiring_id: String,
}

fn start() -> Result<Watching> {
    let dir = tempfile::Builder::new()
        .prefix("certvakt-e2e-cli.")
        .tempdir()?;
    let watched = dir.path().join("watched");
    std::fs::create_dir_all(&watched)?;
    std::fs::create_dir_all(dir.path().join("plugins"))?;
    let oces = TestCa::new(CaShape::Oces3)?.issue(&LeafSpec::oces3(
        CVR,
        UUID,
        "Apotek Nord receptserver",
    ))?;
    let long = watched.join("apotek-nord-receptserver-region-hovedstaden-produktion-2027.pem");
    std::fs::write(&long, &oces.cert_pem)?;
    let tls = TestCa::new(CaShape::Tls)?
        .issue(&LeafSpec::tls_server(&["web.apotek.example"]).expires_in_days(5))?;
    let web = watched.join("web.pem");
    std::fs::write(&web, &tls.cert_pem)?;

    let body = format!("[[watch]]\npaths = [\"{}/*.pem\"]\n", watched.display());
    let config = dir.path().join("certvakt.toml");
    std::fs::write(&config, config_toml(dir.path(), "127.0.0.1:0", &body))?;
    let daemon = Daemon::start(&bins()?, &config, &[])?;
    Ok(Watching {
        long_id: long.display().to_string(),
        expiring_id: web.display().to_string(),
        _dir: dir,
        daemon,
    })
}

fn lines_of(daemon: &Daemon, args: &[&str]) -> Result<(i32, Vec<String>)> {
    let out = daemon.cli(args)?;
    let code = out.status.code().unwrap_or(-1);
    ensure!(
        stderr(&out).is_empty(),
        "certvakt {args:?}: {}",
        stderr(&out)
    );
    Ok((code, stdout(&out).lines().map(str::to_owned).collect()))
}

/// The ids of a `list` table: the first column of every line after the header.
fn table_ids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .skip(1)
        .filter_map(|l| l.split("  ").next().map(str::to_owned))
        .collect()
}

#[test]
fn status_starts_with_a_verdict_a_monitor_can_read() -> Result<()> {
    let w = start()?;
    let (code, lines) = lines_of(&w.daemon, &["status"])?;
    let first = lines.first().context("status printed nothing")?;
    ensure!(
        code == 1,
        "one certificate expires in 5 days: exit 1, not {code}\n{lines:#?}"
    );
    ensure!(
        first.starts_with(&format!("WARNING: 1 expiring ({}) | ", w.expiring_id)),
        "{first}"
    );
    let (_, perf) = first.split_once(" | ").context("performance data")?;
    let perf: Vec<(&str, &str)> = perf
        .split(' ')
        .map(|pair| pair.split_once('=').context("label=value"))
        .collect::<Result<_>>()?;
    for (label, value) in [
        ("certificates", "2"),
        ("ok", "1"),
        ("expiring", "1"),
        ("expired", "0"),
        ("not_yet_valid", "0"),
        ("problems", "0"),
        ("first_issues", "0"),
        ("tasks", "0"),
        ("failing_renewals", "0"),
    ] {
        ensure!(
            perf.contains(&(label, value)),
            "{label}={value} missing in {first}"
        );
    }
    // The details follow as before.
    ensure!(
        lines
            .iter()
            .any(|l| l.starts_with("  health:       WARNING:")),
        "{lines:#?}"
    );
    Ok(())
}

#[test]
fn list_keeps_whole_ids_through_a_pipe_and_filters() -> Result<()> {
    let w = start()?;
    // The CLI's stdout is a pipe here: nothing is cut.
    let (code, lines) = lines_of(&w.daemon, &["list"])?;
    ensure!(code == 0, "list exited {code}");
    ensure!(!lines.iter().any(|l| l.contains('…')), "{lines:#?}");
    let ids = table_ids(&lines);
    ensure!(
        ids.contains(&w.long_id),
        "{} not whole in {lines:#?}",
        w.long_id
    );
    ensure!(
        lines
            .iter()
            .any(|l| l.contains(&format!("DK CVR {CVR} UUID {UUID}"))),
        "the identity with its whole UUID: {lines:#?}"
    );
    // The id printed is one `show` accepts.
    let out = w.daemon.cli(&["show", &w.long_id])?;
    ensure!(out.status.success(), "show {}: {}", w.long_id, stderr(&out));

    let (_, lines) = lines_of(&w.daemon, &["list", "--expiring"])?;
    ensure!(table_ids(&lines) == [w.expiring_id.clone()], "{lines:#?}");
    let (_, lines) = lines_of(&w.daemon, &["list", "*/apotek-*"])?;
    ensure!(table_ids(&lines) == [w.long_id.clone()], "{lines:#?}");
    let (_, lines) = lines_of(&w.daemon, &["list", "--source", "managed"])?;
    ensure!(lines == ["no certificates found"], "{lines:#?}");
    let (_, lines) = lines_of(&w.daemon, &["list", "--plugin", "manual"])?;
    ensure!(lines == ["no certificates found"], "{lines:#?}");
    let (_, lines) = lines_of(
        &w.daemon,
        &["list", "--source", "watched", "--sort", "expiry"],
    )?;
    ensure!(
        table_ids(&lines) == [w.expiring_id.clone(), w.long_id.clone()],
        "{lines:#?}"
    );
    let out = w.daemon.cli(&["list", "--sort", "size"])?;
    ensure!(
        out.status.code() == Some(64),
        "an unknown sort key is a usage error"
    );
    Ok(())
}

#[test]
fn list_json_is_versioned_filtered_and_has_the_identity_as_fields() -> Result<()> {
    let w = start()?;
    let (code, json) = w.daemon.cli_json(&["list", "--sort", "id"])?;
    ensure!(code == 0, "exit {code}");
    ensure!(json["schema"] == "certvakt.list/1", "{json:#}");
    let items = json["items"].as_array().context("items")?;
    ensure!(items.len() == 2, "{json:#}");
    let oces = items
        .iter()
        .find(|i| i["id"] == w.long_id.as_str())
        .context("the OCES3 certificate")?;
    ensure!(
        oces["identity_fields"]
            == serde_json::json!({
                "kind": "dk_oces3",
                "country": "DK",
                "number": CVR,
                "uuid": UUID,
                "label": format!("DK CVR {CVR} UUID {UUID}"),
            }),
        "{oces:#}"
    );
    ensure!(oces["identity"] == format!("DK CVR {CVR} UUID {UUID}"));

    let (_, expiring) = w.daemon.cli_json(&["list", "--expiring"])?;
    let ids: Vec<&Value> = expiring["items"]
        .as_array()
        .context("items")?
        .iter()
        .map(|i| &i["id"])
        .collect();
    ensure!(
        ids == [&Value::from(w.expiring_id.as_str())],
        "{expiring:#}"
    );

    // docs/cli.md's example has exactly the keys the CLI prints for such a certificate.
    let (_, documented) = w.daemon.cli_json(&["list", "*/apotek-*"])?;
    let example = readme_example("certvakt.list/1")?;
    ensure!(
        key_paths(&example) == key_paths(&documented),
        "the example in docs/cli.md and the CLI differ:\nonly in docs/cli.md: {:?}\nonly in the CLI: {:?}",
        key_paths(&example)
            .difference(&key_paths(&documented))
            .collect::<Vec<_>>(),
        key_paths(&documented)
            .difference(&key_paths(&example))
            .collect::<Vec<_>>()
    );

    let (code, status) = w.daemon.cli_json(&["status"])?;
    ensure!(
        code == 1 && status["schema"] == "certvakt.status/2",
        "{status:#}"
    );
    ensure!(status["counts"]["first_issues"] == 0 && status["counts"]["staged"] == 0);
    let (code, show) = w.daemon.cli_json(&["show", &w.long_id])?;
    ensure!(code == 0 && show["schema"] == "certvakt.show/1", "{show:#}");
    ensure!(
        show["entries"][0]["identity_fields"][0]["uuid"] == UUID,
        "{show:#}"
    );
    Ok(())
}

/// The JSON block after `<!-- json-example: SCHEMA -->` in docs/cli.md.
fn readme_example(schema: &str) -> Result<Value> {
    let readme = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/cli.md");
    let text = std::fs::read_to_string(&readme)?;
    let marker = format!("<!-- json-example: {schema} -->");
    let after = text
        .split_once(&marker)
        .with_context(|| format!("{} has no {marker}", readme.display()))?
        .1;
    let block = after
        .split_once("```json\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .with_context(|| format!("no ```json block after {marker}"))?
        .0;
    serde_json::from_str(block).with_context(|| format!("the example after {marker}"))
}

/// Every key path in `value` (`items[].identity_fields.kind`), arrays merged.
fn key_paths(value: &Value) -> BTreeSet<String> {
    fn walk(value: &Value, at: &str, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    let path = if at.is_empty() {
                        key.clone()
                    } else {
                        format!("{at}.{key}")
                    };
                    out.insert(path.clone());
                    walk(inner, &path, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, &format!("{at}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(value, "", &mut out);
    out
}
