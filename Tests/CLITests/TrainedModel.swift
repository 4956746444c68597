import Foundation
import TestSupport
import XCTest

/// A small seed-cnn-bn trained once per test process on synthetic data (2 epochs of 18 steps,
/// about a second), with its metrics file: shared by the plot, predict and export tests.
enum TrainedModel {
    static let data = "synthetic:600:120"

    struct Files {
        let directory: String
        let checkpoint: String
        let metrics: String
    }

    private static let shared: Result<Files, Error> = Result {
        let directory = TestSupport.temporaryDirectory("trained")
        let metrics = directory + "/metrics.jsonl"
        let result = try runTrainer(["train", "--model", "seed-cnn-bn", "--data", data, "--epochs", "2", "--batch-size", "32",
                                     "--checkpoint-dir", directory, "--metrics", metrics], timeout: 300)
        guard result.status == 0 else { throw TrainingFailed(message: result.stderr) }
        return Files(directory: directory, checkpoint: directory + "/checkpoint-000000036.scnn", metrics: metrics)
    }

    static func files() throws -> Files { try shared.get() }

    struct TrainingFailed: Error { let message: String }
}

/// The checks every error case shares: the given non-zero exit, and one line on stderr that
/// starts "error: " (ArgumentParser writes "Error: " and usage lines after it) and contains `message`.
func assertFails(_ arguments: [String], status: Int32, message: String, file: StaticString = #filePath, line: UInt = #line) throws {
    let result = try runTrainer(arguments, timeout: 120)
    XCTAssertEqual(result.status, status, "\(arguments): \(result.stderr)", file: file, line: line)
    XCTAssertTrue(result.stderr.contains(message), "\(arguments): \(result.stderr)", file: file, line: line)
    XCTAssertEqual(result.errorLines.count, 1, "\(arguments): \(result.stderr)", file: file, line: line)
    XCTAssertTrue(result.errorLines.first?.lowercased().hasPrefix("error: ") ?? false, "\(arguments): \(result.stderr)", file: file, line: line)
}
