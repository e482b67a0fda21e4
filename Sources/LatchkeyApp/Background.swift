package import AsyncHTTPClient
package import CoreMetrics
package import Foundation
import LatchkeyCore
import LatchkeyCrypto
package import LatchkeyOAuth
package import LatchkeyRefresher
package import LatchkeyStore
package import Logging
import PostgresNIO
import Prometheus
package import ServiceLifecycle
import UnixSignals

/// The background half of Latchkey: the token refresher, webhook delivery
/// and the metrics sampler. `latchkey serve` runs it beside the HTTP server;
/// `latchkey refresher` runs it alone, for deployments that scale the two
/// apart. Either way any number of replicas may run it on one database.
package struct BackgroundWork: Sendable {
    package let refresher: TokenRefresher
    package let webhooks: WebhookDeliverer?
    package let sampler: MetricsSampler
    let configuration: LatchkeyConfiguration

    package init(
        configuration: LatchkeyConfiguration, store: VaultStore, http: HTTPClient, tokens: TokenEndpointClient,
        metrics: any MetricsFactory, logger: Logger, now: @escaping @Sendable () -> Date
    ) {
        var settings = RefresherSettings()
        settings.concurrency = configuration.refreshConcurrency
        settings.perHostConcurrency = configuration.refreshHostConcurrency
        let refreshMetrics = RefreshMetrics(factory: metrics)
        self.refresher = TokenRefresher(
            store: store, tokens: tokens, policy: RefreshPolicy(window: configuration.refreshWindow),
            settings: settings, now: now, metrics: refreshMetrics, logger: logger)
        if let url = configuration.webhookURL, let secret = configuration.webhookSecret {
            self.webhooks = WebhookDeliverer(
                store: store, http: http, url: url, secret: secret, now: now, logger: logger)
        } else {
            self.webhooks = nil
        }
        self.sampler = MetricsSampler(store: store, metrics: refreshMetrics, now: now, logger: logger)
        self.configuration = configuration
    }

    /// The services to add to a group, after the Postgres client and the HTTP client.
    package var services: [any Service] {
        let refresher = self.refresher
        var services: [any Service] = [
            PeriodicService(interval: self.configuration.refreshScanInterval) {
                await refresher.drainDue()
                await refresher.warnExpiring()
            },
            PeriodicService(interval: self.configuration.metricsSampleInterval, runAtStart: true) {
                await self.sampler.sample()
            },
        ]
        if let webhooks = self.webhooks {
            services.append(
                PeriodicService(interval: self.configuration.webhookInterval) { await webhooks.deliverDue() })
        }
        return services
    }
}

/// Reads the refresher's queue from the database into gauges (due backlog,
/// credentials by status), so every replica's `/metrics` shows them.
package struct MetricsSampler: Sendable {
    let store: VaultStore
    let metrics: RefreshMetrics
    let now: @Sendable () -> Date
    let logger: Logger

    package func sample() async {
        do {
            self.metrics.recordQueue(try await self.store.refreshQueueSnapshot(now: self.now()))
        } catch {
            self.logger.debug("metrics sample failed", metadata: ["error.type": "\(type(of: error))"])
        }
    }
}

/// The configuration checked, the master keys loaded, and the Postgres pool
/// and vault store over them: what `serve` and `refresher` both start from.
func openVault(
    _ configuration: LatchkeyConfiguration, logger: Logger
) throws -> (PostgresClient, Sealer, VaultStore) {
    try configuration.validate()
    let keyRing = try KeyRing(currentHex: configuration.masterKey, previousHex: configuration.previousMasterKeys)
    let sealer = Sealer(keyRing: keyRing)
    let client = PostgresClient(
        configuration: try DatabaseURL.configuration(configuration.databaseURL), backgroundLogger: logger)
    let store = VaultStore(
        client: client, sealer: sealer, refreshWindow: configuration.refreshWindow,
        webhooksEnabled: configuration.webhookURL != nil, logger: logger)
    return (client, sealer, store)
}

/// `latchkey refresher`: the background work alone, with no HTTP listener.
/// Checks, before refreshing anything, that the master keys open what is
/// stored and that the schema is current (it never migrates: that is
/// `serve`'s or `migrate`'s job).
package func buildRefresherGroup(
    _ configuration: LatchkeyConfiguration, logger: Logger, now: @escaping @Sendable () -> Date = { Date() }
) throws -> ServiceGroup {
    let (client, sealer, store) = try openVault(configuration, logger: logger)
    let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
    let tokens = TokenEndpointClient(http: http, timeout: configuration.providerTimeout)
    // No /metrics listener here: the gauges and counters are kept so a
    // future scrape endpoint (or the logs) can use them.
    let background = BackgroundWork(
        configuration: configuration, store: store, http: http, tokens: tokens,
        metrics: PrometheusMetricsFactory(registry: PrometheusCollectorRegistry()), logger: logger, now: now)
    let migrator = try Migrator(logger: logger)
    let preflighted = AfterCheck(services: background.services) {
        try await KeyRingMaintenance(client: client, sealer: sealer, logger: logger).verify()
        let status = try await migrator.status(client)
        guard status.isCurrent else {
            throw MigrationError("\(status.pending.count) migration(s) pending; run `latchkey migrate` first")
        }
        logger.info("refresher started", metadata: ["owner": "\(background.refresher.owner)"])
    }
    var group = ServiceGroupConfiguration(
        services: [
            .init(service: client), .init(service: HTTPClientService(client: http)),
            .init(service: preflighted),
        ],
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger)
    group.maximumGracefulShutdownDuration = configuration.shutdownGrace
    return ServiceGroup(configuration: group)
}

/// Runs a check, then `services` side by side; a failed check ends the group.
struct AfterCheck: Service {
    let services: [any Service]
    let check: @Sendable () async throws -> Void

    init(services: [any Service], check: @escaping @Sendable () async throws -> Void) {
        self.services = services
        self.check = check
    }

    func run() async throws {
        try await self.check()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for service in self.services {
                group.addTask { try await service.run() }
            }
            try await group.waitForAll()
        }
    }
}
