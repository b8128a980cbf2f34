//! [`super::load`] end to end, on real files in a temporary folder.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// A temporary `/etc/certvakt`: the main file and its `conf.d`.
pub(super) struct Dir {
    pub(super) dir: tempfile::TempDir,
}

impl Dir {
    pub(super) fn new() -> Dir {
        match tempfile::tempdir() {
            Ok(dir) => Dir { dir },
            Err(e) => panic!("tempdir: {e}"),
        }
    }

    pub(super) fn main(&self) -> PathBuf {
        self.dir.path().join("certvakt.toml")
    }

    pub(super) fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(relative);
        let parent = path.parent().unwrap_or(self.dir.path());
        if let Err(e) = fs::create_dir_all(parent) {
            panic!("mkdir {}: {e}", parent.display());
        }
        if let Err(e) = fs::write(&path, text) {
            panic!("write {}: {e}", path.display());
        }
        path
    }

    pub(super) fn load_ok(&self) -> Config {
        match load(&self.main()) {
            Ok(config) => config,
            Err(problems) => panic!("unexpected problems:\n{}", render(&problems)),
        }
    }

    pub(super) fn load_err(&self) -> Vec<Problem> {
        match load(&self.main()) {
            Ok(config) => panic!("expected problems, got {config:?}"),
            Err(problems) => problems,
        }
    }
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `(key, line)` of every problem, to compare in one assertion.
pub(super) fn places(problems: &[Problem]) -> Vec<(&str, Option<usize>)> {
    problems.iter().map(|p| (p.key.as_str(), p.line)).collect()
}

pub(super) fn find<'p>(problems: &'p [Problem], key: &str) -> &'p Problem {
    match problems.iter().find(|p| p.key == key) {
        Some(p) => p,
        None => panic!("no problem for {key} in:\n{}", render(problems)),
    }
}

const FULL: &str = r#"# every key certvakt knows
[daemon]
state_dir = "/srv/certvakt/state"
plugin_dir = "/opt/certvakt/plugins"
warn_before = "1d12h"
log_level = "debug"
max_file_size = 2097152

[control]
socket = "/run/cv/control.sock"
admin_group = "pki-admin"
read_group = "pki"

[metrics]
listen = "[::1]:9700"

[[watch]]
paths = [
    "/etc/ssl/private/*.pem",
    "/srv/fmk/keystore.p12",
]
pkcs12_password_file = "/etc/certvakt/secrets/keystore.pass"

[[certificate]]
id = "fmk-prod"
cert = "/etc/certvakt/fmk/cert.pem"
key = "/etc/certvakt/fmk/key.pem"
plugin = "dk-fmk"

[[certificate]]
id = "kanta.server"
cert = "/etc/certvakt/kanta/server.p12"
plugin = "fi-kanta"
pkcs12_password_file = "/etc/certvakt/secrets/kanta.pass"
"#;

#[test]
fn full_file_loads_every_value() {
    let dir = Dir::new();
    let main = dir.write("certvakt.toml", FULL);
    let config = dir.load_ok();

    assert_eq!(config.files, vec![main.clone()]);
    assert_eq!(config.daemon.state_dir, Path::new("/srv/certvakt/state"));
    assert_eq!(config.daemon.plugin_dir, Path::new("/opt/certvakt/plugins"));
    assert_eq!(config.daemon.warn_before.as_secs(), 36 * 3600);
    assert_eq!(config.daemon.log_level, log::LevelFilter::Debug);
    assert_eq!(config.daemon.max_file_size, 2 * 1024 * 1024);
    assert_eq!(config.control.socket, Path::new("/run/cv/control.sock"));
    assert_eq!(config.control.admin_group, "pki-admin");
    assert_eq!(config.control.read_group, "pki");
    assert_eq!(
        config.metrics.listen,
        "[::1]:9700".parse::<SocketAddr>().ok()
    );

    assert_eq!(
        config.watch,
        vec![Watch {
            paths: vec![
                "/etc/ssl/private/*.pem".into(),
                "/srv/fmk/keystore.p12".into()
            ],
            pkcs12_password_file: Some("/etc/certvakt/secrets/keystore.pass".into()),
            origin: Origin {
                file: main.clone(),
                line: 17
            },
        }]
    );
    assert_eq!(
        config.certificates,
        vec![
            ManagedCertificate {
                id: "fmk-prod".into(),
                cert: "/etc/certvakt/fmk/cert.pem".into(),
                key: Some("/etc/certvakt/fmk/key.pem".into()),
                plugin: "dk-fmk".into(),
                pkcs12_password_file: None,
                origin: Origin {
                    file: main.clone(),
                    line: 24
                },
                renewal: Default::default(),
            },
            ManagedCertificate {
                id: "kanta.server".into(),
                cert: "/etc/certvakt/kanta/server.p12".into(),
                key: None,
                plugin: "fi-kanta".into(),
                pkcs12_password_file: Some("/etc/certvakt/secrets/kanta.pass".into()),
                origin: Origin {
                    file: main.clone(),
                    line: 30
                },
                renewal: Default::default(),
            },
        ]
    );

    let line = |key: &str| config.key_origins.get(key).map(|o| o.line);
    assert_eq!(line("daemon.state_dir"), Some(3));
    assert_eq!(line("metrics.listen"), Some(15));
    assert_eq!(line("watch[0].paths[1]"), Some(20));
    assert_eq!(line("certificate[1].plugin"), Some(33));
    assert_eq!(
        config.summary(),
        "1 file(s) read; 2 managed certificate(s), 2 watch pattern(s); \
         socket /run/cv/control.sock; metrics [::1]:9700"
    );
}

