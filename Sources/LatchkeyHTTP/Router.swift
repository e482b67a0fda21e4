package import Foundation
import HTTPTypes
package import Hummingbird
import LatchkeyCore
package import LatchkeyOAuth
package import LatchkeyRefresher
package import LatchkeyStore
import NIOCore
import PostgresNIO
package import Prometheus

/// Everything the routes need, built by the composition root.
package struct RouterDependencies: Sendable {
    package var store: VaultStore
    package var migrator: Migrator
    package var authentication: AuthenticationDependencies
    package var maxEphemeralTTL: Duration
    package var tokens: TokenEndpointClient
    package var refresher: TokenRefresher
    /// What `GET /metrics` renders.
    package var metrics: PrometheusCollectorRegistry
    /// `latchkey_http_request_duration_seconds`, in `metrics`.
    package let requestMetrics: RequestMetrics
    /// The event-loop answerer of warm injections, when the server has one
    /// (its count is scraped into `metrics`).
    package var shortcut: InjectionShortcut?
    /// Sealed credentials for the injection path.
    package var credentials: CredentialCache
    /// `LATCHKEY_REFRESH_WINDOW`: injection refreshes OAuth tokens this close to expiry first.
    package var refreshWindow: Duration = .seconds(300)
    /// How long injection waits for another replica's refresh.
    package var refreshWait: Duration = .seconds(20)
    /// `LATCHKEY_PUBLIC_URL`: the base browsers reach (connect links, the OAuth callback).
    package var publicURL: String?
    /// `LATCHKEY_DATABASE_TIMEOUT`: how long a request waits for the database.
    package var databaseTimeout: Duration?
    /// How long a connect link stays valid.
    package var connectSessionLifetime: Duration = .seconds(1800)
    package var now: @Sendable () -> Date

    package init(
        store: VaultStore, migrator: Migrator, authentication: AuthenticationDependencies, maxEphemeralTTL: Duration,
        tokens: TokenEndpointClient, refresher: TokenRefresher, metrics: PrometheusCollectorRegistry,
        credentials: CredentialCache, now: @escaping @Sendable () -> Date
    ) {
        self.metrics = metrics
        self.requestMetrics = RequestMetrics(registry: metrics)
        self.credentials = credentials
        self.tokens = tokens
        self.refresher = refresher
        self.store = store
        self.migrator = migrator
        self.authentication = authentication
        self.maxEphemeralTTL = maxEphemeralTTL
        self.now = now
    }
}

