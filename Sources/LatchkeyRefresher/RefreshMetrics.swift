package import CoreMetrics
package import LatchkeyStore

/// The refresher's metrics (issue: refresh attempts by outcome, refresh
/// latency, due backlog, credentials by status), through swift-metrics so the
/// backend is the application's choice (Prometheus on `/metrics`). The
/// factory is passed in rather than read from the global `MetricsSystem`, so
/// several instances in one test process keep separate books.
package struct RefreshMetrics: Sendable {
    let factory: (any MetricsFactory)?

    package init(factory: any MetricsFactory) {
        self.factory = factory
    }

    private init() {
        self.factory = nil
    }

    /// Records nothing.
    package static let disabled = RefreshMetrics()

    func recordAttempt(_ outcome: RefreshOutcome, duration: Duration) {
        guard let factory else { return }
        Counter(
            label: "latchkey_refresh_attempts_total", dimensions: [("outcome", outcome.label)], factory: factory
        ).increment()
        Timer(label: "latchkey_refresh_duration_seconds", dimensions: [], factory: factory).recordNanoseconds(
            Self.nanoseconds(duration))
    }

    /// Sets the gauges read from the database: credentials waiting past
    /// their refresh time, and credentials of the refreshable types by status.
    package func recordQueue(_ snapshot: RefreshQueueSnapshot) {
        guard let factory else { return }
        Gauge(label: "latchkey_refresh_due_backlog", dimensions: [], factory: factory).record(snapshot.dueBacklog)
        for status in ["active", "refreshing", "backoff", "needs_reauth", "revoked"] {
            Gauge(label: "latchkey_oauth_credentials", dimensions: [("status", status)], factory: factory).record(
                snapshot.byStatus[status] ?? 0)
        }
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
