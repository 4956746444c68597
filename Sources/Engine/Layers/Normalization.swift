/// `nn.BatchNorm2d(channels, eps, momentum)`, NCHW, with *synchronised* batch statistics.
///
/// In training the mean and variance are over the whole global batch (all chunks, all ranks):
/// per-chunk sums → exact reduction → mean; per-chunk squared deviations → exact reduction → biased
/// variance (docs/architecture.md §2.5). Running statistics follow PyTorch: `r ← (1−m)·r + m·stat`
/// with the unbiased variance. Backward reduces Σdy and Σdy·(x−mean) the same way. Evaluation uses
/// the running statistics. Parameters `weight` (γ, 1) and `bias` (β, 0); buffers `running_mean` (0)
/// and `running_var` (1).
public final class BatchNorm2d: Layer {
    public let channels, height, width: Int
    let name: String
    let weightOffset, biasOffset, runningMeanOffset, runningVarOffset: Int
    private var mean: [Float], invStd: [Float]
    /// Per-chunk partial sums, `[chunk][2·channels]`, grown once.
    private var partials: [Float] = []
    private var totals: [Float]
    /// Per channel, y = x·alpha + shift.
    private var alpha: [Float], shift: [Float]
    private let statisticsSegments: [[SumSegment]]

    public init(name: String, inShape: [Int], layout: inout ParameterLayout) throws {
        guard inShape.count == 3 else {
            throw EngineError.invalidModel("\(name): BatchNorm2d needs an image input (C×H×W), got \(inShape)")
        }
        self.name = name
        (channels, height, width) = (inShape[0], inShape[1], inShape[2])
        inputShape = [channels, height, width]
        weightOffset = layout.declare("\(name).weight", shape: [channels], initializer: .constant(1))
        biasOffset = layout.declare("\(name).bias", shape: [channels], initializer: .constant(0))
        runningMeanOffset = layout.declare("\(name).running_mean", shape: [channels], kind: .buffer, initializer: .constant(0))
        runningVarOffset = layout.declare("\(name).running_var", shape: [channels], kind: .buffer, initializer: .constant(1))
        mean = [Float](repeating: 0, count: channels)
        invStd = mean
        totals = [Float](repeating: 0, count: 2 * channels)
        alpha = mean
        shift = mean
        let c = inShape[0]
        statisticsSegments = [["sum"], ["squared deviation"], ["Σdy", "Σdy·(x−mean)"]].map { labels in
            labels.enumerated().map { i, label in SumSegment(name: "\(name) \(label)", range: (i * c)..<((i + 1) * c)) }
        }
    }

