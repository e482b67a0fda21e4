import Crypto
package import Foundation
import LatchkeyCore

/// Where a sealed blob belongs. It is bound into the ciphertext as associated
/// data, so a blob copied into another row (or vault) no longer opens.
package struct SealContext: Sendable, Hashable {
    package let vaultID: UUID
    package let credentialID: UUID

    package init(vaultID: UUID, credentialID: UUID) {
        self.vaultID = vaultID
        self.credentialID = credentialID
    }

    func associatedData(keyVersion: Int32) -> Data {
        Data(
            "latchkey.credential.v1|\(self.vaultID.uuidString.lowercased())|\(self.credentialID.uuidString.lowercased())|\(keyVersion)"
                .utf8)
    }
}

package struct SealedValue: Sendable, Hashable {
    /// nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes), AES-GCM's combined form.
    package let blob: [UInt8]
    package let keyVersion: Int32

    package init(blob: [UInt8], keyVersion: Int32) {
        self.blob = blob
        self.keyVersion = keyVersion
    }
}

/// Why a blob did not open. Deliberately coarse: the caller learns that the
/// row cannot be opened, never anything about its content.
package enum OpenError: Error, Sendable, Hashable {
    case unknownKeyVersion(Int32)
    case authenticationFailed
}

/// AES-256-GCM sealing with a fresh random 96-bit nonce per seal (SPEC section 2).
package struct Sealer: Sendable {
    package let keyRing: KeyRing

    package init(keyRing: KeyRing) { self.keyRing = keyRing }

    /// Seals under the current master key.
    package func seal(_ plaintext: some DataProtocol, context: SealContext) throws -> SealedValue {
        let key = self.keyRing.current
        let box = try AES.GCM.seal(
            plaintext, using: key.key, nonce: AES.GCM.Nonce(),
            authenticating: context.associatedData(keyVersion: key.version))
        guard let combined = box.combined else {
            // Only nil for non-default nonce sizes; ours is always 12 bytes.
            preconditionFailure("AES.GCM with a 96-bit nonce always has a combined form")
        }
        return SealedValue(blob: Array(combined), keyVersion: key.version)
    }

    /// Opens a blob with whichever ring key its version names.
    package func open(_ sealed: SealedValue, context: SealContext) throws(OpenError) -> [UInt8] {
        guard let key = self.keyRing.key(version: sealed.keyVersion) else {
            throw .unknownKeyVersion(sealed.keyVersion)
        }
        do {
            let box = try AES.GCM.SealedBox(combined: sealed.blob)
            let plaintext = try AES.GCM.open(
                box, using: key.key, authenticating: context.associatedData(keyVersion: sealed.keyVersion))
            return Array(plaintext)
        } catch {
            throw .authenticationFailed
        }
    }
}

/// Constant-time comparison of two secrets of any length: both are hashed to
/// fixed-size digests, and swift-crypto compares digests in constant time.
package func constantTimeEquals(_ lhs: some StringProtocol, _ rhs: some StringProtocol) -> Bool {
    SHA256.hash(data: Array(lhs.utf8)) == SHA256.hash(data: Array(rhs.utf8))
}
