package import Foundation
package import LatchkeyCore
import LatchkeyCrypto
import NIOCore
import PostgresNIO

/// A credential claimed for refresh: its opened value, its client's, and the
/// revision and lease the claim was made under.
package struct ClaimedCredential: Sendable {
    package let id: UUID
    package let vaultID: UUID
    package let vault: String
    package let name: String
    package let type: CredentialType
    package let value: [String: JSONValue]
    /// The opened value of its `oauth_client`, nil when the client is gone.
    package let client: [String: JSONValue]?
    package let refreshFailures: Int
    /// The value's revision when claimed: an outcome is applied only if it is
    /// still the current one (nobody refreshed or rotated it meanwhile).
    package let revision: Int64
    /// The replica (or request) that holds the claim.
    package let owner: String
    /// After this the claim lapses and another replica may take the row.
    package let leaseExpiresAt: Date
}

/// What a refresh attempt came to; the store applies it under the claim.
package enum RefreshOutcome: Sendable {
    /// New tokens: the whole new value (sealed as is), the new expiry, and the
    /// provider's extra, non-secret response fields (`instance_url`, ...).
    case refreshed(value: [String: JSONValue], expiresAt: Date?, providerFields: [String: JSONValue])
    /// A transient failure: try again at `retryAt`.
    case backoff(retryAt: Date, reason: String)
    /// The provider refused the grant: a person must re-authorise.
    case needsReauth(reason: String)
}

/// Whether an outcome was written.
package enum RefreshCompletion: Sendable, Equatable {
    case applied
    /// The row changed while the provider was called (another replica
    /// refreshed it after this claim lapsed, an admin rotated or deleted
    /// it): the outcome was dropped, the newer state stands.
    case superseded
}

/// The refresher's queue, kept in the `credentials` table itself.
///
/// A due credential is *claimed* in a short transaction: `FOR UPDATE SKIP
/// LOCKED` over the partial index on `due_at` picks rows no other replica is
/// claiming, and the claim sets `status = 'refreshing'` with a lease
/// (`lease_owner`, `lease_expires_at`) and commits. The provider is then
/// called with no transaction open, and the outcome is written in a second
/// transaction that re-reads the row under a lock and applies it only if the
/// value's revision is still the one claimed. So:
///
/// - each due credential is refreshed by one replica at a time (a leased row
///   is not due again until its lease lapses, and the lease is longer than
///   the provider timeout, which the refresher checks before calling);
/// - a replica that dies mid-refresh loses its claim when the lease lapses;
/// - a rotated refresh token is written in the same transaction as its
///   access token, and a late outcome never overwrites a newer one.
extension VaultStore {
    /// Claims up to `limit` due credentials, most overdue first.
    package func claimDue(now: Date, owner: String, lease: Duration, limit: Int) async throws -> [ClaimedCredential] {
        try await withDatabaseErrors {
            try await self.client.withTransaction(logger: self.logger) { connection in
                let leaseExpiresAt = now.addingTimeInterval(RefreshPolicy.seconds(lease))
                let rows = try await connection.query(
                    """
                    WITH due AS (
                        SELECT id FROM credentials
                        WHERE due_at <= \(now)
                        ORDER BY due_at
                        LIMIT \(limit)
                        FOR UPDATE SKIP LOCKED
                    ), claimed AS (
                        UPDATE credentials c SET status = 'refreshing', lease_owner = \(owner),
                            lease_expires_at = \(leaseExpiresAt)
                        FROM due WHERE c.id = due.id
                        RETURNING c.id, c.vault_id, c.name, c.type, c.sealed, c.key_version, c.refresh_failures,
                            c.revision, c.client_id
                    )
                    \(unescaped: Self.claimSelect)
                    """, logger: self.logger)
                return try await self.decodeClaims(rows, owner: owner, leaseExpiresAt: leaseExpiresAt)
            }
        }
    }

