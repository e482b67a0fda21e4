import Foundation
import LatchkeyCore
import LatchkeyCrypto
import LatchkeyRefresher
import LatchkeyStore
import Synchronization

/// What a sidecar adds to a request.
struct Injection: Sendable {
    /// Header name and value, in a stable order.
    var headers: [(String, String)]
    /// Query parameters, for `api_key` credentials sent as one.
    var query: [String: String] = [:]
    var expiresAt: Date?
    /// What the answer was built from, and until when it may be served from memory.
    var trace = RenderTrace()
}

/// The credentials an injection read (itself and those its placeholders
/// name) and the earliest refresh time among the OAuth tokens among them.
struct RenderTrace: Sendable {
    var dependencies: Set<String> = []
    var validUntil: Date?

    mutating func used(_ key: String, _ credential: SealedCredential, window: TimeInterval) {
        self.dependencies.insert(key)
        guard credential.type.isRefreshable else { return }
        // A refreshable token without an expiry stays good until it changes (a notification).
        guard let expiresAt = credential.expiresAt else { return }
        let refreshAt = expiresAt.addingTimeInterval(-window)
        self.validUntil = min(self.validUntil ?? refreshAt, refreshAt)
    }
}

/// Turns a credential into the headers a sidecar adds (SPEC section 5):
/// reads it through the per-replica cache (sealed, opened per use), refreshes
/// an OAuth token that is inside the refresh window first (single-flight per
/// credential on this replica, and through the refresher's claim across
/// replicas), and resolves `{{credential:...}}` placeholders.
struct Injector: Sendable {
    let store: VaultStore
    let cache: CredentialCache
    let refresher: TokenRefresher
    let flights: SingleFlight
    let refreshWindow: TimeInterval
    /// How long to wait for another replica's refresh: its provider call's limit.
    let refreshWait: Duration
    let now: @Sendable () -> Date

    /// Placeholders may point at header_sets that hold placeholders; this deep at most.
    static let maxDepth = 4

    func inject(vault: String, name: String, by principal: Principal) async throws -> (Injection, SealedCredential) {
        var trace = RenderTrace()
        let (credential, value) = try await self.usable(vault: vault, name: name, by: principal, trace: &trace)
        var injection: Injection
        switch credential.type {
        case .bearer:
            injection = Injection(headers: [("Authorization", "Bearer " + Self.string(value, "token"))])
        case .oauth, .clientCredentials:
            injection = Injection(
                headers: [("Authorization", "Bearer " + Self.string(value, "access_token"))],
                expiresAt: credential.expiresAt)
        case .apiKey:
            if let header = value["header"]?.stringValue {
                injection = Injection(headers: [(header, Self.string(value, "key"))])
            } else {
                injection = Injection(
                    headers: [], query: [Self.string(value, "query_param"): Self.string(value, "key")])
            }
        case .basic:
            let pair = Self.string(value, "username") + ":" + Self.string(value, "password")
            injection = Injection(headers: [("Authorization", "Basic " + Data(pair.utf8).base64EncodedString())])
        case .cookie:
            injection = Injection(headers: [("Cookie", Self.string(value, "cookie"))])
        case .headerSet:
            var headers: [(String, String)] = []
            guard case .object(let set)? = value["headers"] else { throw LatchkeyError.internalError }
            var seen: Set<String> = [Self.key(vault, name)]
            for (header, template) in set.sorted(by: { $0.key < $1.key }) {
                let resolved = try await self.resolve(
                    template.stringValue ?? "", vault: vault, by: principal, depth: 1, seen: &seen, trace: &trace)
                headers.append((header, resolved))
            }
            injection = Injection(headers: headers)
        case .awsSigV4:
            throw LatchkeyError.validation(
                "name", "'\(name)' is an aws_sigv4 credential: sign each request with POST /v1/sign/\(vault)/\(name)")
        case .oauthClient:
            throw LatchkeyError.validation(
                "name", "'\(name)' is an oauth_client: its client secret is never injected; inject its oauth tokens")
        }
        injection.trace = trace
        return (injection, credential)
    }

    /// The credential and its opened value, ready to use: refused when it
    /// needs re-authorisation, refreshed first when it is an OAuth token in
    /// its refresh window.
    func usable(
        vault: String, name: String, by principal: Principal
    ) async throws -> (SealedCredential, [String: JSONValue]) {
        var trace = RenderTrace()
        return try await self.usable(vault: vault, name: name, by: principal, trace: &trace)
    }

