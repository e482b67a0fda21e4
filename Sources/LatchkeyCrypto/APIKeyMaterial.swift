import Crypto
import Foundation
import LatchkeyCore

/// API key generation and hashing (SPEC section 3).
///
/// A key is `lk_live_` or `lk_eph_` followed by 32 bytes from the system
/// CSPRNG in unpadded base64url (43 characters): 256 bits of entropy.
package enum APIKeyMaterial {
    package static let livePrefix = "lk_live_"
    package static let ephemeralPrefix = "lk_eph_"
    /// How many leading characters are kept, in the clear, for display.
    package static let displayPrefixLength = 12

    package struct Minted: Sendable {
        /// The full key: shown once, never stored.
        package let key: String
        package let prefix: String
        package let hash: [UInt8]
    }

    package static func generate(ephemeral: Bool) -> Minted {
        let random = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
        let key = (ephemeral ? Self.ephemeralPrefix : Self.livePrefix) + Base64URL.encode(random)
        return Minted(key: key, prefix: String(key.prefix(Self.displayPrefixLength)), hash: Self.hash(key))
    }

    /// SHA-256 of the key. A fast hash is the right tool here, unlike for
    /// passwords: the key has 256 random bits, so no dictionary or brute-force
    /// attack on a leaked hash is feasible, and the hot path hashes on every
    /// request where a slow KDF would cost milliseconds.
    package static func hash(_ key: some StringProtocol) -> [UInt8] {
        Array(SHA256.hash(data: Array(key.utf8)))
    }

    /// Whether a presented token has the shape of a Latchkey key at all; the
    /// cheap check before any lookup.
    package static func looksLikeKey(_ token: some StringProtocol) -> Bool {
        (token.hasPrefix(Self.livePrefix) || token.hasPrefix(Self.ephemeralPrefix)) && token.utf8.count <= 64
            && token.utf8.allSatisfy {
                $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") || (0x30...0x39).contains($0)
                    || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0)
            }
    }
}
