//! A hand-written mirror of the parts of include/spanhost/spanhost.h (ABI 1.8) that the
//! examples use, with no crates. Every struct is `#[repr(C)]` with the header's fields in the
//! header's order; host functions the examples never call are typed as `Unused` (a nullable
//! function pointer of the same size) so the table keeps its positions. `layout()` reports what
//! this mirror believes, and `make test` compares it with `spanhost abi --json`.
#![allow(dead_code, non_camel_case_types)]

use std::os::raw::{c_char, c_void};

pub const ABI_MAJOR: u16 = 1;
pub const ABI_MINOR: u16 = 8;

pub const OK: i32 = 0;
pub const RETRYABLE: i32 = 1;
pub const PERMANENT: i32 = 2;

pub const KIND_EXPORTER: u32 = 1;
pub const KIND_PROCESSOR: u32 = 2;
pub const PLUGIN_CONCURRENT: u32 = 1;

pub const VALUE_BOOL: u32 = 2;
pub const SPAN_DROP: u32 = 1;
pub const LOG_INFO: u32 = 1;

/// A host function this mirror does not call: only its slot in the table matters.
pub type Unused = Option<unsafe extern "C" fn()>;
/// Opaque host handles.
pub type Config = c_void;
pub type Instance = c_void;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Str {
    pub ptr: *const c_char,
    pub len: usize,
}

