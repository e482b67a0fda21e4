package import Foundation
package import LatchkeyCore
import LatchkeyCrypto
import NIOCore
import PostgresNIO

/// A credential claimed for refresh: its opened value and its client's.
package struct ClaimedCredential: Sendable {
    package let id: UUID
    package let vault: String
    package let name: String
    package let type: CredentialType
    package let value: [String: JSONValue]
    /// The opened value of its `oauth_client`, nil when the client is gone.
    package let client: [String: JSONValue]?
    package let refreshFailures: Int
}

/// What a refresh attempt came to; the store applies it under the claim.
package enum RefreshOutcome: Sendable {
    /// New tokens: the whole new value (sealed as is) and the new expiry.
    case refreshed(value: [String: JSONValue], expiresAt: Date?)
    /// A transient failure: try again at `retryAt`.
    case backoff(retryAt: Date, reason: String)
    /// The provider refused the grant: a person must re-authorise.
    case needsReauth(reason: String)
}

extension VaultStore {
    /// Claims the most overdue credential no other replica holds (`FOR UPDATE
    /// SKIP LOCKED`, through the partial index on due rows), lets `refresh`
    /// call the provider while the row stays locked, and commits the outcome
    /// before the lock is released: exactly one replica refreshes a token at a
    /// time, and a rotated refresh token is written in the same transaction
    /// as its access token, so it is never lost to a race. If this replica
    /// dies mid-call, Postgres ends the transaction and another replica
    /// claims the row. Returns false when nothing is due.
    package func refreshNextDue(
        now: Date, policy: RefreshPolicy, _ refresh: @Sendable (ClaimedCredential) async -> RefreshOutcome
    ) async throws -> Bool {
        try await withDatabaseErrors {
            try await self.client.withTransaction(logger: self.logger) { connection in
                let rows = try await connection.query(
                    """
                    SELECT c.id FROM credentials c
                    WHERE c.next_refresh_at <= \(now) AND c.status IN ('active', 'backoff', 'refreshing')
                    ORDER BY c.next_refresh_at
                    LIMIT 1
                    FOR UPDATE SKIP LOCKED
                    """, logger: self.logger)
                guard let id = try await rows.decode(UUID.self).first(where: { _ in true }) else { return false }
                _ = try await self.refreshLocked(connection, id: id, now: now, policy: policy, refresh)
                return true
            }
        }
    }

    /// Refreshes one named credential now (the admin's forced refresh),
    /// waiting for any replica that holds it.
    @discardableResult
    package func refreshNow(
        vault: String, name: String, by principal: Principal, now: Date, policy: RefreshPolicy,
        _ refresh: @Sendable (ClaimedCredential) async -> RefreshOutcome
    ) async throws -> RefreshOutcome? {
        try await withDatabaseErrors {
            try await self.client.withTransaction(logger: self.logger) { connection in
                let rows = try await connection.query(
                    """
                    SELECT c.id, c.type FROM credentials c JOIN vaults v ON v.id = c.vault_id
                    WHERE v.name = \(vault) AND c.name = \(name)
                    FOR UPDATE OF c
                    """, logger: self.logger)
                guard let (id, type) = try await rows.decode((UUID, String).self).first(where: { _ in true }) else {
                    throw LatchkeyError.credentialNotFound(vault: vault, name: name)
                }
                guard try Self.credentialType(type).isRefreshable else {
                    throw LatchkeyError.validation(
                        "name", "'\(name)' is a \(type) credential; only oauth and client_credentials refresh")
                }
                return try await self.refreshLocked(
                    connection, id: id, now: now, policy: policy, actor: principal, refresh)
            }
        }
    }

    private func refreshLocked(
        _ connection: PostgresConnection, id: UUID, now: Date, policy: RefreshPolicy, actor: Principal = .system,
        _ refresh: @Sendable (ClaimedCredential) async -> RefreshOutcome
    ) async throws -> RefreshOutcome? {
        // Re-read under the lock: another replica may have refreshed it since the scan.
        let rows = try await connection.query(
            """
            SELECT c.vault_id, v.name, c.name, c.type, c.sealed, c.key_version, c.refresh_failures,
                   cl.id, cl.sealed, cl.key_version
            FROM credentials c JOIN vaults v ON v.id = c.vault_id
            LEFT JOIN credentials cl ON cl.id = c.client_id
            WHERE c.id = \(id)
            """, logger: self.logger)
        guard
            let (vaultID, vault, name, type, sealed, version, failures, clientID, clientSealed, clientVersion) =
                try await rows.decode(
                    (UUID, String, String, String, ByteBuffer, Int32, Int, UUID?, ByteBuffer?, Int32?).self
                ).first(where: { _ in true })
        else { return nil }
        let value = try self.sealer.openObject(sealed, keyVersion: version, vaultID: vaultID, credentialID: id)
        var client: [String: JSONValue]?
        if let clientID, let clientSealed, let clientVersion {
            client = try self.sealer.openObject(
                clientSealed, keyVersion: clientVersion, vaultID: vaultID, credentialID: clientID)
        }
        let claimed = ClaimedCredential(
            id: id, vault: vault, name: name, type: try Self.credentialType(type), value: value, client: client,
            refreshFailures: failures)
        let outcome = await refresh(claimed)
        switch outcome {
        case .refreshed(let newValue, let expiresAt):
            let resealed = try self.sealer.seal(
                Array(JSONText.encode(newValue).utf8), context: SealContext(vaultID: vaultID, credentialID: id))
            let next = policy.nextRefresh(
                type: claimed.type, expiresAt: expiresAt, hasRefreshToken: newValue["refresh_token"] != nil,
                hasAccessToken: true, now: now)
            try await connection.query(
                """
                UPDATE credentials SET sealed = \(ByteBuffer(bytes: resealed.blob)), key_version = \(resealed.keyVersion),
                    expires_at = \(expiresAt), next_refresh_at = \(next), status = 'active', refresh_failures = 0,
                    last_error = NULL, last_refreshed_at = \(now), revision = revision + 1, updated_at = \(now)
                WHERE id = \(id)
                """, logger: self.logger)
            try await AuditLog.append(
                connection, logger: self.logger, action: .credentialRefresh, vault: vault, credential: name,
                actor: actor.name, outcome: .success)
        case .backoff(let retryAt, let reason):
            try await connection.query(
                """
                UPDATE credentials SET status = 'backoff', refresh_failures = refresh_failures + 1,
                    last_error = \(reason), next_refresh_at = \(retryAt), updated_at = \(now)
                WHERE id = \(id)
                """, logger: self.logger)
            try await AuditLog.append(
                connection, logger: self.logger, action: .credentialRefresh, vault: vault, credential: name,
                actor: actor.name, outcome: .failure, detail: ["reason": .string(reason)])
        case .needsReauth(let reason):
            try await connection.query(
                """
                UPDATE credentials SET status = 'needs_reauth', refresh_failures = refresh_failures + 1,
                    last_error = \(reason), next_refresh_at = NULL, updated_at = \(now)
                WHERE id = \(id)
                """, logger: self.logger)
            try await AuditLog.append(
                connection, logger: self.logger, action: .credentialRefresh, vault: vault, credential: name,
                actor: actor.name, outcome: .failure,
                detail: ["reason": .string(reason), "status": .string("needs_reauth")])
        }
        return outcome
    }
}
