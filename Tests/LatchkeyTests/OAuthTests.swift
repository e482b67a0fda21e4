import AsyncHTTPClient
import Foundation
import LatchkeyCore
import LatchkeyOAuth
import LatchkeyTesting
import Testing

@Suite("Token responses as providers send them")
struct TokenResponseParserTests {
    func parse(
        _ body: String, status: Int = 200, type: String? = "application/json", retryAfter: String? = nil
    )
        -> Result<TokenSet, TokenFailure>
    {
        TokenResponseParser.parse(status: status, contentType: type, retryAfter: retryAfter, body: Array(body.utf8))
    }

    @Test func jsonWithEveryField() throws {
        let tokens = try parse(
            #"{"access_token":"at","refresh_token":"rt","expires_in":3599,"token_type":"Bearer","scope":"read write","instance_url":"https://x.example","id_token":"jwt"}"#
        ).get()
        #expect(tokens.accessToken == "at")
        #expect(tokens.refreshToken == "rt")
        #expect(tokens.expiresIn == 3599)
        #expect(tokens.scopes == ["read", "write"])
        #expect(tokens.extra == ["instance_url": .string("https://x.example"), "id_token": .string("jwt")])
    }

    @Test func formEncodedAsGitHubSendsWithoutAccept() throws {
        let tokens = try parse(
            "access_token=gho_abc&scope=repo%2Cgist&token_type=bearer", type: "application/x-www-form-urlencoded"
        ).get()
        #expect(tokens.accessToken == "gho_abc")
        #expect(tokens.scopes == ["repo", "gist"])
        #expect(tokens.expiresIn == nil)
        #expect(tokens.refreshToken == nil)
    }

    @Test func expiresInAsNumberStringOrAbsent() throws {
        #expect(try parse(#"{"access_token":"a","expires_in":"3600"}"#).get().expiresIn == 3600)
        #expect(try parse(#"{"access_token":"a","expires_in":3600.0}"#).get().expiresIn == 3600)
        #expect(try parse(#"{"access_token":"a"}"#).get().expiresIn == nil)
        #expect(try parse(#"{"access_token":"a","expires_in":null}"#).get().expiresIn == nil)
        guard case .failure(.malformed) = parse(#"{"access_token":"a","expires_in":"soon"}"#) else {
            Issue.record("a non-numeric expires_in must be refused")
            return
        }
    }

    @Test func errorsWhateverTheStatus() {
        #expect(
            parse(#"{"error":"invalid_grant","error_description":"Token has been revoked"}"#, status: 400)
                == .failure(.rejected(code: "invalid_grant")))
        // Slack and GitHub answer 200 with an error body.
        #expect(
            parse(#"{"ok":false,"error":"invalid_refresh_token"}"#)
                == .failure(.rejected(code: "invalid_refresh_token")))
        #expect(
            parse("error=bad_verification_code&error_description=x", type: "application/x-www-form-urlencoded")
                == .failure(.rejected(code: "bad_verification_code")))
        #expect(
            parse("", status: 503, type: nil, retryAfter: "7")
                == .failure(.unavailable(reason: "HTTP 503", retryAfter: 7)))
        #expect(
            parse("slow down", status: 429, type: "text/plain", retryAfter: "30")
                == .failure(.unavailable(reason: "HTTP 429", retryAfter: 30)))
        #expect(parse("<html>nope</html>", status: 401, type: "text/html") == .failure(.rejected(code: "http_401")))
        #expect(TokenFailure.rejected(code: "invalid_grant").needsReauthorization)
        #expect(!TokenFailure.unavailable(reason: "x", retryAfter: nil).needsReauthorization)
    }

    @Test func neverEchoesAnythingButAPlainErrorCode() {
        let sneaky = parse(#"{"error":"<script>alert(1)</script> secret=abc"}"#, status: 400)
        #expect(sneaky == .failure(.rejected(code: "unrecognised_error")))
        guard case .failure(.malformed) = parse("<html>", status: 200, type: "text/html") else {
            Issue.record("HTML is not a token response")
            return
        }
        guard case .failure(.malformed) = parse(#"{"token":"x"}"#) else {
            Issue.record("no access_token is malformed")
            return
        }
        // An access token becomes a header: a provider cannot split one.
        for hostile in [#"{"access_token":"a\r\nX-Evil: 1"}"#, "access_token=a%0Ab&token_type=bearer"] {
            guard
                case .failure(.malformed) = parse(
                    hostile, type: hostile.hasPrefix("{") ? "application/json" : "application/x-www-form-urlencoded")
            else {
                Issue.record("an access_token with a line break is malformed: \(hostile)")
                return
            }
        }
    }

    @Test func formEncodingIsStrict() {
        #expect(FormEncoding.encode("a+b&c=d e/é") == "a%2Bb%26c%3Dd%20e%2F%C3%A9")
        #expect(FormEncoding.encode(["b": "2", "a": "1"]) == "a=1&b=2")
    }
}

