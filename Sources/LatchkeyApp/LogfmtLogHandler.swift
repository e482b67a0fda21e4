import Foundation
package import Logging
import Synchronization

/// One line per event on standard error, logfmt
/// (`time=… level=info logger=latchkey msg="request" http.status=200 …`) or,
/// with `LATCHKEY_LOG_FORMAT=json`, one JSON object with the same keys.
/// swift-log ships only a human-oriented stream handler; logfmt is what log
/// pipelines (Loki, Vector, Datadog) parse without configuration, and the
/// format is small enough that a dependency would cost more than it saves.
package struct LogfmtLogHandler: LogHandler {
    package var metadata: Logger.Metadata = [:]
    package var logLevel: Logger.Level
    private let label: String
    private let json: Bool
    private let write: @Sendable (String) -> Void

    package init(
        label: String, level: Logger.Level = .info, json: Bool = false, write: (@Sendable (String) -> Void)? = nil
    ) {
        self.label = label
        self.logLevel = level
        self.json = json
        self.write = write ?? Self.standardError
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        if self.json { return self.write(self.jsonLine(event) + "\n") }
        var line = "time=\(Self.timestamp()) level=\(event.level.rawValue) logger=\(Self.quote(self.label))"
        line += " msg=\(Self.quote(event.message.description))"
        var merged = self.metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(Self.quote(value.description))"
        }
        self.write(line + "\n")
    }

    /// The same fields as a JSON object (keys sorted, so lines diff well).
    private func jsonLine(_ event: LogEvent) -> String {
        var fields: [String: String] = [:]
        for (key, value) in self.metadata { fields[key] = value.description }
        for (key, value) in event.metadata ?? [:] { fields[key] = value.description }
        fields["time"] = Self.timestamp()
        fields["level"] = event.level.rawValue
        fields["logger"] = self.label
        fields["msg"] = event.message.description
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(fields) else { return #"{"msg":"unencodable log event"}"# }
        return String(decoding: data, as: UTF8.self)
    }

    static func quote(_ text: String) -> String {
        let needsQuotes = text.isEmpty || text.contains { $0 == " " || $0 == "=" || $0 == "\"" || $0.isNewline }
        guard needsQuotes else { return text }
        var escaped = "\""
        for character in text {
            switch character {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            default: escaped.append(character)
            }
        }
        return escaped + "\""
    }

    private static func timestamp() -> String {
        Date.now.formatted(
            .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }

    private static let lock = Mutex(())
    private static let standardError: @Sendable (String) -> Void = { line in
        // One write per line under a lock, so concurrent lines never interleave.
        Self.lock.withLock { _ in FileHandle.standardError.write(Data(line.utf8)) }
    }
}
