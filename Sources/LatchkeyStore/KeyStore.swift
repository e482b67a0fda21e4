package import Foundation
package import LatchkeyCore
import LatchkeyCrypto
package import Logging
import NIOCore
package import PostgresNIO

/// What the authentication path needs to know about a key.
package struct APIKeyRecord: Sendable, Hashable {
    package let id: UUID
    package let prefix: String
    package let role: APIKeyRole
    package let scope: AccessScope
    /// nil: any address.
    package let allowlist: [CIDR]?
    package let revoked: Bool
    package let expiresAt: Date?

    package func isExpired(at now: Date) -> Bool { self.expiresAt.map { $0 <= now } ?? false }
}

/// A key as `GET /v1/keys` shows it: never the key or its hash.
package struct APIKeyInfo: Sendable, Hashable, Encodable {
    package var id: String
    package var name: String
    package var description: String
    package var prefix: String
    package var role: APIKeyRole
    package var vaults: [String]
    package var credentials: [String]?
    package var ipAllowlist: [String]?
    package var status: String
    package var ephemeral: Bool
    package var expiresAt: Date?
    package var createdAt: Date
    package var createdBy: String
    package var revokedAt: Date?
    package var revokedBy: String?
    package var lastSeenAt: Date?
    package var callsLast24h: Int
    package var blockedAttempts: Int

    enum CodingKeys: String, CodingKey {
        case id, name, description, prefix, role, vaults, credentials, status, ephemeral
        case ipAllowlist = "ip_allowlist"
        case expiresAt = "expires_at"
        case createdAt = "created_at"
        case createdBy = "created_by"
        case revokedAt = "revoked_at"
        case revokedBy = "revoked_by"
        case lastSeenAt = "last_seen_at"
        case callsLast24h = "calls_last_24h"
        case blockedAttempts = "blocked_attempts"
    }
}

/// A request to mint a key, already validated.
package struct MintRequest: Sendable {
    package var name: String
    package var description: String
    package var role: APIKeyRole
    package var scope: AccessScope
    package var allowlist: [CIDR]?
    /// Set for ephemeral keys.
    package var ttl: Duration?

    package init(
        name: String, description: String = "", role: APIKeyRole, scope: AccessScope, allowlist: [CIDR]? = nil,
        ttl: Duration? = nil
    ) {
        self.name = name
        self.description = description
        self.role = role
        self.scope = scope
        self.allowlist = allowlist
        self.ttl = ttl
    }
}

/// Usage gathered in memory by one replica between flushes.
package struct KeyUsageBatch: Sendable {
    /// Calls per key per hour (the hour's start).
    package var calls: [UUID: [Date: Int]] = [:]
    package var lastSeen: [UUID: Date] = [:]
    /// Requests refused by the IP allowlist, per key, with the addresses seen.
    package var blocked: [UUID: (count: Int, addresses: Set<String>)] = [:]
    /// Failed authentications per (reason, key prefix if it named a real key, address).
    package var failures: [AuthFailureKey: Int] = [:]
    /// Injections per credential per key per day (SPEC section 6), with the last use.
    package var credentialUses: [CredentialUseKey: (calls: Int, lastUsed: Date)] = [:]

    package init() {}

    package var isEmpty: Bool {
        self.calls.isEmpty && self.lastSeen.isEmpty && self.blocked.isEmpty && self.failures.isEmpty
            && self.credentialUses.isEmpty
    }
}

/// One row of `usage_daily`.
package struct CredentialUseKey: Sendable, Hashable {
    package let credentialID: UUID
    package let keyID: UUID
    /// The UTC day's start.
    package let day: Date

    package init(credentialID: UUID, keyID: UUID, day: Date) {
        self.credentialID = credentialID
        self.keyID = keyID
        self.day = day
    }
}

package struct AuthFailureKey: Sendable, Hashable {
    package let reason: String
    package let keyPrefix: String?
    package let address: String?

    package init(reason: String, keyPrefix: String?, address: String?) {
        self.reason = reason
        self.keyPrefix = keyPrefix
        self.address = address
    }
}

