/// Reads a JSON object's fields one by one, with errors that name the exact
/// field (`value.token: must be a string, not number`). Whatever is left
/// unread at the end is an unknown field and is refused, so a typo never
/// passes silently. Used for credential values and for request bodies.
package struct JSONFields {
    private var object: [String: JSONValue]
    /// Prepended to field names in errors (`value.` for a credential value).
    private let prefix: String
    /// What the object is, for "is required for ..." messages.
    private let subject: String

    package init(_ object: [String: JSONValue], prefix: String = "", subject: String = "this request") {
        self.object = object
        self.prefix = prefix
        self.subject = subject
    }

    /// Reads a JSON body that must be an object.
    package init(body: JSONValue, subject: String = "this request") throws(LatchkeyError) {
        guard case .object(let object) = body else {
            throw LatchkeyError(.malformedJSON, "The request body must be a JSON object, not \(body.typeName).")
        }
        self.init(object, subject: subject)
    }

    /// Takes a field's raw value; `null` counts as absent.
    package mutating func take(_ name: String) -> JSONValue? {
        let value = self.object.removeValue(forKey: name)
        if case .null = value { return nil }
        return value
    }

    package mutating func requiredString(
        _ name: String, allowEmpty: Bool = false, maxBytes: Int = CredentialValidator.maxStringBytes
    ) throws(LatchkeyError) -> String {
        guard let value = try self.optionalString(name, allowEmpty: allowEmpty, maxBytes: maxBytes) else {
            throw .validation(self.prefix + name, "is required for \(self.subject)")
        }
        return value
    }

    package mutating func optionalString(
        _ name: String, allowEmpty: Bool = false, maxBytes: Int = CredentialValidator.maxStringBytes
    ) throws(LatchkeyError) -> String? {
        guard let value = self.take(name) else { return nil }
        guard case .string(let text) = value else {
            throw .validation(self.prefix + name, "must be a string, not \(value.typeName)")
        }
        guard allowEmpty || !text.isEmpty else { throw .validation(self.prefix + name, "must not be empty") }
        guard text.utf8.count <= maxBytes else {
            throw .validation(self.prefix + name, "is longer than \(maxBytes) bytes")
        }
        // PostgreSQL text cannot hold U+0000, and no field here has a use for it.
        guard !text.utf8.contains(0) else { throw .validation(self.prefix + name, "must not contain NUL characters") }
        return text
    }

    package mutating func optionalBool(_ name: String) throws(LatchkeyError) -> Bool? {
        guard let value = self.take(name) else { return nil }
        guard case .bool(let flag) = value else {
            throw .validation(self.prefix + name, "must be true or false, not \(value.typeName)")
        }
        return flag
    }

    package mutating func optionalStringArray(_ name: String) throws(LatchkeyError) -> [String]? {
        guard let value = self.take(name) else { return nil }
        guard case .array(let items) = value, items.count <= 256 else {
            throw .validation(self.prefix + name, "must be an array of at most 256 strings")
        }
        var strings: [String] = []
        for item in items {
            guard case .string(let text) = item, !text.isEmpty, text.utf8.count <= 1024,
                !text.contains(where: \.isWhitespace), !text.utf8.contains(0)
            else {
                throw .validation(self.prefix + name, "must hold non-empty strings without spaces or NUL characters")
            }
            strings.append(text)
        }
        return strings
    }

    package mutating func optionalStringMap(_ name: String) throws(LatchkeyError) -> [String: JSONValue]? {
        guard let value = self.take(name) else { return nil }
        guard case .object(let map) = value, map.count <= 64,
            map.values.allSatisfy({ $0.stringValue.map { $0.utf8.count <= 4096 && !$0.utf8.contains(0) } ?? false }),
            map.keys.allSatisfy({ !$0.utf8.contains(0) })
        else {
            throw .validation(self.prefix + name, "must be an object of at most 64 string values (no NUL characters)")
        }
        return map
    }

    /// Refuses whatever fields were not read.
    package func refuseLeftovers() throws(LatchkeyError) {
        if let unknown = self.object.keys.sorted().first {
            throw .validation(self.prefix + String(unknown.prefix(64)), "is not a field of \(self.subject)")
        }
    }
}
