package import Crypto
package import Foundation

// AWS Signature Version 4 (SigV4) request signing, header form ("Authorization" header).
//
// The Latchkey sidecar sends the method, path, query, headers and the SHA-256 of the body of a request it is
// about to forward; Latchkey answers the headers to set on it. The body itself never reaches Latchkey, so the
// signer takes the payload hash, not the payload.
//
// The steps follow AWS's "Create a signed AWS API request" guide: build the canonical request, hash it into
// the string to sign, derive the signing key from the secret, and put the HMAC into the Authorization header.
// It is checked against AWS's published SigV4 test suite (Tests/LatchkeyTests/SigV4Tests.swift).

/// The AWS credentials and scope a request is signed for.
package struct SigV4Credentials: Sendable, Hashable {
    package var accessKeyID: String
    package var secretAccessKey: String
    /// A temporary session token (from STS); sent as `X-Amz-Security-Token`.
    package var sessionToken: String?
    /// The region in the credential scope, e.g. `us-east-1`.
    package var region: String
    /// The signing name of the service in the credential scope, e.g. `s3`, `sqs`, `execute-api`.
    package var service: String

    package init(
        accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, region: String, service: String
    ) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.region = region
        self.service = service
    }
}

/// A request as it will be sent, minus its body.
package struct SigV4Request: Sendable {
    /// The HTTP method, exactly as sent (`GET`, `POST`, ...).
    package var method: String
    /// The path as sent on the wire, starting with `/`, percent-encoded as the client encoded it, without
    /// the query.
    package var path: String
    /// The raw query string without the leading `?`; empty when there is none.
    package var query: String
    /// The header fields in the order they are sent. Names may repeat. Must include `Host`.
    package var headers: [(name: String, value: String)]
    /// The lowercase hex SHA-256 of the body (the empty body's is `e3b0c442...b855`), or `UNSIGNED-PAYLOAD`
    /// for S3 requests that do not sign their body.
    package var payloadSHA256Hex: String

    package init(
        method: String, path: String, query: String = "", headers: [(String, String)], payloadSHA256Hex: String
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers.map { (name: $0.0, value: $0.1) }
        self.payloadSHA256Hex = payloadSHA256Hex
    }
}

/// The per-service variations of SigV4. ``defaults(forService:)`` picks AWS's rules for a service name.
package struct SigV4Options: Sendable, Hashable {
    /// Normalise the URI path (RFC 3986 "remove dot segments" and collapse repeated slashes) before
    /// encoding it. AWS does this for every service except S3, whose object keys may contain `//` and `.`.
    package var normalizesPath: Bool
    /// URI-encode the (already encoded) path once more, so each path segment ends up encoded twice. AWS
    /// requires this for every service except S3, which encodes it once.
    package var doubleEncodesPath: Bool
    /// Add and sign an `X-Amz-Content-Sha256` header with the payload hash. S3 requires it on every
    /// SigV4-signed request; other services ignore it, so it is off for them.
    package var addsContentSHA256Header: Bool
    /// Whether `X-Amz-Security-Token` is part of the signature (what the AWS SDKs do, the default) or only
    /// added after signing (what a few services such as AWS IoT expect; the suite's `post-sts-header-after`).
    package var signsSessionToken: Bool

    package init(
        normalizesPath: Bool = true, doubleEncodesPath: Bool = true, addsContentSHA256Header: Bool = false,
        signsSessionToken: Bool = true
    ) {
        self.normalizesPath = normalizesPath
        self.doubleEncodesPath = doubleEncodesPath
        self.addsContentSHA256Header = addsContentSHA256Header
        self.signsSessionToken = signsSessionToken
    }

    /// Signing names that follow S3's rules: single path encoding, no normalisation, `X-Amz-Content-Sha256`.
    package static let s3StyleServices: Set<String> = ["s3", "s3-object-lambda", "s3-outposts"]

    /// AWS's rules for `service`: the S3 variations for the S3 signing names, the general ones otherwise.
    package static func defaults(forService service: String) -> SigV4Options {
        if Self.s3StyleServices.contains(service) {
            return SigV4Options(normalizesPath: false, doubleEncodesPath: false, addsContentSHA256Header: true)
        }
        return SigV4Options()
    }
}

