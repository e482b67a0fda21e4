import LatchkeyApp
package import Logging
import Synchronization

/// Captures every log line a component writes, formatted exactly as
/// production writes them (logfmt), so tests can scan them for secrets.
package final class LogCapture: Sendable {
    private let lines = Mutex<[String]>([])

    package init() {}

    /// A logger writing into this capture at `level` (trace by default: the
    /// leak test wants every line the code can produce).
    package func logger(label: String = "latchkey", level: Logger.Level = .trace) -> Logger {
        Logger(label: label) { label in
            LogfmtLogHandler(label: label, level: level) { [weak self] line in
                self?.lines.withLock { $0.append(line) }
            }
        }
    }

    package var captured: [String] { self.lines.withLock { $0 } }

    package var text: String { self.captured.joined() }
}
