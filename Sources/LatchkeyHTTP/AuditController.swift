import Hummingbird
import LatchkeyCore
import LatchkeyStore

/// `GET /v1/audit`: the audit log, newest first, filtered by vault,
/// credential, actor, action and time.
struct AuditController {
    let store: VaultStore

    func addRoutes(to group: RouterGroup<LatchkeyRequestContext>) {
        group.get("audit", use: self.list)
    }

    @Sendable func list(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let parameters = Parameters(request: request, context: context)
        var filter = AuditFilter()
        filter.vault = try parameters.string("vault", maxLength: 64)
        filter.credential = try parameters.string("credential", maxLength: 128)
        filter.actor = try parameters.string("actor", maxLength: 128)
        filter.action = try parameters.string("action", maxLength: 64)
        filter.since = try parameters.time("since")
        filter.until = try parameters.time("until")
        filter.limit = try parameters.integer("limit", in: 1...500) ?? 100
        if let cursor = try parameters.string("cursor") {
            guard let position = Cursor.decode(cursor), let id = Int64(position), id > 0 else {
                throw Parameters.invalid("cursor", "is not a cursor this API returned")
            }
            filter.beforeID = id
        }
        var page = try await self.store.auditEvents(filter)
        page.nextCursor = page.nextCursor.map(Cursor.encode)
        return try APIJSON.response(page)
    }
}
