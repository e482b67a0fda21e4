import Foundation
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
import PostgresNIO
import Synchronization
import Testing

@Suite("Sealing: AES-256-GCM with associated data and a key ring")
struct SealingTests {
    let context = SealContext(vaultID: UUID(), credentialID: UUID())
    let plaintext = Array(#"{"token":"ghp_secret"}"#.utf8)

    @Test func roundTrip() throws {
        let sealer = Sealer(keyRing: KeyRing(current: .generate()))
        let sealed = try sealer.seal(self.plaintext, context: self.context)
        #expect(sealed.keyVersion == sealer.keyRing.current.version)
        #expect(try sealer.open(sealed, context: self.context) == self.plaintext)
        // nonce (12) + ciphertext + tag (16), and the plaintext is not in it.
        #expect(sealed.blob.count == self.plaintext.count + 28)
        #expect(!String(decoding: sealed.blob, as: UTF8.self).contains("ghp_secret"))
    }

    @Test func everySealUsesAFreshNonce() throws {
        let sealer = Sealer(keyRing: KeyRing(current: .generate()))
        let blobs = try (0..<50).map { _ in try sealer.seal(self.plaintext, context: self.context).blob }
        #expect(Set(blobs.map { Array($0.prefix(12)) }).count == 50)
    }

    @Test func tamperedCiphertextDoesNotOpen() throws {
        let sealer = Sealer(keyRing: KeyRing(current: .generate()))
        let sealed = try sealer.seal(self.plaintext, context: self.context)
        for index in [0, 12, sealed.blob.count / 2, sealed.blob.count - 1] {
            var blob = sealed.blob
            blob[index] ^= 0x01
            #expect(throws: OpenError.authenticationFailed) {
                try sealer.open(SealedValue(blob: blob, keyVersion: sealed.keyVersion), context: self.context)
            }
        }
        #expect(throws: OpenError.authenticationFailed) {
            try sealer.open(
                SealedValue(blob: Array(sealed.blob.prefix(20)), keyVersion: sealed.keyVersion), context: self.context)
        }
    }

    @Test func blobBoundToItsRowDoesNotOpenElsewhere() throws {
        let sealer = Sealer(keyRing: KeyRing(current: .generate()))
        let sealed = try sealer.seal(self.plaintext, context: self.context)
        let otherCredential = SealContext(vaultID: self.context.vaultID, credentialID: UUID())
        let otherVault = SealContext(vaultID: UUID(), credentialID: self.context.credentialID)
        #expect(throws: OpenError.authenticationFailed) { try sealer.open(sealed, context: otherCredential) }
        #expect(throws: OpenError.authenticationFailed) { try sealer.open(sealed, context: otherVault) }
    }

    @Test func wrongKeyDoesNotOpen() throws {
        let sealed = try Sealer(keyRing: KeyRing(current: .generate())).seal(self.plaintext, context: self.context)
        let stranger = Sealer(keyRing: KeyRing(current: .generate()))
        #expect(throws: OpenError.unknownKeyVersion(sealed.keyVersion)) {
            try stranger.open(sealed, context: self.context)
        }
        // Even a key claiming the right version (a forged version number) fails authentication.
        let relabelled = SealedValue(blob: sealed.blob, keyVersion: stranger.keyRing.current.version)
        #expect(throws: OpenError.authenticationFailed) { try stranger.open(relabelled, context: self.context) }
    }

    @Test func previousKeysStillOpenAndNewSealsUseTheCurrentKey() throws {
        let old = MasterKey.generate()
        let new = MasterKey.generate()
        let sealedUnderOld = try Sealer(keyRing: KeyRing(current: old)).seal(self.plaintext, context: self.context)
        let ring = Sealer(keyRing: KeyRing(current: new, previous: [old]))
        #expect(try ring.open(sealedUnderOld, context: self.context) == self.plaintext)
        #expect(try ring.seal(self.plaintext, context: self.context).keyVersion == new.version)
    }

    @Test func masterKeyParsing() throws {
        let hex = String(repeating: "ab", count: 32)
        #expect(try MasterKey(hex: hex).hex == hex)
        #expect(try MasterKey(hex: hex.uppercased()).version == MasterKey(hex: hex).version)
        for bad in [
            "", "abc", String(repeating: "a", count: 63), String(repeating: "g", count: 64),
            String(repeating: "a", count: 66),
        ] {
            #expect(throws: KeyRingError.self) { try MasterKey(hex: bad) }
        }
        #expect(throws: KeyRingError.self) { try KeyRing(currentHex: nil, previousHex: nil) }
        #expect(throws: KeyRingError.self) { try KeyRing(currentHex: hex, previousHex: "\(hex),short") }
        let ring = try KeyRing(currentHex: hex, previousHex: " \(String(repeating: "cd", count: 32)) , ")
        #expect(ring.previous.count == 1)
    }
}

