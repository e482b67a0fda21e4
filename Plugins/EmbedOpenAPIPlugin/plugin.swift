import Foundation
import PackagePlugin

/// Embeds the top-level `openapi.json` into the target at build time, so the
/// server answers `GET /openapi.json` with exactly the document checked in
/// (one file, edited in one place, fuzzed by `scripts/fuzz`).
@main
struct EmbedOpenAPIPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let document = context.package.directoryURL.appending(path: "openapi.json")
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedOpenAPI.swift")
        return [
            .buildCommand(
                displayName: "Embedding openapi.json into \(target.name)",
                executable: try context.tool(named: "EmbedMigrationsTool").url,
                arguments: [output.path, "--variable", "embeddedOpenAPIFiles", document.path],
                inputFiles: [document],
                outputFiles: [output]
            )
        ]
    }
}
