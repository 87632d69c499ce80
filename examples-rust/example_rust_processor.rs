//! A processor in Rust built with rustc alone: marks every span `example.processed = true`
//! and drops spans named "drop-me", as examples-c/example_processor.c does.
//!   rustc --edition 2021 -O --crate-type cdylib -o example_rust_processor.so example_rust_processor.rs
#[path = "spanhost.rs"]
mod spanhost;

use spanhost::*;
use std::os::raw::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

unsafe extern "C" fn create(_config: *const Config, instance: *mut Instance, state: *mut *mut c_void, _status: *mut Status) -> i32 {
    *state = instance; // no state of our own: keep the host handle
    OK
}

unsafe extern "C" fn process(state: *mut c_void, batch: *mut Batch, status: *mut Status) -> i32 {
    // A panic must not unwind into the host (it would abort the process): it fails the batch.
    match catch_unwind(AssertUnwindSafe(|| mark(state, batch))) {
        Ok(code) => code,
        Err(_) => {
            (*status).say("the processor panicked");
            PERMANENT
        }
    }
}

unsafe fn mark(state: *mut c_void, batch: *mut Batch) -> i32 {
    let key = Str::of("example.processed");
    let yes = Value { type_: VALUE_BOOL, reserved: 0, as_: [1, 0] };
    for span in (*batch).spans() {
        if (*span).name.bytes() == b"drop-me" {
            (*span).host_flags |= SPAN_DROP; // the host removes it after we return
            (host().counter_add)(state, b"dropped_by_name\0".as_ptr() as *const c_char, 1);
            continue;
        }
        // The key is a static string: lend it (1.8) instead of having the host copy it.
        let lent = if host_has(host(), offset!(HostApi, set_attribute_lent), 8) { host().set_attribute_lent } else { None };
        let set = lent.unwrap_or(host().set_attribute);
        if set(batch, &mut (*span).attributes, key, &yes) != 0 {
            return RETRYABLE;
        }
    }
    OK
}

unsafe extern "C" fn destroy(_state: *mut c_void) {}

static NO_KEYS: Keys<0> = Keys([]);

static PLUGIN: Plugin = Plugin {
    struct_size: std::mem::size_of::<Plugin>() as u32,
    abi_major: ABI_MAJOR,
    abi_minor: ABI_MINOR,
    kind: KIND_PROCESSOR,
    flags: PLUGIN_CONCURRENT,
    name: b"example_rust_processor\0".as_ptr() as *const c_char,
    version: b"0.1.0\0".as_ptr() as *const c_char,
    description: b"tags spans and drops ones named drop-me (Rust)\0".as_ptr() as *const c_char,
    create: Some(create),
    start: None,
    process: Some(process),
    export_batch: None,
    notify: None,
    flush: None,
    destroy: Some(destroy),
    config_schema: &NO_KEYS.0 as *const [ConfigKey; 0] as *const ConfigKey,
    config_schema_count: 0,
    functions: std::ptr::null(),
    functions_count: 0,
    validate: None,
};

plugin_entry!(PLUGIN);
