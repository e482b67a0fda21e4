package import Foundation
package import Hummingbird
import LatchkeyCrypto
import LatchkeyHTTP
import LatchkeyStore
package import Logging
import PostgresNIO

/// Builds the Latchkey server: the Postgres pool (a service in the
/// application's group), the vault store and the router. Before the server
/// accepts a connection it verifies that the master keys open what is stored
/// (changing nothing if they do not) and applies pending migrations under the
/// advisory lock. Tests call this too.
package func buildApplication(
    _ configuration: LatchkeyConfiguration,
    logger: Logger,
    now: @escaping @Sendable () -> Date = { Date() }
) throws -> some ApplicationProtocol {
    try configuration.validate()
    let keyRing = try KeyRing(currentHex: configuration.masterKey, previousHex: configuration.previousMasterKeys)
    let sealer = Sealer(keyRing: keyRing)
    let client = PostgresClient(
        configuration: try DatabaseURL.configuration(configuration.databaseURL), backgroundLogger: logger)
    let store = VaultStore(
        client: client, sealer: sealer, refreshWindow: configuration.refreshWindow, logger: logger)
    let migrator = try Migrator(logger: logger)
    if configuration.adminSecret == nil {
        logger.warning("LATCHKEY_ADMIN_SECRET is not set: every admin call will be refused")
    }
    let router = buildRouter(
        RouterDependencies(store: store, migrator: migrator, adminSecret: configuration.adminSecret, now: now))
    var application = Application(
        router: router,
        configuration: .init(
            address: .hostname(configuration.listenHost, port: configuration.listenPort), serverName: "latchkey"),
        services: [client],
        logger: logger
    )
    application.beforeServerStarts {
        try await KeyRingMaintenance(client: client, sealer: sealer, logger: logger).verify()
        if configuration.migrateOnStart {
            let applied = try await migrator.migrate(client)
            logger.info("migrations current", metadata: ["migrations.applied_now": "\(applied.count)"])
        } else {
            let status = try await migrator.status(client)
            if !status.isCurrent {
                throw MigrationError("\(status.pending.count) migration(s) pending; run `latchkey migrate` first")
            }
        }
        let pending = try await KeyRingMaintenance(client: client, sealer: sealer, logger: logger).rowsNeedingRekey()
        if pending > 0 {
            logger.notice(
                "credentials sealed under a previous master key; run `latchkey rekey`",
                metadata: ["rekey.pending_rows": "\(pending)"])
        }
    }
    return application
}