#[test]
fn missing_sections_take_the_defaults() {
    let dir = Dir::new();
    let main = dir.write("certvakt.toml", "# nothing configured yet\n");
    let config = dir.load_ok();
    let mut expected = Config::defaults();
    expected.files = vec![main];
    assert_eq!(config, expected);

    // A section with some keys keeps the defaults of the others.
    dir.write(
        "certvakt.toml",
        "[daemon]\nlog_level = \"warn\"\n[control]\n",
    );
    let config = dir.load_ok();
    assert_eq!(config.daemon.log_level, log::LevelFilter::Warn);
    assert_eq!(config.daemon.state_dir, Path::new("/var/lib/certvakt"));
    assert_eq!(
        config.daemon.warn_before.0,
        Duration::from_secs(30 * 86_400)
    );
    assert_eq!(config.daemon.max_file_size, 1024 * 1024);
    assert_eq!(
        config.control.socket,
        Path::new("/run/certvakt/control.sock")
    );
    assert_eq!(
        config.metrics.listen,
        "127.0.0.1:9617".parse::<SocketAddr>().ok()
    );
}

#[test]
fn every_problem_of_one_file_is_reported_with_its_line() {
    let dir = Dir::new();
    let main = dir.write(
        "certvakt.toml",
        r#"[daemon]
state_dir = "var/lib/certvakt"

[control]
read_grop = "certvakt"

[[watch]]
paths = "/etc/ssl/private/*.pem"

[[certificate]]
id = "fmk-prod"
cert = "/etc/certvakt/fmk/cert.pem"
plugin = "dk-fmk"

[[certificate]]
id = "fmk-prod"
cert = "/etc/certvakt/fmk/other.pem"
plugin = "dk-fmk"
"#,
    );
    let problems = dir.load_err();
    assert_eq!(
        places(&problems),
        [
            ("daemon.state_dir", Some(2)),
            ("control.read_grop", Some(5)),
            ("watch[0].paths", Some(8)),
            ("certificate[1].id", Some(16)),
        ],
        "{}",
        render(&problems)
    );
    assert!(problems.iter().all(|p| p.file == main));

    let relative = find(&problems, "daemon.state_dir");
    assert_eq!(
        relative.message,
        "\"var/lib/certvakt\" is not an absolute path"
    );
    assert!(
        relative
            .hint
            .starts_with("write an absolute path, e.g. \"/var/lib/certvakt\"")
    );

    let unknown = find(&problems, "control.read_grop");
    assert_eq!(unknown.message, "unknown key \"read_grop\" in [control]");

    let wrong_type = find(&problems, "watch[0].paths");
    assert_eq!(
        wrong_type.message,
        "must be a list of strings, not a string"
    );
    assert_eq!(
        wrong_type.hint,
        "write a list, even for one entry: paths = [\"/etc/ssl/private/*.pem\"]"
    );

    let duplicate = find(&problems, "certificate[1].id");
    assert_eq!(
        duplicate.message,
        format!(
            "duplicate id \"fmk-prod\": also defined at {}:11 (certificate[0])",
            main.display()
        )
    );
}

#[test]
fn unknown_keys_suggest_the_closest_valid_key() {
    let dir = Dir::new();
    dir.write(
        "certvakt.toml",
        "[control]\nread_grop = \"certvakt\"\n\n[deamon]\n\n[metrics]\nport = 9617\n\n\
         [[certificate]]\nid = \"a\"\ncert = \"/a.pem\"\nplugin = \"acme\"\nplugn = \"x\"\n",
    );
    let problems = dir.load_err();
    assert_eq!(
        places(&problems),
        [
            ("control.read_grop", Some(2)),
            ("deamon", Some(4)),
            ("metrics.port", Some(7)),
            ("certificate[0].plugn", Some(13)),
        ],
        "{}",
        render(&problems)
    );
    assert_eq!(
        find(&problems, "control.read_grop").hint,
        "did you mean \"read_group\"? Valid keys in [control]: socket, admin_group, read_group"
    );
    assert_eq!(
        find(&problems, "deamon").hint,
        "did you mean \"daemon\"? Valid sections: daemon, control, metrics, trust, watch, certificate, mail, \
         notifications, notify"
    );
    assert_eq!(
        find(&problems, "metrics.port").hint,
        "remove it or fix its name; valid keys in [metrics]: listen, web_config"
    );
    assert!(
        find(&problems, "certificate[0].plugn")
            .hint
            .starts_with("did you mean \"plugin\"?")
    );
}