    func usable(
        vault: String, name: String, by principal: Principal, trace: inout RenderTrace
    ) async throws -> (SealedCredential, [String: JSONValue]) {
        guard var credential = try await self.cache.credential(vault: vault, name: name, store: self.store) else {
            throw LatchkeyError.credentialNotFound(vault: vault, name: name)
        }
        try Self.refuseIfUnusable(credential, name: name)
        var value = try self.store.open(credential)
        if credential.type.isRefreshable, self.wantsRefresh(credential, value: value) {
            credential = try await self.refreshed(vault: vault, name: name, credential: credential, by: principal)
            try Self.refuseIfUnusable(credential, name: name)
            value = try self.store.open(credential)
        }
        if credential.type.isRefreshable {
            guard value["access_token"]?.stringValue != nil, !self.isExpired(credential) else {
                var error = LatchkeyError(
                    .providerUnavailable,
                    "The token of '\(name)' has expired and its provider cannot refresh it right now"
                        + (credential.lastError.map { " (\($0))" } ?? "") + "; retry shortly.")
                error.statusOverride = 503
                throw error
            }
        }
        trace.used(Self.key(vault, name), credential, window: self.refreshWindow)
        return (credential, value)
    }

    /// An OAuth token is refreshed before use when it is inside the refresh
    /// window (or a client-credentials token was never minted), unless it is
    /// in back-off (the refresher's schedule stands; an expired token then
    /// answers 503) or another claim is refreshing it.
    private func wantsRefresh(_ credential: SealedCredential, value: [String: JSONValue]) -> Bool {
        switch credential.status {
        case .backoff: return false
        case .refreshing: return self.isExpired(credential)
        default: break
        }
        if credential.type == .clientCredentials && value["access_token"] == nil { return true }
        guard let expiresAt = credential.expiresAt else { return false }
        if credential.type == .oauth && value["refresh_token"] == nil { return false }
        return expiresAt.timeIntervalSince(self.now()) <= self.refreshWindow
    }

    private func isExpired(_ credential: SealedCredential) -> Bool {
        credential.expiresAt.map { $0 <= self.now() } ?? false
    }

    /// Refreshes once per credential on this replica however many requests
    /// ask at the same moment; when another replica holds the claim, waits
    /// for its commit (announced to every replica) instead of refreshing
    /// again. Then reads the row afresh, past the cache.
    private func refreshed(
        vault: String, name: String, credential: SealedCredential, by principal: Principal
    ) async throws -> SealedCredential {
        let key = Self.key(vault, name)
        try await self.flights.run(key) {
            if credential.status == .refreshing {
                await self.cache.waitForChange(vault: vault, name: name, timeout: self.refreshWait)
                return
            }
            do {
                _ = try await self.refresher.refreshNow(vault: vault, name: name, by: principal)
            } catch let error as LatchkeyError where error.code == .refreshInProgress {
                await self.cache.waitForChange(vault: vault, name: name, timeout: self.refreshWait)
            }
        }
        guard let fresh = try await self.store.sealedCredential(vault: vault, name: name) else {
            throw LatchkeyError.credentialNotFound(vault: vault, name: name)
        }
        return fresh
    }

    /// A sidecar reports that the provider refused the access token whose
    /// SHA-256 is `tokenSHA256` (an upstream 401). If that is still the stored
    /// token it is refreshed now, whatever its expiry says: the SPEC's "tokens
    /// without an expiry are refreshed when a use fails". A report about a
    /// token already replaced changes nothing, so a burst of reports, or a late
    /// one, costs one refresh at most. The row is read past the cache.
    func reportRejected(vault: String, name: String, tokenSHA256: String, by principal: Principal) async throws {
        guard let credential = try await self.store.sealedCredential(vault: vault, name: name) else {
            throw LatchkeyError.credentialNotFound(vault: vault, name: name)
        }
        guard credential.type.isRefreshable else {
            throw LatchkeyError.validation(
                "name",
                "'\(name)' is a \(credential.type.rawValue) credential: nothing can refresh it; rotate it with a new value"
            )
        }
        try Self.refuseIfUnusable(credential, name: name)
        let current = try self.store.open(credential)["access_token"]?.stringValue
        guard current.map({ Hex.lowercase(OneTimeSecret.hash($0)) }) == tokenSHA256.lowercased() else { return }
        // The same single-flight refresh as a token in its window (or a wait for
        // the replica that holds the claim), then the outcome from the new row.
        let fresh = try await self.refreshed(vault: vault, name: name, credential: credential, by: principal)
        try Self.refuseIfUnusable(fresh, name: name)
        if fresh.status == .backoff {
            var error = LatchkeyError(
                .providerUnavailable,
                "The provider could not refresh '\(name)'" + (fresh.lastError.map { " (\($0))" } ?? "")
                    + "; retry shortly.")
            error.statusOverride = 503
            throw error
        }
        // This replica's own notification may still be on its way: answer from the new row.
        self.cache.invalidate(payload: Self.key(vault, name))
    }

