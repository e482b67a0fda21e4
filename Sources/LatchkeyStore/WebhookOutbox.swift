package import Foundation
package import LatchkeyCore
package import Logging
import NIOCore
package import PostgresNIO

/// The kinds of webhook event (SPEC section 4): never a token, only which
/// credential, its status and why.
package enum WebhookEventType: String, Sendable, CaseIterable {
    /// A refresh was refused (`invalid_grant`, ...): a person must reconnect.
    case needsReauth = "credential.needs_reauth"
    /// A credential that was failing works again.
    case recovered = "credential.recovered"
    /// A token expires within the refresh window and cannot be refreshed in time.
    case expiring = "credential.expiring"
}

/// A recorded event waiting for delivery.
package struct PendingWebhookEvent: Sendable {
    package let id: UUID
    package let type: String
    /// The exact bytes to send (and sign).
    package let body: String
    package let attempts: Int
}

/// Webhook events are written to `webhook_events` in the same transaction as
/// the change they report (a transactional outbox), so an event is never
/// sent for a change that rolled back nor lost for one that committed; a
/// delivery service on any replica then claims and sends them.
package enum WebhookOutbox {
    /// Records an event; with a `dedupeKey` already recorded, nothing is
    /// added. Returns whether an event was added.
    @discardableResult
    package static func enqueue(
        _ connection: PostgresConnection, logger: Logger, type: WebhookEventType, now: Date,
        data: [String: JSONValue], dedupeKey: String? = nil
    ) async throws -> Bool {
        let id = UUID()
        let payload: [String: JSONValue] = [
            "id": .string(id.lowercasedString), "type": .string(type.rawValue),
            "created_at": .string(ISO8601DateFormatter().string(from: now)), "data": .object(data),
        ]
        let rows = try await connection.query(
            """
            INSERT INTO webhook_events (id, type, payload, dedupe_key, created_at, next_attempt_at)
            VALUES (\(id), \(type.rawValue), \(JSONText.encode(payload))::jsonb, \(dedupeKey), \(now), \(now))
            ON CONFLICT (dedupe_key) DO NOTHING
            RETURNING id
            """, logger: logger)
        return try await rows.decode(UUID.self).first(where: { _ in true }) != nil
    }
}

extension VaultStore {
    /// Claims up to `limit` events due for delivery, pushing their next
    /// attempt `lease` into the future so that no other replica sends them
    /// meanwhile (a replica that dies mid-delivery leaves them to be retried).
    package func claimWebhookEvents(now: Date, lease: Duration, limit: Int) async throws -> [PendingWebhookEvent] {
        try await withDatabaseErrors {
            let leaseEnd = now.addingTimeInterval(RefreshPolicy.seconds(lease))
            let rows = try await self.client.query(
                """
                UPDATE webhook_events e SET next_attempt_at = \(leaseEnd)
                FROM (
                    SELECT id FROM webhook_events
                    WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= \(now)
                    ORDER BY next_attempt_at LIMIT \(limit)
                    FOR UPDATE SKIP LOCKED
                ) due
                WHERE e.id = due.id
                RETURNING e.id, e.type, e.payload::text, e.attempts, e.created_at
                """, logger: self.logger)
            var events: [(PendingWebhookEvent, Date)] = []
            for try await (id, type, body, attempts, createdAt) in rows.decode((UUID, String, String, Int, Date).self) {
                events.append((PendingWebhookEvent(id: id, type: type, body: body, attempts: attempts), createdAt))
            }
            // Oldest first, so a receiver sees a credential's events in order.
            return events.sorted { $0.1 < $1.1 }.map(\.0)
        }
    }

    /// Records a delivery attempt: delivered, retry at `retryAt`, or (with
    /// `retryAt` nil after a failure) given up.
    package func recordWebhookAttempt(
        _ event: PendingWebhookEvent, delivered: Bool, error: String?, retryAt: Date?, now: Date
    ) async throws {
        _ = try await withDatabaseErrors {
            try await self.client.query(
                """
                UPDATE webhook_events SET attempts = attempts + 1, last_error = \(error),
                    delivered_at = \(delivered ? now : nil),
                    failed_at = \(!delivered && retryAt == nil ? now : nil),
                    next_attempt_at = \(delivered ? nil : retryAt)
                WHERE id = \(event.id)
                """, logger: self.logger)
        }
    }
}
