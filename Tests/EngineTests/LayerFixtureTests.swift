import Engine
import TestSupport
import XCTest

/// Every layer and loss against PyTorch. The fixtures are `Tests/EngineTests/Fixtures/<case>.json`,
/// written by `scripts/make_fixtures.py`; each file's `call` field is the exact PyTorch code, e.g.
///
///     x = torch.randn(2, 3, 6, 6, requires_grad=True); weight = torch.randn(4, 3, 3, 3, …)
///     y = F.conv2d(x, weight, bias, stride=1, padding=0); dy = torch.randn_like(y)
///     (y * dy).sum().backward()
///
/// Tolerance: |ours − PyTorch| ≤ 1e-5 · max(1, |PyTorch|). Both sides are Float32 with different
/// summation orders; the longest sums here have ≤ 100 terms of magnitude ≤ ~10, so rounding
/// differences stay below ~1e-6 — ten times under the bound, a hundred thousand times under
/// any real mistake (a wrong index or formula moves values by O(0.1–1)).
///
/// Each layer also runs in several chunkings and on 2 threads: threads must not change a bit
/// (docs/architecture.md §2.2); chunkings may change sums in their last bits, so they are held to
/// the tolerance.
final class LayerFixtureTests: XCTestCase {
    static let tolerance: Float = 1e-5

    struct LayerRun {
        var y, dx, gradients, buffers: [Float]
    }

    /// Builds the layer (named "layer"), loads `inputs` (parameters or buffers) from the fixture
    /// and runs forward with the fixture's x and backward with its dy.
    func runLayer(_ fixture: Fixture, samples: Int, chunkSize: Int, threads: Int, training: Bool = true,
                  inputs: [String] = [], make: (inout ParameterLayout) throws -> Layer) throws -> (LayerRun, ParameterLayout) {
        var layout = ParameterLayout()
        let layer = try make(&layout)
        let harness = LayerHarness(parameterCount: layout.parameterCount, bufferCount: layout.bufferCount, threads: threads)
        var p: [Float] = [], b: [Float] = []
        layout.initialize(parameters: &p, buffers: &b, seed: 1)  // running_mean 0, running_var 1
        if !p.isEmpty { harness.parameters = p }
        if !b.isEmpty { harness.buffers = b }
        for name in inputs { harness.set("layer.\(name)", fixture[name].data, layout: layout) }
        let (y, dx, gradients) = try harness.run(layer, x: fixture["x"].data, dy: fixture["dy"].data, samples: samples,
                                                 chunkSize: chunkSize, training: training)
        return (LayerRun(y: y, dx: dx, gradients: gradients, buffers: harness.buffers), layout)
    }

