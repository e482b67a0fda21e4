import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LatchkeyApp
import LatchkeyCore
import LatchkeyCrypto
import LatchkeyHTTP
import LatchkeyOAuth
import LatchkeyRefresher
import LatchkeyStore
import LatchkeyTesting
import Logging
import NIOCore
import NIOHTTP1
import PostgresNIO
import Synchronization
import Testing

/// The browser connect flow, step by step over HTTP: Latchkey's pages through
/// the test client, the provider simulator's authorization endpoint through a
/// real HTTP client that does not follow redirects.
@Suite("Connect with provider: sessions, the browser flow and its failures")
struct ConnectTests {
    static let base = "/v1/vaults/default/credentials"
    static let publicURL = "https://latchkey.example.test"

    /// An app whose `LATCHKEY_PUBLIC_URL` is `publicURL`, with an
    /// oauth_client `sim` for the simulator's `app`.
    func withConnect(
        _ body: @escaping @Sendable (Harness, any TestClientProtocol, ProviderSimulator) async throws -> Void
    ) async throws {
        try await Harness.withSimulatedClient(
            configure: { $0.publicURL = Self.publicURL },
            client: { simulator in
                [
                    "authorization_url": simulator.authorizationURL, "scopes": ["repo", "read:user"],
                    "authorize_params": ["prompt": "consent"],
                ]
            }, body)
    }

    /// Creates a session and returns its connect URL's path.
    func session(
        _ client: any TestClientProtocol, key: String, _ extra: [String: Any] = [:]
    ) async throws -> String {
        var body: [String: Any] = ["client": "sim", "credential": "github_alice"]
        body.merge(extra) { _, new in new }
        let response = try await client.call(
            .post, "/v1/vaults/default/connect-sessions", key: key, body: json(body))
        #expect(response.status == 201, "\(response.body)")
        let url = try #require(response.json["connect_url"].stringValue)
        #expect(url.hasPrefix(Self.publicURL + "/connect/"))
        #expect(response.json["redirect_uri"] == .string(Self.publicURL + "/oauth/callback"))
        return String(url.dropFirst(Self.publicURL.count))
    }

    /// Starts the authorization (POST, the Connect button) and follows it to
    /// the simulator, which approves: returns the callback's path and query.
    func approve(_ client: any TestClientProtocol, _ connectPath: String) async throws -> String {
        let started = try await client.call(.post, connectPath, key: nil)
        #expect(started.status == 303, "\(started.body)")
        let authorize = try #require(started.headers[.location])
        var request = HTTPClientRequest(url: authorize)
        request.method = .GET
        let answer = try await HTTPClientForTests.noRedirects.execute(request, timeout: .seconds(10))
        #expect(answer.status.code == 302)
        let callback = try #require(answer.headers.first(name: "Location"))
        #expect(callback.hasPrefix(Self.publicURL + "/oauth/callback?"))
        return String(callback.dropFirst(Self.publicURL.count))
    }

