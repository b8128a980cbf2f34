//! The C boundary between certvaktd and a plugin: the only `unsafe` code of this crate.
//!
//! Contract:
//! - A plugin is a shared library that exports one symbol, [`ENTRY_SYMBOL`]
//!   (`certvakt_plugin_v1`), an `extern "C" fn() -> *const PluginDescriptor`. The descriptor
//!   lives in the plugin's static memory for as long as the library is loaded; the host never
//!   unloads a plugin (see the daemon's loader).
//! - Every table starts with `abi_version: u32, struct_size: u32`. The reader checks
//!   `abi_version == ABI_VERSION` and `struct_size >= size_of::<Table>()` before it reads any
//!   other field, so a later ABI can append fields without breaking older readers, and an
//!   older writer's shorter table is refused instead of read past its end.
//! - Data crosses the boundary as UTF-8 method names and serde_json message bytes
//!   ([`crate::messages`]), never as Rust types: the two sides have separate copies of std,
//!   compiled perhaps by different compilers.
//! - A [`Buffer`] is owned by the side that allocated it and is freed by that side's `free`:
//!   the plugin's response through [`PluginDescriptor::free`], the host's answer to a host call
//!   through [`HostTable`]'s `free`. The receiver copies the bytes out, then hands the buffer
//!   back at once.
//! - No panic crosses the boundary: both trampolines ([`plugin_call`] for the plugin, the host
//!   table's `call` for the host) catch it and answer with an error message instead. (An
//!   unwind out of an `extern "C"` function aborts the whole process.)
//! - A plugin may be called from several threads at once; [`crate::Plugin`] is `Sync`.
//!
//! Layout on 64-bit targets (offsets in bytes):
//!
//! ```text
//! PluginDescriptor (72)                  HostTable (32)
//!  0 abi_version  u32                     0 abi_version  u32
//!  4 struct_size  u32                     4 struct_size  u32
//!  8 name         StrRef {ptr, len}       8 context      *const c_void
//! 24 version      StrRef                 16 call(ctx, method ptr, len, params ptr, len) -> Buffer
//! 40 api_version  StrRef                 24 free(ctx, Buffer)
//! 56 call(method ptr, len, params ptr, len, host *const HostTable) -> Buffer
//! 64 free(Buffer)
//!
//! Buffer (24): ptr *mut u8, len usize, cap usize        StrRef (16): ptr *const u8, len usize
//! ```

use std::ffi::c_void;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::ABI_VERSION;
use crate::messages::{HostError, HostErrorKind, HostResponse, PluginError, PluginResponse};

/// Name of the one symbol a plugin exports. [`crate::export_plugin!`] generates it.
pub const ENTRY_SYMBOL: &str = "certvakt_plugin_v1";

/// The type of [`ENTRY_SYMBOL`].
pub type EntryFn = extern "C" fn() -> *const PluginDescriptor;

/// The plugin's `call`: `method` and `params` are borrowed for the duration of the call; the
/// returned buffer holds a serialised [`PluginResponse`] and belongs to the plugin.
pub type PluginCallFn = unsafe extern "C" fn(
    method: *const u8,
    method_len: usize,
    params: *const u8,
    params_len: usize,
    host: *const HostTable,
) -> Buffer;

/// The plugin's `free`, for buffers its `call` returned.
pub type PluginFreeFn = unsafe extern "C" fn(buffer: Buffer);

/// The host's `call`: answers one host request (a serialised [`HostResponse`] in a buffer
/// that belongs to the host).
pub type HostCallFn = unsafe extern "C" fn(
    context: *const c_void,
    method: *const u8,
    method_len: usize,
    params: *const u8,
    params_len: usize,
) -> Buffer;

/// The host's `free`, for buffers its `call` returned.
pub type HostFreeFn = unsafe extern "C" fn(context: *const c_void, buffer: Buffer);

/// Bytes handed across the boundary; freed only by the side that allocated them.
#[repr(C)]
#[derive(Debug)]
pub struct Buffer {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl Buffer {
    /// Gives up a `Vec`'s allocation; the same side must later turn it back with
    /// [`Buffer::into_vec`].
    pub fn from_vec(bytes: Vec<u8>) -> Buffer {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        Buffer {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            cap: bytes.capacity(),
        }
    }