    /// Runs every chunking on 1 and 2 threads and compares each run with PyTorch: `y`, `dx`, the
    /// gradients `d<name>` of the layer's parameters, and the buffers listed in `outputBuffers`.
    func check(_ name: String, samples: Int, chunkSizes: [Int], training: Bool = true, inputs: [String] = [],
               outputBuffers: [String] = [], perSampleBitwise: Bool = false, tolerance: Float = LayerFixtureTests.tolerance,
               make: (inout ParameterLayout) throws -> Layer, file: StaticString = #filePath, line: UInt = #line) throws {
        let fixture = try Fixture.load(name)
        var firstChunking: LayerRun?
        for chunk in chunkSizes {
            let (run, layout) = try runLayer(fixture, samples: samples, chunkSize: chunk, threads: 1, training: training,
                                             inputs: inputs, make: make)
            let label = "\(name) chunk \(chunk)"
            assertClose(run.y, fixture["y"], tolerance: tolerance, "\(label) y", file: file, line: line)
            assertClose(run.dx, fixture["dx"], tolerance: tolerance, "\(label) dx", file: file, line: line)
            for tensor in layout.parameters where fixture.tensors["d" + tensor.name.dropFirst(6)] != nil {
                assertClose(Array(run.gradients[tensor.range]), fixture["d" + tensor.name.dropFirst(6)],
                            tolerance: tolerance, "\(label) d\(tensor.name)", file: file, line: line)
            }
            for buffer in outputBuffers {
                assertClose(Array(run.buffers[layout.tensor("layer." + buffer).range]), fixture[buffer],
                            tolerance: tolerance, "\(label) \(buffer)", file: file, line: line)
            }
            let (threaded, _) = try runLayer(fixture, samples: samples, chunkSize: chunk, threads: 2, training: training,
                                             inputs: inputs, make: make)
            assertBitwiseEqual(threaded.y, run.y, "\(label) y on 2 threads", file: file, line: line)
            assertBitwiseEqual(threaded.dx, run.dx, "\(label) dx on 2 threads", file: file, line: line)
            assertBitwiseEqual(threaded.gradients, run.gradients, "\(label) gradients on 2 threads", file: file, line: line)
            assertBitwiseEqual(threaded.buffers, run.buffers, "\(label) buffers on 2 threads", file: file, line: line)
            // Outputs computed sample by sample are the same bits in any chunking
            // (docs/architecture.md §2.2).
            if perSampleBitwise, let first = firstChunking {
                assertBitwiseEqual(run.y, first.y, "\(label) y vs chunk \(chunkSizes[0])", file: file, line: line)
                assertBitwiseEqual(run.dx, first.dx, "\(label) dx vs chunk \(chunkSizes[0])", file: file, line: line)
            }
            firstChunking = firstChunking ?? run
        }
    }

    func testConv2dStride1NoPadding() throws {
        try check("conv2d_s1p0", samples: 2, chunkSizes: [2, 1], inputs: ["weight", "bias"], perSampleBitwise: true) {
            try Conv2d(name: "layer", inShape: [3, 6, 6], outChannels: 4, kernel: 3, stride: 1, padding: 0,
                       layout: &$0, initScheme: .default)
        }
    }

    func testConv2dStride2Padding1() throws {
        try check("conv2d_s2p1", samples: 2, chunkSizes: [2, 1], inputs: ["weight", "bias"], perSampleBitwise: true) {
            try Conv2d(name: "layer", inShape: [2, 7, 7], outChannels: 3, kernel: 3, stride: 2, padding: 1,
                       layout: &$0, initScheme: .default)
        }
    }

    /// The Winograd path (3×3, stride 1, 16 channels), with partial tiles at the bottom and right.
    /// Its sums are longer (up to 288 terms, results up to ~50 in magnitude) and the transforms
    /// add up to 9 values before and after the products, so rounding reaches ~1e-5 where the
    /// direct product's stays near 1e-6: held to 5e-5, still far below a wrong index or sign (O(1)).
    static let winogradTolerance: Float = 5e-5

    func testConv2dWinogradNoPadding() throws {
        try checkWinograd("conv2d_winograd_p0", inShape: [16, 6, 7], outChannels: 16, padding: 0)
    }

    func testConv2dWinogradPadding1() throws {
        try checkWinograd("conv2d_winograd_p1", inShape: [16, 5, 5], outChannels: 32, padding: 1)
    }

    /// A 3×3, stride-1 Conv2d against its fixture, asserting that it takes the Winograd path.
    func checkWinograd(_ name: String, inShape: [Int], outChannels: Int, padding: Int,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        try check(name, samples: 2, chunkSizes: [2, 1], inputs: ["weight", "bias"], perSampleBitwise: true,
                  tolerance: Self.winogradTolerance, make: {
            let conv = try Conv2d(name: "layer", inShape: inShape, outChannels: outChannels, kernel: 3, stride: 1,
                                  padding: padding, layout: &$0, initScheme: .default)
            XCTAssertTrue(conv.usesWinograd, file: file, line: line)
            return conv
        }, file: file, line: line)
    }

