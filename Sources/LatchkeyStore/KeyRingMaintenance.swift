import Foundation
package import LatchkeyCrypto
package import Logging
import NIOCore
package import PostgresNIO

package struct KeyRingMismatch: Error, Sendable, CustomStringConvertible, Equatable {
    package let description: String
}

/// Start-up and `rekey` checks of the master keys against what is stored.
package struct KeyRingMaintenance: Sendable {
    package let client: PostgresClient
    package let sealer: Sealer
    package let logger: Logger

    package init(client: PostgresClient, sealer: Sealer, logger: Logger) {
        self.client = client
        self.sealer = sealer
        self.logger = logger
    }

    /// Refuses to start when the configured keys cannot open what is stored:
    /// every key version present in the vault must be in the ring, and one row
    /// of each version must actually open. Reads only; changes nothing.
    package func verify() async throws {
        let exists = try await self.client.query(
            "SELECT to_regclass('credentials') IS NOT NULL", logger: self.logger)
        for try await present in exists.decode(Bool.self) where !present { return }
        // One sample row per key version, through the key_version index.
        let rows = try await self.client.query(
            """
            SELECT DISTINCT ON (key_version) key_version, id, vault_id, sealed
            FROM credentials ORDER BY key_version, id
            """, logger: self.logger)
        for try await (version, id, vaultID, sealed) in rows.decode((Int32, UUID, UUID, ByteBuffer).self) {
            guard self.sealer.keyRing.key(version: version) != nil else {
                throw KeyRingMismatch(
                    description:
                        "stored credentials are sealed with master key version \(version), which is neither "
                        + "LATCHKEY_MASTER_KEY (version \(self.sealer.keyRing.current.version)) nor in "
                        + "LATCHKEY_MASTER_KEY_PREVIOUS; configure the key that sealed them")
            }
            do {
                _ = try self.sealer.openRow(sealed, keyVersion: version, vaultID: vaultID, credentialID: id)
            } catch {
                throw KeyRingMismatch(
                    description:
                        "the configured master key with version \(version) cannot open credential \(id); "
                        + "the key or the stored row is damaged")
            }
        }
    }

    /// Re-seals, in batches, every credential not sealed under the current
    /// key. Each batch is one transaction that locks only its rows (skipping
    /// rows another writer holds, which the next pass picks up), so the
    /// service keeps serving and rotating throughout. Returns how many rows
    /// were re-sealed.
    @discardableResult
    package func rekey(batchSize: Int = 500) async throws -> Int {
        let current = self.sealer.keyRing.current.version
        var total = 0
        while true {
            let resealed: Int = try await self.client.withTransaction(logger: self.logger) { connection in
                let rows = try await connection.query(
                    """
                    SELECT id, vault_id, sealed, key_version FROM credentials
                    WHERE key_version <> \(current)
                    ORDER BY id LIMIT \(batchSize)
                    FOR UPDATE SKIP LOCKED
                    """, logger: self.logger)
                var batch: [(UUID, UUID, ByteBuffer, Int32)] = []
                for try await row in rows.decode((UUID, UUID, ByteBuffer, Int32).self) { batch.append(row) }
                for (id, vaultID, sealed, version) in batch {
                    let context = SealContext(vaultID: vaultID, credentialID: id)
                    let plaintext: [UInt8]
                    do {
                        plaintext = try self.sealer.openRow(
                            sealed, keyVersion: version, vaultID: vaultID, credentialID: id)
                    } catch {
                        throw KeyRingMismatch(
                            description:
                                "credential \(id) is sealed with key version \(version), which the configured keys "
                                + "cannot open; add that key to LATCHKEY_MASTER_KEY_PREVIOUS and run rekey again")
                    }
                    let resealed = try self.sealer.seal(plaintext, context: context)
                    try await connection.query(
                        """
                        UPDATE credentials SET sealed = \(ByteBuffer(bytes: resealed.blob)),
                            key_version = \(resealed.keyVersion)
                        WHERE id = \(id)
                        """, logger: self.logger)
                }
                return batch.count
            }
            total += resealed
            if resealed == 0 { break }
            self.logger.info("rekey batch done", metadata: ["rekey.rows": "\(resealed)", "rekey.total": "\(total)"])
        }
        return total
    }

    /// How many rows are still sealed under an older key.
    package func rowsNeedingRekey() async throws -> Int {
        let rows = try await self.client.query(
            "SELECT count(*)::bigint FROM credentials WHERE key_version <> \(self.sealer.keyRing.current.version)",
            logger: self.logger)
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }
}
