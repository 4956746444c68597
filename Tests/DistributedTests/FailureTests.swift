import TestSupport
import XCTest

/// Errors under mpirun end every rank quickly with one clear line and a non-zero exit.
final class FailureTests: XCTestCase {
    func testMissingDataDirectoryOnThreeRanksIsReportedOnceAndEndsEveryRank() throws {
        let result = try runTrainer(["train", "--data", "/nonexistent/fashion"], ranks: 3, timeout: 60)
        XCTAssertFalse(result.signaled, "the job hung until the test's timeout")
        XCTAssertTrue(result.stderr.contains("data directory '/nonexistent/fashion' does not exist"), result.stderr)
        // Every rank fails alike; the ranks agree and only the lowest reports.
        XCTAssertEqual(result.stderr.components(separatedBy: "does not exist").count - 1, 1, result.stderr)
        XCTAssertEqual(result.status, 1, result.stderr)
    }

    /// Data that some ranks cannot read: the lowest of them reports it, naming itself, and
    /// every rank ends; none is left waiting in a collective.
    func testAnErrorOnSomeRanksIsReportedOnceByTheLowest() throws {
        let common = ["train", "--batch-size", "24", "--max-steps", "2"]
        let result = try runCommand("/usr/bin/mpirun", ["-n", "1", TestSupport.binary] + common + ["--data", "synthetic:200:20",
                                    ":", "-n", "2", TestSupport.binary] + common + ["--data", "/nonexistent/fashion"], timeout: 120)
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertFalse(result.stdout.contains("parameters"), "training started: \(result.stdout)")
        // Ranks 1 and 2 fail alike; the lowest reports, once.
        let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("error") }
        XCTAssertEqual(errors.count, 1, result.stderr)
        XCTAssertTrue(errors.first?.hasPrefix("error (rank 1): data directory '/nonexistent/fashion' does not exist") ?? false,
                      result.stderr)
    }

    /// Ranks started with different flags or data (mpirun's `A : B` form) are refused before
    /// training, in one line naming the first differing setting and both values.
    func testRanksStartedWithDifferentSettingsAreRefused() throws {
        let common = ["train", "--batch-size", "16", "--max-steps", "2"]
        let cases: [([String], [String], String)] = [
            (["--data", "synthetic:200:20", "--lr", "0.05"], ["--data", "synthetic:200:20", "--lr", "0.1"],
             "--lr is '0.05' on rank 0 but '0.1' on rank 1"),
            (["--data", "synthetic:200:20"], ["--data", "synthetic:200:20", "--max-steps", "3"],
             "--max-steps is '2' on rank 0 but '3' on rank 1"),
            (["--data", "synthetic:200:20"], ["--data", "synthetic:208:20"], "data is '200 train + 20 test"),
            // Every rank waits for rank 0's checkpoint writes: all or none must have a directory.
            (["--data", "synthetic:200:20", "--checkpoint-dir", TestSupport.temporaryDirectory("ranks")],
             ["--data", "synthetic:200:20"], "--checkpoint-dir is 'given' on rank 0 but 'not given' on rank 1"),
        ]
        for (first, second, message) in cases {
            let result = try runCommand("/usr/bin/mpirun", ["-n", "1", TestSupport.binary] + common + first
                                        + [":", "-n", "1", TestSupport.binary] + common + second, timeout: 120)
            XCTAssertEqual(result.status, 64, result.stderr)
            XCTAssertFalse(result.stdout.contains("parameters"), "training started: \(result.stdout)")
            let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("error") }
            XCTAssertEqual(errors.count, 1, result.stderr)
            XCTAssertTrue(errors.first?.contains("the ranks were started with different settings: \(message)") ?? false, result.stderr)
        }
    }

    func testMoreRanksThanChunksIsAClearError() throws {
        let result = try runTrainer(["train", "--data", "synthetic:200:20", "--batch-size", "16", "--chunk-size", "8"],
                                    ranks: 3, timeout: 60)
        XCTAssertEqual(result.status, 64, result.stderr)
        XCTAssertTrue(result.stderr.contains("3 ranks but a batch has only 2 chunks"), result.stderr)
        XCTAssertEqual(result.stderr.split(separator: "\n").filter { $0.hasPrefix("error") }.count, 1, result.stderr)
    }

    func testDivergenceToNaNNamesTheTensorAndStep() throws {
        let result = try runTrainer(["train", "--data", "synthetic:400:40", "--batch-size", "16", "--lr", "1e30",
                                     "--max-steps", "20"], ranks: 2, timeout: 120)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("non-finite value"), result.stderr)
        XCTAssertTrue(result.stderr.contains("at step"), result.stderr)
        // Every rank knows it at once (it follows a collective): one line, from rank 0.
        XCTAssertEqual(result.stderr.split(separator: "\n").filter { $0.hasPrefix("error") }.count, 1, result.stderr)
    }
}
