import Foundation
import LatchkeyCore

/// JSON text for `jsonb` columns and sealed values. Sorted keys keep the
/// encoding deterministic (useful when comparing rows in tests and audits).
enum JSONText {
    static func encode(_ object: [String: JSONValue]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding [String: JSONValue] cannot fail: every case is encodable.
        return (try? String(decoding: encoder.encode(object), as: UTF8.self)) ?? "{}"
    }

    static func decodeObject(_ text: String) -> [String: JSONValue] {
        (try? JSONDecoder().decode([String: JSONValue].self, from: Data(text.utf8))) ?? [:]
    }

    static func decodeObject(_ bytes: [UInt8]) -> [String: JSONValue]? {
        try? JSONDecoder().decode([String: JSONValue].self, from: Data(bytes))
    }
}