#[test]
fn a_syntax_error_reports_its_line() {
    let dir = Dir::new();
    let main = dir.write(
        "certvakt.toml",
        "[daemon]\nstate_dir = \"/var/lib/certvakt\"\nlog_level = info\n",
    );
    let problems = dir.load_err();
    assert_eq!(places(&problems), [("", Some(3))], "{}", render(&problems));
    assert_eq!(problems[0].file, main);
    assert!(
        problems[0]
            .message
            .starts_with("TOML syntax error at column 13: "),
        "{}",
        problems[0]
    );
}

#[test]
fn dropins_merge_in_name_order() {
    let dir = Dir::new();
    let main = dir.write(
        "certvakt.toml",
        "[metrics]\nlisten = \"127.0.0.1:9001\"\n\n[[certificate]]\nid = \"a\"\n\
         cert = \"/etc/certvakt/a.pem\"\nplugin = \"acme\"\n",
    );
    // Written out of order: the name decides, not the creation time.
    let second = dir.write(
        "conf.d/20-second.toml",
        "[metrics]\nlisten = \"127.0.0.1:9003\"\n",
    );
    let first = dir.write(
        "conf.d/10-first.toml",
        "[metrics]\nlisten = \"127.0.0.1:9002\"\n\n[[certificate]]\nid = \"b\"\n\
         cert = \"/etc/certvakt/b.pem\"\nplugin = \"acme\"\n",
    );
    dir.write("conf.d/README", "not toml at all = = =");
    dir.write("conf.d/.10-editor-backup.toml", "broken = = =");
    dir.write("conf.d/30-old.toml.bak", "broken = = =");
    let config = dir.load_ok();

    assert_eq!(
        config.files,
        vec![main.clone(), first.clone(), second.clone()]
    );
    assert_eq!(
        config.metrics.listen,
        "127.0.0.1:9003".parse::<SocketAddr>().ok()
    );
    assert_eq!(
        config.key_origins["metrics.listen"],
        Origin {
            file: second,
            line: 2
        }
    );
    let ids: Vec<&str> = config.certificates.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(
        config.certificates[1].origin,
        Origin {
            file: first,
            line: 4
        }
    );
}

#[test]
fn a_problem_in_a_dropin_names_the_dropin_and_its_line() {
    let dir = Dir::new();
    let main = dir.write(
        "certvakt.toml",
        "[[certificate]]\nid = \"a\"\ncert = \"/etc/certvakt/a.pem\"\nplugin = \"acme\"\n",
    );
    let dropin = dir.write(
        "conf.d/50-fmk.toml",
        "# FMK\n\n[[certificate]]\nid = \"a\"\ncert = \"/etc/certvakt/fmk.pem\"\n\
         plugin = \"DK-FMK\"\n\n[[certificate]]\nid = \"c\"\n",
    );
    let problems = dir.load_err();
    assert_eq!(
        places(&problems),
        [
            ("certificate[1].id", Some(4)),
            ("certificate[1].plugin", Some(6)),
            ("certificate[2].cert", Some(8)),
            ("certificate[2].plugin", Some(8)),
        ],
        "{}",
        render(&problems)
    );
    assert!(problems.iter().all(|p| p.file == dropin));
    assert_eq!(
        find(&problems, "certificate[1].id").message,
        format!(
            "duplicate id \"a\": also defined at {}:2 (certificate[0])",
            main.display()
        )
    );
    assert_eq!(
        find(&problems, "certificate[2].cert").message,
        "this [[certificate]] has no cert"
    );
}

#[test]
fn empty_listen_disables_metrics() {
    let dir = Dir::new();
    dir.write("certvakt.toml", "[metrics]\nlisten = \"\"\n");
    let config = dir.load_ok();
    assert_eq!(config.metrics.listen, None);
    assert!(
        config.summary().ends_with("metrics off"),
        "{}",
        config.summary()
    );
}

