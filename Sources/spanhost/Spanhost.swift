import ArgumentParser
import Foundation
import SpanhostModel
import SpanhostPluginHost

/// `spanhost`: the tool for operators and plugin authors. It never runs the server.
@main
struct Spanhost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spanhost",
        abstract: "Validates configs, lists and describes plugins, and runs one plugin on test input.",
        version: SpanhostVersion.current,
        subcommands: [Validate.self, Plugins.self, PluginTest.self, ABI.self])
}

/// The spanhostd beside this executable (build/bin/spanhostd, or installed together).
func siblingDaemon() -> String {
    (PluginCatalog.executableDirectory as NSString).appendingPathComponent("spanhostd")
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Checks a config and the plugin settings it names, as `spanhostd --check` does (plugins are created in a child process).")

    @Option(name: .long, help: "The YAML config file; repeat to merge several, as spanhostd does.")
    var config: [String]

    func run() throws {
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: siblingDaemon())
        daemon.arguments = config.flatMap { ["--config", $0] } + ["--check"]
        do { try daemon.run() } catch {
            throw ValidationError("cannot run \(siblingDaemon()): \(error)")
        }
        daemon.waitUntilExit()
        if daemon.terminationStatus != 0 { throw ExitCode(daemon.terminationStatus) }
    }
}

struct Plugins: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Lists and describes plugin files; each file is opened in a child process, so no plugin code runs in this one.",
        subcommands: [List.self, Describe.self, Inspect.self])

    static var defaultDir: String { PluginCatalog.shippedDirectory }

    static let inspect: @Sendable (String) -> [String] = { ["plugins", "inspect", $0] }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every plugin file: name, kind, version, ABI, sha256, or why it cannot load.")

        @Option(name: .long, help: "A plugin directory; repeat for several, searched in order (default: the one beside spanhost).")
        var dir: [String] = []

        func run() throws {
            print(PluginListing.list(directories: dir.isEmpty ? [Plugins.defaultDir] : dir, inspectArguments: Plugins.inspect),
                  terminator: "")
        }
    }

    struct Describe: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One plugin, by name (in --dir) or by file.")

        @Argument(help: "A plugin name such as `attributes`, or the path of a .so file.")
        var plugin: String

        @Option(name: .long, help: "A plugin directory; repeat for several (default: the one beside spanhost).")
        var dir: [String] = []

        @Flag(name: .long, help: "Print the plugin's reference page (Markdown): what docs/plugins/ holds.")
        var markdown = false

        func run() throws {
            let file: String
            if plugin.contains("/") || plugin.hasSuffix(".so") {
                file = plugin
            } else {
                let dirs = dir.isEmpty ? [Plugins.defaultDir] : dir
                guard let found = PluginCatalog.files(in: dirs).first(where: { $0.name == plugin }) else {
                    throw ValidationError("no file \(plugin).so in \(dirs.joined(separator: ", "))")
                }
                file = found.path
            }
            let entry = PluginListing.inspectInChild(file, arguments: Plugins.inspect(file))
            if let error = entry.error { throw ValidationError(error) }
            if markdown { return print(PluginPage.markdown(entry), terminator: "") }
            let rows: [(String, String?)] = [("name", entry.name), ("kind", entry.kind), ("version", entry.version), ("abi", entry.abi),
                                             ("description", entry.description), ("file", entry.file), ("sha256", entry.sha256)]
            for (label, value) in rows { print("\(label.padding(toLength: 12, withPad: " ", startingAt: 0))\(value ?? "")") }
            if let functions = entry.functions {
                print("\nfunctions (for expressions):")
                for signature in functions { print("  \(signature)") }
                if entry.kind == PluginKind.functions.rawValue { return }
            }
            guard let schema = entry.schema else {
                // Without a schema the keys a plugin reads are checked when it is created.
                print("\("config".padding(toLength: 12, withPad: " ", startingAt: 0))no schema declared; see the plugin's documentation")
                return
            }
            print("")
            if schema.isEmpty { return print("config: takes no settings") }
            let table = [("KEY", "TYPE", "REQUIRED", "DEFAULT", "DESCRIPTION")]
                + schema.map { ($0.path, $0.type, $0.required ? "yes" : "", $0.defaultValue ?? "", $0.doc) }
            let widths = [table.map(\.0.count).max()!, table.map(\.1.count).max()!, table.map(\.2.count).max()!, table.map(\.3.count).max()!]
            for row in table {
                let cells = [row.0, row.1, row.2, row.3].enumerated().map { $0.element.padding(toLength: widths[$0.offset] + 2, withPad: " ", startingAt: 0) }
                print((cells.joined() + row.4).trimmingCharacters(in: .whitespaces))
            }
        }
    }

    /// The child of list and describe.
    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(shouldDisplay: false)
        @Argument var file: String
        func run() throws { print(PluginListing.inspect(file)) }
    }
}
