package import Foundation
import HTTPTypes
package import Hummingbird
package import LatchkeyCore
import LatchkeyCrypto
package import LatchkeyStore
import Logging

/// Everything authentication needs, shared by the middleware instances.
package struct AuthenticationDependencies: Sendable {
    package var keys: KeyStore
    package var cache: KeyCache
    package var rateLimiter: RateLimiter
    package var usage: UsageRecorder
    package var adminSecret: String?
    /// Proxies whose `X-Forwarded-For` is believed (`LATCHKEY_TRUSTED_PROXIES`).
    package var trustedProxies: [CIDR]
    package var now: @Sendable () -> Date

    package init(
        keys: KeyStore, cache: KeyCache, rateLimiter: RateLimiter, usage: UsageRecorder, adminSecret: String?,
        trustedProxies: [CIDR], now: @escaping @Sendable () -> Date
    ) {
        self.keys = keys
        self.cache = cache
        self.rateLimiter = rateLimiter
        self.usage = usage
        self.adminSecret = adminSecret
        self.trustedProxies = trustedProxies
        self.now = now
    }
}

/// Authenticates every `/v1` request, in the order SPEC section 3 sets:
/// parse the bearer → look the key up (cached) → IP allowlist (403, counted,
/// before anything else) → revocation and expiry (401) → rate limit (429).
/// Role and scope are checked after, per route group, by `RequireAccess`.
/// Nothing here writes to the database: usage and failures are aggregated in
/// memory and flushed in batches.
package struct Authenticator: RouterMiddleware {
    package typealias Context = LatchkeyRequestContext

    let dependencies: AuthenticationDependencies

    package init(_ dependencies: AuthenticationDependencies) {
        self.dependencies = dependencies
    }

    package func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let address = ClientAddress.resolve(
            peer: context.remoteAddress?.ipAddress, forwardedFor: request.headers[Self.forwardedFor],
            trusted: self.dependencies.trustedProxies)
        context.clientAddress = address
        guard let token = Self.bearerToken(request.headers[.authorization]) else {
            try self.refuse(
                .invalidKey, reason: "missing_or_malformed_authorization", prefix: nil, address: address)
        }
        // The bootstrap secret: constant-time comparison; RequireAccess limits
        // it to minting keys.
        if Self.isBootstrapSecret(token, secret: self.dependencies.adminSecret) {
            context.principal = .adminSecret
            return try await next(request, context)
        }
        guard APIKeyMaterial.looksLikeKey(token),
            let record = try await self.dependencies.cache.record(
                hash: APIKeyMaterial.hash(token), store: self.dependencies.keys)
        else {
            try self.refuse(.invalidKey, reason: "unknown_key", prefix: nil, address: address)
        }
        let now = self.dependencies.now()
        switch Self.refusal(of: record, from: address, at: now) {
        case .addressNotAllowed?:
            self.dependencies.usage.recordBlocked(record.id, address: address?.description)
            throw LatchkeyError.ipNotAllowed
        case .revoked?:
            try self.refuse(.invalidKey, reason: "revoked_key", prefix: record.prefix, address: address)
        case .expired?:
            try self.refuse(.invalidKey, reason: "expired_key", prefix: record.prefix, address: address)
        case nil:
            break
        }
        if let wait = self.dependencies.rateLimiter.acquire(record.id, now: now) {
            throw LatchkeyError.rateLimited(retryAfter: wait)
        }
        self.dependencies.usage.recordCall(record.id, at: now)
        context.principal = record.principal
        return try await next(request, context)
    }

    /// Why a known key may not make this call, in SPEC section 3's order
    /// (the allowlist first, so a blocked address learns nothing about the
    /// key), or nil when it may. The rate limit comes after, and is the only
    /// check with an effect.
    enum KeyRefusal {
        case addressNotAllowed, revoked, expired
    }

    static func refusal(of record: APIKeyRecord, from address: IPAddress?, at now: Date) -> KeyRefusal? {
        if let allowlist = record.allowlist {
            guard let address, allowlist.contains(where: { $0.contains(address) }) else { return .addressNotAllowed }
        }
        if record.revoked { return .revoked }
        if record.isExpired(at: now) { return .expired }
        return nil
    }

    /// The token is `LATCHKEY_ADMIN_SECRET` (compared in constant time).
    static func isBootstrapSecret(_ token: Substring, secret: String?) -> Bool {
        guard let secret else { return false }
        return constantTimeEquals(token, secret)
    }

    private func refuse(_ error: LatchkeyError, reason: String, prefix: String?, address: IPAddress?) throws -> Never {
        self.dependencies.usage.recordFailure(reason: reason, keyPrefix: prefix, address: address?.description)
        throw error
    }

    static let forwardedFor = HTTPField.Name("X-Forwarded-For")!

    /// The token from `Authorization: Bearer <token>` (scheme case-insensitive,
    /// surrounding spaces ignored), or nil when the header is missing or not of
    /// that form. Scans bytes: this runs on every request.
    static func bearerToken(_ header: String?) -> Substring? {
        guard let header else { return nil }
        let utf8 = header.utf8
        var start = utf8.startIndex
        while start < utf8.endIndex, utf8[start] == UInt8(ascii: " ") { start = utf8.index(after: start) }
        let scheme = "bearer".utf8
        var index = start
        for expected in scheme {
            guard index < utf8.endIndex, utf8[index] | 0x20 == expected else { return nil }
            index = utf8.index(after: index)
        }
        guard index < utf8.endIndex, utf8[index] == UInt8(ascii: " ") || utf8[index] == UInt8(ascii: "\t") else {
            return nil
        }
        var tokenStart = index
        while tokenStart < utf8.endIndex,
            utf8[tokenStart] == UInt8(ascii: " ") || utf8[tokenStart] == UInt8(ascii: "\t")
        {
            tokenStart = utf8.index(after: tokenStart)
        }
        var tokenEnd = utf8.endIndex
        while tokenEnd > tokenStart {
            let before = utf8.index(before: tokenEnd)
            guard utf8[before] == UInt8(ascii: " ") || utf8[before] == UInt8(ascii: "\t") else { break }
            tokenEnd = before
        }
        guard tokenStart < tokenEnd, utf8.distance(from: tokenStart, to: tokenEnd) <= 1024 else { return nil }
        return header[tokenStart..<tokenEnd]
    }
}