    @Test func theWholeFlowStoresARefreshableCredentialThatInjects() async throws {
        try await self.withConnect { harness, client, simulator in
            let path = try await self.session(client, key: harness.adminKey)
            // The start page names the provider, the vault and the scopes, with a Connect button.
            let page = try await client.call(.get, path, key: nil)
            #expect(page.status == 200)
            #expect(page.headers[.contentType]?.hasPrefix("text/html") == true)
            #expect(page.headers[HTTPField.Name("X-Frame-Options")!] == "DENY")
            #expect(page.headers[HTTPField.Name("Content-Security-Policy")!]?.contains("default-src 'none'") == true)
            for text in ["sim", "default", "github_alice", "repo", "read:user", "<form"] {
                #expect(page.body.contains(text), "\(text)")
            }
            // The redirect carries everything the issue lists.
            let started = try await client.call(.post, path, key: nil)
            let location = try #require(started.headers[.location])
            let query = try #require(URLComponents(string: location)?.queryItems)
            func item(_ name: String) -> String? { query.first { $0.name == name }?.value }
            #expect(item("response_type") == "code")
            #expect(item("client_id") == "app")
            #expect(item("redirect_uri") == Self.publicURL + "/oauth/callback")
            #expect(item("scope") == "repo read:user")
            #expect(item("code_challenge_method") == "S256")
            #expect(item("code_challenge")?.count == 43)
            #expect(item("prompt") == "consent")
            #expect((item("state")?.count ?? 0) >= 43)
            // Approve at the provider and come back.
            let callback = try await self.approve(client, path)
            let done = try await client.call(.get, callback, key: nil)
            #expect(done.status == 200, "\(done.body)")
            #expect(done.body.contains("github_alice"))
            #expect(simulator.grants(clientID: "app", type: "authorization_code") == 1)
            // Stored sealed, refresher-ready, and injectable.
            let metadata = try await client.call(.get, "\(Self.base)/github_alice", key: harness.adminKey)
            #expect(metadata.json["type"] == .string("oauth"))
            #expect(metadata.json["client"] == .string("sim"))
            #expect(metadata.json["next_refresh_at"].stringValue != nil)
            let proxy = try await mintKey(
                client, with: harness.adminKey, ["name": "p", "role": "proxy", "vaults": ["default"]])
            let injected = try await client.call(.get, "/v1/inject/default/github_alice", key: proxy.key)
            #expect(injected.json["headers"]["Authorization"].stringValue?.hasPrefix("Bearer at_app_") == true)
            #expect(
                try await client.call(.post, "\(Self.base)/github_alice/refresh", key: harness.adminKey).status == 200)
            // Audited, and the link is spent.
            #expect(try await harness.auditText().contains("connect.complete"))
            let again = try await client.call(.get, path, key: nil)
            #expect(again.status == 409)
        }
    }

    @Test func everyFailureShowsAPageAndStoresNothing() async throws {
        try await self.withConnect { harness, client, simulator in
            // A provider refusal (error=access_denied), with hostile text in it.
            var path = try await self.session(client, key: harness.adminKey)
            var callback = try await self.approve(client, path)
            let state = try #require(URLComponents(string: callback)?.queryItems?.first { $0.name == "state" }?.value)
            let denied = try await client.call(
                .get, "/oauth/callback?error=%3Cscript%3Ealert(1)%3C%2Fscript%3E&state=\(state)", key: nil)
            #expect(denied.status == 400)
            #expect(!denied.body.contains("<script>"))
            #expect(denied.body.contains("&lt;script&gt;"))
            #expect(denied.headers[HTTPField.Name("X-Frame-Options")!] == "DENY")
            // The state is spent: reusing it is refused.
            let reused = try await client.call(.get, callback, key: nil)
            #expect(reused.status == 409)
            // Unknown state, missing state.
            #expect(try await client.call(.get, "/oauth/callback?code=x&state=nope", key: nil).status == 400)
            #expect(try await client.call(.get, "/oauth/callback?code=x", key: nil).status == 400)
            // Missing code.
            path = try await self.session(client, key: harness.adminKey)
            callback = try await self.approve(client, path)
            let noCode = callback.replacingOccurrences(of: "code=", with: "nocode=")
            #expect(try await client.call(.get, noCode, key: nil).status == 400)
            // A code the provider rejects at the exchange (already used).
            path = try await self.session(client, key: harness.adminKey)
            let first = try await self.approve(client, path)
            let code = try #require(URLComponents(string: first)?.queryItems?.first { $0.name == "code" }?.value)
            path = try await self.session(client, key: harness.adminKey)
            let second = try await self.approve(client, path)
            let secondState = try #require(
                URLComponents(string: second)?.queryItems?.first { $0.name == "state" }?.value)
            _ = try await client.call(.get, first, key: nil)  // spends the first code
            let rejected = try await client.call(.get, "/oauth/callback?code=\(code)&state=\(secondState)", key: nil)
            #expect(rejected.status == 502, "\(rejected.body)")
            #expect(rejected.body.contains("invalid_grant"))
            // A state older than ten minutes (the user dawdled at the provider).
            path = try await self.session(client, key: harness.adminKey)
            let slow = try await self.approve(client, path)
            harness.clock.advance(by: 601)
            let late = try await client.call(.get, slow, key: nil)
            #expect(late.status == 410, "\(late.body)")
            #expect(late.body.contains("expired"))
            // Unknown and expired links.
            #expect(
                try await client.call(.get, "/connect/" + String(repeating: "x", count: 43), key: nil).status == 404)
            path = try await self.session(client, key: harness.adminKey)
            harness.clock.advance(by: 1801)
            #expect(try await client.call(.get, path, key: nil).status == 410)
            // Only the one successful callback stored anything.
            let listed = try await client.call(.get, "\(Self.base)?type=oauth", key: harness.adminKey)
            guard case .array(let items) = listed.json["items"] else {
                Issue.record("no items: \(listed.body)")
                return
            }
            #expect(items.count == 1)
            _ = simulator
        }
    }

    @Test func sessionsAreForAdminAndConnectKeysAndReturnOnlyToAllowedURLs() async throws {
        try await self.withConnect { harness, client, _ in
            let connectKey = try await mintKey(
                client, with: harness.adminKey, ["name": "c", "role": "connect", "vaults": ["default"]])
            let proxyKey = try await mintKey(
                client, with: harness.adminKey, ["name": "p", "role": "proxy", "vaults": ["default"]])
            _ = try await self.session(client, key: connectKey.key)
            let byProxy = try await client.call(
                .post, "/v1/vaults/default/connect-sessions", key: proxyKey.key,
                body: json(["client": "sim", "credential": "x"]))
            #expect(byProxy.status == 403)
            // return_url must be in the vault's allowlist: never an open redirect.
            let open = try await client.call(
                .post, "/v1/vaults/default/connect-sessions", key: connectKey.key,
                body: json(["client": "sim", "credential": "x", "return_url": "https://evil.example/steal"]))
            #expect(open.status == 422)
            #expect(open.json["error"]["field"] == .string("return_url"))
            let allowed = "https://app.example.com/connected"
            let set = try await client.call(
                .patch, "/v1/vaults/default", key: harness.adminKey, body: json(["connect_return_urls": [allowed]]))
            #expect(set.status == 200, "\(set.body)")
            let path = try await self.session(client, key: connectKey.key, ["return_url": allowed])
            let callback = try await self.approve(client, path)
            let done = try await client.call(.get, callback, key: nil)
            #expect(done.status == 303)
            #expect(done.headers[.location] == allowed)
            // Bad input.
            for (body, field) in [
                (["client": "nope", "credential": "x"], "client"),
                (["client": "sim", "credential": "1bad"], "credential"),
                (["client": "sim"], "credential"),
            ] as [([String: Any], String)] {
                let response = try await client.call(
                    .post, "/v1/vaults/default/connect-sessions", key: harness.adminKey, body: json(body))
                #expect(response.status == 422, "\(body)")
                #expect(response.json["error"]["field"] == .string(field), "\(response.body)")
            }
        }
    }
}

