//! Reading a file the daemon was told about, without trusting what sits at its path.
//!
//! Contract:
//! - [`read`] opens without blocking (`O_NONBLOCK | O_NOCTTY`), so a FIFO or a device at the
//!   path never hangs the caller; it checks what was opened (not what a `stat` saw before),
//!   refuses anything but a regular file, refuses a file larger than the cap before reading a
//!   byte, and never reads more than the cap plus one byte (a file that grows while being read
//!   is refused, not read whole). `/dev/zero`, a FIFO, a socket or a 2 GB file cost nothing.
//! - Symbolic links are followed (packages and operators link certificate files); what the
//!   link leads to must pass the same checks. [`read_no_follow`] refuses a link instead, for
//!   files the daemon copies elsewhere (a live folder's files before its first install).
//! - Errors are sentence tails that follow the path (`"<path> is not a regular file …"`):
//!   [`ReadError::sentence`] prepends it. They never contain file contents.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// The cap for certificate, chain and PKCS#12 files (the inventory's default too).
pub const CERT_FILE_LIMIT: u64 = 1024 * 1024;
/// The cap for a private key file.
pub const KEY_FILE_LIMIT: u64 = 256 * 1024;
/// The cap for a password file.
pub const PASSWORD_FILE_LIMIT: u64 = 64 * 1024;
/// The cap for a configuration file (the main file or a drop-in).
pub const CONFIG_FILE_LIMIT: u64 = 4 * 1024 * 1024;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("does not exist")]
    NotFound,
    #[error(
        "is not a regular file (a FIFO, socket, device or folder); certvakt reads only regular files"
    )]
    NotRegular,
    #[error("is {len} bytes, more than the {max} bytes certvakt reads from such a file")]
    TooLarge { len: u64, max: u64 },
    #[error("grew past {max} bytes while being read, and was not used")]
    Grew { max: u64 },
    #[error(
        "is a symbolic link, and certvakt does not read through links here (what it points to could be any file the daemon may read)"
    )]
    Symlink,
    #[error("cannot be read: {0}")]
    Io(std::io::Error),
}

impl ReadError {
    /// `"<path> <why>"`.
    pub fn sentence(&self, path: &Path) -> String {
        format!("{} {self}", path.display())
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::NotFound)
    }
}

/// The bytes of the regular file at `path`, at most `max` of them. See the module contract.
pub fn read(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    read_with(path, max, 0)
}

/// [`read`], but a symbolic link at `path` itself is refused ([`ReadError::Symlink`]) rather
/// than followed: for the live files the daemon copies, where a link could point anywhere.
pub fn read_no_follow(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    read_with(path, max, nix::fcntl::OFlag::O_NOFOLLOW.bits())
}

fn read_with(path: &Path, max: u64, flags: i32) -> Result<Vec<u8>, ReadError> {
    let file = File::options()
        .read(true)
        .custom_flags(
            nix::fcntl::OFlag::O_NONBLOCK.bits() | nix::fcntl::OFlag::O_NOCTTY.bits() | flags,
        )
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ReadError::NotFound,
            _ if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32)
                && flags & nix::fcntl::OFlag::O_NOFOLLOW.bits() != 0 =>
            {
                ReadError::Symlink
            }
            _ => ReadError::Io(e),
        })?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular);
    }
    if meta.len() > max {
        return Err(ReadError::TooLarge {
            len: meta.len(),
            max,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).saturating_add(1));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::Grew { max });
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
pub fn read_to_string(path: &Path, max: u64) -> Result<String, ReadError> {
    let bytes = read(path, max)?;
    String::from_utf8(bytes).map_err(|_| {
        ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "it is not UTF-8 text",
        ))
    })
}

/// A secret file (a password, an HMAC key, a plugin's EAB key): read like any other file
/// here (at most [`PASSWORD_FILE_LIMIT`]) into a buffer cleared when dropped; a file every
/// user may read is warned about in the journal (never its content).
pub fn read_secret(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, ReadError> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o007 != 0
    {
        let shown = path.display().to_string();
        log::warn!(path = shown.as_str(); "{shown} holds a secret and can be read by any user: chmod o-rwx it");
    }
    read(path, PASSWORD_FILE_LIMIT).map(zeroize::Zeroizing::new)
}

/// A secret's bytes without the one line end (`\n` or `\r\n`) that `echo` leaves.
pub fn without_line_end(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file_and_refuses_what_is_not_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cert.pem");
        std::fs::write(&file, b"hello").expect("write");
        assert_eq!(read(&file, 10).expect("read"), b"hello");
        assert!(matches!(
            read(&file, 4),
            Err(ReadError::TooLarge { len: 5, max: 4 })
        ));
        assert!(read(&dir.path().join("none"), 10).is_err_and(|e| e.is_not_found()));
        assert!(matches!(read(dir.path(), 10), Err(ReadError::NotRegular)));
    }

    #[test]
    fn a_fifo_is_refused_at_once_and_dev_zero_costs_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        // Nobody writes to it: a blocking open would hang this test for ever.
        assert!(matches!(read(&fifo, 10), Err(ReadError::NotRegular)));
        assert!(matches!(
            read(Path::new("/dev/zero"), 10),
            Err(ReadError::NotRegular)
        ));
        let link = dir.path().join("zero.pem");
        std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
        assert!(matches!(read(&link, 10), Err(ReadError::NotRegular)));
        assert!(matches!(read_no_follow(&link, 10), Err(ReadError::Symlink)));
    }
}
