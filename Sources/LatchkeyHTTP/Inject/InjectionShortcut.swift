import Foundation
import HTTPTypes
import LatchkeyCore
import LatchkeyCrypto
import LatchkeyStore
package import Logging
import NIOCore
import Synchronization

/// Answers warm injections without entering the router (SPEC section 5's
/// hot path), called by `InjectionShortcutHandler` on the connection's event
/// loop.
///
/// Why: a sidecar asks for the same answer thousands of times a second, and
/// once the key and the rendered answer are in memory the work is a few
/// dictionary lookups. Going through Hummingbird's responder costs far more
/// than that: the request crosses from the event loop to a Swift task and
/// the response back, then passes the router's trie and four middlewares.
/// Measured on the benchmark machine, those costs held injection to about
/// 20k requests/s, the same as `/healthz`, while nginx served 80–95k. An
/// event-loop handler answering a fixed body reached 72k.
///
/// What it answers: exactly the requests the full stack would answer 200
/// from memory, with the same headers and body. It takes a request only
/// when every check passes on what this replica already holds; anything
/// else (a key or answer not cached, an error of any kind, a token due for
/// refresh, a request it does not fully understand) goes on to the full
/// stack unchanged, which then answers it as it always does. So there is
/// one implementation of every refusal, and the checks it does make are the
/// full stack's own: `Authenticator.bearerToken`, `Authenticator.refusal`,
/// `RequireAccess.refusal`, `CredentialCache.rendered`, the same rate
/// limiter, usage recorder, request log line and duration histogram.
package final class InjectionShortcut: Sendable {
    /// The route template the full stack reports for these requests.
    static let route = "/v1/inject/{vault}/{name}"
    private static let pathPrefix = "/v1/inject/"
    /// The proxy route group's access rule, shared with the router.
    static let access = RequireAccess(role: .proxy, vaultParameter: "vault", credentialParameter: "name")

    private let authentication: AuthenticationDependencies
    private let credentials: CredentialCache
    private let metrics: RequestMetrics?
    private let logger: Logger
    private let serverName: String?
    private let dates = HTTPDates()
    private let answers = Atomic<Int>(0)

    package init(_ dependencies: RouterDependencies, logger: Logger, serverName: String?) {
        self.authentication = dependencies.authentication
        self.credentials = dependencies.credentials
        self.metrics = dependencies.requestMetrics
        self.logger = logger
        self.serverName = serverName
    }

    /// How many requests it has answered (`latchkey_injection_shortcut_answers_total`).
    package var answered: Int { self.answers.load(ordering: .relaxed) }

    /// A request that could be a warm injection, with the headers the
    /// shortcut reads (found in one pass over the fields).
    struct Candidate {
        let request: HTTPRequest
        let start: ContinuousClock.Instant
        fileprivate(set) var authorization: String?
        fileprivate(set) var forwardedFor: String?
        fileprivate(set) var requestID: String?
    }

    /// `request` as a candidate, or nil when it cannot be a warm injection.
    /// A request with a body, a `Connection` header other than keep-alive, a
    /// percent-encoded path or a repeated header the shortcut reads is left
    /// to the full stack.
    static func candidate(_ request: HTTPRequest) -> Candidate? {
        guard request.method == .get || request.method == .head,
            let path = request.path, path.hasPrefix(Self.pathPrefix), !path.utf8.contains(UInt8(ascii: "%"))
        else { return nil }
        var candidate = Candidate(request: request, start: .now)
        func once(_ slot: inout String?, _ value: String) -> Bool {
            guard slot == nil else { return false }
            slot = value
            return true
        }
        for field in request.headerFields {
            switch field.name {
            case .authorization:
                guard once(&candidate.authorization, field.value) else { return nil }
            case Authenticator.forwardedFor:
                guard once(&candidate.forwardedFor, field.value) else { return nil }
            case APIErrorMiddleware.requestIDHeader:
                guard once(&candidate.requestID, field.value) else { return nil }
            case .contentLength:
                guard field.value == "0" else { return nil }
            case .transferEncoding:
                return nil
            case .connection:
                guard field.value.lowercased() == "keep-alive" else { return nil }
            default:
                continue
            }
        }
        return candidate
    }

    /// The complete answer to a candidate, or nil when the full stack must
    /// answer it. On an answer, the call is counted exactly as the full stack
    /// counts it (rate limit, key usage, credential usage).
    func answer(
        _ candidate: Candidate, peer: IPAddress?, keys: inout KeyHashMemo
    ) -> (head: HTTPResponse, body: ByteBuffer, caller: Principal)? {
        let request = candidate.request
        guard let (vault, name) = Self.names(in: request.path ?? ""),
            let authorization = candidate.authorization,
            let hash = keys.hash(authorization, adminSecret: self.authentication.adminSecret),
            let record = self.authentication.cache.cached(hash: hash)
        else { return nil }
        let address = ClientAddress.resolve(
            peerAddress: peer, forwardedFor: candidate.forwardedFor, trusted: self.authentication.trustedProxies)
        let now = self.authentication.now()
        let caller = record.principal
        guard Authenticator.refusal(of: record, from: address, at: now) == nil,
            Self.access.refusal(for: caller, vault: vault, credential: name, endpoint: "") == nil,
            let hit = self.credentials.rendered(vault: vault, name: name, now: now),
            // Last, as it takes a token: refused here, it is refused again (and
            // answered 429) by the full stack.
            self.authentication.rateLimiter.acquire(record.id, now: now) == nil
        else { return nil }
        self.authentication.usage.recordInjection(credential: hit.credentialID, key: record.id, at: now)
        self.answers.add(1, ordering: .relaxed)

        // The full stack's headers, in its order: the rendered ones, then
        // Content-Length (a HEAD has an empty body), the request id, Date, Server.
        var fields = hit.headers
        let body = request.method == .head ? ByteBuffer() : hit.body
        fields[.contentLength] = String(body.readableBytes)
        fields[APIErrorMiddleware.requestIDHeader] = APIErrorMiddleware.requestID(given: candidate.requestID)
        fields[.date] = self.dates.now()
        if let serverName = self.serverName { fields[.server] = serverName }
        return (HTTPResponse(status: .ok, headerFields: fields), body, caller)
    }

    /// Records an answered request's duration and its log line, as
    /// `APIErrorMiddleware` does for the rest.
    func finished(
        _ request: HTTPRequest, head: HTTPResponse, caller: Principal, elapsed: Duration
    ) {
        self.metrics?.record(route: Self.route, method: request.method, status: head.status.code, elapsed)
        guard self.logger.logLevel <= .info else { return }
        var logger = self.logger
        logger[metadataKey: "request.id"] = head.headerFields[APIErrorMiddleware.requestIDHeader].map { "\($0)" }
        APIErrorMiddleware.log(
            logger, method: request.method, route: Self.route, status: head.status.code, elapsed: elapsed,
            principal: caller)
    }

    /// `<vault>` and `<name>` from `/v1/inject/<vault>/<name>[?query]`, when
    /// both are valid names (what the router would match and the handler
    /// accept; the query is ignored there too).
    static func names(in path: String) -> (vault: String, name: String)? {
        guard path.hasPrefix(Self.pathPrefix) else { return nil }
        var rest = path.utf8.dropFirst(Self.pathPrefix.utf8.count)
        if let query = rest.firstIndex(of: UInt8(ascii: "?")) { rest = rest[..<query] }
        guard let slash = rest.firstIndex(of: UInt8(ascii: "/")),
            let vault = String(rest[..<slash]), let name = String(rest[rest.index(after: slash)...]),
            Names.isValidVaultName(vault), Names.isValidCredentialName(name)
        else { return nil }
        return (vault, name)
    }
}

