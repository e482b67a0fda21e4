import Foundation
package import Hummingbird
package import LatchkeyCore
import NIOCore
import NIOFoundationCompat

/// JSON in and out of the API (SPEC section 7): snake_case fields (spelled out
/// in each model's CodingKeys), RFC 3339 UTC times.
package enum APIJSON {
    /// The largest request body the admin API reads. Credential values are
    /// small; this leaves room for a header set of JWTs.
    package static let maxBodyBytes = 256 * 1024

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// Reads a request body as JSON, bounded in size; malformed JSON becomes
    /// `MALFORMED_JSON` (400), never a 500.
    package static func body(_ request: Request) async throws -> JSONValue {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: Self.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw LatchkeyError(.payloadTooLarge, "The request body is larger than \(Self.maxBodyBytes) bytes.")
        }
        guard buffer.readableBytes > 0 else {
            throw LatchkeyError(.malformedJSON, "The request needs a JSON body.")
        }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: buffer)
        } catch {
            throw LatchkeyError(.malformedJSON, "The request body is not valid JSON.")
        }
    }

    /// A JSON response with the given status.
    package static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        var buffer = ByteBuffer()
        try buffer.writeBytes(Self.encoder.encode(value))
        return Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: buffer))
    }
}
