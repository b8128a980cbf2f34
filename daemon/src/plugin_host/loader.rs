//! Opening a plugin file and reading its descriptor: the daemon's only `unsafe` code.
//!
//! Contract:
//! - [`open`] `dlopen`s one file (`RTLD_NOW`, so a missing symbol fails here and not in the
//!   middle of a renewal; `RTLD_LOCAL`, so plugins do not see each other's symbols), finds
//!   [`ENTRY_SYMBOL`], calls it, and reads the descriptor in the order the ABI prescribes:
//!   the header (`abi_version`, `struct_size`) first, the rest only once both fit.
//! - Nothing is ever unloaded. `dlclose` on a Rust cdylib that has run code is unsound: its
//!   thread-local destructors stay registered with the C library and run, after the unload,
//!   on code that is gone (rust-lang/rust#88737). So every opened library is leaked for the
//!   life of the process, refused ones included (their initialisers have run), and a
//!   [`RawPlugin`] can hold `'static` references into it.
//! - [`RawPlugin::call`] is safe to call once a descriptor has passed [`open`]: it follows
//!   the buffer rules of [`certvakt_plugin_api::abi`] (copy the plugin's answer, then hand the
//!   buffer back to the plugin's own `free`).
//!
//! What `open` cannot check: that the library's code is well-behaved. Loading it runs its
//! initialisers inside certvaktd; that is why the caller checks ownership and permissions of
//! the file and its folder before calling [`open`].

// The plugin boundary is C: dlopen, a symbol, raw pointers into the plugin's memory. This is
// one of the two places the workspace lets `unsafe` in (the other is plugin-api's `abi`).
#![allow(unsafe_code)]

use std::path::Path;

use certvakt_plugin_api::ABI_VERSION;
use certvakt_plugin_api::abi::{ENTRY_SYMBOL, EntryFn, HostTable, PluginDescriptor, TableHeader};
use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};

use super::RefusalReason;

/// What a plugin's descriptor says, read and checked.
#[derive(Debug)]
pub(super) struct Opened {
    pub name: String,
    pub version: String,
    pub api_version: String,
    pub raw: RawPlugin,
}

/// A loaded plugin's `call` and `free`, callable from any thread.
#[derive(Debug, Clone, Copy)]
pub(super) struct RawPlugin {
    descriptor: &'static PluginDescriptor,
}

// SAFETY: the descriptor is immutable static data of a library that is never unloaded, and
// the ABI requires a plugin's `call` and `free` to be callable from any thread (the SDK's
// `Plugin` trait is `Send + Sync`).
unsafe impl Send for RawPlugin {}
// SAFETY: as above; `RawPlugin` only reads the descriptor.
unsafe impl Sync for RawPlugin {}

impl RawPlugin {
    /// Calls the plugin: `method` and JSON `params` in, the plugin's JSON answer out.
    /// `host` must stay alive for the call, which the borrow guarantees.
    pub(super) fn call(&self, method: &str, params: &[u8], host: &HostTable) -> Vec<u8> {
        let d = self.descriptor;
        // SAFETY: `d.call` comes from a descriptor that passed `open` (right ABI and size) of a
        // library that stays loaded. The pointers passed are valid for the call's duration:
        // `method`, `params` and `host` are borrowed for it.
        let buffer = unsafe {
            (d.call)(
                method.as_ptr(),
                method.len(),
                params.as_ptr(),
                params.len(),
                host,
            )
        };
        // SAFETY: a buffer the plugin's `call` returned is valid until it goes to its `free`.
        let bytes = unsafe { buffer.as_bytes() }.to_vec();
        // SAFETY: the buffer came from this plugin's `call` and is handed back exactly once.
        unsafe { (d.free)(buffer) };
        bytes
    }
}

