/// A contiguous slice of the tensors a reduction covers, with the name errors report.
public struct SumSegment: Sendable {
    public let name: String
    public let range: Range<Int>
    public init(name: String, range: Range<Int>) {
        self.name = name
        self.range = range
    }
}

/// Per-chunk partial sums of some values, read block by block by a reduction: `rows` chunks ×
/// the values, each chunk's partials of a block contiguous.
public protocol ChunkPartials {
    /// The blocks a reduction reads `range` in: consecutive runs of at most this many values,
    /// the first starting at `range.lowerBound` (`range` is one tensor).
    func blockLength(of range: Range<Int>) -> Int
    /// Where each chunk's partials of `block` start: chunk r's at `base + r·rowStride`. Valid
    /// until the next call with the same workspace.
    func rows(_ block: Range<Int>, workspace: Workspace) -> (base: UnsafePointer<Float>, rowStride: Int)
}

extension ChunkPartials {
    /// How many blocks a reduction reads `range` in.
    public func blockCount(of range: Range<Int>) -> Int {
        let length = blockLength(of: range)
        return (range.count + length - 1) / length
    }

    /// Block b of `range`.
    public func block(_ b: Int, of range: Range<Int>) -> Range<Int> {
        let length = blockLength(of: range), start = range.lowerBound + b * length
        return start..<min(start + length, range.upperBound)
    }
}

/// Partials stored as `rows` × `width` floats, row-major.
public struct StoredPartials: ChunkPartials {
    public let base: UnsafePointer<Float>
    public let width: Int
    public init(_ base: UnsafePointer<Float>, width: Int) {
        self.base = base
        self.width = width
    }
    /// Blocks only so that threads can share a long tensor.
    public func blockLength(of range: Range<Int>) -> Int { 4096 }
    public func rows(_ block: Range<Int>, workspace: Workspace) -> (base: UnsafePointer<Float>, rowStride: Int) {
        (base + block.lowerBound, width)
    }
}

/// Turns per-chunk partial sums into the sum over every chunk of the global batch, on every
/// rank. The engine only states what it needs; `Distributed` provides the exact
/// implementation (64-bit fixed point across chunks and ranks, design §2.4).
public protocol ChunkSumReducer: AnyObject {
    /// `partials` holds `rows` local chunks' partials of `width` values; `result` receives the
    /// `width` global sums of the values the segments cover. Throws if a value is NaN or
    /// infinite, naming its segment. Segments are whole tensors.
    func sumChunks<Partials: ChunkPartials>(_ partials: Partials, rows: Int, width: Int, segments: [SumSegment],
                                            into result: UnsafeMutablePointer<Float>) throws
}

extension ChunkSumReducer {
    /// The same, for partials stored as `rows` × `width` floats, row-major.
    public func sumChunks(_ partials: UnsafePointer<Float>, rows: Int, width: Int, segments: [SumSegment],
                          into result: UnsafeMutablePointer<Float>) throws {
        try sumChunks(StoredPartials(partials, width: width), rows: rows, width: width, segments: segments, into: result)
    }
}

/// Memory grown to the largest size asked for and then reused: no allocation per step. Its
/// contents are kept only until the next `storage(count:)` that has to grow it.
public final class GrowingBuffer<Element> {
    /// The memory as last sized (nil before the first request).
    public private(set) var pointer: UnsafeMutablePointer<Element>?
    private var capacity = 0

    public init() {}

    deinit { pointer?.deallocate() }

    /// At least `count` elements.
    public func storage(count: Int) -> UnsafeMutablePointer<Element> {
        if let pointer, capacity >= count { return pointer }
        pointer?.deallocate()
        capacity = max(count, 1)
        let grown = UnsafeMutablePointer<Element>.allocate(capacity: capacity)
        pointer = grown
        return grown
    }
}

/// Per-thread scratch memory, grown on first use and then reused: no allocation per step.
public final class Workspace {
    private var slots: [GrowingBuffer<Float>] = []

    public init() {}

    /// A buffer of at least `count` floats; slots are independent so a layer may hold several.
    public func floats(_ slot: Int, count: Int) -> UnsafeMutablePointer<Float> {
        while slots.count <= slot { slots.append(GrowingBuffer()) }
        return slots[slot].storage(count: count)
    }
}

