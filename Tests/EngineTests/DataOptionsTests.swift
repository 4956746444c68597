import Engine
import Foundation
import TestSupport
import XCTest

/// `--normalize` and `--val-split`: statistics exact and order-free, a validation split that
/// is a fixed function of the seed and disjoint from the samples trained on, and checkpoints
/// that keep the statistics (and load without them when written before they existed).
final class DataOptionsTests: XCTestCase {
    /// Two samples of 2×1×2: channel 0 holds 0, 255, 255, 0 (mean ½, std ½), channel 1 holds
    /// 51 everywhere (a constant channel: std 1).
    let tiny = Dataset(name: "tiny", shape: [2, 1, 2], classes: 10, pixels: [0, 255, 51, 51, 255, 0, 51, 51], labels: [0, 1])

    func testStatisticsAreExactPerChannel() {
        let statistics = InputNormalization(statisticsOf: tiny)
        XCTAssertEqual(statistics.mean, [0.5, 0.2])
        XCTAssertEqual(statistics.std, [0.5, 1])
        var out = [Float](repeating: .nan, count: 8)
        tiny.normalized(by: statistics).scale(0..<2, into: &out)
        // As torchvision's Normalize computes it, in Float.
        let c = (Float(51) / 255 - Float(0.2)) / 1
        XCTAssertEqual(out, [-1, 1, c, c, 1, -1, c, c])
    }

    /// The statistics of the Fashion-MNIST-like synthetic data do not depend on the sample
    /// order (integer sums), and unnormalised inputs stay x/255.
    func testStatisticsIgnoreTheSampleOrder() {
        let data = Synthetic.make(seed: 2, count: 50, stream: "train")
        let reversed = Dataset(name: "r", shape: data.shape, classes: 10,
                               pixels: (0..<50).reversed().flatMap { data.pixels[($0 * 784)..<(($0 + 1) * 784)] },
                               labels: data.labels.reversed())
        XCTAssertEqual(InputNormalization(statisticsOf: data), InputNormalization(statisticsOf: reversed))
        var out = [Float](repeating: .nan, count: 784)
        data.scale(3..<4, into: &out)
        XCTAssertEqual(out, data.pixels[(3 * 784)..<(4 * 784)].map { Float($0) / 255 })
    }

    func testValidationSplitIsDisjointAndAFunctionOfTheSeed() throws {
        let count = 300
        // Each sample's first pixel and label spell its index, so the splits can be traced back.
        let train = Dataset(name: "train", shape: [1, 1, 2], classes: 256,
                            pixels: (0..<count).flatMap { [UInt8($0 % 256), UInt8($0 / 256)] },
                            labels: (0..<count).map { UInt8($0 % 256) })
        let splits = DataSplits(train: train, test: train)
        func indices(_ d: Dataset) -> [Int] { (0..<d.count).map { Int(d.pixels[2 * $0]) + 256 * Int(d.pixels[2 * $0 + 1]) } }
        let held = try splits.holdingOut(70, seed: 4)
        let validation = indices(try XCTUnwrap(held.validation)), trained = indices(held.train)
        XCTAssertEqual(validation.count, 70)
        XCTAssertEqual(trained.count, 230)
        XCTAssertTrue(Set(validation).isDisjoint(with: trained), "no sample both held out and trained on")
        XCTAssertEqual((validation + trained).sorted(), Array(0..<count))
        XCTAssertEqual(validation, validation.sorted(), "in the training set's order")
        XCTAssertEqual(held.validation?.labels, validation.map { UInt8($0 % 256) })
        XCTAssertEqual(indices(try XCTUnwrap(try splits.holdingOut(70, seed: 4).validation)), validation, "the same seed, the same split")
        XCTAssertNotEqual(indices(try XCTUnwrap(try splits.holdingOut(70, seed: 5).validation)), validation)
        XCTAssertNil(try splits.holdingOut(0, seed: 4).validation)
        XCTAssertThrowsError(try splits.holdingOut(300, seed: 4)) {
            XCTAssertEqual("\($0)", "data.validationSamples 300 would hold out the whole training set of 300 samples; hold out fewer (at most 299)")
        }
    }

    /// A manifest written before the data settings existed loads with them off; a manifest's
    /// statistics round-trip, and impossible ones are refused.
    func testCheckpointsKeepTheStatisticsAndOldOnesLoad() throws {
        let network = try Network(spec: ModelSpec("fc"), inputShape: [2, 1, 2], classes: 3)
        var manifest = CheckpointManifest(model: "fc", inputShape: [2, 1, 2], classes: 3, hyperparameters: Hyperparameters(),
                                          step: 1, epoch: 0, tensors: Checkpoint.tensorTable(layout: network.layout, optimizer: Optimizer()))
        manifest.hyperparameters.data.augmentation = try Augmentation("crop1,flip")
        manifest.hyperparameters.data.validationSamples = 9
        manifest.normalization = InputNormalization(mean: [0.25, 0.5], std: [0.125, 0.375])
        let zeros = [Float](repeating: 0, count: network.parameterCount)
        let bytes = try Checkpoint(manifest: manifest, parameters: zeros, buffers: [], optimizerState: zeros).encoded()
        let loaded = try Checkpoint.decode(bytes, source: "c", layout: network.layout).manifest
        XCTAssertEqual(loaded.normalization, manifest.normalization)
        XCTAssertEqual(loaded.hyperparameters, manifest.hyperparameters)

        var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(Hyperparameters())) as! [String: Any]
        json["data"] = nil
        let old = try JSONDecoder().decode(Hyperparameters.self, from: JSONSerialization.data(withJSONObject: json))
        XCTAssertEqual(old, Hyperparameters(), "no data settings: all off")

        manifest.normalization = InputNormalization(mean: [0.25], std: [0.125])
        let wrong = try Checkpoint(manifest: manifest, parameters: zeros, buffers: [], optimizerState: zeros).encoded()
        assertThrows(.checkpoint, containing: "input normalization is not a finite mean and a positive standard deviation for each of 2 channels",
                     try Checkpoint.decode(wrong, source: "c", layout: network.layout))
    }
}
