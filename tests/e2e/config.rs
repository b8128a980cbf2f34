//! Configuration end to end: check-config, refusing to start, reload with a bad file.

use std::process::Command;

use anyhow::Result;
use certvakt_testkit::harness::{self, eventually};
use certvakt_testkit::{CaShape, LeafSpec, TestCa};

use crate::common::{Sample, WAIT, bins, list_ids, stderr, stdout};

const BAD: &str = r#"[daemon]
state_dir = "var/lib/certvakt"
warn_before = "30x"

[control]
read_grop = "certvakt"

[metrics]
listen = "localhost:9617"

[[certificate]]
id = "fmk-prod"
cert = "/etc/certvakt/fmk/cert.pem"
"#;

#[test]
fn check_config_prints_every_problem_with_file_line_and_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("certvakt.toml");
    std::fs::write(&path, BAD)?;
    let bins = bins()?;
    for (bin, args) in [
        (&bins.certvaktd, vec!["check-config", "--config"]),
        (&bins.certvakt, vec!["--config", "PATH", "check-config"]),
    ] {
        let mut cmd = Command::new(bin);
        for a in &args {
            if *a == "PATH" {
                cmd.arg(&path);
            } else {
                cmd.arg(a);
            }
        }
        if args.last() == Some(&"--config") {
            cmd.arg(&path);
        }
        let out = cmd.output()?;
        assert_eq!(out.status.code(), Some(6), "{}", bin.display());
        let err = stderr(&out);
        let file = path.display().to_string();
        for expected in [
            format!("{file}:2: daemon.state_dir:"),
            format!("{file}:3: daemon.warn_before:"),
            format!("{file}:6: control.read_grop: unknown key"),
            format!("{file}:9: metrics.listen:"),
            format!("{file}:11: certificate[0].plugin:"),
        ] {
            assert!(
                err.contains(&expected),
                "{} lacks {expected:?}:\n{err}",
                bin.display()
            );
        }
        assert!(err.contains("did you mean \"read_group\"?"), "{err}");
        assert!(err.matches("hint:").count() >= 5, "{err}");
    }
    Ok(())
}

#[test]
fn the_daemon_refuses_to_start_on_an_invalid_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("certvakt.toml");
    std::fs::write(&path, BAD)?;
    let out = Command::new(bins()?.certvaktd)
        .arg("--config")
        .arg(&path)
        .output()?;
    assert_eq!(out.status.code(), Some(6));
    let err = stderr(&out);
    assert!(err.contains("refusing to start"), "{err}");
    assert!(err.contains("daemon.state_dir"), "{err}");
    Ok(())
}

#[test]
fn the_shipped_configuration_is_valid() -> Result<()> {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/certvakt.toml");
    let out = Command::new(bins()?.certvaktd)
        .args(["check-config", "--config", shipped])
        .output()?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("ok:"), "{}", stdout(&out));
    Ok(())
}