/// API keys in Postgres: minting, listing, revoking, the authentication
/// lookup, and the batched usage writes.
package struct KeyStore: Sendable {
    package let client: PostgresClient
    package let logger: Logger

    package init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Mints a key; the full key is returned here and never again.
    package func mint(_ request: MintRequest, by principal: Principal, now: Date) async throws -> (APIKeyInfo, String) {
        try await withDatabaseErrors {
            let minted = APIKeyMaterial.generate(ephemeral: request.ttl != nil)
            let expiresAt = request.ttl.map { now.addingTimeInterval(Double($0.components.seconds)) }
            let vaults = request.scope.vaults.map { $0.sorted() } ?? ["*"]
            let credentials = request.scope.credentials.map { $0.sorted() }
            let allowlist = request.allowlist.map { $0.map(\.description) }
            let id: UUID = try await self.client.withTransaction(logger: self.logger) { connection in
                if let named = request.scope.vaults, !named.isEmpty {
                    let rows = try await connection.query(
                        "SELECT name FROM vaults WHERE name = ANY(\(Array(named)))", logger: self.logger)
                    let existing = try await rows.decode(String.self).reduce(into: Set<String>()) { $0.insert($1) }
                    if let missing = named.subtracting(existing).sorted().first {
                        throw LatchkeyError.validation("vaults", "vault '\(missing)' does not exist")
                    }
                }
                let rows = try await connection.query(
                    """
                    INSERT INTO api_keys (name, description, prefix, key_hash, role, vaults, credentials, ip_allowlist,
                        expires_at, created_at, created_by)
                    VALUES (\(request.name), \(request.description), \(minted.prefix), \(ByteBuffer(bytes: minted.hash)),
                        \(request.role.rawValue), \(vaults), \(credentials), \(allowlist)::cidr[], \(expiresAt), \(now),
                        \(principal.name))
                    RETURNING id
                    """, logger: self.logger)
                guard let id = try await rows.decode(UUID.self).first(where: { _ in true }) else {
                    throw StoreInconsistency("INSERT ... RETURNING gave no row")
                }
                var detail: [String: JSONValue] = [
                    "key_id": .string(id.lowercasedString), "prefix": .string(minted.prefix),
                    "role": .string(request.role.rawValue), "vaults": .array(vaults.map(JSONValue.string)),
                ]
                if let expiresAt { detail["expires_at"] = .string(ISO8601DateFormatter().string(from: expiresAt)) }
                try await AuditLog.append(
                    connection, logger: self.logger, action: .keyMint, vault: nil, credential: nil,
                    actor: principal.name, outcome: .success, detail: detail)
                return id
            }
            return (try await self.info(id: id, now: now), minted.key)
        }
    }

    package func list(now: Date) async throws -> [APIKeyInfo] {
        try await withDatabaseErrors {
            try await self.infos(id: nil, now: now)
        }
    }

    package func info(id: UUID, now: Date) async throws -> APIKeyInfo {
        try await withDatabaseErrors {
            guard let info = try await self.infos(id: id, now: now).first else {
                throw LatchkeyError(.keyNotFound, "No API key has id \(id.lowercasedString).")
            }
            return info
        }
    }

    /// Revokes a key. Revoking a revoked key is a no-op that answers its state.
    package func revoke(id: UUID, by principal: Principal, now: Date) async throws -> APIKeyInfo {
        try await withDatabaseErrors {
            try await self.client.withTransaction(logger: self.logger) { connection in
                let rows = try await connection.query(
                    """
                    UPDATE api_keys SET status = 'revoked', revoked_at = \(now), revoked_by = \(principal.name)
                    WHERE id = \(id) AND status = 'active'
                    RETURNING prefix
                    """, logger: self.logger)
                if let prefix = try await rows.decode(String.self).first(where: { _ in true }) {
                    try await AuditLog.append(
                        connection, logger: self.logger, action: .keyRevoke, vault: nil, credential: nil,
                        actor: principal.name, outcome: .success,
                        detail: ["key_id": .string(id.lowercasedString), "prefix": .string(prefix)])
                }
            }
            return try await self.info(id: id, now: now)
        }
    }

    /// The authentication lookup: one indexed read by hash.
    package func record(hash: [UInt8]) async throws -> APIKeyRecord? {
        try await withDatabaseErrors {
            let rows = try await self.client.query(
                """
                SELECT id, prefix, role, vaults, credentials, ip_allowlist::text[], status, expires_at
                FROM api_keys WHERE key_hash = \(ByteBuffer(bytes: hash))
                """, logger: self.logger)
            for try await (id, prefix, role, vaults, credentials, allowlist, status, expiresAt) in rows.decode(
                (UUID, String, String, [String], [String]?, [String]?, String, Date?).self)
            {
                guard let role = APIKeyRole(rawValue: role) else {
                    throw StoreInconsistency("API key role '\(role)' is unknown to this binary")
                }
                return APIKeyRecord(
                    id: id, prefix: prefix, role: role,
                    scope: AccessScope(
                        vaults: vaults.contains("*") ? nil : Set(vaults), credentials: credentials.map(Set.init)),
                    allowlist: allowlist.map { $0.compactMap { CIDR($0) } }, revoked: status == "revoked",
                    expiresAt: expiresAt)
            }
            return nil
        }
    }

    /// Writes one replica's aggregated usage: hourly call counts, last-seen
    /// times, blocked attempts (one audit row per key per flush, not per hit)
    /// and failed authentications (one row per reason and address per flush).
    package func flush(_ batch: KeyUsageBatch) async throws {
        guard !batch.isEmpty else { return }
        try await withDatabaseErrors {
            try await self.client.withTransaction(logger: self.logger) { connection in
                for (id, hours) in batch.calls {
                    for (hour, calls) in hours {
                        try await connection.query(
                            """
                            INSERT INTO api_key_usage_hourly (api_key_id, hour, calls)
                            SELECT \(id), \(hour), \(calls) WHERE EXISTS (SELECT 1 FROM api_keys WHERE id = \(id))
                            ON CONFLICT (api_key_id, hour) DO UPDATE SET calls = api_key_usage_hourly.calls + EXCLUDED.calls
                            """, logger: self.logger)
                    }
                }
                for (use, entry) in batch.credentialUses {
                    // A credential deleted since its use has no row to count against.
                    try await connection.query(
                        """
                        INSERT INTO usage_daily (credential_id, api_key_id, day, calls, last_used_at)
                        SELECT \(use.credentialID), \(use.keyID), \(use.day)::date, \(entry.calls), \(entry.lastUsed)
                        WHERE EXISTS (SELECT 1 FROM credentials WHERE id = \(use.credentialID))
                        ON CONFLICT (credential_id, api_key_id, day) DO UPDATE SET
                            calls = usage_daily.calls + EXCLUDED.calls,
                            last_used_at = greatest(usage_daily.last_used_at, EXCLUDED.last_used_at)
                        """, logger: self.logger)
                }
                for (id, seen) in batch.lastSeen {
                    try await connection.query(
                        "UPDATE api_keys SET last_seen_at = greatest(last_seen_at, \(seen)) WHERE id = \(id)",
                        logger: self.logger)
                }
                for (id, blocked) in batch.blocked {
                    let rows = try await connection.query(
                        """
                        UPDATE api_keys SET blocked_attempts = blocked_attempts + \(blocked.count) WHERE id = \(id)
                        RETURNING prefix
                        """, logger: self.logger)
                    guard let prefix = try await rows.decode(String.self).first(where: { _ in true }) else { continue }
                    try await AuditLog.append(
                        connection, logger: self.logger, action: .authBlocked, vault: nil, credential: nil,
                        actor: "key:\(prefix)", outcome: .denied,
                        detail: [
                            "attempts": .number(Double(blocked.count)),
                            "remote_addresses": .array(blocked.addresses.sorted().prefix(20).map(JSONValue.string)),
                        ])
                }
                for (failure, count) in batch.failures {
                    var detail: [String: JSONValue] = [
                        "reason": .string(failure.reason), "attempts": .number(Double(count)),
                    ]
                    if let address = failure.address { detail["remote_address"] = .string(address) }
                    try await AuditLog.append(
                        connection, logger: self.logger, action: .authFailure, vault: nil, credential: nil,
                        actor: failure.keyPrefix.map { "key:\($0)" } ?? "anonymous", outcome: .denied, detail: detail)
                }
            }
        }
    }

    /// Audits, once each, ephemeral keys that have expired.
    package func auditExpiredKeys(now: Date) async throws {
        try await withDatabaseErrors {
            try await self.client.withTransaction(logger: self.logger) { connection in
                let rows = try await connection.query(
                    """
                    UPDATE api_keys SET expiry_audited_at = \(now)
                    WHERE expires_at <= \(now) AND expiry_audited_at IS NULL AND status = 'active'
                    RETURNING id, prefix, expires_at
                    """, logger: self.logger)
                var expired: [(UUID, String, Date)] = []
                for try await row in rows.decode((UUID, String, Date).self) { expired.append(row) }
                for (id, prefix, expiresAt) in expired {
                    try await AuditLog.append(
                        connection, logger: self.logger, action: .keyExpire, vault: nil, credential: nil,
                        actor: "system", outcome: .success,
                        detail: [
                            "key_id": .string(id.lowercasedString), "prefix": .string(prefix),
                            "expired_at": .string(ISO8601DateFormatter().string(from: expiresAt)),
                        ])
                }
            }
        }
    }

    private func infos(id: UUID?, now: Date) async throws -> [APIKeyInfo] {
        let rows = try await self.client.query(
            """
            SELECT k.id, k.name, k.description, k.prefix, k.role, k.vaults, k.credentials, k.ip_allowlist::text[],
                   k.status, k.expires_at, k.created_at, k.created_by, k.revoked_at, k.revoked_by, k.last_seen_at,
                   coalesce((SELECT sum(u.calls) FROM api_key_usage_hourly u
                             WHERE u.api_key_id = k.id AND u.hour > \(now) - interval '24 hours'), 0)::bigint,
                   k.blocked_attempts
            FROM api_keys k
            WHERE (\(id)::uuid IS NULL OR k.id = \(id))
            ORDER BY k.created_at, k.id
            """, logger: self.logger)
        var infos: [APIKeyInfo] = []
        for try await row in rows {
            let (
                id, name, description, prefix, role, vaults, credentials, allowlist, status, expiresAt, createdAt,
                createdBy, revokedAt, revokedBy, lastSeenAt, calls, blocked
            ) = try row.decode(
                (
                    UUID, String, String, String, String, [String], [String]?, [String]?, String, Date?, Date, String,
                    Date?, String?, Date?, Int, Int
                ).self)
            guard let role = APIKeyRole(rawValue: role) else {
                throw StoreInconsistency("API key role '\(role)' is unknown to this binary")
            }
            let displayStatus =
                status == "revoked" ? "revoked" : (expiresAt.map { $0 <= now } == true ? "expired" : "active")
            infos.append(
                APIKeyInfo(
                    id: id.lowercasedString, name: name, description: description, prefix: prefix,
                    role: role, vaults: vaults, credentials: credentials,
                    ipAllowlist: allowlist, status: displayStatus,
                    ephemeral: prefix.hasPrefix(APIKeyMaterial.ephemeralPrefix),
                    expiresAt: expiresAt, createdAt: createdAt, createdBy: createdBy, revokedAt: revokedAt,
                    revokedBy: revokedBy, lastSeenAt: lastSeenAt, callsLast24h: calls, blockedAttempts: blocked))
        }
        return infos
    }
}
