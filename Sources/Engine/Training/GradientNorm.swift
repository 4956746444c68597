/// The global L2 norm of the flat gradient and `torch.nn.utils.clip_grad_norm_`'s coefficient,
/// the same bits for any thread count and on every rank (all hold the same reduced gradient).
///
/// The order is fixed by the buffer alone: the gradient is cut into blocks of `blockSize`
/// floats; within a block, sixteen Double lanes accumulate g² over consecutive vectors of 16
/// (each square is exact in Double: 24 + 24 bits of significand), the tail padded with zeros,
/// and the lanes are added 0, 1, …, 15; the block sums are added in block order; the square
/// root is rounded once to Float. Threads take whole blocks, so they change nothing but speed.
/// A finite gradient gives a finite norm up to Float's range, beyond it +inf and so a coefficient
/// of 0; a NaN norm gives a coefficient of 1 (the trainer never sees one: a non-finite gradient
/// stops the run in its reduction).
public final class GradientNorm {
    public static let blockSize = 4096
    let count: Int
    private let blockSums: UnsafeMutableBufferPointer<Double>

    /// For gradients of `count` floats.
    public init(count: Int) {
        self.count = count
        blockSums = .allocate(capacity: max(1, (count + Self.blockSize - 1) / Self.blockSize))
        blockSums.initialize(repeating: 0)
    }

    deinit { blockSums.deallocate() }

    /// ‖gradient‖₂ over all `count` floats.
    public func norm(of gradient: UnsafePointer<Float>, executor: ParallelExecutor) -> Float {
        let blocks = (count + Self.blockSize - 1) / Self.blockSize
        executor.run(count: blocks, BlockSquares(gradient: gradient, count: count, sums: blockSums.baseAddress!))
        var total = 0.0
        for b in 0..<blocks { total += blockSums[b] }
        return Float(total.squareRoot())
    }

    /// clip_grad_norm_'s factor for the gradient: maxNorm / (norm + 1e-6) in Float when that is
    /// below 1, else 1 (the gradient unchanged).
    public static func clippingCoefficient(maxNorm: Float, norm: Float) -> Float {
        let coefficient = maxNorm / (norm + 1e-6)
        return coefficient < 1 ? coefficient : 1
    }

    /// Σg² of block `index`.
    private struct BlockSquares: ParallelTask {
        let gradient: UnsafePointer<Float>
        let count: Int
        let sums: UnsafeMutablePointer<Double>

        func run(index b: Int, workspace: Workspace) {
            let end = min(count, (b + 1) * GradientNorm.blockSize)
            var lanes = SIMD16<Double>()
            var i = b * GradientNorm.blockSize
            while i < end {
                let n = min(16, end - i)
                let g = SIMD16<Double>(n == 16 ? load16(gradient + i) : loadPrefix16(gradient + i, count: n))
                lanes += g * g
                i += 16
            }
            var sum = 0.0
            for lane in 0..<16 { sum += lanes[lane] }
            sums[b] = sum
        }
    }
}