@Suite("Rekey and the start-up key check, against Postgres")
struct RekeyTests {
    @Test func rekeyResealsEveryRowUnderTheCurrentKeyInBatches() async throws {
        try await TestDatabase.withFresh { database in
            let old = MasterKey.generate()
            let new = MasterKey.generate()
            try await database.withClient { client in
                let logger = Logger(label: "test")
                let oldStore = VaultStore(
                    client: client, sealer: Sealer(keyRing: KeyRing(current: old)), logger: logger)
                for index in 0..<25 {
                    try await oldStore.seedBearer("token\(index)", token: "value-\(index)")
                }
                let both = Sealer(keyRing: KeyRing(current: new, previous: [old]))
                let maintenance = KeyRingMaintenance(client: client, sealer: both, logger: logger)
                #expect(try await maintenance.rowsNeedingRekey() == 25)
                #expect(try await maintenance.rekey(batchSize: 7) == 25)
                #expect(try await maintenance.rowsNeedingRekey() == 0)
                #expect(try await maintenance.rekey() == 0)

                // The old key is no longer needed: the new key alone opens every row.
                let newOnly = VaultStore(client: client, sealer: Sealer(keyRing: KeyRing(current: new)), logger: logger)
                for index in 0..<25 {
                    #expect(
                        try await newOnly.openValue(vault: "default", name: "token\(index)")["token"]
                            == .string("value-\(index)"))
                }
                try await KeyRingMaintenance(
                    client: client, sealer: Sealer(keyRing: KeyRing(current: new)), logger: logger
                ).verify()
            }
        }
    }

    @Test func verifyRefusesKeysThatCannotOpenStoredRows() async throws {
        try await TestDatabase.withFresh { database in
            let key = MasterKey.generate()
            try await database.withClient { client in
                let logger = Logger(label: "test")
                let store = VaultStore(client: client, sealer: Sealer(keyRing: KeyRing(current: key)), logger: logger)
                try await store.seedBearer("one", token: "x")
                let stranger = KeyRingMaintenance(
                    client: client, sealer: Sealer(keyRing: KeyRing(current: .generate())), logger: logger)
                await #expect(throws: KeyRingMismatch.self) { try await stranger.verify() }
                // A damaged row is caught too, not just an unknown key version.
                try await client.query("UPDATE credentials SET sealed = sealed || '\\x00'::bytea")
                await #expect(throws: KeyRingMismatch.self) {
                    try await KeyRingMaintenance(
                        client: client, sealer: Sealer(keyRing: KeyRing(current: key)), logger: logger
                    ).verify()
                }
            }
        }
    }

    @Test func aSealedBlobCopiedToAnotherRowDoesNotOpen() async throws {
        try await TestDatabase.withFresh { database in
            let key = MasterKey.generate()
            try await database.withClient { client in
                let store = VaultStore(
                    client: client, sealer: Sealer(keyRing: KeyRing(current: key)), logger: Logger(label: "test"))
                for (name, token) in [("alpha", "alpha-secret"), ("beta", "beta-secret")] {
                    try await store.seedBearer(name, token: token)
                }
                try await client.query(
                    "UPDATE credentials SET sealed = (SELECT sealed FROM credentials WHERE name = 'alpha') WHERE name = 'beta'"
                )
                await #expect(throws: OpenError.authenticationFailed) {
                    try await store.openValue(vault: "default", name: "beta")
                }
                #expect(try await store.openValue(vault: "default", name: "alpha")["token"] == .string("alpha-secret"))
            }
        }
    }
}
