import Foundation
import TestSupport
import XCTest

/// `--augment`, `--normalize`, `--val-split` and `--keep-best` as a user runs them.
final class DataOptionsCLITests: XCTestCase {
    func run(_ arguments: [String]) throws -> CommandResult { try runTrainer(arguments, timeout: 300) }

    /// 1000 training samples less 200 held out: 16 steps per epoch of 50.
    static let common = ["train", "--data", "synthetic:1000:100", "--model", "mlp", "--batch-size", "50", "--chunk-size", "10",
                         "--val-split", "200", "--seed", "3", "--lr", "0.5", "--momentum", "0.9"]

    /// Every epoch reports its validation loss and accuracy; best.scnn is the checkpoint of
    /// the first epoch with the highest validation accuracy — replaced when a later epoch beats
    /// it, kept when later ones do not and when --keep 1 prunes the others — and evaluating
    /// it on the validation split gives that accuracy again. Random labels make the accuracy
    /// wander, so both happen.
    func testKeepBestKeepsTheCheckpointOfTheBestValidationAccuracy() throws {
        let data = try IDXFile.dataSet(trainLabels: (0..<1000).map { UInt8(($0 * 7 + $0 / 3) % 10) },
                                       testLabels: (0..<100).map { UInt8($0 % 10) })
        let dir = TestSupport.temporaryDirectory("best"), metrics = dir + "/metrics.jsonl"
        let result = try run(["train", "--data", data, "--model", "mlp", "--batch-size", "50", "--chunk-size", "10",
                              "--val-split", "200", "--seed", "3", "--epochs", "5", "--augment", "crop2,erase", "--normalize",
                              "--keep-best", "--checkpoint-dir", dir, "--keep", "1", "--metrics", metrics])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("data 800 train / 200 validation / 100 test"), result.stdout)
        XCTAssertEqual(result.stdout.components(separatedBy: ", validation accuracy ").count - 1, 5, result.stdout)
        let epochs = try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n")
            .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["kind"] as? String == "epoch" }
        let accuracies = try epochs.map { try XCTUnwrap($0["validation_accuracy"] as? Double, "\($0)") }
        XCTAssertEqual(accuracies.count, 5)
        XCTAssertTrue(epochs.allSatisfy { $0["validation_loss"] is Double })
        let best = try XCTUnwrap(accuracies.firstIndex(of: accuracies.max()!))
        XCTAssertTrue(best > 0 && best < 4, "the best neither first nor last, so replaced and then kept: \(accuracies)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(),
                       ["best.scnn", "checkpoint-000000080.scnn", "metrics.jsonl"])
        XCTAssertEqual(try checkpointState(path: dir + "/best.scnn").step, 16 * (best + 1), "accuracies \(accuracies)")
        let evaluation = try run(["evaluate", "--checkpoint", dir + "/best.scnn", "--data", data, "--split", "validation"])
        XCTAssertEqual(evaluation.status, 0, evaluation.stderr)
        XCTAssertTrue(evaluation.stdout.contains("validation: 200 samples, loss \(String(format: "%.4f", epochs[best]["validation_loss"] as! Double)), accuracy \(String(format: "%.2f", 100 * accuracies[best]))%"),
                      "\(evaluation.stdout)\nmetrics: \(epochs[best])")
    }

    /// The checkpoint's statistics, not x/255, reach evaluate, predict and export.
    func testNormalizedCheckpointsCarryTheirStatistics() throws {
        let dir = TestSupport.temporaryDirectory("normalize")
        let train = try run(Self.common + ["--max-steps", "16", "--normalize", "--checkpoint-dir", dir, "--metrics", dir + "/m.jsonl"])
        XCTAssertEqual(train.status, 0, train.stderr)
        let checkpoint = dir + "/checkpoint-000000016.scnn"
        let epoch = try XCTUnwrap(String(contentsOfFile: dir + "/m.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }.last)
        let evaluation = try run(["evaluate", "--checkpoint", checkpoint, "--data", "synthetic:1000:100"])
        XCTAssertTrue(evaluation.stdout.contains("test: 100 samples, loss \(String(format: "%.4f", epoch["test_loss"] as! Double))"),
                      "\(evaluation.stdout) \(epoch)")
        let export = try run(["export", checkpoint, "-o", dir + "/m.safetensors"])
        XCTAssertEqual(export.status, 0, export.stderr)
        let header = String(decoding: try Data(contentsOf: URL(fileURLWithPath: dir + "/m.safetensors")).prefix(4000), as: UTF8.self)
        XCTAssertTrue(header.contains("\"normalize_mean\":\"0."), header)
        XCTAssertTrue(header.contains("\"preprocessing\":\"(x/255 - normalize_mean) / normalize_std, per channel\""), header)
    }

    func testBadDataOptionsGiveOneLineAndANonZeroExit() throws {
        let data = ["train", "--data", "synthetic:100:10", "--batch-size", "8"]
        let cases: [([String], String)] = [
            (data + ["--val-split", "100"], "--val-split 100 would hold out the whole training set of 100 samples; hold out fewer (at most 99)"),
            (data + ["--val-split", "-1"], "--val-split must be 0 or more (got -1)"),
            (data + ["--val-split", "95"], "the training set has 5 samples, fewer than --batch-size 8"),
            (data + ["--augment", "blur"], "'blur' is not one of crop<P>, flip, erase"),
            (data + ["--augment", "crop0"], "'crop0' needs a padding of 1…64 pixels"),
            (data + ["--augment", "crop28"], "--augment crop28: the padding must be smaller than the 28×28 image"),
            (data + ["--keep-best", "--val-split", "10"], "--keep-best needs --val-split N (N > 0) and --checkpoint-dir DIR"),
            (["evaluate", "--checkpoint", "/nonexistent.scnn", "--split", "holdout"], "The value 'holdout' is invalid for '--split <split>'"),
        ]
        for (arguments, message) in cases {
            let result = try run(arguments)
            XCTAssertNotEqual(result.status, 0, "\(arguments) exited 0")
            XCTAssertTrue(result.stderr.contains(message), "\(arguments): \(result.stderr)")
            XCTAssertEqual(result.errorLines.count, 1, "\(arguments): \(result.stderr)")
        }
    }

    /// A checkpoint trained without --val-split has no validation split to evaluate.
    func testEvaluatingAValidationSplitNeedsOne() throws {
        let dir = TestSupport.temporaryDirectory("no-validation")
        XCTAssertEqual(try run(["train", "--data", "synthetic:100:10", "--batch-size", "8", "--model", "mlp", "--max-steps", "1",
                                "--checkpoint-dir", dir]).status, 0)
        let result = try run(["evaluate", "--checkpoint", dir + "/checkpoint-000000001.scnn", "--data", "synthetic:100:10",
                              "--split", "validation"])
        XCTAssertEqual(result.status, 64, result.stderr)
        XCTAssertEqual(result.errorLines, ["error: --split validation: the checkpoint was trained without --val-split, so it has no validation split"])
    }
}
