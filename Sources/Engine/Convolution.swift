/// 2-D convolution, PyTorch's `nn.Conv2d(in, out, kernel_size, stride, padding)`.
///
/// Layout NCHW; weight `[out, in, k, k]`, bias `[out]`. Each sample's `[in·k·k, Ho·Wo]` im2col
/// matrix is multiplied by the weight through `gemm`, so every output is one fixed-order FMA
/// chain over (in, ky, kx), started from the bias. With stride 1 the matrix is never built:
/// its rows are read in place from the zero-padded input (`gemm`'s row offsets).
public final class Conv2d: ReLUFusing {
    public let inChannels, outChannels, kernel, stride, padding: Int
    public let height, width, outHeight, outWidth: Int
    let weightOffset, biasOffset: Int
    public var fusesReLU = false
    public var gradientMasked = false
    /// Stride 1: where im2col row (c, ky, kx) starts in the zero-padded input, whose rows
    /// then serve as the im2col rows in place (see `backward`).
    private let rowOffsets: UnsafeMutablePointer<Int>?

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
        inputShape = [inChannels, height, width]
        outputShape = [outChannels, outHeight, outWidth]
        let fanIn = inChannels * kernel * kernel
        weightOffset = layout.declare("\(name).weight", shape: [outChannels, inChannels, kernel, kernel],
                                      initializer: initScheme.weight(fanIn: fanIn, fanOut: outChannels * kernel * kernel))
        biasOffset = layout.declare("\(name).bias", shape: [outChannels], initializer: initScheme.bias(fanIn: fanIn))
        if stride == 1 {
            // (The computed `paddedHeight` and `paddedWidth` are not available during init.)
            let paddedHeight = height + 2 * padding, paddedWidth = width + 2 * padding
            let offsets = UnsafeMutablePointer<Int>.allocate(capacity: fanIn)
            for c in 0..<inChannels {
                for ky in 0..<kernel {
                    for kx in 0..<kernel {
                        offsets[(c * kernel + ky) * kernel + kx] = (c * paddedHeight + ky) * paddedWidth + kx
                    }
                }
            }
            rowOffsets = offsets
        } else {
            rowOffsets = nil
        }
    }

    deinit { rowOffsets?.deallocate() }

    public var description: String {
        "Conv2d(\(inChannels), \(outChannels), kernel_size=\(kernel), stride=\(stride), padding=\(padding))"
    }
    // Stored, not computed: layers read their sizes on every call, and a fresh array allocates.
    public let inputShape: [Int], outputShape: [Int]
    var patchSize: Int { inChannels * kernel * kernel }
    var positions: Int { outHeight * outWidth }

    /// Per sample: y = W · cols + bias, written in place (`[out, Ho·Wo]` is the sample's
    /// NCHW output), every output one fixed-order FMA chain over (in, ky, kx) from the bias.
    public func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ pass: Pass) throws {
        let inSize = inputSize, outSize = outputSize, patch = patchSize, positions = positions
        let weight = pass.parameters + weightOffset, bias = pass.parameters + biasOffset
        pass.forEachChunk { first, count, _, workspace in
            for s in first..<(first + count) {
                let out = y + s * outSize
                if let rowOffsets, inChannels > 1 {
                    // Stride 1 lowers nothing: in the wide numbering (see `backward`) im2col row
                    // q is the padded input from rowOffsets[q] on, so the product is computed
                    // over Wp-wide output rows and their first Wo columns copied out. (With one
                    // input channel im2col is only k² rows, cheaper than that copy: measured.)
                    let wide = wideCount
                    let z = workspace.floats(6, count: outChannels * wide)
                    for o in 0..<outChannels {
                        (z + o * wide).update(repeating: bias[o], count: wide)
                    }
                    gemm(m: outChannels, n: wide, k: patch, a: weight, aRowStride: patch, aColStride: 1,
                         b: paddedInput(x + s * inSize, workspace), ldb: 0, bRowOffsets: rowOffsets,
                         c: z, ldc: wide, accumulate: true)
                    for o in 0..<outChannels {
                        for oy in 0..<outHeight {
                            copyFloats(z + o * wide + oy * paddedWidth, to: out + o * positions + oy * outWidth,
                                       count: outWidth, relu: fusesReLU)
                        }
                    }
                } else {
                    let cols = columns(workspace)
                    im2col(x + s * inSize, into: cols)
                    for o in 0..<outChannels {
                        (out + o * positions).update(repeating: bias[o], count: positions)
                    }
                    gemm(m: outChannels, n: positions, k: patch, a: weight, aRowStride: patch, aColStride: 1,
                         b: cols, ldb: positions, c: out, ldc: positions, accumulate: true)
                    if fusesReLU { relu(out, into: out, count: outSize) }
                }
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
            let dyT = workspace.floats(1, count: max(positions, wideCount) * outChannels)
            let dWeightT = workspace.floats(2, count: outChannels * patch)
            dBias.update(repeating: 0, count: outChannels)
            for s in first..<(first + count) {
                var dOut = dy + s * outSize
                if fusesReLU && !gradientMasked {
                    // ReLU's backward, on the output it wrote: y > 0 ? dy : 0.
                    let masked = workspace.floats(4, count: outSize)
                    reluBackward(dOut, y + s * outSize, into: masked, count: outSize)
                    dOut = UnsafePointer(masked)
                }
                for o in 0..<outChannels {
                    dBias[o] += horizontalSum(dOut + o * positions, count: positions)
                }
                // dW[o, k] = Σ over (sample, position) of dy·cols, one chain in that order (each
                // sample's gemm continues the chains), computed as dWᵀ = cols · dyᵀ: n = out
                // channels keeps the vector lanes full even for conv1's 9 weights per filter.
                if let rowOffsets {
                    // Stride 1 lowers nothing: with positions numbered oy·Wp + ox across the
                    // padded input's width Wp, im2col row (c, ky, kx) is the padded input read
                    // from rowOffsets[q] on. The Wp − Wo positions past each output row are
                    // not outputs; their dy rows are +0, so their terms are ±0, which leave a
                    // chain unchanged except that −0 may become +0: the same integer 0 in the
                    // exact sum (docs/determinism.md).
                    let wide = wideCount
                    transposeWide(dOut, into: dyT)
                    gemm(m: patch, n: outChannels, k: wide, a: paddedInput(x + s * inSize, workspace), aRowStride: 0,
                         aColStride: 1, aRowOffsets: rowOffsets, b: dyT, ldb: outChannels, c: dWeightT, ldc: outChannels,
                         accumulate: s > first)
                } else {
                    let cols = columns(workspace)
                    im2col(x + s * inSize, into: cols)
                    transpose(dOut, rows: outChannels, cols: positions, into: dyT)
                    gemm(m: patch, n: outChannels, k: positions, a: cols, aRowStride: positions, aColStride: 1,
                         b: dyT, ldb: outChannels, c: dWeightT, ldc: outChannels, accumulate: s > first)
                }
                if let dx {
                    // dcols = Wᵀ · dy, then scattered back onto the input (col2im).
                    let dCols = workspace.floats(3, count: patch * positions)
                    gemm(m: patch, n: positions, k: outChannels, a: weight, aRowStride: 1, aColStride: patch,
                         b: dOut, ldb: positions, c: dCols, ldc: positions, accumulate: false)
                    col2im(dCols, into: dx + s * inSize)
                }
            }
            transpose(dWeightT, rows: patch, cols: outChannels, into: dWeight)
        }
    }

    /// Positions in the stride-1 "wide" numbering oy·Wp + ox, up to the last output.
    var wideCount: Int { (outHeight - 1) * paddedWidth + outWidth }
    var paddedHeight: Int { height + 2 * padding }
    var paddedWidth: Int { width + 2 * padding }

    /// A copy of the sample's input with its zero border and 32 zeros after it (`gemm` reads
    /// rows given by offsets up to 15 floats past their end).
    private func paddedInput(_ x: UnsafePointer<Float>, _ workspace: Workspace) -> UnsafePointer<Float> {
        let size = inChannels * paddedHeight * paddedWidth
        let padded = workspace.floats(5, count: size + 32)
        guard padding > 0 else {
            copyFloats(x, to: padded, count: size)
            (padded + size).update(repeating: 0, count: 32)
            return UnsafePointer(padded)
        }
        padded.update(repeating: 0, count: size + 32)
        for c in 0..<inChannels {
            for iy in 0..<height {
                copyFloats(x + (c * height + iy) * width,
                           to: padded + (c * paddedHeight + iy + padding) * paddedWidth + padding, count: width)
            }
        }
        return UnsafePointer(padded)
    }

    /// dyT[oy·Wp + ox, o] = dy[o, oy·Wo + ox], and +0 in the rows ox ≥ Wo between output rows.
    private func transposeWide(_ dy: UnsafePointer<Float>, into dyT: UnsafeMutablePointer<Float>) {
        for oy in 0..<outHeight {
            transpose(dy + oy * outWidth, rows: outChannels, cols: outWidth, sourceStride: positions,
                      into: dyT + oy * paddedWidth * outChannels)
            if oy < outHeight - 1 {
                (dyT + (oy * paddedWidth + outWidth) * outChannels)
                    .update(repeating: 0, count: (paddedWidth - outWidth) * outChannels)
            }
        }
    }

    /// A sample's im2col matrix.
    private func columns(_ workspace: Workspace) -> UnsafeMutablePointer<Float> {
        workspace.floats(0, count: patchSize * positions)
    }

    /// The output columns ox whose input column ox·stride − pad + kx lies inside the image.
    @inline(__always) func validColumns(_ kx: Int) -> Range<Int> {
        let shift = kx - padding
        let low = shift >= 0 ? 0 : (-shift + stride - 1) / stride
        let high = width - shift <= 0 ? 0 : min(outWidth, (width - shift - 1) / stride + 1)
        return low..<max(low, high)
    }

    /// cols[(c·k + ky)·k + kx, oy·Wo + ox] = x[c, oy·stride − pad + ky, ox·stride − pad + kx]
    /// (0 outside).
    func im2col(_ x: UnsafePointer<Float>, into cols: UnsafeMutablePointer<Float>) {
        var row = 0
        for c in 0..<inChannels {
            let plane = x + c * height * width
            for ky in 0..<kernel {
                for kx in 0..<kernel {
                    let dst = cols + row * positions
                    let valid = validColumns(kx)
                    for oy in 0..<outHeight {
                        let iy = oy * stride - padding + ky
                        let line = dst + oy * outWidth
                        if iy < 0 || iy >= height || valid.isEmpty {
                            for ox in 0..<outWidth { line[ox] = 0 }
                            continue
                        }
                        for ox in 0..<valid.lowerBound { line[ox] = 0 }
                        let src = plane + iy * width - padding + kx
                        if stride == 1 {
                            copyFloats(src + valid.lowerBound, to: line + valid.lowerBound, count: valid.count)
                        } else {
                            for ox in valid { line[ox] = src[ox * stride] }
                        }
                        for ox in valid.upperBound..<outWidth { line[ox] = 0 }
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
                    let valid = validColumns(kx)
                    for oy in 0..<outHeight {
                        let iy = oy * stride - padding + ky
                        if iy < 0 || iy >= height { continue }
                        let line = plane + iy * width - padding + kx
                        let from = src + oy * outWidth
                        if stride == 1 {
                            addFloats(from + valid.lowerBound, to: line + valid.lowerBound, count: valid.count)
                        } else {
                            for ox in valid { line[ox * stride] += from[ox] }
                        }
                    }
                    row += 1
                }
            }
        }
    }
}
