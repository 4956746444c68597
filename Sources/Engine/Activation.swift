/// Elementwise activations with PyTorch's names and formulas: `nn.ReLU`, `nn.GELU()` (the erf
/// form, PyTorch's default) and `nn.Tanh`. Shape is unchanged.
public final class Activation: Layer {
    public enum Function: String, Sendable {
        case relu, gelu, tanh
    }

    public let function: Function
    public let inputShape: [Int]

    public init(_ function: Function, shape: [Int]) {
        self.function = function
        inputShape = shape
    }

    public var description: String {
        switch function {
        case .relu: return "ReLU()"
        case .gelu: return "GELU(approximate='none')"
        case .tanh: return "Tanh()"
        }
    }
    public var outputShape: [Int] { inputShape }

    public func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ pass: Pass) throws {
        pass.forEachChunk(Forward(function: function, y: y, x: x, size: inputSize))
    }

    /// The function over a chunk's elements: each function's loop is a loop of its own, so
    /// that it compiles to one vectorised loop.
    private struct Forward: ChunkSamplesTask {
        let function: Function
        let y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>
        let size: Int

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            let range = (first * size)..<((first + count) * size)
            switch function {
            case .relu: relu(x + range.lowerBound, into: y + range.lowerBound, count: range.count)
            case .gelu: for i in range { y[i] = Float(Activation.gelu(Double(x[i]))) }
            case .tanh: for i in range { y[i] = ScalarMath.tanh(x[i]) }
            }
        }
    }

    public func backward(_ dx: UnsafeMutablePointer<Float>?, _ dy: UnsafePointer<Float>,
                         _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ pass: Pass) throws {
        guard let dx else { return }
        pass.forEachChunk(Backward(function: function, dx: dx, dy: dy, x: x, y: y, size: inputSize))
    }

    /// The gradient over a chunk's elements, one loop per function as in `Forward`.
    private struct Backward: ChunkSamplesTask {
        let function: Function
        let dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, y: UnsafePointer<Float>
        let size: Int

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            let range = (first * size)..<((first + count) * size)
            switch function {
            case .relu: reluBackward(dy + range.lowerBound, y + range.lowerBound, into: dx + range.lowerBound, count: range.count)
            case .gelu: for i in range { dx[i] = dy[i] * Float(Activation.geluDerivative(Double(x[i]))) }
            case .tanh: for i in range { dx[i] = dy[i] * (1 - y[i] * y[i]) }
            }
        }
    }

    /// x·Φ(x) with Φ the standard normal CDF, via erf.
    static func gelu(_ x: Double) -> Double {
        0.5 * x * (1 + ScalarMath.erf(x * 0.707_106_781_186_547_5))
    }

    /// Φ(x) + x·φ(x), as PyTorch's GeluBackward.
    static func geluDerivative(_ x: Double) -> Double {
        let cdf = 0.5 * (1 + ScalarMath.erf(x * 0.707_106_781_186_547_5))
        let pdf = ScalarMath.exp(-0.5 * x * x) * 0.398_942_280_401_432_7
        return cdf + x * pdf
    }
}

/// y = x > 0 ? x : 0 (so NaN gives 0, as `x > 0` is false); x may be y.
@inline(__always) func relu(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
    copyFloats(x, to: y, count: count, relu: true)
}

/// ReLU's backward from its output: dx = y > 0 ? dy : 0, 16 lanes at a time.
@inline(__always) func reluBackward(_ dy: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
                                    into dx: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    while i + 16 <= count {
        store16(load16(dy + i).replacing(with: 0, where: .!(load16(y + i) .> 0)), dx + i)
        i += 16
    }
    for j in i..<count { dx[j] = y[j] > 0 ? dy[j] : 0 }
}

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
