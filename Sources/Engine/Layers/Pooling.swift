/// Shared geometry of the pooling layers: windows of `kernel`² with `stride`, no padding,
/// floor rounding, as PyTorch's defaults.
public struct PoolGeometry: Sendable {
    public let channels, height, width, kernel, stride: Int
    public var outHeight: Int { (height - kernel) / stride + 1 }
    public var outWidth: Int { (width - kernel) / stride + 1 }
    /// Floats in one input and one output channel plane.
    public var inPlane: Int { height * width }
    public var outPlane: Int { outHeight * outWidth }
    // Stored, not computed: layers read their sizes on every call, and a fresh array allocates.
    public let inputShape: [Int], outputShape: [Int]

    init(name: String, inShape: [Int], kernel: Int, stride: Int) throws {
        guard inShape.count == 3 else {
            throw EngineError.invalidModel("\(name): pooling needs an image input (C×H×W), got \(inShape)")
        }
        guard kernel >= 1, stride >= 1 else {
            throw EngineError.invalidModel("\(name): pool size and stride must be at least 1 (got \(kernel), stride \(stride))")
        }
        guard inShape[1] >= kernel, inShape[2] >= kernel else {
            throw EngineError.invalidModel("\(name): a \(kernel)×\(kernel) pool does not fit a \(inShape[1])×\(inShape[2]) input")
        }
        (channels, height, width) = (inShape[0], inShape[1], inShape[2])
        self.kernel = kernel
        self.stride = stride
        inputShape = [channels, height, width]
        outputShape = [channels, (height - kernel) / stride + 1, (width - kernel) / stride + 1]
    }
}

/// `nn.MaxPool2d(kernel_size, stride)`, NCHW. The gradient goes to the first maximum of each
/// window in row-major order (NaN counts as a maximum), as PyTorch's CPU kernel does; forward
/// records where it was, so that backward only scatters.
public final class MaxPool2d: Layer {
    public let geometry: PoolGeometry
    /// The input is a fused ReLU's output, and backward applies ReLU's backward to the
    /// gradient it passes on (x > 0 ? g : 0), so the ReLU's layer need not (set by `Network`).
    public var masksReLU = false
    /// Per output, the index within its input plane of the window's first maximum.
    private let argmax = GrowingBuffer<Int32>()

    public init(name: String, inShape: [Int], kernel: Int, stride: Int) throws {
        geometry = try PoolGeometry(name: name, inShape: inShape, kernel: kernel, stride: stride)
    }

    public var description: String { "MaxPool2d(kernel_size=\(geometry.kernel), stride=\(geometry.stride))" }
    public var inputShape: [Int] { geometry.inputShape }
    public var outputShape: [Int] { geometry.outputShape }

