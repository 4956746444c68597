import Engine
import TestSupport
import XCTest

/// Backward against central finite differences of the forward, independently of PyTorch:
/// for L = Σ y·r with fixed random r, ∂L/∂v ≈ (L(v + ε) − L(v − ε)) / 2ε for an input or
/// parameter v, with L accumulated in Double from the layer's Float outputs.
///
/// Error budget (Float forward): the outputs a perturbation moves carry rounding ~6e-8·|y|, so
/// the difference quotient is off by ~sqrt(terms)·6e-8·|y| / 2ε ≈ 1e-5…1e-4 at ε = 1e-2, and the
/// truncation error ε²·f'''/6 of the smooth layers is ~2e-5. The bound 2e-3·(1 + |g|) is 20×
/// above both and far below a wrong gradient (a missing term or factor moves g by O(|g|)).
final class GradientCheckTests: XCTestCase {
    static let epsilon: Float = 1e-2
    static let tolerance: Double = 2e-3

    /// Checks dx and every parameter gradient of the layer built by `make` at up to
    /// `coordinates` coordinates of each. `x` defaults to uniform (−1, 1).
    func check(_ what: String, samples: Int, chunkSize: Int, x given: [Float]? = nil, coordinates: Int = 24,
               file: StaticString = #filePath, line: UInt = #line,
               make: (inout ParameterLayout) throws -> Layer) throws {
        var layout = ParameterLayout()
        let layer = try make(&layout)
        let harness = LayerHarness(parameterCount: layout.parameterCount, bufferCount: layout.bufferCount)
        // Random parameters (not the initialiser's: batch norm would start at γ = 1, β = 0).
        if layout.parameterCount > 0 {
            harness.parameters = randomFloats(layout.parameterCount, seed: 7, stream: "\(what) parameters")
        }
        if layout.bufferCount > 0 { harness.buffers = [Float](repeating: 1, count: layout.bufferCount) }
        let x = given ?? randomFloats(samples * layer.inputSize, seed: 7, stream: "\(what) x")
        let r = randomFloats(samples * layer.outputSize, seed: 7, stream: "\(what) r")
        let analytic = try harness.run(layer, x: x, dy: r, samples: samples, chunkSize: chunkSize)

        func loss(_ x: [Float]) throws -> Double {
            let y = try harness.run(layer, x: x, dy: r, samples: samples, chunkSize: chunkSize).y
            return zip(y, r).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        /// The central difference of L in a value set through `set`, starting from `value`.
        func numeric(_ value: Float, _ set: (Float) -> Void, _ evaluate: () throws -> Double) rethrows -> Double {
            let up = value + Self.epsilon, down = value - Self.epsilon
            set(up)
            let lossUp = try evaluate()
            set(down)
            let lossDown = try evaluate()
            set(value)
            return (lossUp - lossDown) / (Double(up) - Double(down))
        }
        func compare(_ numeric: Double, _ analytic: Float, _ name: String) {
            let error = abs(numeric - Double(analytic))
            XCTAssertLessThanOrEqual(error, Self.tolerance * (1 + abs(numeric)),
                                     "\(what): \(name) analytic \(analytic), numeric \(numeric)", file: file, line: line)
        }

        var xs = x
        for i in sample(x.count, coordinates, seed: 1) {
            let n = try numeric(x[i], { xs[i] = $0 }) { try loss(xs) }
            compare(n, analytic.dx[i], "dx[\(i)]")
        }
        for tensor in layout.parameters {
            for i in sample(tensor.count, coordinates, seed: 2) {
                let k = tensor.offset + i
                let n = try numeric(harness.parameters[k], { harness.parameters[k] = $0 }) { try loss(x) }
                compare(n, analytic.gradients[k], "d\(tensor.name)[\(i)]")
            }
        }
    }

    /// Up to `count` distinct indices below `n`, spread over the range (all of them if n ≤ count).
    func sample(_ n: Int, _ count: Int, seed: UInt64) -> [Int] {
        if n <= count { return Array(0..<n) }
        let rng = CounterRNG(seed: seed, stream: "coordinates")
        return Array(Set((0..<count).map { rng.integer(UInt64($0), below: n) })).sorted()
    }

    /// Inputs whose values are ≥ 0.05 apart, so no ±ε step can change which element of a
    /// pooling window is largest.
    func distinctValues(_ count: Int) -> [Float] {
        CounterRNG(seed: 3, stream: "distinct").permutation(count: count).map { Float($0) * 0.05 - Float(count) * 0.025 }
    }

    func testConv2dStride2Padding1() throws {
        try check("conv2d", samples: 3, chunkSize: 2) {
            try Conv2d(name: "conv", inShape: [2, 7, 7], outChannels: 3, kernel: 3, stride: 2, padding: 1,
                       layout: &$0, initScheme: .default)
        }
    }

    /// The Winograd path, padded, with partial tiles.
    func testConv2dWinograd() throws {
        try check("conv2d winograd", samples: 3, chunkSize: 2) {
            let conv = try Conv2d(name: "conv", inShape: [16, 5, 5], outChannels: 16, kernel: 3, stride: 1, padding: 1,
                                  layout: &$0, initScheme: .default)
            XCTAssertTrue(conv.usesWinograd)
            return conv
        }
    }

    func testLinear() throws {
        try check("linear", samples: 3, chunkSize: 2) {
            try Linear(name: "fc", inShape: [7], outFeatures: 5, layout: &$0, initScheme: .default)
        }
    }

    /// Training mode over 2 chunks: the batch statistics couple every sample to every other,
    /// so dx checks the mean and variance terms of backward across chunk boundaries.
    func testBatchNorm2dTrainingTwoChunks() throws {
        try check("batchnorm", samples: 4, chunkSize: 2, coordinates: 40) {
            try BatchNorm2d(name: "bn", inShape: [2, 3, 3], layout: &$0)
        }
    }

    func testMaxPool2d() throws {
        try check("maxpool", samples: 2, chunkSize: 1, x: distinctValues(2 * 2 * 6 * 6), coordinates: 40) { _ in
            try MaxPool2d(name: "maxpool", inShape: [2, 6, 6], kernel: 2, stride: 2)
        }
        // Overlapping windows: an input may be the maximum of two windows.
        try check("maxpool k3s2", samples: 1, chunkSize: 1, x: distinctValues(2 * 7 * 7), coordinates: 98) { _ in
            try MaxPool2d(name: "maxpool", inShape: [2, 7, 7], kernel: 3, stride: 2)
        }
    }

    func testAvgPool2d() throws {
        try check("avgpool k3s2", samples: 2, chunkSize: 1, coordinates: 40) { _ in
            try AvgPool2d(name: "avgpool", inShape: [2, 7, 7], kernel: 3, stride: 2)
        }
    }

    func testGELU() throws {
        let x = randomFloats(40, seed: 5, stream: "gelu", scale: 4)
        try check("gelu", samples: 2, chunkSize: 1, x: x, coordinates: 40) { _ in Activation(.gelu, shape: [20]) }
    }

    func testTanh() throws {
        let x = randomFloats(40, seed: 5, stream: "tanh", scale: 3)
        try check("tanh", samples: 2, chunkSize: 1, x: x, coordinates: 40) { _ in Activation(.tanh, shape: [20]) }
    }

    func testLogSoftmax() throws {
        let x = randomFloats(30, seed: 5, stream: "logsoftmax", scale: 3)
        try check("logsoftmax", samples: 3, chunkSize: 2, x: x, coordinates: 30) { _ in LogSoftmax(shape: [10]) }
    }

    /// The mean cross-entropy over 4 samples in 2 chunks, plain and with label smoothing 0.1, and
    /// the smoothed NLL of log-probabilities: the gradient with respect to each output.
    func testLossGradients() {
        for (function, smoothing) in [(LossFunction.crossEntropy, Float(0)), (.crossEntropy, 0.1), (.nll, 0.1)] {
            let what = "\(function.rawValue), label smoothing \(smoothing)"
            var outputs = randomFloats(40, seed: 5, stream: "cross-entropy", scale: 3)
            let labels: [UInt8] = [3, 0, 9, 3]
            func evaluate() -> (loss: Double, gradient: [Float], correct: Int64) {
                evaluateLoss(function, outputs: outputs, labels: labels, classes: 10, labelSmoothing: smoothing, chunkSize: 2)
            }
            let analytic = evaluate().gradient
            for i in outputs.indices {
                let saved = outputs[i]
                outputs[i] = saved + Self.epsilon
                let (up, lossUp) = (outputs[i], evaluate().loss)
                outputs[i] = saved - Self.epsilon
                let (down, lossDown) = (outputs[i], evaluate().loss)
                outputs[i] = saved
                let numeric = (lossUp - lossDown) / (Double(up) - Double(down))
                XCTAssertLessThanOrEqual(abs(numeric - Double(analytic[i])), Self.tolerance * (1 + abs(numeric)) / 4,
                                         "\(what): d loss / d output[\(i)]: analytic \(analytic[i]), numeric \(numeric)")
            }
        }
    }
}
