/// Every kind of credential the vault holds (SPEC section 1). All live in one
/// table; the type decides which fields the sealed value has.
package enum CredentialType: String, Sendable, Hashable, CaseIterable, Codable {
    case oauth
    case oauthClient = "oauth_client"
    case clientCredentials = "client_credentials"
    case bearer
    case apiKey = "api_key"
    case headerSet = "header_set"
    case basic
    case cookie
    case awsSigV4 = "aws_sigv4"

    /// Types whose access tokens the refresher keeps fresh.
    package var isRefreshable: Bool { self == .oauth || self == .clientCredentials }

    /// Types that point at an `oauth_client` in the same vault.
    package var referencesClient: Bool { self == .oauth || self == .clientCredentials }

    package static let allNames = Self.allCases.map(\.rawValue).joined(separator: ", ")
}

/// A credential's lifecycle status. OAuth types move through all of them; the
/// static types stay `active` until revoked.
package enum CredentialStatus: String, Sendable, Hashable, CaseIterable, Codable {
    case active
    case refreshing
    case backoff
    case needsReauth = "needs_reauth"
    case revoked
}
