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

    /// The function over a chunk's elements, 16 lanes at a time: GELU and Tanh through the
    /// project's own Float kernels (`VectorMath`), not the system's libm.
    private struct Forward: ChunkSamplesTask {
        let function: Function
        let y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>
        let size: Int

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            let range = (first * size)..<((first + count) * size)
            switch function {
            case .relu: relu(x + range.lowerBound, into: y + range.lowerBound, count: range.count)
            case .gelu: mapVectors(x + range.lowerBound, into: y + range.lowerBound, count: range.count, Activation.gelu)
            case .tanh: mapVectors(x + range.lowerBound, into: y + range.lowerBound, count: range.count, VectorMath.tanh)
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
            case .gelu:
                mapVectors(dy + range.lowerBound, x + range.lowerBound, into: dx + range.lowerBound, count: range.count) {
                    dy, x in dy * Activation.geluDerivative(x)
                }
            case .tanh:
                mapVectors(dy + range.lowerBound, y + range.lowerBound, into: dx + range.lowerBound, count: range.count) {
                    dy, y in dy * (1 - y * y)
                }
            }
        }
    }

    /// x·Φ(x) with Φ the standard normal CDF, via erf, in Float as PyTorch's CPU kernel computes it.
    @inline(__always) static func gelu(_ x: Vec16) -> Vec16 {
        x * standardNormalCDF(x)
    }

    /// Φ(x) + x·φ(x), as PyTorch's GeluBackward.
    @inline(__always) static func geluDerivative(_ x: Vec16) -> Vec16 {
        let pdf = VectorMath.exp(-0.5 * x * x) * 0x1.988454p-2  // 1/√(2π)
        return standardNormalCDF(x) + x * pdf
    }

    /// Φ(x) = (1 + erf(x/√2))/2.
    @inline(__always) static func standardNormalCDF(_ x: Vec16) -> Vec16 {
        0.5 * (1 + VectorMath.erf(x * 0x1.6a09e6p-1))
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
