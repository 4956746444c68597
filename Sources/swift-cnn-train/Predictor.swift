import Engine
import Foundation

/// A checkpoint's model run forward in eval mode (batch norm uses its running statistics),
/// serially, a batch at a time, as `evaluate` runs it: the same chunking, so the same bits.
final class Predictor {
    let network: Network
    private var parameters: [Float]
    /// The checkpoint's buffers, plus one so that the pointer exists for models without any.
    private var buffers: [Float]
    private let chunkSize: Int
    private let hyper: LayerHyperparameters
    private let executor: ParallelExecutor
    private let reducer = ExactReducer(communicator: SerialCommunicator())
    private let activations: Activations
    /// Samples per forward pass; the chunking, not this size, fixes the numbers.
    let batchCapacity: Int

    init(checkpoint: Checkpoint, network: Network, threads: Int) {
        self.network = network
        parameters = checkpoint.parameters
        buffers = checkpoint.buffers + [0]
        let m = checkpoint.manifest
        chunkSize = m.hyperparameters.chunkSize
        hyper = m.hyperparameters.layers
        executor = ParallelExecutor(threads: threads)
        batchCapacity = max(1, 64 / chunkSize) * chunkSize
        activations = Activations(network: network, capacity: batchCapacity)
    }

    /// Runs `count` samples through the model, `batchCapacity` at a time. `fill(range, input)`
    /// writes the x/255-scaled inputs of samples `range` one after another; `each(sample, p)`
    /// then receives each sample's class probabilities, in order.
    func predict(count: Int, fill: (Range<Int>, UnsafeMutablePointer<Float>) throws -> Void,
                 each: (Int, [Double]) throws -> Void) throws {
        let classes = network.classes
        var first = 0
        while first < count {
            let samples = min(batchCapacity, count - first)
            try fill(first..<(first + samples), activations.input)
            try parameters.withUnsafeMutableBufferPointer { p in
                try buffers.withUnsafeMutableBufferPointer { b in
                    let pass = Pass(samples: .init(count: samples, chunkSize: chunkSize, globalCount: samples),
                                    state: .init(parameters: p.baseAddress!, buffers: b.baseAddress!,
                                                 parameterCount: network.parameterCount),
                                    training: false, executor: executor, reducer: reducer, hyper: hyper)
                    try network.forward(activations, pass)
                }
            }
            for s in 0..<samples {
                try each(first + s, probabilities(activations.output + s * classes, count: classes))
            }
            first += samples
        }
    }

    /// Class probabilities from the model's outputs: exp of a log-softmax model's outputs;
    /// otherwise the softmax of the logits, in Double from the maximum down. `ScalarMath.exp`,
    /// not the system's, so that the probabilities do not depend on its libm.
    func probabilities(_ output: UnsafePointer<Float>, count: Int) -> [Double] {
        let logits = (0..<count).map { Double(output[$0]) }
        if network.loss == .nll { return logits.map { ScalarMath.exp($0) } }
        let top = logits.max() ?? 0
        let e = logits.map { ScalarMath.exp($0 - top) }
        let sum = e.reduce(0, +)
        return e.map { $0 / sum }
    }
}

/// The `k` most probable classes, most probable first (the lower class on a tie, as argmax).
func topClasses(_ probabilities: [Double], _ k: Int) -> [(label: Int, probability: Double)] {
    probabilities.enumerated().sorted { $0.element > $1.element || ($0.element == $1.element && $0.offset < $1.offset) }
        .prefix(k).map { ($0.offset, $0.element) }
}
