import Crypto
package import Foundation
import LatchkeyCore

/// Random values the connect flow hands to browsers, stored only as hashes.
package enum OneTimeSecret {
    /// 32 random bytes, base64url: a connect URL token or an OAuth `state`.
    package static func make() -> String {
        Base64URL.encode(Data(SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }))
    }

    /// What is stored instead of the value.
    package static func hash(_ value: String) -> [UInt8] {
        Array(SHA256.hash(data: Array(value.utf8)))
    }
}

/// PKCE (RFC 7636) with the S256 method.
package enum PKCE {
    /// A code verifier: 32 random bytes, base64url (43 characters).
    package static func makeVerifier() -> String { OneTimeSecret.make() }

    /// `BASE64URL(SHA256(ASCII(verifier)))`.
    package static func challenge(for verifier: String) -> String {
        Base64URL.encode(Data(SHA256.hash(data: Array(verifier.utf8))))
    }
}
