package import Foundation
package import LatchkeyCore
import LatchkeyCrypto
package import NIOCore
import PostgresNIO

/// A credential as the injection path needs it: still sealed (it is opened
/// per use), with what decides how to answer without opening it.
package struct SealedCredential: Sendable {
    package let id: UUID
    package let vaultID: UUID
    package let type: CredentialType
    package let status: CredentialStatus
    package let sealed: ByteBuffer
    package let keyVersion: Int32
    package let expiresAt: Date?
    /// In back-off: when the refresher tries again.
    package let nextAttemptAt: Date?
    package let lastError: String?
}

extension VaultStore {
    /// One credential for the injection path, or nil when it does not exist.
    package func sealedCredential(vault: String, name: String) async throws -> SealedCredential? {
        try await withDatabaseErrors {
            let rows = try await self.client.query(
                """
                SELECT c.id, c.vault_id, c.type, c.status, c.sealed, c.key_version, c.expires_at, c.next_attempt_at,
                       c.last_error
                FROM credentials c JOIN vaults v ON v.id = c.vault_id
                WHERE v.name = \(vault) AND c.name = \(name)
                """, logger: self.logger)
            for try await (id, vaultID, type, status, sealed, keyVersion, expiresAt, nextAttemptAt, lastError)
                in rows.decode((UUID, UUID, String, String, ByteBuffer, Int32, Date?, Date?, String?).self)
            {
                return SealedCredential(
                    id: id, vaultID: vaultID, type: try Self.credentialType(type),
                    status: CredentialStatus(rawValue: status) ?? .active, sealed: sealed,
                    keyVersion: keyVersion, expiresAt: expiresAt, nextAttemptAt: nextAttemptAt, lastError: lastError)
            }
            return nil
        }
    }

    /// Opens a sealed credential's value.
    package func open(_ credential: SealedCredential) throws -> [String: JSONValue] {
        try self.sealer.openObject(
            credential.sealed, keyVersion: credential.keyVersion, vaultID: credential.vaultID,
            credentialID: credential.id)
    }
}
