import ArgumentParser
import Foundation
import Hummingbird
import LatchkeyApp
import LatchkeyCore
import LatchkeyCrypto
import LatchkeyStore
import Logging
import PostgresNIO
import ServiceLifecycle

/// Options every server-side command shares.
struct ServerOptions: ParsableArguments {
    @Option(name: .customLong("database-url"), help: "Postgres URL (default: $LATCHKEY_DATABASE_URL).")
    var databaseURL: String?

    @Option(
        name: .customLong("log-level"),
        help: "trace, debug, info, notice, warning, error (default: $LATCHKEY_LOG_LEVEL or info).")
    var logLevel: String?

    /// The environment, overridden by flags, validated.
    func configuration() throws -> LatchkeyConfiguration {
        var environment = ProcessInfo.processInfo.environment
        if let databaseURL { environment["LATCHKEY_DATABASE_URL"] = databaseURL }
        return try LatchkeyConfiguration.fromEnvironment(environment)
    }

    func makeLogger() throws -> Logger {
        let name = self.logLevel ?? ProcessInfo.processInfo.environment["LATCHKEY_LOG_LEVEL"] ?? "info"
        guard let level = Logger.Level(rawValue: name) else {
            throw ValidationError("log level '\(name)' is not one of trace, debug, info, notice, warning, error")
        }
        LoggingSystem.bootstrap { label in LogfmtLogHandler(label: label, level: level) }
        return Logger(label: "latchkey")
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the Latchkey server (applies pending migrations first).")

    @OptionGroup var options: ServerOptions

    @Option(help: "host:port to listen on (default: $LATCHKEY_LISTEN or 127.0.0.1:8080).")
    var listen: String?

    @Flag(name: .customLong("no-migrate"), help: "Refuse to start if migrations are pending instead of applying them.")
    var noMigrate = false

    func run() async throws {
        var configuration = try self.options.configuration()
        if let listen { try configuration.setListen(listen) }
        configuration.migrateOnStart = !self.noMigrate
        let logger = try self.options.makeLogger()
        let application = try buildApplication(configuration, logger: logger)
        logger.info(
            "starting", metadata: ["listen": "\(configuration.listenHost):\(configuration.listenPort)"])
        try await application.runService()
    }
}

struct Refresher: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run only the background work: the token refresher and webhook delivery (no HTTP listener).",
        discussion: """
            For deployments that scale the API and the refresher apart. Any number of `refresher` and `serve` \
            processes may share one database: each due token is claimed by exactly one of them. The schema must \
            be current (run `latchkey migrate` first). Stops gracefully on SIGTERM or SIGINT, finishing refreshes \
            in flight.
            """)

    @OptionGroup var options: ServerOptions

    func run() async throws {
        let configuration = try self.options.configuration()
        let logger = try self.options.makeLogger()
        try await buildRefresherGroup(configuration, logger: logger).run()
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply pending database migrations (safe to run from many replicas at once).")

    @OptionGroup var options: ServerOptions

    @Flag(help: "Only report which migrations are applied and pending.")
    var status = false

    func run() async throws {
        let configuration = try self.options.configuration()
        let logger = try self.options.makeLogger()
        let migrator = try Migrator(logger: logger)
        let postgres = try DatabaseURL.configuration(configuration.databaseURL)
        let report: String = try await PostgresClient.withRunning(postgres, logger: logger) { client in
            if self.status {
                let status = try await migrator.status(client)
                return "applied: \(status.applied.map(String.init).joined(separator: ", "))\n"
                    + "pending: \(status.pending.isEmpty ? "none" : status.pending.map(String.init).joined(separator: ", "))"
            }
            let applied = try await migrator.migrate(client)
            return applied.isEmpty
                ? "Database is up to date (\(migrator.migrations.count) migrations)."
                : "Applied \(applied.count) migration(s): \(applied.map(String.init).joined(separator: ", "))."
        }
        print(report)
    }
}

struct Rekey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-seal every credential under LATCHKEY_MASTER_KEY.",
        discussion: """
            Set LATCHKEY_MASTER_KEY to the new key and LATCHKEY_MASTER_KEY_PREVIOUS to the old one(s), restart \
            the servers with both, then run this. It works in batches while the servers keep serving; once it \
            reports zero rows left, the previous keys can be removed.
            """)

    @OptionGroup var options: ServerOptions

    @Option(name: .customLong("batch-size"), help: "Rows re-sealed per transaction.")
    var batchSize: Int = 500

    func validate() throws {
        guard (1...10_000).contains(self.batchSize) else { throw ValidationError("--batch-size must be 1 to 10000") }
    }

    func run() async throws {
        let configuration = try self.options.configuration()
        let logger = try self.options.makeLogger()
        let keyRing = try KeyRing(currentHex: configuration.masterKey, previousHex: configuration.previousMasterKeys)
        let postgres = try DatabaseURL.configuration(configuration.databaseURL)
        let batchSize = self.batchSize
        let (resealed, remaining) = try await PostgresClient.withRunning(postgres, logger: logger) { client in
            let maintenance = KeyRingMaintenance(client: client, sealer: Sealer(keyRing: keyRing), logger: logger)
            let resealed = try await maintenance.rekey(batchSize: batchSize)
            let store = VaultStore(client: client, sealer: Sealer(keyRing: keyRing), logger: logger)
            try await store.recordAudit(
                action: .rekey, vault: nil, credential: nil, by: .cli, outcome: .success,
                detail: ["rows": .number(Double(resealed)), "key_version": .number(Double(keyRing.current.version))])
            return (resealed, try await maintenance.rowsNeedingRekey())
        }
        print(
            "Re-sealed \(resealed) credential(s) under key version \(keyRing.current.version); \(remaining) left under older keys."
        )
    }
}
