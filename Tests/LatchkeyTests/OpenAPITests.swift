import Foundation
import HTTPTypes
import HummingbirdTesting
import LatchkeyCore
import Testing

@Suite("OpenAPI: the document and the router describe the same API")
struct OpenAPITests {
    static let document = repositoryRoot.appendingPathComponent("openapi.json")

    /// `METHOD /path/{param}` for every operation in openapi.json.
    static func documented() throws -> Set<String> {
        let json = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: Self.document))
        guard case .object(let paths) = json["paths"] else { return [] }
        var operations: Set<String> = []
        for (path, item) in paths {
            guard case .object(let methods) = item else { continue }
            for method in methods.keys
            where ["get", "put", "post", "delete", "patch", "head", "options", "trace"].contains(method) {
                operations.insert("\(method.uppercased()) \(path)")
            }
        }
        return operations
    }

    @Test func everyRouteIsDocumentedAndEveryDocumentedOperationExists() async throws {
        try await Harness.withApp { harness, client in
            // Hummingbird writes parameters as `{name}` or `:name`; OpenAPI as `{name}`.
            let parameter = try Regex(#":([a-z_]+)"#)
            let routed = Set(
                harness.flusher.routes.map { $0.replacing(parameter) { "{\($0.output[1].substring ?? "")}" } })
            let documented = try Self.documented()
            #expect(routed.count > 20, "\(routed)")
            let undocumented = routed.subtracting(documented).sorted()
            let missing = documented.subtracting(routed).sorted()
            #expect(undocumented.isEmpty, "routes missing from openapi.json: \(undocumented)")
            #expect(missing.isEmpty, "operations in openapi.json with no route: \(missing)")
        }
    }

    @Test func theServerServesTheCheckedInDocument() async throws {
        try await Harness.withApp { _, client in
            let response = try await client.call(.get, "/openapi.json", key: nil)
            #expect(response.status == 200)
            #expect(response.headers[.contentType] == "application/json")
            #expect(response.body == (try String(contentsOf: Self.document, encoding: .utf8)))
            #expect(response.json["openapi"].stringValue?.hasPrefix("3.1") == true)
        }
    }
}
