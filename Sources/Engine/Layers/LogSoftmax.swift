/// `nn.LogSoftmax(dim=1)` over each sample's features, computed in Double from the maximum
/// down (sums in index order), rounded once to Float.
public final class LogSoftmax: Layer {
    public let inputShape: [Int]

    public init(shape: [Int]) { inputShape = shape }

    public var description: String { "LogSoftmax(dim=1)" }
    public var outputShape: [Int] { inputShape }

    public func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ pass: Pass) throws {
        pass.forEachChunk(Forward(y: y, x: x, n: inputSize))
    }

    private struct Forward: ChunkSamplesTask {
        let y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>
        let n: Int

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            for s in first..<(first + count) {
                logSoftmax(x + s * n, count: n, into: y + s * n)
            }
        }
    }

    public func backward(_ dx: UnsafeMutablePointer<Float>?, _ dy: UnsafePointer<Float>,
                         _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ pass: Pass) throws {
        guard let dx else { return }
        pass.forEachChunk(Backward(dx: dx, dy: dy, y: y, n: inputSize))
    }

    private struct Backward: ChunkSamplesTask {
        let dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, y: UnsafePointer<Float>
        let n: Int

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            for s in first..<(first + count) {
                let o = s * n
                var total = 0.0
                for i in 0..<n { total += Double(dy[o + i]) }
                for i in 0..<n {
                    dx[o + i] = Float(Double(dy[o + i]) - ScalarMath.exp(Double(y[o + i])) * total)
                }
            }
        }
    }
}

/// log softmax of one row: x − max − log Σ exp(x − max).
func logSoftmax(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>) {
    let shift = Double(rowMaximum(x, count: count))
    var total = 0.0
    for i in 0..<count { total += ScalarMath.exp(Double(x[i]) - shift) }
    let logTotal = ScalarMath.log(total)
    for i in 0..<count { y[i] = Float(Double(x[i]) - shift - logTotal) }
}

/// The largest value of a row (NaN if any is NaN).
func rowMaximum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    var m = x[0]
    for i in 1..<max(count, 1) where x[i] > m || x[i].isNaN { m = x[i] }
    return m
}

/// Index of the first largest value: the predicted class.
public func argmax(_ x: UnsafePointer<Float>, count: Int) -> Int {
    var best = 0
    for i in 1..<max(count, 1) where x[i] > x[best] { best = i }
    return best
}