#[test]
fn the_web_config_is_read_at_load_and_its_problems_name_file_line_and_key() {
    let dir = Dir::new();
    let web = dir.write(
        "web-config.yml",
        "basic_auth_users:\n  prometheus: hunter2\ntls_server_config:\n  cert_file: a.pem\n  key_file: a.key\n  min_version: TLS13\n",
    );
    dir.write(
        "certvakt.toml",
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\nweb_config = \"{}\"\n",
            web.display()
        ),
    );
    let problems = dir.load_err();
    assert_eq!(problems.len(), 1, "{}", render(&problems));
    let p = &problems[0];
    // The parser stops at the first mistake: the unsupported key, with its line.
    assert_eq!((p.file.as_path(), p.line), (web.as_path(), Some(6)));
    assert_eq!(p.key, "tls_server_config.min_version");
    assert!(p.message.contains("certvakt does not support it"), "{p}");

    // Fixed, the next mistake shows: the password is not a hash.
    dir.write(
        "web-config.yml",
        "basic_auth_users:\n  prometheus: hunter2\n",
    );
    let problems = dir.load_err();
    assert_eq!(places(&problems), [("basic_auth_users.prometheus", None)]);
    assert_eq!(problems[0].file, web);

    // A valid one is kept in the configuration.
    let hash = bcrypt::hash("secret", 4).expect("hash");
    dir.write(
        "web-config.yml",
        &format!("basic_auth_users:\n  prometheus: {hash}\n"),
    );
    let config = dir.load_ok();
    let kept = config.metrics.web.expect("web config");
    assert_eq!(kept.users.get("prometheus"), Some(&hash));
    assert!(kept.tls.is_none());

    // A file that is not there: the line of web_config in certvakt.toml.
    fs::remove_file(&web).expect("remove");
    let problems = dir.load_err();
    assert_eq!(places(&problems), [("metrics.web_config", Some(3))]);
    assert_eq!(problems[0].file, dir.main());
    assert!(
        problems[0].message.contains("does not exist"),
        "{}",
        problems[0]
    );
}

#[test]
fn a_host_name_is_refused_as_listen_address() {
    let dir = Dir::new();
    dir.write(
        "certvakt.toml",
        "\n[metrics]\nlisten = \"localhost:9617\"\n",
    );
    let problems = dir.load_err();
    assert_eq!(places(&problems), [("metrics.listen", Some(3))]);
    assert!(
        problems[0]
            .hint
            .starts_with("write an IP address, e.g. \"127.0.0.1:9617\"")
    );
}

#[test]
fn a_missing_main_file_is_one_clear_problem() {
    let dir = Dir::new();
    let problems = dir.load_err();
    assert_eq!(
        problems,
        vec![Problem {
            file: dir.main(),
            line: None,
            key: String::new(),
            message: "the configuration file does not exist".into(),
            hint: "create it (an empty file means all defaults), or pass --config with the path \
                   of the configuration file"
                .into(),
        }]
    );
    assert_eq!(
        problems[0].to_string(),
        format!(
            "{}: the configuration file does not exist\n    hint: create it (an empty file \
             means all defaults), or pass --config with the path of the configuration file",
            dir.main().display()
        )
    );
}

#[test]
fn wrong_types_and_missing_keys_do_not_hide_each_other() {
    let dir = Dir::new();
    dir.write(
        "certvakt.toml",
        r#"[daemon]
max_file_size = "1M"
warn_before = 30
log_level = "loud"

[[watch]]
paths = ["/etc/ssl/*.pem", 7, "relative/*.pem"]

[[watch]]
pkcs12_password_file = "/etc/certvakt/p"

[[certificate]]
cert = "/etc/certvakt/x.pem"
key = "/etc/certvakt/x.pem"

[certificate2]
"#,
    );
    let problems = dir.load_err();
    assert_eq!(
        places(&problems),
        [
            ("daemon.max_file_size", Some(2)),
            ("daemon.warn_before", Some(3)),
            ("daemon.log_level", Some(4)),
            ("watch[0].paths[1]", Some(7)),
            ("watch[0].paths[2]", Some(7)),
            ("watch[1].paths", Some(9)),
            ("certificate[0].id", Some(12)),
            ("certificate[0].plugin", Some(12)),
            ("certificate[0].key", Some(14)),
            ("certificate2", Some(16)),
        ],
        "{}",
        render(&problems)
    );
    assert_eq!(
        find(&problems, "daemon.log_level").hint,
        "write one of: error, warn, info, debug, trace"
    );
    assert_eq!(
        find(&problems, "watch[0].paths[1]").message,
        "must be a string, not an integer"
    );
    assert_eq!(
        find(&problems, "certificate[0].key").message,
        "key is the same file as cert"
    );
}

#[test]
fn every_file_is_read_even_after_broken_ones() {
    let dir = Dir::new();
    let main = dir.write("certvakt.toml", "[daemon]\nlog_level = \"loud\"\n");
    let broken = dir.write(
        "conf.d/10-broken.toml",
        "[metrics]\nlisten = 127.0.0.1:9617\n",
    );
    let gone = dir.dir.path().join("conf.d/20-gone.toml");
    if let Err(e) = std::os::unix::fs::symlink("/nonexistent/certvakt.toml", &gone) {
        panic!("symlink: {e}");
    }
    let latin1 = dir.dir.path().join("conf.d/30-latin1.toml");
    if let Err(e) = fs::write(&latin1, b"[control]\n# K\xf8benhavn\n") {
        panic!("write: {e}");
    }
    let last = dir.write(
        "conf.d/40-last.toml",
        "[control]\nsocket = \"control.sock\"\n",
    );

    let problems = dir.load_err();
    let seen: Vec<(&Path, Option<usize>)> = problems
        .iter()
        .map(|p| (p.file.as_path(), p.line))
        .collect();
    assert_eq!(
        seen,
        [
            (main.as_path(), Some(2)),
            (broken.as_path(), Some(2)),
            (gone.as_path(), None),
            (latin1.as_path(), Some(2)),
            (last.as_path(), Some(2)),
        ],
        "{}",
        render(&problems)
    );
    assert!(
        problems[1]
            .message
            .starts_with("TOML syntax error at column 15: "),
        "{}",
        problems[1]
    );
    assert!(
        problems[2]
            .message
            .starts_with("cannot read this drop-in file: "),
        "{}",
        problems[2]
    );
    assert_eq!(problems[3].message, "the file is not valid UTF-8");
    assert_eq!(problems[4].key, "control.socket");
}