    func testLinear() throws {
        try check("linear", samples: 4, chunkSizes: [4, 2, 1], inputs: ["weight", "bias"], perSampleBitwise: true) {
            try Linear(name: "layer", inShape: [5], outFeatures: 3, layout: &$0, initScheme: .default)
        }
    }

    func testMaxPool2dKernel2Stride2() throws {
        try check("maxpool2d_k2s2", samples: 2, chunkSizes: [2, 1], perSampleBitwise: true) { _ in
            try MaxPool2d(name: "layer", inShape: [3, 6, 6], kernel: 2, stride: 2)
        }
    }

    func testMaxPool2dKernel3Stride2() throws {
        try check("maxpool2d_k3s2", samples: 1, chunkSizes: [1]) { _ in
            try MaxPool2d(name: "layer", inShape: [2, 7, 7], kernel: 3, stride: 2)
        }
    }

    func testAvgPool2d() throws {
        try check("avgpool2d_k2s2", samples: 2, chunkSizes: [2, 1], perSampleBitwise: true) { _ in
            try AvgPool2d(name: "layer", inShape: [3, 6, 6], kernel: 2, stride: 2)
        }
    }

    /// Batch statistics over all 4 samples whatever the chunking (sync batch norm,
    /// docs/architecture.md §2.5); running_var is updated with the unbiased variance, as PyTorch
    /// does.
    func testBatchNorm2dTraining() throws {
        try check("batchnorm2d_train", samples: 4, chunkSizes: [4, 2, 1], inputs: ["weight", "bias"],
                  outputBuffers: ["running_mean", "running_var"]) {
            try BatchNorm2d(name: "layer", inShape: [3, 5, 5], layout: &$0)
        }
    }

    /// Evaluation normalises with the running statistics and leaves them unchanged;
    /// then dx = dy·γ/√(running_var + ε) (PyTorch's eval-mode backward).
    func testBatchNorm2dEvaluation() throws {
        try check("batchnorm2d_eval", samples: 2, chunkSizes: [2, 1], training: false,
                  inputs: ["weight", "bias", "running_mean", "running_var"],
                  outputBuffers: ["running_mean", "running_var"]) {
            try BatchNorm2d(name: "layer", inShape: [3, 4, 4], layout: &$0)
        }
    }

    // The pointwise fixtures are 64 values: run as 4 samples of 16 to cross chunk boundaries.
    func testReLU() throws {
        try check("relu", samples: 4, chunkSizes: [4, 1], perSampleBitwise: true) { _ in Activation(.relu, shape: [16]) }
    }

    func testGELU() throws {
        try check("gelu", samples: 4, chunkSizes: [4, 1], perSampleBitwise: true) { _ in Activation(.gelu, shape: [16]) }
    }

    func testTanh() throws {
        try check("tanh", samples: 4, chunkSizes: [4, 1], perSampleBitwise: true) { _ in Activation(.tanh, shape: [16]) }
    }

    /// `F.cross_entropy(logits, labels)` (mean over 6 samples) and its gradient; and with
    /// `label_smoothing=0.1`.
    func testCrossEntropy() throws {
        for (name, smoothing) in [("cross_entropy", Float(0)), ("cross_entropy_smoothed", 0.1)] {
            let fixture = try Fixture.load(name)
            XCTAssertEqual(fixture.call.contains("label_smoothing=0.1"), smoothing > 0, "\(name): the fixture's call changed")
            let labels = fixture["labels"].data.map { UInt8($0) }
            func loss(chunkSize: Int, threads: Int = 1) -> (loss: Double, gradient: [Float], correct: Int64) {
                evaluateLoss(.crossEntropy, outputs: fixture["logits"].data, labels: labels, classes: 10, labelSmoothing: smoothing,
                             chunkSize: chunkSize, threads: threads)
            }
            let reference = loss(chunkSize: 6)
            for chunk in [6, 2, 1] {
                let result = loss(chunkSize: chunk)
                assertClose([Float(result.loss)], fixture["loss"], tolerance: Self.tolerance, "\(name) loss, chunk \(chunk)")
                assertClose(result.gradient, fixture["dlogits"], tolerance: Self.tolerance, "\(name) dlogits, chunk \(chunk)")
                assertBitwiseEqual(result.gradient, reference.gradient, "\(name) dlogits, chunk \(chunk) vs 6")
                let threaded = loss(chunkSize: chunk, threads: 2)
                assertBitwiseEqual(threaded.gradient, result.gradient, "\(name) dlogits on 2 threads, chunk \(chunk)")
                XCTAssertEqual(threaded.loss.bitPattern, result.loss.bitPattern, "\(name) loss on 2 threads, chunk \(chunk)")
            }
        }
    }

