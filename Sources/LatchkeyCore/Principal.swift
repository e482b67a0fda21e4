package import struct Foundation.UUID

/// Who is making a call: recorded as `created_by` and as the audit actor.
///
/// Never holds key material: an API key is named by its display prefix
/// (`key:lk_live_AbCd`), the bootstrap secret is `admin-secret`, a CLI call
/// straight against the database is `cli`.
package struct Principal: Sendable, Hashable {
    package let name: String
    /// The API key behind the call, if it was one.
    package let keyID: UUID?
    /// The key's role; the bootstrap secret acts as an all-vaults admin but
    /// only on the routes that accept it.
    package let role: APIKeyRole?
    package let scope: AccessScope
    package let isBootstrapSecret: Bool

    package init(
        name: String, keyID: UUID? = nil, role: APIKeyRole? = nil, scope: AccessScope = .everything,
        isBootstrapSecret: Bool = false
    ) {
        self.name = name
        self.keyID = keyID
        self.role = role
        self.scope = scope
        self.isBootstrapSecret = isBootstrapSecret
    }

    package static func apiKey(id: UUID, prefix: String, role: APIKeyRole, scope: AccessScope) -> Principal {
        Principal(name: "key:\(prefix)", keyID: id, role: role, scope: scope)
    }

    package static let adminSecret = Principal(name: "admin-secret", role: .admin, isBootstrapSecret: true)
    package static let cli = Principal(name: "cli", role: .admin)
    package static let system = Principal(name: "system")
    /// A browser completing a connect session (the audit actor of what it stores).
    package static func connect(session: UUID) -> Principal {
        Principal(name: "connect:" + session.uuidString.lowercased().prefix(8))
    }
    package static let anonymous = Principal(name: "anonymous", scope: AccessScope(vaults: []))
}
