package import Foundation
package import LatchkeyCore
import LatchkeyCrypto
import NIOCore
import PostgresNIO

/// A connect session as the browser flow needs it.
package struct ConnectSession: Sendable {
    package let id: UUID
    package let vault: String
    package let vaultID: UUID
    package let clientName: String
    /// The opened value of its `oauth_client`.
    package let client: [String: JSONValue]
    package let credential: String
    package let scopes: [String]?
    package let returnURL: String?
    package let expiresAt: Date
    package let usedAt: Date?
}

/// Why a callback's `state` cannot be used.
package enum ConnectStateProblem: Error, Sendable, Equatable {
    case unknown
    case expired
    case used
}

extension VaultStore {
    /// Opens a connect session for `credential` (a new `oauth` credential, or
    /// an existing one to reconnect in place) with `client`. The URL token is
    /// stored as its hash; `returnURL` must be in the vault's allowlist.
    package func createConnectSession(
        vault: String, client: String, credential: String, scopes: [String]?, returnURL: String?, tokenHash: [UInt8],
        expiresAt: Date, by principal: Principal
    ) async throws -> UUID {
        try await withDatabaseErrors {
            try await self.client.withTransaction(logger: self.logger) { connection in
                let vaults = try await connection.query(
                    "SELECT id, connect_return_urls FROM vaults WHERE name = \(vault)", logger: self.logger)
                guard
                    let (vaultID, allowed) = try await vaults.decode((UUID, [String]).self).first(where: { _ in true })
                else { throw LatchkeyError.vaultNotFound(vault) }
                if let returnURL, !allowed.contains(returnURL) {
                    throw LatchkeyError.validation(
                        "return_url",
                        "is not in vault '\(vault)''s connect_return_urls (an admin sets them with PATCH /v1/vaults/\(vault))"
                    )
                }
                let clients = try await connection.query(
                    "SELECT id, type FROM credentials WHERE vault_id = \(vaultID) AND name = \(client)",
                    logger: self.logger)
                let found = try await clients.decode((UUID, String).self).first(where: { _ in true })
                guard let (clientID, clientType) = found
                else { throw LatchkeyError.validation("client", "no oauth_client named '\(client)' in this vault") }
                guard clientType == CredentialType.oauthClient.rawValue else {
                    throw LatchkeyError.validation(
                        "client", "'\(client)' is a \(clientType) credential, not an oauth_client")
                }
                let existing = try await connection.query(
                    "SELECT type FROM credentials WHERE vault_id = \(vaultID) AND name = \(credential)",
                    logger: self.logger)
                if let type = try await existing.decode(String.self).first(where: { _ in true }),
                    type != CredentialType.oauth.rawValue
                {
                    throw LatchkeyError(
                        .credentialExists,
                        "A \(type) credential named '\(credential)' exists; a connect session can only create or reconnect an oauth credential."
                    )
                }
                let id = UUID()
                try await connection.query(
                    """
                    INSERT INTO connect_sessions (id, vault_id, client_id, credential_name, scopes, return_url,
                        token_hash, created_by, expires_at)
                    VALUES (\(id), \(vaultID), \(clientID), \(credential), \(scopes), \(returnURL),
                        \(ByteBuffer(bytes: tokenHash)), \(principal.name), \(expiresAt))
                    """, logger: self.logger)
                try await AuditLog.append(
                    connection, logger: self.logger, action: .connectStart, vault: vault, credential: credential,
                    actor: principal.name, outcome: .success, detail: ["client": .string(client)])
                return id
            }
        }
    }

    /// The session a connect URL's token opens, or nil.
    package func connectSession(tokenHash: [UInt8]) async throws -> ConnectSession? {
        try await withDatabaseErrors {
            let rows = try await self.client.query(
                """
                SELECT \(unescaped: Self.sessionColumns)
                FROM connect_sessions s JOIN vaults v ON v.id = s.vault_id JOIN credentials cl ON cl.id = s.client_id
                WHERE s.token_hash = \(ByteBuffer(bytes: tokenHash))
                """, logger: self.logger)
            return try await self.decodeSessions(rows).first
        }
    }

    /// Records the `state` (hashed) and the sealed PKCE verifier of an
    /// authorization about to start; a new one replaces an abandoned one.
    package func beginAuthorization(
        _ session: ConnectSession, stateHash: [UInt8], stateExpiresAt: Date, verifier: String
    ) async throws {
        let sealed = try self.sealer.seal(
            Array(verifier.utf8), context: SealContext(vaultID: session.vaultID, credentialID: session.id))
        _ = try await withDatabaseErrors {
            try await self.client.query(
                """
                UPDATE connect_sessions SET state_hash = \(ByteBuffer(bytes: stateHash)),
                    state_expires_at = \(stateExpiresAt), sealed_verifier = \(ByteBuffer(bytes: sealed.blob)),
                    key_version = \(sealed.keyVersion)
                WHERE id = \(session.id) AND used_at IS NULL
                """, logger: self.logger)
        }
    }

