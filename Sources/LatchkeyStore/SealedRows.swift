import Foundation
import LatchkeyCore
import LatchkeyCrypto
import NIOCore

/// Opening what a `credentials` row holds: the one place that turns the
/// `sealed` and `key_version` columns, bound to the row's vault and id, back
/// into plaintext. Every reader (the admin store, the refresher, rekey and
/// the start-up key check) goes through it.
extension Sealer {
    func openRow(
        _ sealed: ByteBuffer, keyVersion: Int32, vaultID: UUID, credentialID: UUID
    ) throws(OpenError) -> [UInt8] {
        try self.open(
            SealedValue(blob: Array(buffer: sealed), keyVersion: keyVersion),
            context: SealContext(vaultID: vaultID, credentialID: credentialID))
    }

    /// The row's value object (what CredentialValidator normalised and sealed).
    func openObject(
        _ sealed: ByteBuffer, keyVersion: Int32, vaultID: UUID, credentialID: UUID
    ) throws -> [String: JSONValue] {
        let plaintext = try self.openRow(sealed, keyVersion: keyVersion, vaultID: vaultID, credentialID: credentialID)
        guard let object = JSONText.decodeObject(plaintext) else { throw LatchkeyError.internalError }
        return object
    }
}
