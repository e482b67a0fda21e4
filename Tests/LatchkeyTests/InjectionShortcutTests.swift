import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LatchkeyApp
import LatchkeyCore
import LatchkeyTesting
import NIOCore
import NIOPosix
import Testing

/// Warm injections are answered on the event loop, before the router
/// (`InjectionShortcut`). These tests run real servers (`.live`: the
/// shortcut sits in the connection's channel pipeline) and check that it
/// answers exactly what the full stack would, and only that.
@Suite("Injection shortcut: warm answers on the event loop")
struct InjectionShortcutTests {
    static let base = "/v1/vaults/default/credentials"
    static let requestID = HTTPField.Name("X-Request-Id")!
    let injection = InjectionTests()

    func inject(
        _ client: any TestClientProtocol, _ key: String?, _ path: String, method: HTTPRequest.Method = .get,
        headers: HTTPFields = [:]
    ) async throws -> APIResponse {
        try await client.call(method, "/v1/inject/default/\(path)", key: key, headers: headers)
    }

    /// Header names in order, with values, except the two that differ per
    /// response by design (the request id and the date).
    static func comparable(_ headers: HTTPFields) -> [String] {
        headers.map { field in
            switch field.name {
            case .date: "Date: <date>"
            case Self.requestID: "X-Request-Id: <\(field.value.utf8.count) characters>"
            default: "\(field.name.rawName): \(field.value)"
            }
        }
    }

