import AsyncHTTPClient
package import Foundation
package import Hummingbird
import LatchkeyCore
import LatchkeyCrypto
package import LatchkeyHTTP
import LatchkeyOAuth
package import LatchkeyRefresher
import LatchkeyStore
package import Logging
import PostgresNIO
package import Prometheus

/// The assembled server and the parts tests and commands reach into.
package struct LatchkeyServer: Sendable {
    package let application: Application<RouterResponder<LatchkeyRequestContext>>
    package let usageFlusher: UsageFlusher
    package let keyCache: KeyCache
    package let credentialCache: CredentialCache
    /// Answers warm injections on the event loop (`.live` servers only).
    package let shortcut: InjectionShortcut
    package let refresher: TokenRefresher
    package let background: BackgroundWork
    /// What `/metrics` renders; each server has its own.
    package let metrics: PrometheusCollectorRegistry
    /// Every route the router has, as `GET /v1/vaults/{vault}` (the OpenAPI coverage test reads it).
    package let routes: [String]
}

/// Builds the Latchkey server: the Postgres pool, the key-change listener and
/// the usage flusher (services in the application's group, in that order, so
/// shutdown stops the server first, then flushes usage, then closes the
/// pool), the stores and the router. Before the server accepts a connection
/// it verifies that the master keys open what is stored (changing nothing if
/// they do not) and applies pending migrations under the advisory lock.
package func buildServer(
    _ configuration: LatchkeyConfiguration,
    logger: Logger,
    now: @escaping @Sendable () -> Date = { Date() }
) throws -> LatchkeyServer {
    let (client, sealer, store) = try openVault(configuration, logger: logger)
    let keys = KeyStore(client: client, logger: logger)
    let migrator = try Migrator(logger: logger)
    let cache = KeyCache()
    let credentials = CredentialCache()
    let usage = UsageRecorder()
    let flusher = UsageFlusher(
        usage: usage, keys: keys, interval: configuration.usageFlushInterval, now: now, logger: logger)
    let authentication = AuthenticationDependencies(
        keys: keys, cache: cache,
        rateLimiter: RateLimiter(
            rate: configuration.rateLimit, burst: configuration.rateLimitBurst ?? configuration.rateLimit * 2),
        usage: usage, adminSecret: configuration.adminSecret, trustedProxies: configuration.trustedProxies, now: now)
    // The one outbound HTTP client, owned here and shut down after the server.
    let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
    let tokens = TokenEndpointClient(http: http, timeout: configuration.providerTimeout)
    // Metrics go to this server's own registry rather than the global
    // MetricsSystem, so servers in one test process do not share counts.
    let registry = PrometheusCollectorRegistry()
    let background = BackgroundWork(
        configuration: configuration, store: store, http: http, tokens: tokens,
        metrics: PrometheusMetricsFactory(registry: registry), logger: logger, now: now)
    let refresher = background.refresher
    var dependencies = RouterDependencies(
        store: store, migrator: migrator, authentication: authentication,
        maxEphemeralTTL: configuration.maxEphemeralTTL, tokens: tokens, refresher: refresher, metrics: registry,
        credentials: credentials, now: now)
    dependencies.refreshWindow = configuration.refreshWindow
    dependencies.refreshWait = configuration.providerTimeout + .seconds(5)
    dependencies.publicURL = configuration.publicURL
    dependencies.databaseTimeout = configuration.databaseTimeout
    let serverName = "latchkey"
    let shortcut = InjectionShortcut(dependencies, logger: logger, serverName: serverName)
    dependencies.shortcut = shortcut
    let router = buildRouter(dependencies)
    var application = Application(
        router: router,
        server: .http1(configuration: .init(additionalChannelHandlers: [InjectionShortcutHandler(shortcut)])),
        configuration: .init(
            address: .hostname(configuration.listenHost, port: configuration.listenPort), serverName: serverName),
        services: [
            client,
            InvalidationListener(client: client, channel: InvalidationListener.apiKeys, cache: cache, logger: logger),
            InvalidationListener(
                client: client, channel: InvalidationListener.credentials, cache: credentials, logger: logger),
            flusher,
            HTTPClientService(client: http),
        ] + background.services,
        logger: logger
    )
    let postgres = try DatabaseURL.configuration(configuration.databaseURL)
    application.beforeServerStarts {
        try await client.checkReachable(postgres, within: configuration.databaseTimeout)
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
    return LatchkeyServer(
        application: application, usageFlusher: flusher, keyCache: cache, credentialCache: credentials,
        shortcut: shortcut,
        refresher: refresher, background: background,
        metrics: registry,
        routes: router.routes.map { "\($0.method.rawValue) \($0.path)" })
}

/// The server as an application to run (`latchkey serve`, most tests).
package func buildApplication(
    _ configuration: LatchkeyConfiguration,
    logger: Logger,
    now: @escaping @Sendable () -> Date = { Date() }
) throws -> some ApplicationProtocol {
    try buildServer(configuration, logger: logger, now: now).application
}
