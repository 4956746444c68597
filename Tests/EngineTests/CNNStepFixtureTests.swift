import DistributedTraining
import Engine
import Foundation
import TestSupport
import XCTest

/// Two SGD steps of the whole seed CNN (with and without batch norm) against PyTorch: the
/// fixtures `seed_cnn_step.json` and `seed_cnn_bn_step.json` hold the PyTorch program in `call`
/// and, in `formula`, how the initial parameters and the batch are made:
///
///     parameter tensor t (state_dict order), element i: float32(b·sin(0.618·i + t)), b = 1/√fan_in
///     batch-norm weight: float32(1 + 0.1·sin(0.618·i + t)), bias: float32(0.1·sin(0.618·i + t))
///     x[j] = float32(0.5 + 0.5·sin(0.1·j)) for the [8, 1, 28, 28] batch; labels[n] = n % 10
///     torch.optim.SGD(lr=0.05, momentum=0.9, weight_decay=5e-4); F.cross_entropy, mean
///
/// Foundation's `sin` on Linux is glibc's, as Python's `math.sin`, so both sides start from the
/// same bits. The step is the sequence `Trainer.trainStep` runs (forward, loss, backward, exact
/// reduction over chunks, SGD) without its data-set sampling.
final class CNNStepFixtureTests: XCTestCase {
    /// Loss and step-2 parameters: relative 1e-5 (each is a sum of a few rounded terms, or a
    /// parameter moved by lr·v ≪ the parameter itself).
    static let valueTolerance: Float = 1e-5
    /// Gradients: 1e-4 of the tensor's largest magnitude. They come out of ~225k-term chains of
    /// Float sums in a different order from PyTorch's (oneDNN convolution, blocked GEMM), and
    /// many elements are near-cancelling sums over the batch, so a per-element relative bound is
    /// meaningless near zero; ~1e-6 of the scale is what the orders alone give, a transposed
    /// index or wrong term gives O(1).
    static let gradientTolerance: Float = 1e-4

    struct StepRunner {
        let network: Network
        var parameters: [Float]
        var buffers: [Float]
        var velocity: [Float]
        let activations: Activations
        let executor: ParallelExecutor
        let reducer = ExactReducer(communicator: SerialCommunicator())
        let optimizer = SGD(momentum: 0.9, weightDecay: 5e-4)

        init(model: String, threads: Int) throws {
            network = try Network(spec: ModelSpec(model), inputShape: [1, 28, 28], classes: 10)
            var p: [Float] = [], b: [Float] = []
            network.layout.initialize(parameters: &p, buffers: &b, seed: 0)  // running stats 0 / 1
            let layout = network.layout
            for (t, tensor) in layout.parameters.enumerated() {
                let module = String(tensor.name.split(separator: ".")[0])
                let fanIn = layout.tensor(module + ".weight").shape.dropFirst().reduce(1, *)
                let b = 1 / Double(fanIn).squareRoot()
                for i in 0..<tensor.count {
                    let s = sin(0.618 * Double(i) + Double(t))
                    let value: Double
                    if module.hasPrefix("bn") {
                        value = tensor.name.hasSuffix("weight") ? 1 + 0.1 * s : 0.1 * s
                    } else {
                        value = b * s
                    }
                    p[tensor.offset + i] = Float(value)
                }
            }
            parameters = p
            buffers = b.isEmpty ? [0] : b
            velocity = [Float](repeating: 0, count: p.count)
            activations = Activations(network: network, capacity: 8)
            executor = ParallelExecutor(threads: threads)
        }

        /// One training step on the formula's batch; returns the mean loss and the gradient.
        mutating func step(chunkSize: Int) throws -> (loss: Float, gradient: [Float]) {
            let batch = 8, count = network.parameterCount, chunks = batch / chunkSize
            for j in 0..<(batch * 28 * 28) { activations.input[j] = Float(0.5 + 0.5 * sin(0.1 * Double(j))) }
            let labels = (0..<batch).map { UInt8($0 % 10) }
            var chunkGradients = [Float](repeating: 0, count: chunks * count)
            var gradient = [Float](repeating: 0, count: count)
            var chunkLoss = [Float](repeating: 0, count: chunks)
            var chunkCorrect = [Int64](repeating: 0, count: chunks)
            let (network, activations, executor, reducer) = (network, activations, executor, reducer)
            try parameters.withUnsafeMutableBufferPointer { params in
                try buffers.withUnsafeMutableBufferPointer { bufs in
                    try chunkGradients.withUnsafeMutableBufferPointer { partials in
                        let pass = Pass(sampleCount: batch, chunkSize: chunkSize, globalSampleCount: batch, training: true,
                                        parameters: params.baseAddress!, buffers: bufs.baseAddress!,
                                        chunkGradients: partials.baseAddress!, parameterCount: count, executor: executor,
                                        reducer: reducer, hyper: LayerHyperparameters())
                        try network.forward(activations, pass)
                        network.loss.evaluate(outputs: activations.output, labels: labels, classes: 10, pass: pass,
                                              gradient: activations.outputGradient, chunkLoss: &chunkLoss,
                                              chunkCorrect: &chunkCorrect)
                        try network.backward(activations, pass)
                        try reducer.sumChunks(GradientPartials(pass: pass, layers: network.layers), rows: chunks, width: count,
                                              segments: network.layout.parameters.map { SumSegment(name: $0.name, range: $0.range) },
                                              into: &gradient)
                    }
                }
            }
            var lossSum: Float = 0
            try reducer.sumChunks(chunkLoss, rows: chunks, width: 1, segments: [SumSegment(name: "loss", range: 0..<1)],
                                  into: &lossSum)
            optimizer.step(parameters: &parameters, gradients: gradient, velocity: &velocity, count: count, learningRate: 0.05)
            return (lossSum / Float(batch), gradient)
        }
    }

