package import Crypto
import Foundation
import LatchkeyCore

/// A 256-bit master key from configuration (never from the database).
package struct MasterKey: Sendable {
    package let key: SymmetricKey
    /// The key's version: a fingerprint of the key itself, stored beside every
    /// sealed row. Deriving it from the key (rather than numbering keys in
    /// configuration order) means rows always name exactly the key that sealed
    /// them, however an operator orders `LATCHKEY_MASTER_KEY_PREVIOUS`.
    package let version: Int32

    package init(hex: String, variable: String = "LATCHKEY_MASTER_KEY") throws(KeyRingError) {
        let trimmed = hex.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.utf8.count == 64, let bytes = Self.decodeHex(trimmed) else {
            throw KeyRingError(
                "\(variable) must be 64 hexadecimal characters (32 random bytes), e.g. from `openssl rand -hex 32`.")
        }
        self.init(bytes: bytes)
    }

    package init(bytes: [UInt8]) {
        precondition(bytes.count == 32, "a master key is 32 bytes")
        self.key = SymmetricKey(data: bytes)
        let digest = SHA256.hash(data: Array("latchkey.key-version".utf8) + bytes)
        let prefix = digest.prefix(4).reduce(UInt32(0)) { ($0 << 8) | UInt32($1) }
        // Positive and non-zero so it fits Postgres `integer` and never looks unset.
        self.version = Int32(bitPattern: prefix & 0x7FFF_FFFF) | 1
    }

    /// A fresh random key, for `latchkey` development set-up and tests.
    package static func generate() -> MasterKey {
        MasterKey(bytes: SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) })
    }

    package var hex: String {
        self.key.withUnsafeBytes { Hex.lowercase($0) }
    }

    private static func decodeHex(_ text: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count / 2)
        var high: UInt8?
        for character in text.utf8 {
            let nibble: UInt8
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = character - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = character - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = character - UInt8(ascii: "A") + 10
            default: return nil
            }
            if let value = high {
                bytes.append(value << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        return high == nil ? bytes : nil
    }
}

/// The current master key plus older ones still needed to open rows that
/// `latchkey rekey` has not re-sealed yet.
package struct KeyRing: Sendable {
    package let current: MasterKey
    package let previous: [MasterKey]

    package init(current: MasterKey, previous: [MasterKey] = []) {
        self.current = current
        self.previous = previous.filter { $0.version != current.version }
    }

    /// Parses `LATCHKEY_MASTER_KEY` and the comma-separated `LATCHKEY_MASTER_KEY_PREVIOUS`.
    package init(currentHex: String?, previousHex: String?) throws(KeyRingError) {
        guard let currentHex, !currentHex.isEmpty else {
            throw KeyRingError(
                "LATCHKEY_MASTER_KEY is not set: it must hold the 64-hex-character master key that seals the vault.")
        }
        let current = try MasterKey(hex: currentHex)
        var previous: [MasterKey] = []
        for part in (previousHex ?? "").split(separator: ",") where !part.trimmingCharacters(in: .whitespaces).isEmpty {
            previous.append(try MasterKey(hex: String(part), variable: "LATCHKEY_MASTER_KEY_PREVIOUS"))
        }
        self.init(current: current, previous: previous)
    }

    package var versions: [Int32] { [self.current.version] + self.previous.map(\.version) }

    package func key(version: Int32) -> MasterKey? {
        if version == self.current.version { return self.current }
        return self.previous.first { $0.version == version }
    }
}

package struct KeyRingError: Error, Sendable, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}
