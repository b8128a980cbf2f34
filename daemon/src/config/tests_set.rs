//! `[certificate.set.<role>]` and the legacy files: a set is read with every role, and each
//! mistake is named with its key and line.

use super::tests::Dir;
use super::*;

const HEAD: &str = r#"
[[certificate]]
id = "virksomhet"
plugin = "no-nhn"
cert = "/etc/certvakt/nhn/auth.pem"
key = "/etc/certvakt/nhn/auth.key"
pkcs12_password_file = "/etc/certvakt/secrets/nhn.pass"
legacy_cert = "/etc/certvakt/nhn/legacy-auth.pem"
legacy_key = "/etc/certvakt/nhn/legacy-auth.key"
"#;

#[test]
fn a_buypass_set_is_read_with_its_roles_primary_first() {
    let dir = Dir::new();
    dir.write(
        "certvakt.toml",
        &format!(
            "{HEAD}\n[certificate.set.signing]\ncert = \"/etc/certvakt/nhn/sign.pem\"\nkey = \"/etc/certvakt/nhn/sign.key\"\npkcs12 = \"/etc/certvakt/nhn/sign.p12\"\n"
        ),
    );
    let config = dir.load_ok();
    let cert = &config.certificates[0];
    assert_eq!(cert.roles(), vec!["authentication", "signing"]);
    let signing = &cert.renewal.set["signing"];
    assert_eq!(signing.cert, PathBuf::from("/etc/certvakt/nhn/sign.pem"));
    assert_eq!(
        signing.pkcs12,
        Some(PathBuf::from("/etc/certvakt/nhn/sign.p12"))
    );
    assert_eq!(
        cert.renewal.legacy_key,
        Some(PathBuf::from("/etc/certvakt/nhn/legacy-auth.key"))
    );
}

#[test]
fn a_single_certificate_has_no_roles() {
    let dir = Dir::new();
    dir.write(
        "certvakt.toml",
        "[[certificate]]\nid = \"a\"\nplugin = \"manual\"\ncert = \"/etc/a.pem\"\n",
    );
    assert!(dir.load_ok().certificates[0].roles().is_empty());
}

#[test]
fn every_mistake_in_a_set_is_named_with_its_key() {
    let dir = Dir::new();
    dir.write(
        "certvakt.toml",
        &format!(
            "{HEAD}
[certificate.set.sigining]
cert = \"/etc/certvakt/nhn/x.pem\"
[certificate.set.signing]
key = \"/etc/certvakt/nhn/sign.key\"
[certificate.set.encryption]
cert = \"/etc/certvakt/nhn/auth.pem\"
legacy_cert = \"relative.pem\"
"
        ),
    );
    let problems = dir.load_err();
    let find = |key: &str| {
        problems
            .iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("no problem at {key}: {problems:#?}"))
    };
    assert!(
        find("certificate[0].set.sigining")
            .message
            .contains("not a role")
    );
    assert!(
        find("certificate[0].set.signing.cert")
            .message
            .contains("has no cert")
    );
    assert!(
        find("certificate[0].set.encryption.cert")
            .message
            .contains("already the file of certificate[0].cert")
    );
    assert!(
        problems
            .iter()
            .any(|p| p.key == "certificate[0].set.encryption.legacy_cert"
                && p.message.contains("not an absolute path")),
        "{problems:#?}"
    );
    assert!(
        find("certificate[0].set.encryption.legacy_key")
            .message
            .contains("go together")
    );
    assert!(problems.iter().all(|p| p.line.is_some()), "{problems:#?}");
}
