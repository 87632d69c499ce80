//! An exporter in Rust built with rustc alone: logs one line per batch with its span count
//! and keeps a running total in the counter `rust_spans`, as examples-c/example_exporter.c.
//! Config: `prefix` (string, optional).
//!   rustc --edition 2021 -O --crate-type cdylib -o example_rust_exporter.so example_rust_exporter.rs
#[path = "spanhost.rs"]
mod spanhost;

use spanhost::*;
use std::os::raw::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

struct State {
    instance: *mut Instance,
    prefix: Vec<u8>,
    spans: u32, // a counter handle (1.8), or 0 on older hosts
}

unsafe extern "C" fn create(config: *const Config, instance: *mut Instance, state: *mut *mut c_void, status: *mut Status) -> i32 {
    let mut prefix = Str { ptr: std::ptr::null(), len: 0 };
    if (host().config_string)(config, b"prefix\0".as_ptr() as *const c_char, &mut prefix) == 2 {
        (*status).say("prefix: must be a string");
        return PERMANENT;
    }
    let spans = match host().counter_declare {
        Some(declare) if host_has(host(), offset!(HostApi, counter_declare), 8) => declare(instance, b"rust_spans\0".as_ptr() as *const c_char),
        _ => 0,
    };
    let boxed = Box::new(State { instance, prefix: prefix.bytes().to_vec(), spans });
    *state = Box::into_raw(boxed) as *mut c_void;
    OK
}

unsafe extern "C" fn export_batch(state: *mut c_void, batch: *const Batch, status: *mut Status) -> i32 {
    match catch_unwind(AssertUnwindSafe(|| export(&*(state as *const State), &*batch))) {
        Ok(code) => code,
        Err(_) => {
            (*status).say("the exporter panicked");
            PERMANENT
        }
    }
}

unsafe fn export(state: &State, batch: &Batch) -> i32 {
    let count = batch.spans().len();
    let mut line = state.prefix.clone();
    line.extend_from_slice(format!("exported {} spans", count).as_bytes());
    (host().log)(state.instance, LOG_INFO, line.as_ptr() as *const c_char, line.len());
    match host().counter_add_id {
        Some(add) if state.spans != 0 => add(state.instance, state.spans, count as i64),
        _ => (host().counter_add)(state.instance, b"rust_spans\0".as_ptr() as *const c_char, count as i64),
    }
    OK
}

unsafe extern "C" fn destroy(state: *mut c_void) {
    drop(Box::from_raw(state as *mut State));
}

static KEYS: Keys<1> = Keys([ConfigKey {
    path: b"prefix\0".as_ptr() as *const c_char,
    type_: 1, // SPANHOST_TYPE_STRING
    required: 0,
    default_value: std::ptr::null(),
    doc: b"text put before each log line\0".as_ptr() as *const c_char,
}]);

static PLUGIN: Plugin = Plugin {
    struct_size: std::mem::size_of::<Plugin>() as u32,
    abi_major: ABI_MAJOR,
    abi_minor: ABI_MINOR,
    kind: KIND_EXPORTER,
    flags: 0,
    name: b"example_rust_exporter\0".as_ptr() as *const c_char,
    version: b"0.1.0\0".as_ptr() as *const c_char,
    description: b"logs span counts (Rust)\0".as_ptr() as *const c_char,
    create: Some(create),
    start: None,
    process: None,
    export_batch: Some(export_batch),
    notify: None,
    flush: None,
    destroy: Some(destroy),
    config_schema: &KEYS.0 as *const [ConfigKey; 1] as *const ConfigKey,
    config_schema_count: 1,
    functions: std::ptr::null(),
    functions_count: 0,
    validate: None,
};

plugin_entry!(PLUGIN);
