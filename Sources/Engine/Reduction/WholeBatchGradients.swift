/// The gradients of `FactoredGradients` layers whose global batch of factors is the smaller
/// message: every rank gathers the whole batch's inputs and output gradients of such a layer,
/// in global sample order, and computes the layer's gradients from them itself — the same
/// products on the same values on every rank, so the same bits for any rank count, with no
/// per-chunk partials and no fixed-point passes (docs/architecture.md §2.4).
///
/// A layer is chosen when its factors for the global batch, as Float, are fewer bytes than the
/// exact sum sends for its parameters (an Int64 each): B·(in + out)·4 < P·8. The choice
/// depends on the model and the batch size only, never on the rank count.
public final class WholeBatchGradients {
    public let layers: [FactoredGradients]
    let communicator: Communicator
    let executor: ParallelExecutor
    let batchSize: Int
    /// Samples each rank holds, in rank order, and this rank's first global sample.
    let rankSamples: [Int]
    let firstSample: Int
    /// The gathered factors, per layer: B × inputSize, then B × outputSize (with more than one rank).
    private var gathered: [(input: UnsafeMutablePointer<Float>, outputGradient: UnsafeMutablePointer<Float>)] = []

    /// The layers of `network` whose gradients come from the whole batch at `batchSize`.
    public static func chosenLayers(of network: Network, batchSize: Int) -> [FactoredGradients] {
        network.layers.compactMap { $0 as? FactoredGradients }.filter { layer in
            batchSize * (layer.inputSize + layer.outputSize) * 4 < layer.factoredRange.count * 8
        }
    }

    /// The floats the gathered factors take (with more than one rank), for memory estimates.
    public static func gatheredFloats(of network: Network, batchSize: Int) -> Int {
        chosenLayers(of: network, batchSize: batchSize).reduce(0) { $0 + batchSize * ($1.inputSize + $1.outputSize) }
    }

    public init(network: Network, batchSize: Int, chunkSize: Int, communicator: Communicator, executor: ParallelExecutor) {
        layers = WholeBatchGradients.chosenLayers(of: network, batchSize: batchSize)
        self.communicator = communicator
        self.executor = executor
        self.batchSize = batchSize
        let chunks = batchSize / chunkSize
        rankSamples = (0..<communicator.size).map { chunkRange(rank: $0, ranks: communicator.size, chunks: chunks).count * chunkSize }
        firstSample = rankSamples.prefix(communicator.rank).reduce(0, +)
        if communicator.size > 1 {
            gathered = layers.map { layer in
                (UnsafeMutablePointer<Float>.allocate(capacity: batchSize * layer.inputSize),
                 UnsafeMutablePointer<Float>.allocate(capacity: batchSize * layer.outputSize))
            }
        }
    }

    deinit {
        for (input, outputGradient) in gathered {
            input.deallocate()
            outputGradient.deallocate()
        }
    }

    /// The parameters whose gradients `compute` gives, one range per layer.
    public var ranges: [Range<Int>] { layers.map(\.factoredRange) }

    /// After backward: every chosen layer's gradients over the global batch, into `gradient`.
    /// Collectives (more than one rank): two in-place allgathers per layer.
    public func compute(into gradient: UnsafeMutablePointer<Float>) throws {
        for (l, layer) in layers.enumerated() {
            var (input, outputGradient) = layer.lastFactors
            if communicator.size > 1 {
                let (allInputs, allOutputGradients) = gathered[l]
                try gather(input, into: allInputs, width: layer.inputSize)
                try gather(outputGradient, into: allOutputGradients, width: layer.outputSize)
                (input, outputGradient) = (UnsafePointer(allInputs), UnsafePointer(allOutputGradients))
            }
            executor.run(count: executor.threadCount, Products(layer: layer, input: input, outputGradient: outputGradient,
                                                              samples: batchSize, slices: executor.threadCount, gradient: gradient))
        }
    }

    /// This rank's samples of `width` floats each, and every other rank's, into `all` in global order.
    private func gather(_ local: UnsafePointer<Float>, into all: UnsafeMutablePointer<Float>, width: Int) throws {
        (all + firstSample * width).update(from: local, count: rankSamples[communicator.rank] * width)
        try communicator.allgather(inPlace: UnsafeMutableBufferPointer(start: all, count: batchSize * width),
                                   samples: rankSamples, width: width)
    }

    /// Slice t of a layer's output rows, in whole blocks of 8 (gemm's tallest kernel).
    private struct Products: ParallelTask {
        let layer: FactoredGradients
        let input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>
        let samples, slices: Int
        let gradient: UnsafeMutablePointer<Float>

        func run(index t: Int, workspace: Workspace) {
            let blocks = ParallelExecutor.part(t, of: slices, 0..<((layer.outputSize + 7) / 8))
            let rows = min(blocks.lowerBound * 8, layer.outputSize)..<min(blocks.upperBound * 8, layer.outputSize)
            layer.factoredGradients(input: input, outputGradient: outputGradient, samples: samples, rows: rows,
                                    into: gradient, workspace: workspace)
        }
    }
}