    /// Claims one named credential for a refresh now (an admin's forced
    /// refresh, or a use that found the token expired). Answers 409
    /// `REFRESH_IN_PROGRESS` while another live claim holds it.
    package func claim(
        vault: String, name: String, now: Date, owner: String, lease: Duration
    ) async throws -> ClaimedCredential {
        try await withDatabaseErrors {
            try await self.client.withTransaction(logger: self.logger) { connection in
                let rows = try await connection.query(
                    """
                    SELECT c.id, c.type, c.status, c.lease_expires_at
                    FROM credentials c JOIN vaults v ON v.id = c.vault_id
                    WHERE v.name = \(vault) AND c.name = \(name)
                    FOR UPDATE OF c
                    """, logger: self.logger)
                guard
                    let (id, type, status, leaseEnd) = try await rows.decode((UUID, String, String, Date?).self)
                        .first(where: { _ in true })
                else {
                    throw LatchkeyError.credentialNotFound(vault: vault, name: name)
                }
                guard try Self.credentialType(type).isRefreshable else {
                    throw LatchkeyError.validation(
                        "name", "'\(name)' is a \(type) credential; only oauth and client_credentials refresh")
                }
                if status == CredentialStatus.refreshing.rawValue, let leaseEnd, leaseEnd > now {
                    throw LatchkeyError(
                        .refreshInProgress,
                        "Credential '\(name)' is being refreshed right now; its metadata shows the result shortly.")
                }
                let leaseExpiresAt = now.addingTimeInterval(RefreshPolicy.seconds(lease))
                let claimed = try await connection.query(
                    """
                    WITH claimed AS (
                        UPDATE credentials c SET status = 'refreshing', lease_owner = \(owner),
                            lease_expires_at = \(leaseExpiresAt)
                        WHERE c.id = \(id)
                        RETURNING c.id, c.vault_id, c.name, c.type, c.sealed, c.key_version, c.refresh_failures,
                            c.revision, c.client_id
                    )
                    \(unescaped: Self.claimSelect)
                    """, logger: self.logger)
                guard
                    let result = try await self.decodeClaims(claimed, owner: owner, leaseExpiresAt: leaseExpiresAt)
                        .first
                else { throw LatchkeyError.credentialNotFound(vault: vault, name: name) }
                return result
            }
        }
    }

    /// Gives a claim back unattempted (shutdown, or too little lease left to
    /// call the provider safely): the row is due again at once.
    package func release(_ claimed: ClaimedCredential) async throws {
        _ = try await withDatabaseErrors {
            try await self.client.query(
                """
                UPDATE credentials SET
                    status = CASE WHEN refresh_failures > 0 THEN 'backoff' ELSE 'active' END,
                    next_attempt_at = CASE WHEN refresh_failures > 0 THEN now() END,
                    lease_owner = NULL, lease_expires_at = NULL
                WHERE id = \(claimed.id) AND lease_owner = \(claimed.owner) AND status = 'refreshing'
                """, logger: self.logger)
        }
    }

    /// Writes an attempt's outcome. The row is re-read under a lock first, so
    /// whatever happened while the provider was being called (another
    /// replica's refresh after this claim lapsed, an admin's rotation or
    /// delete) is seen: new tokens are applied only over the revision they
    /// were refreshed from, and a failure only by the claim's holder.
    @discardableResult
    package func complete(
        _ claimed: ClaimedCredential, outcome: RefreshOutcome, now: Date, policy: RefreshPolicy,
        actor: Principal = .system
    ) async throws -> RefreshCompletion {
        try await withDatabaseErrors {
            try await self.client.withTransaction(logger: self.logger) { connection in
                let rows = try await connection.query(
                    """
                    SELECT revision, status, lease_owner, expires_at, attributes::text FROM credentials
                    WHERE id = \(claimed.id) FOR UPDATE
                    """, logger: self.logger)
                guard
                    let (revision, status, leaseOwner, expiresAt, attributesText) = try await rows.decode(
                        (Int64, String, String?, Date?, String).self
                    ).first(where: { _ in true }),
                    revision == claimed.revision, status == CredentialStatus.refreshing.rawValue
                else { return .superseded }
                switch outcome {
                case .refreshed(let newValue, let newExpiry, let providerFields):
                    try await self.applyRefreshed(
                        connection, claimed, value: newValue, expiresAt: newExpiry, providerFields: providerFields,
                        attributes: JSONText.decodeObject(attributesText), now: now, policy: policy, actor: actor)
                case .backoff(let retryAt, let reason):
                    guard leaseOwner == claimed.owner else { return .superseded }
                    try await connection.query(
                        """
                        UPDATE credentials SET status = 'backoff', refresh_failures = refresh_failures + 1,
                            last_error = \(reason), next_attempt_at = \(retryAt), lease_owner = NULL,
                            lease_expires_at = NULL, updated_at = \(now)
                        WHERE id = \(claimed.id)
                        """, logger: self.logger)
                    try await AuditLog.append(
                        connection, logger: self.logger, action: .credentialRefresh, vault: claimed.vault,
                        credential: claimed.name, actor: actor.name, outcome: .failure,
                        detail: ["reason": .string(reason), "status": .string("backoff")])
                    // The token runs out before the next attempt: say so now.
                    if let expiresAt, expiresAt <= retryAt {
                        try await self.enqueueExpiring(
                            connection, claimed: claimed, expiresAt: expiresAt, reason: reason, now: now)
                    }
                case .needsReauth(let reason):
                    guard leaseOwner == claimed.owner else { return .superseded }
                    try await connection.query(
                        """
                        UPDATE credentials SET status = 'needs_reauth', refresh_failures = refresh_failures + 1,
                            last_error = \(reason), next_refresh_at = NULL, next_attempt_at = NULL,
                            lease_owner = NULL, lease_expires_at = NULL, updated_at = \(now)
                        WHERE id = \(claimed.id)
                        """, logger: self.logger)
                    try await AuditLog.append(
                        connection, logger: self.logger, action: .credentialRefresh, vault: claimed.vault,
                        credential: claimed.name, actor: actor.name, outcome: .failure,
                        detail: ["reason": .string(reason), "status": .string("needs_reauth")])
                    if self.webhooksEnabled {
                        try await WebhookOutbox.enqueue(
                            connection, logger: self.logger, type: .needsReauth, now: now,
                            data: Self.eventData(claimed, status: "needs_reauth", extra: ["reason": .string(reason)]))
                    }
                }
                return .applied
            }
        }
    }

