/// Hyperparameters that live in layers rather than in the optimizer (they are options, not
/// constants buried in kernels).
public struct LayerHyperparameters: Codable, Sendable, Equatable {
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

/// A layer whose parameter gradients are one product of two per-sample factors summed over
/// the batch — dW = Σₛ dyₛ·xₛᵀ, db = Σₛ dyₛ — and can therefore be computed from the whole
/// global batch's factors in one fixed order on every rank, instead of from per-chunk
/// partials summed exactly. Worth it when the batch's factors are fewer bytes than the
/// exact sum of the gradient would send (`WholeBatchGradients`, docs/architecture.md §2.4).
public protocol FactoredGradients: Layer {
    /// The parameters (absolute indices) the factors give: the weight, then the bias.
    var factoredRange: Range<Int> { get }
    /// The last backward's factors of this rank's samples, per-sample contiguous: its input
    /// (`inputSize` floats a sample) and its output gradient (`outputSize` floats a sample).
    var lastFactors: (input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>) { get }
    /// Output rows `rows` of the gradients (weight rows and bias values) from the factors of
    /// `samples` samples, each value one chain over the samples in order, into `gradient`
    /// (indexed like the parameters), with `workspace` for scratch.
    func factoredGradients(input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, samples: Int,
                           rows: Range<Int>, into gradient: UnsafeMutablePointer<Float>, workspace: Workspace)
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
