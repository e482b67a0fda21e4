package import AsyncHTTPClient
package import Crypto
package import Foundation
import LatchkeyCore
package import LatchkeyStore
package import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle

/// Delivers recorded webhook events to `LATCHKEY_WEBHOOK_URL`, signed with
/// `LATCHKEY_WEBHOOK_SECRET`.
///
/// Each request is a `POST` of the event's JSON with
/// `Latchkey-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
/// (the timestamp is signed so a receiver can refuse replays),
/// `Latchkey-Event-Id` and `Latchkey-Event-Type`. A 2xx answer delivers the
/// event; anything else is retried with exponential back-off and jitter
/// (honouring `Retry-After`) until `maxAttempts`, after which the event is
/// kept, marked failed, for the operator. Events never carry a token.
package struct WebhookDeliverer: Sendable {
    let store: VaultStore
    let http: HTTPClient
    let url: String
    let secret: SymmetricKey
    let timeout: Duration
    let backoff: RefreshPolicy
    let maxAttempts: Int
    let now: @Sendable () -> Date
    let jitter: @Sendable () -> Double
    let logger: Logger

    package init(
        store: VaultStore, http: HTTPClient, url: String, secret: String, timeout: Duration = .seconds(10),
        maxAttempts: Int = 12, now: @escaping @Sendable () -> Date,
        jitter: @escaping @Sendable () -> Double = { Double.random(in: 0...1) }, logger: Logger
    ) {
        self.store = store
        self.http = http
        self.url = url
        self.secret = SymmetricKey(data: Array(secret.utf8))
        self.timeout = timeout
        var backoff = RefreshPolicy()
        backoff.baseBackoff = .seconds(10)
        backoff.maxBackoff = .seconds(3600)
        self.backoff = backoff
        self.maxAttempts = maxAttempts
        self.now = now
        self.jitter = jitter
        self.logger = logger
    }

    /// Sends every event that is due, oldest first. Returns how many were delivered.
    @discardableResult
    package func deliverDue() async -> Int {
        var delivered = 0
        while !Task.isShuttingDownGracefully {
            let events: [PendingWebhookEvent]
            do {
                // The claim outlives one delivery's timeout, so no other
                // replica sends the same event meanwhile.
                events = try await self.store.claimWebhookEvents(
                    now: self.now(), lease: self.timeout * 3, limit: 16)
            } catch {
                self.logger.warning("webhook scan failed", metadata: ["error.type": "\(type(of: error))"])
                return delivered
            }
            if events.isEmpty { return delivered }
            for event in events {
                if await self.deliver(event) { delivered += 1 }
            }
        }
        return delivered
    }

    private func deliver(_ event: PendingWebhookEvent) async -> Bool {
        let timestamp = Int(self.now().timeIntervalSince1970)
        var request = HTTPClientRequest(url: self.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "latchkey-webhook")
        request.headers.add(name: "Latchkey-Event-Id", value: event.id.lowercasedString)
        request.headers.add(name: "Latchkey-Event-Type", value: event.type)
        request.headers.add(
            name: "Latchkey-Signature",
            value: Self.signature(secret: self.secret, timestamp: timestamp, body: Array(event.body.utf8)))
        request.body = .bytes(ByteBuffer(string: event.body))
        var failure: String
        var retryAfter: Int?
        do {
            let response = try await self.http.execute(request, timeout: .init(self.timeout))
            // The receiver's body is neither needed nor trusted; drain a little.
            _ = try? await response.body.collect(upTo: 64 * 1024)
            if (200..<300).contains(response.status.code) {
                try? await self.store.recordWebhookAttempt(
                    event, delivered: true, error: nil, retryAt: nil, now: self.now())
                return true
            }
            failure = "HTTP \(response.status.code)"
            retryAfter = response.headers.first(name: "Retry-After").flatMap { Int($0) }.map { min($0, 3600) }
        } catch {
            failure = "cannot reach the webhook receiver (\(type(of: error)))"
        }
        let attempts = event.attempts + 1
        let retryAt: Date? =
            attempts >= self.maxAttempts
            ? nil
            : self.now().addingTimeInterval(
                self.backoff.backoff(failures: attempts, retryAfter: retryAfter, jitter: self.jitter()))
        try? await self.store.recordWebhookAttempt(
            event, delivered: false, error: failure, retryAt: retryAt, now: self.now())
        self.logger.warning(
            retryAt == nil ? "webhook delivery failed; giving up" : "webhook delivery failed; will retry",
            metadata: [
                "event.id": "\(event.id.lowercasedString)", "event.type": "\(event.type)", "reason": "\(failure)",
            ])
        return false
    }

    /// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
    package static func signature(secret: SymmetricKey, timestamp: Int, body: [UInt8]) -> String {
        var message = Array("\(timestamp).".utf8)
        message.append(contentsOf: body)
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: secret)
        return "t=\(timestamp),v1=" + mac.map { String(format: "%02x", $0) }.joined()
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
