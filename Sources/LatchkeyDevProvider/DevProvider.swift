import ArgumentParser
import Foundation
import LatchkeyTesting
import UnixSignals

/// `latchkey-dev-provider`: the OAuth provider simulator the tests use, on a
/// fixed loopback port, so a newcomer can try Latchkey's OAuth flows by hand
/// (README, "Try the OAuth flows without a real provider"). Never for
/// production: it approves every authorisation request.
@main
struct DevProvider: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latchkey-dev-provider",
        abstract: "Run a local OAuth 2.0 provider (auto-approving) for trying Latchkey by hand.",
        discussion: """
            Serves /authorize (approves at once, with PKCE) and /token (authorization_code, refresh_token and \
            client_credentials grants) on 127.0.0.1. Prints the URLs, the client and a refresh token you can \
            paste; stops on Ctrl-C.
            """)

    @Option(help: "Port to listen on.")
    var port = 9999

    @Option(name: .customLong("client-id"), help: "The client to register.")
    var clientID = "demo"

    @Option(name: .customLong("client-secret"), help: "Its secret.")
    var clientSecret = "demo-secret"

    @Option(name: .customLong("expires-in"), help: "Lifetime of issued access tokens, in seconds.")
    var expiresIn = 3600

    @Flag(help: "Reply form-encoded instead of JSON (as GitHub does without Accept).")
    var form = false

    @Flag(name: .customLong("no-rotate"), help: "Keep refresh tokens across refreshes instead of rotating them.")
    var noRotate = false

    @Option(name: .customLong("seed-tokens"), help: "How many refresh tokens to print for pasting.")
    var seedTokens = 1

    func run() async throws {
        var behaviour = ProviderSimulator.Behaviour()
        behaviour.expiresIn = .number(self.expiresIn)
        behaviour.format = self.form ? .form : .json
        behaviour.rotateRefreshTokens = !self.noRotate
        let (clientID, clientSecret, seedTokens) = (self.clientID, self.clientSecret, self.seedTokens)
        let configured = behaviour
        try await ProviderSimulator.withRunning(port: self.port) { simulator in
            simulator.register(clientID: clientID, secret: clientSecret, behaviour: configured)
            var banner = """
                latchkey-dev-provider on \(simulator.baseURL)
                  authorization_url  \(simulator.authorizationURL)
                  token_url          \(simulator.tokenURL)
                  client_id          \(clientID)
                  client_secret      \(clientSecret)

                """
            for _ in 0..<max(0, seedTokens) {
                banner += "  refresh_token      \(simulator.seedRefreshToken(clientID: clientID))\n"
            }
            banner += "Ctrl-C to stop.\n"
            // Unbuffered, so it shows at once even when standard output is a file or a pipe.
            FileHandle.standardOutput.write(Data(banner.utf8))
            for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) { break }
        }
    }
}
