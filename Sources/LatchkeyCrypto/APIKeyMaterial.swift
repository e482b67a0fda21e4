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
    ///
    /// Concrete (not generic) and byte-level: it runs on every request, and
    /// perf showed the generic `hasPrefix` version at 5% of an injection.
    package static func looksLikeKey(_ token: Substring) -> Bool {
        let bytes = token.utf8
        guard bytes.count <= 64,
            bytes.starts(with: Self.livePrefix.utf8) || bytes.starts(with: Self.ephemeralPrefix.utf8)
        else { return false }
        for byte in bytes {
            guard
                byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-") || (0x30...0x39).contains(byte)
                    || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
            else { return false }
        }
        return true
    }

    package static func looksLikeKey(_ token: String) -> Bool {
        Self.looksLikeKey(token[...])
    }
}