/// One forward or backward pass over a rank's share of a batch.
///
/// Samples are laid out contiguously (NCHW for images); chunk c holds samples
/// `c·chunkSize ..< min((c+1)·chunkSize, sampleCount)`.
public final class Pass {
    public let sampleCount: Int
    public let chunkSize: Int
    public let chunkCount: Int
    /// The number of samples in the global batch: the divisor of means over the batch.
    public let globalSampleCount: Int
    public let training: Bool
    public let parameters: UnsafeMutablePointer<Float>
    public let buffers: UnsafeMutablePointer<Float>
    /// `chunkCount` rows of `parameterCount` gradient partials; each layer's backward
    /// overwrites its parameters' part of every row.
    public let chunkGradients: UnsafeMutablePointer<Float>?
    public let parameterCount: Int
    public let executor: ChunkExecutor
    public let reducer: ChunkSumReducer
    public let hyper: LayerHyperparameters

    public init(sampleCount: Int, chunkSize: Int, globalSampleCount: Int, training: Bool,
                parameters: UnsafeMutablePointer<Float>, buffers: UnsafeMutablePointer<Float>,
                chunkGradients: UnsafeMutablePointer<Float>?, parameterCount: Int,
                executor: ChunkExecutor, reducer: ChunkSumReducer, hyper: LayerHyperparameters) {
        self.sampleCount = sampleCount
        self.chunkSize = chunkSize
        self.chunkCount = (sampleCount + chunkSize - 1) / chunkSize
        self.globalSampleCount = globalSampleCount
        self.training = training
        self.parameters = parameters
        self.buffers = buffers
        self.chunkGradients = chunkGradients
        self.parameterCount = parameterCount
        self.executor = executor
        self.reducer = reducer
        self.hyper = hyper
    }

    @inlinable public func samples(ofChunk c: Int) -> Range<Int> {
        (c * chunkSize)..<min((c + 1) * chunkSize, sampleCount)
    }

    /// Runs `task` for every chunk.
    public func forEachChunk<Task: ChunkSamplesTask>(_ task: Task) {
        executor.run(chunks: chunkCount, EachChunk(pass: self, task: task))
    }

    /// Runs `task` for each of `threadCount` contiguous parts of the chunks (part t is where
    /// thread t starts in `forEachChunk`): for work whose rows do not depend on the chunking,
    /// so that an operand shared by every row (a weight) is streamed once per part instead of
    /// once per chunk.
    public func forEachShare<Task: ShareSamplesTask>(_ task: Task) {
        let parts = min(executor.threadCount, chunkCount)
        executor.run(chunks: parts, EachShare(pass: self, parts: parts, task: task))
    }

    /// The gradient partials of chunk `c`.
    public func gradients(ofChunk c: Int) -> UnsafeMutablePointer<Float> {
        chunkGradients! + c * parameterCount
    }
}

/// The work of `Pass.forEachChunk` on one chunk: samples `first ..< first + count`, whose
/// partials go to row `chunk`.
public protocol ChunkSamplesTask {
    func run(first: Int, count: Int, chunk: Int, workspace: Workspace)
}

/// The work of `Pass.forEachShare` on one thread's share of the chunks: samples
/// `first ..< first + count`.
public protocol ShareSamplesTask {
    func run(first: Int, count: Int, workspace: Workspace)
}

/// A `ChunkSamplesTask` as the executor runs it: chunk index → the chunk's samples.
private struct EachChunk<Task: ChunkSamplesTask>: ChunkTask {
    let pass: Pass
    let task: Task

    func run(chunk c: Int, workspace: Workspace) {
        let range = pass.samples(ofChunk: c)
        task.run(first: range.lowerBound, count: range.count, chunk: c, workspace: workspace)
    }
}

/// A `ShareSamplesTask` as the executor runs it: part t of `parts` of the chunks → its samples.
private struct EachShare<Task: ShareSamplesTask>: ChunkTask {
    let pass: Pass
    let parts: Int
    let task: Task

    func run(chunk t: Int, workspace: Workspace) {
        let chunks = ChunkExecutor.part(t, of: parts, 0..<pass.chunkCount)
        let first = chunks.lowerBound * pass.chunkSize, end = min(chunks.upperBound * pass.chunkSize, pass.sampleCount)
        task.run(first: first, count: end - first, workspace: workspace)
    }
}

