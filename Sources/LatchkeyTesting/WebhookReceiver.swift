import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// A webhook receiver on loopback that records every delivery, and can be
/// told to fail the next few (as a receiver being deployed would).
package final class WebhookReceiver: Sendable {
    /// One request as received.
    package struct Delivery: Sendable {
        /// Header names in lower case.
        package let headers: [String: String]
        package let body: [UInt8]

        package init(headers: [String: String], body: [UInt8]) {
            self.headers = headers
            self.body = body
        }

        package var json: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(self.body))) as? [String: Any]
        }
    }

    private struct State {
        var port = 0
        var deliveries: [Delivery] = []
        var failNext = 0
        var attempts = 0
    }

    private let state = Mutex(State())

    private init() {}

    package var url: String { "http://127.0.0.1:\(self.state.withLock { $0.port })/hooks/latchkey" }
    /// Deliveries answered 2xx, in order.
    package var deliveries: [Delivery] { self.state.withLock { $0.deliveries } }
    /// Every request, failed ones included.
    package var attempts: Int { self.state.withLock { $0.attempts } }

    /// Answer the next `count` requests with 503.
    package func failNext(_ count: Int) {
        self.state.withLock { $0.failNext = count }
    }

    package static func withRunning<Result: Sendable>(
        _ body: @Sendable (WebhookReceiver) async throws -> Result
    ) async throws -> Result {
        let receiver = WebhookReceiver()
        let router = Router()
        router.post("hooks/latchkey") { request, _ in
            var request = request
            let bytes = try await request.collectBody(upTo: 1024 * 1024)
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName.lowercased()] = field.value }
            let delivery = Delivery(headers: headers, body: Array(buffer: bytes))
            let fail: Bool = receiver.state.withLock { state in
                state.attempts += 1
                if state.failNext > 0 {
                    state.failNext -= 1
                    return true
                }
                state.deliveries.append(delivery)
                return false
            }
            return Response(status: fail ? .serviceUnavailable : .noContent)
        }
        return try await LoopbackServer.run(router: router, name: "webhook-receiver") { port in
            receiver.state.withLock { $0.port = port }
            return try await body(receiver)
        }
    }
}