    /// Takes the allocation back.
    ///
    /// # Safety
    /// `self` must have come from [`Buffer::from_vec`] in this same binary (same allocator),
    /// unchanged, and not have been turned back before.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        // SAFETY: the caller promises ptr/len/cap are exactly what `from_vec` took from a Vec
        // of this binary's allocator, so rebuilding that Vec is sound.
        unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) }
    }

    /// The bytes, borrowed.
    ///
    /// # Safety
    /// `ptr` must point to `len` initialised bytes that stay alive and unchanged while the
    /// slice is used (true for a buffer returned by a `call` until it is passed to `free`).
    pub unsafe fn as_bytes(&self) -> &[u8] {
        if self.len == 0 || self.ptr.is_null() {
            return &[];
        }
        // SAFETY: non-null and `len` readable bytes by the caller's promise.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Borrowed UTF-8 text (not NUL-terminated).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct StrRef {
    pub ptr: *const u8,
    pub len: usize,
}

impl StrRef {
    /// Points at a string in static memory.
    pub const fn from_static(text: &'static str) -> StrRef {
        StrRef {
            ptr: text.as_ptr(),
            len: text.len(),
        }
    }

    /// The text, or `None` if it is not UTF-8.
    ///
    /// # Safety
    /// `ptr` must point to `len` bytes that stay alive and unchanged for `'a`.
    pub unsafe fn to_str<'a>(self) -> Option<&'a str> {
        if self.len == 0 {
            return Some("");
        }
        if self.ptr.is_null() {
            return None;
        }
        // SAFETY: non-null and `len` readable bytes for 'a by the caller's promise.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        std::str::from_utf8(bytes).ok()
    }
}

/// What [`ENTRY_SYMBOL`] returns: who the plugin is and how to call it.
#[repr(C)]
#[derive(Debug)]
pub struct PluginDescriptor {
    /// [`ABI_VERSION`] the plugin was built with. Read first, with `struct_size`.
    pub abi_version: u32,
    /// `size_of::<PluginDescriptor>()` in the plugin's build; grows when fields are appended.
    pub struct_size: u32,
    /// The plugin's name, as `[[certificate]] plugin = "…"` refers to it.
    pub name: StrRef,
    /// The plugin's own version.
    pub version: StrRef,
    /// The plugin API version the plugin was built against ([`crate::PLUGIN_API_VERSION`]).
    pub api_version: StrRef,
    pub call: PluginCallFn,
    pub free: PluginFreeFn,
}

/// The first two fields every table starts with; read before anything else.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TableHeader {
    pub abi_version: u32,
    pub struct_size: u32,
}

/// A descriptor in a plugin's static memory. Only [`crate::export_plugin!`] needs this.
#[repr(transparent)]
#[derive(Debug)]
pub struct StaticDescriptor(PluginDescriptor);

// SAFETY: the descriptor is immutable; its pointers point at `'static` strings and its
// functions are safe to call from any thread (the plugin is `Sync`).
unsafe impl Sync for StaticDescriptor {}

impl StaticDescriptor {
    /// The descriptor of the plugin `name` `version`, whose `call` is `call`. `call` is
    /// generated by [`crate::export_plugin!`] and forwards to [`plugin_call`].
    pub const fn new(
        name: &'static str,
        version: &'static str,
        call: PluginCallFn,
    ) -> StaticDescriptor {
        StaticDescriptor(PluginDescriptor {
            abi_version: ABI_VERSION,
            struct_size: size_of::<PluginDescriptor>() as u32,
            name: StrRef::from_static(name),
            version: StrRef::from_static(version),
            api_version: StrRef::from_static(crate::PLUGIN_API_VERSION),
            call,
            free: plugin_free,
        })
    }

    pub const fn as_ptr(&'static self) -> *const PluginDescriptor {
        &self.0
    }
}