#[test]
fn renewal_keys_and_plugin_settings_load() {
    let dir = Dir::new();
    dir.write(
        "certvakt.toml",
        r#"[trust]
oces3 = ["/etc/certvakt/trust/oces3-root.pem"]

[[certificate]]
id = "fmk-prod"
cert = "/etc/certvakt/fmk/cert.pem"
key = "/etc/certvakt/fmk/key.pem"
chain = "/etc/certvakt/fmk/chain.pem"
fullchain = "/etc/certvakt/fmk/fullchain.pem"
pkcs12 = "/etc/certvakt/fmk/keystore.p12"
pkcs12_password_file = "/etc/certvakt/secrets/fmk.pass"
plugin = "dk-fmk"
renew_before = "45d"
key_type = "rsa-3072"
key_policy = "reuse"
owner = "root"
group = "fmk"
key_mode = "0640"
cert_mode = "0644"
overlap = "14d"
issuer_trust = "oces3"
deploy_hook = ["/usr/bin/systemctl", "reload", "fmk-client"]
hook_timeout = "2m"
plugin_mail = true

[certificate.settings]
cvr = "25450442"
environment = "test"
pharmacy = { name = "Hjørring Apotek", ean = 5790000123456 }
"#,
    );
    let config = dir.load_ok();
    let r = &config.certificates[0].renewal;
    assert_eq!(
        r.chain.as_deref(),
        Some(Path::new("/etc/certvakt/fmk/chain.pem"))
    );
    assert_eq!(
        r.pkcs12.as_deref(),
        Some(Path::new("/etc/certvakt/fmk/keystore.p12"))
    );
    assert_eq!(r.renew_before.map(|d| d.as_secs()), Some(45 * 86_400));
    assert_eq!(
        r.key_type,
        Some(certvakt_plugin_api::profile::KeyAlgorithm::Rsa3072)
    );
    assert_eq!(r.key_policy, KeyPolicy::Reuse);
    assert_eq!((r.key_mode, r.cert_mode), (0o640, 0o644));
    assert_eq!(r.overlap.as_secs(), 14 * 86_400);
    assert_eq!(r.issuer_trust.as_deref(), Some("oces3"));
    assert_eq!(r.hook_timeout.as_secs(), 120);
    assert!(r.plugin_mail);
    assert_eq!(
        r.deploy_hook.as_deref(),
        Some(
            &[
                "/usr/bin/systemctl".to_string(),
                "reload".into(),
                "fmk-client".into()
            ][..]
        )
    );
    assert_eq!(r.settings.value()["cvr"], "25450442");
    assert_eq!(r.settings.value()["pharmacy"]["ean"], 5790000123456_i64);
    assert_eq!(r.settings.value()["pharmacy"]["name"], "Hjørring Apotek");
}

#[test]
fn bad_renewal_keys_are_reported_each_at_its_line() {
    let dir = Dir::new();
    dir.write(
        "certvakt.toml",
        r#"[[certificate]]
id = "web"
cert = "/etc/ssl/web.pem"
plugin = "acme"
pkcs12 = "/etc/ssl/web.p12"
key_type = "rsa-1024"
key_mode = "0644"
deploy_hook = ["systemctl", "reload", "nginx"]
key_policy = "sometimes"
settings = "none"
"#,
    );
    let problems = dir.load_err();
    assert_problems_at(
        &problems,
        &[
            ("certificate[0].key_type", 6),
            ("certificate[0].key_mode", 7),
            ("certificate[0].deploy_hook", 8),
            ("certificate[0].key_policy", 9),
            ("certificate[0].settings", 10),
            ("certificate[0].pkcs12", 5),
        ],
    );
    let text = render(&problems);
    assert!(
        text.contains("lets other users read or change the private key"),
        "{text}"
    );
    assert!(text.contains("absolute path"), "{text}");
}

