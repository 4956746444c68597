import Engine
import TestSupport
import XCTest

/// Small cases whose answers are worked out by hand below, so they do not depend on any other
/// implementation being right.
final class WorkedExampleTests: XCTestCase {
    /// x = the 5×5 image 1…25 row-major, so x[r][c] = 5r + c + 1; kernel rows [1, 0, −1], no
    /// padding, bias 0. Each output is Σ over the 3 rows of (x[r][c] − x[r][c+2]) = 3·(−2) = −6.
    ///
    /// Backward with dy = 1 everywhere:
    /// - dbias = 9 (nine outputs).
    /// - dweight[ky][kx] = Σ of the 3×3 block at (ky, kx) = 9·(5ky + kx + 1) + 5·(0+1+2)·3 + (0+1+2)·3
    ///   = 9·(5ky + kx + 1) + 54; e.g. [0][0] = 1+2+3+6+7+8+11+12+13 = 63.
    /// - dx[iy][ix] = (number of kernel rows that reach row iy) · (Σ of the kernel columns that
    ///   reach column ix) = rows[iy]·cols[ix] with rows = [1, 2, 3, 2, 1] and, for weights
    ///   [1, 0, −1] by column, cols = [1, 1+0, 1+0−1, 0−1, −1] = [1, 1, 0, −1, −1].
    func testConvolutionOfARamp() throws {
        var layout = ParameterLayout()
        let conv = try Conv2d(name: "conv", inShape: [1, 5, 5], outChannels: 1, kernel: 3, layout: &layout, initScheme: .default)
        let harness = LayerHarness(parameterCount: layout.parameterCount, bufferCount: 0)
        harness.set("conv.weight", [1, 0, -1, 1, 0, -1, 1, 0, -1], layout: layout)
        harness.set("conv.bias", [0], layout: layout)
        let x = (1...25).map { Float($0) }
        let (y, dx, gradients) = try harness.run(conv, x: x, dy: [Float](repeating: 1, count: 9), samples: 1)
        XCTAssertEqual(conv.outputShape, [1, 3, 3])
        XCTAssertEqual(y, [Float](repeating: -6, count: 9))
        XCTAssertEqual(harness.gradient("conv.bias", in: gradients, layout: layout), [9])
        XCTAssertEqual(harness.gradient("conv.weight", in: gradients, layout: layout),
                       [63, 72, 81, 108, 117, 126, 153, 162, 171])
        let rows: [Float] = [1, 2, 3, 2, 1], cols: [Float] = [1, 1, 0, -1, -1]
        XCTAssertEqual(dx, (0..<25).map { rows[$0 / 5] * cols[$0 % 5] })
    }

    /// 2×2 max pooling, stride 2, of
    ///
    ///     1 3 | 2 4
    ///     5 6 | 1 2        windows: {1,3,5,6} → 6   {2,4,1,2} → 4
    ///     ----+----                 {7,2,3,4} → 7   {9,1,1,8} → 9
    ///     7 2 | 9 1
    ///     3 4 | 1 8
    ///
    /// Backward routes each dy to its window's maximum: 10 → (1,1), 20 → (0,3), 30 → (2,0),
    /// 40 → (2,2), every other input gets 0.
    func testMaxPoolingAndItsGradientRouting() throws {
        let pool = try MaxPool2d(name: "maxpool", inShape: [1, 4, 4], kernel: 2, stride: 2)
        let x: [Float] = [1, 3, 2, 4, 5, 6, 1, 2, 7, 2, 9, 1, 3, 4, 1, 8]
        let (y, dx, _) = try LayerHarness(parameterCount: 0, bufferCount: 0).run(pool, x: x, dy: [10, 20, 30, 40], samples: 1)
        XCTAssertEqual(y, [6, 4, 7, 9])
        XCTAssertEqual(dx, [0, 0, 0, 20,
                            0, 10, 0, 0,
                            30, 0, 40, 0,
                            0, 0, 0, 0])
        // A tie goes to the first maximum in row-major order, as PyTorch's CPU kernel.
        let (tied, dTied, _) = try LayerHarness(parameterCount: 0, bufferCount: 0)
            .run(try MaxPool2d(name: "maxpool", inShape: [1, 2, 2], kernel: 2, stride: 2), x: [2, 2, 2, 2], dy: [5], samples: 1)
        XCTAssertEqual(tied, [2])
        XCTAssertEqual(dTied, [5, 0, 0, 0])
    }