    public func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ pass: Pass) throws {
        let indices = argmax.storage(count: pass.sampleCount * outputSize)
        let inputEnd = x + pass.sampleCount * inputSize
        pass.forEachChunk(Forward(layer: self, y: y, x: x, indices: indices, inputEnd: inputEnd, g: geometry))
    }

    private struct Forward: ChunkSamplesTask {
        let layer: MaxPool2d
        let y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, indices: UnsafeMutablePointer<Int32>
        let inputEnd: UnsafePointer<Float>
        let g: PoolGeometry

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            let planes = g.channels, inPlane = g.inPlane, outPlane = g.outPlane
            let outputEnd = y + (first + count) * layer.outputSize
            for p in (first * planes)..<((first + count) * planes) {
                let plane = x + p * inPlane, out = y + p * outPlane
                let index = indices + p * outPlane
                if g.kernel == 2 && g.stride == 2 {
                    layer.maxPool2x2(plane, out, index, inputEnd: inputEnd, outputEnd: outputEnd)
                    continue
                }
                for oy in 0..<g.outHeight {
                    for ox in 0..<g.outWidth {
                        let origin = oy * g.stride * g.width + ox * g.stride
                        var best = origin
                        var bestValue = plane[origin]
                        for ky in 0..<g.kernel {
                            let row = origin + ky * g.width
                            for i in row..<(row + g.kernel) { (best, bestValue) = consider(plane, i, (best, bestValue)) }
                        }
                        out[oy * g.outWidth + ox] = bestValue
                        index[oy * g.outWidth + ox] = Int32(best)
                    }
                }
            }
        }
    }

    /// The common 2×2, stride-2 case, 16 outputs at a time with the same first-maximum rule:
    /// a row pair's even and odd columns are the window's four candidates, taken in row-major
    /// order. Loads may run past the row pair (never past `inputEnd`); stores past an output
    /// row land on outputs this thread stores later (never past `outputEnd`, the chunk's end).
    @inline(__always)
    private func maxPool2x2(_ plane: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                            _ index: UnsafeMutablePointer<Int32>, inputEnd: UnsafePointer<Float>,
                            outputEnd: UnsafeMutablePointer<Float>) {
        let g = geometry, width = g.width
        // Rows of fewer than 8 outputs fill too few lanes to pay for the shuffles.
        guard g.outWidth >= 8, plane + (2 * g.outHeight - 1) * width + 2 * (g.outWidth - 1) + 32 <= inputEnd else {
            return maxPool2x2Scalar(plane, out, index)
        }
        let lanes = SIMD16<Int32>(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
        for oy in 0..<g.outHeight {
            let topRow = 2 * oy * width
            for ox0 in stride(from: 0, to: g.outWidth, by: 16) {
                let top = plane + topRow + 2 * ox0, bottom = top + width
                let o = oy * g.outWidth + ox0, count = min(16, g.outWidth - ox0)
                let t = SIMD32<Float>(lowHalf: load16(top), highHalf: load16(top + 16))
                let b = SIMD32<Float>(lowHalf: load16(bottom), highHalf: load16(bottom + 16))
                // The window rule of `consider`, 16 windows at a time.
                var best = t.evenHalf, offset = SIMD16<Int32>(repeating: 0)
                let v1 = t.oddHalf
                let w1 = .!(v1 .<= best) .& (best .== best)
                best.replace(with: v1, where: w1)
                offset.replace(with: 1, where: w1)
                let v2 = b.evenHalf
                let w2 = .!(v2 .<= best) .& (best .== best)
                best.replace(with: v2, where: w2)
                offset.replace(with: Int32(width), where: w2)
                let v3 = b.oddHalf
                let w3 = .!(v3 .<= best) .& (best .== best)
                best.replace(with: v3, where: w3)
                offset.replace(with: Int32(width + 1), where: w3)
                let positions = lanes &+ Int32(topRow + 2 * ox0) &+ offset
                if out + o + 16 <= outputEnd {
                    store16(best, out + o)
                    UnsafeMutableRawPointer(index + o).storeBytes(of: positions, as: SIMD16<Int32>.self)
                } else {
                    for lane in 0..<count {
                        out[o + lane] = best[lane]
                        index[o + lane] = positions[lane]
                    }
                }
            }
        }
    }

    /// The 2×2, stride-2 case one window at a time, unrolled, with the same first-maximum rule:
    /// for short rows, and for the planes where vectors would read past the input.
    @inline(__always)
    private func maxPool2x2Scalar(_ plane: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ index: UnsafeMutablePointer<Int32>) {
        let g = geometry
        for oy in 0..<g.outHeight {
            let top = 2 * oy * g.width, outRow = oy * g.outWidth
            for ox in 0..<g.outWidth {
                let i0 = top + 2 * ox
                var best = (index: i0, value: plane[i0])
                best = consider(plane, i0 + 1, best)
                best = consider(plane, i0 + g.width, best)
                best = consider(plane, i0 + g.width + 1, best)
                out[outRow + ox] = best.value
                index[outRow + ox] = Int32(best.index)
            }
        }
    }

    public func backward(_ dx: UnsafeMutablePointer<Float>?, _ dy: UnsafePointer<Float>,
                         _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ pass: Pass) throws {
        guard let dx, let indices = argmax.pointer else { return }
        pass.forEachChunk(Backward(dx: dx, dy: dy, y: y, indices: indices, g: geometry, masksReLU: masksReLU))
    }

    private struct Backward: ChunkSamplesTask {
        let dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, y: UnsafePointer<Float>
        let indices: UnsafeMutablePointer<Int32>
        let g: PoolGeometry
        let masksReLU: Bool

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            let planes = g.channels, inPlane = g.inPlane, outPlane = g.outPlane, overlapping = g.stride < g.kernel
            let masked = workspace.floats(.maskedOutputGradient, count: outPlane)
            for p in (first * planes)..<((first + count) * planes) {
                let dPlane = dx + p * inPlane, index = indices + p * outPlane
                var dOut = dy + p * outPlane
                if masksReLU {
                    // The input at a window's maximum is its pooled value.
                    reluBackward(dOut, y + p * outPlane, into: masked, count: outPlane)
                    dOut = UnsafePointer(masked)
                }
                dPlane.update(repeating: 0, count: inPlane)
                for o in 0..<outPlane {
                    let i = Int(index[o])
                    let gradient = dOut[o]
                    // Non-overlapping windows give each input at most one gradient: store
                    // 0 + gradient (what adding it to the cleared plane gives) without a read.
                    dPlane[i] = (overlapping ? dPlane[i] : 0) + gradient
                }
            }
        }
    }
}