#[test]
fn plugin_mail_is_off_unless_set_and_must_be_a_boolean() {
    let dir = Dir::new();
    dir.write(
        "certvakt.toml",
        r#"[[certificate]]
id = "efrikort"
cert = "/etc/certvakt/efrikort/cert.pem"
plugin = "manual"
"#,
    );
    assert!(!dir.load_ok().certificates[0].renewal.plugin_mail);

    dir.write(
        "certvakt.toml",
        r#"[[certificate]]
id = "efrikort"
cert = "/etc/certvakt/efrikort/cert.pem"
plugin = "manual"
plugin_mail = "true"

[[certificate]]
id = "siths"
cert = "/etc/certvakt/siths/cert.pem"
plugin = "manual"
plugin_mail = 1
"#,
    );
    let problems = dir.load_err();
    assert_eq!(
        places(&problems),
        [
            ("certificate[0].plugin_mail", Some(5)),
            ("certificate[1].plugin_mail", Some(11))
        ],
        "{}",
        render(&problems)
    );
    assert_eq!(problems[0].message, "must be true or false, not a string");
    assert_eq!(
        problems[0].hint,
        "write it without quotes: plugin_mail = true"
    );
    assert_eq!(problems[1].message, "must be true or false, not an integer");
    assert_eq!(
        problems[1].hint,
        "write true or false, e.g. plugin_mail = true"
    );
}

#[test]
fn issuer_trust_must_name_a_trust_set() {
    let dir = Dir::new();
    dir.write(
        "certvakt.toml",
        r#"[trust]
oces3 = ["/etc/certvakt/trust/oces3-root.pem"]

[[certificate]]
id = "fmk"
cert = "/etc/certvakt/fmk/cert.pem"
plugin = "manual"
issuer_trust = "oces"
"#,
    );
    let problems = dir.load_err();
    let problem = find(&problems, "certificate[0].issuer_trust");
    let text = problem.to_string();
    assert!(
        text.contains("\"oces\", which [trust] does not define"),
        "{text}"
    );
    assert!(text.contains("write one of oces3"), "{text}");
}

/// `load(main)` in a thread: a loader that blocks (on a FIFO, say) fails the test instead of
/// hanging it.
/// Each `(key, line)` is among `problems`.
fn assert_problems_at(problems: &[Problem], expected: &[(&str, usize)]) {
    for (key, line) in expected {
        assert!(
            problems
                .iter()
                .any(|p| p.key == *key && p.line == Some(*line)),
            "{key} at line {line} is not among the problems:\n{}",
            render(problems)
        );
    }
}

fn load_within_seconds(main: &Path) -> Result<Config, Vec<Problem>> {
    let main = main.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(load(&main));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(result) => result,
        Err(_) => panic!("loading the configuration blocked for 20 s"),
    }
}

fn mkfifo(path: &Path) {
    if let Err(e) = nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        panic!("mkfifo {}: {e}", path.display());
    }
}

fn symlink(target: &str, link: &Path) {
    if let Err(e) = std::os::unix::fs::symlink(target, link) {
        panic!("symlink {}: {e}", link.display());
    }
}

/// A sparse file of `len` bytes.
fn sized(path: &Path, len: u64) {
    let file = match fs::File::create(path) {
        Ok(file) => file,
        Err(e) => panic!("create {}: {e}", path.display()),
    };
    if let Err(e) = file.set_len(len) {
        panic!("set_len {}: {e}", path.display());
    }
}

#[test]
fn durations_of_100_years_or_more_are_refused() {
    // 2^63 seconds wraps to a negative i64: the window would mean the opposite.
    let dir = Dir::new();
    dir.write(
        "certvakt.toml",
        r#"[daemon]
warn_before = "9223372036854775808s"
retry_max = "36526d"

[[certificate]]
id = "web"
cert = "/etc/ssl/web.pem"
plugin = "acme"
renew_before = "9223372036854775808s"
"#,
    );
    let problems = dir.load_err();
    assert_eq!(
        places(&problems),
        [
            ("daemon.warn_before", Some(2)),
            ("daemon.retry_max", Some(3)),
            ("certificate[0].renew_before", Some(9)),
        ],
        "{}",
        render(&problems)
    );
    assert_eq!(
        find(&problems, "daemon.warn_before").message,
        "`9223372036854775808s` is longer than 100 years (36525d), the longest duration \
         certvakt accepts"
    );
    assert_eq!(
        find(&problems, "daemon.warn_before").hint,
        "write how long before expiry to warn, e.g. warn_before = \"30d\""
    );
    assert!(
        find(&problems, "certificate[0].renew_before")
            .message
            .contains("longer than 100 years"),
        "{}",
        render(&problems)
    );
}

#[test]
fn durations_up_to_100_years_load_in_one_syntax() {
    let dir = Dir::new();
    dir.write(
        "certvakt.toml",
        r#"[daemon]
warn_before = "36524d23h59m59s"
retry_initial = "1m30s"
retry_max = "36525d"

[[certificate]]
id = "web"
cert = "/etc/ssl/web.pem"
plugin = "acme"
renew_before = "5217w"
hook_timeout = "1m30s"
"#,
    );
    let config = dir.load_ok();
    let hundred_years = 36_525 * 86_400;
    assert_eq!(config.daemon.warn_before.as_secs(), hundred_years - 1);
    assert_eq!(config.daemon.retry_initial.as_secs(), 90);
    assert_eq!(config.daemon.retry_max.as_secs(), hundred_years);
    let r = &config.certificates[0].renewal;
    assert_eq!(
        r.renew_before.map(|d| d.as_secs()),
        Some(5_217 * 7 * 86_400)
    );
    assert_eq!(r.hook_timeout.as_secs(), 90);
}