    /// A model ending in LogSoftmax with label smoothing 0.1 (README, "Label smoothing"):
    /// `F.cross_entropy(F.log_softmax(logits, 1), labels, label_smoothing=0.1)`, through our NLL
    /// on the log-probabilities and the layer's backward.
    func testLogSoftmaxWithLabelSmoothing() throws {
        let fixture = try Fixture.load("log_softmax_smoothed")
        XCTAssertTrue(fixture.call.contains("label_smoothing=0.1"), "the fixture's call changed")
        let labels = fixture["labels"].data.map { UInt8($0) }
        for chunk in [6, 2, 1] {
            let harness = LayerHarness(parameterCount: 0, bufferCount: 0)
            let layer = LogSoftmax(shape: [10])
            let (logProbabilities, _, _) = try harness.run(layer, x: fixture["logits"].data,
                                                           dy: [Float](repeating: 0, count: 60), samples: 6, chunkSize: chunk)
            let loss = evaluateLoss(.nll, outputs: logProbabilities, labels: labels, classes: 10, labelSmoothing: 0.1, chunkSize: chunk)
            assertClose([Float(loss.loss)], fixture["loss"], tolerance: Self.tolerance, "smoothed NLL loss, chunk \(chunk)")
            let (_, dlogits, _) = try harness.run(layer, x: fixture["logits"].data, dy: loss.gradient, samples: 6, chunkSize: chunk)
            assertClose(dlogits, fixture["dlogits"], tolerance: Self.tolerance, "dlogits, chunk \(chunk)")
        }
    }

    /// `F.nll_loss(F.log_softmax(logits, 1), labels)`: the LogSoftmax layer, the NLL loss and
    /// the layer's backward of the loss gradient.
    func testLogSoftmaxNLL() throws {
        let fixture = try Fixture.load("log_softmax_nll")
        let labels = fixture["labels"].data.map { UInt8($0) }
        for chunk in [6, 2, 1] {
            let layer = LogSoftmax(shape: [10])
            let harness = LayerHarness(parameterCount: 0, bufferCount: 0)
            // Forward alone first, to get the loss and its gradient for backward.
            let (logProbabilities, _, _) = try harness.run(layer, x: fixture["logits"].data,
                                                           dy: [Float](repeating: 0, count: 60), samples: 6, chunkSize: chunk)
            let loss = evaluateLoss(.nll, outputs: logProbabilities, labels: labels, classes: 10, chunkSize: chunk)
            assertClose([Float(loss.loss)], fixture["loss"], tolerance: Self.tolerance, "NLL loss, chunk \(chunk)")
            for s in 0..<6 {
                for i in 0..<10 {
                    XCTAssertEqual(loss.gradient[s * 10 + i], i == Int(labels[s]) ? -1 / 6 : 0, "NLL gradient [\(s), \(i)]")
                }
            }
            let (_, dlogits, _) = try harness.run(layer, x: fixture["logits"].data, dy: loss.gradient, samples: 6, chunkSize: chunk)
            assertClose(dlogits, fixture["dlogits"], tolerance: Self.tolerance, "dlogits, chunk \(chunk)")
        }
    }
}