/// Hyperparameters that live in layers rather than in the optimizer (they are options, not
/// constants buried in kernels).
public struct LayerHyperparameters: Sendable, Equatable {
    public var batchNormMomentum: Float
    public var batchNormEpsilon: Float
    public init(batchNormMomentum: Float = 0.1, batchNormEpsilon: Float = 1e-5) {
        self.batchNormMomentum = batchNormMomentum
        self.batchNormEpsilon = batchNormEpsilon
    }
}

/// A network layer. Tensors are per-sample contiguous (NCHW for images); `forward` and
/// `backward` see the whole rank's share of the batch and work chunk by chunk through
/// `pass.forEachChunk`. `backward` runs after `forward` on the same input and overwrites
/// `dx` (nil for the first layer) and its parameters' gradients in every chunk's partials
/// (so nothing has to clear them between steps), unless it defers them (`DeferredGradients`).
public protocol Layer: AnyObject {
    /// PyTorch's name of the module, e.g. "Conv2d(1, 32, kernel_size=3)".
    var description: String { get }
    var inputShape: [Int] { get }
    var outputShape: [Int] { get }
    func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ pass: Pass) throws
    func backward(_ dx: UnsafeMutablePointer<Float>?, _ dy: UnsafePointer<Float>,
                  _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ pass: Pass) throws
}

extension Layer {
    public var inputSize: Int { inputShape.reduce(1, *) }
    public var outputSize: Int { outputShape.reduce(1, *) }
}

/// A layer that stores no per-chunk partials of some of its parameters' gradients: it keeps
/// what they are computed from and recomputes them whenever a reduction reads them (twice:
/// for the maximum, then for the sum). That costs 2·`chunkSize` multiply-adds per value, far
/// less than writing and twice reading a value that lives in no cache (a Linear weight).
/// Reductions must read a deferred tensor as a segment of its own.
public protocol DeferredGradients: Layer {
    /// The parameters (absolute indices, one tensor) whose partials are deferred.
    var deferredRange: Range<Int> { get }
    /// Values per block the layer computes at once (see `ChunkPartials.blockLength`).
    var deferredBlockLength: Int { get }
    /// Every chunk's partials of `block` (within `deferredRange`) after the last backward,
    /// into `partials` as chunks × `block.count` floats.
    func deferredPartials(_ block: Range<Int>, into partials: UnsafeMutablePointer<Float>, pass: Pass)
}

/// The gradient partials of a pass: stored in `pass.chunkGradients`, or recomputed by the
/// layers that defer them.
public struct GradientPartials: ChunkPartials {
    let pass: Pass
    let deferring: [DeferredGradients]

    public init(pass: Pass, layers: [Layer]) {
        self.pass = pass
        deferring = layers.compactMap { $0 as? DeferredGradients }
    }

    private var stored: StoredPartials { StoredPartials(pass.chunkGradients!, width: pass.parameterCount) }

    private func deferrer(of range: Range<Int>) -> DeferredGradients? {
        deferring.first { $0.deferredRange.contains(range.lowerBound) }
    }

    public func blockLength(of range: Range<Int>) -> Int {
        deferrer(of: range)?.deferredBlockLength ?? stored.blockLength(of: range)
    }

    public func rows(_ block: Range<Int>, workspace: Workspace) -> (base: UnsafePointer<Float>, rowStride: Int) {
        guard let layer = deferrer(of: block) else { return stored.rows(block, workspace: workspace) }
        precondition(layer.deferredRange.contains(block.upperBound - 1), "a block straddles a deferred tensor's end")
        let partials = workspace.floats(0, count: pass.chunkCount * block.count)
        layer.deferredPartials(block, into: partials, pass: pass)
        return (UnsafePointer(partials), block.count)
    }
}

/// A layer that can apply ReLU to its output as it writes it and mask its output gradient
/// with it, so that a ReLU after it costs no pass over memory. `Network` sets `fusesReLU`
/// and skips the ReLU; the bits are those of the two layers apart. When the layer after
/// the ReLU masks the gradient itself (`MaxPool2d.masksReLU`), `Network` also sets
/// `gradientMasked` and the mask is not applied twice.
public protocol ReLUFusing: Layer {
    var fusesReLU: Bool { get set }
    var gradientMasked: Bool { get set }
}