    public var description: String { "BatchNorm2d(\(channels))" }
    // Stored, not computed: layers read their sizes on every call, and a fresh array allocates.
    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }

    /// A value summed per chunk and channel by `reduceChunkSums`: `term(sample, channel, slot)`
    /// for each of `perChannel` slots.
    private protocol ChannelTerm {
        func callAsFunction(_ sample: Int, _ channel: Int, _ slot: Int) -> Float
    }

    /// Fills `partials` with `width` per-channel chunk sums from `term(sample, channel, slot)`,
    /// then reduces them exactly over the global batch into `totals`.
    private func reduceChunkSums<Term: ChannelTerm>(_ pass: Pass, perChannel: Int, segments: [SumSegment],
                                                    _ term: Term) throws {
        let width = perChannel * channels
        if partials.count < pass.chunkCount * width {
            partials = [Float](repeating: 0, count: pass.chunkCount * width)
        }
        partials.withUnsafeMutableBufferPointer { buffer in
            pass.forEachChunk(ChunkSums(p: buffer.baseAddress!, width: width, perChannel: perChannel,
                                        channels: channels, term: term))
        }
        try partials.withUnsafeBufferPointer { p in
            try totals.withUnsafeMutableBufferPointer { t in
                try pass.reducer.sumChunks(p.baseAddress!, rows: pass.chunkCount, width: width,
                                           segments: segments, into: t.baseAddress!)
            }
        }
    }

    private struct ChunkSums<Term: ChannelTerm>: ChunkSamplesTask {
        let p: UnsafeMutablePointer<Float>
        let width, perChannel, channels: Int
        let term: Term

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            let row = p + chunk * width
            row.update(repeating: 0, count: width)
            for s in first..<(first + count) {
                for slot in 0..<perChannel {
                    for c in 0..<channels { row[slot * channels + c] += term(s, c, slot) }
                }
            }
        }
    }

    public func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ pass: Pass) throws {
        let plane = height * width, channels = channels
        let weight = pass.parameters + weightOffset, bias = pass.parameters + biasOffset
        let runningMean = pass.buffers + runningMeanOffset, runningVar = pass.buffers + runningVarOffset
        let eps = pass.hyper.batchNormEpsilon
        if pass.training {
            let n = Float(pass.globalSampleCount * plane)
            try reduceChunkSums(pass, perChannel: 1, segments: statisticsSegments[0],
                                Sum(x: x, channels: channels, plane: plane))
            for c in 0..<channels { mean[c] = totals[c] / n }
            try reduceChunkSums(pass, perChannel: 1, segments: statisticsSegments[1],
                                SquaredDeviation(x: x, mean: mean, channels: channels, plane: plane))
            let momentum = pass.hyper.batchNormMomentum
            for c in 0..<channels {
                let variance = totals[c] / n
                invStd[c] = 1 / (variance + eps).squareRoot()
                let unbiased = totals[c] / max(n - 1, 1)
                runningMean[c] = (1 - momentum) * runningMean[c] + momentum * mean[c]
                runningVar[c] = (1 - momentum) * runningVar[c] + momentum * unbiased
            }
        } else {
            for c in 0..<channels {
                mean[c] = runningMean[c]
                invStd[c] = 1 / (runningVar[c] + eps).squareRoot()
            }
        }
        // y = x·α + β' with α = γ/σ and β' = β − mean·α, as PyTorch's CPU kernel.
        for c in 0..<channels {
            alpha[c] = invStd[c] * weight[c]
            shift[c] = bias[c] - mean[c] * alpha[c]
        }
        pass.forEachChunk(Normalize(y: y, x: x, alpha: alpha, shift: shift, channels: channels, plane: plane))
    }

    /// A sample's sum over one channel's plane.
    private struct Sum: ChannelTerm {
        let x: UnsafePointer<Float>
        let channels, plane: Int

        func callAsFunction(_ s: Int, _ c: Int, _ slot: Int) -> Float {
            horizontalSum(x + (s * channels + c) * plane, count: plane)
        }
    }

    /// A sample's sum of (x − mean)² over one channel's plane.
    private struct SquaredDeviation: ChannelTerm {
        let x: UnsafePointer<Float>
        let mean: [Float]
        let channels, plane: Int

        func callAsFunction(_ s: Int, _ c: Int, _ slot: Int) -> Float {
            let p = x + (s * channels + c) * plane
            let m = mean[c], mv = Vec16(repeating: mean[c])
            return laneSum(count: plane, { let d = load16(p + $0) - mv; return d * d }, { let d = p[$0] - m; return d * d })
        }
    }

    private struct Normalize: ChunkSamplesTask {
        let y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>
        let alpha: [Float], shift: [Float]
        let channels, plane: Int

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            for s in first..<(first + count) {
                for c in 0..<channels {
                    let o = (s * channels + c) * plane
                    for i in 0..<plane { y[o + i] = x[o + i] * alpha[c] + shift[c] }
                }
            }
        }
    }

    public func backward(_ dx: UnsafeMutablePointer<Float>?, _ dy: UnsafePointer<Float>,
                         _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ pass: Pass) throws {
        let plane = height * width, channels = channels
        guard pass.training else {
            // Evaluation mode: the statistics are constants, so y is affine in x.
            pass.forEachChunk(EvaluationBackward(
                pass: pass, dx: dx, dy: dy, x: x, weight: pass.parameters + weightOffset, mean: mean,
                invStd: invStd, weightOffset: weightOffset, biasOffset: biasOffset, channels: channels, plane: plane))
            return
        }
        try reduceChunkSums(pass, perChannel: 2, segments: statisticsSegments[2],
                            GradientTerms(dy: dy, x: x, mean: mean, channels: channels, plane: plane))
        // Parameter gradients: each chunk's Σdy·x̂ and Σdy, reduced later with all gradients.
        for chunk in 0..<pass.chunkCount {
            let grads = pass.gradients(ofChunk: chunk), row = chunk * 2 * channels
            for c in 0..<channels {
                grads[weightOffset + c] = partials[row + channels + c] * invStd[c]
                grads[biasOffset + c] = partials[row + c]
            }
        }
        guard let dx else { return }
        let n = Float(pass.globalSampleCount * plane)
        let weight = pass.parameters + weightOffset
        pass.forEachChunk(InputGradient(dx: dx, dy: dy, x: x, weight: weight, totals: totals, mean: mean,
                                        invStd: invStd, channels: channels, plane: plane, n: n))
    }

    /// Evaluation mode's backward: the statistics are constants, so y is affine in x.
    private struct EvaluationBackward: ChunkSamplesTask {
        let pass: Pass
        let dx: UnsafeMutablePointer<Float>?, dy: UnsafePointer<Float>, x: UnsafePointer<Float>
        let weight: UnsafeMutablePointer<Float>
        let mean: [Float], invStd: [Float]
        let weightOffset, biasOffset, channels, plane: Int

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            let grads = pass.gradients(ofChunk: chunk)
            (grads + weightOffset).update(repeating: 0, count: channels)
            (grads + biasOffset).update(repeating: 0, count: channels)
            for s in first..<(first + count) {
                for c in 0..<channels {
                    let o = (s * channels + c) * plane
                    let m = mean[c], mv = Vec16(repeating: m)
                    grads[biasOffset + c] += horizontalSum(dy + o, count: plane)
                    grads[weightOffset + c] += invStd[c] * laneSum(
                        count: plane, { load16(dy + o + $0) * (load16(x + o + $0) - mv) }, { dy[o + $0] * (x[o + $0] - m) })
                    guard let dx else { continue }
                    let scale = invStd[c] * weight[c]
                    for i in 0..<plane { dx[o + i] = dy[o + i] * scale }
                }
            }
        }
    }

    /// Slot 0: Σdy; slot 1: Σdy·(x − mean).
    private struct GradientTerms: ChannelTerm {
        let dy: UnsafePointer<Float>, x: UnsafePointer<Float>
        let mean: [Float]
        let channels, plane: Int

        func callAsFunction(_ s: Int, _ c: Int, _ slot: Int) -> Float {
            let o = (s * channels + c) * plane
            if slot == 0 { return horizontalSum(dy + o, count: plane) }
            let m = mean[c], mv = Vec16(repeating: m)
            return laneSum(count: plane, { load16(dy + o + $0) * (load16(x + o + $0) - mv) }, { dy[o + $0] * (x[o + $0] - m) })
        }
    }

    private struct InputGradient: ChunkSamplesTask {
        let dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>
        let weight: UnsafeMutablePointer<Float>
        let totals: [Float], mean: [Float], invStd: [Float]
        let channels, plane: Int
        let n: Float

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            for s in first..<(first + count) {
                for c in 0..<channels {
                    let gradMean = totals[c] / n
                    let projection = totals[channels + c] * invStd[c] * invStd[c] / n
                    let scale = invStd[c] * weight[c]
                    let m = mean[c]
                    let o = (s * channels + c) * plane
                    for i in 0..<plane {
                        dx[o + i] = (dy[o + i] - (x[o + i] - m) * projection - gradMean) * scale
                    }
                }
            }
        }
    }
}
