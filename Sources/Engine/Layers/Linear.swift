/// `nn.Linear(in, out)`: y = x·Wᵀ + b with weight `[out, in]` and bias `[out]`.
/// Each output is one fixed-order FMA chain over the inputs, started from the bias.
///
/// The weight's gradient partials are deferred (`DeferredGradients`): backward keeps the
/// output gradient, and a reduction recomputes each chunk's dyᵀ · x by blocks of rows — or,
/// when the whole batch's inputs and output gradients are the smaller message, computes the
/// gradients from those (`FactoredGradients`).
public final class Linear: DeferredGradients, FactoredGradients {
    public let inFeatures, outFeatures: Int
    let weightOffset, biasOffset: Int

    public init(name: String, inShape: [Int], outFeatures: Int, layout: inout ParameterLayout,
                initScheme: InitScheme) throws {
        guard inShape.count == 1 else {
            throw EngineError.invalidModel("\(name): Linear needs a flat input; put 'flatten' before it (input is \(inShape))")
        }
        inFeatures = inShape[0]
        self.outFeatures = outFeatures
        inputShape = [inFeatures]
        outputShape = [outFeatures]
        guard TensorSize.bounded([outFeatures, inFeatures]) != nil else {
            throw EngineError.invalidModel("\(name): Linear's weight \(TensorSize.text([outFeatures, inFeatures])) is out of range: every dimension at least 1, at most 2^28 values")
        }
        weightOffset = layout.declare("\(name).weight", shape: [outFeatures, inFeatures],
                                      initializer: initScheme.weight(fanIn: inFeatures, fanOut: outFeatures))
        biasOffset = layout.declare("\(name).bias", shape: [outFeatures], initializer: initScheme.bias(fanIn: inFeatures))
    }

    /// The last backward's input and a copy of its output gradient (the pass's gradient
    /// buffers are reused by the layers before this one), for `deferredPartials`.
    private var savedInput: UnsafePointer<Float>?
    private let savedGradient = GrowingBuffer<Float>()

    public var description: String { "Linear(in_features=\(inFeatures), out_features=\(outFeatures))" }
    // Stored, not computed: layers read their sizes on every call, and a fresh array allocates.
    public let inputShape: [Int], outputShape: [Int]

