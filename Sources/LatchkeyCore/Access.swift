/// What an API key may do (SPEC section 3).
package enum APIKeyRole: String, Sendable, Hashable, CaseIterable, Codable {
    /// Manage everything in its vaults.
    case admin
    /// Only the injection endpoints, for credentials in its scope; never metadata or values.
    case proxy
    /// Only create connect sessions.
    case connect

    package static let allNames = Self.allCases.map(\.rawValue).joined(separator: ", ")
}

/// The vaults, and optionally the credential names, a key may use.
package struct AccessScope: Sendable, Hashable {
    /// nil means every vault (`*`).
    package let vaults: Set<String>?
    /// nil means every credential in the key's vaults.
    package let credentials: Set<String>?

    package init(vaults: Set<String>?, credentials: Set<String>? = nil) {
        self.vaults = vaults
        self.credentials = credentials
    }

    package static let everything = AccessScope(vaults: nil, credentials: nil)

    package var coversAllVaults: Bool { self.vaults == nil }

    package func allows(vault: String) -> Bool {
        self.vaults.map { $0.contains(vault) } ?? true
    }

    package func allows(vault: String, credential: String) -> Bool {
        self.allows(vault: vault) && (self.credentials.map { $0.contains(credential) } ?? true)
    }

    /// Whether every vault and credential of `other` is also in this scope:
    /// a key may only mint keys narrower than or equal to itself.
    package func contains(_ other: AccessScope) -> Bool {
        switch (self.vaults, other.vaults) {
        case (nil, _): break
        case (.some, nil): return false
        case (let mine?, let theirs?): guard theirs.isSubset(of: mine) else { return false }
        }
        switch (self.credentials, other.credentials) {
        case (nil, _): return true
        case (.some, nil): return false
        case (let mine?, let theirs?): return theirs.isSubset(of: mine)
        }
    }
}
