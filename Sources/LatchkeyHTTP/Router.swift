package import Foundation
package import Hummingbird
import LatchkeyCore
package import LatchkeyStore
import PostgresNIO

/// Everything the routes need, built by the composition root.
package struct RouterDependencies: Sendable {
    package var store: VaultStore
    package var migrator: Migrator
    package var adminSecret: String?
    package var now: @Sendable () -> Date

    package init(store: VaultStore, migrator: Migrator, adminSecret: String?, now: @escaping @Sendable () -> Date) {
        self.store = store
        self.migrator = migrator
        self.adminSecret = adminSecret
        self.now = now
    }
}

/// The whole HTTP surface: health checks in the open, `/v1` behind authentication.
package func buildRouter(_ dependencies: RouterDependencies) -> Router<LatchkeyRequestContext> {
    let router = Router(context: LatchkeyRequestContext.self)
    router.add(middleware: APIErrorMiddleware())

    router.get("healthz") { _, _ in
        try APIJSON.response(["status": "ok"])
    }
    router.get("readyz") { _, context in
        do {
            let status = try await dependencies.migrator.status(dependencies.store.client)
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

    let v1 = router.group("v1")
        .add(middleware: AdminSecretAuthenticator(adminSecret: dependencies.adminSecret, store: dependencies.store))
    VaultController(store: dependencies.store).addRoutes(to: v1)
    CredentialController(store: dependencies.store, now: dependencies.now).addRoutes(to: v1)
    AuditController(store: dependencies.store).addRoutes(to: v1)
    return router
}
