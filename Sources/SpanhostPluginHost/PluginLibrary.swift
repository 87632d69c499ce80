import CSpanhost
import Foundation
import SpanhostModel
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Why a plugin file was refused. Each message names the file and what to do about it.
public enum PluginLoadError: Error, Equatable, CustomStringConvertible {
    case unreadable(file: String, reason: String)
    case pinMismatch(file: String, expected: String, actual: String)
    case notALibrary(file: String, dlerror: String)
    /// `mangled`: the entry function was found under its C++ name.
    case missingEntry(file: String, mangled: Bool = false)
    case entryRefused(file: String)
    case abiMismatch(file: String, plugin: String, host: String)
    case invalidDescriptor(file: String, reason: String)
    /// Two plugin directories both hold a file for the same type.
    case ambiguous(file: String, others: [String])
    /// A plugin file must be named after the plugin it registers: `x.so` registers `x`.
    case nameMismatch(file: String, expected: String, registered: String)
    /// The image crashed the process too often (see Quarantine) and is not loaded.
    case quarantined(file: String, plugin: String, reason: String)
    /// The file, or the directory it is in, could be changed by someone other than this user.
    case unsafe(file: String, reason: String)
    /// `plugins.require_pins` is on and the file has no pin.
    case unpinned(file: String, actual: String)

    public var description: String {
        switch self {
        case .unreadable(let file, let reason): return "\(file): cannot read plugin: \(reason)"
        case .pinMismatch(let file, let expected, let actual):
            return "\(file): sha256 \(actual) does not match the pin \(expected) in plugins.pins"
        case .notALibrary(let file, let error): return "\(file): not a loadable shared library: \(error)"
        case .missingEntry(let file, let mangled) where mangled:
            return "\(file): its '\(SPANHOST_PLUGIN_ENTRY_SYMBOL)' has a C++-mangled name; include spanhost/spanhost.h "
                + "where it is defined (the header declares it extern \"C\") or define it inside extern \"C\""
        case .missingEntry(let file, _):
            return "\(file): no exported function '\(SPANHOST_PLUGIN_ENTRY_SYMBOL)' (it may be missing or hidden: "
                + "mark it SPANHOST_EXPORT); is it a spanhost plugin?"
        case .entryRefused(let file): return "\(file): the plugin's entry function returned NULL (it refused to load)"
        case .abiMismatch(let file, let plugin, let host):
            return "\(file): built for plugin ABI \(plugin), this host speaks \(host); rebuild it against this host's spanhost.h"
        case .invalidDescriptor(let file, let reason): return "\(file): invalid plugin descriptor: \(reason)"
        case .ambiguous(let file, let others):
            return "\(file): also found as \(others.joined(separator: ", ")); keep one file per plugin name across plugins.dirs"
        case .nameMismatch(let file, let expected, let registered):
            return "\(file): registers plugin '\(registered)', not '\(expected)'; a plugin file is named after its type (\(registered).so)"
        case .unsafe(let file, let reason): return "\(file): refused: \(reason)"
        case .unpinned(let file, let actual):
            return "\(file): plugins.require_pins is on and this file has no pin (its sha256 is \(actual))"
        case .quarantined(let file, let plugin, let reason):
            return "\(file): plugin '\(plugin)' is quarantined (\(reason)); change the file or clear it with POST /-/quarantine/clear"
        }
    }
}

public enum PluginKind: String, Sendable {
    case exporter, processor, notifier
    /// Only adds functions to expressions (SPANHOST_KIND_FUNCTIONS); never a component.
    case functions

    init?(cValue: UInt32) {
        switch Int32(bitPattern: cValue) {
        case SPANHOST_KIND_EXPORTER: self = .exporter
        case SPANHOST_KIND_PROCESSOR: self = .processor
        case SPANHOST_KIND_NOTIFIER: self = .notifier
        case SPANHOST_KIND_FUNCTIONS: self = .functions
        default: return nil
        }
    }
}