    /// Rows of at least 8 windows go through the vector path, 16 windows at a time: it must
    /// pick the same first maximum as the rule above, with ties, NaN (which wins, the first
    /// one) and ±0, across a partial block, uneven chunks on two threads, and the last plane
    /// of the batch (where vectors would read past the input).
    func testVectorMaxPoolingKeepsTheFirstMaximumRule() throws {
        let (channels, height, width, samples) = (3, 6, 38, 5)
        let pool = try MaxPool2d(name: "maxpool", inShape: [channels, height, width], kernel: 2, stride: 2)
        let (outHeight, outWidth) = (height / 2, width / 2)
        let rng = CounterRNG(seed: 5, stream: "pool")
        let x: [Float] = (0..<(samples * channels * height * width)).map { i in
            switch rng.integer(UInt64(i), below: 10) {
            case 0: return .nan
            case 1: return -0.0
            case 2: return 0
            default: return Float(rng.integer(UInt64(i) + 1_000_000, below: 4))  // many ties
            }
        }
        let dy = (0..<(samples * channels * outHeight * outWidth)).map { Float($0 + 1) }
        var expectedY: [Float] = [], expectedDx = [Float](repeating: 0, count: x.count)
        for p in 0..<(samples * channels) {
            for oy in 0..<outHeight {
                for ox in 0..<outWidth {
                    var best = p * height * width + 2 * oy * width + 2 * ox
                    for i in [best + 1, best + width, best + width + 1] where !(x[i] <= x[best]) && x[best] == x[best] {
                        best = i
                    }
                    expectedY.append(x[best])
                    expectedDx[best] = dy[expectedY.count - 1]
                }
            }
        }
        let (y, dx, _) = try LayerHarness(parameterCount: 0, bufferCount: 0, threads: 2)
            .run(pool, x: x, dy: dy, samples: samples, chunkSize: 2)
        if let i = y.indices.first(where: { y[$0].bitPattern != expectedY[$0].bitPattern }) {
            XCTFail("output \(i): \(y[i]), expected \(expectedY[i])")
        }
        if let i = dx.indices.first(where: { dx[$0].bitPattern != expectedDx[$0].bitPattern }) {
            XCTFail("input gradient \(i): \(dx[i]), expected \(expectedDx[i])")
        }
    }

    /// Ten equal logits: every p = 1/10, so loss = −ln(1/10) = ln 10 = 2.302585093…, and with a
    /// batch of one the gradient is p − onehot = 0.1, except −0.9 at the label. argmax of a tie
    /// is the first index, so the prediction is class 0: wrong for label 3.
    func testCrossEntropyOfEqualLogits() {
        let result = evaluateLoss(.crossEntropy, outputs: [Float](repeating: 0.75, count: 10), labels: [3],
                                  classes: 10, chunkSize: 1)
        XCTAssertEqual(result.loss, 2.302_585_093, accuracy: 1e-6)
        for i in 0..<10 {
            XCTAssertEqual(result.gradient[i], i == 3 ? -0.9 : 0.1, accuracy: 1e-7, "gradient[\(i)]")
        }
        XCTAssertEqual(result.correct, 0)
    }

    /// Logits 0, 1, …, 9 with label 9: p₉ = e⁹ / Σₖ eᵏ = 1 / Σₖ e^(k−9) = (1 − e⁻¹)/(1 − e⁻¹⁰)
    /// = 0.632120559 / 0.999954600 = 0.632149258; loss = −ln p₉ = 0.458629744. The gradient is
    /// pₖ = e^(k−9)·p₉ for k < 9 (p₈ = 0.367879441·0.632149258 = 0.232554716) and p₉ − 1 = −0.367850742.
    func testCrossEntropyOfARamp() {
        let result = evaluateLoss(.crossEntropy, outputs: (0..<10).map { Float($0) }, labels: [9], classes: 10, chunkSize: 1)
        XCTAssertEqual(result.loss, 0.458_629_744, accuracy: 1e-6)
        XCTAssertEqual(result.gradient[9], 0.632_149_258 - 1, accuracy: 1e-6)
        XCTAssertEqual(result.gradient[8], 0.232_554_716, accuracy: 1e-6)
        XCTAssertEqual(result.gradient[0], 7.801_341_6e-5, accuracy: 1e-9)
        XCTAssertEqual(result.correct, 1)
        // Batch of two, the second sample a copy: the loss is the mean, the gradient halves.
        let two = evaluateLoss(.crossEntropy, outputs: (0..<20).map { Float($0 % 10) }, labels: [9, 9], classes: 10, chunkSize: 1)
        XCTAssertEqual(two.loss, 0.458_629_744, accuracy: 1e-6)
        XCTAssertEqual(two.gradient[19], (0.632_149_258 - 1) / 2, accuracy: 1e-6)
    }

