import Crypto
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// An OAuth provider played by a real HTTP server on 127.0.0.1, for tests and
/// for trying flows by hand. Endpoints: `GET /authorize` (approves at once and
/// redirects back with a code), `POST /token` (authorization_code with PKCE
/// S256 verification, refresh_token, client_credentials). Behaviour is
/// switchable per client, and every grant served is counted.
package final class ProviderSimulator: Sendable {
    package enum ReplyFormat: Sendable { case json, form }
    package enum ExpiresIn: Sendable { case number(Int), string(Int), absent }

    package struct Behaviour: Sendable {
        /// Issue a new refresh token on every refresh; reusing a rotated one
        /// revokes the whole family (as Google, Microsoft and Atlassian do).
        package var rotateRefreshTokens = true
        package var format: ReplyFormat = .json
        package var expiresIn: ExpiresIn = .number(3600)
        /// Delay before answering token requests.
        package var latency: Duration = .zero
        /// Answer this many token requests with 503 first.
        package var failNext = 0
        /// Answer this many token requests with 429 and this Retry-After first.
        package var rateLimitNext = 0
        package var retryAfterSeconds = 2
        /// Refuse every refresh with `invalid_grant`.
        package var rejectRefresh = false
        /// Answer with HTTP 200 whose body is this OAuth error (Slack, GitHub style).
        package var errorIn200: String?
        /// Include a `refresh_token` in responses.
        package var issueRefreshTokens = true
        /// Extra fields to include (`instance_url`, `id_token`, ...).
        package var extraFields: [String: String] = [:]
        /// Hold every token request until `releaseOne()` (to observe how many a caller keeps open).
        package var holdRequests = false

        package init() {}
    }

    private struct Client {
        var secret: String
        /// Further secrets accepted while a client secret is being rotated.
        var otherSecrets: Set<String> = []
        var behaviour: Behaviour

        func accepts(_ presented: String?) -> Bool {
            guard let presented else { return self.secret.isEmpty }
            return presented == self.secret || self.otherSecrets.contains(presented)
        }
    }

    private struct RefreshToken {
        let clientID: String
        let family: Int
        var used = false
    }

    private struct PendingCode {
        let clientID: String
        let redirectURI: String
        let challenge: String?
        let scope: String?
    }

    private struct State {
        var port = 0
        var clients: [String: Client] = [:]
        var refreshTokens: [String: RefreshToken] = [:]
        var revokedFamilies: Set<Int> = []
        var nextFamily = 0
        var codes: [String: PendingCode] = [:]
        var grants: [String: [String: Int]] = [:]
        var invalidClient: [String: Int] = [:]
        var issued = 0
        var inFlight = 0
        var maxInFlight = 0
        var held: [CheckedContinuation<Void, Never>] = []
        var heldWaiters: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []

        /// Waiters whose count of held requests has been reached.
        mutating func takeSatisfiedWaiters() -> [CheckedContinuation<Void, Never>] {
            let ready = self.heldWaiters.filter { $0.count <= self.held.count }.map(\.continuation)
            self.heldWaiters.removeAll { $0.count <= self.held.count }
            return ready
        }
    }

    private let state = Mutex(State())

    private init() {}

    // MARK: Set-up and inspection

    package var baseURL: String { "http://127.0.0.1:\(self.state.withLock { $0.port })" }
    package var tokenURL: String { self.baseURL + "/token" }
    package var authorizationURL: String { self.baseURL + "/authorize" }

    package func register(clientID: String, secret: String, behaviour: Behaviour = Behaviour()) {
        self.state.withLock { $0.clients[clientID] = Client(secret: secret, behaviour: behaviour) }
    }

    /// Makes the client accept exactly these secrets (a provider mid-rotation accepts two).
    package func setSecrets(clientID: String, _ secrets: [String]) {
        self.state.withLock { state in
            guard var client = state.clients[clientID], let first = secrets.first else { return }
            client.secret = first
            client.otherSecrets = Set(secrets.dropFirst())
            state.clients[clientID] = client
        }
    }

    /// How many token requests the client failed to authenticate (`invalid_client`).
    package func invalidClientAnswers(clientID: String) -> Int {
        self.state.withLock { $0.invalidClient[clientID] ?? 0 }
    }

    /// Returns once at least `count` requests are being held (`holdRequests`).
    package func waitUntilHeld(_ count: Int) async {
        await withCheckedContinuation { continuation in
            let ready: Bool = self.state.withLock { state in
                if state.held.count >= count { return true }
                state.heldWaiters.append((count, continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// Stops holding requests and lets every held one go on (so the
    /// simulator can shut down even if a caller gave up waiting).
    package func releaseAll() {
        let held: [CheckedContinuation<Void, Never>] = self.state.withLock { state in
            for id in state.clients.keys { state.clients[id]!.behaviour.holdRequests = false }
            defer { state.held.removeAll() }
            return state.held
        }
        for continuation in held { continuation.resume() }
    }

    /// Lets the oldest held request go on.
    package func releaseOne() {
        let next: CheckedContinuation<Void, Never>? = self.state.withLock { state in
            state.held.isEmpty ? nil : state.held.removeFirst()
        }
        next?.resume()
    }

    /// The most token requests the simulator has had open at once.
    package var maxConcurrentRequests: Int { self.state.withLock { $0.maxInFlight } }

    package func update(clientID: String, _ change: (inout Behaviour) -> Void) {
        self.state.withLock { state in
            if var client = state.clients[clientID] {
                change(&client.behaviour)
                state.clients[clientID] = client
            }
        }
    }

    /// A valid refresh token for `clientID`, as if a user had consented before.
    package func seedRefreshToken(clientID: String) -> String {
        self.state.withLock { state in
            state.nextFamily += 1
            return Self.newRefreshToken(&state, clientID: clientID, family: state.nextFamily)
        }
    }

    /// How many grants of a type (`refresh_token`, ...) the client was served.
    package func grants(clientID: String, type: String) -> Int {
        self.state.withLock { $0.grants[clientID]?[type] ?? 0 }
    }

    /// Whether a refresh token would still be accepted.
    package func isLive(refreshToken: String) -> Bool {
        self.state.withLock { state in
            guard let token = state.refreshTokens[refreshToken] else { return false }
            return !token.used && !state.revokedFamilies.contains(token.family)
        }
    }

    // MARK: Running

    /// Starts the simulator on a free port, runs `body`, and stops it.
    package static func withRunning<Result: Sendable>(
        host: String = "127.0.0.1", port: Int = 0, _ body: @Sendable (ProviderSimulator) async throws -> Result
    ) async throws -> Result {
        let simulator = ProviderSimulator()
        return try await LoopbackServer.run(
            router: simulator.router(), name: "provider-simulator", host: host, port: port
        ) { port in
            simulator.state.withLock { $0.port = port }
            return try await body(simulator)
        }
    }

    private func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("authorize") { request, _ in try self.authorize(request) }
        router.post("token") { request, _ in try await self.token(request) }
        return router
    }

    // MARK: Endpoints

    private func authorize(_ request: Request) throws -> Response {
        let query = request.uri.queryParameters
        guard let clientID = query.get("client_id"), let redirectURI = query.get("redirect_uri"),
            self.state.withLock({ $0.clients[clientID] != nil })
        else {
            return Response(status: .badRequest)
        }
        if let method = query.get("code_challenge_method"), method != "S256" { return Response(status: .badRequest) }
        let code = "code_" + UUID().uuidString
        self.state.withLock {
            $0.codes[code] = PendingCode(
                clientID: clientID, redirectURI: redirectURI, challenge: query.get("code_challenge"),
                scope: query.get("scope"))
        }
        var location = redirectURI + (redirectURI.contains("?") ? "&" : "?") + "code=\(code)"
        if let state = query.get("state") { location += "&state=" + FormBody.encode(state) }
        return Response(status: .found, headers: [.location: location])
    }

    private func token(_ request: Request) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: 64 * 1024)
        let form = FormBody.decode(String(buffer: body))
        // Client authentication: HTTP Basic or form fields.
        var clientID = form["client_id"]
        var secret = form["client_secret"]
        if let header = request.headers[.authorization], header.hasPrefix("Basic "),
            let decoded = Data(base64Encoded: String(header.dropFirst(6))).flatMap({ String(data: $0, encoding: .utf8) }
            ),
            let colon = decoded.firstIndex(of: ":")
        {
            clientID = String(decoded[..<colon]).removingPercentEncoding
            secret = String(decoded[decoded.index(after: colon)...]).removingPercentEncoding
        }
        guard let clientID, let client = self.state.withLock({ $0.clients[clientID] }) else {
            return Self.reply(.json, status: .unauthorized, ["error": "invalid_client"])
        }
        self.state.withLock { state in
            state.inFlight += 1
            state.maxInFlight = max(state.maxInFlight, state.inFlight)
        }
        defer { self.state.withLock { $0.inFlight -= 1 } }
        if client.behaviour.holdRequests {
            await withCheckedContinuation { continuation in
                let ready = self.state.withLock { state in
                    state.held.append(continuation)
                    return state.takeSatisfiedWaiters()
                }
                for waiter in ready { waiter.resume() }
            }
        }
        var behaviour = client.behaviour
        // A slow provider (the simulator plays one; this is not a test waiting).
        if behaviour.latency > .zero { try await Task.sleep(for: behaviour.latency) }
        let grantType = form["grant_type"] ?? ""
        self.state.withLock { $0.grants[clientID, default: [:]][grantType, default: 0] += 1 }
        // Switchable failures come first, as from a struggling provider.
        let transient: Response? = self.state.withLock { state in
            if state.clients[clientID]!.behaviour.failNext > 0 {
                state.clients[clientID]!.behaviour.failNext -= 1
                return Response(status: .serviceUnavailable)
            }
            if state.clients[clientID]!.behaviour.rateLimitNext > 0 {
                state.clients[clientID]!.behaviour.rateLimitNext -= 1
                return Response(
                    status: .tooManyRequests, headers: [.retryAfter: String(behaviour.retryAfterSeconds)])
            }
            return nil
        }
        if let transient { return transient }
        behaviour = self.state.withLock { $0.clients[clientID]!.behaviour }
        let current = self.state.withLock { $0.clients[clientID]! }
        guard current.accepts(secret) else {
            self.state.withLock { $0.invalidClient[clientID, default: 0] += 1 }
            return Self.reply(behaviour.format, status: .unauthorized, ["error": "invalid_client"])
        }
        if let error = behaviour.errorIn200 { return Self.reply(behaviour.format, status: .ok, ["error": error]) }

        var family: Int
        switch grantType {
        case "refresh_token":
            guard !behaviour.rejectRefresh, let presented = form["refresh_token"] else {
                return Self.reply(behaviour.format, status: .badRequest, ["error": "invalid_grant"])
            }
            let outcome: Int? = self.state.withLock { state in
                guard let token = state.refreshTokens[presented], token.clientID == clientID,
                    !state.revokedFamilies.contains(token.family)
                else { return nil }
                if token.used {
                    // Reuse of a rotated token: the family is compromised.
                    state.revokedFamilies.insert(token.family)
                    return nil
                }
                if behaviour.rotateRefreshTokens { state.refreshTokens[presented]!.used = true }
                return token.family
            }
            guard let outcome else {
                return Self.reply(behaviour.format, status: .badRequest, ["error": "invalid_grant"])
            }
            family = outcome
        case "client_credentials":
            family = 0
        case "authorization_code":
            guard let code = form["code"], let pending = self.state.withLock({ $0.codes.removeValue(forKey: code) }),
                pending.clientID == clientID, pending.redirectURI == form["redirect_uri"]
            else {
                return Self.reply(behaviour.format, status: .badRequest, ["error": "invalid_grant"])
            }
            if let challenge = pending.challenge {
                guard let verifier = form["code_verifier"], Self.s256(verifier) == challenge else {
                    return Self.reply(behaviour.format, status: .badRequest, ["error": "invalid_grant"])
                }
            }
            family = self.state.withLock { state in
                state.nextFamily += 1
                return state.nextFamily
            }
        default:
            return Self.reply(behaviour.format, status: .badRequest, ["error": "unsupported_grant_type"])
        }

        var fields: [String: String] = ["token_type": "Bearer"]
        fields["access_token"] = self.state.withLock { state in
            state.issued += 1
            return "at_\(clientID)_\(state.issued)"
        }
        switch behaviour.expiresIn {
        case .number(let seconds): fields["expires_in"] = String(seconds)
        case .string(let seconds): fields["expires_in"] = "\"\(seconds)\""
        case .absent: break
        }
        if behaviour.issueRefreshTokens, grantType != "client_credentials" {
            if grantType == "refresh_token" && !behaviour.rotateRefreshTokens {
                // Non-rotating providers usually omit refresh_token on refresh.
            } else {
                fields["refresh_token"] = self.state.withLock {
                    Self.newRefreshToken(&$0, clientID: clientID, family: family)
                }
            }
        }
        fields.merge(behaviour.extraFields) { $1 }
        return Self.reply(behaviour.format, status: .ok, fields)
    }

    private static func newRefreshToken(_ state: inout State, clientID: String, family: Int) -> String {
        state.issued += 1
        let token = "rt_\(clientID)_\(state.issued)"
        state.refreshTokens[token] = RefreshToken(clientID: clientID, family: family)
        return token
    }

    private static func reply(
        _ format: ReplyFormat, status: HTTPResponse.Status, _ fields: [String: String]
    ) -> Response {
        let body: String
        let type: String
        switch format {
        case .json:
            // expires_in as a JSON number unless the behaviour asked for a string.
            body =
                "{"
                + fields.sorted { $0.key < $1.key }.map { key, value in
                    let isNumber = key == "expires_in" && Int(value) != nil
                    let rendered = isNumber ? value : (value.hasPrefix("\"") ? value : "\"\(value)\"")
                    return "\"\(key)\":\(rendered)"
                }.joined(separator: ",") + "}"
            type = "application/json"
        case .form:
            body = FormBody.encode(fields.mapValues { $0.replacingOccurrences(of: "\"", with: "") })
            type = "application/x-www-form-urlencoded"
        }
        return Response(
            status: status, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    private static func s256(_ verifier: String) -> String {
        Data(SHA256.hash(data: Array(verifier.utf8))).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

/// Minimal form coding for the simulator (the product's own encoder lives in
/// LatchkeyOAuth; the simulator must not share code with what it tests).
enum FormBody {
    static func decode(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = parts[0].replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
            let value =
                parts.count == 2
                ? (parts[1].replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "") : ""
            fields[name] = value
        }
        return fields
    }

    static func encode(_ fields: [String: String]) -> String {
        fields.sorted { $0.key < $1.key }.map { "\(Self.encode($0.key))=\(Self.encode($0.value))" }.joined(
            separator: "&")
    }

    static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~")))
            ?? text
    }
}