    /// Takes a callback's `state`: the session it belongs to and its PKCE
    /// verifier, marking the session used in the same statement, so a
    /// `state` works once however many callbacks race with it.
    package func claimState(
        stateHash: [UInt8], now: Date
    ) async throws -> Result<(ConnectSession, String?), ConnectStateProblem> {
        try await withDatabaseErrors {
            try await self.client.withTransaction(logger: self.logger) { connection in
                let rows = try await connection.query(
                    """
                    SELECT s.state_expires_at, s.sealed_verifier, s.key_version, \(unescaped: Self.sessionColumns)
                    FROM connect_sessions s JOIN vaults v ON v.id = s.vault_id JOIN credentials cl ON cl.id = s.client_id
                    WHERE s.state_hash = \(ByteBuffer(bytes: stateHash))
                    FOR UPDATE OF s
                    """, logger: self.logger)
                var found: (ConnectSession, Date?, ByteBuffer?, Int32?)?
                for try await row in rows {
                    var cells = row.makeIterator()
                    let stateExpiresAt = try cells.next()?.decode(Date?.self, context: .default)
                    let verifier = try cells.next()?.decode(ByteBuffer?.self, context: .default)
                    let version = try cells.next()?.decode(Int32?.self, context: .default)
                    found = (
                        try self.decodeSession(row, skipping: 3), stateExpiresAt ?? nil, verifier ?? nil, version ?? nil
                    )
                }
                guard let (session, stateExpiresAt, sealedVerifier, version) = found else { return .failure(.unknown) }
                if session.usedAt != nil { return .failure(.used) }
                guard let stateExpiresAt, stateExpiresAt > now, session.expiresAt > now else {
                    return .failure(.expired)
                }
                try await connection.query(
                    "UPDATE connect_sessions SET used_at = \(now) WHERE id = \(session.id)", logger: self.logger)
                var verifier: String?
                if let sealedVerifier, let version {
                    let opened = try self.sealer.openRow(
                        sealedVerifier, keyVersion: version, vaultID: session.vaultID, credentialID: session.id)
                    verifier = String(decoding: opened, as: UTF8.self)
                }
                return .success((session, verifier))
            }
        }
    }

    /// Sets the return URLs a vault's connect sessions may send browsers back to.
    package func setConnectReturnURLs(vault: String, urls: [String], by principal: Principal) async throws {
        try await withDatabaseErrors {
            try await self.client.withTransaction(logger: self.logger) { connection in
                let rows = try await connection.query(
                    "UPDATE vaults SET connect_return_urls = \(urls) WHERE name = \(vault) RETURNING id",
                    logger: self.logger)
                guard try await rows.decode(UUID.self).first(where: { _ in true }) != nil else {
                    throw LatchkeyError.vaultNotFound(vault)
                }
                try await AuditLog.append(
                    connection, logger: self.logger, action: .vaultUpdate, vault: vault, credential: nil,
                    actor: principal.name, outcome: .success,
                    detail: ["connect_return_urls": .array(urls.map(JSONValue.string))])
            }
        }
    }

    static let sessionColumns = """
        s.id, v.name, v.id, cl.name, cl.id, cl.sealed, cl.key_version, s.credential_name, s.scopes, s.return_url,
        s.expires_at, s.used_at
        """

    private func decodeSessions(_ rows: PostgresRowSequence) async throws -> [ConnectSession] {
        var sessions: [ConnectSession] = []
        for try await row in rows { sessions.append(try self.decodeSession(row)) }
        return sessions
    }

    private func decodeSession(_ row: PostgresRow, skipping: Int = 0) throws -> ConnectSession {
        var cells = row.makeIterator()
        for _ in 0..<skipping { _ = cells.next() }
        func next<T: PostgresDecodable>(_: T.Type) throws -> T {
            guard let cell = cells.next() else { throw StoreInconsistency("connect session row is short") }
            return try cell.decode(T.self, context: .default)
        }
        let id = try next(UUID.self)
        let vault = try next(String.self)
        let vaultID = try next(UUID.self)
        let clientName = try next(String.self)
        let clientID = try next(UUID.self)
        let clientSealed = try next(ByteBuffer.self)
        let clientVersion = try next(Int32.self)
        let credential = try next(String.self)
        let scopes = try next([String]?.self)
        let returnURL = try next(String?.self)
        let expiresAt = try next(Date.self)
        let usedAt = try next(Date?.self)
        let client = try self.sealer.openObject(
            clientSealed, keyVersion: clientVersion, vaultID: vaultID, credentialID: clientID)
        return ConnectSession(
            id: id, vault: vault, vaultID: vaultID, clientName: clientName, client: client, credential: credential,
            scopes: scopes, returnURL: returnURL, expiresAt: expiresAt, usedAt: usedAt)
    }
}
