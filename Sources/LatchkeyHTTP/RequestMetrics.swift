import HTTPTypes
import LatchkeyStore
package import Prometheus
import Synchronization

/// Request durations by route template, method and status, as the Prometheus
/// histogram `latchkey_http_request_duration_seconds`. The route is the
/// template (`/v1/inject/{vault}/{name}`), never the path, so no vault or
/// credential name reaches a label and the series stay few. Histograms are
/// kept here by label set, so a request costs one dictionary lookup under a
/// lock rather than the registry's own lookup.
package final class RequestMetrics: Sendable {
    private struct Labels: Hashable {
        let route: String
        let method: HTTPRequest.Method
        let status: Int
    }

    /// From half a millisecond (a warm injection) to the provider timeout.
    static let buckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30),
    ]

    private let registry: PrometheusCollectorRegistry
    private let histograms = Mutex<[Labels: DurationHistogram]>([:])

    package init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    func record(route: String, method: HTTPRequest.Method, status: Int, _ elapsed: Duration) {
        let labels = Labels(route: route, method: method, status: status)
        let histogram = self.histograms.withLock { histograms in
            if let existing = histograms[labels] { return existing }
            let made = self.registry.makeDurationHistogram(
                descriptor: .init(
                    namespace: "latchkey", metricName: "http_request_duration", unitName: "seconds",
                    helpText: "HTTP request duration by route template, method and status."),
                labels: [("route", route), ("method", method.rawValue), ("status", String(status))],
                buckets: Self.buckets)
            histograms[labels] = made
            return made
        }
        histogram.record(elapsed)
    }
}

/// Figures kept elsewhere (the caches' own counts, the store's database
/// activity), copied into the registry when `/metrics` is scraped, so the
/// hot path pays nothing extra for them.
package final class ScrapedMetrics: Sendable {
    private let injectionHits: Counter
    private let injectionMisses: Counter
    private let shortcutAnswers: Counter
    private let keyMisses: Counter
    private let databaseOperations: Counter
    private let databaseUnavailable: Counter
    private let databaseInFlight: Gauge
    private let cacheLive: Gauge
    private let credentials: CredentialCache
    private let keys: KeyCache
    private let shortcut: InjectionShortcut?
    /// What was last copied, so counters advance by the difference.
    private let copied = Mutex<[Int]>([0, 0, 0, 0, 0, 0])

    package init(
        registry: PrometheusCollectorRegistry, credentials: CredentialCache, keys: KeyCache,
        shortcut: InjectionShortcut? = nil
    ) {
        func counter(_ name: String, _ labels: [(String, String)], _ help: String) -> Counter {
            registry.makeCounter(
                descriptor: .init(namespace: "latchkey", metricName: name, unitName: "total", helpText: help),
                labels: labels)
        }
        let cacheHelp = "Injection lookups answered from this replica's memory (hit) or the database (miss)."
        self.injectionHits = counter("injection_cache_lookups", [("result", "hit")], cacheHelp)
        self.injectionMisses = counter("injection_cache_lookups", [("result", "miss")], cacheHelp)
        self.shortcutAnswers = counter(
            "injection_shortcut_answers", [],
            "Warm injections answered on the event loop, before the router (a subset of the cache hits).")
        self.keyMisses = counter("api_key_cache_misses", [], "API key lookups that went to the database.")
        self.databaseOperations = counter("database_operations", [], "Store calls made by this process.")
        self.databaseUnavailable = counter(
            "database_unavailable", [], "Store calls that failed as DATABASE_UNAVAILABLE (unreachable or too slow).")
        self.databaseInFlight = registry.makeGauge(
            descriptor: .init(
                namespace: "latchkey", metricName: "database_operations_in_flight", unitName: "",
                helpText: "Store calls waiting for or holding a pooled connection now."))
        self.cacheLive = registry.makeGauge(
            descriptor: .init(
                namespace: "latchkey", metricName: "cache_listener_connected", unitName: "",
                helpText: "1 while the LISTEN connection that keeps the caches honest is up; 0 while they are frozen."))
        self.credentials = credentials
        self.keys = keys
        self.shortcut = shortcut
    }

    package func update() {
        let now = [
            self.credentials.hits, self.credentials.misses, self.keys.misses, DatabaseActivity.operations,
            DatabaseActivity.unavailable, self.shortcut?.answered ?? 0,
        ]
        let before = self.copied.withLock { copied in
            defer { copied = now }
            return copied
        }
        let counters = [
            self.injectionHits, self.injectionMisses, self.keyMisses, self.databaseOperations,
            self.databaseUnavailable, self.shortcutAnswers,
        ]
        for (index, counter) in counters.enumerated() where now[index] > before[index] {
            counter.increment(by: Int64(now[index] - before[index]))
        }
        self.databaseInFlight.set(to: Double(DatabaseActivity.inFlight))
        self.cacheLive.set(to: self.credentials.isLive ? 1 : 0)
    }
}
