import Foundation
import TestSupport
import XCTest

/// Where -o, --metrics and --checkpoint-dir write: a symlink is followed, a FIFO, a device and
/// `-` are written through, an input is never overwritten, and a full disk is a one-line error.
final class OutputTests: XCTestCase {
    /// A short training run: a small model on synthetic data, 8 steps.
    static let train = ["train", "--data", "synthetic:64:8", "--model", "mlp", "--batch-size", "8", "--epochs", "1"]

    /// The kind of file at `path` (S_IFREG, S_IFLNK, S_IFIFO, …), not following a symlink; nil if none.
    func kind(_ path: String) -> mode_t? {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_mode & S_IFMT : nil
    }

    func testASymlinkOutputReplacesItsTargetAndStaysALink() throws {
        let trained = try TrainedModel.files()
        let dir = TestSupport.temporaryDirectory("output")
        let plain = dir + "/plain.safetensors", target = dir + "/target.safetensors", link = dir + "/link.safetensors"
        let reference = try runTrainer(["export", trained.checkpoint, "-o", plain])
        XCTAssertEqual(reference.status, 0, reference.stderr)
        try Data("old".utf8).write(to: URL(fileURLWithPath: target))
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "target.safetensors")  // relative
        let result = try runTrainer(["export", trained.checkpoint, "-o", link])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(kind(link), S_IFLNK, "the link stays a link")
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link), "target.safetensors")
        XCTAssertEqual(FileManager.default.contents(atPath: target), FileManager.default.contents(atPath: plain), "the target holds the export")
    }

    func testAFIFOOutputIsWrittenThroughToItsReader() throws {
        let trained = try TrainedModel.files()
        let dir = TestSupport.temporaryDirectory("output")
        let fifo = dir + "/predictions.csv"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let predict = ["predict", "--checkpoint", trained.checkpoint, "--data", TrainedModel.data, "--limit", "5"]
        let expected = try runTrainer(predict)
        XCTAssertEqual(expected.status, 0, expected.stderr)
        // The reader's end is open before the command starts, and the test holds a writer's end
        // until the command has ended: the reader sees end-of-file then, and not before, whether
        // the command wrote to the FIFO or (replacing its path) never opened it.
        let reader = open(fifo, O_RDONLY | O_NONBLOCK), holder = open(fifo, O_WRONLY | O_NONBLOCK)
        XCTAssertGreaterThanOrEqual(reader, 0)
        XCTAssertGreaterThanOrEqual(holder, 0)
        XCTAssertEqual(fcntl(reader, F_SETFL, 0), 0, "blocking reads")
        final class Received: @unchecked Sendable { var bytes: [UInt8] = [] }
        let received = Received(), done = DispatchSemaphore(value: 0)
        Thread {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while case let n = read(reader, &buffer, buffer.count), n > 0 { received.bytes += buffer[..<n] }
            close(reader)
            done.signal()
        }.start()
        let result = try runTrainer(predict + ["-o", fifo])
        close(holder)
        done.wait()
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(kind(fifo), S_IFIFO, "the FIFO is still a FIFO")
        XCTAssertEqual(String(decoding: received.bytes, as: UTF8.self), expected.stdout, "the reader got the CSV")
    }

    /// Nodes of the test's own, like /dev/null (1, 3) and /dev/full (1, 7), so that a command
    /// that replaced them could not damage the machine's.
    func testACharacterDeviceOutputIsWrittenThrough() throws {
        guard getuid() == 0 else { throw XCTSkip("making device nodes needs root") }
        let trained = try TrainedModel.files()
        let dir = TestSupport.temporaryDirectory("output")
        let null = dir + "/null", full = dir + "/full"
        for (node, minor) in [(null, "3"), (full, "7")] {
            let mknod = try runCommand("/bin/mknod", [node, "c", "1", minor])
            XCTAssertEqual(mknod.status, 0, mknod.stderr)
        }
        let result = try runTrainer(["plot", trained.metrics, "-o", null])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(kind(null), S_IFCHR, "the null device is still a device")
        try assertFails(["export", trained.checkpoint, "-o", full], status: 1, message: "cannot write '\(full)': No space left on device")
        XCTAssertEqual(kind(full), S_IFCHR, "the full device is still a device")
    }

    func testDashIsStandardOutput() throws {
        let trained = try TrainedModel.files()
        let dir = TestSupport.temporaryDirectory("output")
        let svg = dir + "/curves.svg"
        let plot = try runTrainer(["plot", trained.metrics, "-o", svg])
        XCTAssertEqual(plot.status, 0, plot.stderr)
        let predict = ["predict", "--checkpoint", trained.checkpoint, "--data", TrainedModel.data, "--limit", "3"]
        let csv = try runTrainer(predict)
        XCTAssertEqual(csv.status, 0, csv.stderr)
        // Run in `dir`, where a file named '-' would appear.
        func runInDirectory(_ arguments: [String]) throws -> CommandResult {
            try runCommand("/bin/sh", ["-c", "cd \"$0\" && exec \"$@\"", dir, TestSupport.binary] + arguments)
        }
        let plotted = try runInDirectory(["plot", trained.metrics, "-o", "-"])
        XCTAssertEqual(plotted.status, 0, plotted.stderr)
        XCTAssertEqual(plotted.stdout, try String(contentsOfFile: svg, encoding: .utf8), "the SVG alone, on standard output")
        let predicted = try runInDirectory(predict + ["-o", "-"])
        XCTAssertEqual(predicted.status, 0, predicted.stderr)
        XCTAssertEqual(predicted.stdout, csv.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/-"), "no file named '-'")
    }

    func testAnOutputThatIsAnInputIsRefusedBeforeAnythingIsWritten() throws {
        let trained = try TrainedModel.files()
        let dir = TestSupport.temporaryDirectory("output")
        let checkpoint = dir + "/a.scnn", metrics = dir + "/m.jsonl", link = dir + "/link.scnn"
        try FileManager.default.copyItem(atPath: trained.checkpoint, toPath: checkpoint)
        try FileManager.default.copyItem(atPath: trained.metrics, toPath: metrics)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: checkpoint)
        let checkpointBytes = FileManager.default.contents(atPath: checkpoint)
        let metricsBytes = FileManager.default.contents(atPath: metrics)
        try assertFails(["export", checkpoint, "-o", checkpoint], status: 1, message: "'-o \(checkpoint)' is the checkpoint being read")
        try assertFails(["export", checkpoint, "-o", link], status: 1, message: "'-o \(link)' is the checkpoint being read")
        try assertFails(["predict", "--checkpoint", checkpoint, "--data", TrainedModel.data, "-o", checkpoint], status: 1,
                        message: "'-o \(checkpoint)' is the checkpoint being read")
        try assertFails(["plot", metrics, "-o", metrics], status: 1, message: "'-o \(metrics)' is the metrics file being read")
        XCTAssertEqual(FileManager.default.contents(atPath: checkpoint), checkpointBytes, "the checkpoint is intact")
        XCTAssertEqual(kind(link), S_IFLNK)
        XCTAssertEqual(FileManager.default.contents(atPath: metrics), metricsBytes, "the metrics are intact")
    }

    func testMetricsAreAppendedAndAFileThatIsNotMetricsIsRefused() throws {
        let trained = try TrainedModel.files()
        let dir = TestSupport.temporaryDirectory("output")
        let checkpoint = dir + "/a.scnn", metrics = dir + "/m.jsonl"
        try FileManager.default.copyItem(atPath: trained.checkpoint, toPath: checkpoint)
        let checkpointBytes = FileManager.default.contents(atPath: checkpoint)
        try assertFails(Self.train + ["--metrics", checkpoint], status: 1,
                        message: "'--metrics \(checkpoint)' is not a metrics file: it does not start with a JSON object")
        XCTAssertEqual(FileManager.default.contents(atPath: checkpoint), checkpointBytes, "the checkpoint is intact")
        // A metrics file is appended to, run after run.
        let first = try runTrainer(Self.train + ["--metrics", metrics])
        XCTAssertEqual(first.status, 0, first.stderr)
        let once = try String(contentsOfFile: metrics, encoding: .utf8)
        let second = try runTrainer(Self.train + ["--metrics", metrics])
        XCTAssertEqual(second.status, 0, second.stderr)
        let twice = try String(contentsOfFile: metrics, encoding: .utf8)
        XCTAssertTrue(twice.hasPrefix(once) && twice.count > once.count, twice)
    }

    func testAMetricsWriteErrorIsOneLineAndExitCode1() throws {
        try assertFails(Self.train + ["--metrics", "/dev/full"], status: 1, message: "cannot write '/dev/full': No space left on device")
    }

    /// A tmpfs with room for one and a half checkpoints: step 4's fits, step 8's does not.
    func testAFullDiskEndsTrainingWithOneLineAndKeepsTheEarlierCheckpoint() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a tmpfs needs root") }
        // A checkpoint's size, from a run to step 4 in an ordinary directory.
        let sizing = TestSupport.temporaryDirectory("output")
        let first = try runTrainer(Self.train + ["--max-steps", "4", "--checkpoint-dir", sizing])
        XCTAssertEqual(first.status, 0, first.stderr)
        let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: sizing + "/checkpoint-000000004.scnn")[.size] as? Int)
        let disk = TestSupport.temporaryDirectory("output")
        let mount = try runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size * 3 / 2)", "tmpfs", disk])
        XCTAssertEqual(mount.status, 0, mount.stderr)
        guard mount.status == 0 else { return }
        addTeardownBlock { _ = try? runCommand("/bin/umount", [disk]) }
        try assertFails(Self.train + ["--checkpoint-every", "4", "--checkpoint-dir", disk], status: 1,
                        message: "cannot write '\(disk)/checkpoint-000000008.scnn': No space left on device")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: disk), ["checkpoint-000000004.scnn"],
                       "the earlier checkpoint, and no temporary file")
        XCTAssertEqual(try checkpointState(path: disk + "/checkpoint-000000004.scnn").step, 4)
    }
}
