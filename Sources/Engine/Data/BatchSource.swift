/// Where a training step's samples come from. Step t's global batch holds `batchSize`
/// positions; a rank loads the positions of its chunks. `prepare` runs once per step on the
/// calling thread, then `load` on the executor's threads (it must only read).
public protocol BatchSource: AnyObject {
    /// Floats per sample (the network's input size) and the labels' class count.
    var sampleSize: Int { get }
    var classes: Int { get }
    /// Samples per epoch: an epoch has `sampleCount / batchSize` steps.
    var sampleCount: Int { get }
    /// Makes global step `step` (with `batchSize` samples) the one `load` reads.
    func prepare(step: Int, batchSize: Int)
    /// Writes the samples at `positions` of the prepared batch into `input`, one after
    /// another, and their labels into `labels`.
    func load(positions: Range<Int>, into input: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<UInt8>)
    /// The statistics the inputs are normalised with, which checkpoints keep (nil: none).
    var normalization: InputNormalization? { get }
}

extension BatchSource {
    public var normalization: InputNormalization? { nil }
}

/// A data set in a new order every epoch: epoch e's order is a permutation drawn from a
/// counter-based RNG keyed by (seed, e) alone, and step t's batch is the t-th slice of it
/// (docs/architecture.md §2.1). The last incomplete batch of an epoch is dropped. With an
/// `augmentation`, each sample is transformed by the draws of (seed, epoch, its index in the
/// data set) as it is loaded (`AugmentationDraw`).
public final class ShuffledBatches: BatchSource {
    public let dataset: Dataset
    public let seed: UInt64
    public let augmentation: Augmentation
    private var order: (epoch: Int, indices: [Int32], augmentation: CounterRNG)?
    private var batchStart = 0

    public init(_ dataset: Dataset, seed: UInt64, augmentation: Augmentation = Augmentation()) {
        self.dataset = dataset
        self.seed = seed
        self.augmentation = augmentation
    }

    public var sampleSize: Int { dataset.sampleSize }
    public var classes: Int { dataset.classes }
    public var sampleCount: Int { dataset.count }
    public var normalization: InputNormalization? { dataset.normalization }

    /// The RNG of epoch `epoch`'s augmentation draws.
    public static func augmentationRNG(seed: UInt64, epoch: Int) -> CounterRNG {
        CounterRNG(seed: seed, stream: "augmentation-epoch-\(epoch)")
    }

    public func prepare(step: Int, batchSize: Int) {
        let stepsPerEpoch = dataset.count / batchSize, epoch = step / stepsPerEpoch
        if order?.epoch != epoch {
            order = (epoch, CounterRNG(seed: seed, stream: "epoch-\(epoch)").permutation(count: dataset.count),
                     ShuffledBatches.augmentationRNG(seed: seed, epoch: epoch))
        }
        batchStart = (step % stepsPerEpoch) * batchSize
    }

    public func load(positions: Range<Int>, into input: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<UInt8>) {
        let order = order!
        let indices = order.indices[(batchStart + positions.lowerBound)..<(batchStart + positions.upperBound)]
        if augmentation.isEnabled {
            let (height, width) = (dataset.shape[1], dataset.shape[2])
            for (k, i) in indices.enumerated() {
                let draw = AugmentationDraw(augmentation, rng: order.augmentation, index: Int(i), height: height, width: width)
                dataset.augmentSample(Int(i), draw, into: input + k * sampleSize)
            }
        } else {
            dataset.scale(indices, into: input)
        }
        for (k, i) in indices.enumerated() { labels[k] = dataset.labels[Int(i)] }
    }
}
