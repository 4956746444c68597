import TestSupport
import XCTest

/// Real `mpirun` runs compared by their parameter digests: bytes, not tolerances.
final class DeterminismTests: XCTestCase {
    /// 48 = 6 chunks of 8: 4 ranks get 2, 2, 1, 1 chunks (an uneven split).
    static let common = ["train", "--data", "synthetic:1200:96", "--batch-size", "48", "--chunk-size", "8",
                         "--max-steps", "12", "--seed", "11"]

    func digest(_ model: String, ranks: Int?, threads: Int, extra: [String] = []) throws -> String {
        let result = try runTrainer(Self.common + ["--model", model, "--threads", "\(threads)"] + extra, ranks: ranks, timeout: 300)
        XCTAssertEqual(result.status, 0, "ranks \(ranks ?? 1): \(result.stderr)")
        return try XCTUnwrap(result.digest, "no digest in: \(result.stdout)")
    }

    func checkAllRankCounts(_ model: String) throws {
        let serial = try digest(model, ranks: nil, threads: 1)
        XCTAssertEqual(try digest(model, ranks: nil, threads: 2), serial, "serial, 2 threads")
        for ranks in [2, 3, 4] {
            XCTAssertEqual(try digest(model, ranks: ranks, threads: 1), serial, "\(ranks) ranks")
        }
    }

    func testSeedCNNGivesTheSerialBitsOnTwoThreeAndFourRanks() throws {
        try checkAllRankCounts("seed-cnn")
    }

    func testBatchNormModelGivesTheSerialBitsOnTwoThreeAndFourRanks() throws {
        try checkAllRankCounts("seed-cnn-bn")
    }

    /// mlp's wide layers take their gradients from the whole batch's gathered factors
    /// (`WholeBatchGradients`), its last layer from the exact sum.
    func testWholeBatchGradientsGiveTheSerialBitsOnTwoThreeAndFourRanks() throws {
        try checkAllRankCounts("mlp")
    }

    /// Adam with gradient clipping (whose norm every rank and thread count must compute to the
    /// same bits) and label smoothing; without the clipping the digest differs, so it acted.
    func testAdamWithClippingAndLabelSmoothingGivesTheSerialBitsOnTwoAndThreeRanks() throws {
        let unclipped = ["--optimizer", "adam", "--lr", "0.002", "--label-smoothing", "0.1"]
        let flags = unclipped + ["--clip-grad-norm", "1"]
        let serial = try digest("seed-cnn-bn", ranks: nil, threads: 1, extra: flags)
        XCTAssertEqual(try digest("seed-cnn-bn", ranks: nil, threads: 2, extra: flags), serial, "serial, 2 threads")
        for ranks in [2, 3] {
            XCTAssertEqual(try digest("seed-cnn-bn", ranks: ranks, threads: 1, extra: flags), serial, "\(ranks) ranks")
        }
        XCTAssertNotEqual(try digest("seed-cnn-bn", ranks: nil, threads: 1, extra: unclipped), serial, "--clip-grad-norm 1 changed nothing: the gradient norm never exceeded 1")
    }

    /// Augmentation, normalisation and a validation split keep the contract: 1200 − 800 held
    /// out leaves 400 samples, 8 steps per epoch, so the 12 steps cross into epoch 2's draws.
    func testDataOptionsGiveTheSerialBitsOnTwoAndThreeRanks() throws {
        let options = ["--augment", "crop3,flip,erase", "--normalize", "--val-split", "800"]
        let serial = try digest("seed-cnn-bn", ranks: nil, threads: 1, extra: options)
        XCTAssertEqual(try digest("seed-cnn-bn", ranks: nil, threads: 2, extra: options), serial, "serial, 2 threads")
        for ranks in [2, 3] {
            XCTAssertEqual(try digest("seed-cnn-bn", ranks: ranks, threads: 1, extra: options), serial, "\(ranks) ranks")
        }
        XCTAssertNotEqual(try digest("seed-cnn-bn", ranks: nil, threads: 1, extra: ["--val-split", "800"]), serial,
                          "augmentation and normalisation change the training")
    }

    func testDigestDependsOnTheSeed() throws {
        XCTAssertNotEqual(try digest("seed-cnn", ranks: nil, threads: 1),
                          try digest("seed-cnn", ranks: nil, threads: 1, extra: ["--seed", "12"]))
    }

    func testFloatReductionCompletesAndReplicaCheckPasses() throws {
        let result = try runTrainer(Self.common + ["--model", "seed-cnn-bn", "--reduction", "float", "--check-replicas", "4"],
                                    ranks: 2, timeout: 300)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertNotNil(result.digest)
    }

    func testExactModeReplicaCheckPassesOnThreeRanks() throws {
        let result = try runTrainer(Self.common + ["--model", "seed-cnn", "--check-replicas", "3"], ranks: 3, timeout: 300)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.digest, try digest("seed-cnn", ranks: nil, threads: 1))
    }
}
