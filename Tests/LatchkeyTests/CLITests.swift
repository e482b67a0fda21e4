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

@Suite("The latchkey CLI, as a real process")
struct CLITests {
    @Test func credentialCommandsAgainstALiveServer() async throws {
        try await Harness.withApp(.live) { harness, client in
            let port = try #require(client.port)
            let environment = ["LATCHKEY_URL": "http://127.0.0.1:\(port)", "LATCHKEY_KEY": harness.adminKey]
            func run(_ arguments: String..., stdin: String = "") async throws -> LatchkeyProcess.Result {
                try await LatchkeyProcess.run(arguments, environment: environment, stdin: stdin)
            }

            let created = try await run(
                "credential", "set", "github", "--type", "bearer", "--value-stdin", "--description", "CI token",
                stdin: "ghp_first\n")
            #expect(created.status == 0, "\(created.output)")
            #expect(created.stdout.contains("Created bearer credential 'github'"))
            let stored = try await harness.withStore { try await $0.openValue(vault: "default", name: "github") }
            #expect(stored["token"] == .string("ghp_first"))  // the trailing newline is dropped

            let setAgain = try await run(
                "credential", "set", "github", "--type", "bearer", "--value-stdin", stdin: "ghp_second")
            #expect(setAgain.stdout.contains("Rotated credential 'github'"))
            #expect(
                try await harness.withStore { try await $0.openValue(vault: "default", name: "github") }["token"]
                    == .string("ghp_second"))

            let apiKey = try await run(
                "credential", "set", "stripe", "--type", "api_key", "--value-stdin",
                stdin: #"{"key": "sk_x", "header": "Authorization"}"#)
            #expect(apiKey.status == 0, "\(apiKey.output)")

            let rotated = try await run(
                "credential", "rotate", "stripe", "--value-stdin", stdin: #"{"key": "sk_y", "query_param": "key"}"#)
            #expect(rotated.status == 0, "\(rotated.output)")
            #expect(
                try await harness.withStore { try await $0.openValue(vault: "default", name: "stripe") }["key"]
                    == .string("sk_y"))

            let list = try await run("credential", "list")
            #expect(list.status == 0)
            let lines = list.stdout.split(separator: "\n")
            #expect(lines.first?.hasPrefix("NAME") == true)
            #expect(lines.dropFirst().map { $0.split(separator: " ").first.map(String.init) } == ["github", "stripe"])
            let filtered = try await run("credential", "list", "--type", "api_key")
            #expect(filtered.stdout.split(separator: "\n").count == 2)

            let get = try await run("credential", "get", "github")
            #expect(get.status == 0)
            let metadata = try JSONDecoder().decode(JSONValue.self, from: Data(get.stdout.utf8))
            #expect(metadata["description"] == .string("CI token"))
            #expect(!get.stdout.contains("ghp_second"))

            let deleted = try await run("credential", "delete", "github")
            #expect(deleted.status == 0)
            let again = try await run("credential", "delete", "github")
            #expect(again.status != 0)
            #expect(again.stderr.contains("CREDENTIAL_NOT_FOUND"))

            // Secrets never go on the command line; bad input never reaches the server.
            let noStdin = try await run("credential", "set", "x", "--type", "bearer")
            #expect(noStdin.status != 0)
            #expect(noStdin.stderr.contains("--value-stdin"))
            let badJSON = try await run(
                "credential", "set", "x", "--type", "api_key", "--value-stdin", stdin: "sk_live")
            #expect(badJSON.status != 0)
            #expect(badJSON.stderr.contains("JSON object"))
            let invalid = try await run(
                "credential", "set", "x", "--type", "api_key", "--value-stdin", stdin: #"{"key": "k"}"#)
            #expect(invalid.stderr.contains("VALIDATION_FAILED"))

            let wrongKey = try await LatchkeyProcess.run(
                ["credential", "list"], environment: environment.merging(["LATCHKEY_KEY": "nope"]) { $1 })
            #expect(wrongKey.status != 0)
            #expect(wrongKey.stderr.contains("INVALID_KEY"))
            let noServer = try await LatchkeyProcess.run(
                ["credential", "list"], environment: environment.merging(["LATCHKEY_URL": "http://127.0.0.1:1"]) { $1 })
            #expect(noServer.status != 0)
            #expect(noServer.stderr.contains("cannot reach Latchkey"))
        }
    }

    @Test func migrateAndRekeyCommands() async throws {
        try await TestDatabase.withFresh(migrated: false) { database in
            let old = MasterKey.generate()
            let new = MasterKey.generate()
            var environment = ["LATCHKEY_DATABASE_URL": database.url]
            let status = try await LatchkeyProcess.run(["migrate", "--status"], environment: environment)
            let all = Migration.embedded.map { String($0.version) }.joined(separator: ", ")
            #expect(status.stdout.contains("pending: \(all)"), "\(status.output)")
            let migrate = try await LatchkeyProcess.run(["migrate"], environment: environment)
            #expect(migrate.status == 0, "\(migrate.output)")
            #expect(migrate.stdout.contains("Applied \(Migration.embedded.count) migration(s): \(all)."))
            let again = try await LatchkeyProcess.run(["migrate"], environment: environment)
            #expect(again.stdout.contains("up to date"))

            try await database.withClient { client in
                let store = VaultStore(
                    client: client, sealer: Sealer(keyRing: KeyRing(current: old)), logger: Logger(label: "t"))
                for index in 0..<3 {
                    try await store.seedBearer("t\(index)", token: "v\(index)")
                }
            }
            environment["LATCHKEY_MASTER_KEY"] = new.hex
            let withoutOld = try await LatchkeyProcess.run(["rekey"], environment: environment)
            #expect(withoutOld.status != 0)
            #expect(withoutOld.stderr.contains("LATCHKEY_MASTER_KEY_PREVIOUS"), "\(withoutOld.output)")
            environment["LATCHKEY_MASTER_KEY_PREVIOUS"] = old.hex
            let rekey = try await LatchkeyProcess.run(["rekey", "--batch-size", "2"], environment: environment)
            #expect(rekey.status == 0, "\(rekey.output)")
            #expect(rekey.stdout.contains("Re-sealed 3 credential(s)"))
            #expect(rekey.stdout.contains("0 left"))
            try await database.withClient { client in
                let store = VaultStore(
                    client: client, sealer: Sealer(keyRing: KeyRing(current: new)), logger: Logger(label: "t"))
                let value = try await store.openValue(vault: "default", name: "t2")
                #expect(value["token"] == .string("v2"))
            }
        }
    }

    @Test func everyCommandHasHelp() async throws {
        for command in [
            [], ["serve"], ["migrate"], ["rekey"], ["credential"], ["credential", "set"], ["credential", "list"],
            ["credential", "get"], ["credential", "rotate"], ["credential", "delete"],
        ] {
            let result = try await LatchkeyProcess.run(command + ["--help"], environment: [:])
            #expect(result.status == 0, "\(command)")
            #expect(result.stdout.contains("USAGE: latchkey"), "\(command)")
        }
    }
}
