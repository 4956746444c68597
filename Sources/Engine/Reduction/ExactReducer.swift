/// Exact, order-free summation of per-chunk partial sums across chunks and ranks
/// (docs/architecture.md §2.4).
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
    /// Threads for the local passes over the partials (each pass is split into one slice of
    /// every segment per thread; the integer sums do not depend on the split).
    public var executor: ParallelExecutor?
    // Reused across calls, grown to the largest request: no allocation per step.
    private var maxima: [Float] = []
    private var sliceMaxima: [UInt32] = []
    private var integers: [Int64] = []
    /// Where each segment's integers start in `integers`: the segments packed in order.
    private var packedStarts: [Int] = []
    /// Where deferred partials are computed when there is no executor.
    private let scratch = Workspace()

    public init(communicator: Communicator) {
        self.communicator = communicator
    }

    public func sumChunks<Partials: ChunkPartials>(_ partials: Partials, rows: Int, segments: [SumSegment],
                                                   into result: UnsafeMutablePointer<Float>) throws {
        precondition(rows <= 1 << ExactReducer.headroomBits, "too many chunks for the fixed-point headroom")
        let slices = executor?.threadCount ?? 1
        if maxima.count < segments.count { maxima = [Float](repeating: 0, count: segments.count) }
        if sliceMaxima.count < slices * segments.count { sliceMaxima = [UInt32](repeating: 0, count: slices * segments.count) }
        packedStarts.removeAll(keepingCapacity: true)
        var packedCount = 0
        for segment in segments {
            packedStarts.append(packedCount)
            packedCount += segment.range.count
        }
        if integers.count < packedCount { integers = [Int64](repeating: 0, count: packedCount) }
        sliceMaxima.withUnsafeMutableBufferPointer { sliceMaxima in
            sliceMaxima.update(repeating: 0)
            forEachSlice(EachBlock(partials: partials, segments: segments, slices: slices,
                                   task: FindMaxima(sliceMaxima: sliceMaxima, segments: segments, rows: rows)))
            for k in segments.indices {
                let largestBits = (0..<slices).reduce(UInt32(0)) { max($0, sliceMaxima[$1 * segments.count + k]) }
                maxima[k] = largestBits >= 0x7F80_0000 ? .infinity : Float(bitPattern: largestBits)
            }
        }
        try maxima.withUnsafeMutableBufferPointer { try communicator.allreduceMax(UnsafeMutableBufferPointer(rebasing: $0[0..<segments.count])) }
        if let bad = maxima.prefix(segments.count).firstIndex(where: { !$0.isFinite }) {
            throw EngineError.nonFinite("non-finite value (NaN or infinity) in \(segments[bad].name)")
        }
        maxima.withUnsafeBufferPointer { maxima in
            integers.withUnsafeMutableBufferPointer { sums in
                forEachSlice(EachBlock(partials: partials, segments: segments, slices: slices,
                                       task: Quantize(maxima: maxima, sums: sums, segments: segments,
                                                      packedStarts: packedStarts, rows: rows)))
            }
        }
        try integers.withUnsafeMutableBufferPointer { try communicator.allreduceSum(UnsafeMutableBufferPointer(rebasing: $0[0..<packedCount])) }
        // Back to Float: Float(Σq) rounds once; the power-of-two scaling in Double is exact.
        integers.withUnsafeBufferPointer { sums in
            maxima.withUnsafeBufferPointer { maxima in
                forEachSlice(Unscale(sums: sums, maxima: maxima, segments: segments, packedStarts: packedStarts,
                                     slices: slices, result: result))
            }
        }
    }

    /// Runs `task` for each slice t of the work: one slice per executor thread, on those
    /// threads (without an executor, the one slice 0 on this thread).
    private func forEachSlice<Task: ParallelTask>(_ task: Task) {
        if let executor { executor.run(count: executor.threadCount, task) } else { task.run(index: 0, workspace: scratch) }
    }

    /// The work on one block of a segment, given the chunks' partials of the block (chunk r's
    /// at `base + r·rowStride`).
    private protocol BlockTask {
        func run(slice t: Int, segment k: Int, block: Range<Int>, base: UnsafePointer<Float>, rowStride: Int)
    }

    /// Slice t's blocks of each segment, with the chunks' partials of the block.
    private struct EachBlock<Partials: ChunkPartials, Task: BlockTask>: ParallelTask {
        let partials: Partials
        let segments: [SumSegment]
        let slices: Int
        let task: Task

        func run(index t: Int, workspace: Workspace) {
            for (k, segment) in segments.enumerated() {
                for b in ParallelExecutor.part(t, of: slices, 0..<partials.blockCount(of: segment.range)) {
                    let block = partials.block(b, of: segment.range)
                    let (base, rowStride) = partials.rows(block, workspace: workspace)
                    task.run(slice: t, segment: k, block: block, base: base, rowStride: rowStride)
                }
            }
        }
    }

    /// Slice t's largest magnitude of each segment, as bits, into `sliceMaxima[t·segments + k]`.
    private struct FindMaxima: BlockTask {
        let sliceMaxima: UnsafeMutableBufferPointer<UInt32>
        let segments: [SumSegment]
        let rows: Int

        func run(slice t: Int, segment k: Int, block: Range<Int>, base: UnsafePointer<Float>, rowStride: Int) {
            // Non-negative floats order as their bit patterns, and NaN and ±inf have the
            // largest (all-ones exponent): one integer max finds M and flags non-finite values.
            var largest = SIMD16<UInt32>()
            var i = 0
            while i + 16 <= block.count {
                for r in 0..<rows {
                    let bits = UnsafeRawPointer(base + r * rowStride + i).loadUnaligned(as: SIMD16<UInt32>.self)
                    largest = pointwiseMax(largest, bits & 0x7FFF_FFFF)
                }
                i += 16
            }
            var largestBits = max(largest.max(), sliceMaxima[t * segments.count + k])
            for r in 0..<rows {
                let row = base + r * rowStride
                for i in i..<block.count { largestBits = max(largestBits, row[i].bitPattern & 0x7FFF_FFFF) }
            }
            sliceMaxima[t * segments.count + k] = largestBits
        }
    }

    /// Each value's sum over the chunks of its quantised partials, into `sums`.
    private struct Quantize: BlockTask {
        let maxima: UnsafeBufferPointer<Float>
        let sums: UnsafeMutableBufferPointer<Int64>
        let segments: [SumSegment]
        let packedStarts: [Int]
        let rows: Int

        func run(slice t: Int, segment k: Int, block: Range<Int>, base: UnsafePointer<Float>, rowStride: Int) {
            let scale = Double(sign: .plus, exponent: ExactReducer.scaleExponent(maximum: maxima[k]), significand: 1)
            // round(x·2^s) to Int64 by the magic-number trick: adding 1.5·2⁵² leaves
            // round_half_even(x·2^s) in the low mantissa bits, exactly as
            // `.rounded(.toNearestOrEven)` would, for |x·2^s| < 2⁵¹ (here ≤ 2³⁸).
            // x·2^s is exact, so fusing the multiply and the add changes nothing.
            let magic = 6_755_399_441_055_744.0, magicBits = Int64(bitPattern: magic.bitPattern)
            let scales = SIMD8<Double>(repeating: scale), magics = SIMD8<Double>(repeating: magic)
            let out = sums.baseAddress! + packedStarts[k] + (block.lowerBound - segments[k].range.lowerBound)
            var i = 0
            while i + 8 <= block.count {
                var sum = SIMD8<Int64>()
                for r in 0..<rows {
                    let x = UnsafeRawPointer(base + r * rowStride + i).loadUnaligned(as: SIMD8<Float>.self)
                    let shifted = SIMD8<Double>(x) * scales + magics
                    sum &+= unsafeBitCast(shifted, to: SIMD8<Int64>.self) &- magicBits
                }
                UnsafeMutableRawPointer(out + i).storeBytes(of: sum, as: SIMD8<Int64>.self)
                i += 8
            }
            for i in i..<block.count {
                out[i] = 0
                for r in 0..<rows {
                    let shifted = Double(base[r * rowStride + i]) * scale + magic
                    out[i] &+= Int64(bitPattern: shifted.bitPattern) &- magicBits
                }
            }
        }
    }

    /// Slice t of each segment's global integer sums, back to Float into `result`.
    private struct Unscale: ParallelTask {
        let sums: UnsafeBufferPointer<Int64>
        let maxima: UnsafeBufferPointer<Float>
        let segments: [SumSegment]
        let packedStarts: [Int]
        let slices: Int
        let result: UnsafeMutablePointer<Float>

        func run(index t: Int, workspace: Workspace) {
            for (k, segment) in segments.enumerated() {
                let unscale = Double(sign: .plus, exponent: -ExactReducer.scaleExponent(maximum: maxima[k]), significand: 1)
                let range = ParallelExecutor.part(t, of: slices, segment.range)
                let packed = sums.baseAddress! + packedStarts[k], first = segment.range.lowerBound
                var i = range.lowerBound
                while i + 8 <= range.upperBound {
                    let q = UnsafeRawPointer(packed + (i - first)).loadUnaligned(as: SIMD8<Int64>.self)
                    let value = SIMD8<Float>(SIMD8<Double>(SIMD8<Float>(q)) * unscale)
                    UnsafeMutableRawPointer(result + i).storeBytes(of: value, as: SIMD8<Float>.self)
                    i += 8
                }
                for i in i..<range.upperBound { result[i] = Float(Double(Float(packed[i - first])) * unscale) }
            }
        }
    }

    /// s such that M·2^s < 2^(62 − headroomBits).
    static func scaleExponent(maximum: Float) -> Int {
        maximum == 0 ? 0 : 61 - headroomBits - Int(maximum.exponent)
    }
}
