import Hummingbird
import Logging
import ServiceLifecycle

/// Runs a Hummingbird router on a loopback port (a free one by default) for the length of
/// `body`: the provider simulator, webhook receivers and other peers tests
/// talk to over real HTTP.
enum LoopbackServer {
    static func run<Result: Sendable>(
        router: Router<BasicRequestContext>, name: String, host: String = "127.0.0.1", port: Int = 0,
        _ body: @Sendable (Int) async throws -> Result
    ) async throws -> Result {
        var logger = Logger(label: name)
        logger.logLevel = .warning
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let application = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: name),
            onServerRunning: { channel in
                portContinuation.yield(channel.localAddress?.port ?? 0)
                portContinuation.finish()
            },
            logger: logger)
        let group = ServiceGroup(
            configuration: .init(services: [application], gracefulShutdownSignals: [], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            let port = await iterator.next() ?? 0
            do {
                let result = try await body(port)
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
        }
    }
}
