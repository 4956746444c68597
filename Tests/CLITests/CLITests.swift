import Foundation
import TestSupport
import XCTest

/// The binary as a user runs it: output, files, errors and exit codes.
final class CLITests: XCTestCase {
    func run(_ arguments: [String]) throws -> CommandResult { try runTrainer(arguments, timeout: 300) }

    func testInspectReportsThePresetParameterCounts() throws {
        let seed = try run(["inspect", "--model", "seed-cnn"])
        XCTAssertEqual(seed.status, 0, seed.stderr)
        XCTAssertTrue(seed.stdout.contains("total parameters: 225,034"), seed.stdout)
        XCTAssertTrue(seed.stdout.contains("conv1: Conv2d(1, 32, kernel_size=3"), seed.stdout)
        XCTAssertTrue(seed.stdout.contains("fc1: Linear(in_features=1600, out_features=128)"), seed.stdout)
        let cifar = try run(["inspect", "--model", "cifar-cnn", "--input", "3x32x32"])
        XCTAssertEqual(cifar.status, 0, cifar.stderr)
        XCTAssertTrue(cifar.stdout.contains("total parameters: 268,650"), cifar.stdout)
    }

    func testHelpExplainsEveryTrainingOption() throws {
        let help = try run(["train", "--help"])
        XCTAssertEqual(help.status, 0)
        for option in ["--data", "--model", "--epochs", "--max-steps", "--batch-size", "--chunk-size", "--lr", "--momentum",
                       "--weight-decay", "--seed", "--threads", "--checkpoint-dir", "--resume", "--reduction", "--metrics"] {
            XCTAssertTrue(help.stdout.contains(option), "--help lacks \(option)")
        }
        XCTAssertTrue(help.stdout.contains("(default: 64)"), help.stdout)
    }

    /// Each bad input: one line on stderr that names the problem, and a non-zero exit.
    func testBadInputGivesOneLineAndANonZeroExit() throws {
        let cases: [([String], String)] = [
            (["train", "--batch-size", "60", "--chunk-size", "8"], "--batch-size 60 is not a multiple of --chunk-size 8"),
            (["train", "--model", "conv32k3-relu-blorp-fc"], "unknown model token 'blorp'"),
            (["train", "--data", "/nonexistent"], "data directory '/nonexistent' does not exist"),
            (["train", "--lr=-1", "--data", "synthetic:100:10"], "--lr must be a positive number"),
            (["train", "--init", "magic"], "--init must be one of default, xavier, he"),
            (["train", "--resume"], "--resume needs --checkpoint-dir"),
            (["train", "--data", "synthetic:100:10", "--checkpoint-dir", "/proc/forbidden"], "cannot create checkpoint directory '/proc/forbidden'"),
            (["evaluate", "--checkpoint", "/nonexistent.scnn"], "cannot read checkpoint '/nonexistent.scnn'"),
            (["inspect", "--model", "conv32k9-fc", "--input", "1x4x4"], "kernel 9 does not fit a 4×4 input"),
        ]
        for (arguments, message) in cases {
            let result = try run(arguments)
            XCTAssertNotEqual(result.status, 0, "\(arguments) exited 0")
            XCTAssertTrue(result.stderr.contains(message), "\(arguments): \(result.stderr)")
            let lines = result.stderr.split(separator: "\n").filter { !$0.isEmpty && !$0.hasPrefix("Usage:") && !$0.hasPrefix("  See") }
            XCTAssertEqual(lines.count, 1, "\(arguments): \(result.stderr)")
        }
    }

    func testTrainEvaluateAndMetricsEndToEnd() throws {
        let dir = TestSupport.temporaryDirectory("cli")
        let metrics = dir + "/metrics.jsonl"
        let train = try run(["train", "--data", "synthetic:600:120", "--epochs", "2", "--batch-size", "32",
                             "--checkpoint-dir", dir, "--metrics", metrics])
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertTrue(train.stdout.contains("epoch 2/2: train loss"), train.stdout)
        XCTAssertTrue(train.stdout.contains("test accuracy"), train.stdout)
        let digest = try XCTUnwrap(train.digest)
        XCTAssertEqual(digest.count, 64)
        // Metrics: JSON lines with step and epoch entries.
        let lines = try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n")
        let objects = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(objects.filter { $0["kind"] as? String == "epoch" }.count, 2)
        XCTAssertNotNil(objects.first { $0["kind"] as? String == "step" }?["loss"] as? Double)
        XCTAssertNotNil(objects.last?["test_accuracy"] as? Double)
        // Evaluate the final checkpoint: the same test accuracy the training run printed.
        let checkpoint = dir + "/checkpoint-000000036.scnn"
        let evaluation = try run(["evaluate", "--checkpoint", checkpoint, "--data", "synthetic:600:120"])
        XCTAssertEqual(evaluation.status, 0, evaluation.stderr)
        let accuracy = try XCTUnwrap(train.stdout.split(separator: "\n").last { $0.contains("test accuracy") }?
            .components(separatedBy: "test accuracy ").last?.components(separatedBy: "%").first)
        XCTAssertTrue(evaluation.stdout.contains("accuracy \(accuracy)%"), evaluation.stdout + " vs " + accuracy)
        XCTAssertTrue(evaluation.stdout.contains("confusion matrix"), evaluation.stdout)
        // The same command twice gives the same digest.
        let again = try run(["train", "--data", "synthetic:600:120", "--epochs", "2", "--batch-size", "32"])
        XCTAssertEqual(again.digest, digest)
    }
}
