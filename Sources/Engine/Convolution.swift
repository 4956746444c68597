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
        outHeight = (height + 2 * padding - kernel) / stride + 1
        outWidth = (width + 2 * padding - kernel) / stride + 1
        guard kernel >= 1, stride >= 1, padding >= 0, height + 2 * padding >= kernel, width + 2 * padding >= kernel else {
            throw EngineError.invalidModel("\(name): kernel \(kernel) does not fit a \(height)×\(width) input with padding \(padding)")
        }
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

    public func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ pass: Pass) throws {
        let weight = pass.parameters + weightOffset, bias = pass.parameters + biasOffset
        let inSize = inputSize, outSize = outputSize, patch = patchSize, positions = positions
        pass.forEachChunk { first, count, _, workspace in
            let cols = workspace.floats(0, count: patch * positions)
            for s in first..<(first + count) {
                im2col(x + s * inSize, into: cols)
                let out = y + s * outSize
                for o in 0..<outChannels {
                    (out + o * positions).update(repeating: bias[o], count: positions)
                }
                gemm(m: outChannels, n: positions, k: patch, a: weight, aRowStride: patch, aColStride: 1,
                     b: cols, ldb: positions, c: out, ldc: positions, accumulate: true)
            }
        }
    }

    public func backward(_ dx: UnsafeMutablePointer<Float>?, _ dy: UnsafePointer<Float>,
                         _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ pass: Pass) throws {
        let weight = pass.parameters + weightOffset
        let inSize = inputSize, outSize = outputSize, patch = patchSize, positions = positions
        pass.forEachChunk { first, count, chunk, workspace in
            let grads = pass.gradients(ofChunk: chunk)
            let dWeight = grads + weightOffset, dBias = grads + biasOffset
            let cols = workspace.floats(0, count: patch * positions)
            let colsT = workspace.floats(1, count: patch * positions)
            for s in first..<(first + count) {
                let dOut = dy + s * outSize
                for o in 0..<outChannels {
                    dBias[o] += horizontalSum(dOut + o * positions, count: positions)
                }
                im2col(x + s * inSize, into: cols)
                transpose(cols, rows: patch, cols: positions, into: colsT)
                gemm(m: outChannels, n: patch, k: positions, a: dOut, aRowStride: positions, aColStride: 1,
                     b: colsT, ldb: patch, c: dWeight, ldc: patch, accumulate: true)
                if let dx {
                    // dcols = Wᵀ · dy, then scattered back onto the input (col2im).
                    gemm(m: patch, n: positions, k: outChannels, a: weight, aRowStride: 1, aColStride: patch,
                         b: dOut, ldb: positions, c: cols, ldc: positions, accumulate: false)
                    col2im(cols, into: dx + s * inSize)
                }
            }
        }
    }

    /// cols[(c·k + ky)·k + kx, oy·Wo + ox] = x[c, oy·stride − pad + ky, ox·stride − pad + kx] (0 outside).
    func im2col(_ x: UnsafePointer<Float>, into cols: UnsafeMutablePointer<Float>) {
        var row = 0
        for c in 0..<inChannels {
            let plane = x + c * height * width
            for ky in 0..<kernel {
                for kx in 0..<kernel {
                    let dst = cols + row * positions
                    for oy in 0..<outHeight {
                        let iy = oy * stride - padding + ky
                        let line = dst + oy * outWidth
                        if iy < 0 || iy >= height {
                            line.update(repeating: 0, count: outWidth)
                            continue
                        }
                        let src = plane + iy * width
                        for ox in 0..<outWidth {
                            let ix = ox * stride - padding + kx
                            line[ox] = (ix >= 0 && ix < width) ? src[ix] : 0
                        }
                    }
                    row += 1
                }
            }
        }
    }

    /// The adjoint of im2col: dx = Σ over patches, added in the fixed (c, ky, kx, oy, ox) order.
    func col2im(_ cols: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>) {
        dx.update(repeating: 0, count: inputSize)
        var row = 0
        for c in 0..<inChannels {
            let plane = dx + c * height * width
            for ky in 0..<kernel {
                for kx in 0..<kernel {
                    let src = cols + row * positions
                    for oy in 0..<outHeight {
                        let iy = oy * stride - padding + ky
                        if iy < 0 || iy >= height { continue }
                        let line = plane + iy * width
                        for ox in 0..<outWidth {
                            let ix = ox * stride - padding + kx
                            if ix >= 0 && ix < width { line[ix] += src[oy * outWidth + ox] }
                        }
                    }
                    row += 1
                }
            }
        }
    }
}
