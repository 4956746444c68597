import Engine
import Foundation
import TestSupport
import XCTest

/// `OutputFile.Appender` on a full disk: a record that does not fit is cut back, so that the
/// file holds whole records only (a half line would spoil every later run's metrics).
final class OutputFileTests: XCTestCase {
    func testAnAppendThatDoesNotFitIsCutBackToWholeRecords() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a tmpfs needs root") }
        let disk = TestSupport.temporaryDirectory("output-file")
        let mount = try runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=4k", "tmpfs", disk])  // one page
        XCTAssertEqual(mount.status, 0, mount.stderr)
        guard mount.status == 0 else { return }
        addTeardownBlock { _ = try? runCommand("/bin/umount", [disk]) }
        let path = disk + "/metrics.jsonl"
        let log = try OutputFile(path).openForAppending()
        let record = [UInt8](repeating: UInt8(ascii: "x"), count: 3000) + [UInt8(ascii: "\n")]
        try log.append(record)
        // The second record fills the page's rest (a short write), then the disk is full.
        XCTAssertThrowsError(try log.append(record)) { error in
            XCTAssertEqual("\(error)", "cannot write '\(path)': No space left on device")
        }
        XCTAssertEqual(FileManager.default.contents(atPath: path), Data(record), "the first record, whole; none of the second")
    }
}