#[test]
fn a_fifo_as_the_configuration_file_is_refused_at_once() {
    let dir = Dir::new();
    // Nobody ever writes to it: a blocking read would wait for ever.
    mkfifo(&dir.main());
    let problems = match load_within_seconds(&dir.main()) {
        Ok(config) => panic!("a FIFO loaded: {config:?}"),
        Err(problems) => problems,
    };
    assert_eq!(places(&problems), [("", None)], "{}", render(&problems));
    assert_eq!(problems[0].file, dir.main());
    assert_eq!(
        problems[0].message,
        "cannot read the configuration file: it is not a regular file (a FIFO, socket, device \
         or folder); certvakt reads only regular files"
    );
}

#[test]
fn dev_zero_and_oversized_files_are_not_read_as_the_configuration() {
    let dir = Dir::new();
    symlink("/dev/zero", &dir.main());
    let problems = match load_within_seconds(&dir.main()) {
        Ok(config) => panic!("/dev/zero loaded: {config:?}"),
        Err(problems) => problems,
    };
    assert_eq!(places(&problems), [("", None)], "{}", render(&problems));
    assert!(
        problems[0].message.contains("is not a regular file"),
        "{}",
        render(&problems)
    );

    let big = dir.dir.path().join("big.toml");
    sized(&big, crate::bounded::CONFIG_FILE_LIMIT + 1);
    let problems = match load_within_seconds(&big) {
        Ok(config) => panic!("an oversized file loaded: {config:?}"),
        Err(problems) => problems,
    };
    assert_eq!(
        problems
            .iter()
            .map(|p| (p.file.as_path(), p.message.as_str()))
            .collect::<Vec<_>>(),
        [(
            big.as_path(),
            "cannot read the configuration file: it is 4194305 bytes, more than the 4194304 \
             bytes certvakt reads from such a file"
        )]
    );
}

#[test]
fn a_dropin_that_is_not_a_regular_file_is_refused_by_name() {
    let dir = Dir::new();
    let main = dir.write("certvakt.toml", "[daemon]\nlog_level = \"info\"\n");
    // A readable drop-in beside them is still read (its typo is reported in its place).
    let typo = dir.write("conf.d/10-typo.toml", "[daemon]\nlog_levl = \"debug\"\n");
    let fifo = dir.dir.path().join("conf.d/20-fifo.toml");
    mkfifo(&fifo);
    let zero = dir.dir.path().join("conf.d/30-zero.toml");
    symlink("/dev/zero", &zero);
    let folder = dir.dir.path().join("conf.d/40-folder.toml");
    if let Err(e) = fs::create_dir(&folder) {
        panic!("mkdir: {e}");
    }
    let big = dir.dir.path().join("conf.d/50-big.toml");
    sized(&big, crate::bounded::CONFIG_FILE_LIMIT + 1);
    let gone = dir.dir.path().join("conf.d/60-gone.toml");
    symlink("/nonexistent/certvakt.toml", &gone);

    let problems = match load_within_seconds(&main) {
        Ok(config) => panic!("loaded: {config:?}"),
        Err(problems) => problems,
    };
    let not_regular = "cannot read this drop-in file: it is not a regular file (a FIFO, socket, \
                       device or folder); certvakt reads only regular files";
    let too_big = "cannot read this drop-in file: it is 4194305 bytes, more than the 4194304 \
                   bytes certvakt reads from such a file";
    let dangling = "cannot read this drop-in file: it is a symbolic link to \
                    /nonexistent/certvakt.toml, which does not exist";
    assert_eq!(
        problems
            .iter()
            .map(|p| (p.file.as_path(), p.line, p.message.as_str()))
            .collect::<Vec<_>>(),
        [
            (
                typo.as_path(),
                Some(2),
                "unknown key \"log_levl\" in [daemon]"
            ),
            (fifo.as_path(), None, not_regular),
            (zero.as_path(), None, not_regular),
            (folder.as_path(), None, not_regular),
            (big.as_path(), None, too_big),
            (gone.as_path(), None, dangling),
        ],
        "{}",
        render(&problems)
    );
    assert!(
        problems[1]
            .hint
            .starts_with("conf.d holds only regular *.toml files"),
        "{}",
        problems[1]
    );
}

#[test]
fn a_group_readable_key_needs_a_group_that_is_not_the_read_group() {
    for (group, refused) in [
        ("", true),
        ("group = \"certvakt\"\n", true),
        ("group = \"fmk\"\n", false),
    ] {
        let dir = Dir::new();
        dir.write("certvakt.toml", &format!(
            "[[certificate]]\nid = \"web\"\ncert = \"/etc/certvakt/web.pem\"\nkey = \"/etc/certvakt/web.key\"\nplugin = \"manual\"\nkey_mode = \"0640\"\n{group}"
        ));
        let found = match crate::config::load(&dir.main()) {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        };
        let about_mode = found.iter().find(|p| p.key == "certificate[0].key_mode");
        assert_eq!(about_mode.is_some(), refused, "{group:?}: {found:?}");
        if let Some(problem) = about_mode {
            assert!(
                problem.message.contains("read group `certvakt`"),
                "{problem}"
            );
            // One sentence as an operator reads it: no run of spaces from a broken line.
            for text in [&problem.message, &problem.hint] {
                assert!(!text.contains("  "), "{text:?}");
            }
        }
    }
}