/// One loaded plugin image: the file it came from, its content hash, and its descriptor.
public final class PluginLibrary: @unchecked Sendable {
    // Unchecked because of two C values: the dlopen handle and the descriptor the entry
    // function returned (function pointers and static strings of the image). Both are written
    // once, in init, and only read afterwards; the image is closed under `usage`'s lock, and only
    // when no instance is left to call through the descriptor.
    public let name: String
    public let kind: PluginKind
    public let version: String
    public let description: String
    public let abiMajor: Int
    public let abiMinor: Int
    public let flags: UInt32
    /// The config keys the plugin declared (ABI 1.2); nil when it declared none.
    public let schema: ConfigSchema?
    /// The file in the plugin directory.
    public let sourcePath: String
    /// The content-addressed copy that was actually opened.
    public let loadedPath: String
    public let sha256: String
    /// The descriptor, copied with the host's layout (fields past the plugin's size are zero).
    let descriptor: spanhost_plugin
    private let handle: UnsafeMutableRawPointer

    public var isConcurrent: Bool { flags & UInt32(SPANHOST_PLUGIN_CONCURRENT) != 0 }
    public var isUnloadable: Bool { flags & UInt32(SPANHOST_PLUGIN_UNLOADABLE) != 0 && functions.isEmpty }
    /// The functions this image added to expressions, by name.
    public let functions: [String]
    /// The plugin says its data hook never waits (SPANHOST_PLUGIN_NONBLOCKING).
    public var isNonBlocking: Bool { flags & UInt32(SPANHOST_PLUGIN_NONBLOCKING) != 0 }
    /// The processor never changes a batch (SPANHOST_PLUGIN_READONLY): fan-out need not copy for it.
    public var isReadOnly: Bool { flags & UInt32(SPANHOST_PLUGIN_READONLY) != 0 }
    /// The processor raises one notification per failing trace (SPANHOST_PLUGIN_TRACE_EVENTS).
    public var raisesTraceEvents: Bool { flags & UInt32(SPANHOST_PLUGIN_TRACE_EVENTS) != 0 }
    /// The plugin checks a config without side effects (the descriptor's `validate`, 1.8).
    public var canValidate: Bool { descriptor.validate != nil }

    private let usage = Mutex((instances: 0, closed: false))

    /// Live instances made from this image.
    public var instanceCount: Int { usage.withLock { $0.instances } }

    func instanceCreated() { usage.withLock { $0.instances += 1 } }
    func instanceDestroyed() { usage.withLock { $0.instances -= 1 } }

    /// Closes the image if it declared itself unloadable and no instance of it remains.
    /// Returns true if it was closed (now or before).
    @discardableResult
    func closeIfUnused() -> Bool {
        let unloadable = isUnloadable
        let handle = UInt(bitPattern: self.handle)
        return usage.withLock { usage in
            guard !usage.closed else { return true }
            guard unloadable, usage.instances == 0 else { return false }
            dlclose(UnsafeMutableRawPointer(bitPattern: handle)!)
            usage.closed = true
            return true
        }
    }

