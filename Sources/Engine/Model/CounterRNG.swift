/// A counter-based random number generator: the value at `(key, counter)` is a pure function
/// of them, so any sample, tensor or epoch draws its numbers without sharing state, in any
/// order, on any rank (docs/architecture.md §2.1).
///
/// The mixing function is SplitMix64's finaliser applied twice over the key and the counter
/// — a bijection per round with full avalanche, plenty for shuffling and initialisation.
public struct CounterRNG: Sendable {
    public let key: UInt64

    public init(seed: UInt64, stream: UInt64) {
        key = CounterRNG.mix(seed &+ CounterRNG.mix(stream &+ 0x9E37_79B9_7F4A_7C15))
    }

    public init(seed: UInt64, stream: String) {
        self.init(seed: seed, stream: CounterRNG.hash(stream))
    }

    /// 64 random bits for `counter`.
    @inlinable public func bits(_ counter: UInt64) -> UInt64 {
        CounterRNG.mix(key ^ CounterRNG.mix(counter &* 0xD1B5_4A32_D192_ED03 &+ 0x8CB9_2BA7_2F3D_8DD7))
    }

    /// Uniform in [0, 1) with 24 random bits: every value is exactly representable.
    @inlinable public func unitFloat(_ counter: UInt64) -> Float {
        Float(bits(counter) >> 40) * 0x1p-24
    }

    /// Uniform integer in 0..<bound (Lemire's multiply-shift; bias below 2⁻³² for our bounds).
    @inlinable public func integer(_ counter: UInt64, below bound: Int) -> Int {
        Int(bits(counter).multipliedFullWidth(by: UInt64(bound)).high)
    }

    @inlinable static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// FNV-1a over UTF-8: a stable key for a tensor name, independent of construction order.
    static func hash(_ text: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in text.utf8 {
            h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
        }
        return h
    }
}

extension CounterRNG {
    /// A permutation of 0..<count by Fisher–Yates, each swap drawing counter i.
    public func permutation(count: Int) -> [Int32] {
        var order = (0..<count).map { Int32($0) }
        var i = count - 1
        while i > 0 {
            let j = integer(UInt64(i), below: i + 1)
            order.swapAt(i, j)
            i -= 1
        }
        return order
    }
}