#[test]
fn a_reload_knows_which_certificates_are_configured_as_before() {
    let entry = |id: &str, ca: &str| {
        format!(
            "[[certificate]]\nid = \"{id}\"\ncert = \"/etc/certvakt/{id}.pem\"\nplugin = \"manual\"\n[certificate.settings]\nca_name = \"{ca}\"\n\n"
        )
    };
    let load = |body: String| {
        let dir = Dir::new();
        dir.write("certvakt.toml", &body);
        dir.load_ok()
    };
    let old = load(entry("a", "X") + &entry("b", "X") + &entry("c", "X"));
    // One added at the top (every line below moves), one's settings changed.
    let new = load(entry("new", "X") + &entry("a", "X") + &entry("b", "Y") + &entry("c", "X"));
    let unchanged = unchanged_certificates(&old, &new);
    assert_eq!(
        unchanged.iter().map(String::as_str).collect::<Vec<_>>(),
        ["a", "c"]
    );
    // A certificate removed (a plugin's settings may name it): nothing counts as unchanged.
    let fewer = load(entry("a", "X") + &entry("b", "X"));
    assert!(unchanged_certificates(&old, &fewer).is_empty());
    // Nor when a section every renewal depends on changed.
    let mut other_daemon = old.clone();
    other_daemon.daemon.retry_initial = "1s".parse().unwrap();
    assert!(unchanged_certificates(&old, &other_daemon).is_empty());
    assert_eq!(unchanged_certificates(&old, &old).len(), 3);
}

#[test]
fn verify_endpoints_load_and_each_bad_one_is_named_at_its_line() {
    let dir = Dir::new();
    dir.write(
        "certvakt.toml",
        r#"[[certificate]]
id = "web"
cert = "/etc/ssl/web.pem"
plugin = "acme"
verify_window = "30s"
rollback_on_failed_verify = true

[[certificate.verify]]
address = "127.0.0.1:8443"
sni = "apotek.example.dk"

[[certificate.verify]]
address = "mail.apotek.example.dk:25"
starttls = "smtp"
"#,
    );
    let config = dir.load_ok();
    let r = &config.certificates[0].renewal;
    let verify = r.verify_deploy().expect("the verified deploy");
    assert_eq!(verify.window.as_secs(), 30);
    assert!(verify.rollback);
    let shown: Vec<String> = verify.endpoints.iter().map(|e| e.describe()).collect();
    assert_eq!(
        shown,
        [
            "127.0.0.1:8443 (SNI apotek.example.dk)",
            "mail.apotek.example.dk:25 (STARTTLS smtp)"
        ]
    );
    // The defaults: no endpoints, two minutes, no rollback.
    assert!(crate::config::Renewal::default().verify_deploy().is_none());
    let defaults = crate::config::VerifyDeploy::default();
    assert!(defaults.endpoints.is_empty() && !defaults.rollback);
    assert_eq!(defaults.window.as_secs(), 120);

    dir.write(
        "certvakt.toml",
        r#"[[certificate]]
id = "web"
cert = "/etc/ssl/web.pem"
plugin = "acme"
verify_window = "2h"

[[certificate.verify]]
address = "127.0.0.1"

[[certificate.verify]]
address = "127.0.0.1:443"
starttls = "pop3"
sni = "not a name"

[[certificate.verify]]
sni = "apotek.example.dk"
"#,
    );
    let problems = dir.load_err();
    assert_problems_at(
        &problems,
        &[
            ("certificate[0].verify_window", 5),
            ("certificate[0].verify[0].address", 8),
            ("certificate[0].verify[1].starttls", 12),
            ("certificate[0].verify[1].sni", 13),
            ("certificate[0].verify[2].address", 15),
        ],
    );
    let text = render(&problems);
    assert!(text.contains("\"127.0.0.1\" has no port"), "{text}");
    assert!(text.contains("is not a STARTTLS protocol"), "{text}");
    assert!(text.contains("outside 1s..1h"), "{text}");

    // A window or rollback without an endpoint verifies nothing: said at its line.
    dir.write(
        "certvakt.toml",
        r#"[[certificate]]
id = "web"
cert = "/etc/ssl/web.pem"
plugin = "acme"
rollback_on_failed_verify = true
"#,
    );
    let problems = dir.load_err();
    assert_problems_at(
        &problems,
        &[("certificate[0].rollback_on_failed_verify", 5)],
    );
    assert!(render(&problems).contains("nothing is verified"));
}
