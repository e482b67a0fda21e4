import Foundation

/// `{{credential:NAME}}` and `{{credential:NAME.field}}` in a `header_set`
/// value: references to other credentials in the same vault, resolved at
/// injection time (SPEC section 5). Parsed strictly: anything that starts
/// like a placeholder but is not one is refused when the value is stored, so
/// a typo never becomes a literal header.
package enum Placeholders {
    package enum Part: Sendable, Hashable {
        case text(String)
        /// A reference: the credential's name and, optionally, one field of its value.
        case reference(name: String, field: String?)
    }

    static let opening = "{{credential:"

    /// The parts of `text`, or an error naming the first malformed placeholder.
    package static func parse(_ text: String) throws(LatchkeyError) -> [Part] {
        var parts: [Part] = []
        var rest = Substring(text)
        while let start = rest.range(of: Self.opening) {
            if start.lowerBound > rest.startIndex { parts.append(.text(String(rest[..<start.lowerBound]))) }
            let afterOpening = rest[start.upperBound...]
            guard let end = afterOpening.range(of: "}}") else {
                throw LatchkeyError.validation("value.headers", "a '{{credential:' placeholder is not closed with '}}'")
            }
            let body = afterOpening[..<end.lowerBound]
            let pieces = body.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(pieces[0])
            let field = pieces.count == 2 ? String(pieces[1]) : nil
            guard Names.isValidCredentialName(name), field.map(Self.isValidField) ?? true else {
                throw LatchkeyError.validation(
                    "value.headers",
                    "'{{credential:\(body.prefix(140))}}' is not a placeholder: use {{credential:NAME}} or {{credential:NAME.field}}"
                )
            }
            parts.append(.reference(name: name, field: field))
            rest = afterOpening[end.upperBound...]
        }
        if !rest.isEmpty { parts.append(.text(String(rest))) }
        return parts
    }

    /// The names a value's placeholders reference.
    package static func references(in text: String) throws(LatchkeyError) -> Set<String> {
        var names: Set<String> = []
        for case .reference(let name, _) in try Self.parse(text) { names.insert(name) }
        return names
    }

    /// Field names: letters, digits, `_` and `-` (header names in a header_set).
    private static func isValidField(_ field: String) -> Bool {
        !field.isEmpty && field.utf8.count <= 128
            && field.utf8.allSatisfy {
                (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || (0x30...0x39).contains($0)
                    || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
            }
    }
}