    /// Opens `loadedPath` (a content-addressed copy of `sourcePath`), calls the entry function
    /// and checks the ABI version and descriptor.
    init(sourcePath: String, loadedPath: String, sha256: String) throws(PluginLoadError) {
        let file = sourcePath
        guard let handle = dlopen(loadedPath, RTLD_NOW | RTLD_LOCAL) else {
            throw .notALibrary(file: file, dlerror: dlerror().map { String(cString: $0) } ?? "unknown error")
        }
        // A refused image is never closed: it may be Swift code, which cannot be unloaded.
        guard let symbol = dlsym(handle, SPANHOST_PLUGIN_ENTRY_SYMBOL) else {
            // The Itanium C++ ABI's name for spanhost_plugin_entry(spanhost_host_api const*).
            throw .missingEntry(file: file, mangled: dlsym(handle, "_Z21spanhost_plugin_entryPK17spanhost_host_api") != nil)
        }
        let entry = unsafeBitCast(symbol, to: spanhost_plugin_entry_fn.self)
        guard let raw = entry(HostTable.pointer) else {
            throw .entryRefused(file: file)
        }
        // Read only as many bytes as the plugin says it has; the rest stays zero.
        var descriptor = spanhost_plugin()
        let declared = Int(raw.pointee.struct_size)
        guard declared >= MemoryLayout<UInt32>.size * 2 else {
            throw .invalidDescriptor(file: file, reason: "struct_size \(declared) is too small")
        }
        withUnsafeMutableBytes(of: &descriptor) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: min(declared, dst.count)))
        }
        let hostABI = "\(SPANHOST_ABI_MAJOR).\(SPANHOST_ABI_MINOR)"
        let pluginABI = "\(descriptor.abi_major).\(descriptor.abi_minor)"
        // Any minor loads (see "Versions" in spanhost.h): struct_size alone says which fields exist.
        guard Int32(descriptor.abi_major) == SPANHOST_ABI_MAJOR else {
            throw .abiMismatch(file: file, plugin: pluginABI, host: hostABI)
        }
        guard declared >= MemoryLayout<spanhost_plugin>.offset(of: \.destroy)! + MemoryLayout<UnsafeRawPointer>.size else {
            throw .invalidDescriptor(file: file, reason: "struct_size \(declared) is smaller than an ABI 1.0 descriptor")
        }
        guard let kind = PluginKind(cValue: descriptor.kind) else {
            throw .invalidDescriptor(file: file, reason: "unknown kind \(descriptor.kind)")
        }
        guard let namePtr = descriptor.name, !String(cString: namePtr).isEmpty else {
            throw .invalidDescriptor(file: file, reason: "name is missing")
        }
        guard kind == .functions || (descriptor.create != nil && descriptor.destroy != nil) else {
            throw .invalidDescriptor(file: file, reason: "create and destroy are required")
        }
        switch kind {
        case .processor where descriptor.process == nil,
             .exporter where descriptor.export_batch == nil,
             .notifier where descriptor.notify == nil:
            throw .invalidDescriptor(file: file, reason: "a \(kind.rawValue) must implement its \(kind == .processor ? "process" : kind == .exporter ? "export_batch" : "notify") hook")
        default: break
        }
        var schema: ConfigSchema?
        if let keys = descriptor.config_schema {
            do {
                schema = try ConfigSchema(pointer: keys, count: descriptor.config_schema_count)
                try schema?.refuseHostKeys(kind.hostKeys)
            } catch {
                throw .invalidDescriptor(file: file, reason: error.description)
            }
        }
        // Functions for expressions: registered now, each with its libffi call interface.
        var functions: [String] = []
        if let list = descriptor.functions, descriptor.functions_count > 0 {
            // Walked by the plugin's element size, so spanhost_function may grow.
            let stride = Int(list.pointee.struct_size)
            let minimum = MemoryLayout<spanhost_function>.offset(of: \.description)! + MemoryLayout<UnsafeRawPointer>.size
            guard stride >= minimum else {
                throw .invalidDescriptor(file: file, reason: "functions[0].struct_size \(stride) is smaller than an ABI 1.3 spanhost_function")
            }
            for i in 0..<descriptor.functions_count {
                var function = spanhost_function()
                withUnsafeMutableBytes(of: &function) { dst in
                    dst.copyMemory(from: UnsafeRawBufferPointer(start: UnsafeRawPointer(list) + i * stride, count: min(stride, dst.count)))
                }
                var err = [CChar](repeating: 0, count: 256)
                guard sh_function_register(&function, String(cString: namePtr), &err, err.count) == 0 else {
                    throw .invalidDescriptor(file: file, reason: String(nulTerminated: err))
                }
                functions.append(String(cString: function.name))
            }
        } else if kind == .functions {
            throw .invalidDescriptor(file: file, reason: "a functions plugin must list functions (ABI 1.3)")
        }
        // An image whose functions were registered stays loaded: compiled expressions call into it.
        if descriptor.flags & UInt32(SPANHOST_PLUGIN_UNLOADABLE) == 0 || !functions.isEmpty {
            // Pin images that did not declare themselves unloadable (every Swift image): they are
            // never unmapped, even by a dlclose elsewhere.
            _ = dlopen(loadedPath, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD | RTLD_NODELETE)
        }
        self.handle = handle
        self.descriptor = descriptor
        self.name = String(cString: namePtr)
        self.kind = kind
        self.version = descriptor.version.map { String(cString: $0) } ?? "0"
        self.description = descriptor.description.map { String(cString: $0) } ?? ""
        self.abiMajor = Int(descriptor.abi_major)
        self.abiMinor = Int(descriptor.abi_minor)
        self.flags = descriptor.flags
        self.schema = schema
        self.functions = functions
        self.sourcePath = sourcePath
        self.loadedPath = loadedPath
        self.sha256 = sha256
    }
}
