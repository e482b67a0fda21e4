import Foundation
package import LatchkeyCore

/// Everything `latchkey serve` needs, as plain values. Only the executable
/// reads the environment and flags (`fromEnvironment`); tests build this
/// directly.
package struct LatchkeyConfiguration: Sendable {
    /// `LATCHKEY_DATABASE_URL`: postgres://user:password@host:port/database
    package var databaseURL: String
    /// `LATCHKEY_MASTER_KEY`: 64 hex characters.
    package var masterKey: String?
    /// `LATCHKEY_MASTER_KEY_PREVIOUS`: comma-separated older master keys, needed until `rekey` finishes.
    package var previousMasterKeys: String?
    /// `LATCHKEY_ADMIN_SECRET`: the bootstrap admin credential.
    package var adminSecret: String?
    /// `LATCHKEY_LISTEN`: host:port, default 127.0.0.1:8080.
    package var listenHost: String = "127.0.0.1"
    package var listenPort: Int = 8080
    /// `LATCHKEY_PUBLIC_URL`: the base URL browsers reach.
    package var publicURL: String?
    /// `LATCHKEY_REFRESH_WINDOW`: seconds before expiry that OAuth tokens are renewed.
    package var refreshWindow: Duration = .seconds(300)
    /// Apply pending migrations at start-up (`serve --no-migrate` turns it off).
    package var migrateOnStart: Bool = true
    /// `LATCHKEY_TRUSTED_PROXIES`: CIDR blocks whose `X-Forwarded-For` is believed.
    package var trustedProxies: [CIDR] = []
    /// `LATCHKEY_RATE_LIMIT`: requests per second per API key, per replica.
    package var rateLimit: Double = 1_000
    /// `LATCHKEY_RATE_LIMIT_BURST`: bucket size; default twice the rate.
    package var rateLimitBurst: Double?
    /// `LATCHKEY_EPHEMERAL_MAX_TTL`: the longest `ttl_seconds` an ephemeral key may ask for.
    package var maxEphemeralTTL: Duration = .seconds(86_400)
    /// `LATCHKEY_USAGE_FLUSH_INTERVAL`: how often aggregated usage is written.
    package var usageFlushInterval: Duration = .seconds(5)
    /// `LATCHKEY_PROVIDER_TIMEOUT`: the longest a call to a provider's token endpoint may take.
    package var providerTimeout: Duration = .seconds(15)
    /// How often the refresher looks for due credentials.
    package var refreshScanInterval: Duration = .seconds(5)
    /// `LATCHKEY_REFRESH_CONCURRENCY`: provider calls the refresher makes at once, per replica.
    package var refreshConcurrency: Int = 16
    /// `LATCHKEY_REFRESH_HOST_CONCURRENCY`: of those, at most this many to one token endpoint host.
    package var refreshHostConcurrency: Int = 8
    /// `LATCHKEY_WEBHOOK_URL`: where signed events about credentials are posted (optional).
    package var webhookURL: String?
    /// `LATCHKEY_WEBHOOK_SECRET`: the HMAC-SHA256 key for `Latchkey-Signature`; required with a URL.
    package var webhookSecret: String?
    /// How often pending webhook events are sent, and metrics gauges sampled.
    package var webhookInterval: Duration = .seconds(2)
    package var metricsSampleInterval: Duration = .seconds(15)

    package init(databaseURL: String) {
        self.databaseURL = databaseURL
    }

    /// Minimum length of `LATCHKEY_ADMIN_SECRET`: it guards every admin call
    /// until API keys exist, so a guessable one is refused at start-up.
    package static let minimumAdminSecretLength = 24
    /// Minimum length of `LATCHKEY_WEBHOOK_SECRET`, which receivers verify events with.
    package static let minimumWebhookSecretLength = 16

    /// Reads and validates `LATCHKEY_*` variables. Each problem is one line
    /// naming the variable.
    package static func fromEnvironment(_ environment: [String: String]) throws(ConfigurationError) -> Self {
        func value(_ name: String) -> String? {
            guard let value = environment[name]?.trimmingCharacters(in: .whitespaces), !value.isEmpty else {
                return nil
            }
            return value
        }
        guard let databaseURL = value("LATCHKEY_DATABASE_URL") else {
            throw ConfigurationError("LATCHKEY_DATABASE_URL is not set: it must be a postgres:// URL")
        }
        var configuration = Self(databaseURL: databaseURL)
        configuration.masterKey = value("LATCHKEY_MASTER_KEY")
        configuration.previousMasterKeys = value("LATCHKEY_MASTER_KEY_PREVIOUS")
        configuration.adminSecret = value("LATCHKEY_ADMIN_SECRET")
        if let listen = value("LATCHKEY_LISTEN") {
            try configuration.setListen(listen)
        }
        if let publicURL = value("LATCHKEY_PUBLIC_URL") {
            guard let url = URL(string: publicURL), let scheme = url.scheme, ["http", "https"].contains(scheme),
                url.host != nil
            else {
                throw ConfigurationError(
                    "LATCHKEY_PUBLIC_URL must be an absolute http(s) URL, e.g. https://latchkey.example.com")
            }
            configuration.publicURL = publicURL
        }
        if let window = value("LATCHKEY_REFRESH_WINDOW") {
            guard let seconds = Int(window), (30...86_400).contains(seconds) else {
                throw ConfigurationError("LATCHKEY_REFRESH_WINDOW must be a whole number of seconds from 30 to 86400")
            }
            configuration.refreshWindow = .seconds(seconds)
        }
        if let proxies = value("LATCHKEY_TRUSTED_PROXIES") {
            configuration.trustedProxies = try proxies.split(separator: ",").map { entry throws(ConfigurationError) in
                guard let block = CIDR(entry.trimmingCharacters(in: .whitespaces)) else {
                    throw ConfigurationError(
                        "LATCHKEY_TRUSTED_PROXIES must be comma-separated CIDR blocks, e.g. 10.0.0.0/8,fd00::/8")
                }
                return block
            }
        }
        configuration.rateLimit = try Self.number(
            value("LATCHKEY_RATE_LIMIT"), "LATCHKEY_RATE_LIMIT", in: 1...1_000_000, default: configuration.rateLimit)
        if let burst = value("LATCHKEY_RATE_LIMIT_BURST") {
            configuration.rateLimitBurst = try Self.number(
                burst, "LATCHKEY_RATE_LIMIT_BURST", in: 1...10_000_000, default: 0)
        }
        if let ttl = value("LATCHKEY_EPHEMERAL_MAX_TTL") {
            configuration.maxEphemeralTTL = .seconds(
                Int(try Self.number(ttl, "LATCHKEY_EPHEMERAL_MAX_TTL", in: 60...31_536_000, default: 0)))
        }
        if let interval = value("LATCHKEY_USAGE_FLUSH_INTERVAL") {
            configuration.usageFlushInterval = .seconds(
                Int(try Self.number(interval, "LATCHKEY_USAGE_FLUSH_INTERVAL", in: 1...300, default: 0)))
        }
        if let timeout = value("LATCHKEY_PROVIDER_TIMEOUT") {
            configuration.providerTimeout = .seconds(
                Int(try Self.number(timeout, "LATCHKEY_PROVIDER_TIMEOUT", in: 1...120, default: 0)))
        }
        if let concurrency = value("LATCHKEY_REFRESH_CONCURRENCY") {
            configuration.refreshConcurrency = Int(
                try Self.number(concurrency, "LATCHKEY_REFRESH_CONCURRENCY", in: 1...1024, default: 0))
        }
        if let concurrency = value("LATCHKEY_REFRESH_HOST_CONCURRENCY") {
            configuration.refreshHostConcurrency = Int(
                try Self.number(concurrency, "LATCHKEY_REFRESH_HOST_CONCURRENCY", in: 1...1024, default: 0))
        }
        if let url = value("LATCHKEY_WEBHOOK_URL") {
            guard let parsed = URL(string: url), let scheme = parsed.scheme, ["http", "https"].contains(scheme),
                parsed.host?.isEmpty == false
            else {
                throw ConfigurationError(
                    "LATCHKEY_WEBHOOK_URL must be an absolute http(s) URL, e.g. https://hooks.example.com/latchkey")
            }
            configuration.webhookURL = url
        }
        configuration.webhookSecret = value("LATCHKEY_WEBHOOK_SECRET")
        try configuration.validate()
        return configuration
    }

    private static func number(
        _ text: String?, _ variable: String, in range: ClosedRange<Double>, default fallback: Double
    ) throws(ConfigurationError) -> Double {
        guard let text else { return fallback }
        guard let number = Double(text), number.isFinite, range.contains(number), number == number.rounded() else {
            throw ConfigurationError(
                "\(variable) must be a whole number from \(Int(range.lowerBound)) to \(Int(range.upperBound))")
        }
        return number
    }

    /// Parses `host:port` (`[::1]:8080` for IPv6).
    package mutating func setListen(_ listen: String) throws(ConfigurationError) {
        let error = ConfigurationError("LATCHKEY_LISTEN must be host:port, e.g. 127.0.0.1:8080 or [::]:8080")
        guard let colon = listen.lastIndex(of: ":") else { throw error }
        var host = String(listen[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, let port = Int(listen[listen.index(after: colon)...]), (0...65_535).contains(port) else {
            throw error
        }
        self.listenHost = host
        self.listenPort = port
    }

    /// Checks what can be checked without the database.
    package func validate() throws(ConfigurationError) {
        if self.webhookURL != nil {
            guard let secret = self.webhookSecret, secret.utf8.count >= Self.minimumWebhookSecretLength else {
                throw ConfigurationError(
                    "LATCHKEY_WEBHOOK_SECRET must be set, at least \(Self.minimumWebhookSecretLength) characters, when LATCHKEY_WEBHOOK_URL is (e.g. `openssl rand -hex 32`)"
                )
            }
        }
        if let adminSecret, adminSecret.count < Self.minimumAdminSecretLength {
            throw ConfigurationError(
                "LATCHKEY_ADMIN_SECRET must be at least \(Self.minimumAdminSecretLength) characters (e.g. `openssl rand -hex 32`)"
            )
        }
    }
}

package struct ConfigurationError: Error, Sendable, CustomStringConvertible, Equatable {
    package let description: String
    package init(_ description: String) { self.description = description }
}