impl Str {
    pub const fn of(s: &'static str) -> Str {
        Str { ptr: s.as_ptr() as *const c_char, len: s.len() }
    }
    /// The bytes of the view (borrowed from whoever owns them).
    pub unsafe fn bytes<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() { &[] } else { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

#[repr(C)]
pub struct Status {
    pub struct_size: u32,
    pub retry_after_ms: u32,
    pub message: *mut c_char,
    pub message_cap: usize,
}

impl Status {
    /// Writes `text` as the NUL-terminated message, cut to the host's capacity.
    pub unsafe fn say(&mut self, text: &str) {
        if self.message.is_null() || self.message_cap == 0 { return; }
        let n = text.len().min(self.message_cap - 1);
        std::ptr::copy_nonoverlapping(text.as_ptr(), self.message as *mut u8, n);
        *self.message.add(n) = 0;
    }
}

#[repr(C)]
pub struct KvList {
    pub items: *mut Kv,
    pub count: usize,
}

/// spanhost_value: a type tag and a 16-byte union (a view, an integer, a double or a list).
#[repr(C)]
pub struct Value {
    pub type_: u32,
    pub reserved: u32,
    pub as_: [u64; 2],
}

#[repr(C)]
pub struct Kv {
    pub key: Str,
    pub value: Value,
}

#[repr(C)]
pub struct Span {
    pub struct_size: u32,
    pub flags: u32,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: [u8; 8],
    pub trace_state: Str,
    pub name: Str,
    pub kind: u32,
    pub status_code: u32,
    pub status_message: Str,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub attributes: KvList,
    pub events: *mut *mut c_void,
    pub events_count: usize,
    pub links: *mut *mut c_void,
    pub links_count: usize,
    pub dropped_attributes_count: u32,
    pub dropped_events_count: u32,
    pub dropped_links_count: u32,
    pub host_flags: u32,
}

#[repr(C)]
pub struct ScopeSpans {
    pub struct_size: u32,
    pub reserved: u32,
    pub scope: *mut c_void,
    pub schema_url: Str,
    pub spans: *mut *mut Span,
    pub spans_count: usize,
}

#[repr(C)]
pub struct ResourceSpans {
    pub struct_size: u32,
    pub reserved: u32,
    pub resource: *mut c_void,
    pub schema_url: Str,
    pub scope_spans: *mut *mut ScopeSpans,
    pub scope_spans_count: usize,
}

#[repr(C)]
pub struct Batch {
    pub struct_size: u32,
    pub reserved: u32,
    pub resource_spans: *mut *mut ResourceSpans,
    pub resource_spans_count: usize,
    pub client_metadata: KvList,
}

impl Batch {
    /// Every span of the batch, in order.
    pub unsafe fn spans(&self) -> Vec<*mut Span> {
        let mut out = Vec::new();
        for i in 0..self.resource_spans_count {
            let rs = &**self.resource_spans.add(i);
            for j in 0..rs.scope_spans_count {
                let ss = &**rs.scope_spans.add(j);
                for k in 0..ss.spans_count {
                    out.push(*ss.spans.add(k));
                }
            }
        }
        out
    }
}

/// spanhost_host_api, every slot in the header's order (`spanhost abi --json` lists it).
#[repr(C)]
pub struct HostApi {
    pub struct_size: u32,
    pub abi_major: u16,
    pub abi_minor: u16,
    pub log: unsafe extern "C" fn(*mut Instance, u32, *const c_char, usize),
    pub config_string: unsafe extern "C" fn(*const Config, *const c_char, *mut Str) -> u32,
    pub config_int: Unused,
    pub config_double: Unused,
    pub config_bool: Unused,
    pub config_count: Unused,
    pub config_key: Unused,
    pub arena_alloc: Unused,
    pub arena_strdup: Unused,
    pub set_attribute: unsafe extern "C" fn(*mut Batch, *mut KvList, Str, *const Value) -> i32,
    pub remove_attribute: Unused,
    pub batch_new: Unused,
    pub batch_retain: Unused,
    pub batch_release: Unused,
    pub batch_add_span: Unused,
    pub emit: Unused,
    pub raise: Unused,
    pub counter_add: unsafe extern "C" fn(*mut Instance, *const c_char, i64),
    pub encode_batch: Unused,
    pub buffer_free: Unused,
    pub gzip: Unused,
    pub encode_notification: Unused,
    pub encode_value: Unused,
    pub config_duration: Unused,
    pub config_bytes: Unused,
    pub config_string_list: Unused,
    pub gauge_set: Unused,
    pub expr_compile: Unused,
    pub expr_run: Unused,
    pub expr_free: Unused,
    pub release_trace: Unused,
    pub expr_infer_context: Unused,
    pub counter_declare: Option<unsafe extern "C" fn(*mut Instance, *const c_char) -> u32>,
    pub counter_add_id: Option<unsafe extern "C" fn(*mut Instance, u32, i64)>,
    pub gauge_declare: Unused,
    pub gauge_set_id: Unused,
    pub set_attribute_lent: Option<unsafe extern "C" fn(*mut Batch, *mut KvList, Str, *const Value) -> i32>,
}

/// SPANHOST_HOST_HAS: the host's table reaches past `offset + size` of a member.
pub fn host_has(host: &HostApi, offset: usize, size: usize) -> bool {
    host.struct_size as usize >= offset + size
}

#[repr(C)]
pub struct ConfigKey {
    pub path: *const c_char,
    pub type_: u32,
    pub required: u32,
    pub default_value: *const c_char,
    pub doc: *const c_char,
}

pub type CreateFn = unsafe extern "C" fn(*const Config, *mut Instance, *mut *mut c_void, *mut Status) -> i32;
pub type ProcessFn = unsafe extern "C" fn(*mut c_void, *mut Batch, *mut Status) -> i32;
pub type ExportFn = unsafe extern "C" fn(*mut c_void, *const Batch, *mut Status) -> i32;
pub type DestroyFn = unsafe extern "C" fn(*mut c_void);

#[repr(C)]
pub struct Plugin {
    pub struct_size: u32,
    pub abi_major: u16,
    pub abi_minor: u16,
    pub kind: u32,
    pub flags: u32,
    pub name: *const c_char,
    pub version: *const c_char,
    pub description: *const c_char,
    pub create: Option<CreateFn>,
    pub start: Unused,
    pub process: Option<ProcessFn>,
    pub export_batch: Option<ExportFn>,
    pub notify: Unused,
    pub flush: Unused,
    pub destroy: Option<DestroyFn>,
    pub config_schema: *const ConfigKey,
    pub config_schema_count: usize,
    pub functions: *const c_void,
    pub functions_count: usize,
    pub validate: Unused,
}

// The descriptor and schema are static and never change: safe to share between threads.
unsafe impl Sync for Plugin {}
pub struct Keys<const N: usize>(pub [ConfigKey; N]);
unsafe impl<const N: usize> Sync for Keys<N> {}

/// The offset of `field` in `T`, without offset_of! (Rust before 1.77 lacks it).
macro_rules! offset {
    ($t:ty, $f:ident) => {{
        let u = std::mem::MaybeUninit::<$t>::uninit();
        let base = u.as_ptr();
        unsafe { (std::ptr::addr_of!((*base).$f) as usize) - (base as usize) }
    }};
}
pub(crate) use offset;

/// What this mirror believes, one line per struct ("<c name> size <n>") and per field
/// ("<c name>.<field> offset <n>"), for `make test` to compare with `spanhost abi --json`.
pub fn layout() -> String {
    let mut out = String::new();
    let mut put = |name: &str, size: usize, fields: &[(&str, usize)]| {
        out += &format!("{} size {}\n", name, size);
        for (field, off) in fields {
            out += &format!("{}.{} offset {}\n", name, field, off);
        }
    };
    put("spanhost_str", std::mem::size_of::<Str>(), &[("ptr", offset!(Str, ptr)), ("len", offset!(Str, len))]);
    put("spanhost_status", std::mem::size_of::<Status>(), &[("retry_after_ms", offset!(Status, retry_after_ms)),
        ("message", offset!(Status, message)), ("message_cap", offset!(Status, message_cap))]);
    put("spanhost_value", std::mem::size_of::<Value>(), &[("type", offset!(Value, type_)), ("as", offset!(Value, as_))]);
    put("spanhost_kv", std::mem::size_of::<Kv>(), &[("key", offset!(Kv, key)), ("value", offset!(Kv, value))]);
    put("spanhost_span", std::mem::size_of::<Span>(), &[("name", offset!(Span, name)), ("attributes", offset!(Span, attributes)),
        ("host_flags", offset!(Span, host_flags))]);
    put("spanhost_scope_spans", std::mem::size_of::<ScopeSpans>(), &[("spans", offset!(ScopeSpans, spans)),
        ("spans_count", offset!(ScopeSpans, spans_count))]);
    put("spanhost_resource_spans", std::mem::size_of::<ResourceSpans>(), &[("scope_spans", offset!(ResourceSpans, scope_spans)),
        ("scope_spans_count", offset!(ResourceSpans, scope_spans_count))]);
    put("spanhost_batch", std::mem::size_of::<Batch>(), &[("resource_spans", offset!(Batch, resource_spans)),
        ("client_metadata", offset!(Batch, client_metadata))]);
    put("spanhost_host_api", std::mem::size_of::<HostApi>(), &[("log", offset!(HostApi, log)),
        ("set_attribute", offset!(HostApi, set_attribute)), ("counter_add", offset!(HostApi, counter_add)),
        ("counter_declare", offset!(HostApi, counter_declare)), ("counter_add_id", offset!(HostApi, counter_add_id)),
        ("set_attribute_lent", offset!(HostApi, set_attribute_lent))]);
    put("spanhost_config_key", std::mem::size_of::<ConfigKey>(), &[("doc", offset!(ConfigKey, doc))]);
    put("spanhost_plugin", std::mem::size_of::<Plugin>(), &[("create", offset!(Plugin, create)),
        ("process", offset!(Plugin, process)), ("export_batch", offset!(Plugin, export_batch)),
        ("destroy", offset!(Plugin, destroy)), ("config_schema", offset!(Plugin, config_schema)),
        ("validate", offset!(Plugin, validate))]);
    out
}

/// The host table, kept by the entry function; valid for the life of the process.
static HOST: std::sync::atomic::AtomicPtr<HostApi> = std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

pub fn host() -> &'static HostApi {
    unsafe { &*HOST.load(std::sync::atomic::Ordering::Acquire) }
}

pub fn set_host(api: *const HostApi) {
    HOST.store(api as *mut HostApi, std::sync::atomic::Ordering::Release);
}

/// The plugin's one exported entry function, returning `$plugin` (a static `Plugin`), and
/// `spanhost_rust_layout`, which `make test` reads to compare this mirror with the header.
#[macro_export]
macro_rules! plugin_entry {
    ($plugin:expr) => {
        #[no_mangle]
        pub unsafe extern "C" fn spanhost_plugin_entry(api: *const spanhost::HostApi) -> *const spanhost::Plugin {
            if (*api).abi_major != spanhost::ABI_MAJOR {
                return std::ptr::null();
            }
            spanhost::set_host(api);
            &$plugin
        }

        #[no_mangle]
        pub extern "C" fn spanhost_rust_layout() -> *const std::os::raw::c_char {
            use std::sync::atomic::{AtomicPtr, Ordering};
            static TEXT: AtomicPtr<std::os::raw::c_char> = AtomicPtr::new(std::ptr::null_mut());
            let made = std::ffi::CString::new(spanhost::layout()).unwrap().into_raw();
            match TEXT.compare_exchange(std::ptr::null_mut(), made, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => made,
                Err(kept) => {
                    drop(unsafe { std::ffi::CString::from_raw(made) });
                    kept
                }
            }
        }
    };
}