/// The plugin side of `call`: turns the raw arguments into slices and a checked host table,
/// runs `dispatch` (the export macro's: decode, call the trait method, encode), catches
/// panics, and returns the response in a buffer for [`plugin_free`].
///
/// # Safety
/// `method`/`params` must point to `method_len`/`params_len` readable bytes and `host` to a
/// [`HostTable`] built by the host, all valid for the duration of the call (the host's side of
/// the ABI contract).
pub unsafe fn plugin_call(
    dispatch: impl FnOnce(&str, &[u8], &HostTable) -> Vec<u8>,
    method: *const u8,
    method_len: usize,
    params: *const u8,
    params_len: usize,
    host: *const HostTable,
) -> Buffer {
    let response = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host passes `method_len` readable bytes at `method` (ABI contract).
        let method = unsafe { raw_slice(method, method_len) };
        // SAFETY: as above, for the request parameters.
        let params = unsafe { raw_slice(params, params_len) };
        let Some(method) = std::str::from_utf8(method).ok() else {
            return encode_plugin_error(PluginError::permanent(
                "the host sent a method name that is not UTF-8",
            ));
        };
        // SAFETY: `host` is null or points at a table the host keeps alive for this call.
        let table = match unsafe { checked_host_table(host) } {
            Ok(table) => table,
            Err(problem) => return encode_plugin_error(PluginError::permanent(problem)),
        };
        dispatch(method, params, table)
    }))
    .unwrap_or_else(|panic| {
        encode_plugin_error(PluginError::permanent(format!(
            "plugin panicked: {}",
            panic_message(panic.as_ref())
        )))
    });
    Buffer::from_vec(response)
}

/// The plugin side of `free`.
///
/// # Safety
/// `buffer` must be one that this plugin's `call` returned, passed back exactly once.
pub unsafe extern "C" fn plugin_free(buffer: Buffer) {
    // SAFETY: by the caller's promise the buffer came from `Buffer::from_vec` in this library.
    drop(unsafe { buffer.into_vec() });
}

/// Checks a host table's header before the rest of it is read.
///
/// # Safety
/// `host` must be null or point to at least a [`TableHeader`] that stays valid for `'a`, and
/// to a whole [`HostTable`] if the header says it is one.
unsafe fn checked_host_table<'a>(host: *const HostTable) -> Result<&'a HostTable, String> {
    if host.is_null() {
        return Err("the host passed no host table".into());
    }
    // SAFETY: non-null and at least a header by the caller's promise.
    let header = unsafe { host.cast::<TableHeader>().read() };
    if header.abi_version != ABI_VERSION {
        return Err(format!(
            "the host's table has ABI version {}, this plugin speaks ABI version {ABI_VERSION}",
            header.abi_version
        ));
    }
    if (header.struct_size as usize) < size_of::<HostTable>() {
        return Err(format!(
            "the host's table is {} bytes, this plugin needs at least {}",
            header.struct_size,
            size_of::<HostTable>()
        ));
    }
    // SAFETY: the header says the whole table is there; the host keeps it alive for 'a.
    Ok(unsafe { &*host })
}

/// # Safety
/// `ptr` must point to `len` readable bytes valid for `'a` (or `len` must be 0).
unsafe fn raw_slice<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 || ptr.is_null() {
        return &[];
    }
    // SAFETY: non-null, `len` readable bytes by the caller's promise.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

fn encode_plugin_error(error: PluginError) -> Vec<u8> {
    serde_json::to_vec(&PluginResponse::Error(error)).unwrap_or_else(|_| {
        br#"{"response":"error","result":{"kind":"permanent","message":"plugin could not encode its error"}}"#
            .to_vec()
    })
}

/// The text of a panic payload (`panic!("…")` carries a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// What the host offers a plugin during one call: one message-based entry point and its
/// `free`. Built by the host with [`LocalHostTable::new`]; the plugin reaches it through [`Host`].
///
/// The fields are private so that a `&HostTable` in safe code is always one the host built
/// (or one a plugin received through the ABI and checked), whose `context` is alive.
#[repr(C)]
pub struct HostTable {
    abi_version: u32,
    struct_size: u32,
    context: *const c_void,
    call: HostCallFn,
    free: HostFreeFn,
}

impl fmt::Debug for HostTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostTable")
            .field("abi_version", &self.abi_version)
            .field("struct_size", &self.struct_size)
            .finish_non_exhaustive()
    }
}

/// Something that answers host calls: a method name and serialised
/// [`crate::messages::HostRequest`] parameters in, a serialised [`HostResponse`] out.
/// The daemon implements it over its services; [`crate::testing::FakeHost`] over its fakes.
pub trait HostCallHandler: Sync {
    fn host_call(&self, method: &str, params: &[u8]) -> Vec<u8>;
}

