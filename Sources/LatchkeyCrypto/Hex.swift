/// Lowercase hexadecimal, for digests and keys: one encoder for the SigV4
/// signer, master-key fingerprints, migration checksums, token digests and
/// request ids (which make it per-request code: it writes straight into the
/// string's storage).
package enum Hex {
    package static func lowercase(_ sequence: some Sequence<UInt8>) -> String {
        let bytes = Array(sequence)
        return String(unsafeUninitializedCapacity: bytes.count * 2) { out in
            var index = 0
            for byte in bytes {
                out[index] = Self.digit(byte >> 4)
                out[index + 1] = Self.digit(byte & 0x0F)
                index += 2
            }
            return index
        }
    }

    private static func digit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }
}
