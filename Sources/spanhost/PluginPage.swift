import SpanhostPluginHost

/// A plugin's reference page in Markdown, from what the plugin itself declares (name, kind,
/// description, config schema, functions). `make docs` writes one per shipped plugin into
/// docs/plugins/, and `make test` fails when a page there differs from what the plugin says.
enum PluginPage {
    static func markdown(_ entry: PluginListing.Entry) -> String {
        let name = entry.name ?? "?"
        var page = "# \(name)\n\n"
        let kind = entry.kind ?? "?"
        page += "\(kind.first.map { "aeiou".contains($0) } == true ? "An" : "A") \(kind) plugin"
        if let version = entry.version { page += ", version \(version)" }
        if let abi = entry.abi { page += ", built against ABI \(abi)" }
        page += ".\n\n"
        if let description = entry.description, !description.isEmpty { page += "\(description)\n\n" }
        if let functions = entry.functions, !functions.isEmpty {
            page += "## Functions\n\nFor expressions, once `plugins.functions` names `\(name)`:\n\n"
            for signature in functions { page += "- `\(signature)`\n" }
            page += "\n"
        }
        guard entry.kind != PluginKind.functions.rawValue else { return page }
        page += "## Configuration\n\n"
        guard let schema = entry.schema else {
            return page + "The plugin declares no schema: the keys it reads are checked when it is created.\n"
        }
        if schema.isEmpty { return page + "It takes no settings.\n" }
        page += "Keys under the component's section; the host's own keys (such as `sending_queue` and `retry_on_failure` on\n"
            + "exporters) are in [configuration](../configuration.md).\n\n"
        page += "| Key | Type | Required | Default | Description |\n|---|---|---|---|---|\n"
        for key in schema {
            page += "| `\(key.path)` | \(key.type) | \(key.required ? "yes" : "") | \(key.defaultValue.map { "`\(cell($0))`" } ?? "") | \(cell(key.doc)) |\n"
        }
        return page
    }

    /// Text for a table cell: a `|` would end the cell, a newline the row, `<` start HTML.
    private static func cell(_ text: String) -> String {
        text.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
            .replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
