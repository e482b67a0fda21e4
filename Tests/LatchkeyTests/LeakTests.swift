import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LatchkeyApp
import LatchkeyCore
import LatchkeyCrypto
import LatchkeyHTTP
import LatchkeyRefresher
import LatchkeyStore
import LatchkeyTesting
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import Testing

/// Stores known secret values, exercises every endpoint and CLI command
/// (successes and failures), and proves none of those values appears in any
/// response, log line, audit row, CLI output or unsealed database column.
/// API keys are secrets too: the full key appears only in its creation response.
@Suite("No secret leaks")
struct LeakTests {
    @Test func storedSecretsNeverAppearOutsideTheirSealedColumn() async throws {
        try await Harness.withApp(.live) { harness, client in
            let key = harness.adminKey
            let first = "LEAKa\(UUID().uuidString.prefix(8))"
            let second = "LEAKb\(UUID().uuidString.prefix(8))"
            let cliSecret = "LEAKc\(UUID().uuidString.prefix(8))"
            var secrets: [String] = []
            var seen: [String] = []
            func record(_ response: APIResponse) {
                seen.append(response.body)
                seen.append(response.headers.map { "\($0.name): \($0.value)" }.joined(separator: "\n"))
            }
            let base = "/v1/vaults/default/credentials"
            // Create one credential of every type (the client first).
            let ordered = [CredentialType.oauthClient] + CredentialType.allCases.filter { $0 != .oauthClient }
            for type in ordered {
                let name = type == .oauthClient ? "client" : "c_\(type.rawValue)"
                secrets += Samples.secrets(type, secret: first)
                let created = try await client.call(
                    .post, base, key: key,
                    body: json(["name": name, "type": type.rawValue, "value": Samples.value(type, secret: first)]))
                #expect(created.status == 201)
                record(created)
            }
            // Read everything back every way the API allows.
            for uri in [base, "\(base)?limit=2", "/v1/vaults", "/v1/vaults/default", "/v1/audit"]
                + ordered.map({ "\(base)/\($0 == .oauthClient ? "client" : "c_\($0.rawValue)")" })
            {
                let response = try await client.call(.get, uri, key: key)
                #expect(response.status == 200)
                record(response)
            }
            // Rotate every type to a second set of secrets.
            for type in ordered {
                let name = type == .oauthClient ? "client" : "c_\(type.rawValue)"
                secrets += Samples.secrets(type, secret: second)
                let rotated = try await client.call(
                    .post, "\(base)/\(name)/rotate", key: key,
                    body: json(["value": Samples.value(type, secret: second)]))
                #expect(rotated.status == 200)
                record(rotated)
                record(
                    try await client.call(.patch, "\(base)/\(name)", key: key, body: json(["description": "rotated"])))
            }
            // Failures that carry secrets in the request.
            let failing: [(HTTPRequest.Method, String, String?, String?)] = [
                (.post, base, json(["name": "c_bearer", "type": "bearer", "value": ["token": first]]), key),
                (.post, base, json(["name": "x", "type": "bearer", "value": ["token": first, "extra": second]]), key),
                (
                    .post, base,
                    json(["name": "x", "type": "api_key", "value": ["key": first, "header": second + " bad"]]), key
                ),
                (
                    .post, base,
                    json(["name": "x", "type": "header_set", "value": ["headers": ["\(first):": second]]]), key
                ),
                (
                    .post, base,
                    json(["name": "x", "type": "basic", "value": ["username": "\(first):x", "password": second]]), key
                ),
                (
                    .post, base,
                    json(["name": "x", "type": "oauth", "value": ["client": "missing", "access_token": first]]), key
                ),
                (.post, "\(base)/c_bearer/rotate", json(["value": ["key": first]]), key),
                (.post, base, "{\"name\": \"x\", \"value\": {\"token\": \"\(first)\"", key),
                (.get, "/v1/vaults", nil, first),
                (.post, base, json(["name": "x", "type": "bearer", "value": ["token": second]]), second),
                (.delete, "\(base)/client", nil, key),
            ]
            for (method, uri, body, presented) in failing {
                let response = try await client.call(method, uri, key: presented, body: body)
                #expect(response.status >= 400, "\(uri)")
                record(response)
            }

            // The CLI, as a real process against this live server.
            let port = try #require(client.port)
            let environment = ["LATCHKEY_URL": "http://127.0.0.1:\(port)", "LATCHKEY_KEY": key]
            secrets.append(cliSecret)
            let cliRuns: [([String], String)] = [
                (["credential", "set", "cli_tok", "--type", "bearer", "--value-stdin"], cliSecret + "\n"),
                (["credential", "set", "cli_tok", "--type", "bearer", "--value-stdin"], cliSecret + "2\n"),
                (
                    ["credential", "set", "cli_key", "--type", "api_key", "--value-stdin"],
                    #"{"key": "\#(cliSecret)", "header": "X-Key"}"#
                ),
                (
                    ["credential", "rotate", "cli_key", "--value-stdin"],
                    #"{"key": "\#(cliSecret)3", "header": "X-Key"}"#
                ),
                (["credential", "set", "cli_bad", "--type", "api_key", "--value-stdin"], #"{"key": "\#(cliSecret)"}"#),
                (["credential", "list"], ""),
                (["credential", "list", "--json"], ""),
                (["credential", "get", "cli_key"], ""),
                (["credential", "get", "c_oauth"], ""),
                (["credential", "delete", "cli_tok"], ""),
                (["credential", "delete", "client"], ""),
            ]
            for (arguments, stdin) in cliRuns {
                let result = try await LatchkeyProcess.run(arguments, environment: environment, stdin: stdin)
                seen.append(result.output)
            }
            let stored = try await harness.withStore { try await $0.openValue(vault: "default", name: "cli_key") }
            #expect(stored["key"] == .string(cliSecret + "3"))

            // API keys: the full key appears in its creation response and nowhere else.
            let mint = try await client.call(
                .post, "/v1/keys", key: key, body: json(["name": "leaky", "role": "admin", "vaults": ["*"]]))
            let minted = try #require(mint.json["key"].stringValue)
            let mintedID = try #require(mint.json["id"].stringValue)
            let bootstrapMint = try await client.call(
                .post, "/v1/keys", key: harness.adminSecret,
                body: json(["name": "boot", "role": "proxy", "vaults": ["*"]]))
            let bootstrapMinted = try #require(bootstrapMint.json["key"].stringValue)
            secrets += [minted, bootstrapMinted, harness.adminKey, harness.adminSecret]
            record(try await client.call(.get, "/v1/vaults", key: minted))
            record(try await client.call(.get, "/v1/vaults", key: bootstrapMinted))
            record(try await client.call(.get, "/v1/keys", key: minted))
            record(try await client.call(.delete, "/v1/keys/\(mintedID)", key: key))
            record(try await client.call(.get, "/v1/vaults", key: minted))
            record(try await client.call(.get, "/v1/vaults", key: String(minted.dropLast()) + "x"))
            record(try await client.call(.get, "/v1/vaults", key: harness.adminSecret))
            await harness.flushUsage()
            let cliKeys = try await LatchkeyProcess.run(
                ["keys", "list", "--json"], environment: ["LATCHKEY_DATABASE_URL": harness.database.url])
            #expect(cliKeys.status == 0)
            seen.append(cliKeys.output)

            // Everything that left the vault, and every unsealed column.
            let logs = harness.logs.text
            let audit = try await harness.auditText()
            let rows = try await harness.database.withClient { client in
                let rows = try await client.query("SELECT row_to_json(c)::text FROM credentials c")
                return try await rows.decode(String.self).reduce(into: "") { $0 += $1 + "\n" }
            }
            #expect(logs.split(separator: "\n").count > 60, "the scan must see the request log")
            #expect(audit.split(separator: "\n").count > 20)
            let keyRows = try await harness.database.withClient { client in
                let rows = try await client.query("SELECT row_to_json(k)::text FROM api_keys k")
                return try await rows.decode(String.self).reduce(into: "") { $0 += $1 + "\n" }
            }
            let haystacks = [
                "responses and CLI output": seen.joined(separator: "\n"), "logs": logs, "audit rows": audit,
                "credential rows": rows, "api key rows": keyRows,
            ]
            for secret in Set(secrets) {
                for (place, text) in haystacks {
                    #expect(!text.contains(secret), "secret \(secret) leaked into \(place)")
                }
            }
            // The scan is meaningful: the secrets really are stored, sealed.
            let sealedBearer = try await harness.withStore {
                try await $0.openValue(vault: "default", name: "c_bearer")
            }
            #expect(sealedBearer["token"] == .string("bearer-\(second)"))
        }
    }
}
