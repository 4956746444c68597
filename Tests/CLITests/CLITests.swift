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
                       "--weight-decay", "--optimizer", "--betas", "--eps", "--clip-grad-norm", "--label-smoothing",
                       "--seed", "--threads", "--checkpoint-dir", "--resume", "--reduction", "--metrics",
                       "--augment", "--normalize", "--val-split", "--keep-best"] {
            XCTAssertTrue(help.stdout.contains(option), "--help lacks \(option)")
        }
        XCTAssertTrue(help.stdout.contains("(default: 64)"), help.stdout)
        // Help wraps its lines: compare with the words joined by single spaces.
        let words = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for text in ["(default: 0.9,0.999)", "(values: sgd, adam, adamw; default: sgd)", "(default: 1e-08)"] {
            XCTAssertTrue(words.contains(text), "--help lacks \(text): \(help.stdout)")
        }
    }

    /// Each bad input: one line on stderr that names the problem, and a non-zero exit.
    func testBadInputGivesOneLineAndANonZeroExit() throws {
        let cases: [([String], String)] = [
            (["train", "--batch-size", "60", "--chunk-size", "8"], "--batch-size 60 is not a multiple of --chunk-size 8"),
            (["train", "--model", "conv32k3-relu-blorp-fc"], "unknown model token 'blorp'"),
            (["train", "--data", "/nonexistent"], "data directory '/nonexistent' does not exist"),
            (["train", "--lr=-1", "--data", "synthetic:100:10"], "--lr must be a positive number"),
            (["train", "--init", "magic"], "The value 'magic' is invalid for '--init <init>'"),
            (["train", "--resume"], "--resume needs --checkpoint-dir"),
            (["train", "--data", "synthetic:100:10", "--checkpoint-dir", "/proc/forbidden"], "cannot create checkpoint directory '/proc/forbidden'"),
            (["evaluate", "--checkpoint", "/nonexistent.scnn"], "cannot read checkpoint '/nonexistent.scnn'"),
            (["inspect", "--model", "conv32k9-fc", "--input", "1x4x4"], "kernel 9 does not fit a 4×4 input"),
            // Negative numbers reach the range checks instead of being taken for flags.
            (["train", "--lr", "-0.1", "--data", "synthetic:100:10"], "--lr must be a positive number (got -0.1)"),
            (["train", "--momentum", "-0.5", "--data", "synthetic:100:10"], "--momentum must be in [0, 1) (got -0.5)"),
            (["train", "--optimizer", "rmsprop"], "The value 'rmsprop' is invalid for '--optimizer <optimizer>'"),
            (["train", "--betas", "0.9"], "The value '0.9' is invalid for '--betas <betas>'"),
            (["train", "--betas", "0.9,1", "--data", "synthetic:100:10"], "--betas β2 must be in [0, 1) (got 1.0)"),
            (["train", "--eps", "0", "--data", "synthetic:100:10"], "--eps must be a positive number (got 0.0)"),
            (["train", "--optimizer", "adamw", "--nesterov", "--data", "synthetic:100:10"],
             "--nesterov applies only to --optimizer sgd (got adamw)"),
            (["train", "--clip-grad-norm", "-1", "--data", "synthetic:100:10"], "--clip-grad-norm must be a number ≥ 0, 0 for off (got -1.0)"),
            (["train", "--label-smoothing", "1.5", "--data", "synthetic:100:10"], "--label-smoothing must be in [0, 1] (got 1.5)"),
            (["train", "--batch-size", "-8"], "--batch-size must be at least 1 (got -8)"),
            (["train", "--epochs", "-1"], "--epochs must be at least 1 (got -1)"),
            (["train", "--log-every", "-3"], "--log-every must be at least 1 (got -3)"),
            (["plot", "m.jsonl", "-o", "c.svg", "--width", "-5"], "--width must be between 500 and 10000 (got -5)"),
            (["inspect", "--classes", "-2"], "--classes must be between 2 and 256"),
            // A batch no machine holds is refused before anything is allocated.
            (["train", "--data", "synthetic:64:8", "--batch-size", "4000000", "--chunk-size", "8000"],
             "--batch-size 4000000 needs about"),
            (["train", "--data", "synthetic:64:8", "--classes", "300"], "the class count must be between 2 and 256"),
            (["train", "--data", "synthetic:64:8", "--checkpoint-dir", "/nonexistent/run", "--resume"],
             "checkpoint directory '/nonexistent/run' does not exist; check the path, or add --allow-fresh-start"),
        ]
        for (arguments, message) in cases {
            let result = try run(arguments)
            XCTAssertNotEqual(result.status, 0, "\(arguments) exited 0")
            XCTAssertTrue(result.stderr.contains(message), "\(arguments): \(result.stderr)")
            XCTAssertEqual(result.errorLines.count, 1, "\(arguments): \(result.stderr)")
        }
    }

    /// The memory check names the largest batch that fits, a multiple of the chunk size, and
    /// a batch well inside it passes the check (the memory available moves while other tests
    /// run, so not the boundary itself).
    func testMemoryCheckNamesTheLargestBatchThatFits() throws {
        let refused = try run(["train", "--data", "synthetic:64:8", "--batch-size", "4000000", "--chunk-size", "8000"])
        XCTAssertEqual(refused.status, 64, refused.stderr)
        let advice = try XCTUnwrap(refused.stderr.components(separatedBy: "the largest batch that fits is --batch-size ").last)
        let largest = try XCTUnwrap(Int(advice.trimmingCharacters(in: .whitespacesAndNewlines)), refused.stderr)
        XCTAssertEqual(largest % 8000, 0, "a multiple of the chunk size")
        XCTAssertGreaterThanOrEqual(largest, 16000, refused.stderr)
        // The run then stops at the data check, which follows the memory check.
        let half = largest / 16000 * 8000
        let fits = try run(["train", "--data", "synthetic:64:8", "--batch-size", "\(half)", "--chunk-size", "8000"])
        XCTAssertEqual(fits.stderr, "error: the training set has 64 samples, fewer than --batch-size \(half)\n")
    }

    /// A checkpoint directory with one checkpoint per step, each overwritten with bytes that
    /// are not a checkpoint; and the training arguments that wrote them.
    func corruptCheckpoints(steps: Int) throws -> (directory: String, arguments: [String]) {
        let dir = TestSupport.temporaryDirectory("corrupt")
        let arguments = ["train", "--data", "synthetic:64:8", "--batch-size", "8", "--model", "mlp", "--checkpoint-dir", dir]
        XCTAssertEqual(try run(arguments + ["--max-steps", "\(steps)", "--checkpoint-every", "1"]).status, 0)
        for name in try FileManager.default.contentsOfDirectory(atPath: dir) {
            try Data("not a checkpoint".utf8).write(to: URL(fileURLWithPath: "\(dir)/\(name)"))
        }
        return (dir, arguments)
    }

    /// Pruning keeps the checkpoint just written, however many newer names (unloadable ones,
    /// here, that a fresh start left behind) the directory holds.
    func testPruningNeverRemovesTheCheckpointJustWritten() throws {
        let (dir, common) = try corruptCheckpoints(steps: 3)
        let fresh = try run(common + ["--resume", "--allow-fresh-start", "--max-steps", "1", "--keep", "1"])
        XCTAssertEqual(fresh.status, 0, fresh.stderr)
        XCTAssertEqual(try checkpointState(path: "\(dir)/checkpoint-000000001.scnn").step, 1)
    }

    /// Every hyperparameter has a flag that names it in messages (inspect prints them all).
    func testEveryHyperparameterIsNamedByItsFlag() throws {
        let dir = TestSupport.temporaryDirectory("flags")
        XCTAssertEqual(try run(["train", "--data", "synthetic:64:8", "--batch-size", "8", "--model", "mlp", "--max-steps", "1",
                                "--checkpoint-dir", dir]).status, 0)
        let inspect = try run(["inspect", "\(dir)/checkpoint-000000001.scnn"])
        let line = try XCTUnwrap(inspect.stdout.split(separator: "\n").first { $0.hasPrefix("hyperparameters: ") }, inspect.stdout)
        let names = line.dropFirst("hyperparameters: ".count).components(separatedBy: ", ").map { $0.split(separator: " ")[0] }
        XCTAssertGreaterThanOrEqual(names.count, 15, String(line))
        XCTAssertEqual(names.filter { !$0.hasPrefix("--") }, [], "settings without a flag: \(line)")
    }

    /// A CIFAR-10 directory with some training batches missing is an error naming them, not a
    /// run on part of the data.
    func testAnIncompleteCIFAR10DirectoryIsAnError() throws {
        let dir = TestSupport.temporaryDirectory("cifar")
        for name in ["data_batch_1.bin", "test_batch.bin"] {
            try Data((0..<2).flatMap { [UInt8($0)] + [UInt8](repeating: 7, count: 3072) }).write(to: URL(fileURLWithPath: "\(dir)/\(name)"))
        }
        let result = try run(["train", "--data", dir, "--model", "cifar-cnn", "--batch-size", "2", "--chunk-size", "2", "--max-steps", "1"])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("incomplete CIFAR-10 directory: data_batch_2.bin, data_batch_3.bin, data_batch_4.bin, data_batch_5.bin missing"),
                      result.stderr)
    }

    /// `scripts/setup` fails when the build fails, even with an older binary in place (a
    /// `swift` on PATH that fails stands in for a compile error).
    func testSetupFailsWhenTheBuildFails() throws {
        let copy = TestSupport.temporaryDirectory("setup")
        try FileManager.default.createDirectory(atPath: copy + "/scripts", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: TestSupport.packageRoot.appendingPathComponent("scripts/setup").path,
                                         toPath: copy + "/scripts/setup")
        try FileManager.default.createDirectory(atPath: copy + "/.build/release", withIntermediateDirectories: true)
        for (path, script) in [("/.build/release/swift-cnn-train", "#!/bin/sh\n"),
                               ("/swift", "#!/bin/sh\necho 'error: a compile error' >&2\nexit 1\n")] {
            XCTAssertTrue(FileManager.default.createFile(atPath: copy + path, contents: Data(script.utf8),
                                                         attributes: [.posixPermissions: 0o755]))
        }
        let path = copy + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let result = try runCommand("/bin/bash", [copy + "/scripts/setup"], timeout: 120, environment: ["PATH": path])
        XCTAssertEqual(result.status, 1, result.stdout + result.stderr)
        XCTAssertTrue(result.stderr.contains("setup: build failed"), result.stderr)
    }

    /// A cgroup's memory limit counts, not only the machine's: a batch that fits the machine
    /// but not a 600 MB cgroup is refused before training.
    func testMemoryCheckHonoursTheCgroupLimit() throws {
        let v1 = "/sys/fs/cgroup/memory"
        let parent = FileManager.default.fileExists(atPath: v1 + "/memory.limit_in_bytes") ? v1 : "/sys/fs/cgroup"
        let group = "\(parent)/swift-cnn-train-test-\(getpid())"
        guard getuid() == 0, mkdir(group, 0o755) == 0 else { throw XCTSkip("needs root and a writable cgroup file system") }
        defer { rmdir(group) }
        try "\(600 << 20)".write(toFile: group + (parent == v1 ? "/memory.limit_in_bytes" : "/memory.max"), atomically: false, encoding: .utf8)
        let result = try runCommand("/bin/sh", ["-c", "echo $$ > \(group)/cgroup.procs && exec \"$0\" \"$@\"", TestSupport.binary,
                                                "train", "--batch-size", "4096", "--data", "synthetic:4096:8", "--max-steps", "1"])
        XCTAssertEqual(result.status, 64, result.stderr)
        XCTAssertTrue(result.stderr.contains("--batch-size 4096 needs about 1.9 GB per rank but 0.6 GB is available"), result.stderr)
        XCTAssertFalse(result.stdout.contains("parameters"), "training started: \(result.stdout)")
    }

    /// One label beyond the class count (here in the test split) stops the run before any
    /// training, naming the file, the sample and the value; --classes admits it.
    func testALabelOutsideTheClassesStopsTheRunBeforeTraining() throws {
        let data = try IDXFile.dataSet(trainLabels: (0..<64).map { UInt8($0 % 10) }, testLabels: [1, 2, 255, 3])
        let result = try run(["train", "--data", data, "--batch-size", "16", "--max-steps", "2"])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertEqual(result.stderr, "error: '\(data)/t10k-labels-idx1-ubyte': label 255 at sample 2 is outside the 10 classes (0…9); pass --classes N if the data has more\n")
        XCTAssertFalse(result.stdout.contains("parameters"), "training started: \(result.stdout)")
        let wider = try run(["train", "--data", data, "--batch-size", "16", "--max-steps", "2", "--classes", "256"])
        XCTAssertEqual(wider.status, 0, wider.stderr)
        XCTAssertTrue(wider.stdout.contains("256 classes"), wider.stdout)
    }

    /// --resume over checkpoints none of which loads is an error listing each with its reason,
    /// not a silent start from step 0; --allow-fresh-start makes that start explicit.
    func testResumeOverOnlyCorruptCheckpointsIsAnError() throws {
        let (dir, common) = try corruptCheckpoints(steps: 2)
        let refused = try run(common + ["--resume"])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stdout.contains("skipping \(dir)/checkpoint-000000002.scnn: "), refused.stdout)
        XCTAssertTrue(refused.stdout.contains("skipping \(dir)/checkpoint-000000001.scnn: "), refused.stdout)
        XCTAssertTrue(refused.stderr.contains("no checkpoint in '\(dir)' loads (2 skipped, reasons above)"), refused.stderr)
        XCTAssertFalse(refused.stdout.contains("parameter digest"), refused.stdout)
        let fresh = try run(common + ["--resume", "--allow-fresh-start", "--max-steps", "1"])
        XCTAssertEqual(fresh.status, 0, fresh.stderr)
        XCTAssertTrue(fresh.stdout.contains("starting from step 0"), fresh.stdout)
        // An existing directory without checkpoints (a batch job's first start) starts from step 0.
        let empty = TestSupport.temporaryDirectory("empty")
        let first = try run(["train", "--data", "synthetic:64:8", "--batch-size", "8", "--model", "mlp", "--max-steps", "1",
                             "--checkpoint-dir", empty, "--resume"])
        XCTAssertEqual(first.status, 0, first.stderr)
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