@Suite("Connect with provider in a real browser")
struct ConnectBrowserTests {
    /// Headless Chromium opens `connect_url?auto=1` served by a real
    /// `latchkey serve` process (whose public URL must be known before it
    /// starts, so it listens on a chosen free port), follows the redirects
    /// through the simulator's auto-approving authorization endpoint to the
    /// callback, and prints the page it ends on.
    @Test(.timeLimit(.minutes(5))) func headlessChromiumConnectsAnAccount() async throws {
        let port = try ExternalProcess.freePort()
        let base = "http://127.0.0.1:\(port)"
        try await ProviderSimulator.withRunning { simulator in
            simulator.register(clientID: "app", secret: "app-secret")
            try await TestDatabase.withFresh { database in
                let harness = try await Harness.make(database: database)
                let server = try LatchkeyProcess.Running(
                    ["serve", "--listen", "127.0.0.1:\(port)"],
                    environment: [
                        "LATCHKEY_DATABASE_URL": database.url, "LATCHKEY_MASTER_KEY": harness.masterKey.hex,
                        "LATCHKEY_PUBLIC_URL": base, "LATCHKEY_LOG_LEVEL": "error",
                    ])
                do {
                    try await Self.flow(base: base, harness: harness, simulator: simulator)
                } catch {
                    _ = try? await server.terminate()
                    throw error
                }
                let stopped = try await server.terminate()
                #expect(stopped.status == 0, "\(stopped.output)")
            }
        }
    }

    static func flow(base: String, harness: Harness, simulator: ProviderSimulator) async throws {
        // Another process is starting: watch for it to answer.
        let up = try await Eventually.check(within: .seconds(20)) {
            (try? await LatchkeyProcess.call(.GET, base + "/healthz", key: nil).status) == 200
        }
        try #require(up)
        let created = try await LatchkeyProcess.call(
            .POST, base + ConnectTests.base, key: harness.adminKey,
            body: json([
                "name": "sim", "type": "oauth_client",
                "value": [
                    "client_id": "app", "client_secret": "app-secret", "token_url": simulator.tokenURL,
                    "authorization_url": simulator.authorizationURL, "scopes": ["repo"],
                ],
            ]))
        #expect(created.status == 201, "\(created.body)")
        let session = try await LatchkeyProcess.call(
            .POST, base + "/v1/vaults/default/connect-sessions", key: harness.adminKey,
            body: json(["client": "sim", "credential": "browser_alice"]))
        let connectURL = try #require(session.json["connect_url"].stringValue)
        let (status, dom, errors) = try await ExternalProcess.run(
            "/usr/bin/chromium",
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--user-data-dir="
                    + FileManager.default.temporaryDirectory.appendingPathComponent("chromium-\(UUID().uuidString)")
                    .path, "--dump-dom", connectURL + "?auto=1",
            ])
        #expect(status == 0, "\(errors.suffix(2000))")
        #expect(dom.contains("browser_alice"), "\(dom) \(errors.suffix(1000))")
        #expect(dom.contains("Connected"), "\(dom)")
        #expect(simulator.grants(clientID: "app", type: "authorization_code") == 1)
        // The credential exists, injects, and refreshes.
        let minted = try await LatchkeyProcess.call(
            .POST, base + "/v1/keys", key: harness.adminKey,
            body: json(["name": "p", "role": "proxy", "vaults": ["default"]]))
        let proxy = try #require(minted.json["key"].stringValue)
        let injected = try await LatchkeyProcess.call(.GET, base + "/v1/inject/default/browser_alice", key: proxy)
        #expect(injected.json["headers"]["Authorization"].stringValue?.hasPrefix("Bearer at_app_") == true)
        let refreshed = try await LatchkeyProcess.call(
            .POST, base + ConnectTests.base + "/browser_alice/refresh", key: harness.adminKey)
        #expect(refreshed.status == 200, "\(refreshed.body)")
        #expect(simulator.grants(clientID: "app", type: "refresh_token") == 1)
    }
}

extension HTTPClientForTests {
    /// For stepping through redirects one at a time.
    static let noRedirects = HTTPClient(
        eventLoopGroup: HTTPClient.defaultEventLoopGroup,
        configuration: .init(redirectConfiguration: .disallow))
}