    static func httpDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.date(from: text)
    }

    @Test func aWarmAnswerIsTheFullStacksAnswerForEveryType() async throws {
        try await Harness.withApp(.live) { harness, client in
            let credentials: [(String, String, [String: Any])] = [
                ("gh", "bearer", ["token": "ghp_shortcut_1"]),
                ("stripe", "api_key", ["key": "sk_live_2", "header": "X-Api-Key"]),
                ("maps", "api_key", ["key": "maps-key-3", "query_param": "key"]),
                ("legacy", "basic", ["username": "svc", "password": "pa55:word"]),
                ("session", "cookie", ["cookie": "sid=abc4"]),
                ("inner", "header_set", ["headers": ["X-Inner": "v={{credential:gh}}"]]),
                ("combo", "header_set", ["headers": ["X-Nested": "[{{credential:inner.X-Inner}}]", "X-Plain": "p"]]),
                (
                    "oauth_client_x", "oauth_client",
                    ["client_id": "i", "client_secret": "s", "token_url": "https://idp.example/token"]
                ),
                ("pasted", "oauth", ["client": "oauth_client_x", "access_token": "at_5", "expires_in": 86_400]),
            ]
            for (name, type, value) in credentials {
                try await self.injection.create(client, harness, name, type, value)
            }
            for name in ["gh", "stripe", "maps", "legacy", "session", "inner", "combo", "pasted"] {
                for method in [HTTPRequest.Method.get, .head] {
                    // A key's first call goes to the full stack (the key is not
                    // cached yet); its second is answered warm.
                    let key = try await self.injection.proxyKey(client, harness)
                    let answered = harness.flusher.shortcutAnswers
                    let full = try await self.inject(client, key, name, method: method)
                    #expect(harness.flusher.shortcutAnswers == answered, "\(name) \(method): full stack first")
                    let warm = try await self.inject(client, key, name, method: method)
                    #expect(harness.flusher.shortcutAnswers == answered + 1, "\(name) \(method): answered warm")
                    #expect(full.status == 200 && warm.status == 200, "\(name) \(method): \(full.body)")
                    #expect(warm.body == full.body, "\(name) \(method)")
                    #expect(method == .get ? !warm.body.isEmpty : warm.body.isEmpty, "\(name) \(method)")
                    #expect(Self.comparable(warm.headers) == Self.comparable(full.headers), "\(name) \(method)")
                    #expect(warm.headers[Self.requestID] != full.headers[Self.requestID])
                    // The same kind of Date: an IMF-fixdate, now.
                    let dates = [warm, full].compactMap { $0.headers[.date].flatMap(Self.httpDate) }
                    #expect(dates.count == 2 && dates.allSatisfy { abs($0.timeIntervalSinceNow) < 60 }, "\(dates)")
                }
            }
        }
    }

    @Test func aRequestWithABodyOrAnOddConnectionGoesToTheFullStack() async throws {
        try await Harness.withApp(.live) { harness, client in
            try await self.injection.create(client, harness, "gh", "bearer", ["token": "ghp_shortcut_2"])
            let key = try await self.injection.proxyKey(client, harness)
            #expect(try await self.inject(client, key, "gh").status == 200)
            let port = try #require(client.port)
            let answered = harness.flusher.shortcutAnswers
            let get = "GET /v1/inject/default/gh HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(key)\r\n"
            // A body, a Connection header that closes, a repeated header the shortcut reads.
            for odd in [
                get + "Content-Length: 2\r\n\r\n{}", get + "Connection: close\r\n\r\n",
                get + "X-Request-Id: a\r\nX-Request-Id: b\r\n\r\n",
            ] {
                let responses = try await RawHTTP.exchange(port: port, odd, responses: 1)
                #expect(responses.first?.status == 200, "\(odd): \(responses)")
            }
            // Two Authorization headers: the full stack reads them joined, and refuses.
            let twice = try await RawHTTP.exchange(
                port: port,
                "GET /v1/inject/default/gh HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(key)\r\n"
                    + "Authorization: Bearer \(key)\r\n\r\n", responses: 1)
            #expect(twice.first?.status == 401)
            #expect(harness.flusher.shortcutAnswers == answered)
            // And a plain one on the same kind of connection is answered warm.
            let plain = try await RawHTTP.exchange(port: port, get + "\r\n", responses: 1)
            #expect(plain.first?.status == 200)
            #expect(harness.flusher.shortcutAnswers == answered + 1)
        }
    }

    @Test func everyRefusalOfAWarmCallIsTheFullStacksAnswer() async throws {
        // The test clock stands still, so buckets do not refill: 50 calls a key.
        try await Harness.withApp(
            .live,
            configure: {
                $0.rateLimit = 1; $0.rateLimitBurst = 50
            }
        ) {
            harness, client in
            try await self.injection.create(client, harness, "gh", "bearer", ["token": "ghp_shortcut_3"])
            try await self.injection.create(client, harness, "other", "bearer", ["token": "ghp_shortcut_4"])
            // Each key makes a successful call first, so it and the answer are cached.
            func warmKey(_ body: [String: Any]) async throws -> String {
                let key = try await mintKey(client, with: harness.adminKey, body).key
                #expect(try await self.inject(client, key, "gh").status == 200)
                return key
            }
            let scoped = try await warmKey(["name": "s", "role": "proxy", "vaults": ["default"], "credentials": ["gh"]])
            let free = try await warmKey(["name": "f", "role": "proxy", "vaults": ["default"]])
            let expiring = try await warmKey(["name": "e", "role": "proxy", "vaults": ["default"], "ttl_seconds": 60])
            let limited = try await warmKey(["name": "l", "role": "proxy", "vaults": ["default"]])
            for _ in 0..<49 { #expect(try await self.inject(client, limited, "gh").status == 200) }
            let blocked = try await mintKey(
                client, with: harness.adminKey,
                ["name": "b", "role": "proxy", "vaults": ["default"], "ip_allowlist": ["10.0.0.0/8"]]
            ).key
            _ = try await self.inject(client, blocked, "gh")  // its refused lookup caches it

            let answered = harness.flusher.shortcutAnswers
            let unknown = "lk_live_" + String(repeating: "A", count: 43)
            var cases: [(String, APIResponse, Int, String)] = [
                ("out of scope", try await self.inject(client, scoped, "other"), 403, "FORBIDDEN"),
                ("not allowed from here", try await self.inject(client, blocked, "gh"), 403, "IP_NOT_ALLOWED"),
                ("an admin key", try await self.inject(client, harness.adminKey, "gh"), 403, "FORBIDDEN"),
                ("the bootstrap secret", try await self.inject(client, harness.adminSecret, "gh"), 403, "FORBIDDEN"),
                ("rate limited", try await self.inject(client, limited, "gh"), 429, "RATE_LIMITED"),
                ("no key", try await self.inject(client, nil, "gh"), 401, "INVALID_KEY"),
                ("an unknown key", try await self.inject(client, unknown, "gh"), 401, "INVALID_KEY"),
                ("an unknown credential", try await self.inject(client, free, "absent"), 404, "CREDENTIAL_NOT_FOUND"),
                ("a malformed name", try await self.inject(client, free, "bad-name!"), 400, "INVALID_PARAMETER"),
            ]
            harness.clock.advance(by: 61)
            cases.append(("expired", try await self.inject(client, expiring, "gh"), 401, "INVALID_KEY"))
            for (what, response, status, code) in cases {
                #expect(response.status == status && response.errorCode == code, "\(what): \(response.body)")
                #expect(response.headers[HTTPField.Name("Latchkey-Error")!] == code, "\(what)")
            }
            #expect(cases.first { $0.0 == "rate limited" }?.1.headers[.retryAfter] != nil, "429 says when to retry")
            #expect(harness.flusher.shortcutAnswers == answered, "none of these was answered by the shortcut")
        }
    }

    /// HTTP/1.1 answers in order: a warm injection pipelined behind a request
    /// the full stack is still working on must wait for it.
    @Test func aWarmInjectionPipelinedBehindASlowRequestIsAnsweredAfterIt() async throws {
        try await RefresherTests().withToken(.live, expiresIn: 3600) { harness, client, simulator in
            try await self.injection.create(client, harness, "gh", "bearer", ["token": "ghp_shortcut_5"])
            let key = try await self.injection.proxyKey(client, harness)
            #expect(try await self.inject(client, key, "gh").status == 200)  // warm
            #expect(try await self.inject(client, key, "tok").status == 200)
            harness.clock.advance(by: 3_400)  // tok is now inside its refresh window: a provider call
            simulator.update(clientID: "app") { $0.holdRequests = true }
            let port = try #require(client.port)
            let request = { (name: String) in
                "GET /v1/inject/default/\(name) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(key)\r\n\r\n"
            }
            let answered = harness.flusher.shortcutAnswers
            async let exchanged = RawHTTP.exchange(port: port, request("tok") + request("gh"), responses: 2)
            await simulator.waitUntilHeld(1)
            simulator.releaseAll()
            let responses = try await exchanged
            try #require(responses.count == 2)
            let (first, second) = (responses[0], responses[1])
            #expect(first.status == 200 && first.body.contains("Bearer "), "\(first)")
            #expect(!first.body.contains("ghp_shortcut_5"), "the refreshed token comes first: \(first.body)")
            #expect(second.status == 200 && second.body.contains("ghp_shortcut_5"), "\(second)")
            #expect(harness.flusher.shortcutAnswers == answered, "the warm one waited its turn in the full stack")
        }
    }

    @Test func warmAnswersAreCountedLoggedAndMeasuredLikeTheRest() async throws {
        try await Harness.withApp(.live) { harness, client in
            try await self.injection.create(client, harness, "gh", "bearer", ["token": "ghp_shortcut_6"])
            let key = try await self.injection.proxyKey(client, harness)
            let answered = harness.flusher.shortcutAnswers
            var ids: Set<String> = []
            for _ in 0..<20 {
                let response = try await self.inject(client, key, "gh")
                #expect(response.status == 200)
                ids.insert(response.headers[Self.requestID] ?? "")
            }
            #expect(harness.flusher.shortcutAnswers == answered + 19)
            #expect(ids.count == 20, "every answer has its own request id")
            let given = try await self.inject(client, key, "gh", headers: [HTTPField.Name("X-Request-Id")!: "trace-77"])
            #expect(given.headers[Self.requestID] == "trace-77")

            // Usage: every call counted, as the full stack counts them.
            await harness.flushUsage()
            let metadata = try await client.call(.get, "\(Self.base)/gh", key: harness.adminKey)
            #expect(metadata.json["usage"]["total_calls"] == .number(21))

            // Metrics: the same histogram series, and the shortcut's own count.
            let metrics = try await client.call(.get, "/metrics", key: nil).body
            let series = metrics.split(separator: "\n").filter {
                $0.hasPrefix("latchkey_http_request_duration_seconds_count{") && $0.contains(#"method="GET""#)
                    && $0.contains(#"route="/v1/inject/{vault}/{name}""#) && $0.contains(#"status="200""#)
            }
            #expect(series.count == 1 && series.first?.hasSuffix(" 21") == true, "\(series)")
            #expect(metrics.contains("latchkey_injection_shortcut_answers_total 20"), "\(metrics)")

            // Logs: one line per request with the route template, never the token.
            let lines = harness.logs.captured.filter { $0.contains("http.route=/v1/inject/{vault}/{name}") }
            #expect(lines.count == 21, "\(lines.count)")
            #expect(lines.contains { $0.contains("request.id=trace-77") })
            #expect(lines.allSatisfy { $0.contains("auth.principal=key:\(key.prefix(12))") }, "\(lines.first ?? "")")
            #expect(!harness.logs.text.contains("ghp_shortcut_6"))
            #expect(!harness.logs.text.contains(key))
        }
    }
}

/// A raw HTTP/1.1 exchange on one connection: sends `text` as it is
/// (pipelined requests, odd headers) and reads `responses` answers, each
/// framed by its Content-Length (Latchkey always sends one).
enum RawHTTP {
    struct Answer: Sendable {
        let status: Int
        let headers: [(String, String)]
        let body: String
    }

    static func exchange(port: Int, _ text: String, responses count: Int) async throws -> [Answer] {
        let channel = try await ClientBootstrap(group: .singletonMultiThreadedEventLoopGroup)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: text))
            var received = ByteBuffer()
            var answers: [Answer] = []
            for try await var chunk in inbound {
                received.writeBuffer(&chunk)
                while answers.count < count, let answer = Self.parse(&received) { answers.append(answer) }
                if answers.count == count { break }
            }
            return answers
        }
    }

    /// One complete response from the front of `buffer`, consumed; nil until it has all arrived.
    private static func parse(_ buffer: inout ByteBuffer) -> Answer? {
        let bytes = Array(buffer.readableBytesView)
        guard let end = bytes.firstRange(of: Array("\r\n\r\n".utf8)) else { return nil }
        let lines = String(decoding: bytes[..<end.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        guard let statusLine = lines.first, let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "")
        else { return nil }
        let headers = lines.dropFirst().compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        let length = headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
        guard bytes.count >= end.upperBound + length else { return nil }
        buffer.moveReaderIndex(forwardBy: end.upperBound + length)
        return Answer(
            status: status, headers: headers,
            body: String(decoding: bytes[end.upperBound..<(end.upperBound + length)], as: UTF8.self))
    }
}