    public func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ pass: Pass) throws {
        pass.forEachShare(Forward(y: y, x: x, weight: pass.parameters + weightOffset, bias: pass.parameters + biasOffset,
                                  inFeatures: inFeatures, outFeatures: outFeatures))
    }

    /// The share's yᵀ = W · xᵀ + bias as `[out, samples]`, then transposed into y: W's rows are
    /// read as they are stored (no transposed copy of a large weight per pass), and only the
    /// share's inputs and outputs are transposed.
    private struct Forward: ShareSamplesTask {
        let y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>
        let weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>
        let inFeatures, outFeatures: Int

        func run(first: Int, count: Int, workspace: Workspace) {
            let xT = workspace.floats(.transposedInput, count: inFeatures * count)
            let yT = workspace.floats(.transposedOutput, count: outFeatures * count)
            transpose(x + first * inFeatures, rows: count, cols: inFeatures, into: xT)
            for o in 0..<outFeatures {
                (yT + o * count).update(repeating: bias[o], count: count)
            }
            gemm(m: outFeatures, n: count, k: inFeatures, a: weight, aRowStride: inFeatures, aColStride: 1,
                 b: xT, ldb: count, c: yT, ldc: count, accumulate: true)
            transpose(yT, rows: outFeatures, cols: count, into: y + first * outFeatures)
        }
    }

    public func backward(_ dx: UnsafeMutablePointer<Float>?, _ dy: UnsafePointer<Float>,
                         _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ pass: Pass) throws {
        let weight = pass.parameters + weightOffset
        let saved = savedGradient.storage(count: pass.sampleCount * outFeatures)
        savedInput = x
        pass.forEachChunk(BiasGradient(pass: pass, dy: dy, biasOffset: biasOffset, outFeatures: outFeatures))
        pass.forEachShare(InputGradient(dx: dx, dy: dy, weight: weight, saved: saved,
                                        inFeatures: inFeatures, outFeatures: outFeatures))
    }

    private struct BiasGradient: ChunkSamplesTask {
        let pass: Pass
        let dy: UnsafePointer<Float>
        let biasOffset, outFeatures: Int

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            let dBias = pass.gradients(ofChunk: chunk) + biasOffset
            let dOut = dy + first * outFeatures
            dBias.update(repeating: 0, count: outFeatures)
            for s in 0..<count {
                for o in 0..<outFeatures { dBias[o] += dOut[s * outFeatures + o] }
            }
        }
    }

    /// Saves the output gradient for `deferredPartials`, and computes dx = dy·W.
    private struct InputGradient: ShareSamplesTask {
        let dx: UnsafeMutablePointer<Float>?, dy: UnsafePointer<Float>
        let weight: UnsafeMutablePointer<Float>, saved: UnsafeMutablePointer<Float>
        let inFeatures, outFeatures: Int

        func run(first: Int, count: Int, workspace: Workspace) {
            (saved + first * outFeatures).update(from: dy + first * outFeatures, count: count * outFeatures)
            if let dx {
                gemm(m: count, n: inFeatures, k: outFeatures, a: dy + first * outFeatures, aRowStride: outFeatures,
                     aColStride: 1, b: weight, ldb: inFeatures, c: dx + first * inFeatures, ldc: inFeatures,
                     accumulate: false)
            }
        }
    }

    public var deferredRange: Range<Int> { weightOffset..<(weightOffset + outFeatures * inFeatures) }
    /// Eight rows of the weight: the rows of one pass of gemm's 8-row kernel.
    public var deferredBlockLength: Int { 8 * inFeatures }

    /// dW = dyᵀ · x per chunk: each element's chain runs over the chunk's samples in order.
    public func deferredPartials(_ block: Range<Int>, into partials: UnsafeMutablePointer<Float>, pass: Pass) {
        precondition((block.lowerBound - weightOffset) % inFeatures == 0 && block.count % inFeatures == 0,
                     "deferred blocks are whole weight rows")
        let firstRow = (block.lowerBound - weightOffset) / inFeatures, rows = block.count / inFeatures
        for chunk in 0..<pass.chunkCount {
            let samples = pass.samples(ofChunk: chunk)
            gemm(m: rows, n: inFeatures, k: samples.count, a: savedGradient.pointer! + samples.lowerBound * outFeatures + firstRow,
                 aRowStride: 1, aColStride: outFeatures, b: savedInput! + samples.lowerBound * inFeatures, ldb: inFeatures,
                 c: partials + chunk * block.count, ldc: inFeatures, accumulate: false)
        }
    }

    public var factoredRange: Range<Int> {
        precondition(biasOffset == weightOffset + outFeatures * inFeatures, "the bias follows the weight")
        return weightOffset..<(biasOffset + outFeatures)
    }

    public var lastFactors: (input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>) {
        (savedInput!, UnsafePointer(savedGradient.pointer!))
    }

    /// dW = dyᵀ · x and db = Σ dy over the samples: each value's chain runs over the samples in
    /// order. The rows' output gradients are transposed first, so that gemm's A rows are
    /// contiguous (read in place, they would be one output-width stride apart per sample).
    public func factoredGradients(input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, samples: Int,
                                  rows: Range<Int>, into gradient: UnsafeMutablePointer<Float>, workspace: Workspace) {
        guard !rows.isEmpty else { return }
        let dyT = workspace.floats(.transposedOutputGradient, count: rows.count * samples)
        transpose(outputGradient + rows.lowerBound, rows: samples, cols: rows.count, srcRowStride: outFeatures, into: dyT)
        gemm(m: rows.count, n: inFeatures, k: samples, a: dyT, aRowStride: samples, aColStride: 1,
             b: input, ldb: inFeatures, c: gradient + weightOffset + rows.lowerBound * inFeatures,
             ldc: inFeatures, accumulate: false)
        let dBias = gradient + biasOffset + rows.lowerBound
        dBias.update(from: outputGradient + rows.lowerBound, count: rows.count)
        for s in 1..<samples {
            addFloats(outputGradient + s * outFeatures + rows.lowerBound, to: dBias, count: rows.count)
        }
    }
}