    private static func refuseIfUnusable(_ credential: SealedCredential, name: String) throws {
        switch credential.status {
        case .needsReauth:
            throw LatchkeyError(
                .needsReauth,
                "'\(name)' needs re-authorisation" + (credential.lastError.map { ": \($0)." } ?? ".")
                    + " Reconnect it or paste new tokens.")
        case .revoked:
            throw LatchkeyError(.needsReauth, "'\(name)' has been revoked; reconnect it or paste new tokens.")
        default:
            return
        }
    }

    /// A header_set value with its placeholders replaced.
    private func resolve(
        _ template: String, vault: String, by principal: Principal, depth: Int, seen: inout Set<String>,
        trace: inout RenderTrace
    ) async throws -> String {
        var output = ""
        for part in try Self.parts(template) {
            switch part {
            case .text(let text):
                output += text
            case .reference(let name, let field):
                output += try await self.value(
                    of: name, field: field, vault: vault, by: principal, depth: depth, seen: &seen, trace: &trace)
            }
        }
        return output
    }

    private func value(
        of name: String, field: String?, vault: String, by principal: Principal, depth: Int, seen: inout Set<String>,
        trace: inout RenderTrace
    ) async throws -> String {
        let placeholder = "{{credential:\(name)\(field.map { "." + $0 } ?? "")}}"
        func unresolved(_ why: String) -> LatchkeyError {
            LatchkeyError(.unresolvedPlaceholder, "\(placeholder) cannot be resolved: \(why).", field: placeholder)
        }
        guard depth <= Self.maxDepth else { throw unresolved("placeholders nest more than \(Self.maxDepth) deep") }
        guard seen.insert(Self.key(vault, name)).inserted else { throw unresolved("it refers back to itself") }
        defer { seen.remove(Self.key(vault, name)) }
        let credential: SealedCredential
        let value: [String: JSONValue]
        do {
            (credential, value) = try await self.usable(vault: vault, name: name, by: principal, trace: &trace)
        } catch let error as LatchkeyError where error.code == .credentialNotFound {
            throw unresolved("there is no credential '\(name)' in vault '\(vault)'")
        }
        switch (credential.type, field) {
        case (.oauthClient, _):
            throw unresolved("'\(name)' is an oauth_client, whose secret is never injected")
        case (.headerSet, let header?):
            guard case .object(let headers)? = value["headers"],
                let template = headers.first(where: { $0.key.lowercased() == header.lowercased() })?.value.stringValue
            else { throw unresolved("header_set '\(name)' has no header '\(header)'") }
            return try await self.resolve(
                template, vault: vault, by: principal, depth: depth + 1, seen: &seen, trace: &trace)
        case (_, let field?):
            guard let text = value[field]?.stringValue else {
                throw unresolved("'\(name)' has no field '\(field)'")
            }
            return text
        case (.bearer, nil): return Self.string(value, "token")
        case (.apiKey, nil): return Self.string(value, "key")
        case (.cookie, nil): return Self.string(value, "cookie")
        case (.oauth, nil), (.clientCredentials, nil): return Self.string(value, "access_token")
        case (let type, nil):
            throw unresolved(
                "a \(type.rawValue) credential has several fields: name one, e.g. {{credential:\(name).field}}")
        }
    }

    private static func parts(_ template: String) throws -> [Placeholders.Part] {
        do {
            return try Placeholders.parse(template)
        } catch {
            // Stored values were checked when written; a bad one here is not the caller's fault.
            throw LatchkeyError(.unresolvedPlaceholder, "A stored header value holds a malformed placeholder.")
        }
    }

    private static func string(_ value: [String: JSONValue], _ field: String) -> String {
        value[field]?.stringValue ?? ""
    }

    static func key(_ vault: String, _ name: String) -> String { vault + "/" + name }
}

/// Runs one operation per key at a time: a request that finds the operation
/// already running waits for it instead of starting another (the first
/// caller does the work, inside its own task, so nothing runs unstructured).
final class SingleFlight: Sendable {
    private let waiting = Mutex<[String: [CheckedContinuation<Void, Never>]]>([:])

    func run(_ key: String, _ operation: () async throws -> Void) async throws {
        let leader: Bool = self.waiting.withLock { waiting in
            if waiting[key] == nil {
                waiting[key] = []
                return true
            }
            return false
        }
        if !leader {
            await withCheckedContinuation { continuation in
                let queued: Bool = self.waiting.withLock { waiting in
                    guard waiting[key] != nil else { return false }
                    waiting[key]!.append(continuation)
                    return true
                }
                // The leader finished between the two checks: nothing to wait for.
                if !queued { continuation.resume() }
            }
            return
        }
        defer {
            let followers = self.waiting.withLock { $0.removeValue(forKey: key) ?? [] }
            for follower in followers { follower.resume() }
        }
        try await operation()
    }
}