/// The max pool's window rule, one input at a time in row-major order: the best so far after
/// input i, which replaces it if greater, or if it is the window's first NaN. Branch-free.
@inline(__always)
private func consider(_ plane: UnsafePointer<Float>, _ i: Int, _ best: (index: Int, value: Float)) -> (index: Int, value: Float) {
    let v = plane[i]
    let wins = !(v <= best.value) && best.value == best.value
    return (wins ? i : best.index, wins ? v : best.value)
}

/// `nn.AvgPool2d(kernel_size, stride)`, NCHW: each output is the window's sum, added in
/// row-major order, divided by kernel².
public final class AvgPool2d: Layer {
    public let geometry: PoolGeometry

    public init(name: String, inShape: [Int], kernel: Int, stride: Int) throws {
        geometry = try PoolGeometry(name: name, inShape: inShape, kernel: kernel, stride: stride)
    }

    public var description: String { "AvgPool2d(kernel_size=\(geometry.kernel), stride=\(geometry.stride))" }
    public var inputShape: [Int] { geometry.inputShape }
    public var outputShape: [Int] { geometry.outputShape }

    public func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ pass: Pass) throws {
        pass.forEachChunk(Forward(y: y, x: x, g: geometry))
    }

    private struct Forward: ChunkSamplesTask {
        let y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>
        let g: PoolGeometry

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            let planes = g.channels, inPlane = g.inPlane, outPlane = g.outPlane, divisor = Float(g.kernel * g.kernel)
            for p in (first * planes)..<((first + count) * planes) {
                let plane = x + p * inPlane, out = y + p * outPlane
                for oy in 0..<g.outHeight {
                    for ox in 0..<g.outWidth {
                        var sum: Float = 0
                        for ky in 0..<g.kernel {
                            for kx in 0..<g.kernel {
                                sum += plane[(oy * g.stride + ky) * g.width + ox * g.stride + kx]
                            }
                        }
                        out[oy * g.outWidth + ox] = sum / divisor
                    }
                }
            }
        }
    }

    public func backward(_ dx: UnsafeMutablePointer<Float>?, _ dy: UnsafePointer<Float>,
                         _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ pass: Pass) throws {
        guard let dx else { return }
        pass.forEachChunk(Backward(dx: dx, dy: dy, g: geometry))
    }

    private struct Backward: ChunkSamplesTask {
        let dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>
        let g: PoolGeometry

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            let planes = g.channels, inPlane = g.inPlane, outPlane = g.outPlane, divisor = Float(g.kernel * g.kernel)
            for p in (first * planes)..<((first + count) * planes) {
                let dPlane = dx + p * inPlane, dOut = dy + p * outPlane
                dPlane.update(repeating: 0, count: inPlane)
                for oy in 0..<g.outHeight {
                    for ox in 0..<g.outWidth {
                        let share = dOut[oy * g.outWidth + ox] / divisor
                        for ky in 0..<g.kernel {
                            for kx in 0..<g.kernel {
                                dPlane[(oy * g.stride + ky) * g.width + ox * g.stride + kx] += share
                            }
                        }
                    }
                }
            }
        }
    }
}
