/// 2-D convolution, PyTorch's `nn.Conv2d(in, out, kernel_size, stride, padding)`.
///
/// Layout NCHW; weight `[out, in, k, k]`, bias `[out]`. Each sample is lowered by im2col to a
/// `[in·k·k, Ho·Wo]` matrix and multiplied by the weight through `gemm`, so every output is
/// one fixed-order FMA chain over (in, ky, kx), started from the bias.
public final class Conv2d: Layer {
    public let inChannels, outChannels, kernel, stride, padding: Int
    public let height, width, outHeight, outWidth: Int
    let weightOffset, biasOffset: Int

    public init(name: String, inShape: [Int], outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                layout: inout ParameterLayout, initScheme: InitScheme) throws {
        guard inShape.count == 3 else {
            throw EngineError.invalidModel("\(name): Conv2d needs an image input (C×H×W), got \(inShape)")
        }
        inChannels = inShape[0]
        height = inShape[1]
        width = inShape[2]
        self.outChannels = outChannels
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        guard kernel >= 1, stride >= 1 else {
            throw EngineError.invalidModel("\(name): kernel size and stride must be at least 1 (got k\(kernel) s\(stride))")
        }
        guard padding < kernel, height + 2 * padding >= kernel, width + 2 * padding >= kernel else {
            throw EngineError.invalidModel("\(name): kernel \(kernel) does not fit a \(height)×\(width) input with padding \(padding)")
        }
        outHeight = (height + 2 * padding - kernel) / stride + 1
        outWidth = (width + 2 * padding - kernel) / stride + 1
        let fanIn = inChannels * kernel * kernel
        weightOffset = layout.declare("\(name).weight", shape: [outChannels, inChannels, kernel, kernel],
                                      initializer: initScheme.weight(fanIn: fanIn, fanOut: outChannels * kernel * kernel))
        biasOffset = layout.declare("\(name).bias", shape: [outChannels], initializer: initScheme.bias(fanIn: fanIn))
    }

    public var description: String {
        "Conv2d(\(inChannels), \(outChannels), kernel_size=\(kernel), stride=\(stride), padding=\(padding))"
    }
    public var inputShape: [Int] { [inChannels, height, width] }
    public var outputShape: [Int] { [outChannels, outHeight, outWidth] }
    var patchSize: Int { inChannels * kernel * kernel }
    var positions: Int { outHeight * outWidth }