/// The whole HTTP surface. Health checks are open; every `/v1` route passes
/// the `Authenticator`, then the `RequireAccess` of its group, which is where
/// each route's role and scope are decided:
///
/// | group | who | routes |
/// |---|---|---|
/// | (none) | any valid key, the bootstrap secret | `GET /v1/whoami` |
/// | minting | admin keys (within their scope), the bootstrap secret | `POST /v1/keys` |
/// | installation | admin keys for all vaults | keys, audit, `POST /v1/vaults` |
/// | any admin | admin keys (lists filtered to their vaults) | `GET /v1/vaults`, `GET /v1/providers` |
/// | vault admin | admin keys scoped to `{vault}` | `/v1/vaults/{vault}/...` |
/// | proxy | proxy keys scoped to the credential | `/v1/inject/...`, `/v1/sign/...` |
package func buildRouter(_ dependencies: RouterDependencies) -> Router<LatchkeyRequestContext> {
    let router = Router(context: LatchkeyRequestContext.self)
    router.add(
        middleware: APIErrorMiddleware(
            metrics: dependencies.requestMetrics, databaseTimeout: dependencies.databaseTimeout))

    router.get("healthz") { _, _ in
        try APIJSON.response(["status": "ok"])
    }
    router.get("readyz") { _, context in
        do {
            let client = dependencies.store.client
            let status = try await withDatabaseErrors { try await dependencies.migrator.status(client) }
            guard status.isCurrent else {
                return APIErrorMiddleware.response(
                    for: LatchkeyError(
                        .databaseUnavailable,
                        "Not ready: \(status.pending.count) migration(s) pending; run `latchkey migrate`."))
            }
            return try APIJSON.response(["status": "ready"])
        } catch {
            context.logger.warning("readiness check failed", metadata: ["error.type": "\(type(of: error))"])
            return APIErrorMiddleware.response(for: .databaseUnavailable)
        }
    }

    // Prometheus text format. Open like the health checks (scrapers rarely
    // carry credentials): it names no credential, vault or key, only counts.
    // The checked-in openapi.json, embedded at build time (EmbedOpenAPIPlugin).
    let openAPI = ByteBuffer(bytes: embeddedOpenAPIFiles.first.flatMap { Data(base64Encoded: $0.base64) } ?? Data())
    router.get("openapi.json") { _, _ in
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: openAPI))
    }

    let scraped = ScrapedMetrics(
        registry: dependencies.metrics, credentials: dependencies.credentials, keys: dependencies.authentication.cache,
        shortcut: dependencies.shortcut)
    router.get("metrics") { _, _ in
        scraped.update()
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        let body = dependencies.metrics.emitToBuffer()
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    // The browser side of "connect with provider": public pages, guarded by
    // one-time tokens and OAuth state instead of API keys.
    let connect = ConnectController(
        store: dependencies.store, tokens: dependencies.tokens, publicURL: dependencies.publicURL,
        sessionLifetime: dependencies.connectSessionLifetime, refreshWindow: dependencies.refreshWindow,
        now: dependencies.now)
    connect.addBrowserRoutes(to: router)

    let v1 = router.group("v1").add(middleware: Authenticator(dependencies.authentication))
    // Admin and connect keys (checked in the handler: two roles).
    connect.addAPIRoutes(to: v1)
    let keys = KeyController(
        keys: dependencies.authentication.keys, maxEphemeralTTL: dependencies.maxEphemeralTTL, now: dependencies.now)
    let vaults = VaultController(store: dependencies.store)

    // Any valid key (or the bootstrap secret) may ask who it is: a sidecar can
    // check its key at start-up without needing any other permission.
    v1.get("whoami") { _, context in
        try APIJSON.response(WhoAmI(context.caller))
    }

    let minting = v1.group().add(middleware: RequireAccess(role: .admin, allowsBootstrapSecret: true))
    keys.addMintRoute(to: minting)

    let installation = v1.group().add(middleware: RequireAccess(role: .admin, needsAllVaults: true))
    keys.addRoutes(to: installation)
    AuditController(store: dependencies.store).addRoutes(to: installation)
    vaults.addCreateRoute(to: installation)

    let anyAdmin = v1.group().add(middleware: RequireAccess(role: .admin))
    vaults.addListRoute(to: anyAdmin)
    anyAdmin.get("providers") { _, _ in
        try APIJSON.response(Page(items: ProviderPresets.all, nextCursor: nil))
    }

    // Sidecars: proxy keys, scoped to the credential they inject.
    // (Warm injections are answered before the router: `InjectionShortcut`.)
    let proxy = v1.group().add(middleware: InjectionShortcut.access)
    InjectionController(
        injector: Injector(
            store: dependencies.store, cache: dependencies.credentials, refresher: dependencies.refresher,
            flights: SingleFlight(), refreshWindow: RefreshPolicy.seconds(dependencies.refreshWindow),
            refreshWait: dependencies.refreshWait, now: dependencies.now),
        usage: dependencies.authentication.usage, now: dependencies.now
    )
    .addRoutes(to: proxy)

    let vaultAdmin = v1.group()
        .add(middleware: RequireAccess(role: .admin, vaultParameter: "vault", credentialParameter: "name"))
    vaults.addVaultRoutes(to: vaultAdmin)
    CredentialController(
        store: dependencies.store, tokens: dependencies.tokens, refresher: dependencies.refresher, now: dependencies.now
    )
    .addRoutes(to: vaultAdmin)
    return router
}

/// `GET /v1/whoami`: the caller's identity and scope, never its key.
struct WhoAmI: Encodable {
    let principal: String
    let keyID: String?
    let role: String?
    let vaults: [String]
    let credentials: [String]?
    let bootstrapSecret: Bool

    init(_ principal: Principal) {
        self.principal = principal.name
        self.keyID = principal.keyID?.uuidString.lowercased()
        self.role = principal.role?.rawValue
        self.vaults = principal.scope.vaults.map { $0.sorted() } ?? ["*"]
        self.credentials = principal.scope.credentials.map { $0.sorted() }
        self.bootstrapSecret = principal.isBootstrapSecret
    }

    enum CodingKeys: String, CodingKey {
        case principal, role, vaults, credentials
        case keyID = "key_id"
        case bootstrapSecret = "bootstrap_secret"
    }
}