    private func applyRefreshed(
        _ connection: PostgresConnection, _ claimed: ClaimedCredential, value: [String: JSONValue], expiresAt: Date?,
        providerFields: [String: JSONValue], attributes: [String: JSONValue], now: Date, policy: RefreshPolicy,
        actor: Principal
    ) async throws {
        let resealed = try self.sealer.seal(
            Array(JSONText.encode(value).utf8), context: SealContext(vaultID: claimed.vaultID, credentialID: claimed.id)
        )
        let next = policy.nextRefresh(
            type: claimed.type, expiresAt: expiresAt, hasRefreshToken: value["refresh_token"] != nil,
            hasAccessToken: true, now: now)
        var attributes = attributes
        attributes["provider_fields"] = providerFields.isEmpty ? nil : .object(providerFields)
        try await connection.query(
            """
            UPDATE credentials SET sealed = \(ByteBuffer(bytes: resealed.blob)), key_version = \(resealed.keyVersion),
                attributes = \(JSONText.encode(attributes))::jsonb,
                expires_at = \(expiresAt), next_refresh_at = \(next), next_attempt_at = NULL, status = 'active',
                refresh_failures = 0, last_error = NULL, last_refreshed_at = \(now), lease_owner = NULL,
                lease_expires_at = NULL, revision = revision + 1, updated_at = \(now)
            WHERE id = \(claimed.id)
            """, logger: self.logger)
        try await AuditLog.append(
            connection, logger: self.logger, action: .credentialRefresh, vault: claimed.vault,
            credential: claimed.name, actor: actor.name, outcome: .success)
        if self.webhooksEnabled && claimed.refreshFailures > 0 {
            try await WebhookOutbox.enqueue(
                connection, logger: self.logger, type: .recovered, now: now,
                data: Self.eventData(
                    claimed, status: "active",
                    extra: ["expires_at": expiresAt.map { .string(ISO8601DateFormatter().string(from: $0)) } ?? .null]))
        }
    }

    /// Records one "expiring" event per token expiry for OAuth credentials
    /// that will run out within the refresh window and cannot be refreshed
    /// in time: in `needs_reauth` or back-off, or with no refresh token.
    /// Reads only rows expiring soon (the expiry index). Returns how many
    /// new events were recorded.
    @discardableResult
    package func enqueueExpiringWarnings(now: Date, window: Duration) async throws -> Int {
        guard self.webhooksEnabled else { return 0 }
        return try await withDatabaseErrors {
            try await self.client.withTransaction(logger: self.logger) { connection in
                let horizon = now.addingTimeInterval(RefreshPolicy.seconds(window))
                let rows = try await connection.query(
                    """
                    SELECT c.id, v.name, c.name, c.type, c.status, c.expires_at, c.last_error
                    FROM credentials c JOIN vaults v ON v.id = c.vault_id
                    WHERE c.expires_at > \(now) AND c.expires_at <= \(horizon)
                      AND c.type IN ('oauth', 'client_credentials')
                      AND (c.status IN ('needs_reauth', 'backoff') OR c.next_refresh_at IS NULL)
                    """, logger: self.logger)
                var count = 0
                for try await (id, vault, name, type, status, expiresAt, lastError) in rows.decode(
                    (UUID, String, String, String, String, Date, String?).self)
                {
                    var data: [String: JSONValue] = [
                        "vault": .string(vault), "credential": .string(name), "credential_type": .string(type),
                        "status": .string(status),
                        "expires_at": .string(ISO8601DateFormatter().string(from: expiresAt)),
                    ]
                    data["reason"] = .string(lastError ?? "it has no refresh token")
                    if try await WebhookOutbox.enqueue(
                        connection, logger: self.logger, type: .expiring, now: now, data: data,
                        dedupeKey: "expiring:\(id.lowercasedString):\(Int(expiresAt.timeIntervalSince1970))")
                    {
                        count += 1
                    }
                }
                return count
            }
        }
    }

