import Engine

/// Exact, order-free summation of per-chunk partial sums across chunks and ranks (design §2.4).
///
/// For each segment (a named tensor) the global maximum magnitude M is found with one
/// `MPI_MAX` allreduce over all segments at once. With e = ⌊log₂ M⌋, every partial x is
/// turned into the 64-bit integer q = round_half_even(x · 2^s), s = 61 − headroomBits − e,
/// so |q| ≤ 2^(62 − headroomBits); the integers are summed locally and across ranks with an
/// `MPI_INT64_T` sum allreduce, which cannot overflow for up to 2^headroomBits chunks and is
/// exact in any order. The sum goes back to Float as Float(Σq) · 2^−s.
///
/// Postconditions:
/// - The result is a function of the multiset of partials only: the same bits for any split
///   of the chunks over ranks and threads, and any order.
/// - Each partial is quantised with absolute error ≤ 2^−(s+1) < M·2^−(62−headroomBits), so
///   the sum of K partials is within K·M·2^−38 of the real sum before its one final Float
///   rounding (relative 2^−24); partials smaller than M·2^−39 in magnitude contribute 0.
/// - ±0 sums to +0. A segment that is all zeros sums to +0.
/// - NaN or ±infinity in any partial, on any rank, makes every rank throw
///   `EngineError.nonFinite` naming the segment: non-finite values are reported, not summed.
public final class ExactReducer: ChunkSumReducer {
    /// log₂ of the most chunks one sum may cover (16,777,216).
    public static let headroomBits = 24
    public let communicator: Communicator
    /// What `nonFinite` errors say the values were (e.g. "at step 12").
    public var context = ""
    private var maxima: [Float] = []
    private var integers: [Int64] = []

    public init(communicator: Communicator) {
        self.communicator = communicator
    }

    public func sumChunks(_ partials: UnsafePointer<Float>, rows: Int, width: Int,
                          segments: [SumSegment], into result: UnsafeMutablePointer<Float>) throws {
        precondition(rows <= 1 << ExactReducer.headroomBits, "too many chunks for the fixed-point headroom")
        maxima = [Float](repeating: 0, count: segments.count)
        for (k, segment) in segments.enumerated() {
            var largest = SIMD16<Float>(), poison = SIMD16<Float>()
            var m: Float = 0, scalarPoison: Float = 0
            for r in 0..<rows {
                let row = partials + r * width
                var i = segment.range.lowerBound
                while i + 16 <= segment.range.upperBound {
                    let v = UnsafeRawPointer(row + i).loadUnaligned(as: SIMD16<Float>.self)
                    largest = pointwiseMax(largest, pointwiseMax(v, -v))
                    poison += v - v  // NaN wherever v is NaN or infinite, else 0
                    i += 16
                }
                while i < segment.range.upperBound {
                    m = max(m, abs(row[i]))
                    scalarPoison += row[i] - row[i]
                    i += 1
                }
            }
            let finite = (poison.sum() + scalarPoison).isFinite
            maxima[k] = finite ? max(m, largest.max()) : .infinity
        }
        try communicator.allreduceMax(&maxima)
        if let bad = maxima.firstIndex(where: { !$0.isFinite }) {
            throw EngineError.nonFinite("non-finite value (NaN or infinity) in \(segments[bad].name)\(context.isEmpty ? "" : " " + context)")
        }
        if integers.count != width { integers = [Int64](repeating: 0, count: width) }
        integers.withUnsafeMutableBufferPointer { sums in
            for (k, segment) in segments.enumerated() {
                let scale = Double(sign: .plus, exponent: ExactReducer.scaleExponent(maximum: maxima[k]), significand: 1)
                for i in segment.range { sums[i] = 0 }
                for r in 0..<rows {
                    let row = partials + r * width
                    var i = segment.range.lowerBound
                    while i + 8 <= segment.range.upperBound {
                        let v = SIMD8<Double>(UnsafeRawPointer(row + i).loadUnaligned(as: SIMD8<Float>.self)) * scale
                        let q = SIMD8<Int64>(v, rounding: .toNearestOrEven)
                        let target = UnsafeMutableRawPointer(sums.baseAddress! + i)
                        target.storeBytes(of: target.loadUnaligned(as: SIMD8<Int64>.self) &+ q, as: SIMD8<Int64>.self)
                        i += 8
                    }
                    while i < segment.range.upperBound {
                        sums[i] &+= Int64((Double(row[i]) * scale).rounded(.toNearestOrEven))
                        i += 1
                    }
                }
            }
        }
        try communicator.allreduceSum(&integers)
        for (k, segment) in segments.enumerated() {
            let unscale = Double(sign: .plus, exponent: -ExactReducer.scaleExponent(maximum: maxima[k]), significand: 1)
            for i in segment.range {
                result[i] = Float(Double(Float(integers[i])) * unscale)
            }
        }
    }

    /// s such that M·2^s < 2^(62 − headroomBits).
    static func scaleExponent(maximum: Float) -> Int {
        maximum == 0 ? 0 : 61 - headroomBits - Int(maximum.exponent)
    }
}