/// Where a request came from: the socket's peer, unless that peer is a
/// trusted proxy, in which case the right-most `X-Forwarded-For` address that
/// is not itself a trusted proxy (the left-most entries are whatever the
/// client chose to send and prove nothing).
package enum ClientAddress {
    package static func resolve(peer peerText: String?, forwardedFor: String?, trusted: [CIDR]) -> IPAddress? {
        Self.resolve(peerAddress: peerText.flatMap(IPAddress.init), forwardedFor: forwardedFor, trusted: trusted)
    }

    package static func resolve(peerAddress peer: IPAddress?, forwardedFor: String?, trusted: [CIDR]) -> IPAddress? {
        guard let peer else { return nil }
        guard !trusted.isEmpty, trusted.contains(where: { $0.contains(peer) }), let forwardedFor else { return peer }
        var client = peer
        for hop in forwardedFor.split(separator: ",").reversed() {
            guard let address = IPAddress(hop.trimmingCharacters(in: .whitespaces)) else { break }
            client = address
            if !trusted.contains(where: { $0.contains(address) }) { break }
        }
        return client
    }
}

/// Checks role and scope for a group of routes. The bootstrap admin secret
/// passes only where `allowsBootstrapSecret` (minting keys).
package struct RequireAccess: RouterMiddleware {
    package typealias Context = LatchkeyRequestContext

    let role: APIKeyRole
    /// The route manages the whole installation (keys, audit, new vaults).
    let needsAllVaults: Bool
    /// The path parameter naming the vault the route acts on.
    let vaultParameter: String?
    /// The path parameter naming the credential, checked against a key's
    /// credential list (routes that take the name from the body check it
    /// themselves).
    let credentialParameter: String?
    let allowsBootstrapSecret: Bool

    package init(
        role: APIKeyRole, needsAllVaults: Bool = false, vaultParameter: String? = nil,
        credentialParameter: String? = nil, allowsBootstrapSecret: Bool = false
    ) {
        self.role = role
        self.needsAllVaults = needsAllVaults
        self.vaultParameter = vaultParameter
        self.credentialParameter = credentialParameter
        self.allowsBootstrapSecret = allowsBootstrapSecret
    }

    package func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let refusal = self.refusal(
            for: context.caller,
            vault: self.vaultParameter.flatMap { context.parameters.get($0) },
            credential: self.credentialParameter.flatMap { context.parameters.get($0) },
            endpoint: "\(request.method.rawValue) \(context.endpointPath ?? request.uri.path)")
        if let refusal { throw refusal }
        return try await next(request, context)
    }

    /// Why `principal` may not call this route (for the vault and credential
    /// its path names), or nil when it may.
    func refusal(
        for principal: Principal, vault: String?, credential: String?, endpoint: @autoclosure () -> String
    ) -> LatchkeyError? {
        if principal.isBootstrapSecret && !self.allowsBootstrapSecret {
            return LatchkeyError.forbidden(
                "LATCHKEY_ADMIN_SECRET can only mint API keys (POST /v1/keys); call this with an admin key.")
        }
        guard principal.role == self.role else {
            return LatchkeyError.forbidden(
                "A \(principal.role?.rawValue ?? "anonymous") key cannot call \(endpoint()).")
        }
        if self.needsAllVaults && !principal.scope.coversAllVaults {
            return LatchkeyError.forbidden("This endpoint needs an admin key for all vaults ('*').")
        }
        if let vault, !principal.scope.allows(vault: vault) {
            return LatchkeyError.forbidden("This key is not scoped to vault '\(vault.prefix(64))'.")
        }
        if let vault, let credential, !principal.scope.allows(vault: vault, credential: credential) {
            return LatchkeyError.forbidden("This key is not scoped to credential '\(credential.prefix(128))'.")
        }
        return nil
    }
}

extension APIKeyRecord {
    /// Who calls with this key.
    var principal: Principal { .apiKey(id: self.id, prefix: self.prefix, role: self.role, scope: self.scope) }
}
