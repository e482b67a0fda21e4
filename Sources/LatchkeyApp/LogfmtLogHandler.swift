import Foundation
package import Logging
import Synchronization

/// One logfmt line per event on standard error:
/// `time=… level=info logger=latchkey msg="request" http.status=200 …`.
/// swift-log ships only a human-oriented stream handler; logfmt is what log
/// pipelines (Loki, Vector, Datadog) parse without configuration, and the
/// format is small enough that a dependency would cost more than it saves.
package struct LogfmtLogHandler: LogHandler {
    package var metadata: Logger.Metadata = [:]
    package var logLevel: Logger.Level
    private let label: String
    private let write: @Sendable (String) -> Void

    package init(label: String, level: Logger.Level = .info, write: (@Sendable (String) -> Void)? = nil) {
        self.label = label
        self.logLevel = level
        self.write = write ?? Self.standardError
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        var line = "time=\(Self.timestamp()) level=\(event.level.rawValue) logger=\(Self.quote(self.label))"
        line += " msg=\(Self.quote(event.message.description))"
        var merged = self.metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(Self.quote(value.description))"
        }
        self.write(line + "\n")
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
