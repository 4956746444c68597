/// 2-D convolution, PyTorch's `nn.Conv2d(in, out, kernel_size, stride, padding)`.
///
/// Layout NCHW; weight `[out, in, k, k]`, bias `[out]`. Per sample, the product of the weight
/// and the `[in·k·k, Ho·Wo]` im2col matrix goes through `gemm`, so every output is one
/// fixed-order FMA chain over (in, ky, kx), started from the bias. The matrix is mostly not
/// built: `gemm` reads it from the (zero-padded) input through two offset tables. A 3×3,
/// stride-1 convolution whose channel counts are multiples of 16 computes its output, input
/// gradient and kernel gradient by Winograd's F(2×2, 3×3) instead (`Winograd`), with about half
/// the products; its outputs are fixed sequences of transforms and chains, the bias added last.
public final class Conv2d: ReLUFusing {
    public let inChannels, outChannels, kernel, stride, padding: Int
    public let height, width, outHeight, outWidth: Int
    let weightOffset, biasOffset: Int
    public var fusesReLU = false
    public var gradientMasked = false
    /// Without Winograd, the im2col matrix is mostly not built: its element (q, p) for
    /// q = (c, ky, kx) and output position p = (oy, ox) is the zero-padded input at
    /// rows[q] + positions[p], and `gemm` reads A through these two tables (nil with Winograd).
    private let im2colOffsets: (rows: UnsafeMutablePointer<Int>, positions: UnsafeMutablePointer<Int>)?
    /// Wᵀ as `[in·k·k, out]`, rebuilt once per forward pass: the B operand of forward's gemm
    /// when it computes the output transposed (nil when forward builds im2col instead).
    private let weightTransposed: UnsafeMutablePointer<Float>?
    /// W as `[out, (ky, kx, in)]`, rebuilt once per backward pass: the B operand of the input
    /// gradient's gemm, so that col2im adds whole channel vectors (nil with Winograd).
    private let weightByTap: UnsafeMutablePointer<Float>?
    /// With Winograd, the transformed kernels of the output (`[16, in, out]`) and of the input
    /// gradient (`[16, out, in]`, the kernels rotated by 180°), rebuilt once per pass.
    private let winogradWeights: (forward: UnsafeMutablePointer<Float>, inputGradient: UnsafeMutablePointer<Float>)?

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
        guard TensorSize.bounded([outChannels, inChannels, kernel, kernel]) != nil, TensorSize.bounded(outputShape) != nil else {
            throw EngineError.invalidModel("\(name): Conv2d's weight \(TensorSize.text([outChannels, inChannels, kernel, kernel])) or output \(TensorSize.text(outputShape)) has more than 2^28 values")
        }
        let fanIn = inChannels * kernel * kernel
        weightOffset = layout.declare("\(name).weight", shape: [outChannels, inChannels, kernel, kernel],
                                      initializer: initScheme.weight(fanIn: fanIn, fanOut: outChannels * kernel * kernel))
        biasOffset = layout.declare("\(name).bias", shape: [outChannels], initializer: initScheme.bias(fanIn: fanIn))
        if Winograd.applies(kernel: kernel, stride: stride, inChannels: inChannels, outChannels: outChannels) {
            let count = Winograd.points * inChannels * outChannels
            winogradWeights = (.allocate(capacity: count), .allocate(capacity: count))
            im2colOffsets = nil
            weightTransposed = nil
            weightByTap = nil
        } else {
            winogradWeights = nil
            // (The computed `paddedHeight` and `paddedWidth` are not available during init.)
            let paddedHeight = height + 2 * padding, paddedWidth = width + 2 * padding
            let rowOffsets = UnsafeMutablePointer<Int>.allocate(capacity: fanIn)
            for c in 0..<inChannels {
                for ky in 0..<kernel {
                    for kx in 0..<kernel {
                        rowOffsets[(c * kernel + ky) * kernel + kx] = (c * paddedHeight + ky) * paddedWidth + kx
                    }
                }
            }
            let positionOffsets = UnsafeMutablePointer<Int>.allocate(capacity: outHeight * outWidth)
            for oy in 0..<outHeight {
                for ox in 0..<outWidth {
                    positionOffsets[oy * outWidth + ox] = oy * stride * paddedWidth + ox * stride
                }
            }
            im2colOffsets = (rowOffsets, positionOffsets)
            // Positions as the product's rows pay off when a filter has more weights than there
            // are filters and the filters fill whole 16-lane vectors (the product's columns);
            // else forward builds the im2col matrix (conv1's 9 weights per filter; 24 or 50
            // filters, measured faster so) and the product's columns are the positions.
            weightTransposed = fanIn >= outChannels && outChannels % 16 == 0 ? .allocate(capacity: fanIn * outChannels) : nil
            weightByTap = .allocate(capacity: fanIn * outChannels)
        }
    }

    deinit {
        im2colOffsets?.rows.deallocate()
        im2colOffsets?.positions.deallocate()
        weightTransposed?.deallocate()
        weightByTap?.deallocate()
        winogradWeights?.forward.deallocate()
        winogradWeights?.inputGradient.deallocate()
    }

    /// Whether this convolution is computed by Winograd's F(2×2, 3×3) (for tests).
    package var usesWinograd: Bool { winogradWeights != nil }

    public var description: String {
        "Conv2d(\(inChannels), \(outChannels), kernel_size=\(kernel), stride=\(stride), padding=\(padding))"
    }
    // Stored, not computed: layers read their sizes on every call, and a fresh array allocates.
    public let inputShape: [Int], outputShape: [Int]
    var patchSize: Int { inChannels * kernel * kernel }
    var positions: Int { outHeight * outWidth }

    /// Per sample: yᵀ = colsᵀ · Wᵀ + bias as `[Ho·Wo, out]`, transposed into the sample's NCHW
    /// output (positions as the rows of the product let A be read through the offset tables);
    /// or, for few weights per filter, y = W · cols + bias straight into it from a built im2col
    /// matrix. Either way every output is one fixed-order FMA chain over (in, ky, kx) from the
    /// bias. With Winograd, yᵀ is computed from the input transposed channels-last, and the bias
    /// is added after the output transform.
    public func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ pass: Pass) throws {
        let weight = pass.parameters + weightOffset
        if let weightTransposed { transpose(weight, rows: outChannels, cols: patchSize, into: weightTransposed) }
        if let winograd = winogradWeights?.forward {
            Winograd.transformWeights(weight, outChannels: outChannels, inChannels: inChannels, outStride: patchSize,
                                      inStride: kernel * kernel, flipped: false, into: winograd)
        }
        pass.forEachChunk(Forward(layer: self, y: y, x: x, weight: weight, bias: pass.parameters + biasOffset))
    }

    private struct Forward: ChunkSamplesTask {
        let layer: Conv2d
        let y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>
        let weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            let inSize = layer.inputSize, outSize = layer.outputSize, patch = layer.patchSize
            let positions = layer.positions, inChannels = layer.inChannels, outChannels = layer.outChannels
            let height = layer.height, width = layer.width, fusesReLU = layer.fusesReLU
            for s in first..<(first + count) {
                let out = y + s * outSize
                if let winograd = layer.winogradWeights?.forward {
                    let xT = workspace.floats(.transposedInput, count: inSize)
                    let yT = workspace.floats(.transposedOutput, count: positions * outChannels)
                    transpose(x + s * inSize, rows: inChannels, cols: height * width, into: xT)
                    Winograd.convolve(xT, height: height, width: width, inChannels: inChannels, padding: layer.padding,
                                      weights: winograd, outChannels: outChannels, bias: bias, into: yT,
                                      workspace: workspace)
                    transpose(yT, rows: positions, cols: outChannels, into: out, relu: fusesReLU)
                } else if let weightTransposed = layer.weightTransposed, let offsets = layer.im2colOffsets {
                    let yT = workspace.floats(.transposedOutput, count: positions * outChannels)
                    for p in 0..<positions {
                        copyFloats(bias, to: yT + p * outChannels, count: outChannels)
                    }
                    gemm(m: positions, n: outChannels, k: patch, a: layer.paddedInput(x + s * inSize, workspace),
                         aRowStride: 0, aColStride: 0, aRowOffsets: offsets.positions, aColOffsets: offsets.rows,
                         b: weightTransposed, ldb: outChannels, c: yT, ldc: outChannels, accumulate: true)
                    transpose(yT, rows: positions, cols: outChannels, into: out, relu: fusesReLU)
                } else {
                    let cols = workspace.floats(.columns, count: patch * positions)
                    layer.im2col(x + s * inSize, into: cols)
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
        let weight = pass.parameters + weightOffset, patch = patchSize, taps = kernel * kernel
        if dx != nil, let winograd = winogradWeights?.inputGradient {
            // dx is the full convolution of dy with each kernel rotated by 180°, the channels swapped.
            Winograd.transformWeights(weight, outChannels: inChannels, inChannels: outChannels, outStride: taps,
                                      inStride: patch, flipped: true, into: winograd)
        } else if dx != nil, let weightByTap {
            for o in 0..<outChannels {
                for c in 0..<inChannels {
                    for tap in 0..<taps {
                        weightByTap[o * patch + tap * inChannels + c] = weight[o * patch + c * taps + tap]
                    }
                }
            }
        }
        pass.forEachChunk(Backward(layer: self, pass: pass, dx: dx, dy: dy, x: x, y: y))
    }

    private struct Backward: ChunkSamplesTask {
        let layer: Conv2d
        let pass: Pass
        let dx: UnsafeMutablePointer<Float>?, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, y: UnsafePointer<Float>

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            let inSize = layer.inputSize, outSize = layer.outputSize, patch = layer.patchSize
            let positions = layer.positions, inChannels = layer.inChannels, outChannels = layer.outChannels
            let height = layer.height, width = layer.width
            let weightByTap = layer.weightByTap, winograd = layer.winogradWeights?.inputGradient
            let grads = pass.gradients(ofChunk: chunk)
            let dWeight = grads + layer.weightOffset, dBias = grads + layer.biasOffset
            let dyT = workspace.floats(.transposedOutputGradient, count: positions * outChannels)
            let dWeightT = workspace.floats(.transposedWeightGradient, count: outChannels * patch)
            let dV = workspace.floats(.winogradKernelGradient, count: winograd == nil ? 0 : Winograd.points * inChannels * outChannels)
            dBias.update(repeating: 0, count: outChannels)
            for s in first..<(first + count) {
                var dOut = dy + s * outSize
                if layer.fusesReLU && !layer.gradientMasked {
                    // ReLU's backward, on the output it wrote: y > 0 ? dy : 0.
                    let masked = workspace.floats(.maskedOutputGradient, count: outSize)
                    reluBackward(dOut, y + s * outSize, into: masked, count: outSize)
                    dOut = UnsafePointer(masked)
                }
                for o in 0..<outChannels {
                    dBias[o] += horizontalSum(dOut + o * positions, count: positions)
                }
                transpose(dOut, rows: outChannels, cols: positions, into: dyT)
                if winograd != nil {
                    // The kernels' gradient in the transformed domain, summed over the chunk's
                    // tiles (sample after sample) before it is transformed back below.
                    let xT = workspace.floats(.transposedInput, count: inSize)
                    transpose(x + s * inSize, rows: inChannels, cols: height * width, into: xT)
                    Winograd.accumulateKernelGradient(input: xT, height: height, width: width, inChannels: inChannels,
                                                      padding: layer.padding, outputGradient: dyT, outChannels: outChannels,
                                                      into: dV, accumulate: s > first, workspace: workspace)
                } else if let offsets = layer.im2colOffsets {
                    // dW[o, q] = Σ over (sample, position) of dy·cols, one chain in that order
                    // (each sample's gemm continues the chains), computed as dWᵀ = cols · dyᵀ:
                    // n = out channels keeps the vector lanes full even for conv1's 9 weights
                    // per filter.
                    gemm(m: patch, n: outChannels, k: positions, a: layer.paddedInput(x + s * inSize, workspace),
                         aRowStride: 0, aColStride: 0, aRowOffsets: offsets.rows, aColOffsets: offsets.positions,
                         b: dyT, ldb: outChannels, c: dWeightT, ldc: outChannels, accumulate: s > first)
                }
                if let dx, let winograd {
                    let dxT = workspace.floats(.transposedInputGradient, count: inSize)
                    Winograd.convolve(dyT, height: layer.outHeight, width: layer.outWidth, inChannels: outChannels,
                                      padding: layer.kernel - 1 - layer.padding, weights: winograd, outChannels: inChannels,
                                      bias: nil, into: dxT, workspace: workspace)
                    transpose(dxT, rows: height * width, cols: inChannels, into: dx + s * inSize)
                } else if let dx, let weightByTap {
                    // dcolsᵀ = dy · W, its columns in (ky, kx, c) order, then scattered back
                    // onto the input (col2im), channels contiguous.
                    let dColsT = workspace.floats(.transposedColumnGradient, count: positions * patch)
                    gemm(m: positions, n: patch, k: outChannels, a: dyT, aRowStride: outChannels, aColStride: 1,
                         b: weightByTap, ldb: patch, c: dColsT, ldc: patch, accumulate: false)
                    layer.col2im(dColsT, into: dx + s * inSize, scratch: workspace.floats(.transposedInputGradient, count: inSize))
                }
            }
            if winograd != nil {
                Winograd.kernelGradient(dV, inChannels: inChannels, outChannels: outChannels, into: dWeightT)
            }
            transpose(dWeightT, rows: patch, cols: outChannels, into: dWeight)
        }
    }

    var paddedHeight: Int { height + 2 * padding }
    var paddedWidth: Int { width + 2 * padding }

    /// The sample's input with its zero border: the input itself without padding, else a copy.
    private func paddedInput(_ x: UnsafePointer<Float>, _ workspace: Workspace) -> UnsafePointer<Float> {
        guard padding > 0 else { return x }
        let padded = workspace.floats(.paddedInput, count: inChannels * paddedHeight * paddedWidth)
        padded.update(repeating: 0, count: inChannels * paddedHeight * paddedWidth)
        for c in 0..<inChannels {
            for iy in 0..<height {
                copyFloats(x + (c * height + iy) * width,
                           to: padded + (c * paddedHeight + iy + padding) * paddedWidth + padding, count: width)
            }
        }
        return UnsafePointer(padded)
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

    /// The adjoint of im2col, from dcolsᵀ `[Ho·Wo, (ky, kx, c)]`: each dx element is its terms
    /// added from +0 in (ky, kx) order (a tap reaches an input at most once). They are summed
    /// channels-last in `dxT` `[H·W, in]`, whole channel vectors at a time, then transposed.
    func col2im(_ colsT: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>,
                scratch dxT: UnsafeMutablePointer<Float>) {
        let channels = inChannels, patch = patchSize
        dxT.update(repeating: 0, count: inputSize)
        for ky in 0..<kernel {
            for kx in 0..<kernel {
                let tap = (ky * kernel + kx) * channels
                for oy in 0..<outHeight {
                    let iy = oy * stride - padding + ky
                    if iy < 0 || iy >= height { continue }
                    for ox in validColumns(kx) {
                        let ix = ox * stride - padding + kx
                        addFloats(colsT + (oy * outWidth + ox) * patch + tap, to: dxT + (iy * width + ix) * channels,
                                  count: channels)
                    }
                }
            }
        }
        transpose(dxT, rows: height * width, cols: channels, into: dx)
    }
}
