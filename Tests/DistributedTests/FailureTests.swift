import TestSupport
import XCTest

/// Errors under mpirun end every rank quickly with one clear line and a non-zero exit.
final class FailureTests: XCTestCase {
    func testMissingDataDirectoryOnThreeRanksExitsWithinSeconds() throws {
        let result = try runTrainer(["train", "--data", "/nonexistent/fashion"], ranks: 3, timeout: 60)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertLessThan(result.seconds, 15)
        XCTAssertTrue(result.stderr.contains("data directory '/nonexistent/fashion' does not exist"), result.stderr)
        // One rank reports; the others are stopped by MPI_Abort before they print the same line.
        XCTAssertEqual(result.stderr.components(separatedBy: "does not exist").count - 1, 1, result.stderr)
    }

    func testMoreRanksThanChunksIsAClearError() throws {
        let result = try runTrainer(["train", "--data", "synthetic:200:20", "--batch-size", "16", "--chunk-size", "8"],
                                    ranks: 3, timeout: 60)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("3 ranks but a batch has only 2 chunks"), result.stderr)
    }

    func testDivergenceToNaNNamesTheTensorAndStep() throws {
        let result = try runTrainer(["train", "--data", "synthetic:400:40", "--batch-size", "16", "--lr", "1e30",
                                     "--max-steps", "20"], ranks: 2, timeout: 120)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("non-finite value"), result.stderr)
        XCTAssertTrue(result.stderr.contains("at step"), result.stderr)
    }
}