/// The result of signing: the headers to set, and the intermediate strings for debugging and tests.
package struct SigV4Signature: Sendable, Hashable {
    /// AWS's "canonical request".
    package let canonicalRequest: String
    /// AWS's "string to sign".
    package let stringToSign: String
    /// `yyyyMMdd/region/service/aws4_request`.
    package let credentialScope: String
    /// The lowercase header names that were signed, `;`-separated.
    package let signedHeaders: String
    /// The hex HMAC-SHA256 signature.
    package let signature: String
    /// The `Authorization` header value.
    package let authorization: String
    /// The `X-Amz-Date` header value (the request's own when it had one).
    package let amzDate: String
    /// The `X-Amz-Security-Token` header value, when the credentials have a session token.
    package let securityToken: String?
    /// The `X-Amz-Content-Sha256` header value, when ``SigV4Options/addsContentSHA256Header`` is on.
    package let contentSHA256: String?

    /// The headers to set on the request, each replacing any field of the same name: `Authorization`,
    /// `X-Amz-Date`, then `X-Amz-Security-Token` and `X-Amz-Content-Sha256` when they apply.
    package var headers: [(name: String, value: String)] {
        var headers = [(name: "Authorization", value: self.authorization), (name: "X-Amz-Date", value: self.amzDate)]
        if let token = self.securityToken { headers.append((name: "X-Amz-Security-Token", value: token)) }
        if let hash = self.contentSHA256 { headers.append((name: "X-Amz-Content-Sha256", value: hash)) }
        return headers
    }
}

/// Why a request cannot be signed. ``field`` names the offending input; the message never repeats header
/// values, which may be secrets.
package struct SigV4Error: Error, Sendable, Hashable, CustomStringConvertible {
    package enum Kind: Sendable, Hashable {
        case invalidMethod
        case invalidPath
        case invalidQuery
        case invalidHeaderName
        case invalidHeaderValue
        case missingHeader
        case conflictingHeader
        case invalidDate
        case invalidPayloadHash
        case invalidCredentials
    }

    package let kind: Kind
    /// The input at fault: `method`, `path`, `query`, `headers["Name"]`, `payloadSHA256Hex`, `credentials.region`...
    package let field: String
    package let message: String

    package init(_ kind: Kind, field: String, _ message: String) {
        self.kind = kind
        self.field = field
        self.message = message
    }

    package var description: String { "SigV4: \(self.field): \(self.message)" }
}