/// A [`HostTable`] that points at a handler, valid while the handler is borrowed.
pub struct LocalHostTable<'a> {
    table: HostTable,
    _handler: PhantomData<&'a dyn HostCallHandler>,
}

impl fmt::Debug for LocalHostTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.table.fmt(f)
    }
}

impl<'a> LocalHostTable<'a> {
    /// A table whose `call` answers through `handler`. Panics in the handler become a
    /// [`HostResponse::Error`]; they never unwind into the plugin.
    pub fn new<H: HostCallHandler>(handler: &'a H) -> LocalHostTable<'a> {
        LocalHostTable {
            table: HostTable {
                abi_version: ABI_VERSION,
                struct_size: size_of::<HostTable>() as u32,
                context: (handler as *const H).cast::<c_void>(),
                call: host_call_trampoline::<H>,
                free: host_free,
            },
            _handler: PhantomData,
        }
    }

    /// The table, to pass to a plugin's `call` (as a pointer) or to [`Host`].
    pub fn table(&self) -> &HostTable {
        &self.table
    }
}

impl HostTable {
    /// Calls the host: `method` and serialised parameters in, serialised response out.
    pub fn call(&self, method: &str, params: &[u8]) -> Vec<u8> {
        // SAFETY: `self` is either built by `LocalHostTable::new` (context is the borrowed handler,
        // alive while the `LocalHostTable` is) or received through the ABI and checked by
        // `checked_host_table` (the host keeps it alive during the plugin call). The pointers
        // passed are valid for the duration of the call.
        let buffer = unsafe {
            (self.call)(
                self.context,
                method.as_ptr(),
                method.len(),
                params.as_ptr(),
                params.len(),
            )
        };
        // SAFETY: the host's buffer is valid until it is handed back to its `free` below.
        let bytes = unsafe { buffer.as_bytes() }.to_vec();
        // SAFETY: the buffer came from this table's `call` and is handed back exactly once.
        unsafe { (self.free)(self.context, buffer) };
        bytes
    }
}

/// # Safety
/// `context` must be the `&H` that [`LocalHostTable::new`] stored, still alive; the other pointers
/// as for [`PluginCallFn`].
unsafe extern "C" fn host_call_trampoline<H: HostCallHandler>(
    context: *const c_void,
    method: *const u8,
    method_len: usize,
    params: *const u8,
    params_len: usize,
) -> Buffer {
    let answer = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `LocalHostTable::new` stored a `&H` here, borrowed for the table's lifetime.
        let handler = unsafe { &*context.cast::<H>() };
        // SAFETY: the plugin passes `method_len` readable bytes at `method` (ABI contract).
        let method = unsafe { raw_slice(method, method_len) };
        // SAFETY: as above, for the parameters.
        let params = unsafe { raw_slice(params, params_len) };
        match std::str::from_utf8(method) {
            Ok(method) => handler.host_call(method, params),
            Err(_) => encode_host_error(HostError::new(
                HostErrorKind::Invalid,
                "the plugin sent a method name that is not UTF-8",
            )),
        }
    }))
    .unwrap_or_else(|panic| {
        encode_host_error(HostError::new(
            HostErrorKind::Failed,
            format!(
                "the host service panicked: {}",
                panic_message(panic.as_ref())
            ),
        ))
    });
    Buffer::from_vec(answer)
}

/// # Safety
/// `buffer` must come from `host_call_trampoline` of this binary, passed back once.
unsafe extern "C" fn host_free(_context: *const c_void, buffer: Buffer) {
    // SAFETY: by the caller's promise the buffer came from `Buffer::from_vec` in this binary.
    drop(unsafe { buffer.into_vec() });
}

fn encode_host_error(error: HostError) -> Vec<u8> {
    serde_json::to_vec(&HostResponse::Error(error)).unwrap_or_else(|_| {
        br#"{"response":"error","result":{"kind":"failed","message":"host could not encode its error"}}"#
            .to_vec()
    })
}

