import LatchkeyCore
import Logging
import PostgresNIO

/// Writes audit rows. Shared by every store so rows have one shape; callers
/// pass only non-secret detail.
enum AuditLog {
    static func append(
        _ connection: PostgresConnection, logger: Logger, action: AuditAction, vault: String?, credential: String?,
        actor: String, outcome: AuditEvent.Outcome, detail: [String: JSONValue] = [:]
    ) async throws {
        try await connection.query(
            """
            INSERT INTO audit_events (actor, action, vault, credential, outcome, detail)
            VALUES (\(actor), \(action.rawValue), \(vault), \(credential), \(outcome.rawValue),
                    \(JSONText.encode(detail))::jsonb)
            """, logger: logger)
    }
}