    /// True for the bias of a convolution whose output goes straight into a BatchNorm2d.
    static func feedsBatchNorm(_ tensor: String, in network: Network) -> Bool {
        guard tensor.hasSuffix(".bias") else { return false }
        let module = tensor.dropLast(5)
        let convolutions = network.layers.indices.filter { network.layers[$0] is Conv2d }
        guard let k = Int(module.dropFirst(4)), module.hasPrefix("conv"), k <= convolutions.count else { return false }
        let index = convolutions[k - 1] + 1
        return index < network.layers.count && network.layers[index] is BatchNorm2d
    }

    /// Runs both steps at `chunkSize` and compares everything the fixture holds.
    @discardableResult
    func check(_ name: String, model: String, chunkSize: Int, threads: Int = 1) throws -> StepRunner {
        let fixture = try Fixture.load(name)
        XCTAssertTrue(fixture.call.contains("lr=0.05, momentum=0.9, weight_decay=5e-4"), "the fixture's optimizer changed")
        var runner = try StepRunner(model: model, threads: threads)
        let layout = runner.network.layout
        let label = "\(name), chunk \(chunkSize)"
        let (loss1, gradient) = try runner.step(chunkSize: chunkSize)
        assertClose([loss1], fixture["loss1"], tolerance: Self.valueTolerance, "\(label): loss1")
        var compared = 0
        for tensor in layout.parameters {
            let expected = fixture["grad." + tensor.name]
            let ours = Array(gradient[tensor.range])
            if Self.feedsBatchNorm(tensor.name, in: runner.network) {
                // A bias just before a batch norm has gradient 0 exactly in real arithmetic (the
                // norm subtracts the batch mean); both sides hold rounding noise (PyTorch's is
                // below 1e-8), so there is nothing relative to compare, only the size of the noise.
                XCTAssertLessThanOrEqual(ours.map(abs).max()!, 1e-7, "\(label): grad.\(tensor.name) should be ~0")
                XCTAssertLessThanOrEqual(expected.data.map(abs).max()!, 1e-7, "\(label): PyTorch's grad.\(tensor.name)")
            } else {
                let scale = expected.data.map(abs).max()!
                assertClose(ours, expected, tolerance: Self.gradientTolerance, floor: scale, "\(label): grad.\(tensor.name)")
            }
            compared += 1
        }
        XCTAssertEqual(compared, fixture.tensors.keys.filter { $0.hasPrefix("grad.") }.count, "every grad.* compared")
        let (loss2, _) = try runner.step(chunkSize: chunkSize)
        assertClose([loss2], fixture["loss2"], tolerance: Self.valueTolerance, "\(label): loss2")
        compared = 0
        for tensor in layout.tensors {
            let values = tensor.kind == .parameter ? runner.parameters : runner.buffers
            assertClose(Array(values[tensor.range]), fixture["step2." + tensor.name], tolerance: Self.valueTolerance,
                        "\(label): step2.\(tensor.name)")
            compared += 1
        }
        XCTAssertEqual(compared, fixture.tensors.keys.filter { $0.hasPrefix("step2.") }.count, "every step2.* compared")
        return runner
    }

    func testSeedCNNOneChunk() throws {
        try check("seed_cnn_step", model: "seed-cnn", chunkSize: 8)
    }

    func testSeedCNNChunksOfTwo() throws {
        let serial = try check("seed_cnn_step", model: "seed-cnn", chunkSize: 2)
        let threaded = try check("seed_cnn_step", model: "seed-cnn", chunkSize: 2, threads: 2)
        assertBitwiseEqual(threaded.parameters, serial.parameters, "seed-cnn parameters after 2 steps on 2 threads")
    }

    func testSeedCNNWithBatchNormOneChunk() throws {
        try check("seed_cnn_bn_step", model: "seed-cnn-bn", chunkSize: 8)
    }

    func testSeedCNNWithBatchNormChunksOfTwo() throws {
        let serial = try check("seed_cnn_bn_step", model: "seed-cnn-bn", chunkSize: 2)
        let threaded = try check("seed_cnn_bn_step", model: "seed-cnn-bn", chunkSize: 2, threads: 2)
        assertBitwiseEqual(threaded.parameters, serial.parameters, "seed-cnn-bn parameters after 2 steps on 2 threads")
        assertBitwiseEqual(threaded.buffers, serial.buffers, "seed-cnn-bn running statistics after 2 steps on 2 threads")
    }
}