    /// The chunk's samples side by side: every GEMM covers the whole chunk (n = count·Ho·Wo),
    /// which keeps the micro-kernel busy; each output's chain over (in, ky, kx) is unchanged.
    public func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ pass: Pass) throws {
        let weight = pass.parameters + weightOffset, bias = pass.parameters + biasOffset
        let inSize = inputSize, outSize = outputSize, patch = patchSize, positions = positions
        pass.forEachChunk { first, count, _, workspace in
            let n = count * positions
            let cols = workspace.floats(0, count: patch * n)
            let out = workspace.floats(1, count: outChannels * n)
            for s in 0..<count {
                im2col(x + (first + s) * inSize, into: cols + s * positions, rowStride: n)
            }
            for o in 0..<outChannels {
                (out + o * n).update(repeating: bias[o], count: n)
            }
            gemm(m: outChannels, n: n, k: patch, a: weight, aRowStride: patch, aColStride: 1,
                 b: cols, ldb: n, c: out, ldc: n, accumulate: true)
            for s in 0..<count {
                for o in 0..<outChannels {
                    (y + (first + s) * outSize + o * positions).update(from: out + o * n + s * positions, count: positions)
                }
            }
        }
    }

    public func backward(_ dx: UnsafeMutablePointer<Float>?, _ dy: UnsafePointer<Float>,
                         _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ pass: Pass) throws {
        let weight = pass.parameters + weightOffset
        let inSize = inputSize, outSize = outputSize, patch = patchSize, positions = positions
        pass.forEachChunk { first, count, chunk, workspace in
            let n = count * positions
            let grads = pass.gradients(ofChunk: chunk)
            let dWeight = grads + weightOffset, dBias = grads + biasOffset
            let cols = workspace.floats(0, count: patch * n)
            let dOut = workspace.floats(1, count: outChannels * n)
            for s in 0..<count {
                let dOutSample = dy + (first + s) * outSize
                for o in 0..<outChannels {
                    dBias[o] += horizontalSum(dOutSample + o * positions, count: positions)
                    (dOut + o * n + s * positions).update(from: dOutSample + o * positions, count: positions)
                }
            }
            // dW[o, k] = Σ over (sample, position) of dy·cols, one chain in that order, computed
            // as dWᵀ = cols · dyᵀ: n = out channels keeps the vector lanes full even for
            // conv1's 9 weights per filter, and cols come from the fast row-wise im2col.
            let dOutT = workspace.floats(2, count: outChannels * n)
            let dWeightT = workspace.floats(3, count: outChannels * patch)
            for s in 0..<count {
                im2col(x + (first + s) * inSize, into: cols + s * positions, rowStride: n)
                transpose(dy + (first + s) * outSize, rows: outChannels, cols: positions,
                          into: dOutT + s * positions * outChannels)
            }
            transpose(dWeight, rows: outChannels, cols: patch, into: dWeightT)
            gemm(m: patch, n: outChannels, k: n, a: cols, aRowStride: n, aColStride: 1,
                 b: dOutT, ldb: outChannels, c: dWeightT, ldc: outChannels, accumulate: true)
            transpose(dWeightT, rows: patch, cols: outChannels, into: dWeight)
            if let dx {
                // dcols = Wᵀ · dy, then scattered back onto each input (col2im).
                gemm(m: patch, n: n, k: outChannels, a: weight, aRowStride: 1, aColStride: patch,
                     b: dOut, ldb: n, c: cols, ldc: n, accumulate: false)
                for s in 0..<count {
                    col2im(cols + s * positions, rowStride: n, into: dx + (first + s) * inSize)
                }
            }
        }
    }

    /// The output columns ox whose input column ox·stride − pad + kx lies inside the image.
    @inline(__always) func validColumns(_ kx: Int) -> Range<Int> {
        let shift = kx - padding
        let low = shift >= 0 ? 0 : (-shift + stride - 1) / stride
        let high = width - shift <= 0 ? 0 : min(outWidth, (width - shift - 1) / stride + 1)
        return low..<max(low, high)
    }

    /// cols[(c·k + ky)·k + kx, oy·Wo + ox] = x[c, oy·stride − pad + ky, ox·stride − pad + kx]
    /// (0 outside), rows `rowStride` apart.
    func im2col(_ x: UnsafePointer<Float>, into cols: UnsafeMutablePointer<Float>, rowStride: Int) {
        var row = 0
        for c in 0..<inChannels {
            let plane = x + c * height * width
            for ky in 0..<kernel {
                for kx in 0..<kernel {
                    let dst = cols + row * rowStride
                    let valid = validColumns(kx)
                    for oy in 0..<outHeight {
                        let iy = oy * stride - padding + ky
                        let line = dst + oy * outWidth
                        if iy < 0 || iy >= height || valid.isEmpty {
                            line.update(repeating: 0, count: outWidth)
                            continue
                        }
                        line.update(repeating: 0, count: valid.lowerBound)
                        let src = plane + iy * width - padding + kx
                        if stride == 1 {
                            (line + valid.lowerBound).update(from: src + valid.lowerBound, count: valid.count)
                        } else {
                            for ox in valid { line[ox] = src[ox * stride] }
                        }
                        (line + valid.upperBound).update(repeating: 0, count: outWidth - valid.upperBound)
                    }
                    row += 1
                }
            }
        }
    }

    /// The adjoint of im2col: dx = Σ over patches, added in the fixed (c, ky, kx, oy, ox) order.
    func col2im(_ cols: UnsafePointer<Float>, rowStride: Int, into dx: UnsafeMutablePointer<Float>) {
        dx.update(repeating: 0, count: inputSize)
        var row = 0
        for c in 0..<inChannels {
            let plane = dx + c * height * width
            for ky in 0..<kernel {
                for kx in 0..<kernel {
                    let src = cols + row * rowStride
                    let valid = validColumns(kx)
                    for oy in 0..<outHeight {
                        let iy = oy * stride - padding + ky
                        if iy < 0 || iy >= height { continue }
                        let line = plane + iy * width - padding + kx
                        let from = src + oy * outWidth
                        for ox in valid { line[ox * stride] += from[ox] }
                    }
                    row += 1
                }
            }
        }
    }
}
