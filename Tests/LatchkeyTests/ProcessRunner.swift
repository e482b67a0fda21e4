import AsyncHTTPClient
import Foundation
import Glibc
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LatchkeyApp
import LatchkeyCore
import LatchkeyCrypto
import LatchkeyHTTP
import LatchkeyRefresher
import LatchkeyStore
import LatchkeyTesting
import Logging
import NIOCore
import NIOHTTP1
import PostgresNIO
import Synchronization
import Testing

/// Runs the built `latchkey` binary as a real process, with standard input
/// fed from a file and output captured through files (no pipes to drain, no
/// thread blocked while it runs).
enum LatchkeyProcess {
    struct Result: Sendable {
        let status: Int32
        let stdout: String
        let stderr: String
        var output: String { self.stdout + self.stderr }
    }

    /// The `latchkey` binary SwiftPM built beside the test bundle.
    static var binary: URL {
        get throws {
            var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            // On Linux the test runner is .build/<config>/LatchkeyPackageTests.xctest.
            for _ in 0..<3 {
                let candidate = directory.appendingPathComponent("latchkey")
                if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
                directory.deleteLastPathComponent()
            }
            throw CocoaError(
                .fileNoSuchFile, userInfo: [NSFilePathErrorKey: "latchkey next to \(CommandLine.arguments[0])"])
        }
    }

    /// A long-running `latchkey` process (`serve`, `refresher`), stopped with SIGTERM.
    final class Running: Sendable {
        let process: Process
        let scratch: URL
        let exit: Task<Int32, Never>

        init(_ arguments: [String], environment: [String: String]) throws {
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent(
                "latchkey-run-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            for name in ["out", "err"] { try Data().write(to: scratch.appendingPathComponent(name)) }
            let process = Process()
            process.executableURL = try LatchkeyProcess.binary
            process.arguments = arguments
            process.environment = environment.merging(["PATH": "/usr/bin:/bin"]) { given, _ in given }
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = try FileHandle(forWritingTo: scratch.appendingPathComponent("out"))
            process.standardError = try FileHandle(forWritingTo: scratch.appendingPathComponent("err"))
            let (statuses, continuation) = AsyncStream.makeStream(of: Int32.self)
            process.terminationHandler = {
                continuation.yield($0.terminationStatus)
                continuation.finish()
            }
            try process.run()
            self.process = process
            self.scratch = scratch
            self.exit = Task { await statuses.first(where: { _ in true }) ?? -1 }
        }

        /// Sends SIGTERM and waits for the process to exit.
        func terminate() async throws -> Result {
            self.process.terminate()
            let status = await self.exit.value
            defer { try? FileManager.default.removeItem(at: self.scratch) }
            return Result(
                status: status,
                stdout: try String(contentsOf: self.scratch.appendingPathComponent("out"), encoding: .utf8),
                stderr: try String(contentsOf: self.scratch.appendingPathComponent("err"), encoding: .utf8))
        }
    }

    static func run(_ arguments: [String], environment: [String: String], stdin: String = "") async throws -> Result {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("latchkey-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let (inURL, outURL, errURL) = (
            scratch.appendingPathComponent("in"), scratch.appendingPathComponent("out"),
            scratch.appendingPathComponent("err")
        )
        try Data(stdin.utf8).write(to: inURL)
        try Data().write(to: outURL)
        try Data().write(to: errURL)

        let process = Process()
        process.executableURL = try Self.binary
        process.arguments = arguments
        // Only what the test gives, plus PATH: the developer's LATCHKEY_* must not leak in.
        process.environment = environment.merging(["PATH": "/usr/bin:/bin"]) { given, _ in given }
        process.standardInput = try FileHandle(forReadingFrom: inURL)
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        let status = try await ExternalProcess.runToExit(process)
        return Result(
            status: status,
            stdout: try String(contentsOf: outURL, encoding: .utf8),
            stderr: try String(contentsOf: errURL, encoding: .utf8))
    }
}

/// Where the repository is, for tests that read its files (README, openapi.json,
/// Migrations/, scripts/lib/).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// Another program (Chromium), run to completion with its output captured
/// through a file.
enum ExternalProcess {
    /// Starts `process` and waits for it to exit, without blocking a thread.
    static func runToExit(_ process: Process) async throws -> Int32 {
        try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
    }

    static func run(
        _ executable: String, _ arguments: [String]
    ) async throws -> (status: Int32, stdout: String, stderr: String) {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("external-\(UUID().uuidString)")
        let errors = output.appendingPathExtension("err")
        try Data().write(to: output)
        try Data().write(to: errors)
        defer {
            try? FileManager.default.removeItem(at: output)
            try? FileManager.default.removeItem(at: errors)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: output)
        process.standardError = try FileHandle(forWritingTo: errors)
        let status = try await ExternalProcess.runToExit(process)
        return (
            status, try String(contentsOf: output, encoding: .utf8), try String(contentsOf: errors, encoding: .utf8)
        )
    }

    /// A TCP port nothing listens on right now (for a server whose own URL
    /// must be known before it starts).
    static func freePort() throws -> Int {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bind(socket, address, length) == 0 && getsockname(socket, address, &length) == 0
            }
        }
        guard bound else { throw CocoaError(.fileWriteUnknown) }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

extension LatchkeyProcess {
    /// One HTTP call to a server in another process (through the shared test client).
    static func call(
        _ method: NIOHTTP1.HTTPMethod, _ url: String, key: String?, body: String? = nil
    ) async throws -> APIResponse {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let key { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await HTTPClientForTests.shared.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 1024 * 1024)
        return APIResponse(status: Int(response.status.code), headers: [:], body: String(buffer: bytes))
    }
}