    /// torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.1) on p = 1 with gradients 0.5, 0.5:
    /// step 1: g = 0.5 + 0.1·1 = 0.6, v = 0.6, p = 1 − 0.06 = 0.94;
    /// step 2: g = 0.5 + 0.094 = 0.594, v = 0.9·0.6 + 0.594 = 1.134, p = 0.94 − 0.1134 = 0.8266.
    /// Nesterov, same gradients: step 1 uses g + 0.9·v = 0.6 + 0.54 = 1.14, p = 1 − 0.114 = 0.886.
    func testSGDMomentumAndWeightDecay() {
        var p: [Float] = [1], v: [Float] = [0]
        let sgd = Optimizer(momentum: 0.9, weightDecay: 0.1)
        OptimizerStep(sgd, learningRate: 0.1, step: 0).apply(parameters: &p, gradients: [0.5], state: &v, stateStride: 1, count: 1)
        XCTAssertEqual(p[0], 0.94, accuracy: 1e-6)
        XCTAssertEqual(v[0], 0.6, accuracy: 1e-6)
        OptimizerStep(sgd, learningRate: 0.1, step: 1).apply(parameters: &p, gradients: [0.5], state: &v, stateStride: 1, count: 1)
        XCTAssertEqual(v[0], 1.134, accuracy: 1e-6)
        XCTAssertEqual(p[0], 0.8266, accuracy: 1e-6)
        var q: [Float] = [1], w: [Float] = [0]
        OptimizerStep(Optimizer(momentum: 0.9, weightDecay: 0.1, nesterov: true), learningRate: 0.1, step: 0)
            .apply(parameters: &q, gradients: [0.5], state: &w, stateStride: 1, count: 1)
        XCTAssertEqual(q[0], 0.886, accuracy: 1e-6)
    }

    /// torch.optim.Adam(lr=0.1) on p = 1 with gradient 0.5: m = 0.05, v = 0.00025, and bias
    /// correction makes the first step lr·sign(g) (m̂ = 0.5, √v̂ = 0.5): p = 0.9, up to eps.
    /// AdamW(lr=0.1, weight_decay=0.5) first shrinks p to 1 − 0.05 = 0.95, then the same step: 0.85.
    func testAdamFirstStepIsTheLearningRate() {
        for (kind, decay, expected) in [(Optimizer.Kind.adam, Float(0), Float(0.9)), (.adamw, 0.5, 0.85)] {
            var p: [Float] = [1], state: [Float] = [0, 0]
            OptimizerStep(Optimizer(kind: kind, weightDecay: decay), learningRate: 0.1, step: 0)
                .apply(parameters: &p, gradients: [0.5], state: &state, stateStride: 1, count: 1)
            XCTAssertEqual(p[0], expected, accuracy: 1e-6, "\(kind)")
            XCTAssertEqual(state[0], 0.05, accuracy: 1e-8, "\(kind) exp_avg")
            XCTAssertEqual(state[1], 0.00025, accuracy: 1e-10, "\(kind) exp_avg_sq")
        }
    }

    /// Average pooling 2×2 of the ramp 1…16 (4×4): window means (1+2+5+6)/4 = 3.5, 5.5, 11.5, 13.5;
    /// backward spreads each dy/4 over its window.
    func testAveragePooling() throws {
        let pool = try AvgPool2d(name: "avgpool", inShape: [1, 4, 4], kernel: 2, stride: 2)
        let (y, dx, _) = try LayerHarness(parameterCount: 0, bufferCount: 0)
            .run(pool, x: (1...16).map { Float($0) }, dy: [4, 8, 12, 16], samples: 1)
        XCTAssertEqual(y, [3.5, 5.5, 11.5, 13.5])
        XCTAssertEqual(dx, [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
    }
}
