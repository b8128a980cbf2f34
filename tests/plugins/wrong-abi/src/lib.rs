//! A shared library that exports `certvakt_plugin_v1` but claims ABI version 999: what a
//! plugin built for a future certvaktd looks like to this one. The plugin host's tests check
//! that it is refused with both versions named, before anything else of it is read or called.

// The descriptor is written by hand instead of by `export_plugin!`, to get the version wrong;
// that needs the unsafe attribute and impl below.
#![allow(unsafe_code)]

use certvakt_plugin_api::abi::{Buffer, HostTable, PluginDescriptor, StrRef, plugin_free};

/// Never called: the host refuses the plugin first. Answers with an empty buffer if it is.
unsafe extern "C" fn call(
    _method: *const u8,
    _method_len: usize,
    _params: *const u8,
    _params_len: usize,
    _host: *const HostTable,
) -> Buffer {
    Buffer::from_vec(Vec::new())
}

struct Descriptor(PluginDescriptor);

// SAFETY: immutable, and every pointer in it points at static strings.
unsafe impl Sync for Descriptor {}

static DESCRIPTOR: Descriptor = Descriptor(PluginDescriptor {
    abi_version: 999,
    struct_size: size_of::<PluginDescriptor>() as u32,
    name: StrRef::from_static("wrong-abi"),
    version: StrRef::from_static(env!("CARGO_PKG_VERSION")),
    api_version: StrRef::from_static(certvakt_plugin_api::PLUGIN_API_VERSION),
    call,
    free: plugin_free,
});

/// The entry point, with the wrong ABI version in what it returns.
#[unsafe(no_mangle)]
pub extern "C" fn certvakt_plugin_v1() -> *const PluginDescriptor {
    &DESCRIPTOR.0
}