/// Whether a plugin built against `plugin` api version fits a host built against `host`.
///
/// While the API is 0.x, major and minor must both match (0.x minors may break messages);
/// from 1.0, majors must match and the plugin's minor must not be newer than the host's
/// (minors only add). Pre-release and build suffixes are ignored.
pub fn check_api_version(host: &str, plugin: &str) -> Result<(), VersionMismatch> {
    let mismatch = |rule: &'static str| VersionMismatch {
        host: host.to_owned(),
        plugin: plugin.to_owned(),
        rule,
    };
    let (Some(h), Some(p)) = (major_minor(host), major_minor(plugin)) else {
        return Err(mismatch("versions must look like MAJOR.MINOR.PATCH"));
    };
    if h.0 == 0 || p.0 == 0 {
        if h != p {
            return Err(mismatch("while the API is 0.x, major.minor must match"));
        }
        return Ok(());
    }
    if h.0 != p.0 {
        return Err(mismatch("major versions must match"));
    }
    if p.1 > h.1 {
        return Err(mismatch(
            "the plugin's minor version must not be newer than the host's",
        ));
    }
    Ok(())
}

fn major_minor(version: &str) -> Option<(u64, u64)> {
    let core = version.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let _patch: u64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor))
}

/// A plugin-api version that does not fit; the message names both versions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "plugin built against certvakt-plugin-api {plugin}, this certvaktd uses {host} ({rule}): rebuild the plugin against certvakt-plugin-api {host}"
)]
pub struct VersionMismatch {
    pub host: String,
    pub plugin: String,
    pub rule: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_the_documented_ones() {
        assert_eq!(size_of::<Buffer>(), 3 * size_of::<usize>());
        assert_eq!(size_of::<StrRef>(), 2 * size_of::<usize>());
        assert_eq!(std::mem::offset_of!(PluginDescriptor, abi_version), 0);
        assert_eq!(std::mem::offset_of!(PluginDescriptor, struct_size), 4);
        assert_eq!(std::mem::offset_of!(HostTable, abi_version), 0);
        assert_eq!(std::mem::offset_of!(HostTable, struct_size), 4);
        if size_of::<usize>() == 8 {
            assert_eq!(size_of::<PluginDescriptor>(), 72);
            assert_eq!(std::mem::offset_of!(PluginDescriptor, call), 56);
            assert_eq!(size_of::<HostTable>(), 32);
        }
    }

    #[test]
    fn api_versions_fit_by_the_documented_rules() {
        assert!(check_api_version("0.1.0", "0.1.7").is_ok());
        assert!(check_api_version("0.1.0-rc.1", "0.1.2").is_ok());
        let err = check_api_version("0.1.0", "0.2.0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "plugin built against certvakt-plugin-api 0.2.0, this certvaktd uses 0.1.0 (while the API is 0.x, major.minor must match): rebuild the plugin against certvakt-plugin-api 0.1.0"
        );
        assert!(check_api_version("0.1.0", "1.1.0").is_err());
        assert!(check_api_version("1.4.0", "1.2.9").is_ok());
        assert!(check_api_version("1.2.0", "1.4.0").is_err());
        assert!(check_api_version("2.0.0", "1.0.0").is_err());
        assert!(check_api_version("0.1.0", "zero").is_err());
        assert!(check_api_version("0.1.0", "0.1").is_err());
    }

    #[test]
    fn buffers_round_trip_through_their_parts() {
        let buffer = Buffer::from_vec(b"hello".to_vec());
        // SAFETY: the buffer was just made from a Vec and is turned back once.
        let bytes = unsafe {
            assert_eq!(buffer.as_bytes(), b"hello");
            buffer.into_vec()
        };
        assert_eq!(bytes, b"hello");
    }

    struct Echo;
    impl HostCallHandler for Echo {
        fn host_call(&self, method: &str, params: &[u8]) -> Vec<u8> {
            if method == "boom" {
                panic!("echo asked to fail");
            }
            [method.as_bytes(), b":", params].concat()
        }
    }

    #[test]
    fn host_table_calls_its_handler_and_catches_its_panics() {
        let echo = Echo;
        let local = LocalHostTable::new(&echo);
        assert_eq!(local.table().call("now", b"{}"), b"now:{}");
        let answer: HostResponse =
            serde_json::from_slice(&local.table().call("boom", b"")).expect("an encoded error");
        match answer {
            HostResponse::Error(error) => {
                assert_eq!(error.kind, HostErrorKind::Failed);
                assert_eq!(
                    error.message,
                    "the host service panicked: echo asked to fail"
                );
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }
}
