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
/// same bits. The step is the trainer's own (`Trainer.trainStep`), fed the formula's batch.
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

    /// The formula's batch: x[j] = float32(0.5 + 0.5·sin(0.1·j)), labels[n] = n % 10.
    final class FormulaBatch: BatchSource {
        let sampleSize = 28 * 28, classes = 10, sampleCount = 8
        func prepare(step: Int, batchSize: Int) {}
        func load(positions: Range<Int>, into input: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<UInt8>) {
            for (k, n) in positions.enumerated() {
                for i in 0..<sampleSize { input[k * sampleSize + i] = Float(0.5 + 0.5 * sin(0.1 * Double(n * sampleSize + i))) }
                labels[k] = UInt8(n % 10)
            }
        }
    }

    /// The trainer's own step (`Trainer.trainStep`) on the formula's batch and weights.
    static func trainer(model: String, chunkSize: Int, threads: Int) throws -> Trainer {
        let network = try Network(spec: ModelSpec(model), inputShape: [1, 28, 28], classes: 10)
        var options = TrainingOptions()
        options.hyperparameters.batchSize = 8
        options.hyperparameters.chunkSize = chunkSize
        options.hyperparameters.epochs = 2
        options.hyperparameters.learningRate = 0.05
        options.hyperparameters.schedule.shape = .constant
        options.hyperparameters.optimizer = Optimizer(momentum: 0.9, weightDecay: 5e-4)
        options.threads = threads
        let trainer = try Trainer(network: network, batches: FormulaBatch(), options: options, communicator: SerialCommunicator())
        var parameters: [Float] = [], buffers: [Float] = []
        network.layout.initialize(parameters: &parameters, buffers: &buffers, seed: 0)  // running stats 0 / 1
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
                parameters[tensor.offset + i] = Float(value)
            }
        }
        trainer.start(parameters: parameters, buffers: buffers)
        return trainer
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
    func check(_ name: String, model: String, chunkSize: Int, threads: Int = 1) throws -> Trainer {
        let fixture = try Fixture.load(name)
        XCTAssertTrue(fixture.call.contains("lr=0.05, momentum=0.9, weight_decay=5e-4"), "the fixture's optimizer changed")
        let trainer = try Self.trainer(model: model, chunkSize: chunkSize, threads: threads)
        let layout = trainer.network.layout
        let label = "\(name), chunk \(chunkSize)"
        let loss1 = try trainer.trainStep().loss
        let gradient = trainer.gradientValues
        assertClose([loss1], fixture["loss1"], tolerance: Self.valueTolerance, "\(label): loss1")
        var compared = 0
        for tensor in layout.parameters {
            let expected = fixture["grad." + tensor.name]
            let ours = Array(gradient[tensor.range])
            if Self.feedsBatchNorm(tensor.name, in: trainer.network) {
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
        let loss2 = try trainer.trainStep().loss
        assertClose([loss2], fixture["loss2"], tolerance: Self.valueTolerance, "\(label): loss2")
        compared = 0
        for tensor in layout.tensors {
            let values = tensor.kind == .parameter ? trainer.parameterValues : trainer.bufferValues
            assertClose(Array(values[tensor.range]), fixture["step2." + tensor.name], tolerance: Self.valueTolerance,
                        "\(label): step2.\(tensor.name)")
            compared += 1
        }
        XCTAssertEqual(compared, fixture.tensors.keys.filter { $0.hasPrefix("step2.") }.count, "every step2.* compared")
        return trainer
    }

    func testSeedCNNOneChunk() throws {
        try check("seed_cnn_step", model: "seed-cnn", chunkSize: 8)
    }

    func testSeedCNNChunksOfTwo() throws {
        let serial = try check("seed_cnn_step", model: "seed-cnn", chunkSize: 2)
        let threaded = try check("seed_cnn_step", model: "seed-cnn", chunkSize: 2, threads: 2)
        assertBitwiseEqual(threaded.parameterValues, serial.parameterValues, "seed-cnn parameters after 2 steps on 2 threads")
    }

    func testSeedCNNWithBatchNormOneChunk() throws {
        try check("seed_cnn_bn_step", model: "seed-cnn-bn", chunkSize: 8)
    }

    func testSeedCNNWithBatchNormChunksOfTwo() throws {
        let serial = try check("seed_cnn_bn_step", model: "seed-cnn-bn", chunkSize: 2)
        let threaded = try check("seed_cnn_bn_step", model: "seed-cnn-bn", chunkSize: 2, threads: 2)
        assertBitwiseEqual(threaded.parameterValues, serial.parameterValues, "seed-cnn-bn parameters after 2 steps on 2 threads")
        assertBitwiseEqual(threaded.bufferValues, serial.bufferValues, "seed-cnn-bn running statistics after 2 steps on 2 threads")
    }
}
