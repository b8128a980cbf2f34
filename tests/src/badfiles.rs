//! Broken files, for tests of what certvakt says about them.
//!
//! Owns one writer per kind of trouble an inventory meets in the field. Each returns the path
//! it made, so a test reads as a list of "this file is broken in this way".
//!
//! Promises and caveats:
//! - Every writer creates the parent folder if needed and replaces what was there.
//! - [`write_unreadable`] removes all permission bits, but tests usually run as root, and root
//!   reads a mode-000 file anyway. Tests must check [`permissions_bite`] before expecting
//!   "permission denied".
//! - [`write_huge`] makes a sparse file: its size is real (what `stat` reports and what a size
//!   limit checks) but it costs no disk space and no time to write.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::leaf::write_file;

fn parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

fn clear(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
        }
        Ok(_) => fs::remove_file(path).with_context(|| format!("removing {}", path.display())),
        Err(_) => Ok(()),
    }
}

/// An empty file.
pub fn write_empty(path: &Path) -> Result<PathBuf> {
    parent(path)?;
    clear(path)?;
    write_file(path, b"")?;
    Ok(path.to_path_buf())
}

/// `len` bytes of deterministic binary noise that is neither PEM, DER nor PKCS#12 (it never
/// starts with `-` or an ASN.1 SEQUENCE tag).
pub fn write_garbage(path: &Path, len: usize) -> Result<PathBuf> {
    parent(path)?;
    clear(path)?;
    let mut state: u32 = 0x2545_f491;
    let mut bytes = Vec::with_capacity(len);
    for _ in 0..len {
        // xorshift: cheap, deterministic, no dependency.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        bytes.push((state >> 24) as u8);
    }
    if let Some(first) = bytes.first_mut() {
        *first = 0xa7;
    }
    write_file(path, &bytes)?;
    Ok(path.to_path_buf())
}

/// Text that is not a certificate in any format.
pub fn write_text(path: &Path, text: &str) -> Result<PathBuf> {
    parent(path)?;
    clear(path)?;
    write_file(path, text.as_bytes())?;
    Ok(path.to_path_buf())
}

/// A certificate PEM cut in the middle of its base64 (no `END` line), as a copy that was
/// interrupted leaves it.
pub fn write_truncated_pem(path: &Path, cert_pem: &str) -> Result<PathBuf> {
    parent(path)?;
    clear(path)?;
    let body_start = cert_pem.find('\n').map(|i| i + 1).unwrap_or(0);
    let body_len = cert_pem[body_start..]
        .find("-----END")
        .unwrap_or(cert_pem.len() - body_start);
    let cut = body_start + body_len / 2;
    write_file(path, &cert_pem.as_bytes()[..cut])?;
    Ok(path.to_path_buf())
}

/// A PEM file that holds only a private key.
pub fn write_key_only_pem(path: &Path, key_pem: &str) -> Result<PathBuf> {
    parent(path)?;
    clear(path)?;
    crate::leaf::write_secret(path, key_pem.as_bytes())?;
    Ok(path.to_path_buf())
}

/// A DER certificate cut short (two thirds of it).
pub fn write_truncated_der(path: &Path, cert_der: &[u8]) -> Result<PathBuf> {
    parent(path)?;
    clear(path)?;
    write_file(path, &cert_der[..cert_der.len() * 2 / 3])?;
    Ok(path.to_path_buf())
}

/// A directory where a certificate file is expected (e.g. `cert.pem/`).
pub fn make_directory(path: &Path) -> Result<PathBuf> {
    parent(path)?;
    clear(path)?;
    fs::create_dir(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(path.to_path_buf())
}

/// Two symlinks pointing at each other: `a -> b`, `b -> a`. Opening either gives `ELOOP`.
pub fn make_symlink_loop(a: &Path, b: &Path) -> Result<(PathBuf, PathBuf)> {
    parent(a)?;
    parent(b)?;
    clear(a)?;
    clear(b)?;
    std::os::unix::fs::symlink(b, a).with_context(|| format!("symlink {}", a.display()))?;
    std::os::unix::fs::symlink(a, b).with_context(|| format!("symlink {}", b.display()))?;
    Ok((a.to_path_buf(), b.to_path_buf()))
}

/// A symlink to a file that does not exist.
pub fn make_dangling_symlink(path: &Path) -> Result<PathBuf> {
    parent(path)?;
    clear(path)?;
    let target = path.with_extension("does-not-exist");
    std::os::unix::fs::symlink(&target, path)
        .with_context(|| format!("symlink {}", path.display()))?;
    Ok(path.to_path_buf())
}

/// A file of exactly `size` bytes that begins like a certificate PEM (sparse after that).
/// Use `limit + 1` for "bigger than the limit".
pub fn write_huge(path: &Path, size: u64) -> Result<PathBuf> {
    parent(path)?;
    clear(path)?;
    let mut file =
        fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let head = b"-----BEGIN CERTIFICATE-----\n";
    if size >= head.len() as u64 {
        file.write_all(head)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    file.set_len(size)
        .with_context(|| format!("sizing {}", path.display()))?;
    Ok(path.to_path_buf())
}

/// A file with `contents` and mode 000. As root this is still readable: see
/// [`permissions_bite`].
pub fn write_unreadable(path: &Path, contents: &[u8]) -> Result<PathBuf> {
    parent(path)?;
    clear(path)?;
    write_file(path, contents)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o000))
        .with_context(|| format!("chmod 000 {}", path.display()))?;
    Ok(path.to_path_buf())
}

/// Whether file permissions stop this process (false for root, and for CAP_DAC_OVERRIDE):
/// tries to read a mode-000 probe file.
pub fn permissions_bite(scratch_dir: &Path) -> bool {
    let probe = scratch_dir.join(".certvakt-permission-probe");
    let made = write_unreadable(&probe, b"probe").is_ok();
    let readable = fs::read(&probe).is_ok();
    let _ = fs::set_permissions(&probe, fs::Permissions::from_mode(0o600));
    let _ = fs::remove_file(&probe);
    made && !readable
}
