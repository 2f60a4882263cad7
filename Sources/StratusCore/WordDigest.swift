/// A fast, stable digest of strings and integers: eight bytes at a time, each mixed into
/// two lanes by a 64 x 64 -> 128-bit multiply folded to 64 bits (the mixing step of
/// wyhash), with different constants per lane. Strings are length-terminated, so
/// ("ab", "c") and ("a", "bc") differ. Not cryptographic; the same on every platform.
package struct WordDigest {
    package var a: UInt64 = 0x243f_6a88_85a3_08d3
    package var b: UInt64 = 0x1319_8a2e_0370_7344

    package init() {}

    /// A digest keyed by `seed` (a hash table's seed).
    package init(seed: UInt64) {
        a ^= seed
        b ^= seed
    }

    /// A digest for a hash table with seed `seed` (the `_rawHashValue(seed:)` of IDs and of
    /// billing's hot keys): add the key's fields, then read `tableHash`.
    package init(tableSeed seed: Int) { self.init(seed: UInt64(truncatingIfNeeded: seed)) }

    /// The value a hash table uses.
    package var tableHash: Int { Int(truncatingIfNeeded: a) }

    @inline(__always) package static func mum(_ x: UInt64, _ y: UInt64) -> UInt64 {
        let r = x.multipliedFullWidth(by: y)
        return r.high ^ r.low
    }

    @inline(__always) package mutating func add(_ w: UInt64) {
        a = Self.mum(a ^ w ^ 0xa076_1d64_78bd_642f, 0xe703_7ed1_a0b4_28db)
        b = Self.mum(b ^ w ^ 0x8ebc_6af0_9c88_c6e3, 0x5899_65cc_7537_4cc3)
    }

    package mutating func add(_ s: String) {
        var s = s
        s.withUTF8 { bytes in
            let n = bytes.count
            var i = 0
            while i + 8 <= n {
                add(UInt64(littleEndian: UnsafeRawBufferPointer(bytes).loadUnaligned(fromByteOffset: i, as: UInt64.self)))
                i += 8
            }
            if i < n {
                var tail: UInt64 = 0
                var shift: UInt64 = 0
                while i < n {
                    tail |= UInt64(bytes[i]) << shift
                    shift += 8
                    i += 1
                }
                add(tail)
            }
            add(UInt64(n) | 0x8000_0000_0000_0000)
        }
    }
}