#[test]
fn an_invalid_reload_keeps_the_running_configuration_and_a_valid_one_applies() -> Result<()> {
    let s = Sample::start()?;
    let before = list_ids(&s.daemon)?;

    // SIGHUP with a broken drop-in: refused, reported, nothing changes.
    let conf_d = s.path().join("conf.d");
    std::fs::create_dir_all(&conf_d)?;
    let drop_in = conf_d.join("90-metrics.toml");
    std::fs::write(&drop_in, "[metrics]\nlisten = \"nonsense\"\n")?;
    s.daemon.signal("HUP")?;
    let error = eventually(WAIT, "status to report the refused reload", || {
        let (_, status) = s.daemon.status().ok()?;
        status.last_reload_error
    })?;
    assert!(error.contains("running configuration stays"), "{error}");
    assert_eq!(list_ids(&s.daemon)?, before);
    let (_, text) = harness::http_get(&s.daemon.metrics_addr()?, "/metrics")?;
    assert!(
        text.contains("certvakt_config_last_reload_successful 0"),
        "{text}"
    );

    // The same over the control socket: exit 6 with the problem, file and line.
    let out = s.daemon.cli(&["reload"])?;
    assert_eq!(out.status.code(), Some(6));
    let err = stderr(&out);
    let place = format!("{}:2: metrics.listen", drop_in.display());
    assert!(err.contains(&place), "{err}");
    std::fs::remove_file(&drop_in)?;

    // A valid drop-in that watches one more certificate: applied, and the new file is found.
    let extra_dir = s.path().join("extra");
    std::fs::create_dir_all(&extra_dir)?;
    let ca = TestCa::root_only(CaShape::Tls)?;
    let leaf = ca.issue(&LeafSpec::tls_server(&["extra.apotek-test.example"]))?;
    let extra = extra_dir.join("extra.pem");
    std::fs::write(&extra, &leaf.cert_pem)?;
    std::fs::write(
        conf_d.join("50-extra.toml"),
        format!("[[watch]]\npaths = [{:?}]\n", extra.display().to_string()),
    )?;
    let out = s.daemon.cli(&["reload"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ids = list_ids(&s.daemon)?;
    assert!(ids.contains(&extra.display().to_string()), "{ids:?}");
    let (_, status) = s.daemon.status()?;
    assert_eq!(status.last_reload_error, None, "{status:#?}");
    Ok(())
}

#[test]
fn check_config_names_a_plugin_that_is_not_installed_and_a_missing_plugin_dir() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bins = bins()?;
    let plugins = dir.path().join("plugins");
    certvakt_testkit::harness::install_plugins(&bins, &plugins, &["certvakt-plugin-manual"])?;
    let body = r#"
[[certificate]]
id = "web"
cert = "/etc/ssl/web.pem"
key = "/etc/ssl/web.key"
plugin = "manaul"
[certificate.settings]
ca_name = "the web CA"
"#;
    let path = dir.path().join("certvakt.toml");
    std::fs::write(
        &path,
        certvakt_testkit::harness::config_toml(dir.path(), "127.0.0.1:0", body),
    )?;
    let check = || {
        Command::new(&bins.certvaktd)
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
    };
    let out = check()?;
    assert_eq!(out.status.code(), Some(6), "{}", stdout(&out));
    let err = stderr(&out);
    let line = std::fs::read_to_string(&path)?
        .lines()
        .position(|l| l.starts_with("plugin = \"manaul\""))
        .map(|i| i + 1)
        .unwrap_or_default();
    assert!(
        err.contains(&format!(
            "{}:{line}: certificate[0].plugin: plugin \"manaul\" is not installed",
            path.display()
        )),
        "{err}"
    );
    assert!(err.contains("did you mean \"manual\"?"), "{err}");

    // The plugin folder itself missing: said once, for plugin_dir.
    std::fs::remove_dir_all(&plugins)?;
    let out = check()?;
    assert_eq!(out.status.code(), Some(6));
    let err = stderr(&out);
    assert!(
        err.contains("daemon.plugin_dir:") && err.contains("does not exist"),
        "{err}"
    );
    Ok(())
}

#[test]
fn check_config_names_a_first_issue_the_plugin_will_refuse() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bins = bins()?;
    let plugins = dir.path().join("plugins");
    certvakt_testkit::harness::install_plugins(&bins, &plugins, &["certvakt-plugin-manual"])?;
    // The manual plugin's old documented minimum, for a certificate that does not exist yet:
    // its first step would stop at "configure subject or sans".
    let cert = dir.path().join("web.pem");
    let minimum = format!(
        "[[certificate]]\nid = \"web\"\ncert = \"{}\"\nplugin = \"manual\"\n\
         [certificate.settings]\nca_name = \"the web CA\"\n",
        cert.display()
    );
    let path = dir.path().join("certvakt.toml");
    let write = |body: &str| {
        std::fs::write(
            &path,
            certvakt_testkit::harness::config_toml(dir.path(), "127.0.0.1:0", body),
        )
    };
    let check = || {
        Command::new(&bins.certvaktd)
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
    };
    write(&minimum)?;
    let out = check()?;
    assert_eq!(out.status.code(), Some(6), "{}", stdout(&out));
    let err = stderr(&out);
    let line = std::fs::read_to_string(&path)?
        .lines()
        .position(|l| l == "[certificate.settings]")
        .map(|i| i + 1)
        .unwrap_or_default();
    assert!(
        err.contains(&format!(
            "{}:{line}: certificate[0].settings: plugin manual will refuse the first issue of certificate web",
            path.display()
        )),
        "{err}"
    );
    assert!(err.contains("subject or sans"), "{err}");

    // With the names the README's minimum now has, the first issue can go ahead.
    write(&format!("{minimum}sans = [\"DNS:web.example\"]\n"))?;
    let out = check()?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // A certificate already in use is renewed like for like: no subject or sans needed.
    write(&minimum)?;
    let ca = TestCa::root_only(CaShape::Tls)?;
    let leaf = ca.issue(&LeafSpec::tls_server(&["web.example"]))?;
    std::fs::write(&cert, &leaf.cert_pem)?;
    let out = check()?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    Ok(())
}

#[test]
fn a_reload_that_adds_a_first_issue_its_plugin_will_refuse_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bins = bins()?;
    certvakt_testkit::harness::install_plugins(
        &bins,
        &dir.path().join("plugins"),
        &["certvakt-plugin-manual"],
    )?;
    let path = dir.path().join("certvakt.toml");
    let write = |body: &str| {
        std::fs::write(
            &path,
            certvakt_testkit::harness::config_toml(dir.path(), "127.0.0.1:0", body),
        )
    };
    write("")?;
    let daemon = harness::Daemon::start(&bins, &path, &[])?;
    let minimum = format!(
        "[[certificate]]\nid = \"web\"\ncert = \"{}\"\nplugin = \"manual\"\n\
         [certificate.settings]\nca_name = \"the web CA\"\n",
        dir.path().join("web.pem").display()
    );
    // A reload is refused as check-config refuses: the running configuration stays.
    write(&minimum)?;
    let out = daemon.cli(&["reload"])?;
    assert_eq!(out.status.code(), Some(6), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "certificate[0].settings: plugin manual will refuse the first issue of certificate web"
        ),
        "{err}"
    );
    assert!(list_ids(&daemon)?.is_empty());
    assert!(
        daemon.status()?.1.renewals.is_empty(),
        "web is not taken on"
    );

    // With sans, the reload applies and the first issue's order task opens.
    write(&format!("{minimum}sans = [\"DNS:web.example\"]\n"))?;
    let out = daemon.cli(&["reload"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    eventually(WAIT, "the order task", || {
        daemon.tasks().ok()?.into_iter().next()
    })?;
    Ok(())
}
