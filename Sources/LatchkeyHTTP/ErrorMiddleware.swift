import Foundation
import HTTPTypes
package import Hummingbird
package import LatchkeyCore
import LatchkeyCrypto
import LatchkeyStore
import Logging
import NIOCore
import Synchronization

/// The outermost middleware: gives every request an id, logs one line per
/// request (never a header or body), and turns every error into SPEC section
/// 7's `{"error": {"code", "message"}}` shape. Errors that are not
/// `LatchkeyError`s are bugs: they are logged and answered as a generic 500
/// whose message reveals nothing.
///
/// It also times the request into `latchkey_http_request_duration_seconds`
/// (by route template, method and status) and sets the request's database
/// deadline (`DatabaseDeadline`).
package struct APIErrorMiddleware: RouterMiddleware {
    package typealias Context = LatchkeyRequestContext
    let metrics: RequestMetrics?
    let databaseTimeout: Duration?

    package init(metrics: RequestMetrics? = nil, databaseTimeout: Duration? = nil) {
        self.metrics = metrics
        self.databaseTimeout = databaseTimeout
    }

    package func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let start = ContinuousClock.now
        var context = context
        let requestID = Self.requestID(given: request.headers[Self.requestIDHeader])
        context.logger[metadataKey: "request.id"] = "\(requestID)"
        context.logger[metadataKey: "hb.request.id"] = nil
        var response: Response
        do {
            response = try await DatabaseDeadline.$timeout.withValue(self.databaseTimeout) {
                try await next(request, context)
            }
        } catch {
            response = Self.render(error, request: request, logger: context.logger)
        }
        response.headers[Self.requestIDHeader] = requestID
        let elapsed = ContinuousClock.now - start
        let route = context.endpointPath ?? "unmatched"
        self.metrics?.record(route: route, method: request.method, status: response.status.code, elapsed)
        Self.log(
            context.logger, method: request.method, route: route, status: response.status.code, elapsed: elapsed,
            principal: context.principal)
        return response
    }

    /// The one line per request (also written by `InjectionShortcut`).
    static func log(
        _ logger: Logger, method: HTTPRequest.Method, route: String, status: Int, elapsed: Duration,
        principal: Principal?
    ) {
        logger.info(
            "request",
            metadata: [
                "http.method": "\(method.rawValue)",
                "http.route": "\(route)",
                "http.status": "\(status)",
                "http.duration_ms": "\(Self.milliseconds(elapsed))",
                "auth.principal": "\(principal?.name ?? "-")",
            ])
    }

    static func render(_ error: any Error, request: Request, logger: Logger) -> Response {
        let apiError: LatchkeyError
        switch error {
        case let error as LatchkeyError:
            apiError = error
        case let error as any HTTPResponseError:
            apiError = Self.translate(error.status, request: request)
        default:
            // Never the error's description: it could quote input.
            logger.error("unhandled error", metadata: errorLogMetadata(error).mapValues { .string($0) })
            apiError = .internalError
        }
        if apiError.code == .internalError || apiError.code == .databaseUnavailable {
            logger.warning("request failed", metadata: ["error.code": "\(apiError.code.rawValue)"])
        }
        return Self.response(for: apiError)
    }

    package static func response(for error: LatchkeyError) -> Response {
        var body: [String: JSONValue] = [
            "code": .string(error.code.rawValue),
            "message": .string(error.message),
        ]
        if let field = error.field { body["field"] = .string(field) }
        if let providerError = error.providerError { body["provider_error"] = .string(providerError) }
        var response =
            (try? APIJSON.response(["error": JSONValue.object(body)], status: .init(code: error.status)))
            ?? Response(status: .internalServerError)
        // The code as a header too, so a proxy (nginx's auth_request) can
        // pass it on without reading the body.
        response.headers[Self.errorHeader] = error.code.rawValue
        if error.code == .invalidKey {
            response.headers[.wwwAuthenticate] = "Bearer"
        }
        if let seconds = error.retryAfterSeconds {
            response.headers[.retryAfter] = String(seconds)
        }
        return response
    }

    /// Errors the framework raises (no route, body too large) in our shape.
    private static func translate(_ status: HTTPResponse.Status, request: Request) -> LatchkeyError {
        switch status {
        case .notFound:
            LatchkeyError(.notFound, "No route matches \(request.method.rawValue) \(request.uri.path).")
        case .methodNotAllowed:
            LatchkeyError(.methodNotAllowed, "\(request.method.rawValue) is not allowed on \(request.uri.path).")
        case .contentTooLarge:
            LatchkeyError(.payloadTooLarge, "The request body is larger than \(APIJSON.maxBodyBytes) bytes.")
        case .unauthorized:
            .invalidKey
        default:
            status.code < 500
                ? LatchkeyError(.badRequest, "The request could not be processed (\(status.code)).")
                : .internalError
        }
    }

    static let requestIDHeader = HTTPField.Name("X-Request-Id")!
    static let errorHeader = HTTPField.Name("Latchkey-Error")!

    /// Honours a caller's `X-Request-Id` when it is short and plain, so one id
    /// follows a request through proxies; otherwise makes one.
    static func requestID(given: String?) -> String {
        if let given, (1...64).contains(given.utf8.count),
            given.utf8.allSatisfy({
                $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || (0x30...0x39).contains($0)
                    || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0)
            })
        {
            return given
        }
        return RequestIDs.next()
    }

    private static func milliseconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let milliseconds = Double(seconds) * 1000 + Double(attoseconds) / 1e15
        return String(format: "%.2f", milliseconds)
    }
}

/// Request ids: a random prefix for this process and a counter, as 32
/// lowercase hex digits. (Hummingbird makes ids of the same kind, but its
/// per-request `String(radix:)` formatting showed in the injection path's
/// profile, and the shortcut and the full stack must make ids alike.)
enum RequestIDs {
    private static let prefix = UInt64.random(in: .min ... .max)
    private static let counter = Atomic<UInt64>(.random(in: .min ... .max))

    static func next() -> String {
        let low = Self.counter.add(1, ordering: .relaxed).oldValue
        return withUnsafeBytes(of: (Self.prefix.bigEndian, low.bigEndian)) { Hex.lowercase($0) }
    }
}