    private func enqueueExpiring(
        _ connection: PostgresConnection, claimed: ClaimedCredential, expiresAt: Date, reason: String, now: Date
    ) async throws {
        guard self.webhooksEnabled else { return }
        try await WebhookOutbox.enqueue(
            connection, logger: self.logger, type: .expiring, now: now,
            data: Self.eventData(
                claimed, status: "backoff",
                extra: [
                    "reason": .string(reason), "expires_at": .string(ISO8601DateFormatter().string(from: expiresAt)),
                ]),
            dedupeKey: "expiring:\(claimed.id.lowercasedString):\(Int(expiresAt.timeIntervalSince1970))")
    }

    private static func eventData(
        _ claimed: ClaimedCredential, status: String, extra: [String: JSONValue]
    ) -> [String: JSONValue] {
        var data: [String: JSONValue] = [
            "vault": .string(claimed.vault), "credential": .string(claimed.name),
            "credential_type": .string(claimed.type.rawValue), "status": .string(status),
        ]
        data.merge(extra) { _, new in new }
        return data
    }

    /// Joins a claim's `claimed` CTE to its vault and its oauth_client.
    private static let claimSelect = """
        SELECT claimed.id, claimed.vault_id, v.name, claimed.name, claimed.type, claimed.sealed, claimed.key_version,
               claimed.refresh_failures, claimed.revision, cl.id, cl.sealed, cl.key_version
        FROM claimed JOIN vaults v ON v.id = claimed.vault_id
        LEFT JOIN credentials cl ON cl.id = claimed.client_id
        """

    private func decodeClaims(
        _ rows: PostgresRowSequence, owner: String, leaseExpiresAt: Date
    ) async throws -> [ClaimedCredential] {
        var claims: [ClaimedCredential] = []
        for try await row in rows {
            let (
                id, vaultID, vault, name, type, sealed, version, failures, revision, clientID, clientSealed,
                clientVersion
            ) = try row.decode(
                (UUID, UUID, String, String, String, ByteBuffer, Int32, Int, Int64, UUID?, ByteBuffer?, Int32?).self)
            let value = try self.sealer.openObject(sealed, keyVersion: version, vaultID: vaultID, credentialID: id)
            var client: [String: JSONValue]?
            if let clientID, let clientSealed, let clientVersion {
                client = try self.sealer.openObject(
                    clientSealed, keyVersion: clientVersion, vaultID: vaultID, credentialID: clientID)
            }
            claims.append(
                ClaimedCredential(
                    id: id, vaultID: vaultID, vault: vault, name: name, type: try Self.credentialType(type),
                    value: value,
                    client: client, refreshFailures: failures, revision: revision, owner: owner,
                    leaseExpiresAt: leaseExpiresAt))
        }
        return claims
    }
}

/// The refresher's queue at a glance, for metrics.
package struct RefreshQueueSnapshot: Sendable, Equatable {
    /// Credentials whose refresh (or retry, or lapsed claim) time has passed.
    package var dueBacklog: Int
    /// `oauth` and `client_credentials` credentials by status.
    package var byStatus: [String: Int]
}

extension VaultStore {
    /// Counts due credentials (through the due index) and refreshable
    /// credentials by status (a scan of the table: sample it every few
    /// seconds, not per request).
    package func refreshQueueSnapshot(now: Date) async throws -> RefreshQueueSnapshot {
        try await withDatabaseErrors {
            let due = try await self.client.query(
                "SELECT count(*) FROM credentials WHERE due_at <= \(now)", logger: self.logger)
            let backlog = try await due.decode(Int.self).first(where: { _ in true }) ?? 0
            let rows = try await self.client.query(
                """
                SELECT status, count(*) FROM credentials WHERE type IN ('oauth', 'client_credentials')
                GROUP BY status
                """, logger: self.logger)
            var byStatus: [String: Int] = [:]
            for try await (status, count) in rows.decode((String, Int).self) { byStatus[status] = count }
            return RefreshQueueSnapshot(dueBacklog: backlog, byStatus: byStatus)
        }
    }
}
