package import Foundation
package import LatchkeyCore
package import LatchkeyCrypto
package import Logging
import NIOCore
package import PostgresNIO

/// Filters for listing a vault's credentials.
package struct CredentialListFilter: Sendable {
    package var type: CredentialType?
    /// Case-insensitive substring of the name.
    package var nameContains: String?
    /// Only credentials not rotated since this time.
    package var rotatedBefore: Date?
    package var limit: Int = 50
    /// The last name of the previous page.
    package var after: String?

    package init() {}
}

/// Filters for reading the audit log, newest first.
package struct AuditFilter: Sendable {
    package var vault: String?
    package var credential: String?
    package var actor: String?
    package var action: String?
    package var since: Date?
    package var until: Date?
    package var limit: Int = 100
    /// Rows older than this id (the previous page's last id).
    package var beforeID: Int64?

    package init() {}
}

/// The Postgres-backed vault: every read and write of vaults, credentials and
/// the audit log. Values are sealed before they reach SQL and opened only on
/// request by callers that need them (rekey, injection); nothing here ever
/// logs a value.
package struct VaultStore: Sendable {
    package let client: PostgresClient
    package let sealer: Sealer
    package let logger: Logger
    /// How long before expiry the refresher should renew an OAuth token.
    package let refreshWindow: Duration
    /// Whether state changes record webhook events (`LATCHKEY_WEBHOOK_URL`
    /// is set); without a receiver none are kept.
    package let webhooksEnabled: Bool

    package init(
        client: PostgresClient, sealer: Sealer, refreshWindow: Duration = .seconds(300), webhooksEnabled: Bool = false,
        logger: Logger
    ) {
        self.client = client
        self.sealer = sealer
        self.refreshWindow = refreshWindow
        self.webhooksEnabled = webhooksEnabled
        self.logger = logger
    }

    // MARK: Vaults

    package func listVaults() async throws -> [VaultInfo] {
        try await withDatabaseErrors {
            let rows = try await self.client.query(
                "SELECT id, name, description, created_at, created_by FROM vaults ORDER BY name", logger: self.logger)
            var vaults: [VaultInfo] = []
            for try await (id, name, description, createdAt, createdBy) in rows.decode(
                (UUID, String, String, Date, String).self)
            {
                vaults.append(
                    VaultInfo(
                        id: id.lowercasedString, name: name, description: description, createdAt: createdAt,
                        createdBy: createdBy,
                        stats: VaultStats(totalCredentials: 0, byType: [:], lastUpdatedAt: nil)))
            }
            let stats = try await self.vaultStats(vaultID: nil)
            return vaults.map { vault in
                var vault = vault
                vault.stats = stats[vault.id] ?? vault.stats
                return vault
            }
        }
    }

    package func vault(named name: String) async throws -> VaultInfo {
        try await withDatabaseErrors {
            let rows = try await self.client.query(
                "SELECT id, name, description, created_at, created_by FROM vaults WHERE name = \(name)",
                logger: self.logger)
            for try await (id, name, description, createdAt, createdBy) in rows.decode(
                (UUID, String, String, Date, String).self)
            {
                let stats = try await self.vaultStats(vaultID: id)[id.lowercasedString]
                return VaultInfo(
                    id: id.lowercasedString, name: name, description: description, createdAt: createdAt,
                    createdBy: createdBy,
                    stats: stats ?? VaultStats(totalCredentials: 0, byType: [:], lastUpdatedAt: nil))
            }
            throw LatchkeyError.vaultNotFound(name)
        }
    }

    package func createVault(name: String, description: String, by principal: Principal) async throws -> VaultInfo {
        try await self.audited(.vaultCreate, vault: name, credential: nil, by: principal) {
            try await self.client.withTransaction(logger: self.logger) { connection in
                let rows = try await connection.query(
                    """
                    INSERT INTO vaults (name, description, created_by) VALUES (\(name), \(description), \(principal.name))
                    ON CONFLICT (name) DO NOTHING
                    RETURNING id, created_at
                    """, logger: self.logger)
                for try await (id, createdAt) in rows.decode((UUID, Date).self) {
                    try await self.appendAudit(
                        connection, action: .vaultCreate, vault: name, credential: nil, by: principal, outcome: .success
                    )
                    return VaultInfo(
                        id: id.lowercasedString, name: name, description: description, createdAt: createdAt,
                        createdBy: principal.name,
                        stats: VaultStats(totalCredentials: 0, byType: [:], lastUpdatedAt: nil))
                }
                throw LatchkeyError.vaultExists(name)
            }
        }
    }

    /// Credential counts by type and the last change, per vault (one vault or all).
    private func vaultStats(vaultID: UUID?) async throws -> [String: VaultStats] {
        let rows = try await self.client.query(
            """
            SELECT vault_id, type, count(*)::bigint, max(updated_at)
            FROM credentials WHERE (\(vaultID)::uuid IS NULL OR vault_id = \(vaultID))
            GROUP BY vault_id, type
            """, logger: self.logger)
        var stats: [String: VaultStats] = [:]
        for try await (vaultID, type, count, lastUpdated) in rows.decode((UUID, String, Int, Date).self) {
            var entry =
                stats[vaultID.lowercasedString] ?? VaultStats(totalCredentials: 0, byType: [:], lastUpdatedAt: nil)
            entry.totalCredentials += count
            entry.byType[type] = count
            entry.lastUpdatedAt = max(entry.lastUpdatedAt ?? lastUpdated, lastUpdated)
            stats[vaultID.lowercasedString] = entry
        }
        return stats
    }

    private func vaultID(_ connection: PostgresConnection, name: String) async throws -> UUID {
        let rows = try await connection.query("SELECT id FROM vaults WHERE name = \(name)", logger: self.logger)
        for try await id in rows.decode(UUID.self) { return id }
        throw LatchkeyError.vaultNotFound(name)
    }

    // MARK: Credentials

    package func createCredential(
        vault: String,
        name: String,
        type: CredentialType,
        description: String,
        value: ValidatedValue,
        by principal: Principal,
        now: Date
    ) async throws -> CredentialMetadata {
        try await self.audited(.credentialCreate, vault: vault, credential: name, by: principal) {
            let id = UUID()
            try await self.client.withTransaction(logger: self.logger) { connection in
                let vaultID = try await self.vaultID(connection, name: vault)
                let clientID = try await self.resolveClient(connection, vaultID: vaultID, name: value.clientName)
                let sealed = try self.seal(value, vaultID: vaultID, credentialID: id)
                let nextRefresh = self.nextRefresh(type: type, value: value, now: now)
                let rows = try await connection.query(
                    """
                    INSERT INTO credentials (id, vault_id, name, type, description, sealed, key_version, attributes,
                        client_id, scopes, expires_at, next_refresh_at, created_at, created_by, updated_at, last_rotated_at)
                    VALUES (\(id), \(vaultID), \(name), \(type.rawValue), \(description), \(ByteBuffer(bytes: sealed.blob)),
                        \(sealed.keyVersion), \(JSONText.encode(value.attributes))::jsonb, \(clientID), \(value.scopes),
                        \(value.expiresAt), \(nextRefresh), \(now), \(principal.name), \(now), \(now))
                    ON CONFLICT (vault_id, name) DO NOTHING
                    RETURNING id
                    """, logger: self.logger)
                var inserted = false
                for try await _ in rows.decode(UUID.self) { inserted = true }
                guard inserted else { throw LatchkeyError.credentialExists(vault: vault, name: name) }
                try await self.appendAudit(
                    connection, action: .credentialCreate, vault: vault, credential: name, by: principal,
                    outcome: .success, detail: ["type": .string(type.rawValue)])
            }
            return try await self.metadata(vault: vault, name: name)
        }
    }

    package func listCredentials(vault: String, filter: CredentialListFilter) async throws -> Page<CredentialMetadata> {
        try await withDatabaseErrors {
            let vaultInfo = try await self.vault(named: vault)
            let pattern = filter.nameContains.map { "%" + Self.escapeLike($0) + "%" }
            let rows = try await self.client.query(
                """
                SELECT \(unescaped: Self.metadataColumns)
                FROM credentials c JOIN vaults v ON v.id = c.vault_id
                LEFT JOIN credentials cl ON cl.id = c.client_id
                WHERE c.vault_id = \(vaultInfo.id)::uuid
                  AND (\(filter.type?.rawValue)::text IS NULL OR c.type = \(filter.type?.rawValue))
                  AND (\(pattern)::text IS NULL OR c.name ILIKE \(pattern))
                  AND (\(filter.rotatedBefore)::timestamptz IS NULL OR c.last_rotated_at < \(filter.rotatedBefore))
                  AND (\(filter.after)::text IS NULL OR c.name > \(filter.after))
                ORDER BY c.name
                LIMIT \(filter.limit + 1)
                """, logger: self.logger)
            var items = try await Self.decodeMetadata(rows)
            var cursor: String?
            if items.count > filter.limit {
                items.removeLast()
                cursor = items.last?.name
            }
            return Page(items: items, nextCursor: cursor)
        }
    }

    /// One credential's metadata, with the credentials that reference it and its usage.
    package func metadata(vault: String, name: String) async throws -> CredentialMetadata {
        try await withDatabaseErrors {
            let rows = try await self.client.query(
                """
                SELECT \(unescaped: Self.metadataColumns)
                FROM credentials c JOIN vaults v ON v.id = c.vault_id
                LEFT JOIN credentials cl ON cl.id = c.client_id
                WHERE v.name = \(vault) AND c.name = \(name)
                """, logger: self.logger)
            guard var metadata = try await Self.decodeMetadata(rows).first else {
                _ = try await self.vault(named: vault)
                throw LatchkeyError.credentialNotFound(vault: vault, name: name)
            }
            // Credentials that use this one: oauth tokens of a client, and
            // header_sets whose placeholders name it.
            let referencing = try await self.client.query(
                """
                SELECT c.name FROM credentials c JOIN vaults v ON v.id = c.vault_id
                WHERE v.name = \(vault)
                  AND (c.client_id = \(metadata.id)::uuid
                       OR (c.type = 'header_set' AND c.attributes -> 'references' ? \(name)))
                ORDER BY c.name
                """, logger: self.logger)
            metadata.referencedBy = try await referencing.decode(String.self).reduce(into: []) { $0.append($1) }
            let usage = try await self.client.query(
                """
                SELECT coalesce(sum(calls), 0)::bigint,
                       coalesce(sum(calls) FILTER (WHERE day > current_date - 7), 0)::bigint,
                       max(last_used_at)
                FROM usage_daily WHERE credential_id = \(metadata.id)::uuid
                """, logger: self.logger)
            for try await (total, recent, lastUsed) in usage.decode((Int, Int, Date?).self) {
                metadata.usage = CredentialUsage(totalCalls: total, callsLast7Days: recent, lastUsedAt: lastUsed)
            }
            return metadata
        }
    }

    package func updateDescription(
        vault: String, name: String, description: String, by principal: Principal, now: Date
    ) async throws -> CredentialMetadata {
        try await self.audited(.credentialUpdate, vault: vault, credential: name, by: principal) {
            try await self.client.withTransaction(logger: self.logger) { connection in
                let vaultID = try await self.vaultID(connection, name: vault)
                let rows = try await connection.query(
                    """
                    UPDATE credentials SET description = \(description), updated_at = \(now)
                    WHERE vault_id = \(vaultID) AND name = \(name) RETURNING id
                    """, logger: self.logger)
                var updated = false
                for try await _ in rows.decode(UUID.self) { updated = true }
                guard updated else { throw LatchkeyError.credentialNotFound(vault: vault, name: name) }
                try await self.appendAudit(
                    connection, action: .credentialUpdate, vault: vault, credential: name, by: principal,
                    outcome: .success, detail: ["fields": .array([.string("description")])])
            }
            return try await self.metadata(vault: vault, name: name)
        }
    }

    /// Replaces a credential's value atomically: the row is locked, the new
    /// value validated against the stored type, sealed and written in one
    /// transaction with its audit row.
    ///
    /// `providerFields` are the non-secret extras of the token response that
    /// validated a pasted refresh token (`instance_url`, ...), kept in the
    /// metadata. Rotating an `oauth` credential out of `needs_reauth` records
    /// a "recovered" webhook event.
    package func rotate(
        vault: String, name: String, value: JSONValue?, providerFields: [String: JSONValue] = [:],
        by principal: Principal, now: Date
    ) async throws -> CredentialMetadata {
        try await self.audited(.credentialRotate, vault: vault, credential: name, by: principal) {
            try await self.client.withTransaction(logger: self.logger) { connection in
                let vaultID = try await self.vaultID(connection, name: vault)
                let (id, type, previousStatus) = try await self.lockCredential(
                    connection, vaultID: vaultID, vault: vault, name: name)
                var validated = try CredentialValidator.validate(type: type, value: value, now: now)
                if !providerFields.isEmpty { validated.attributes["provider_fields"] = .object(providerFields) }
                let clientID = try await self.resolveClient(connection, vaultID: vaultID, name: validated.clientName)
                let sealed = try self.seal(validated, vaultID: vaultID, credentialID: id)
                try await connection.query(
                    """
                    UPDATE credentials SET sealed = \(ByteBuffer(bytes: sealed.blob)), key_version = \(sealed.keyVersion),
                        attributes = \(JSONText.encode(validated.attributes))::jsonb, client_id = \(clientID),
                        scopes = \(validated.scopes), expires_at = \(validated.expiresAt),
                        next_refresh_at = \(self.nextRefresh(type: type, value: validated, now: now)),
                        next_attempt_at = NULL, status = 'active', refresh_failures = 0, last_error = NULL,
                        lease_owner = NULL, lease_expires_at = NULL,
                        revision = revision + 1, updated_at = \(now), last_rotated_at = \(now)
                    WHERE id = \(id)
                    """, logger: self.logger)
                try await self.appendAudit(
                    connection, action: .credentialRotate, vault: vault, credential: name, by: principal,
                    outcome: .success)
                if self.webhooksEnabled && previousStatus == .needsReauth {
                    try await WebhookOutbox.enqueue(
                        connection, logger: self.logger, type: .recovered, now: now,
                        data: [
                            "vault": .string(vault), "credential": .string(name),
                            "credential_type": .string(type.rawValue),
                            "status": .string("active"), "reason": .string("rotated by \(principal.name)"),
                        ])
                }
            }
            return try await self.metadata(vault: vault, name: name)
        }
    }

    /// Deletes a credential. An `oauth_client` that `oauth` or
    /// `client_credentials` credentials still use is refused unless `force`;
    /// forced, those credentials are kept but marked `needs_reauth`, since
    /// without a client they can no longer be refreshed.
    package func delete(vault: String, name: String, force: Bool, by principal: Principal) async throws {
        try await self.audited(.credentialDelete, vault: vault, credential: name, by: principal) {
            try await self.client.withTransaction(logger: self.logger) { connection in
                let vaultID = try await self.vaultID(connection, name: vault)
                let (id, type, _) = try await self.lockCredential(
                    connection, vaultID: vaultID, vault: vault, name: name)
                // header_sets whose placeholders name it would fail at every use.
                let referencing = try await connection.query(
                    """
                    SELECT name FROM credentials
                    WHERE vault_id = \(vaultID) AND type = 'header_set' AND attributes -> 'references' ? \(name)
                      AND id <> \(id)
                    ORDER BY name
                    """, logger: self.logger)
                let placeholders = try await referencing.decode(String.self).reduce(into: [String]()) { $0.append($1) }
                if !placeholders.isEmpty && !force {
                    throw LatchkeyError(
                        .credentialInUse,
                        "'\(name)' is referenced by the placeholders of \(placeholders.joined(separator: ", ")); "
                            + "change those first or pass ?force=true.")
                }
                var orphaned: [String] = []
                if type == .oauthClient {
                    let rows = try await connection.query(
                        "SELECT name FROM credentials WHERE client_id = \(id) ORDER BY name FOR UPDATE",
                        logger: self.logger)
                    orphaned = try await rows.decode(String.self).reduce(into: []) { $0.append($1) }
                    if !orphaned.isEmpty && !force {
                        throw LatchkeyError(
                            .credentialInUse,
                            "oauth_client '\(name)' is still used by \(orphaned.joined(separator: ", ")); "
                                + "delete those first or pass ?force=true.")
                    }
                    if !orphaned.isEmpty {
                        try await connection.query(
                            """
                            UPDATE credentials SET status = 'needs_reauth', next_refresh_at = NULL, next_attempt_at = NULL,
                                last_error = \("its oauth_client '\(name)' was deleted"), updated_at = now()
                            WHERE client_id = \(id)
                            """, logger: self.logger)
                    }
                }
                try await connection.query("DELETE FROM credentials WHERE id = \(id)", logger: self.logger)
                var detail: [String: JSONValue] = ["type": .string(type.rawValue)]
                if force { detail["force"] = .bool(true) }
                if !orphaned.isEmpty { detail["orphaned"] = .array(orphaned.map(JSONValue.string)) }
                if !placeholders.isEmpty { detail["referenced_by"] = .array(placeholders.map(JSONValue.string)) }
                try await self.appendAudit(
                    connection, action: .credentialDelete, vault: vault, credential: name, by: principal,
                    outcome: .success, detail: detail)
            }
        }
    }

    /// Opens a credential's sealed value. For the injection path, rekey and
    /// tests; never exposed through the admin API.
    package func openValue(vault: String, name: String) async throws -> [String: JSONValue] {
        try await withDatabaseErrors {
            let rows = try await self.client.query(
                """
                SELECT c.id, c.vault_id, c.sealed, c.key_version
                FROM credentials c JOIN vaults v ON v.id = c.vault_id
                WHERE v.name = \(vault) AND c.name = \(name)
                """, logger: self.logger)
            for try await (id, vaultID, sealed, keyVersion) in rows.decode((UUID, UUID, ByteBuffer, Int32).self) {
                return try self.sealer.openObject(sealed, keyVersion: keyVersion, vaultID: vaultID, credentialID: id)
            }
            throw LatchkeyError.credentialNotFound(vault: vault, name: name)
        }
    }

    /// A credential's type, in one indexed read (for callers that need only
    /// that, where `metadata` would also read references and usage).
    package func credentialType(vault: String, name: String) async throws -> CredentialType {
        try await withDatabaseErrors {
            let rows = try await self.client.query(
                """
                SELECT c.type FROM credentials c JOIN vaults v ON v.id = c.vault_id
                WHERE v.name = \(vault) AND c.name = \(name)
                """, logger: self.logger)
            for try await type in rows.decode(String.self) { return try Self.credentialType(type) }
            _ = try await self.vault(named: vault)  // VAULT_NOT_FOUND when that is what is missing
            throw LatchkeyError.credentialNotFound(vault: vault, name: name)
        }
    }

    // MARK: Audit

    package func auditEvents(_ filter: AuditFilter) async throws -> Page<AuditEvent> {
        try await withDatabaseErrors {
            let rows = try await self.client.query(
                """
                SELECT id, occurred_at, actor, action, vault, credential, outcome, detail::text
                FROM audit_events
                WHERE (\(filter.vault)::text IS NULL OR vault = \(filter.vault))
                  AND (\(filter.credential)::text IS NULL OR credential = \(filter.credential))
                  AND (\(filter.actor)::text IS NULL OR actor = \(filter.actor))
                  AND (\(filter.action)::text IS NULL OR action = \(filter.action))
                  AND (\(filter.since)::timestamptz IS NULL OR occurred_at >= \(filter.since))
                  AND (\(filter.until)::timestamptz IS NULL OR occurred_at < \(filter.until))
                  AND (\(filter.beforeID)::bigint IS NULL OR id < \(filter.beforeID))
                ORDER BY id DESC
                LIMIT \(filter.limit + 1)
                """, logger: self.logger)
            var events: [AuditEvent] = []
            for try await (id, occurredAt, actor, action, vault, credential, outcome, detail) in rows.decode(
                (Int64, Date, String, String, String?, String?, String, String).self)
            {
                events.append(
                    AuditEvent(
                        id: id, occurredAt: occurredAt, actor: actor, action: action, vault: vault,
                        credential: credential, outcome: AuditEvent.Outcome(rawValue: outcome) ?? .failure,
                        detail: JSONText.decodeObject(detail)))
            }
            var cursor: String?
            if events.count > filter.limit {
                events.removeLast()
                cursor = events.last.map { String($0.id) }
            }
            return Page(items: events, nextCursor: cursor)
        }
    }

    /// Appends one audit row on its own (for events outside a transaction,
    /// such as a failed authentication).
    package func recordAudit(
        action: AuditAction, vault: String?, credential: String?, by principal: Principal,
        outcome: AuditEvent.Outcome, detail: [String: JSONValue] = [:]
    ) async throws {
        try await withDatabaseErrors {
            try await self.client.withConnection { connection in
                try await self.appendAudit(
                    connection, action: action, vault: vault, credential: credential, by: principal, outcome: outcome,
                    detail: detail)
            }
        }
    }

    private func appendAudit(
        _ connection: PostgresConnection, action: AuditAction, vault: String?, credential: String?,
        by principal: Principal, outcome: AuditEvent.Outcome, detail: [String: JSONValue] = [:]
    ) async throws {
        try await AuditLog.append(
            connection, logger: self.logger, action: action, vault: vault, credential: credential,
            actor: principal.name,
            outcome: outcome, detail: detail)
    }

    /// Runs a mutation; when it fails for a reason the caller should know
    /// about (a conflict, a missing vault), the refusal is audited too, after
    /// the mutation's own transaction has rolled back.
    private func audited<Result: Sendable>(
        _ action: AuditAction, vault: String, credential: String?, by principal: Principal,
        _ body: @Sendable () async throws -> Result
    ) async throws -> Result {
        do {
            return try await withDatabaseErrors(body)
        } catch let error as LatchkeyError where error.code != .databaseUnavailable {
            try? await self.recordAudit(
                action: action, vault: vault, credential: credential, by: principal, outcome: .failure,
                detail: ["error": .string(error.code.rawValue)])
            throw error
        }
    }

    // MARK: Helpers

    private func lockCredential(
        _ connection: PostgresConnection, vaultID: UUID, vault: String, name: String
    ) async throws -> (UUID, CredentialType, CredentialStatus) {
        let rows = try await connection.query(
            "SELECT id, type, status FROM credentials WHERE vault_id = \(vaultID) AND name = \(name) FOR UPDATE",
            logger: self.logger)
        for try await (id, type, status) in rows.decode((UUID, String, String).self) {
            return (id, try Self.credentialType(type), CredentialStatus(rawValue: status) ?? .active)
        }
        throw LatchkeyError.credentialNotFound(vault: vault, name: name)
    }

    /// The id of the `oauth_client` an OAuth-type value names, in the same vault.
    private func resolveClient(_ connection: PostgresConnection, vaultID: UUID, name: String?) async throws -> UUID? {
        guard let name else { return nil }
        let rows = try await connection.query(
            "SELECT id, type FROM credentials WHERE vault_id = \(vaultID) AND name = \(name)", logger: self.logger)
        for try await (id, type) in rows.decode((UUID, String).self) {
            guard type == CredentialType.oauthClient.rawValue else {
                throw LatchkeyError.validation("value.client", "'\(name)' is a \(type) credential, not an oauth_client")
            }
            return id
        }
        throw LatchkeyError.validation("value.client", "no oauth_client named '\(name)' in this vault")
    }

    private func seal(_ value: ValidatedValue, vaultID: UUID, credentialID: UUID) throws -> SealedValue {
        try self.sealer.seal(
            Array(JSONText.encode(value.secret).utf8),
            context: SealContext(vaultID: vaultID, credentialID: credentialID))
    }

    /// When the refresher should renew this credential (see RefreshPolicy).
    private func nextRefresh(type: CredentialType, value: ValidatedValue, now: Date) -> Date? {
        RefreshPolicy(window: self.refreshWindow).nextRefresh(
            type: type, expiresAt: value.expiresAt, hasRefreshToken: value.secret["refresh_token"] != nil,
            hasAccessToken: value.secret["access_token"] != nil, now: now)
    }

    private static func escapeLike(_ text: String) -> String {
        var escaped = ""
        for character in text {
            if character == "%" || character == "_" || character == "\\" { escaped.append("\\") }
            escaped.append(character)
        }
        return escaped
    }

    static func credentialType(_ raw: String) throws -> CredentialType {
        guard let type = CredentialType(rawValue: raw) else {
            throw StoreInconsistency("credential type '\(raw)' in the database is unknown to this binary")
        }
        return type
    }

    static let metadataColumns = """
        c.id, v.name, c.name, c.type, c.description, c.status, c.created_at, c.created_by, c.updated_at,
        c.last_rotated_at, c.attributes::text, cl.name, c.scopes, c.expires_at, c.last_refreshed_at,
        c.next_refresh_at, c.refresh_failures, c.last_error, c.next_attempt_at
        """

    private static func decodeMetadata(_ rows: PostgresRowSequence) async throws -> [CredentialMetadata] {
        var items: [CredentialMetadata] = []
        for try await row in rows {
            let (
                id, vault, name, type, description, status, createdAt, createdBy, updatedAt, lastRotatedAt,
                attributes, client, scopes, expiresAt, lastRefreshedAt, nextRefreshAt, failures, lastError,
                nextAttemptAt
            ) = try row.decode(
                (
                    UUID, String, String, String, String, String, Date, String, Date, Date, String, String?,
                    [String]?, Date?, Date?, Date?, Int, String?, Date?
                ).self)
            let credentialType = try Self.credentialType(type)
            let isOAuth = credentialType.isRefreshable
            items.append(
                CredentialMetadata(
                    id: id.lowercasedString, vault: vault, name: name, type: credentialType, description: description,
                    status: CredentialStatus(rawValue: status) ?? .active, createdAt: createdAt, createdBy: createdBy,
                    updatedAt: updatedAt, lastRotatedAt: lastRotatedAt, attributes: JSONText.decodeObject(attributes),
                    client: client, scopes: isOAuth ? scopes ?? [] : nil, expiresAt: expiresAt,
                    lastRefreshedAt: lastRefreshedAt, nextRefreshAt: nextRefreshAt, nextAttemptAt: nextAttemptAt,
                    refreshFailures: isOAuth ? failures : nil, lastError: lastError))
        }
        return items
    }
}

/// The database holds something this binary cannot interpret: a bug or a
/// downgrade, never user input.
package struct StoreInconsistency: Error, CustomStringConvertible {
    package let description: String
    init(_ description: String) { self.description = description }
}

extension UUID {
    /// The canonical lower-case form used in API responses.
    package var lowercasedString: String { self.uuidString.lowercased() }
}
