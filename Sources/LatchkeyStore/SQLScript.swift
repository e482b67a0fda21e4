/// Splits a migration file into single statements.
///
/// PostgresNIO speaks only the extended query protocol, which takes one
/// statement per query, so a multi-statement migration file is split here.
/// The scanner understands everything that can hide a `;`: quoted strings,
/// quoted identifiers, dollar-quoted bodies (`$$ ... $$`, `$fn$ ... $fn$`),
/// and both comment styles.
package enum SQLScript {
    package static func statements(_ sql: String) -> [String] {
        let bytes = Array(sql.utf8)
        var statements: [String] = []
        var start = 0
        var index = 0
        func isDollarTagByte(_ byte: UInt8) -> Bool {
            byte == UInt8(ascii: "_") || (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte)
                || (0x61...0x7A).contains(byte) || byte >= 0x80
        }
        func flush(upTo end: Int) {
            let text = String(decoding: bytes[start..<end], as: UTF8.self)
            if Self.hasCode(text) { statements.append(text.trimmingWhitespace()) }
        }
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "'"), UInt8(ascii: "\""):
                index += 1
                while index < bytes.count {
                    if bytes[index] == byte {
                        // A doubled quote is an escaped quote inside the literal.
                        if index + 1 < bytes.count, bytes[index + 1] == byte {
                            index += 2
                            continue
                        }
                        break
                    }
                    index += 1
                }
                index += 1
            case UInt8(ascii: "-") where index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "-"):
                while index < bytes.count, bytes[index] != UInt8(ascii: "\n") { index += 1 }
            case UInt8(ascii: "/") where index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "*"):
                var depth = 0
                repeat {
                    if index + 1 < bytes.count, bytes[index] == UInt8(ascii: "/"), bytes[index + 1] == UInt8(ascii: "*")
                    {
                        depth += 1
                        index += 2
                    } else if index + 1 < bytes.count, bytes[index] == UInt8(ascii: "*"),
                        bytes[index + 1] == UInt8(ascii: "/")
                    {
                        depth -= 1
                        index += 2
                    } else {
                        index += 1
                    }
                } while depth > 0 && index < bytes.count
            case UInt8(ascii: "$"):
                // A dollar quote: $tag$ where tag may be empty.
                var end = index + 1
                while end < bytes.count, isDollarTagByte(bytes[end]) { end += 1 }
                guard end < bytes.count, bytes[end] == UInt8(ascii: "$"),
                    index == 0 || !isDollarTagByte(bytes[index - 1])
                else {
                    index += 1
                    continue
                }
                let tag = Array(bytes[index...end])
                index = end + 1
                while index < bytes.count {
                    if bytes[index] == UInt8(ascii: "$"), index + tag.count <= bytes.count,
                        Array(bytes[index..<(index + tag.count)]) == tag
                    {
                        index += tag.count
                        break
                    }
                    index += 1
                }
            case UInt8(ascii: ";"):
                flush(upTo: index)
                index += 1
                start = index
            default:
                index += 1
            }
        }
        flush(upTo: bytes.count)
        return statements
    }

    /// Whether a fragment holds anything but white space and comments.
    private static func hasCode(_ text: String) -> Bool {
        for line in text.split(separator: "\n") {
            let trimmed = line.drop { $0 == " " || $0 == "\t" || $0 == "\r" }
            if !trimmed.isEmpty && !trimmed.hasPrefix("--") { return true }
        }
        return false
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        let scalars = self.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }
}