@Suite("Provider presets")
struct ProviderPresetTests {
    @Test func theTenRequiredProvidersArePresentAndWellFormed() {
        let names = Set(ProviderPresets.all.map(\.name))
        for required in [
            "github", "google", "microsoft", "slack", "salesforce", "atlassian", "hubspot", "notion", "linear", "zoom",
        ] {
            #expect(names.contains(required), "\(required)")
        }
        #expect(names.count == ProviderPresets.all.count, "names are unique")
        for preset in ProviderPresets.all {
            #expect(preset.tokenURL.hasPrefix("https://"), "\(preset.name)")
            #expect(preset.authorizationURL.hasPrefix("https://"), "\(preset.name)")
            #expect(["client_secret_basic", "client_secret_post", "none"].contains(preset.tokenAuthMethod))
            #expect([" ", ","].contains(preset.scopeSeparator))
        }
        #expect(ProviderPresets.named("google")?.authorizeParams["access_type"] == "offline")
    }
}

@Suite("Token endpoint client against the provider simulator")
struct TokenEndpointClientTests {
    static let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)

    func configuration(
        _ simulator: ProviderSimulator, method: String = "client_secret_basic", secret: String = "s3cr3t+/&="
    )
        -> OAuthClientConfiguration
    {
        OAuthClientConfiguration(
            clientID: "app", clientSecret: secret, tokenURL: simulator.tokenURL, authMethod: method)
    }

    @Test(arguments: ["client_secret_basic", "client_secret_post"])
    func refreshWithEachAuthMethodRotatesTheToken(method: String) async throws {
        try await ProviderSimulator.withRunning { simulator in
            simulator.register(clientID: "app", secret: "s3cr3t+/&=")
            let client = TokenEndpointClient(http: Self.http)
            let seeded = simulator.seedRefreshToken(clientID: "app")
            let first = try await client.refresh(self.configuration(simulator, method: method), refreshToken: seeded)
                .get()
            #expect(first.refreshToken != nil && first.refreshToken != seeded)
            #expect(first.expiresIn == 3600)
            #expect(!simulator.isLive(refreshToken: seeded))
            // Reusing the rotated token is refused and revokes the family.
            let reuse = await client.refresh(self.configuration(simulator, method: method), refreshToken: seeded)
            #expect(reuse == .failure(.rejected(code: "invalid_grant")))
            #expect(!simulator.isLive(refreshToken: first.refreshToken!))
            #expect(simulator.grants(clientID: "app", type: "refresh_token") == 2)
        }
    }

    @Test func publicClientsAndClientCredentials() async throws {
        try await ProviderSimulator.withRunning { simulator in
            simulator.register(clientID: "app", secret: "")
            let client = TokenEndpointClient(http: Self.http)
            let tokens = try await client.clientCredentials(
                self.configuration(simulator, method: "none", secret: ""), scopes: ["read", "write"]
            ).get()
            #expect(tokens.refreshToken == nil)
            #expect(simulator.grants(clientID: "app", type: "client_credentials") == 1)
        }
    }

    @Test func wrongSecretIsInvalidClient() async throws {
        try await ProviderSimulator.withRunning { simulator in
            simulator.register(clientID: "app", secret: "right")
            let result = await TokenEndpointClient(http: Self.http).refresh(
                self.configuration(simulator, secret: "wrong"),
                refreshToken: simulator.seedRefreshToken(clientID: "app"))
            #expect(result == .failure(.rejected(code: "invalid_client")))
            #expect(result.failureNeedsReauth)
        }
    }

    @Test func behavioursProvidersReallyShow() async throws {
        try await ProviderSimulator.withRunning { simulator in
            var behaviour = ProviderSimulator.Behaviour()
            behaviour.format = .form
            behaviour.expiresIn = .string(120)
            behaviour.rotateRefreshTokens = false
            behaviour.extraFields = ["instance_url": "https://na1.example"]
            simulator.register(clientID: "app", secret: "s3cr3t+/&=", behaviour: behaviour)
            let client = TokenEndpointClient(http: Self.http)
            let seeded = simulator.seedRefreshToken(clientID: "app")
            let tokens = try await client.refresh(self.configuration(simulator), refreshToken: seeded).get()
            #expect(tokens.expiresIn == 120)
            #expect(tokens.refreshToken == nil)  // non-rotating: keep the old one
            #expect(tokens.extra["instance_url"] == .string("https://na1.example"))
            #expect(simulator.isLive(refreshToken: seeded))

            simulator.update(clientID: "app") { $0.failNext = 1 }
            #expect(
                await client.refresh(self.configuration(simulator), refreshToken: seeded)
                    == .failure(.unavailable(reason: "HTTP 503", retryAfter: nil)))
            simulator.update(clientID: "app") {
                $0.rateLimitNext = 1
                $0.retryAfterSeconds = 9
            }
            #expect(
                await client.refresh(self.configuration(simulator), refreshToken: seeded)
                    == .failure(.unavailable(reason: "HTTP 429", retryAfter: 9)))
            simulator.update(clientID: "app") { $0.errorIn200 = "invalid_refresh_token" }
            #expect(
                await client.refresh(self.configuration(simulator), refreshToken: seeded)
                    == .failure(.rejected(code: "invalid_refresh_token")))
            simulator.update(clientID: "app") {
                $0.errorIn200 = nil
                $0.rejectRefresh = true
            }
            #expect(
                await client.refresh(self.configuration(simulator), refreshToken: seeded)
                    == .failure(.rejected(code: "invalid_grant")))
        }
    }

    @Test func timeoutsAndUnreachableProvidersAreTransient() async throws {
        try await ProviderSimulator.withRunning { simulator in
            var slow = ProviderSimulator.Behaviour()
            slow.latency = .seconds(2)
            simulator.register(clientID: "app", secret: "s3cr3t+/&=", behaviour: slow)
            let impatient = TokenEndpointClient(http: Self.http, timeout: .milliseconds(200))
            let timedOut = await impatient.refresh(self.configuration(simulator), refreshToken: "rt")
            guard case .failure(.unavailable) = timedOut else {
                Issue.record("a timeout must be transient, got \(timedOut)")
                return
            }
        }
        // AsyncHTTPClient retries refused connections until the deadline: keep it short.
        let unreachable = await TokenEndpointClient(http: Self.http, timeout: .seconds(1)).refresh(
            OAuthClientConfiguration(clientID: "a", clientSecret: "b", tokenURL: "http://127.0.0.1:1/token"),
            refreshToken: "rt")
        guard case .failure(.unavailable) = unreachable else {
            Issue.record("a refused connection must be transient, got \(unreachable)")
            return
        }
    }
}

extension Result where Failure == TokenFailure {
    var failureNeedsReauth: Bool {
        if case .failure(let failure) = self { return failure.needsReauthorization }
        return false
    }
}
