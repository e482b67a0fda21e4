/// Validation of the names users choose for credentials and vaults.
///
/// Hand-written scanners rather than `Regex`: these run on every request path
/// and the grammar is a single character class.
package enum Names {
    /// Credential names: `^[A-Za-z][A-Za-z0-9_]{0,127}$` (SPEC section 1).
    package static func isValidCredentialName(_ name: String) -> Bool {
        Self.matches(name, maxLength: 128, allowDash: false)
    }

    /// Vault names: `^[A-Za-z][A-Za-z0-9_-]{0,63}$`. The SPEC leaves the vault
    /// grammar open; this keeps vault names URL-safe and log-safe like
    /// credential names, and allows `-` since vaults are often named for teams
    /// or environments (`team-payments`).
    package static func isValidVaultName(_ name: String) -> Bool {
        Self.matches(name, maxLength: 64, allowDash: true)
    }

    private static func matches(_ name: String, maxLength: Int, allowDash: Bool) -> Bool {
        let bytes = name.utf8
        guard let first = bytes.first, bytes.count <= maxLength, first.isASCIILetter else { return false }
        return bytes.allSatisfy {
            $0.isASCIILetter || $0.isASCIIDigit || $0 == UInt8(ascii: "_") || (allowDash && $0 == UInt8(ascii: "-"))
        }
    }

    /// An HTTP header field name (RFC 9110 `token`).
    package static func isValidHeaderName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 256 else { return false }
        return name.utf8.allSatisfy { byte in
            byte.isASCIILetter || byte.isASCIIDigit || "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// A header value may hold any visible text but never a line break or NUL,
    /// which would let a stored value smuggle extra headers into a request.
    package static func isValidHeaderValue(_ value: String) -> Bool {
        !value.utf8.contains { $0 == 0x0A || $0 == 0x0D || $0 == 0x00 }
    }
}

extension UInt8 {
    fileprivate var isASCIILetter: Bool { (0x41...0x5A).contains(self) || (0x61...0x7A).contains(self) }
    fileprivate var isASCIIDigit: Bool { (0x30...0x39).contains(self) }
}
