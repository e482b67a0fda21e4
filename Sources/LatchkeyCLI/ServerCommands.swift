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
import UnixSignals

/// Options every server-side command shares: one flag per `LATCHKEY_*`
/// setting (`LatchkeyConfiguration.settings`). A flag overrides its variable;
/// a secret's flag names a file holding it, so the secret stays out of the
/// process list. Validation is the variables' own, so a bad flag gets the
/// same one-line error naming the variable.
struct ServerOptions: ParsableArguments {
    @Option(name: .customLong("database-url"), help: "LATCHKEY_DATABASE_URL: PostgreSQL URL.")
    var databaseURL: String?
    @Option(name: .customLong("database-timeout"), help: "LATCHKEY_DATABASE_TIMEOUT (default 5s).")
    var databaseTimeout: String?
    @Option(name: .customLong("master-key-file"), help: "File holding LATCHKEY_MASTER_KEY.")
    var masterKeyFile: String?
    @Option(name: .customLong("master-key-previous-file"), help: "File holding LATCHKEY_MASTER_KEY_PREVIOUS.")
    var masterKeyPreviousFile: String?
    @Option(name: .customLong("admin-secret-file"), help: "File holding LATCHKEY_ADMIN_SECRET.")
    var adminSecretFile: String?
    @Option(name: .customLong("public-url"), help: "LATCHKEY_PUBLIC_URL: the base URL browsers reach.")
    var publicURL: String?
    @Option(name: .customLong("refresh-window"), help: "LATCHKEY_REFRESH_WINDOW (default 300 seconds).")
    var refreshWindow: String?
    @Option(name: .customLong("refresh-scan-interval"), help: "LATCHKEY_REFRESH_SCAN_INTERVAL (default 5s).")
    var refreshScanInterval: String?
    @Option(name: .customLong("refresh-concurrency"), help: "LATCHKEY_REFRESH_CONCURRENCY (default 16).")
    var refreshConcurrency: String?
    @Option(name: .customLong("refresh-host-concurrency"), help: "LATCHKEY_REFRESH_HOST_CONCURRENCY (default 8).")
    var refreshHostConcurrency: String?
    @Option(name: .customLong("provider-timeout"), help: "LATCHKEY_PROVIDER_TIMEOUT (default 15s).")
    var providerTimeout: String?
    @Option(name: .customLong("trusted-proxies"), help: "LATCHKEY_TRUSTED_PROXIES: comma-separated CIDR blocks.")
    var trustedProxies: String?
    @Option(name: .customLong("rate-limit"), help: "LATCHKEY_RATE_LIMIT: requests/s per key (default 1000).")
    var rateLimit: String?
    @Option(name: .customLong("rate-limit-burst"), help: "LATCHKEY_RATE_LIMIT_BURST (default twice the rate).")
    var rateLimitBurst: String?
    @Option(name: .customLong("ephemeral-max-ttl"), help: "LATCHKEY_EPHEMERAL_MAX_TTL (default 24h).")
    var ephemeralMaxTTL: String?
    @Option(name: .customLong("usage-flush-interval"), help: "LATCHKEY_USAGE_FLUSH_INTERVAL (default 5s).")
    var usageFlushInterval: String?
    @Option(name: .customLong("webhook-url"), help: "LATCHKEY_WEBHOOK_URL: where signed events are posted.")
    var webhookURL: String?
    @Option(name: .customLong("webhook-secret-file"), help: "File holding LATCHKEY_WEBHOOK_SECRET.")
    var webhookSecretFile: String?
    @Option(name: .customLong("shutdown-grace"), help: "LATCHKEY_SHUTDOWN_GRACE (default 30s).")
    var shutdownGrace: String?
    @Option(name: .customLong("log-level"), help: "LATCHKEY_LOG_LEVEL: trace ... error (default info).")
    var logLevel: String?
    @Option(name: .customLong("log-format"), help: "LATCHKEY_LOG_FORMAT: logfmt or json (default logfmt).")
    var logFormat: String?

