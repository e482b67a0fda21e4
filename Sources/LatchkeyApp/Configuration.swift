import Foundation
package import LatchkeyCore
import LatchkeyStore

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
    /// `LATCHKEY_REFRESH_SCAN_INTERVAL`: how often the refresher looks for due credentials.
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
    /// `LATCHKEY_DATABASE_TIMEOUT`: how long a request waits for the database before a 503.
    package var databaseTimeout: Duration = .seconds(5)
    /// `LATCHKEY_SHUTDOWN_GRACE`: how long in-flight work may take after SIGTERM.
    package var shutdownGrace: Duration = .seconds(30)
    /// `LATCHKEY_LOG_LEVEL` and `LATCHKEY_LOG_FORMAT`.
    package var logLevel: LogLevel = .info
    package var logFormat: LogFormat = .logfmt

    package init(databaseURL: String) {
        self.databaseURL = databaseURL
    }

    /// Minimum length of `LATCHKEY_ADMIN_SECRET`: it guards every admin call
    /// until API keys exist, so a guessable one is refused at start-up.
    package static let minimumAdminSecretLength = 24
    /// Minimum length of `LATCHKEY_WEBHOOK_SECRET`, which receivers verify events with.
    package static let minimumWebhookSecretLength = 16

    /// Every setting: its variable, its flag, its default and what it means.
    /// The CLI declares one option per entry, the README's table lists them,
    /// and a test holds the three together.
    package static let settings: [Setting] = [
        .init(
            "LATCHKEY_DATABASE_URL", "required",
            "PostgreSQL URL: `postgres://user:password@host:5432/db`; `?sslmode=disable|prefer|require`, `?pool_size=N` (default 20), `?host=/socket/dir`."
        ),
        .init(
            "LATCHKEY_DATABASE_TIMEOUT", "5s",
            "How long a request waits for the database before it is answered 503 `DATABASE_UNAVAILABLE`; also bounds `migrate`'s wait for a connection."
        ),
        .init(
            "LATCHKEY_MASTER_KEY", "required to serve",
            "64 hex characters (`openssl rand -hex 32`): the AES-256-GCM key that seals every credential. Keep a copy apart from database backups.",
            secret: true),
        .init(
            "LATCHKEY_MASTER_KEY_PREVIOUS", "none",
            "Comma-separated older master keys, needed until `latchkey rekey` reports zero rows left.", secret: true),
        .init(
            "LATCHKEY_ADMIN_SECRET", "none",
            "A bootstrap admin credential (at least 24 characters) accepted as a bearer token before any key exists.",
            secret: true),
        .init(
            "LATCHKEY_LISTEN", "127.0.0.1:8080", "host:port to listen on (`[::]:8080` for all IPv6 and IPv4 addresses)."
        ),
        .init(
            "LATCHKEY_PUBLIC_URL", "none",
            "The base URL browsers reach; connect links and `<public>/oauth/callback` are built from it."),
        .init(
            "LATCHKEY_REFRESH_WINDOW", "300",
            "How long before expiry OAuth tokens are renewed (seconds, or a duration: `5m`)."),
        .init("LATCHKEY_REFRESH_SCAN_INTERVAL", "5s", "How often the refresher looks for due tokens."),
        .init("LATCHKEY_REFRESH_CONCURRENCY", "16", "Provider calls the refresher makes at once, per replica."),
        .init("LATCHKEY_REFRESH_HOST_CONCURRENCY", "8", "Of those, at most this many to one token endpoint host."),
        .init("LATCHKEY_PROVIDER_TIMEOUT", "15s", "The longest a call to a provider's token endpoint may take."),
        .init(
            "LATCHKEY_TRUSTED_PROXIES", "none",
            "Comma-separated CIDR blocks whose `X-Forwarded-For` is believed (for IP allowlists)."),
        .init("LATCHKEY_RATE_LIMIT", "1000", "Requests per second per API key, per replica."),
        .init("LATCHKEY_RATE_LIMIT_BURST", "2 × rate", "Token-bucket size of the rate limit."),
        .init("LATCHKEY_EPHEMERAL_MAX_TTL", "24h", "The longest `ttl_seconds` an ephemeral key may ask for."),
        .init("LATCHKEY_USAGE_FLUSH_INTERVAL", "5s", "How often usage counted in memory is written to the database."),
        .init(
            "LATCHKEY_WEBHOOK_URL", "none",
            "Where signed events about credentials are posted (`needs_reauth`, refresh failures)."),
        .init(
            "LATCHKEY_WEBHOOK_SECRET", "none",
            "HMAC-SHA256 key for `Latchkey-Signature` (at least 16 characters); required with a webhook URL.",
            secret: true),
        .init(
            "LATCHKEY_SHUTDOWN_GRACE", "30s",
            "On SIGTERM, how long in-flight requests and refreshes may take to finish before they are cancelled."),
        .init("LATCHKEY_LOG_LEVEL", "info", "trace, debug, info, notice, warning or error."),
        .init("LATCHKEY_LOG_FORMAT", "logfmt", "`logfmt` or `json`: one line per event on standard error."),
    ]

    /// Reads and validates `LATCHKEY_*` variables. Each problem is one line
    /// naming the variable.
    package static func fromEnvironment(_ environment: [String: String]) throws(ConfigurationError) -> Self {
        func value(_ name: String) -> String? {
            guard let value = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty
            else {
                return nil
            }
            return value
        }
        guard let databaseURL = value("LATCHKEY_DATABASE_URL") else {
            throw ConfigurationError("LATCHKEY_DATABASE_URL is not set: it must be a postgres:// URL")
        }
        do {
            _ = try DatabaseURL.configuration(databaseURL)
        } catch {
            throw ConfigurationError(error.description)
        }
        var configuration = Self(databaseURL: databaseURL)
        func duration(_ variable: String, _ range: ClosedRange<Duration>) throws(ConfigurationError) -> Duration? {
            guard let text = value(variable) else { return nil }
            guard let parsed = Self.parseDuration(text), range.contains(parsed) else {
                throw ConfigurationError(
                    "\(variable) must be a duration from \(Self.format(range.lowerBound)) to \(Self.format(range.upperBound)) (e.g. 30s, 5m, 1h; a bare number is seconds), not '\(text.prefix(40))'"
                )
            }
            return parsed
        }
        if let timeout = try duration("LATCHKEY_DATABASE_TIMEOUT", .milliseconds(100) ... .seconds(120)) {
            configuration.databaseTimeout = timeout
        }
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
        if let window = try duration("LATCHKEY_REFRESH_WINDOW", .seconds(30) ... .seconds(86_400)) {
            configuration.refreshWindow = window
        }
        if let interval = try duration("LATCHKEY_REFRESH_SCAN_INTERVAL", .milliseconds(100) ... .seconds(3_600)) {
            configuration.refreshScanInterval = interval
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
        if let ttl = try duration("LATCHKEY_EPHEMERAL_MAX_TTL", .seconds(60) ... .seconds(31_536_000)) {
            configuration.maxEphemeralTTL = ttl
        }
        if let interval = try duration("LATCHKEY_USAGE_FLUSH_INTERVAL", .seconds(1) ... .seconds(300)) {
            configuration.usageFlushInterval = interval
        }
        if let timeout = try duration("LATCHKEY_PROVIDER_TIMEOUT", .seconds(1) ... .seconds(120)) {
            configuration.providerTimeout = timeout
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
        if let grace = try duration("LATCHKEY_SHUTDOWN_GRACE", .seconds(0) ... .seconds(3_600)) {
            configuration.shutdownGrace = grace
        }
        if let level = value("LATCHKEY_LOG_LEVEL") {
            guard let parsed = LogLevel(rawValue: level.lowercased()) else {
                throw ConfigurationError(
                    "LATCHKEY_LOG_LEVEL must be one of trace, debug, info, notice, warning, error, not '\(level.prefix(20))'"
                )
            }
            configuration.logLevel = parsed
        }
        if let format = value("LATCHKEY_LOG_FORMAT") {
            guard let parsed = LogFormat(rawValue: format.lowercased()) else {
                throw ConfigurationError("LATCHKEY_LOG_FORMAT must be logfmt or json, not '\(format.prefix(20))'")
            }
            configuration.logFormat = parsed
        }
        try configuration.validate()
        return configuration
    }

    /// `30`, `30s`, `500ms`, `5m`, `1h`: a bare number is seconds.
    package static func parseDuration(_ text: String) -> Duration? {
        let units: [(suffix: String, scale: Int64)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)]
        var number = Substring(text)
        var scale: Int64 = 1_000
        for unit in units where text.hasSuffix(unit.suffix) {
            // "ms" before "s" and "m": the first suffix that fits wins.
            number = text.dropLast(unit.suffix.count)
            scale = unit.scale
            break
        }
        guard !number.isEmpty, number.allSatisfy(\.isASCII), number.allSatisfy(\.isNumber), number.count <= 9,
            let value = Int64(number)
        else {
            return nil
        }
        return .milliseconds(value * scale)
    }

    private static func format(_ duration: Duration) -> String {
        let milliseconds = duration.components.seconds * 1_000 + duration.components.attoseconds / 1_000_000_000_000_000
        if milliseconds % 3_600_000 == 0, milliseconds > 0 { return "\(milliseconds / 3_600_000)h" }
        if milliseconds % 60_000 == 0, milliseconds > 0 { return "\(milliseconds / 60_000)m" }
        if milliseconds % 1_000 == 0 { return "\(milliseconds / 1_000)s" }
        return "\(milliseconds)ms"
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

/// One `LATCHKEY_*` setting, as documented (`LatchkeyConfiguration.settings`).
package struct Setting: Sendable {
    package let variable: String
    package let defaultValue: String
    package let meaning: String
    /// Secrets' flags take a file to read the value from (a flag's value is
    /// visible to every user in the process list; a file's is not).
    package let secret: Bool

    init(_ variable: String, _ defaultValue: String, _ meaning: String, secret: Bool = false) {
        self.variable = variable
        self.defaultValue = defaultValue
        self.meaning = meaning
        self.secret = secret
    }

    /// `LATCHKEY_REFRESH_WINDOW` → `--refresh-window`; a secret's → `--admin-secret-file`.
    package var flag: String {
        "--" + self.variable.dropFirst("LATCHKEY_".count).lowercased().replacingOccurrences(of: "_", with: "-")
            + (self.secret ? "-file" : "")
    }
}

package enum LogLevel: String, Sendable, CaseIterable {
    case trace, debug, info, notice, warning, error
}

package enum LogFormat: String, Sendable, CaseIterable {
    case logfmt, json
}

package struct ConfigurationError: Error, Sendable, CustomStringConvertible, Equatable {
    package let description: String
    package init(_ description: String) { self.description = description }
}