/// The hash of the API key in the last `Authorization` header seen on one
/// connection. A sidecar sends the same key on every request, so the SHA-256
/// is computed once per connection rather than per request; the key cache is
/// still consulted every time (that is where revocation shows). It holds what
/// that connection's own buffers held, for as long as the connection lasts.
struct KeyHashMemo {
    private var header: String?
    private var hash: [UInt8] = []

    /// The key's hash, or nil when the header carries no API key (nothing
    /// the shortcut answers: the full stack refuses it, or takes the
    /// bootstrap secret to its own 403).
    mutating func hash(_ authorization: String, adminSecret: String?) -> [UInt8]? {
        // Bytes, not String equality (which is Unicode-canonical).
        if let header = self.header, header.utf8.elementsEqual(authorization.utf8) { return self.hash }
        guard let token = Authenticator.bearerToken(authorization),
            !Authenticator.isBootstrapSecret(token, secret: adminSecret),
            APIKeyMaterial.looksLikeKey(token)
        else { return nil }
        self.header = authorization
        self.hash = APIKeyMaterial.hash(token)
        return self.hash
    }
}

/// The `Date` header's value, formatted once a second. (Hummingbird keeps
/// the same cache for its responses, but not publicly.)
private final class HTTPDates: Sendable {
    private struct State {
        var second: Int = .min
        var text = ""
    }

    private let state = Mutex(State())
    private let formatter: @Sendable (Date) -> String = { date in
        // RFC 9110's IMF-fixdate, in English whatever the process's locale.
        date.formatted(
            Date.VerbatimFormatStyle(
                format: """
                    \(weekday: .abbreviated), \(day: .twoDigits) \(month: .abbreviated) \(year: .defaultDigits) \
                    \(hour: .twoDigits(clock: .twentyFourHour, hourCycle: .zeroBased)):\(minute: .twoDigits):\
                    \(second: .twoDigits) GMT
                    """,
                locale: Locale(identifier: "en_US_POSIX"), timeZone: .gmt, calendar: Calendar(identifier: .gregorian)))
    }

    func now() -> String {
        let date = Date()
        let second = Int(date.timeIntervalSince1970)
        return self.state.withLock { state in
            if state.second != second {
                state.second = second
                state.text = self.formatter(date)
            }
            return state.text
        }
    }
}