    /// Flags over the environment, as variables.
    func overrides() throws -> [String: String] {
        var values: [String: String] = [:]
        let plain: [(String, String?)] = [
            ("LATCHKEY_DATABASE_URL", self.databaseURL), ("LATCHKEY_DATABASE_TIMEOUT", self.databaseTimeout),
            ("LATCHKEY_PUBLIC_URL", self.publicURL), ("LATCHKEY_REFRESH_WINDOW", self.refreshWindow),
            ("LATCHKEY_REFRESH_SCAN_INTERVAL", self.refreshScanInterval),
            ("LATCHKEY_REFRESH_CONCURRENCY", self.refreshConcurrency),
            ("LATCHKEY_REFRESH_HOST_CONCURRENCY", self.refreshHostConcurrency),
            ("LATCHKEY_PROVIDER_TIMEOUT", self.providerTimeout), ("LATCHKEY_TRUSTED_PROXIES", self.trustedProxies),
            ("LATCHKEY_RATE_LIMIT", self.rateLimit), ("LATCHKEY_RATE_LIMIT_BURST", self.rateLimitBurst),
            ("LATCHKEY_EPHEMERAL_MAX_TTL", self.ephemeralMaxTTL),
            ("LATCHKEY_USAGE_FLUSH_INTERVAL", self.usageFlushInterval), ("LATCHKEY_WEBHOOK_URL", self.webhookURL),
            ("LATCHKEY_SHUTDOWN_GRACE", self.shutdownGrace), ("LATCHKEY_LOG_LEVEL", self.logLevel),
            ("LATCHKEY_LOG_FORMAT", self.logFormat),
        ]
        for case (let variable, let value?) in plain { values[variable] = value }
        let files: [(String, String?)] = [
            ("LATCHKEY_MASTER_KEY", self.masterKeyFile), ("LATCHKEY_MASTER_KEY_PREVIOUS", self.masterKeyPreviousFile),
            ("LATCHKEY_ADMIN_SECRET", self.adminSecretFile), ("LATCHKEY_WEBHOOK_SECRET", self.webhookSecretFile),
        ]
        for case (let variable, let path?) in files {
            guard let contents = FileManager.default.contents(atPath: path) else {
                throw ConfigurationError("\(variable): cannot read the file \(path)")
            }
            values[variable] = String(decoding: contents, as: UTF8.self)
        }
        return values
    }

    /// The environment, overridden by flags, validated.
    func configuration() throws -> LatchkeyConfiguration {
        let environment = ProcessInfo.processInfo.environment.merging(try self.overrides()) { $1 }
        return try LatchkeyConfiguration.fromEnvironment(environment)
    }

    func makeLogger(_ configuration: LatchkeyConfiguration) -> Logger {
        let level = Logger.Level(rawValue: configuration.logLevel.rawValue) ?? .info
        let json = configuration.logFormat == .json
        LoggingSystem.bootstrap { label in LogfmtLogHandler(label: label, level: level, json: json) }
        return Logger(label: "latchkey")
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the Latchkey server (applies pending migrations first).")

    @OptionGroup var options: ServerOptions

    @Option(help: "LATCHKEY_LISTEN: host:port to listen on (default 127.0.0.1:8080).")
    var listen: String?

    @Flag(name: .customLong("no-migrate"), help: "Refuse to start if migrations are pending instead of applying them.")
    var noMigrate = false

    func run() async throws {
        var configuration = try self.options.configuration()
        if let listen { try configuration.setListen(listen) }
        configuration.migrateOnStart = !self.noMigrate
        let logger = self.options.makeLogger(configuration)
        let application = try buildApplication(configuration, logger: logger)
        logger.info(
            "starting", metadata: ["listen": "\(configuration.listenHost):\(configuration.listenPort)"])
        // Hummingbird's runService() with a bound on graceful shutdown: on
        // SIGTERM the server stops accepting, in-flight requests and refreshes
        // finish, usage is flushed and the pool closed, within the grace period;
        // what is still running then is cancelled.
        var group = ServiceGroupConfiguration(
            services: [application], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        group.maximumGracefulShutdownDuration = configuration.shutdownGrace
        try await ServiceGroup(configuration: group).run()
        logger.info("stopped")
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
        let logger = self.options.makeLogger(configuration)
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
        let logger = self.options.makeLogger(configuration)
        let migrator = try Migrator(logger: logger)
        let postgres = try DatabaseURL.configuration(configuration.databaseURL)
        let report: String = try await PostgresClient.withRunning(
            postgres, logger: logger, reachableWithin: configuration.databaseTimeout
        ) { client in
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
        let logger = self.options.makeLogger(configuration)
        let keyRing = try KeyRing(currentHex: configuration.masterKey, previousHex: configuration.previousMasterKeys)
        let postgres = try DatabaseURL.configuration(configuration.databaseURL)
        let batchSize = self.batchSize
        let (resealed, remaining) = try await PostgresClient.withRunning(
            postgres, logger: logger, reachableWithin: configuration.databaseTimeout
        ) { client in
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
