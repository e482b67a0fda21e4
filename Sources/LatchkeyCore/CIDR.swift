#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// An IP address as bytes: 4 for IPv4, 16 for IPv6. IPv4-mapped IPv6
/// addresses (`::ffff:192.0.2.1`, what a dual-stack socket reports for an IPv4
/// client) are normalised to their IPv4 form, so one allowlist entry matches
/// a client however the socket saw it.
package struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    package let bytes: [UInt8]

    package init?(_ text: some StringProtocol) {
        let text = String(text)
        // The system's inet_pton: the reference parser for both families
        // (zero compression, embedded IPv4), rather than a hand-written one.
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.init(bytes: withUnsafeBytes(of: &v4) { Array($0) })
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        self.init(bytes: withUnsafeBytes(of: &v6) { Array($0) })
    }

    package init(bytes: [UInt8]) {
        if bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            self.bytes = Array(bytes[12...])
        } else {
            self.bytes = bytes
        }
    }

    package var description: String {
        if self.bytes.count == 4 { return self.bytes.map(String.init).joined(separator: ".") }
        var buffer = [CChar](repeating: 0, count: 64)
        var address = in6_addr()
        withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: self.bytes) }
        guard inet_ntop(AF_INET6, &address, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A CIDR block such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is a
/// block of one.
package struct CIDR: Sendable, Hashable, CustomStringConvertible {
    package let network: IPAddress
    package let prefixLength: Int

    package init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(parts[0]) else { return nil }
        let maximum = address.bytes.count * 8
        var length = maximum
        if parts.count == 2 {
            guard let given = Int(parts[1]), parts[1].allSatisfy(\.isASCII) else { return nil }
            // A mapped IPv6 block (::ffff:10.0.0.0/104) becomes its IPv4 block.
            let adjusted = (parts[0].contains(":") && address.bytes.count == 4) ? given - 96 : given
            guard (0...maximum).contains(adjusted) else { return nil }
            length = adjusted
        }
        // Keep only the network bits, so 10.1.2.3/8 means 10.0.0.0/8.
        var bytes = address.bytes
        for index in bytes.indices {
            let bitsHere = max(0, min(8, length - index * 8))
            bytes[index] &= bitsHere == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - bitsHere))
        }
        self.network = IPAddress(bytes: bytes)
        self.prefixLength = length
    }

    package func contains(_ address: IPAddress) -> Bool {
        guard address.bytes.count == self.network.bytes.count else { return false }
        var remaining = self.prefixLength
        for (mine, theirs) in zip(self.network.bytes, address.bytes) where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            guard mine & mask == theirs & mask else { return false }
            remaining -= bits
        }
        return true
    }

    package var description: String { "\(self.network)/\(self.prefixLength)" }
}
