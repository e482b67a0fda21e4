import Foundation
import Hummingbird
import LatchkeyCore

/// Typed, validated access to path and query parameters: every malformed
/// value is a 400 `INVALID_PARAMETER` naming the parameter.
struct Parameters {
    let request: Request
    let context: LatchkeyRequestContext

    func vault() throws(LatchkeyError) -> String {
        let name = self.context.parameters.get("vault") ?? ""
        guard Names.isValidVaultName(name) else {
            throw LatchkeyError(.invalidParameter, "'\(name.prefix(80))' is not a valid vault name.", field: "vault")
        }
        return name
    }

    func credentialName() throws(LatchkeyError) -> String {
        let name = self.context.parameters.get("name") ?? ""
        guard Names.isValidCredentialName(name) else {
            throw LatchkeyError(
                .invalidParameter,
                "'\(name.prefix(80))' is not a valid credential name (a letter, then letters, digits or '_').",
                field: "name")
        }
        return name
    }

    func string(_ name: String, maxLength: Int = 200) throws(LatchkeyError) -> String? {
        let values = self.request.uri.queryParameters.getAll(name)
        guard let value = values.last else { return nil }
        guard values.count == 1 else { throw Self.invalid(name, "may be given once") }
        guard !value.isEmpty, value.utf8.count <= maxLength else {
            throw Self.invalid(name, "must be between 1 and \(maxLength) characters")
        }
        guard !value.utf8.contains(0) else { throw Self.invalid(name, "must not contain NUL characters") }
        return String(value)
    }

    func integer(_ name: String, in range: ClosedRange<Int>) throws(LatchkeyError) -> Int? {
        guard let text = try self.string(name, maxLength: 20) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw Self.invalid(name, "must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    func bool(_ name: String) throws(LatchkeyError) -> Bool? {
        guard let text = try self.string(name, maxLength: 5) else { return nil }
        switch text {
        case "true": return true
        case "false": return false
        default: throw Self.invalid(name, "must be true or false")
        }
    }

    func time(_ name: String) throws(LatchkeyError) -> Date? {
        guard let text = try self.string(name, maxLength: 40) else { return nil }
        guard let date = ISO8601DateFormatter().date(from: text) else {
            throw Self.invalid(name, "must be an RFC 3339 time such as 2026-01-02T03:04:05Z")
        }
        return date
    }

    static func invalid(_ name: String, _ message: String) -> LatchkeyError {
        LatchkeyError(.invalidParameter, "Query parameter '\(name)' \(message).", field: name)
    }
}

/// Opaque page cursors: base64url of the position, so clients do not build them.
enum Cursor {
    static func encode(_ position: String) -> String {
        Base64URL.encode(Data(position.utf8))
    }

    static func decode(_ cursor: String) -> String? {
        Base64URL.decode(cursor).flatMap { String(data: $0, encoding: .utf8) }
    }
}