/// Opens `file` and reads its descriptor. The library stays loaded whatever the outcome.
pub(super) fn open(file: &Path) -> Result<Opened, RefusalReason> {
    // SAFETY: loading runs the library's initialisers. The caller has checked that the file
    // and its folder are owned by root or the service user and not writable by others, so
    // this is code the administrator installed as a plugin; nothing is unloaded, so no
    // termination routine runs on our behalf.
    let library = unsafe { Library::open(Some(file), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| RefusalReason::NotLoadable(error_chain(&e)))?;
    // Leaked on purpose: see the module documentation (never dlclose a Rust cdylib).
    let library: &'static Library = Box::leak(Box::new(library));

    // SAFETY: the symbol's type is the ABI's `EntryFn`, which every certvakt plugin exports
    // under this name; a library exporting the name with another type is not one the ABI
    // can protect against (and would have to be malicious, see `open`'s caller).
    let entry = match unsafe { library.get::<EntryFn>(ENTRY_SYMBOL) } {
        Ok(symbol) => *symbol,
        Err(_) => return Err(RefusalReason::NotAPlugin),
    };
    let descriptor = entry();
    // SAFETY: `descriptor` is what the entry point returned: null or a pointer into the
    // library's static memory, which stays loaded.
    unsafe { read_descriptor(descriptor) }
}

/// Reads a descriptor header first, and the rest only if the header fits.
///
/// # Safety
/// `descriptor` must be null or point to memory that stays valid for the process's life and
/// holds at least a [`TableHeader`], and a whole [`PluginDescriptor`] if the header's
/// `struct_size` says so; the strings it points to must stay valid too.
unsafe fn read_descriptor(descriptor: *const PluginDescriptor) -> Result<Opened, RefusalReason> {
    if descriptor.is_null() {
        return Err(RefusalReason::BadDescriptor(
            "its entry point returned no descriptor".into(),
        ));
    }
    // SAFETY: non-null and at least a header, by the caller's promise. `read_unaligned`
    // because nothing promises a foreign pointer is aligned.
    let header = unsafe { descriptor.cast::<TableHeader>().read_unaligned() };
    if header.abi_version != ABI_VERSION {
        return Err(RefusalReason::AbiVersion {
            plugin: header.abi_version,
            host: ABI_VERSION,
        });
    }
    let needed = size_of::<PluginDescriptor>();
    if (header.struct_size as usize) < needed {
        return Err(RefusalReason::DescriptorSize {
            size: header.struct_size,
            needed,
        });
    }
    if !descriptor.is_aligned() {
        return Err(RefusalReason::BadDescriptor(
            "its descriptor is not aligned".into(),
        ));
    }
    // SAFETY: the header says a whole descriptor of this ABI is there, and it is aligned; it
    // lives in the library's static memory, which is never unloaded.
    let d: &'static PluginDescriptor = unsafe { &*descriptor };
    // SAFETY: the descriptor's strings point into the plugin's static memory, never unloaded.
    let (name, version, api_version) =
        unsafe { (d.name.to_str(), d.version.to_str(), d.api_version.to_str()) };
    let text = |value: Option<&str>, what: &str| {
        value.map(str::to_owned).ok_or_else(|| {
            RefusalReason::BadDescriptor(format!("its descriptor's {what} is not UTF-8"))
        })
    };
    Ok(Opened {
        name: text(name, "name")?,
        version: text(version, "version")?,
        api_version: text(api_version, "API version")?,
        raw: RawPlugin { descriptor: d },
    })
}

/// `dlopen failed: /x.so: invalid ELF header`: libloading's error with its cause.
fn error_chain(error: &libloading::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use certvakt_plugin_api::abi::{Buffer, StrRef, plugin_free};

    unsafe extern "C" fn never(
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: *const HostTable,
    ) -> Buffer {
        Buffer::from_vec(Vec::new())
    }

    fn descriptor(struct_size: u32, name: &'static [u8]) -> &'static PluginDescriptor {
        Box::leak(Box::new(PluginDescriptor {
            abi_version: ABI_VERSION,
            struct_size,
            name: StrRef {
                ptr: name.as_ptr(),
                len: name.len(),
            },
            version: StrRef::from_static("1.0.0"),
            api_version: StrRef::from_static("0.1.0"),
            call: never,
            free: plugin_free,
        }))
    }

    #[test]
    fn a_short_descriptor_is_refused_before_it_is_read() {
        let d = descriptor(16, b"short");
        // SAFETY: a leaked, whole descriptor.
        let err = unsafe { read_descriptor(d) }.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "its descriptor is 16 bytes, plugin ABI version 1 needs at least {}: the plugin's build is broken",
                size_of::<PluginDescriptor>()
            )
        );
    }

    #[test]
    fn null_and_non_utf8_descriptors_are_refused() {
        // SAFETY: null is allowed.
        let err = unsafe { read_descriptor(std::ptr::null()) }.unwrap_err();
        assert_eq!(
            err.to_string(),
            "has a broken descriptor: its entry point returned no descriptor"
        );
        let d = descriptor(size_of::<PluginDescriptor>() as u32, b"\xff\xfe");
        // SAFETY: a leaked, whole descriptor.
        let err = unsafe { read_descriptor(d) }.unwrap_err();
        assert_eq!(
            err.to_string(),
            "has a broken descriptor: its descriptor's name is not UTF-8"
        );
    }

    #[test]
    fn a_whole_descriptor_is_read() {
        let d = descriptor(size_of::<PluginDescriptor>() as u32 + 8, b"grown");
        // SAFETY: a leaked descriptor; the extra size claims appended fields that a reader of
        // this ABI never touches.
        let opened = unsafe { read_descriptor(d) }.unwrap();
        assert_eq!(
            (
                opened.name.as_str(),
                opened.version.as_str(),
                opened.api_version.as_str()
            ),
            ("grown", "1.0.0", "0.1.0")
        );
    }
}