package enum SigV4 {
    /// The algorithm name in the string to sign and the Authorization header.
    package static let algorithm = "AWS4-HMAC-SHA256"
    /// The payload hash S3 accepts in place of a body hash.
    package static let unsignedPayload = "UNSIGNED-PAYLOAD"

    /// Header fields never signed: `Authorization` (it is what signing replaces), hop-by-hop fields that a
    /// proxy may rewrite (RFC 9110 section 7.6.1), and the fields the AWS SDKs leave unsigned because
    /// intermediaries change them (`User-Agent`, `Expect`, `X-Amzn-Trace-Id`).
    package static let unsignedHeaderNames: Set<String> = [
        "authorization", "connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
        "transfer-encoding", "upgrade", "expect", "user-agent", "x-amzn-trace-id",
    ]

    /// Signs `request`.
    ///
    /// The signing time is the request's own `X-Amz-Date` header when it has one, otherwise `date`, in which
    /// case `X-Amz-Date` is added to the signed headers. With a session token, `X-Amz-Security-Token` is
    /// signed (unless ``SigV4Options/signsSessionToken`` is off); a request that already carries it must carry
    /// the same token. `options` defaults to ``SigV4Options/defaults(forService:)``.
    package static func sign(
        _ request: SigV4Request, credentials: SigV4Credentials, date: Date, options: SigV4Options? = nil
    ) throws(SigV4Error) -> SigV4Signature {
        let options = options ?? .defaults(forService: credentials.service)
        let prepared = try Self.prepare(request, credentials: credentials, date: date, options: options)
        let scope = Self.credentialScope(dateStamp: prepared.dateStamp, credentials: credentials)
        let stringToSign = Self.stringToSign(
            canonicalRequest: prepared.canonicalRequest, amzDate: prepared.amzDate, credentialScope: scope)
        let key = Self.signingKey(credentials: credentials, dateStamp: prepared.dateStamp)
        let signature = Hex.lowercase(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
        let authorization =
            "\(Self.algorithm) Credential=\(credentials.accessKeyID)/\(scope), "
            + "SignedHeaders=\(prepared.signedHeaders), Signature=\(signature)"
        return SigV4Signature(
            canonicalRequest: prepared.canonicalRequest, stringToSign: stringToSign, credentialScope: scope,
            signedHeaders: prepared.signedHeaders, signature: signature, authorization: authorization,
            amzDate: prepared.amzDate, securityToken: credentials.sessionToken,
            contentSHA256: options.addsContentSHA256Header ? prepared.payloadHash : nil)
    }

    /// AWS's "canonical request" for `request`, exactly as ``sign(_:credentials:date:options:)`` builds it
    /// (including the `X-Amz-Date`, `X-Amz-Security-Token` and `X-Amz-Content-Sha256` headers it adds):
    ///
    ///     Method \n CanonicalURI \n CanonicalQueryString \n CanonicalHeaders \n SignedHeaders \n HashedPayload
    package static func canonicalRequest(
        _ request: SigV4Request, credentials: SigV4Credentials, date: Date, options: SigV4Options? = nil
    ) throws(SigV4Error) -> String {
        let options = options ?? .defaults(forService: credentials.service)
        return try Self.prepare(request, credentials: credentials, date: date, options: options).canonicalRequest
    }

    /// AWS's "string to sign": the algorithm, the request date-time, the credential scope and the hex SHA-256
    /// of the canonical request, one per line.
    package static func stringToSign(canonicalRequest: String, amzDate: String, credentialScope: String) -> String {
        let hash = Hex.lowercase(SHA256.hash(data: Data(canonicalRequest.utf8)))
        return "\(Self.algorithm)\n\(amzDate)\n\(credentialScope)\n\(hash)"
    }

    /// AWS's "derive a signing key": kDate = HMAC("AWS4" + secret, date), kRegion = HMAC(kDate, region),
    /// kService = HMAC(kRegion, service), kSigning = HMAC(kService, "aws4_request").
    package static func signingKey(credentials: SigV4Credentials, dateStamp: String) -> SymmetricKey {
        var key = SymmetricKey(data: Data("AWS4\(credentials.secretAccessKey)".utf8))
        for part in [dateStamp, credentials.region, credentials.service, "aws4_request"] {
            key = SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key))
        }
        return key
    }

    /// `yyyyMMdd/region/service/aws4_request`.
    static func credentialScope(dateStamp: String, credentials: SigV4Credentials) -> String {
        "\(dateStamp)/\(credentials.region)/\(credentials.service)/aws4_request"
    }

    // MARK: - The canonical request

    struct Prepared {
        var canonicalRequest: String
        var signedHeaders: String
        var amzDate: String
        var dateStamp: String
        var payloadHash: String
    }

    static func prepare(
        _ request: SigV4Request, credentials: SigV4Credentials, date: Date, options: SigV4Options
    ) throws(SigV4Error) -> Prepared {
        try Self.validate(credentials)
        guard !request.method.isEmpty, request.method.utf8.allSatisfy(Self.isTokenCharacter) else {
            throw SigV4Error(.invalidMethod, field: "method", "must be an HTTP method token such as GET")
        }
        let payloadHash = try Self.payloadHash(request.payloadSHA256Hex)
        let canonicalURI = try Self.canonicalURI(request.path, options: options)
        let canonicalQuery = try Self.canonicalQueryString(request.query)

        var headers = try Self.canonicalHeaderValues(request.headers)
        guard let host = headers["host"], host.count == 1, !host[0].isEmpty else {
            let problem = headers["host"] == nil ? "is missing" : "must appear once, with a value"
            throw SigV4Error(.missingHeader, field: "headers[\"Host\"]", "\(problem): the Host header is always signed")
        }

        let amzDate: String
        if let given = headers["x-amz-date"] {
            amzDate = given.joined(separator: ",")
            guard Self.isAmzDate(amzDate) else {
                throw SigV4Error(
                    .invalidDate, field: "headers[\"X-Amz-Date\"]",
                    "must appear once, as an ISO 8601 basic UTC date-time such as 20150830T123600Z")
            }
        } else {
            amzDate = try Self.amzDate(date)
            headers["x-amz-date"] = [amzDate]
        }

        if let given = headers["x-amz-security-token"] {
            guard let token = credentials.sessionToken, given == [token] else {
                throw SigV4Error(
                    .conflictingHeader, field: "headers[\"X-Amz-Security-Token\"]",
                    "differs from the credentials' session token; remove it before signing")
            }
        }
        if let token = credentials.sessionToken {
            headers["x-amz-security-token"] = options.signsSessionToken ? [token] : nil
        }

        if let given = headers["x-amz-content-sha256"], given != [payloadHash] {
            throw SigV4Error(
                .conflictingHeader, field: "headers[\"X-Amz-Content-Sha256\"]",
                "differs from payloadSHA256Hex; remove it before signing")
        }
        if options.addsContentSHA256Header { headers["x-amz-content-sha256"] = [payloadHash] }

        // AWS's "canonical headers": lowercase names sorted by character code, each followed by ':' and its
        // values joined by ',' in the order sent, one per line; "signed headers" lists the same names.
        let names = headers.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        let canonicalHeaders = names.map { "\($0):\(headers[$0]!.joined(separator: ","))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")

        let canonicalRequest = [
            request.method, canonicalURI, canonicalQuery, canonicalHeaders, signedHeaders, payloadHash,
        ].joined(separator: "\n")
        return Prepared(
            canonicalRequest: canonicalRequest, signedHeaders: signedHeaders, amzDate: amzDate,
            dateStamp: String(amzDate.prefix(8)), payloadHash: payloadHash)
    }

    static func validate(_ credentials: SigV4Credentials) throws(SigV4Error) {
        // These go into the credential scope and the Authorization header, whose syntax uses '/', ',' and ' '.
        let scoped = [
            ("accessKeyID", credentials.accessKeyID), ("region", credentials.region),
            ("service", credentials.service),
        ]
        for (field, value) in scoped {
            guard !value.isEmpty,
                value.utf8.allSatisfy({ Self.isUnreserved($0) })
            else {
                throw SigV4Error(
                    .invalidCredentials, field: "credentials.\(field)",
                    "must be non-empty and use only letters, digits, '-', '_', '.' and '~'")
            }
        }
        guard !credentials.secretAccessKey.isEmpty else {
            throw SigV4Error(.invalidCredentials, field: "credentials.secretAccessKey", "must not be empty")
        }
        if let token = credentials.sessionToken {
            guard !token.isEmpty, token.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw SigV4Error(
                    .invalidCredentials, field: "credentials.sessionToken",
                    "must be non-empty printable ASCII without spaces (it is sent as a header)")
            }
        }
    }

    /// The payload hash, lowercased: 64 hex digits or `UNSIGNED-PAYLOAD`.
    static func payloadHash(_ given: String) throws(SigV4Error) -> String {
        if given == Self.unsignedPayload { return given }
        guard given.utf8.count == 64, given.utf8.allSatisfy({ Self.hexValue($0) != nil }) else {
            throw SigV4Error(
                .invalidPayloadHash, field: "payloadSHA256Hex",
                "must be the 64 hex digits of the body's SHA-256 (or UNSIGNED-PAYLOAD)")
        }
        return given.lowercased()
    }

    // MARK: Path

    /// AWS's "canonical URI": the path, normalised (except S3) and URI-encoded, each segment twice (except S3).
    ///
    /// `path` is the path as sent, already encoded once by the client. Like the AWS SDKs, the general rule
    /// normalises that wire form and encodes it once more (so `%` becomes `%25`). For S3 the wire form is
    /// decoded and encoded once with AWS's rules, which leaves a correctly encoded path unchanged.
    package static func canonicalURI(_ path: String, options: SigV4Options) throws(SigV4Error) -> String {
        guard path.utf8.first == UInt8(ascii: "/") else {
            throw SigV4Error(.invalidPath, field: "path", "must start with '/'")
        }
        // A request target is visible ASCII (RFC 9112 section 3.2); the query travels separately.
        guard
            path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") })
        else {
            throw SigV4Error(
                .invalidPath, field: "path", "must be percent-encoded visible ASCII without '?', '#' or spaces")
        }
        guard Self.percentDecode(path.utf8) != nil else {
            throw SigV4Error(.invalidPath, field: "path", "has a '%' not followed by two hex digits")
        }
        let wire = options.normalizesPath ? Self.removingDotSegments(path) : path
        // Segment by segment, so that an encoded '/' (%2F) inside a segment stays encoded.
        return wire.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).map { segment in
            options.doubleEncodesPath
                ? Self.uriEncode(segment, keepingSlash: false)
                : Self.uriEncode(Self.percentDecode(segment) ?? [], keepingSlash: false)
        }.joined(separator: "/")
    }

    /// RFC 3986 section 5.2.4 "remove dot segments", also dropping empty segments (collapsing `//` to `/`) as
    /// AWS does; a trailing slash is kept. `/a/./b/../c//` becomes `/a/c/`.
    static func removingDotSegments(_ path: String) -> String {
        var segments: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: false) {
            switch segment {
            case "", ".": continue
            case "..": _ = segments.popLast()
            default: segments.append(segment)
            }
        }
        var result = "/" + segments.joined(separator: "/")
        let endsInDirectory = ["/", "/.", "/.."].contains { path.hasSuffix($0) }
        if endsInDirectory && !result.hasSuffix("/") { result += "/" }
        return result
    }

    // MARK: Query

    /// AWS's "canonical query string": each `name=value` pair (a bare `name` gets an empty value) decoded from
    /// the raw query, re-encoded with AWS's rules, sorted by encoded name and then encoded value, joined by
    /// `&`.
    ///
    /// `+` is taken literally (`%2B`), not as a space: the query is RFC 3986, not a form body, and AWS's rule
    /// is that a space is `%20`.
    package static func canonicalQueryString(_ query: String) throws(SigV4Error) -> String {
        guard query.utf8.allSatisfy({ $0 >= 0x20 && $0 != 0x7F && $0 != UInt8(ascii: "#") }) else {
            throw SigV4Error(.invalidQuery, field: "query", "must not contain control characters or '#'")
        }
        var pairs: [(name: String, value: String)] = []
        for parameter in query.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let parts = parameter.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = Self.percentDecode(parts[0]),
                let value = parts.count > 1 ? Self.percentDecode(parts[1]) : []
            else {
                throw SigV4Error(.invalidQuery, field: "query", "has a '%' not followed by two hex digits")
            }
            pairs.append(
                (name: Self.uriEncode(name, keepingSlash: false), value: Self.uriEncode(value, keepingSlash: false)))
        }
        pairs.sort { a, b in
            a.name == b.name
                ? a.value.utf8.lexicographicallyPrecedes(b.value.utf8)
                : a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
        return pairs.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
    }

    // MARK: Headers

    /// Lowercased names mapped to their values in the order sent, each value trimmed and with every run of
    /// whitespace (spaces, tabs, and obsolete line folding) collapsed to one space: AWS's "Trimall".
    static func canonicalHeaderValues(
        _ headers: [(name: String, value: String)]
    ) throws(SigV4Error)
        -> [String: [String]]
    {
        var values: [String: [String]] = [:]
        for (name, value) in headers {
            guard !name.isEmpty, name.utf8.allSatisfy(Self.isTokenCharacter) else {
                throw SigV4Error(
                    .invalidHeaderName, field: "headers[\(Self.quoted(name))]",
                    "a header name must be a non-empty HTTP token: no spaces, ':' or control characters")
            }
            let lowercased = name.lowercased()
            if Self.unsignedHeaderNames.contains(lowercased) { continue }
            guard let trimmed = Self.trimAll(value) else {
                throw SigV4Error(
                    .invalidHeaderValue, field: "headers[\(Self.quoted(name))]",
                    "has a control character, or a line break not followed by a space or tab (line folding)")
            }
            values[lowercased, default: []].append(trimmed)
        }
        return values
    }

    /// Trims and collapses whitespace; nil for control characters other than tab and obs-fold line breaks.
    static func trimAll(_ value: String) -> String? {
        let bytes = Array(value.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var pendingSpace = false
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: " "), UInt8(ascii: "\t"):
                pendingSpace = true
            case UInt8(ascii: "\r"), UInt8(ascii: "\n"):
                // Obsolete line folding (RFC 9112 section 5.2): CRLF or LF, then at least one space or tab.
                var next = index + 1
                if byte == UInt8(ascii: "\r") {
                    guard next < bytes.count, bytes[next] == UInt8(ascii: "\n") else { return nil }
                    next += 1
                }
                guard next < bytes.count, bytes[next] == UInt8(ascii: " ") || bytes[next] == UInt8(ascii: "\t")
                else { return nil }
                pendingSpace = true
                index = next
            case 0x00..<0x20, 0x7F:
                return nil
            default:
                if pendingSpace && !out.isEmpty { out.append(UInt8(ascii: " ")) }
                pendingSpace = false
                out.append(byte)
            }
            index += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: Dates

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC, AWS's "X-Amz-Date" format.
    static func amzDate(_ date: Date) throws(SigV4Error) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        guard let year = parts.year, (1...9999).contains(year), let month = parts.month, let day = parts.day,
            let hour = parts.hour, let minute = parts.minute, let second = parts.second
        else {
            throw SigV4Error(.invalidDate, field: "date", "must be between the years 1 and 9999")
        }
        func pad(_ value: Int, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return pad(year, 4) + pad(month, 2) + pad(day, 2) + "T" + pad(hour, 2) + pad(minute, 2) + pad(second, 2) + "Z"
    }

    static func isAmzDate(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard bytes.count == 16, bytes[8] == UInt8(ascii: "T"), bytes[15] == UInt8(ascii: "Z") else { return false }
        return (bytes[0..<8] + bytes[9..<15]).allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }

    // MARK: - Encoding

    // AWS's "URI encode" is its own: only the RFC 3986 unreserved characters A-Z a-z 0-9 - _ . ~ stay as they
    // are, everything else becomes %XY with uppercase hex, byte by byte of the UTF-8 ('/' too, except between
    // path segments). Foundation's URLComponents / addingPercentEncoding keep other characters (sub-delims
    // such as '!', '$', '+', ':', '@' ...) and treat an existing '%' differently, so they do not match.

    static func uriEncode(_ bytes: some Sequence<UInt8>, keepingSlash: Bool) -> String {
        let hexDigits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            if Self.isUnreserved(byte) || (keepingSlash && byte == UInt8(ascii: "/")) {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "%"), hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes `%XY` escapes (and nothing else: `+` stays `+`); nil if a `%` is not followed by two hex digits.
    static func percentDecode(_ bytes: some Collection<UInt8>) -> [UInt8]? {
        var out: [UInt8] = []
        var iterator = bytes.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                out.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue)
            else { return nil }
            out.append(high << 4 | low)
        }
        return out
    }

    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
            UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// RFC 9110 `tchar`: the characters of a header name or method.
    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
            UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "^"), UInt8(ascii: "`"),
            UInt8(ascii: "|"):
            return true
        default:
            return Self.isUnreserved(byte)
        }
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// A header name for an error message: quoted, escaped and cut to 64 characters.
    static func quoted(_ name: String) -> String {
        let escaped = String(reflecting: name)
        return escaped.count > 66 ? String(escaped.prefix(63)) + "...\"" : escaped
    }
}
