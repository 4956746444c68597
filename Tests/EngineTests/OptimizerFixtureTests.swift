import Engine
import TestSupport
import XCTest

/// Adam, AdamW and gradient clipping against PyTorch (`scripts/make_fixtures.py`), e.g.
///
///     opt = torch.optim.AdamW([p], lr=0.01, betas=(0.8, 0.99), eps=1e-06, weight_decay=0.1, foreach=False)
///     for g in grads: p.grad = g.clone(); opt.step()
///
/// Tolerance: |ours − PyTorch| ≤ 1e-6 · max(1, |PyTorch|), the gradients being of order 1.
/// PyTorch fuses torch.lerp's multiply-add and rounds the step's scalars from Python's
/// doubles; we fuse nothing, so a moment that cancels to a few hundredths can differ by half
/// an ulp of the order-1 terms it came from (≈ 6e-8). A wrong formula (no bias correction,
/// decay in the wrong place) moves the parameters by O(lr) = 1e-2.
final class OptimizerFixtureTests: XCTestCase {
    static let tolerance: Float = 1e-6

    /// Three steps from p0 with gradients grads[0], grads[1], grads[2]: the parameters after
    /// each, and the moments after the last. Every step is also applied in three slices (as
    /// threads apply it), which must give the same bits.
    func checkAdam(_ name: String, _ kind: Optimizer.Kind, betas: (Double, Double), epsilon: Float, weightDecay: Float) throws {
        let fixture = try Fixture.load(name)
        let call = "\(kind == .adam ? "Adam" : "AdamW")([p], lr=0.01, betas=(\(betas.0), \(betas.1)), eps=\(epsilon == 1e-8 ? "1e-08" : "1e-06"), weight_decay=\(weightDecay == 0 ? "0" : "\(weightDecay)")"
        XCTAssertTrue(fixture.call.contains(call), "\(name): the fixture's optimizer changed: \(fixture.call)")
        var optimizer = Optimizer(kind: kind, weightDecay: weightDecay)
        (optimizer.beta1, optimizer.beta2, optimizer.epsilon) = (betas.0, betas.1, epsilon)
        var p = fixture["p0"].data
        let n = p.count
        var state = [Float](repeating: 0, count: 2 * n)
        let gradients = fixture["grads"].data, after = fixture["after"].data
        for t in 0..<3 {
            let update = OptimizerStep(optimizer, learningRate: 0.01, step: t)
            let g = Array(gradients[(t * n)..<((t + 1) * n)])
            var (slicedP, slicedState) = (p, state)
            update.apply(parameters: &p, gradients: g, state: &state, stateStride: n, count: n)
            for slice in [0..<7, 7..<30, 30..<n] {
                slicedP.withUnsafeMutableBufferPointer { p in
                    slicedState.withUnsafeMutableBufferPointer { s in
                        update.apply(parameters: p.baseAddress! + slice.lowerBound, gradients: Array(g[slice]),
                                     state: s.baseAddress! + slice.lowerBound, stateStride: n, count: slice.count)
                    }
                }
            }
            assertBitwiseEqual(slicedP, p, "\(name) step \(t + 1): parameters updated in slices")
            assertBitwiseEqual(slicedState, state, "\(name) step \(t + 1): state updated in slices")
            assertClose(p, Array(after[(t * n)..<((t + 1) * n)]), tolerance: Self.tolerance,
                        "\(name) parameters after step \(t + 1)")
        }
        assertClose(Array(state[0..<n]), fixture["exp_avg"].data, tolerance: Self.tolerance, "\(name) exp_avg")
        assertClose(Array(state[n...]), fixture["exp_avg_sq"].data, tolerance: Self.tolerance, "\(name) exp_avg_sq")
    }

    func testAdam() throws {
        try checkAdam("adam", .adam, betas: (0.9, 0.999), epsilon: 1e-8, weightDecay: 0)
    }

    func testAdamWithL2WeightDecay() throws {
        try checkAdam("adam_l2", .adam, betas: (0.8, 0.99), epsilon: 1e-6, weightDecay: 0.1)
    }

    /// β1 = 0.3 takes torch.lerp's other form (weight 1 − β1 ≥ 0.5).
    func testAdamW() throws {
        try checkAdam("adamw", .adamw, betas: (0.3, 0.99), epsilon: 1e-8, weightDecay: 0)
    }

    func testAdamWWithDecoupledWeightDecay() throws {
        try checkAdam("adamw_decay", .adamw, betas: (0.8, 0.99), epsilon: 1e-6, weightDecay: 0.1)
    }

    /// `torch.nn.utils.clip_grad_norm_(params, max_norm=1.0, foreach=False)` over two tensors of
    /// 4200 and 21 floats (more than one block): the norm, and the gradient it leaves. The norm
    /// has the same bits on 1, 2 and 3 threads.
    func testClipGradNorm() throws {
        let fixture = try Fixture.load("clip_grad_norm")
        XCTAssertTrue(fixture.call.contains("clip_grad_norm_(params, max_norm=1.0, foreach=False)"), "the fixture's call changed")
        let gradient = fixture["gradient"].data
        let norms = [1, 2, 3].map { threads in
            GradientNorm(count: gradient.count).norm(of: gradient, executor: ParallelExecutor(threads: threads))
        }
        XCTAssertEqual(Set(norms.map(\.bitPattern)).count, 1, "norms on 1, 2, 3 threads: \(norms)")
        assertClose([norms[0]], fixture["norm"], tolerance: Self.tolerance, "norm")
        let coefficient = GradientNorm.clippingCoefficient(maxNorm: 1, norm: norms[0])
        XCTAssertLessThan(coefficient, 1, "the fixture's gradient should be clipped")
        // The optimizer applies the coefficient: plain SGD with lr 1 from 0 leaves −g·coefficient.
        var p = [Float](repeating: 0, count: gradient.count), momentum = p
        OptimizerStep(Optimizer(momentum: 0), learningRate: 1, step: 0, gradientScale: coefficient)
            .apply(parameters: &p, gradients: gradient, state: &momentum, stateStride: gradient.count, count: gradient.count)
        assertClose(p.map { -$0 }, fixture["clipped"].data, tolerance: Self.tolerance, floor: 1e-3, "clipped gradient")
    }

    /// Below the maximum the coefficient is exactly 1, so the gradient keeps its bits.
    func testNormBelowTheMaximumLeavesTheGradient() {
        let gradient: [Float] = [3, 4]
        let norm = GradientNorm(count: 2).norm(of: gradient, executor: ParallelExecutor(threads: 1))
        XCTAssertEqual(norm, 5)
        XCTAssertEqual(GradientNorm.clippingCoefficient(maxNorm: 5.5, norm: norm), 1)
        XCTAssertEqual(GradientNorm.clippingCoefficient(maxNorm: 2.5, norm: norm), 2.5 / (5 + 1e-6))
    }
}
