/// An error a client of Latchkey can see.
///
/// Every error carries a stable `UPPER_SNAKE` code, a human sentence, and the
/// HTTP status it maps to (SPEC section 7). Messages never contain a secret
/// value: they name fields, credentials and vaults, never what is stored in them.
public struct LatchkeyError: Error, Sendable, Hashable, CustomStringConvertible {
    package enum Code: String, Sendable, Hashable {
        case badRequest = "BAD_REQUEST"
        case malformedJSON = "MALFORMED_JSON"
        case invalidParameter = "INVALID_PARAMETER"
        case invalidKey = "INVALID_KEY"
        case forbidden = "FORBIDDEN"
        case ipNotAllowed = "IP_NOT_ALLOWED"
        case keyNotFound = "KEY_NOT_FOUND"
        case rateLimited = "RATE_LIMITED"
        case notFound = "NOT_FOUND"
        case vaultNotFound = "VAULT_NOT_FOUND"
        case credentialNotFound = "CREDENTIAL_NOT_FOUND"
        case methodNotAllowed = "METHOD_NOT_ALLOWED"
        case credentialExists = "CREDENTIAL_EXISTS"
        case vaultExists = "VAULT_EXISTS"
        case credentialInUse = "CREDENTIAL_IN_USE"
        case needsReauth = "NEEDS_REAUTH"
        case refreshInProgress = "REFRESH_IN_PROGRESS"
        case payloadTooLarge = "PAYLOAD_TOO_LARGE"
        case validationFailed = "VALIDATION_FAILED"
        case unresolvedPlaceholder = "UNRESOLVED_PLACEHOLDER"
        case refreshTokenRejected = "REFRESH_TOKEN_REJECTED"
        case providerUnavailable = "PROVIDER_UNAVAILABLE"
        case databaseUnavailable = "DATABASE_UNAVAILABLE"
        case internalError = "INTERNAL_ERROR"
    }

    package let code: Code
    package let message: String
    /// The request field the error is about (`value.token`, `name`), when there is one.
    package let field: String?
    /// For `RATE_LIMITED`: seconds until a retry can succeed (`Retry-After`).
    package let retryAfterSeconds: Int?
    /// For `REFRESH_TOKEN_REJECTED`: the provider's OAuth `error` code (never its body).
    package let providerError: String?
    /// A status other than the code's usual one: `PROVIDER_UNAVAILABLE` is
    /// 502 on admin calls (a gateway failed) but 503 on injection (the
    /// credential is temporarily unavailable; a proxy may retry).
    package var statusOverride: Int?

    package init(
        _ code: Code, _ message: String, field: String? = nil, retryAfterSeconds: Int? = nil,
        providerError: String? = nil
    ) {
        self.code = code
        self.message = message
        self.field = field
        self.retryAfterSeconds = retryAfterSeconds
        self.providerError = providerError
        self.statusOverride = nil
    }

    /// The HTTP status code this error is answered with.
    package var status: Int {
        if let statusOverride { return statusOverride }
        return switch self.code {
        case .badRequest, .malformedJSON, .invalidParameter: 400
        case .invalidKey: 401
        case .forbidden, .ipNotAllowed: 403
        case .notFound, .vaultNotFound, .credentialNotFound, .keyNotFound: 404
        case .methodNotAllowed: 405
        case .credentialExists, .vaultExists, .credentialInUse, .needsReauth, .refreshInProgress: 409
        case .payloadTooLarge: 413
        case .validationFailed, .refreshTokenRejected, .unresolvedPlaceholder: 422
        case .rateLimited: 429
        case .internalError: 500
        case .providerUnavailable: 502
        case .databaseUnavailable: 503
        }
    }

    public var description: String { "\(self.code.rawValue): \(self.message)" }
}

extension LatchkeyError {
    package static func validation(_ field: String, _ message: String) -> Self {
        .init(.validationFailed, "\(field): \(message)", field: field)
    }
    package static func vaultNotFound(_ vault: String) -> Self {
        .init(.vaultNotFound, "Vault '\(vault)' does not exist.")
    }
    package static func credentialNotFound(vault: String, name: String) -> Self {
        .init(.credentialNotFound, "Credential '\(name)' does not exist in vault '\(vault)'.")
    }
    package static func credentialExists(vault: String, name: String) -> Self {
        .init(.credentialExists, "A credential named '\(name)' already exists in vault '\(vault)'.")
    }
    package static func vaultExists(_ vault: String) -> Self {
        .init(.vaultExists, "A vault named '\(vault)' already exists.")
    }
    package static let invalidKey = Self(
        .invalidKey, "Missing or invalid API key: send 'Authorization: Bearer <key>'.")
    package static let ipNotAllowed = Self(
        .ipNotAllowed, "This API key may not be used from this address.")
    package static func forbidden(_ message: String) -> Self { .init(.forbidden, message) }
    package static func rateLimited(retryAfter seconds: Int) -> Self {
        .init(
            .rateLimited, "Too many requests for this API key; retry after \(seconds) second(s).",
            retryAfterSeconds: seconds)
    }
    package static let databaseUnavailable = Self(
        .databaseUnavailable, "The database is unavailable; nothing was changed. Retry shortly.")
    package static let internalError = Self(
        .internalError, "An internal error occurred; it has been logged.")
}
