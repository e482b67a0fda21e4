import ArgumentParser
import Foundation
import LatchkeyApp
import LatchkeyCore
import LatchkeyStore
import PostgresNIO

/// `latchkey keys`: API keys straight against the database (no server
/// needed), for bootstrap and recovery.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Mint, list and revoke API keys directly in the database.",
        discussion: "Needs LATCHKEY_DATABASE_URL (or --database-url); no running server.",
        subcommands: [Mint.self, List.self, Revoke.self]
    )

    static func withKeyStore<Result: Sendable>(
        _ options: ServerOptions, _ body: @Sendable (KeyStore) async throws -> Result
    ) async throws -> Result {
        let configuration = try options.configuration()
        let logger = options.makeLogger(configuration)
        let postgres = try DatabaseURL.configuration(configuration.databaseURL)
        return try await PostgresClient.withRunning(
            postgres, logger: logger, reachableWithin: configuration.databaseTimeout
        ) { client in
            try await body(KeyStore(client: client, logger: logger))
        }
    }

    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }

    struct Mint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Mint an API key and print it (once).",
            discussion: """
                Example: latchkey keys mint --name ops --role admin --vault '*'
                         latchkey keys mint --name sidecar --role proxy --vault default --credential github --allow 10.0.0.0/8
                """)

        @OptionGroup var options: ServerOptions
        @Option(help: "A name for the key (not secret).") var name: String
        @Option(help: "One of: \(APIKeyRole.allNames).") var role: String
        @Option(name: .customLong("vault"), help: "A vault the key may use (repeatable); '*' for all.")
        var vaults: [String] = []
        @Option(name: .customLong("credential"), help: "A credential name the key may use (repeatable); default all.")
        var credentials: [String] = []
        @Option(name: .customLong("allow"), help: "A CIDR block the key may be used from (repeatable); default any.")
        var allow: [String] = []
        @Option(name: .customLong("ttl-seconds"), help: "Make an ephemeral key (lk_eph_) that expires after this long.")
        var ttlSeconds: Int?
        @Option(help: "A description (not secret).") var description: String = ""

        func validate() throws {
            guard APIKeyRole(rawValue: self.role) != nil else {
                throw ValidationError("--role must be one of \(APIKeyRole.allNames)")
            }
            guard !self.vaults.isEmpty else { throw ValidationError("give at least one --vault (or --vault '*')") }
            guard self.vaults == ["*"] || (!self.vaults.contains("*") && self.vaults.allSatisfy(Names.isValidVaultName))
            else { throw ValidationError("--vault takes vault names, or '*' alone") }
            guard self.credentials.allSatisfy(Names.isValidCredentialName) else {
                throw ValidationError("--credential takes credential names")
            }
            for block in self.allow where CIDR(block) == nil {
                throw ValidationError("--allow '\(block)' is not an IPv4 or IPv6 CIDR block")
            }
            if let ttl = self.ttlSeconds, ttl < 1 { throw ValidationError("--ttl-seconds must be positive") }
            guard !self.name.isEmpty, self.name.count <= 128 else {
                throw ValidationError("--name must be 1 to 128 characters")
            }
        }

        func run() async throws {
            let request = MintRequest(
                name: self.name, description: self.description, role: APIKeyRole(rawValue: self.role)!,
                scope: AccessScope(
                    vaults: self.vaults == ["*"] ? nil : Set(self.vaults),
                    credentials: self.credentials.isEmpty ? nil : Set(self.credentials)),
                allowlist: self.allow.isEmpty ? nil : self.allow.compactMap { CIDR($0) },
                ttl: self.ttlSeconds.map { .seconds($0) })
            let (info, key) = try await KeysCommand.withKeyStore(self.options) { keys in
                try await keys.mint(request, by: .cli, now: Date())
            }
            print("Minted \(info.role.rawValue) key '\(info.name)' (id \(info.id)). It is shown only now:\n")
            print(key)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List API keys (never the keys themselves).")

        @OptionGroup var options: ServerOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let keys = try await KeysCommand.withKeyStore(self.options) { try await $0.list(now: Date()) }
            if self.json {
                print(String(decoding: try KeysCommand.encoder().encode(keys), as: UTF8.self))
                return
            }
            let header = ["ID", "PREFIX", "NAME", "ROLE", "VAULTS", "STATUS", "LAST SEEN", "CALLS 24H"]
            let rows = keys.map { key in
                [
                    key.id, key.prefix, key.name, key.role.rawValue, key.vaults.joined(separator: ","), key.status,
                    key.lastSeenAt.map { ISO8601DateFormatter().string(from: $0) } ?? "-", String(key.callsLast24h),
                ]
            }
            printTable(header: header, rows: rows)
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke an API key; every replica refuses it within a second.")

        @OptionGroup var options: ServerOptions
        @Argument(help: "The key's id (from `keys list`).") var id: String

        func validate() throws {
            guard UUID(uuidString: self.id) != nil else { throw ValidationError("'\(self.id)' is not a key id") }
        }

        func run() async throws {
            let id = UUID(uuidString: self.id)!
            let info = try await KeysCommand.withKeyStore(self.options) { keys in
                try await keys.revoke(id: id, by: .cli, now: Date())
            }
            print("Key \(info.prefix)… ('\(info.name)') is \(info.status).")
        }
    }
}
